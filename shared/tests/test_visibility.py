"""The one visibility rule: readers, the marking that reaches exactly them, and the SQL filter agree."""

from __future__ import annotations

import itertools

import pytest
import sqlalchemy as sa

from icep.contracts import Releasability, ReleasabilityScope
from icep.contracts.base import audiences
from icep.platform import visibility

#: Callers of every kind: Allies, NATO staff, partners.
NATIONS = ("DEU", "FRA", "POL", "NLD", "NATO", "UKR", "JPN")
RELEASES = [
    Releasability(owner="DEU"),
    Releasability(owner="DEU", scope=ReleasabilityScope.NATIONS, nations=("FRA",)),
    Releasability(owner="DEU", scope=ReleasabilityScope.NATIONS, nations=("FRA", "NATO", "UKR")),
    Releasability(owner="DEU", scope=ReleasabilityScope.ALLIES),
    Releasability(owner="DEU", scope=ReleasabilityScope.ALLIES_PARTNERS, nations=("UKR",)),
    Releasability(owner="NATO", scope=ReleasabilityScope.ALLIES),
    Releasability(owner="UKR", scope=ReleasabilityScope.NATIONS, nations=("POL",)),
]


@pytest.mark.parametrize("release", RELEASES, ids=lambda r: f"{r.owner}:{r.marking()}")
def test_readers_and_marking_are_one_rule(release: Releasability) -> None:
    readers = visibility.readers_of(release)
    marked = visibility.releasability_of(release.owner, readers)
    for nation in NATIONS:
        # A reader of the record is exactly a nation its events' marking allows.
        assert visibility.may_read(readers, nation) == release.allows(nation) == marked.allows(nation)
    assert Releasability.from_marking(release.owner, marked.marking()) == marked


def test_reader_sets_become_the_marking_that_reaches_exactly_them() -> None:
    assert visibility.releasability_of("DEU", {"DEU"}).marking() == "DEU"
    assert visibility.releasability_of("DEU", {"DEU", "NATO", "FRA"}).marking() == "DEU,FRA,NATO"
    # ALLIES takes in every Ally and NATO staff; the nations beyond are named partners.
    assert visibility.releasability_of("DEU", {"DEU", "NATO", "ALLIES", "FRA"}).marking() == "ALLIES"
    assert visibility.releasability_of("DEU", {"NATO", "ALLIES", "UKR"}).marking() == "ALLIES,UKR"


def test_union_reaches_whoever_any_release_reaches() -> None:
    for a, b in itertools.product(RELEASES[:5], repeat=2):
        both = visibility.union("DEU", a, b)
        for nation in NATIONS:
            assert both.allows(nation) == (a.allows(nation) or b.allows(nation)), (a, b, nation)
    assert visibility.union_of_markings("POL", "POL,FRA", "ALLIES,UKR").marking() == "ALLIES,UKR"


def test_sql_filter_finds_exactly_the_readers() -> None:
    engine = sa.create_engine("sqlite://")
    table = sa.Table("records", sa.MetaData(), sa.Column("id", sa.Integer), sa.Column("readers", sa.String))
    table.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            table.insert(),
            [
                {"id": i, "readers": visibility.encode(visibility.readers_of(r))}
                for i, r in enumerate(RELEASES)
            ],
        )
        for nation in NATIONS:
            found = {
                row.id
                for row in conn.execute(
                    sa.select(table.c.id).where(visibility.readable_by(table.c.readers, nation))
                )
            }
            assert found == {i for i, r in enumerate(RELEASES) if r.allows(nation)}, nation


def test_declared_audiences_are_known() -> None:
    import icep.contracts.plans
    import icep.contracts.procurement
    import icep.contracts.standards  # noqa: F401

    declared = audiences()
    assert declared["icep.plans.plan.accepted.v1"].relation == "same_as_aggregate"
    assert declared["icep.plans.capacity.committed.v1"].relation == "wider"
    assert declared["icep.procurement.bid.recorded.v1"].only == ("lead_nation",)
    assert all(a.relation == "same_as_aggregate" or a.reason for a in declared.values())
