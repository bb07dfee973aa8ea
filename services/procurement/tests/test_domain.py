"""Procurement rules, without web, database or Kafka.

A joint buy of 155 mm rounds led by DEU, with FRA, POL and NLD participating; suppliers screened against
restricted countries and parties. Every company, quantity, value and restricted party here is synthetic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from icep.contracts import Releasability, ReleasabilityScope
from icep.contracts.nations import ALLIES
from icep.platform.domain import Actor
from icep.platform.errors import Conflict, Forbidden, IllegalTransition, NotFound, Unprocessable
from icep.procurement.demand.model import (
    DemandSignal,
    Firmness,
    YearDemand,
    demand_against_capacity,
    demand_picture,
    initiative_demand,
)
from icep.procurement.initiatives.model import Initiative
from icep.procurement.initiatives.parts import (
    ACTIVE,
    FIRM,
    INITIATIVE_TRANSITIONS,
    AwardInput,
    AwardRefused,
    Bid,
    CallOff,
    Contract,
    Disclosure,
    InitiativeStatus,
    Item,
    Lot,
    Milestone,
    MilestoneStatus,
    Participation,
    ParticipationStatus,
    RequiredStandard,
    aggregate,
    next_initiative_status,
)
from icep.procurement.initiatives.standing import (
    SupplierStanding,
    supplier_standing,
    usable_claims,
    verified_editions,
)
from icep.procurement.read_models.known import KnownConformance, KnownStandard
from icep.procurement.rules import check_quantities, readers_missing
from icep.procurement.suppliers.model import Owner, Scale, Screening, ScreeningLists, Supplier, name_key

S = InitiativeStatus
P = ParticipationStatus
NOW = datetime(2026, 3, 2, 9, tzinfo=UTC)
TODAY = NOW.date()
DEADLINE = date(2026, 6, 30)
TENDER_END = date(2026, 9, 30)

PROCUREMENT = frozenset({"procurement"})
DEU = Actor("deu-proc", "DEU", PROCUREMENT)
FRA = Actor("fra-proc", "FRA", PROCUREMENT)
POL = Actor("pol-proc", "POL", PROCUREMENT)
NLD = Actor("nld-proc", "NLD", PROCUREMENT)
NATO = Actor("nato-proc", "NATO", PROCUREMENT)
UKR = Actor("ukr-proc", "UKR", PROCUREMENT)
JPN = Actor("jpn-proc", "JPN", PROCUREMENT)
DEU_PLANNER = Actor("deu-planner", "DEU", frozenset({"planner"}))
#: The person who adjudicates a supplier's screening (a synthetic name).
ANNA = "Anna Example"

STANAG = RequiredStandard("4569", 3)
ROUND = Item("155mm HE round (synthetic)", "rounds", classification_id="1315")
LISTS = ScreeningLists(frozenset({"RUS", "BLR"}), frozenset({"Sample Sanctioned Holdings (synthetic)"}))


# --- builders -------------------------------------------------------------------------------------------


def propose(actor: Actor = DEU, **kw: object) -> Initiative:
    defaults: dict[str, object] = {
        "id": "i-155",
        "actor": actor,
        "title": "Joint buy of 155 mm rounds (synthetic)",
        "item": ROUND,
        "capability_area": "munitions",
        "participation_deadline": DEADLINE,
        "now": NOW,
        "required_standards": (STANAG,),
    }
    defaults.update(kw)
    return Initiative.propose(**defaults)  # type: ignore[arg-type]


def supplier(
    name: str = "Synthetic Munitions GmbH",
    country: str = "DEU",
    *,
    actor: Actor = DEU,
    lists: ScreeningLists | None = LISTS,
    **kw: object,
) -> Supplier:
    defaults: dict[str, object] = {
        "id": "s-" + "".join(c for c in name.lower() if c.isalnum())[:24],
        "actor": actor,
        "organisation_id": "HRB-" + "".join(c for c in name.upper() if c.isalnum())[:12],
        "name": name,
        "scale": Scale.SME,
        "country_of_incorporation": country,
        "now": NOW,
        "products": ("SM-155-HE",),
    }
    defaults.update(kw)
    s = Supplier.register(**defaults)  # type: ignore[arg-type]
    return s if lists is None else s.screen(lists, NOW)


CLEAN = supplier()


def standing(s: Supplier = CLEAN, *verified: tuple[str, int]) -> SupplierStanding:
    """The supplier, its first product holding `verified` (by default the required STANAG edition)."""
    return SupplierStanding(s, {s.products[0]: frozenset(verified or {(STANAG.number, STANAG.edition)})})


LOTS = [Lot("L1", "155 mm HE, first lot", 1000)]
AWARDS = [("a1", AwardInput("L1", CLEAN.id, 1000, 4_000_000.0, "EUR"))]


def contract(award_id: str = "a1", contract_id: str = "c1", *milestones: Milestone) -> Contract:
    return Contract(
        contract_id,
        award_id,
        "",
        True,
        4_000_000.0,
        "EUR",
        date(2026, 10, 1),
        date(2028, 9, 30),
        tuple(milestones),
        NOW,
    )


def in_state(status: InitiativeStatus) -> Initiative:
    """The initiative brought to `status` by the lead nation's steps; FRA committed from `open` on."""
    i = propose()
    if status is S.PROPOSED:
        return i
    if status is S.CANCELLED:
        return i.cancel(DEU, "requirement met otherwise (synthetic)", NOW)
    i = i.open(DEU, NOW).join(FRA, {2026: 1200}, NOW).commit(FRA, {2026: 1000}, {2026: 800}, NOW)
    if status is S.OPEN:
        return i
    i = i.close_participation(DEU, NOW)
    if status is S.PARTICIPATION_CLOSED:
        return i
    i = i.publish_tender(DEU, LOTS, TENDER_END, NOW)
    if status is S.TENDERING:
        return i
    i = i.award(DEU, AWARDS, {CLEAN.id: standing()}, NOW)
    if status is S.AWARDED:
        return i
    i = i.sign_contract(DEU, contract(), NOW)
    if status is S.CONTRACTED:
        return i
    i = i.start_delivery(DEU, NOW)
    if status is S.DELIVERING:
        return i
    return i.close(DEU, NOW)


def test_in_state_builds_every_state() -> None:
    for status in S:
        assert in_state(status).status is status


# --- the initiative's life ------------------------------------------------------------------------------

#: The life of an initiative as the rules describe it, written out independently of the domain's table.
EXPECTED: dict[tuple[str, InitiativeStatus], InitiativeStatus] = {
    ("open", S.PROPOSED): S.OPEN,
    ("close_participation", S.OPEN): S.PARTICIPATION_CLOSED,
    ("publish_tender", S.PARTICIPATION_CLOSED): S.TENDERING,
    ("award", S.TENDERING): S.AWARDED,
    ("sign_contract", S.AWARDED): S.CONTRACTED,
    ("sign_contract", S.CONTRACTED): S.CONTRACTED,
    ("start_delivery", S.CONTRACTED): S.DELIVERING,
    ("close", S.DELIVERING): S.CLOSED,
    ("cancel", S.PROPOSED): S.CANCELLED,
    ("cancel", S.OPEN): S.CANCELLED,
    ("cancel", S.PARTICIPATION_CLOSED): S.CANCELLED,
    ("cancel", S.TENDERING): S.CANCELLED,
    ("cancel", S.AWARDED): S.CANCELLED,
}
ACTIONS = sorted({a for a, _ in EXPECTED})


def test_the_table_is_the_expected_life() -> None:
    assert INITIATIVE_TRANSITIONS == EXPECTED


@pytest.mark.parametrize("status", list(S))
@pytest.mark.parametrize("action", ACTIONS)
def test_initiative_transition_table(status: InitiativeStatus, action: str) -> None:
    if (action, status) in EXPECTED:
        assert next_initiative_status(action, status) is EXPECTED[(action, status)]
    else:
        with pytest.raises(IllegalTransition) as e:
            next_initiative_status(action, status)
        assert e.value.extensions["current_state"] == status.value


#: Each lead-nation step with valid input (sign_contract is tested on its own: it needs an award).
STEPS: dict[str, Callable[[Initiative], Initiative]] = {
    "open": lambda i: i.open(DEU, NOW),
    "close_participation": lambda i: i.close_participation(DEU, NOW),
    "publish_tender": lambda i: i.publish_tender(DEU, LOTS, TENDER_END, NOW),
    "award": lambda i: i.award(DEU, AWARDS, {CLEAN.id: standing()}, NOW),
    "start_delivery": lambda i: i.start_delivery(DEU, NOW),
    "close": lambda i: i.close(DEU, NOW),
    "cancel": lambda i: i.cancel(DEU, "no longer needed (synthetic)", NOW),
}


@pytest.mark.parametrize("status", list(S))
@pytest.mark.parametrize("action", sorted(STEPS))
def test_every_step_in_every_state(status: InitiativeStatus, action: str) -> None:
    before = in_state(status)
    if (action, status) in EXPECTED:
        after = STEPS[action](before)
        assert after.status is EXPECTED[(action, status)]
        assert after.version == before.version + 1
        assert after.history[-1].action == action and after.history[-1].by == DEU.id
    else:
        with pytest.raises(IllegalTransition):
            STEPS[action](before)


def test_propose_defaults_and_validation() -> None:
    i = propose()
    assert i.status is S.PROPOSED and i.version == 1 and i.ocid == "ocds-icep01-i-155"
    assert i.procuring_entity == "DEU" and i.releasability.scope is ReleasabilityScope.ALLIES
    assert propose(NATO).procuring_entity == "NSPA"
    for bad in (
        {"title": " "},
        {"item": Item(" ", "rounds")},
        {"capability_area": " "},
        {"procuring_entity": " "},
        {"participation_deadline": TODAY - timedelta(days=1)},
        {"open_to_partners": ("RUS",)},
        {"required_standards": (STANAG, STANAG)},
        {"releasability": Releasability(owner="FRA", scope=ReleasabilityScope.ALLIES)},
        {"open_to_partners": ("UKR",), "releasability": Releasability(owner="DEU", scope="allies")},
    ):
        with pytest.raises(Unprocessable):
            propose(**bad)
    partners = propose(open_to_partners=("UKR",))
    assert partners.releasability.scope is ReleasabilityScope.ALLIES_PARTNERS
    assert partners.visible_to("UKR") and not partners.visible_to("JPN")


def test_who_may_lead() -> None:
    for who in (DEU_PLANNER, UKR):  # no procurement role; a partner does not lead
        with pytest.raises(Forbidden):
            propose(who)
    i = propose()
    for who in (FRA, NATO, DEU_PLANNER):  # only the lead nation's procurement staff
        for step in (
            lambda who=who: i.open(who, NOW),
            lambda who=who: i.cancel(who, "why not (synthetic)", NOW),
        ):
            with pytest.raises(Forbidden):
                step()
    with pytest.raises(Unprocessable):
        i.cancel(DEU, "  ", NOW)
    opened = in_state(S.OPEN)
    with pytest.raises(Forbidden):
        opened.close_participation(FRA, NOW)
    with pytest.raises(IllegalTransition):  # nobody joined
        propose().open(DEU, NOW).close_participation(DEU, NOW)


# --- participation --------------------------------------------------------------------------------------


def opened(**kw: object) -> Initiative:
    return propose(**kw).open(DEU, NOW)


def test_join_revise_commit() -> None:
    i = opened().join(FRA, {2026: 500, 2027: 0}, NOW)
    p = i.participation("FRA")
    assert p is not None and p.status is P.JOINED and p.indicative == {2026: 500}  # zeros dropped
    assert i.history[-1].action == "join" and i.history[-1].note == "FRA"
    i = i.join(FRA, {2026: 700}, NOW)  # revised while only joined
    assert i.demand.indicative == {2026: 700}
    i = i.commit(FRA, {2026: 600}, {2026: 400}, NOW)
    p = i.participation("FRA")
    assert p is not None and p.status is P.COMMITTED and (p.firm, p.funded) == ({2026: 600}, {2026: 400})
    with pytest.raises(IllegalTransition):  # committed: no going back to indicative
        i.join(FRA, {2026: 1}, NOW)
    i = i.commit(FRA, {2026: 650}, {2026: 650}, NOW)  # a commitment may be revised
    assert i.demand.firm == {2026: 650}
    with pytest.raises(IllegalTransition):
        opened().commit(POL, {2026: 1}, {}, NOW)  # not joined
    for firm, funded in (({}, {}), ({2026: 100}, {2026: 101}), ({2026: 100}, {2027: 1})):
        with pytest.raises(Unprocessable):
            opened().join(POL, {2026: 1}, NOW).commit(POL, firm, funded, NOW)
    for bad in ({}, {2026: 0}, {2023: 5}, {2051: 5}, {2026: -1}):
        with pytest.raises(Unprocessable):
            opened().join(POL, bad, NOW)


def test_join_only_while_open_and_before_the_deadline() -> None:
    with pytest.raises(IllegalTransition):
        propose().join(FRA, {2026: 1}, NOW)
    with pytest.raises(IllegalTransition):
        opened().join(FRA, {2026: 1}, datetime(2026, 7, 1, tzinfo=UTC))
    closed = in_state(S.PARTICIPATION_CLOSED)
    with pytest.raises(IllegalTransition):
        closed.join(POL, {2026: 1}, NOW)
    # A committed participant may still revise until tendering...
    assert closed.commit(FRA, {2026: 900}, {}, NOW).demand.firm == {2026: 900}
    with pytest.raises(IllegalTransition):  # ...but not after
        in_state(S.TENDERING).commit(FRA, {2026: 900}, {}, NOW)


def test_who_may_participate() -> None:
    i = opened()
    with pytest.raises(Forbidden):  # NATO runs initiatives; it does not participate
        i.join(NATO, {2026: 1}, NOW)
    with pytest.raises(Forbidden):  # a partner, only when the initiative is open to it
        i.join(UKR, {2026: 1}, NOW)
    with pytest.raises(Forbidden):
        i.join(DEU_PLANNER, {2026: 1}, NOW)
    with_ukr = opened(open_to_partners=("UKR",))
    assert with_ukr.join(UKR, {2026: 10}, NOW).participation("UKR") is not None
    with pytest.raises(Forbidden):
        with_ukr.join(JPN, {2026: 1}, NOW)
    # A nation the initiative is not released to finds nothing there.
    national = opened(releasability=Releasability(owner="DEU", scope="nations", nations=("FRA",)))
    assert national.join(FRA, {2026: 1}, NOW).participation("FRA") is not None
    with pytest.raises(NotFound):
        national.join(POL, {2026: 1}, NOW)
    # The lead nation takes part in its own initiative like any other.
    assert i.join(DEU, {2026: 5}, NOW).demand.participants == 1


def test_withdrawal_when_only_joined_is_at_once() -> None:
    i = opened().join(POL, {2026: 300}, NOW)
    with pytest.raises(Unprocessable):
        i.withdraw(POL, " ", NOW)
    after, done = i.withdraw(POL, "budget moved to 2027 (synthetic)", NOW)
    p = after.participation("POL")
    assert done and p is not None and p.status is P.WITHDRAWN
    assert p.withdrawal_reason == "budget moved to 2027 (synthetic)"
    assert after.history[-1].action == "withdraw" and after.demand.participants == 0
    with pytest.raises(IllegalTransition):
        after.withdraw(POL, "again", NOW)
    # Withdrawn, a nation may join again while the initiative is open.
    assert after.join(POL, {2026: 100}, NOW).demand.indicative == {2026: 100}
    with pytest.raises(IllegalTransition):
        opened().withdraw(NLD, "never joined", NOW)


def test_withdrawal_after_commitment_needs_the_lead_nation() -> None:
    i = in_state(S.OPEN)  # FRA committed 1000, 800 funded
    asked, done = i.withdraw(FRA, "national stock rebuilt (synthetic)", NOW)
    p = asked.participation("FRA")
    assert not done and p is not None and p.status is P.WITHDRAWAL_REQUESTED
    assert asked.history[-1].action == "request_withdrawal"
    # Until decided the firm quantity still counts.
    assert asked.demand.firm == {2026: 1000} and asked.demand.participants == 1
    with pytest.raises(IllegalTransition):
        asked.commit(FRA, {2026: 1}, {}, NOW)
    with pytest.raises(Forbidden):
        asked.decide_withdrawal(FRA, "FRA", True, NOW)  # not the participant's own decision
    approved = asked.decide_withdrawal(DEU, "FRA", True, NOW)
    p = approved.participation("FRA")
    assert p is not None and p.status is P.WITHDRAWN and approved.history[-1].action == "approve_withdrawal"
    assert approved.demand.participants == 0 and approved.demand.firm == {}
    refused = asked.decide_withdrawal(DEU, "FRA", False, NOW)
    p = refused.participation("FRA")
    assert p is not None and p.status is P.COMMITTED and p.withdrawal_reason is None
    assert refused.history[-1].action == "refuse_withdrawal"
    with pytest.raises(IllegalTransition):
        refused.decide_withdrawal(DEU, "FRA", True, NOW)  # nothing asked
    with pytest.raises(IllegalTransition):
        i.decide_withdrawal(DEU, "POL", True, NOW)  # not a participant
    with pytest.raises(IllegalTransition):  # once tendering, demand is settled
        in_state(S.TENDERING).withdraw(FRA, "too late", NOW)


def test_the_lead_nation_withdraws_directly_as_an_amendment() -> None:
    i = opened().join(DEU, {2026: 400}, NOW).commit(DEU, {2026: 400}, {2026: 400}, NOW)
    after, done = i.withdraw(DEU, "requirement moved to a national contract (synthetic)", NOW)
    p = after.participation("DEU")
    assert done and p is not None and p.status is P.WITHDRAWN
    assert after.history[-1].action == "withdraw_amendment"


def test_a_pending_withdrawal_is_decided_before_the_demand_is_closed() -> None:
    asked, _ = in_state(S.OPEN).join(POL, {2026: 300}, NOW).withdraw(FRA, "stock rebuilt (synthetic)", NOW)
    with pytest.raises(Conflict) as refused:
        asked.close_participation(DEU, NOW)
    assert "FRA" in refused.value.detail and refused.value.extensions["pending_withdrawals"] == ["FRA"]
    assert not isinstance(refused.value, IllegalTransition)  # a 409, but the state is right
    # Decided either way, participation closes.
    assert asked.decide_withdrawal(DEU, "FRA", False, NOW).close_participation(DEU, NOW).status is (
        S.PARTICIPATION_CLOSED
    )
    # A request made after closing holds the tender back until decided.
    closed = in_state(S.PARTICIPATION_CLOSED)
    asked, _ = closed.withdraw(FRA, "stock rebuilt (synthetic)", NOW)
    with pytest.raises(Conflict) as refused:
        asked.publish_tender(DEU, LOTS, TENDER_END, NOW)
    assert "FRA" in refused.value.detail
    kept = asked.decide_withdrawal(DEU, "FRA", False, NOW)
    assert kept.publish_tender(DEU, LOTS, TENDER_END, NOW).status is S.TENDERING


# --- aggregation ----------------------------------------------------------------------------------------

QUANTITIES = st.dictionaries(st.integers(2024, 2050), st.integers(1, 100_000), max_size=4)


@st.composite
def participations(draw: st.DrawFn) -> list[Participation]:
    nations = draw(st.lists(st.sampled_from(sorted(ALLIES)), unique=True, max_size=8))
    out = []
    for nation in nations:
        firm = draw(QUANTITIES)
        funded = {y: f for y, q in firm.items() if (f := draw(st.integers(0, q)))}
        out.append(Participation(nation, draw(st.sampled_from(list(P))), draw(QUANTITIES), firm, funded))
    return out


@given(participations())
def test_aggregate_is_the_sum_over_active_participants(ps: list[Participation]) -> None:
    d = aggregate(ps)
    active = [p for p in ps if p.status in ACTIVE]
    firm = [p for p in active if p.status in FIRM]
    assert d.participants == len(active)
    for year in range(2024, 2051):
        assert d.indicative.get(year, 0) == sum(p.indicative.get(year, 0) for p in active)
        assert d.firm.get(year, 0) == sum(p.firm.get(year, 0) for p in firm)
        assert d.funded.get(year, 0) == sum(p.funded.get(year, 0) for p in firm)
    for figures in (d.indicative, d.firm, d.funded):
        assert list(figures) == sorted(figures) and all(q > 0 for q in figures.values())


@given(
    st.lists(
        st.tuples(st.sampled_from(["FRA", "POL", "NLD"]), st.sampled_from(["join", "commit", "withdraw"]))
    )
)
def test_demand_through_the_rules_is_the_sum_of_what_stands(moves: list[tuple[str, str]]) -> None:
    actors = {"FRA": FRA, "POL": POL, "NLD": NLD}
    i = opened()
    for n, (nation, move) in enumerate(moves):
        q = {2026: 100 + n, 2027: 10 * n + 1}
        try:
            if move == "join":
                i = i.join(actors[nation], q, NOW)
            elif move == "commit":
                i = i.commit(actors[nation], q, {2026: 100}, NOW)
            else:
                i, _ = i.withdraw(actors[nation], "changed plans (synthetic)", NOW)
        except IllegalTransition:
            continue
    standing_ = [p for p in i.participations if p.status is not P.WITHDRAWN]
    assert i.demand.participants == len(standing_)
    assert sum(i.demand.indicative.values()) == sum(sum(p.indicative.values()) for p in standing_)
    assert sum(i.demand.firm.values()) == sum(sum(p.firm.values()) for p in standing_ if p.status in FIRM)


def test_check_quantities() -> None:
    assert check_quantities({2027: 5, 2026: 0, 2025: 1}, "body.q") == {2025: 1, 2027: 5}
    with pytest.raises(Unprocessable) as e:
        check_quantities({2060: 1}, "body.indicative")
    assert e.value.extensions["errors"][0]["location"] == "body.indicative"


# --- tender and award -----------------------------------------------------------------------------------


def test_tender_validation() -> None:
    closed = in_state(S.PARTICIPATION_CLOSED)
    for lots, end in (
        ([], TENDER_END),
        ([Lot("L1", "a", 500), Lot("L1", "b", 500)], TENDER_END),
        (LOTS, TODAY),
        ([Lot("L1", "more than the firm demand", 1001)], TENDER_END),
    ):
        with pytest.raises(Unprocessable):
            closed.publish_tender(DEU, lots, end, NOW)
    with pytest.raises(Forbidden):
        closed.publish_tender(FRA, LOTS, TENDER_END, NOW)


def test_award_goes_to_a_clear_supplier_with_verified_conformance() -> None:
    i = in_state(S.TENDERING)
    awarded = i.award(DEU, AWARDS, {CLEAN.id: standing()}, NOW)
    [a] = awarded.awards
    assert (a.lot_id, a.supplier_id, a.supplier_name, a.quantity) == ("L1", CLEAN.id, CLEAN.name, 1000)
    # Split between two suppliers within the lot's quantity.
    cleared = supplier(
        "Mitigated Ordnance SA", "FRA", ultimate_parent="X Group", ultimate_parent_country="BLR"
    )
    cleared = cleared.clear(
        DEU, "proxy agreement; board without the parent (synthetic)", NOW, adjudicator=ANNA
    )
    split = [
        ("a1", AwardInput("L1", CLEAN.id, 600, 2.4e6, "EUR")),
        ("a2", AwardInput("L1", cleared.id, 400, 1.6e6, "EUR")),
    ]
    assert len(i.award(DEU, split, {CLEAN.id: standing(), cleared.id: standing(cleared)}, NOW).awards) == 2
    over = [*split, ("a3", AwardInput("L1", CLEAN.id, 1, 1.0, "EUR"))]
    with pytest.raises(Unprocessable):
        i.award(DEU, over, {CLEAN.id: standing(), cleared.id: standing(cleared)}, NOW)
    with pytest.raises(Unprocessable):
        i.award(DEU, [("a1", AwardInput("L9", CLEAN.id, 1, 1.0, "EUR"))], {CLEAN.id: standing()}, NOW)
    with pytest.raises(Unprocessable):
        i.award(DEU, AWARDS, {}, NOW)  # unknown supplier
    with pytest.raises(Unprocessable):
        i.award(DEU, [], {}, NOW)
    with pytest.raises(Forbidden):
        i.award(FRA, AWARDS, {CLEAN.id: standing()}, NOW)


@pytest.mark.parametrize("screening", [Screening.PENDING, Screening.POTENTIAL_MATCH, Screening.BLOCKED])
def test_award_refused_to_a_supplier_not_clear(screening: Screening) -> None:
    s = replace(CLEAN, screening=screening)
    with pytest.raises(AwardRefused) as e:
        in_state(S.TENDERING).award(DEU, AWARDS, {s.id: standing(s)}, NOW)
    assert e.value.status == 409 and e.value.slug == "award-refused"
    assert screening.value.replace("_", " ") in e.value.detail and "clear or cleared" in e.value.detail
    assert e.value.extensions == {"supplier_id": s.id, "screening": screening.value}


def test_award_refused_without_verified_conformance_for_each_required_edition() -> None:
    two = propose(required_standards=(STANAG, RequiredStandard("2459", 1)))
    i = two.open(DEU, NOW).join(FRA, {2026: 1000}, NOW).commit(FRA, {2026: 1000}, {}, NOW)
    i = i.close_participation(DEU, NOW).publish_tender(DEU, LOTS, TENDER_END, NOW)
    with pytest.raises(AwardRefused) as e:
        i.award(DEU, AWARDS, {CLEAN.id: standing(CLEAN, ("4569", 3), ("4569", 2))}, NOW)
    assert e.value.extensions["missing_standards"] == ["2459 Ed. 1"]
    assert "holds no verified conformance with 2459 Ed. 1" in e.value.detail
    with pytest.raises(AwardRefused) as e:  # an older edition is not the required one
        in_state(S.TENDERING).award(DEU, AWARDS, {CLEAN.id: standing(CLEAN, ("4569", 2))}, NOW)
    assert e.value.extensions["missing_standards"] == ["4569 Ed. 3"]
    full = standing(CLEAN, ("4569", 3), ("2459", 1))
    assert i.award(DEU, AWARDS, {CLEAN.id: full}, NOW).status is S.AWARDED


ALLIES_RELEASE = Releasability(owner="DEU", scope=ReleasabilityScope.ALLIES)
DEU_NATIONAL = Releasability(owner="DEU", scope=ReleasabilityScope.NATIONS, nations=("NATO",))
STANDARDS = {"std-3": KnownStandard("std-3", "4569", 3, "promulgated")}


def known(
    release: Releasability | None = ALLIES_RELEASE,
    manufacturer: str = CLEAN.name,
    code: str = "SM-155-HE",
    claim_id: str = "c1",
) -> KnownConformance:
    return KnownConformance(claim_id, code, "std-3", "verified", None, manufacturer, release)


def test_an_award_counts_only_claims_every_reader_of_the_initiative_may_read() -> None:
    i = in_state(S.TENDERING)  # DEU's, released to all Allies
    assert i.releasability.scope is ReleasabilityScope.ALLIES

    def award_with(*claims: KnownConformance, audience: Releasability = i.releasability) -> Initiative:
        standing = supplier_standing(CLEAN, claims, STANDARDS, TODAY, audience)
        return i.award(DEU, AWARDS, {CLEAN.id: standing}, NOW)

    assert award_with(known()).status is S.AWARDED
    # A national claim (DEU and NATO), a claim of unknown release, one to FRA only: FRA may read none of
    # them, nor every Ally.
    to_fra = Releasability(owner="DEU", scope=ReleasabilityScope.NATIONS, nations=("FRA",))
    for release in (DEU_NATIONAL, None, to_fra):
        with pytest.raises(AwardRefused) as refused:
            award_with(known(release))
        assert refused.value.extensions["missing_standards"] == ["4569 Ed. 3"]
    # ... but an initiative only DEU and FRA read may rest on a claim released to FRA.
    assert usable_claims(CLEAN, [known(to_fra)], to_fra) == [known(to_fra)]
    # Allies and a partner read the initiative: an Allies-only claim is not enough.
    with_ukr = Releasability(owner="DEU", scope=ReleasabilityScope.ALLIES_PARTNERS, nations=("UKR",))
    assert usable_claims(CLEAN, [known()], with_ukr) == []
    assert usable_claims(CLEAN, [known(with_ukr)], with_ukr) == [known(with_ukr)]


def test_a_refusal_reads_the_same_whether_an_unreadable_claim_exists_or_none() -> None:
    i = in_state(S.TENDERING)
    details = []
    for claims in (
        [],
        [known(DEU_NATIONAL)],
        [known(DEU_NATIONAL), known(manufacturer="Other AG", claim_id="c2")],
    ):
        with pytest.raises(AwardRefused) as refused:
            i.award(
                DEU,
                AWARDS,
                {CLEAN.id: supplier_standing(CLEAN, claims, STANDARDS, TODAY, i.releasability)},
                NOW,
            )
        details.append((refused.value.detail, refused.value.extensions))
    assert details[0] == details[1] == details[2]


def test_a_claim_counts_for_the_product_of_its_manufacturer_only() -> None:
    assert usable_claims(CLEAN, [known()], ALLIES_RELEASE) == [known()]
    # The same code made by someone else is another product.
    assert usable_claims(CLEAN, [known(manufacturer="Other Munitions AG (synthetic)")], ALLIES_RELEASE) == []
    assert usable_claims(CLEAN, [known(manufacturer="")], ALLIES_RELEASE) == []
    # The manufacturer as a person would write the supplier's name, or its organisation id.
    for maker in (f"  {CLEAN.name.upper()} ", CLEAN.organisation_id.lower()):
        assert usable_claims(CLEAN, [known(manufacturer=maker)], ALLIES_RELEASE) != []
    # A code the supplier does not offer.
    assert usable_claims(CLEAN, [known(code="OTHER")], ALLIES_RELEASE) == []


def test_verified_editions_only_from_verified_unexpired_claims_of_the_products() -> None:
    standards = {
        "std-3": KnownStandard("std-3", "4569", 3, "promulgated"),
        "std-2": KnownStandard("std-2", "4569", 2, "superseded"),
    }
    claims = [
        KnownConformance("c1", "SM-155-HE", "std-3", "verified", TODAY + timedelta(days=30)),
        KnownConformance("c2", "SM-155-HE", "std-2", "verified", None),
        KnownConformance("c3", "OTHER", "std-3", "verified", None),
    ]
    assert verified_editions(["SM-155-HE"], claims, standards, TODAY) == {
        "SM-155-HE": {("4569", 3), ("4569", 2)}
    }
    # Per product: what one product holds is never credited to another.
    assert verified_editions(["SM-155-HE", "OTHER", "NONE"], claims, standards, TODAY) == {
        "SM-155-HE": {("4569", 3), ("4569", 2)},
        "OTHER": {("4569", 3)},
        "NONE": frozenset(),
    }
    for c in (
        KnownConformance("c1", "SM-155-HE", "std-3", "verified", TODAY),  # expires today: no longer valid
        KnownConformance("c1", "SM-155-HE", "std-3", "expired", TODAY - timedelta(days=1)),
        KnownConformance("c1", "SM-155-HE", "std-3", "claimed", None),
        KnownConformance("c1", "SM-155-HE", "std-3", "under_test", None),
        KnownConformance("c1", "SM-155-HE", "std-3", "rejected", None),
        KnownConformance("c1", "SM-155-HE", "std-unknown", "verified", None),
        KnownConformance("c1", "OTHER", "std-3", "verified", None),
    ):
        assert verified_editions(["SM-155-HE"], [c], standards, TODAY) == {"SM-155-HE": frozenset()}
    # Expired conformance refuses the award.
    expired = [KnownConformance("c1", "SM-155-HE", "std-3", "verified", TODAY - timedelta(days=1))]
    verified = verified_editions(CLEAN.products, expired, standards, TODAY)
    with pytest.raises(AwardRefused):
        in_state(S.TENDERING).award(DEU, AWARDS, {CLEAN.id: SupplierStanding(CLEAN, verified)}, NOW)


def test_one_product_must_hold_every_required_edition() -> None:
    two = propose(required_standards=(STANAG, RequiredStandard("2459", 1)))
    i = two.open(DEU, NOW).join(FRA, {2026: 1000}, NOW).commit(FRA, {2026: 1000}, {}, NOW)
    i = i.close_participation(DEU, NOW).publish_tender(DEU, LOTS, TENDER_END, NOW)
    s = supplier(products=("SM-155-HE", "SM-155-ER", "SM-155-ALL"))
    held = {"SM-155-HE": frozenset({("4569", 3)}), "SM-155-ER": frozenset({("2459", 1)})}
    split = SupplierStanding(s, held)

    def award(standing: SupplierStanding, product_code: str | None = None) -> Initiative:
        a = AwardInput("L1", s.id, 1000, 4e6, "EUR", product_code=product_code)
        return i.award(DEU, [("a1", a)], {s.id: standing}, NOW)

    # Between them the products hold both editions; no one product does: refused, naming the closest.
    with pytest.raises(AwardRefused) as e:
        award(split)
    assert e.value.extensions == {
        "supplier_id": s.id,
        "product_code": "SM-155-HE",
        "missing_standards": ["2459 Ed. 1"],
    }
    assert "no single product of" in e.value.detail and "the closest, SM-155-HE," in e.value.detail
    # A product named: that product must hold them all.
    with pytest.raises(AwardRefused) as e:
        award(split, "SM-155-ER")
    assert e.value.extensions["product_code"] == "SM-155-ER"
    assert e.value.extensions["missing_standards"] == ["4569 Ed. 3"]
    assert f"{s.name}'s product SM-155-ER holds no verified conformance with 4569 Ed. 3" in e.value.detail
    with pytest.raises(Unprocessable) as u:  # not one of the supplier's products
        award(split, "OTHER-155")
    assert u.value.extensions["errors"][0]["location"] == "body.awards.0.product_code"
    # One product holding both: awarded, named or not.
    full = SupplierStanding(s, {**split.verified, "SM-155-ALL": frozenset({("4569", 3), ("2459", 1)})})
    assert award(full).status is S.AWARDED
    assert award(full, "SM-155-ALL").status is S.AWARDED
    with pytest.raises(AwardRefused):
        award(full, "SM-155-HE")
    # A supplier without products holds nothing.
    bare = supplier("Bare Trading GmbH", products=())
    with pytest.raises(AwardRefused) as e:
        i.award(
            DEU,
            [("a1", AwardInput("L1", bare.id, 1000, 4e6, "EUR"))],
            {bare.id: SupplierStanding(bare, {})},
            NOW,
        )
    assert e.value.extensions["product_code"] is None and len(e.value.extensions["missing_standards"]) == 2


def test_a_bid_or_award_names_only_a_supplier_released_as_widely_as_the_initiative() -> None:
    i = in_state(S.TENDERING)  # released to all Allies
    national = supplier("Quiet Optics GmbH", releasability=Releasability(owner="DEU"))
    bid = Bid("b1", "L1", national.id, 1000, 4e6, "EUR", NOW)
    with pytest.raises(Unprocessable) as e:
        i.record_bid(DEU, bid, national, NOW)
    [error] = e.value.extensions["errors"]
    assert error["location"] == "body.supplier_id"
    assert "not released to ALLIES" in error["message"]
    assert "release the supplier record as widely as the initiative" in error["message"]
    awards = [("a1", AwardInput("L1", national.id, 1000, 4e6, "EUR"))]
    with pytest.raises(Unprocessable) as e:
        i.award(DEU, awards, {national.id: standing(national)}, NOW)
    assert e.value.extensions["errors"][0]["location"] == "body.awards.0.supplier_id"
    # An initiative open to UKR: a supplier released to Allies only is not named in it.
    to_ukr = Releasability(owner="DEU", scope=ReleasabilityScope.ALLIES_PARTNERS, nations=("UKR",))
    open_to_ukr = replace(i, releasability=to_ukr)
    with pytest.raises(Unprocessable) as e:
        open_to_ukr.record_bid(DEU, replace(bid, supplier_id=CLEAN.id), CLEAN, NOW)
    assert "not released to UKR" in e.value.extensions["errors"][0]["message"]
    # Another Ally's record released to Allies reaches every reader of the lead nation's initiative.
    french = supplier("Synthetic Obus SA", "FRA", actor=FRA)
    assert i.record_bid(DEU, replace(bid, supplier_id=french.id), french, NOW).bids
    awards = [("a1", AwardInput("L1", french.id, 1000, 4e6, "EUR"))]
    assert i.award(DEU, awards, {french.id: standing(french)}, NOW).status is S.AWARDED


def test_readers_missing() -> None:
    allies = Releasability(owner="DEU", scope=ReleasabilityScope.ALLIES)
    french = Releasability(owner="FRA", scope=ReleasabilityScope.ALLIES)
    national = Releasability(owner="DEU")
    assert readers_missing(allies, french) == []  # FRA is among the Allies
    assert readers_missing(national, allies) == ["ALLIES"]
    nato_only = Releasability(owner="NATO")
    assert readers_missing(allies, nato_only) == []  # NATO reads what Allies read
    assert readers_missing(national, nato_only) == ["NATO"]
    to_ukr = Releasability(owner="DEU", scope=ReleasabilityScope.ALLIES_PARTNERS, nations=("UKR", "JPN"))
    assert readers_missing(allies, to_ukr) == ["JPN", "UKR"]
    polish_and_ukr = Releasability(owner="POL", scope=ReleasabilityScope.NATIONS, nations=("UKR",))
    assert readers_missing(to_ukr, polish_and_ukr) == []


def test_contracts_and_delivery() -> None:
    awarded = in_state(S.AWARDED)
    with pytest.raises(Unprocessable):
        awarded.sign_contract(DEU, contract("nope"), NOW)
    with pytest.raises(Unprocessable):
        awarded.sign_contract(DEU, replace(contract(), period_end=date(2026, 1, 1)), NOW)
    with pytest.raises(Forbidden):
        awarded.sign_contract(FRA, contract(), NOW)
    m = Milestone("m1", "first 500 rounds", date(2026, 12, 1), 500)
    signed = awarded.sign_contract(DEU, contract("a1", "c1", m), NOW)
    assert signed.status is S.CONTRACTED and signed.contracts[0].supplier_id == CLEAN.id
    with pytest.raises(Conflict):  # one contract per award
        signed.sign_contract(DEU, contract("a1", "c2"), NOW)
    with pytest.raises(IllegalTransition):  # cancelled after award: no contract
        awarded.cancel(DEU, "funding withdrawn (synthetic)", NOW).sign_contract(DEU, contract(), NOW)
    delivering = signed.start_delivery(DEU, NOW)
    with pytest.raises(IllegalTransition):  # a milestone still open
        delivering.close(DEU, NOW)
    with pytest.raises(Unprocessable):
        delivering.record_milestone(DEU, "c1", "m1", TODAY + timedelta(days=1), "", NOW)
    with pytest.raises(Unprocessable):
        delivering.record_milestone(DEU, "c1", "m1", None, " ", NOW)
    with pytest.raises(NotFound):
        delivering.record_milestone(DEU, "c1", "m9", TODAY, "", NOW)
    met, milestone = delivering.record_milestone(DEU, "c1", "m1", TODAY, "", NOW)
    assert milestone.status is MilestoneStatus.MET and met.history[-1].action == "milestone_met"
    with pytest.raises(IllegalTransition):
        met.record_milestone(DEU, "c1", "m1", TODAY, "", NOW)
    assert met.close(DEU, NOW).status is S.CLOSED


def test_a_second_lot_gets_its_own_contract_while_contracted() -> None:
    i = propose().open(DEU, NOW).join(FRA, {2026: 2000}, NOW).commit(FRA, {2026: 2000}, {}, NOW)
    i = i.close_participation(DEU, NOW)
    i = i.publish_tender(DEU, [Lot("L1", "first", 1000), Lot("L2", "second", 1000)], TENDER_END, NOW)
    two = [
        ("a1", AwardInput("L1", CLEAN.id, 1000, 1.0e6, "EUR")),
        ("a2", AwardInput("L2", CLEAN.id, 1000, 1.0e6, "EUR")),
    ]
    i = i.award(DEU, two, {CLEAN.id: standing()}, NOW).sign_contract(DEU, contract("a1", "c1"), NOW)
    i = i.sign_contract(DEU, contract("a2", "c2"), NOW)
    assert i.status is S.CONTRACTED and [c.id for c in i.contracts] == ["c1", "c2"]


# --- standards awareness --------------------------------------------------------------------------------


def test_an_initiative_is_flagged_once_for_a_withdrawn_edition() -> None:
    i = in_state(S.TENDERING)
    flagged = i.flag(STANAG, "superseded", NOW)
    assert flagged is not None and flagged.version == i.version + 1 and flagged.status is S.TENDERING
    [f] = flagged.flags
    assert (f.standard, f.standard_status) == (STANAG, "superseded")
    assert f.reason == "required standard 4569 Ed. 3 is superseded"
    assert flagged.history[-1].action == "flagged" and flagged.history[-1].by == "standards"
    assert flagged.flag(STANAG, "superseded", NOW) is None  # once
    assert i.flag(RequiredStandard("4569", 2), "superseded", NOW) is None  # not required
    for status in (S.CONTRACTED, S.DELIVERING, S.CLOSED, S.CANCELLED):
        assert in_state(status).flag(STANAG, "cancelled", NOW) is None
    for status in (S.PROPOSED, S.OPEN, S.PARTICIPATION_CLOSED, S.AWARDED):
        assert in_state(status).flag(STANAG, "cancelled", NOW) is not None


# --- call-offs ------------------------------------------------------------------------------------------


def test_a_call_off_is_delivered_by_a_day_to_come() -> None:
    framework = in_state(S.CONTRACTED)
    assert framework.contracts[0].framework

    def call_off(delivery_by: date) -> CallOff:
        return CallOff("co1", "ocds-icep01-co1", "c1", "FRA", 100, 400_000.0, "EUR", delivery_by, NOW)

    for past in (TODAY - timedelta(days=1), TODAY):
        with pytest.raises(Unprocessable) as refused:
            framework.place_call_off(DEU, call_off(past), NOW)
        assert refused.value.extensions["errors"][0]["location"] == "body.delivery_by"
    placed = framework.place_call_off(DEU, call_off(TODAY + timedelta(days=1)), NOW)
    assert [c.id for c in placed.call_offs] == ["co1"]


# --- demand picture and capacity ------------------------------------------------------------------------


def signal(
    nation: Actor, firmness: Firmness, quantities: dict[int, int], product: str = ROUND.product
) -> DemandSignal:
    return DemandSignal.publish(
        id=f"sig-{nation.nation}-{firmness.value}",
        actor=nation,
        product=product,
        capability_area="munitions",
        unit="rounds",
        firmness=firmness,
        quantities=quantities,
        now=NOW,
    )


def test_initiative_demand_by_firmness() -> None:
    i = opened().join(FRA, {2026: 1200}, NOW).commit(FRA, {2026: 1000}, {2026: 800}, NOW)
    i = i.join(POL, {2026: 300, 2027: 50}, NOW)
    i, _ = i.join(NLD, {2026: 999}, NOW).withdraw(NLD, "changed plans (synthetic)", NOW)
    d = initiative_demand(i, "DEU", 3)  # as the lead nation sees it
    # FRA: 800 funded, 200 firm unfunded (planned), 200 indicative beyond the firm; POL: indicative only.
    assert d == {2026: YearDemand(indicative=200 + 300, planned=200, funded=800), 2027: YearDemand(50)}
    assert d[2026].total == 1500 and d[2026].firm == 1000
    contracted = initiative_demand(in_state(S.CONTRACTED), "DEU", 3)
    assert contracted == {2026: YearDemand(indicative=200, contracted=1000)}
    assert initiative_demand(in_state(S.CANCELLED), "DEU", 3) == {}


def test_demand_picture_adds_signals_and_initiatives_per_product() -> None:
    signals = [
        signal(POL, Firmness.FUNDED, {2026: 5000, 2027: 5000}),
        signal(NLD, Firmness.INDICATIVE, {2026: 100}),
        signal(FRA, Firmness.PLANNED, {2026: 7}, product="PAC-3 MSE (synthetic)"),
    ]
    initiatives = [in_state(S.OPEN), in_state(S.CANCELLED)]
    by_product = {p.product: p for p in demand_picture(signals, initiatives, "DEU", 3)}
    assert list(by_product) == sorted(by_product)
    rounds = by_product[ROUND.product]
    assert (rounds.unit, rounds.signals, rounds.initiatives) == (
        "rounds",
        2,
        1,
    )  # the cancelled one adds none
    assert rounds.years == {
        2026: YearDemand(indicative=100 + 200, planned=200, funded=5000 + 800),
        2027: YearDemand(funded=5000),
    }
    assert by_product["PAC-3 MSE (synthetic)"].years == {2026: YearDemand(planned=7)}


def test_demand_in_different_units_is_never_added_up() -> None:
    rounds = signal(POL, Firmness.FUNDED, {2026: 1000})
    thousands = replace(signal(NLD, Firmness.FUNDED, {2026: 5}), unit="thousand rounds")
    lines = demand_picture([rounds, thousands], [in_state(S.OPEN)], "DEU", 3)
    assert [(p.product, p.unit, p.signals, p.initiatives) for p in lines] == [
        (ROUND.product, "rounds", 1, 1),
        (ROUND.product, "thousand rounds", 1, 0),
    ]
    assert lines[0].years[2026].funded == 1000 + 800 and lines[1].years[2026].funded == 5


def test_demand_against_capacity_arithmetic() -> None:
    demand = {2026: YearDemand(indicative=300, planned=200, funded=5800), 2027: YearDemand(funded=5000)}
    capacity = {2025: 1000, 2026: 4000}
    lines = demand_against_capacity(demand, capacity)
    assert [(b.year, b.capacity, b.gap, b.firm_gap) for b in lines] == [
        (2025, 1000, -1000, -1000),
        (2026, 4000, 6300 - 4000, 6000 - 4000),
        (2027, 0, 5000, 5000),
    ]
    assert lines[0].demand == YearDemand()
    assert all(b.shortfall_reported == 0 for b in lines)
    # Shortfalls the plans reported come out per year, also in a year without demand or capacity.
    lines = demand_against_capacity(demand, capacity, {2026: 750, 2028: 10})
    assert [(b.year, b.shortfall_reported, b.gap) for b in lines] == [
        (2025, 0, -1000),
        (2026, 750, 2300),
        (2027, 0, 5000),
        (2028, 10, 0),
    ]


def test_demand_signals_come_from_nations() -> None:
    with pytest.raises(Forbidden):
        signal(NATO, Firmness.FUNDED, {2026: 1})
    with pytest.raises(Unprocessable):
        signal(POL, Firmness.FUNDED, {2026: 0})
    with pytest.raises(Unprocessable) as blank:
        DemandSignal.publish(
            id="sig-blank",
            actor=POL,
            product=ROUND.product,
            capability_area="  ",
            unit="rounds",
            firmness=Firmness.FUNDED,
            quantities={2026: 1},
            now=NOW,
        )
    assert blank.value.extensions["errors"][0]["location"] == "body.capability_area"
    s = signal(POL, Firmness.INDICATIVE, {2026: 10})
    with pytest.raises(Forbidden):
        s.revise(FRA, Firmness.FUNDED, {2026: 10}, NOW)
    revised = s.revise(POL, Firmness.FUNDED, {2026: 12}, NOW)
    assert (revised.firmness, revised.quantities, revised.version) == (Firmness.FUNDED, {2026: 12}, 2)


# --- suppliers and screening ----------------------------------------------------------------------------


def test_register_then_screen_clear() -> None:
    pending = supplier(lists=None)
    assert pending.screening is Screening.PENDING and not pending.awardable and pending.lists_version is None
    s = pending.screen(LISTS, NOW)
    assert s.screening is Screening.CLEAR and s.matches == () and s.awardable
    assert s.lists_version == LISTS.version and s.version == 2
    assert [c.action for c in s.history] == ["registered", "screened"] and s.history[-1].by == "screening"
    assert s.releasability == Releasability(owner="DEU", scope=ReleasabilityScope.ALLIES)


def test_registration_rules() -> None:
    for bad in (
        {"name": " "},
        {"organisation_id": ""},
        {"ownership_chain": (Owner("A", "DEU", 0),)},
        {"ownership_chain": (Owner("A", "DEU", 101),)},
        {"ultimate_parent": "Parent AG (synthetic)"},  # without its country
        {"releasability": Releasability(owner="FRA", scope=ReleasabilityScope.ALLIES)},
    ):
        with pytest.raises(Unprocessable):
            supplier(**bad)
    with pytest.raises(Forbidden):
        supplier(actor=DEU_PLANNER)
    s = supplier(products=(" SM-155-HE ", "SM-155-HE", "", "SM-155-ER"))
    assert s.products == ("SM-155-HE", "SM-155-ER")


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"country_of_incorporation": "RUS"}, "incorporated in RUS"),
        (
            {"ultimate_parent": "Far Holdings (synthetic)", "ultimate_parent_country": "BLR"},
            "ultimate parent Far Holdings (synthetic) in BLR",
        ),
        (
            {"ownership_chain": (Owner("Minor Fund (synthetic)", "RUS", 12.5),)},
            "owner Minor Fund (synthetic) (12.5 %) in RUS",
        ),
        (
            {"ultimate_parent": "sample sanctioned holdings (SYNTHETIC)", "ultimate_parent_country": "CYP"},
            "sample sanctioned holdings (SYNTHETIC) is a restricted party",
        ),
        (
            {"ownership_chain": (Owner("Sample Sanctioned Holdings (synthetic)", "CYP", 30),)},
            "Sample Sanctioned Holdings (synthetic) is a restricted party",
        ),
        (
            {"name": "Sample Sanctioned Holdings (synthetic)"},
            "Sample Sanctioned Holdings (synthetic) is a restricted party",
        ),
    ],
)
def test_a_match_is_a_potential_match_with_its_reason(kw: dict[str, object], reason: str) -> None:
    s = supplier(**kw)
    assert s.screening is Screening.POTENTIAL_MATCH and reason in s.matches and not s.awardable
    assert s.history[-1].note == "; ".join(s.matches)


def test_every_reason_is_listed_once() -> None:
    s = supplier(
        country="RUS",
        ultimate_parent="Sample Sanctioned Holdings (synthetic)",
        ultimate_parent_country="RUS",
        ownership_chain=(Owner("Sample Sanctioned Holdings (synthetic)", "RUS", 100),),
    )
    assert s.matches == (
        "incorporated in RUS",
        "ultimate parent Sample Sanctioned Holdings (synthetic) in RUS",
        "owner Sample Sanctioned Holdings (synthetic) (100 %) in RUS",
        "Sample Sanctioned Holdings (synthetic) is a restricted party",
    )


def test_a_person_adjudicates_a_potential_match() -> None:
    s = supplier(
        "Eastern Alloys BV", "NLD", ultimate_parent="Far Holdings (synthetic)", ultimate_parent_country="BLR"
    )
    for who in (FRA, DEU_PLANNER, UKR):  # only the registering nation's or NATO's procurement staff
        with pytest.raises(Forbidden):
            s.clear(who, "mitigated (synthetic)", NOW, adjudicator=ANNA)
    with pytest.raises(Unprocessable):
        s.clear(DEU, "  ", NOW, adjudicator=ANNA)
    cleared = s.clear(NATO, "voting trust; no access to classified work (synthetic)", NOW, adjudicator=ANNA)
    assert cleared.screening is Screening.CLEARED and cleared.awardable
    # The person is recorded, with the client they acted through.
    assert cleared.adjudicator == "Anna Example (nato-proc)" and cleared.adjudicated == s.matches
    assert cleared.mitigation == "voting trust; no access to classified work (synthetic)"
    assert cleared.history[-1].action == "cleared" and cleared.history[-1].by == "Anna Example (nato-proc)"
    with pytest.raises(IllegalTransition):  # adjudicated already
        cleared.block(DEU, "changed my mind", NOW, adjudicator=ANNA)
    with pytest.raises(Unprocessable):
        s.block(DEU, " ", NOW, adjudicator=ANNA)
    reason = "control by a restricted parent cannot be mitigated (synthetic)"
    blocked = s.block(DEU, reason, NOW, adjudicator=" Bernd  Example ")
    assert blocked.screening is Screening.BLOCKED and not blocked.awardable
    assert blocked.adjudicator == "Bernd Example (deu-proc)" and blocked.blocked_reason == reason
    with pytest.raises(IllegalTransition):  # the machine never adjudicates a clean supplier
        CLEAN.clear(DEU, "nothing to clear", NOW, adjudicator=ANNA)


def test_an_adjudicator_is_a_named_person_of_the_registering_ally_or_nato() -> None:
    s = supplier(
        "Eastern Alloys BV", "NLD", ultimate_parent="Far Holdings (synthetic)", ultimate_parent_country="BLR"
    )
    for nobody in ("", "   ", "\t\n"):
        with pytest.raises(Unprocessable) as e:
            s.clear(DEU, "mitigated (synthetic)", NOW, adjudicator=nobody)
        assert e.value.extensions["errors"][0]["location"] == "body.adjudicator"
        with pytest.raises(Unprocessable):
            s.block(DEU, "no mitigation (synthetic)", NOW, adjudicator=nobody)
    # A partner registers a supplier, but does not adjudicate it: NATO does.
    ukr_owned = supplier(
        "Dnipro Optics (synthetic)", "UKR", actor=UKR, ownership_chain=(Owner("X", "RUS", 5),)
    )
    assert ukr_owned.screening is Screening.POTENTIAL_MATCH and ukr_owned.nation == "UKR"
    for who in (UKR, JPN, DEU):
        with pytest.raises(Forbidden) as f:
            ukr_owned.clear(who, "mitigated (synthetic)", NOW, adjudicator=ANNA)
        assert "NATO's procurement staff" in f.value.detail
        with pytest.raises(Forbidden):
            ukr_owned.block(who, "no mitigation (synthetic)", NOW, adjudicator=ANNA)
    assert ukr_owned.clear(NATO, "minor stake, no control (synthetic)", NOW, adjudicator=ANNA).awardable


def test_rescreening() -> None:
    parent = {"ultimate_parent": "Far Holdings (synthetic)", "ultimate_parent_country": "BLR"}
    cleared = supplier("Eastern Alloys BV", "NLD", **parent).clear(
        DEU, "voting trust (synthetic)", NOW, adjudicator=ANNA
    )
    # The same lists again (or lists with the same matches): the clearance covers them.
    again = cleared.screen(LISTS, NOW)
    assert again.screening is Screening.CLEARED and again.matches == cleared.matches
    wider = ScreeningLists(LISTS.countries | {"NLD"}, LISTS.parties)
    assert wider.version != LISTS.version
    # A new match: a person must look again.
    flagged = cleared.screen(wider, NOW)
    assert flagged.screening is Screening.POTENTIAL_MATCH and "incorporated in NLD" in flagged.matches
    assert flagged.lists_version == wider.version
    # The restriction lifted: clear, whatever was adjudicated before.
    lifted = ScreeningLists(frozenset({"RUS"}), LISTS.parties)
    assert cleared.screen(lifted, NOW).screening is Screening.CLEAR
    # A clean supplier that becomes a match.
    assert (
        CLEAN.screen(ScreeningLists(frozenset({"DEU"}), frozenset()), NOW).screening
        is Screening.POTENTIAL_MATCH
    )
    # A block stands, even when nothing matches any more.
    blocked = supplier("Eastern Alloys BV", "NLD", **parent).block(
        DEU, "no mitigation (synthetic)", NOW, adjudicator=ANNA
    )
    assert blocked.screen(lifted, NOW).screening is Screening.BLOCKED


def test_the_lists_version_follows_their_content() -> None:
    same = ScreeningLists(frozenset({"BLR", "RUS"}), frozenset({"SAMPLE SANCTIONED HOLDINGS (SYNTHETIC)"}))
    assert same.version == LISTS.version  # order and case of party names do not matter
    assert ScreeningLists(frozenset({"RUS"}), LISTS.parties).version != LISTS.version
    assert ScreeningLists(LISTS.countries, frozenset()).version != LISTS.version


PARTY = "Sample Sanctioned Holdings (synthetic)"


@pytest.mark.parametrize(
    "variant",
    [
        "  Sample Sanctioned Holdings (synthetic)  ",  # padded
        "Sample  Sanctioned\tHoldings\n(synthetic)",  # whitespace inside
        "SAMPLE SANCTIONED HOLDINGS (SYNTHETIC)",  # case
        "Sample\u00a0Sanctioned\u2003Holdings (synthetic)",  # no-break and em spaces
        "\uff33ample Sanctioned Holdings \uff08synthetic\uff09",  # full-width letters and brackets
        "Sam\u200bple Sanctioned Hol\u00addings (synthetic)",  # zero-width space, soft hyphen
        "sample sanctioned holdings (\u017fynthetic)",  # long s: case-folds to s
    ],
)
@pytest.mark.parametrize("where", ["name", "ultimate_parent", "owner"])
def test_a_restricted_party_is_found_whatever_its_spacing_case_or_unicode_form(
    variant: str, where: str
) -> None:
    kw: dict[str, object] = {
        "name": {"name": variant},
        "ultimate_parent": {"ultimate_parent": variant, "ultimate_parent_country": "CYP"},
        "owner": {"ownership_chain": (Owner(variant, "CYP", 30),)},
    }[where]
    s = supplier(**kw)
    assert s.screening is Screening.POTENTIAL_MATCH
    assert any(m.endswith("is a restricted party") for m in s.matches), s.matches


def test_the_lists_are_read_as_the_suppliers_are() -> None:
    # A party configured with odd spacing, case or width still matches the plain name, and the lists'
    # version does not change with such variants.
    for configured in (
        "  sample  SANCTIONED holdings (synthetic)\u00a0",
        "\uff33AMPLE Sanctioned Holdings (synthetic)",
    ):
        lists = ScreeningLists(LISTS.countries, frozenset({configured}))
        assert lists.version == LISTS.version
        assert supplier(PARTY, lists=lists).screening is Screening.POTENTIAL_MATCH
    assert name_key(" A\u200bb  c\tD ") == "ab c d"


def test_registration_trims_the_names_screening_reads() -> None:
    s = supplier(
        ultimate_parent="  Parent AG (synthetic)\n",
        ultimate_parent_country="DEU",
        ownership_chain=(Owner("\tParent AG (synthetic) ", "DEU", 60), Owner(" Fund (synthetic)", "DEU", 40)),
    )
    assert s.ultimate_parent == "Parent AG (synthetic)"
    assert [o.name for o in s.ownership_chain] == ["Parent AG (synthetic)", "Fund (synthetic)"]
    for bad, location in (
        ({"ultimate_parent": "   ", "ultimate_parent_country": "DEU"}, "body.ultimate_parent"),
        ({"ownership_chain": (Owner("  ", "DEU", 10),)}, "body.ownership_chain.0.name"),
        # The owners' shares add up to more than the whole.
        ({"ownership_chain": (Owner("A", "DEU", 60), Owner("B", "DEU", 40.5))}, "body.ownership_chain"),
    ):
        with pytest.raises(Unprocessable) as e:
            supplier(**bad)
        assert e.value.extensions["errors"][0]["location"] == location
    assert "100.5 %" in str(e.value.detail)


def test_a_block_by_another_nation_on_the_same_organisation_is_a_match() -> None:
    mine = supplier("Harbour Fuzes Ltd (synthetic)", "GBR", lists=None)
    s = mine.screen(LISTS, NOW, blocked_elsewhere=["FRA", "NLD", "FRA"])
    assert s.screening is Screening.POTENTIAL_MATCH and not s.awardable
    assert s.matches == (
        f"organisation {s.organisation_id} is blocked by FRA",
        f"organisation {s.organisation_id} is blocked by NLD",
    )
    # A person who adjudicated exactly these keeps the clearance on the next screening; a new block
    # elsewhere is a new match for a person to look at.
    cleared = s.clear(DEU, "FRA's block concerns another site (synthetic)", NOW, adjudicator=ANNA)
    assert cleared.screen(LISTS, NOW, ["FRA", "NLD"]).screening is Screening.CLEARED
    again = cleared.screen(LISTS, NOW, ["FRA", "NLD", "POL"])
    assert again.screening is Screening.POTENTIAL_MATCH
    assert f"organisation {s.organisation_id} is blocked by POL" in again.matches
    # The block lifted elsewhere (the record cleared there): clear again.
    assert cleared.screen(LISTS, NOW).screening is Screening.CLEAR


# --- disclosure control on aggregated demand ------------------------------------------------------------


def _participated(*joins: tuple[Actor, dict[int, int]]) -> Initiative:
    i = opened()
    for actor, figures in joins:
        i = i.join(actor, figures, NOW)
    return i


def test_the_aggregate_is_withheld_from_all_but_the_lead_and_nato_until_settled() -> None:
    i = _participated((FRA, {2026: 100}), (POL, {2026: 50}), (NLD, {2026: 25}))
    for viewer in ("DEU", "NATO"):
        shown = i.demand_for(viewer, 3)
        assert (shown.disclosure, shown.demand) == (Disclosure.FULL, i.demand)
    for viewer in ("FRA", "POL", "UKR", None):  # a participant, a partner, everyone
        shown = i.demand_for(viewer, 3)
        assert shown.disclosure is Disclosure.WITHHELD
        assert (shown.demand.participants, shown.demand.indicative, shown.demand.firm) == (3, {}, {})
        assert initiative_demand(i, viewer, 3) == {}
    # Settled with the tender: the firm demand of every year at least 3 nations commit to, published.
    i = i.commit(FRA, {2026: 100, 2027: 9}, {2026: 100}, NOW).commit(POL, {2026: 50}, {}, NOW)
    settled = i.commit(NLD, {2026: 20}, {}, NOW).close_participation(DEU, NOW)
    i = settled.publish_tender(DEU, [Lot("L1", "all", 170)], TENDER_END, NOW)
    shown = i.demand_for("FRA", 3)
    assert shown.disclosure is Disclosure.PUBLISHED
    assert (shown.demand.indicative, shown.demand.firm, shown.demand.funded) == ({}, {2026: 170}, {})
    # By firmness: the published firm demand as planned (its funding is not published); 2027 is FRA's.
    assert initiative_demand(i, "FRA", 3) == {2026: YearDemand(planned=170)}
    assert initiative_demand(i, "DEU", 3) == {
        2026: YearDemand(indicative=5, planned=70, funded=100),
        2027: YearDemand(planned=9),
    }
    # With a threshold of 4 nothing of it is published; before the tender nothing at all.
    assert i.demand_for("UKR", 4).demand.firm == {}
    assert settled.demand_for("UKR", 3).disclosure is Disclosure.WITHHELD


@pytest.mark.parametrize("count", [1, 2])
def test_fewer_than_k_contributors_never_publish_a_figure(count: int) -> None:
    joins = [(FRA, {2026: 100}), (POL, {2026: 50})][:count]
    i = _participated(*joins)
    for actor, figures in joins:
        i = i.commit(actor, figures, figures, NOW)
    i = i.close_participation(DEU, NOW)
    i = i.publish_tender(DEU, [Lot("L1", "all", 10)], TENDER_END, NOW)
    shown = i.demand_for("POL", 3)
    assert shown.disclosure is Disclosure.PUBLISHED and shown.demand.participants == count
    assert (shown.demand.indicative, shown.demand.firm, shown.demand.funded) == ({}, {}, {})
    assert demand_picture([], [i], "POL", 3) == []


@given(
    st.lists(
        st.dictionaries(st.integers(2026, 2029), st.integers(1, 10_000), min_size=1, max_size=4),
        min_size=1,
        max_size=4,
    ),
    st.integers(2, 5),
)
def test_a_published_year_always_has_k_contributors(figures: list[dict[int, int]], k: int) -> None:
    nations = [FRA, POL, NLD, DEU]
    i = _participated(*zip(nations, figures, strict=False))
    for actor, f in zip(nations, figures, strict=False):
        i = i.commit(actor, f, {}, NOW)
    i = i.close_participation(DEU, NOW).publish_tender(DEU, [Lot("L1", "all", 1)], TENDER_END, NOW)
    shown = i.demand_for("UKR", k).demand
    assert shown.indicative == {} and shown.funded == {}
    for year, total in shown.firm.items():
        contributors = [f[year] for f in figures if f.get(year, 0) > 0]
        assert len(contributors) >= k and total == sum(contributors)
    for year in {y for f in figures for y in f} - set(shown.firm):
        assert sum(1 for f in figures if f.get(year, 0) > 0) < k
    # The published aggregate never changes afterwards (the demand is settled): nothing to difference.
    with pytest.raises(IllegalTransition):
        i.join(POL, {2026: 1}, NOW)
    with pytest.raises(IllegalTransition):
        i.commit(FRA, {2026: 1}, {}, NOW)
