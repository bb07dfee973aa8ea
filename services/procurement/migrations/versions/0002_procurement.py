"""initiatives, OCDS releases, demand signals, suppliers, and the read models of capacity (commitments,
shortfalls, ended plans) and standards

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _at(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "initiatives",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("ocid", sa.String(64), nullable=False, unique=True),
        sa.Column("lead_nation", sa.String(8), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("product", sa.String(200), nullable=False),
        sa.Column("capability_area", sa.String(100), nullable=False),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("readers", sa.String(400), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        _at("created_at"),
        _at("updated_at"),
    )
    for column in ("lead_nation", "product", "status"):
        op.create_index(f"ix_initiatives_{column}", "initiatives", [column])
    op.create_table(
        "ocds_releases",
        sa.Column("id", sa.String(100), primary_key=True),
        sa.Column("ocid", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        _at("date"),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("release", sa.JSON(), nullable=False),
    )
    op.create_index("ix_ocds_releases_ocid", "ocds_releases", ["ocid"])
    op.create_table(
        "demand_signals",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("nation", sa.String(8), nullable=False),
        sa.Column("product", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("readers", sa.String(400), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        _at("updated_at"),
    )
    op.create_index("ix_demand_signals_nation", "demand_signals", ["nation"])
    op.create_index("ix_demand_signals_product", "demand_signals", ["product"])
    op.create_table(
        "suppliers",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("nation", sa.String(8), nullable=False),
        sa.Column("organisation_id", sa.String(100), nullable=False),
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("screening", sa.String(30), nullable=False),
        sa.Column("lists_version", sa.String(32), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("readers", sa.String(400), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        _at("updated_at"),
        sa.UniqueConstraint("nation", "organisation_id", name="uq_supplier_organisation"),
    )
    op.create_index("ix_suppliers_screening", "suppliers", ["screening"])
    op.create_table(
        "capacity_commitments",
        sa.Column("plan_id", sa.String(36), primary_key=True),
        sa.Column("commitment_key", sa.String(100), primary_key=True),
        sa.Column("nation", sa.String(8), nullable=False),
        sa.Column("product", sa.String(200), nullable=False),
        sa.Column("unit", sa.String(50), nullable=False),
        sa.Column("plan_version", sa.Integer(), nullable=False),
        sa.Column("yearly", sa.JSON(), nullable=False),
        sa.Column("releasable_to", sa.String(400), nullable=False),
        sa.Column("readers", sa.String(400), nullable=False),
        _at("updated_at"),
    )
    op.create_index("ix_capacity_commitments_product", "capacity_commitments", ["product"])
    op.create_table(
        "ended_plans",
        sa.Column("plan_id", sa.String(36), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        _at("ended_at"),
    )
    op.create_table(
        "capacity_shortfalls",
        sa.Column("plan_id", sa.String(36), primary_key=True),
        sa.Column("commitment_key", sa.String(100), primary_key=True),
        sa.Column("month", sa.Date(), primary_key=True),
        sa.Column("nation", sa.String(8), nullable=False),
        sa.Column("product", sa.String(200), nullable=False),
        sa.Column("unit", sa.String(50), nullable=True),
        sa.Column("planned_output", sa.Integer(), nullable=False),
        sa.Column("actual_output", sa.Integer(), nullable=False),
        sa.Column("shortfall", sa.Integer(), nullable=False),
        sa.Column("plan_version", sa.Integer(), nullable=False),
        _at("reported_at"),
        sa.Column("releasable_to", sa.String(400), nullable=False),
        sa.Column("readers", sa.String(400), nullable=False),
        _at("updated_at"),
    )
    op.create_index("ix_capacity_shortfalls_product", "capacity_shortfalls", ["product"])
    op.create_table(
        "known_standards",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("number", sa.String(40), nullable=False),
        sa.Column("edition", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        _at("updated_at"),
    )
    op.create_index("ix_known_standards_number", "known_standards", ["number"])
    op.create_table(
        "known_conformance",
        sa.Column("claim_id", sa.String(36), primary_key=True),
        sa.Column("product_code", sa.String(100), nullable=False),
        sa.Column("standard_id", sa.String(36), nullable=False),
        sa.Column("level", sa.String(40), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("expires_on", sa.Date(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        _at("updated_at"),
    )
    op.create_index("ix_known_conformance_product_code", "known_conformance", ["product_code"])


def downgrade() -> None:
    for table in (
        "known_conformance",
        "known_standards",
        "capacity_shortfalls",
        "ended_plans",
        "capacity_commitments",
        "suppliers",
        "demand_signals",
        "ocds_releases",
        "initiatives",
    ):
        op.drop_table(table)
