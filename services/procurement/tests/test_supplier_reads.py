"""How the procurement service reads supplier rows for an award and for screening: the statements it sends
(recorded from a stand-in session) and what it makes of the rows. The use cases themselves run through
the gateway in tests/e2e/test_procurement_supply_chain.py."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.dialects import postgresql

from icep.contracts import Releasability, ReleasabilityScope
from icep.platform.domain import Actor
from icep.procurement.models import SupplierRow
from icep.procurement.suppliers import model as supplier_model
from icep.procurement.suppliers import repository as supplier_store
from icep.procurement.suppliers.model import Scale, Screening, ScreeningLists, Supplier

NOW = datetime(2026, 3, 2, 9, tzinfo=UTC)
LISTS = ScreeningLists(frozenset({"RUS"}), frozenset())


def supplier(sid: str, nation: str, releasability: Releasability | None = None) -> Supplier:
    actor = Actor(f"{nation.lower()}-proc", nation, frozenset({"procurement"}))
    return Supplier.register(
        id=sid,
        actor=actor,
        organisation_id="HRB-1",
        name=f"Synthetic Shells {sid} GmbH",
        scale=Scale.SME,
        country_of_incorporation="DEU",
        now=NOW,
        releasability=releasability,
    ).screen(LISTS, NOW)


def row(s: Supplier) -> SupplierRow:
    r = SupplierRow(
        id=s.id,
        nation=s.nation,
        organisation_id=s.organisation_id,
        organisation_key=s.organisation_key,
        name=s.name,
        screening="",
        version=1,
        updated_at=NOW,
    )
    supplier_store.store_supplier(r, s, NOW)
    return r


class Rows:
    def __init__(self, rows: Iterable[SupplierRow]) -> None:
        self.rows = list(rows)

    def scalars(self) -> list[SupplierRow]:
        return self.rows


class Recording:
    """Stands in for an AsyncSession: records each statement, answers with the rows given."""

    def __init__(self, rows: Iterable[SupplierRow]) -> None:
        self.rows = list(rows)
        self.statements: list[Any] = []

    async def execute(self, statement: Any) -> Rows:
        self.statements.append(statement)
        return Rows(self.rows)


def sql(statement: Any) -> str:
    return str(statement.compile(dialect=postgresql.dialect()))  # type: ignore[no-untyped-call]


async def test_an_award_reads_its_suppliers_for_share_in_id_order() -> None:
    deu = supplier("s2", "DEU")
    national_fra = supplier("s1", "FRA", Releasability(owner="FRA"))
    session = Recording([row(national_fra), row(deu)])
    lead = Actor("deu-proc", "DEU", frozenset({"procurement"}))
    found = await supplier_store.suppliers_for_award(session, lead, ["s2", "s1", "s2"])  # type: ignore[arg-type]
    # What the caller may not read is not found (the award then names no such supplier).
    assert found == {"s2": deu}
    [statement] = session.statements
    text = sql(statement)
    # FOR SHARE: a block committed meanwhile is waited for and seen, never missed.
    assert text.endswith("FOR SHARE") and "ORDER BY" in text


async def test_registration_reads_the_organisations_records_for_share() -> None:
    blocked = replace(supplier("s1", "FRA"), screening=Screening.BLOCKED)
    session = Recording([row(blocked), row(supplier("s2", "POL"))])
    # Every record of the organisation is read (and locked); the blocked ones count.
    found = await supplier_store.blocks_of(session, ["HRB-1"], lock=True)  # type: ignore[arg-type]
    assert found == {"hrb-1": [blocked]}  # by the organisation id as compared (case-folded)
    text = sql(session.statements[0])
    assert text.endswith("FOR SHARE") and "screening" not in text.split("WHERE")[1]
    # Re-screening in the background reads only the blocked records, without locks.
    await supplier_store.blocks_of(session, ["HRB-1"])  # type: ignore[arg-type]
    assert "FOR" not in sql(session.statements[1]) and "screening" in sql(session.statements[1])


def test_a_block_elsewhere_names_the_nation_only_to_those_who_may_read_its_record() -> None:
    mine = supplier("s3", "DEU")  # released to Allies
    allies_fra = supplier("s1", "FRA")
    national_pol = supplier("s2", "POL", Releasability(owner="POL"))
    assert supplier_model.blocked_elsewhere(mine, [allies_fra, national_pol, mine]) == [
        "FRA",
        "another nation",
    ]
    to_ukr = Releasability(owner="DEU", scope=ReleasabilityScope.ALLIES_PARTNERS, nations=("UKR",))
    assert supplier_model.blocked_elsewhere(supplier("s4", "DEU", to_ukr), [allies_fra]) == ["another nation"]
