"""standards catalogue, national responses, conformance claims, interchangeability

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


def _release() -> list[sa.Column[object]]:
    return [
        sa.Column("release_scope", sa.String(20), nullable=False),
        sa.Column("release_nations", sa.JSON(), nullable=False),
    ]


def _tail() -> list[sa.Column[object]]:
    return [
        sa.Column("readers", sa.String(400), nullable=False),
        sa.Column("history", sa.JSON(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "standards",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("number", sa.String(40), nullable=False),
        sa.Column("edition", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(400), nullable=False),
        sa.Column("covering_publications", sa.JSON(), nullable=False),
        sa.Column("domain", sa.String(100), nullable=False),
        sa.Column("capability_areas", sa.JSON(), nullable=False),
        sa.Column("levels", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("supersedes", sa.String(36), nullable=True),
        sa.Column("superseded_by", sa.String(36), nullable=True),
        sa.Column("promulgated_on", sa.Date(), nullable=True),
        sa.Column("cancellation_reason", sa.String(2000), nullable=True),
        *_release(),
        *_tail(),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("kind", "number", "edition", name="uq_standard_edition"),
    )
    op.create_index("ix_standards_number", "standards", ["number"])
    op.create_index("ix_standards_status", "standards", ["status"])
    op.create_table(
        "national_responses",
        sa.Column("standard_id", sa.String(36), primary_key=True),
        sa.Column("nation", sa.String(8), primary_key=True),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("reservations", sa.JSON(), nullable=False),
        sa.Column("implementation_forecast", sa.Date(), nullable=True),
        sa.Column("implemented_on", sa.Date(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        *_tail(),
    )
    op.create_index("ix_national_responses_status", "national_responses", ["status"])
    op.create_table(
        "conformance_claims",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("nation", sa.String(8), nullable=False),
        sa.Column("manufacturer", sa.String(200), nullable=False),
        sa.Column("product_code", sa.String(100), nullable=False),
        sa.Column("product_name", sa.String(200), nullable=False),
        sa.Column("standard_id", sa.String(36), nullable=False),
        sa.Column("level", sa.String(40), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("expires_on", sa.Date(), nullable=True),
        sa.Column("rejection_reason", sa.String(2000), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        *_release(),
        *_tail(),
    )
    for column in ("nation", "product_code", "standard_id", "status", "expires_on"):
        op.create_index(f"ix_conformance_claims_{column}", "conformance_claims", [column])
    op.create_table(
        "interchangeability",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("owner", sa.String(8), nullable=False),
        sa.Column("item", sa.String(200), nullable=False),
        sa.Column("platform", sa.String(200), nullable=False),
        sa.Column("nations", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("basis_kind", sa.String(20), nullable=False),
        sa.Column("basis_reference", sa.String(200), nullable=False),
        sa.Column("restrictions", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        *_release(),
        *_tail(),
        sa.UniqueConstraint("owner", "item", "platform", name="uq_clearance"),
    )
    op.create_index("ix_interchangeability_item", "interchangeability", ["item"])
    op.create_index("ix_interchangeability_platform", "interchangeability", ["platform"])


def downgrade() -> None:
    op.drop_table("interchangeability")
    op.drop_table("conformance_claims")
    op.drop_table("national_responses")
    op.drop_table("standards")
