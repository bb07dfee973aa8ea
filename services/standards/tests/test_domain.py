"""Standards rules, without web, database or Kafka.

Examples follow DOMAIN.md: STANAG 4569 (vehicle protection levels, with AEP-55), STANAG 4586 (UAV control
system interfaces, five levels of interoperability), STANAG 2459 (ammunition interchangeability). Edition
numbers, dates, reservations, products and clearances are synthetic.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from icep.contracts import Releasability, ReleasabilityScope, all_event_types
from icep.contracts import standards as contracts
from icep.platform.domain import Actor
from icep.platform.errors import Forbidden, IllegalTransition, NotFound, Unprocessable
from icep.standards.answers.model import NationalResponse, Reservation, ReservationKind, ResponseStatus
from icep.standards.conformance.model import (
    CONFORMANCE_TRANSITIONS,
    ConformanceClaim,
    ConformanceStatus,
    Product,
    expire_due,
    next_conformance_status,
)
from icep.standards.interchangeability.model import (
    Answer,
    Basis,
    BasisKind,
    Interchangeability,
    InterchangeabilityStatus,
    can_fire,
)
from icep.standards.interoperability.model import Verdict, interoperability, progress
from icep.standards.standards.model import (
    STANDARD_TRANSITIONS,
    Standard,
    StandardKind,
    StandardStatus,
    next_standard_status,
    search,
)

NOW = datetime(2026, 3, 2, 9, tzinfo=UTC)
TODAY = NOW.date()
NSO = Actor("nso-1", "NATO", frozenset({"standards"}))
NATO_PLANNER = Actor("nato-planner", "NATO", frozenset({"reviewer"}))
DEU = Actor("deu-std", "DEU", frozenset({"standards"}))
FRA = Actor("fra-std", "FRA", frozenset({"standards"}))
POL = Actor("pol-std", "POL", frozenset({"standards"}))
DEU_PLANNER = Actor("deu-planner", "DEU", frozenset({"planner"}))

# Synthetic reservation: the clause number and its wording are invented.
NO_LEVEL_5 = Reservation("3.5", ReservationKind.WILL_NOT_IMPLEMENT, "will not field Level 5 (synthetic)")


def draft(number: str = "4569", edition: int = 3, **kw: object) -> Standard:
    defaults: dict[str, object] = {
        "id": f"stanag-{number}-{edition}",
        "actor": NSO,
        "kind": StandardKind.STANAG,
        "number": number,
        "edition": edition,
        "title": "Protection levels for occupants of logistic and light armoured vehicles",
        "domain": "land",
        "now": NOW,
        "covering_publications": ("AEP-55 Vol 1",),
        "capability_areas": ("land_protection",),
        "levels": ("1", "2", "3", "4", "5", "6"),
    }
    defaults.update(kw)
    return Standard.draft(**defaults)  # type: ignore[arg-type]


def promulgated(number: str = "4569", edition: int = 3, **kw: object) -> Standard:
    s = draft(number, edition, **kw)
    return s.circulate_for_ratification(NSO, NOW).promulgate(NSO, NOW - timedelta(days=400))


def ratified(standard: Standard, actor: Actor, *reservations: Reservation) -> NationalResponse:
    return NationalResponse.pending(standard, actor.nation).ratify(actor, standard, NOW, reservations)


def implemented(standard: Standard, actor: Actor, *reservations: Reservation) -> NationalResponse:
    return ratified(standard, actor, *reservations).record_implementation(
        actor, standard, date(2025, 6, 1), NOW
    )


# --- standard life ----------------------------------------------------------------------------------------


def test_standard_life_study_to_promulgated_to_superseded() -> None:
    old = promulgated(edition=3)
    assert old.status is StandardStatus.PROMULGATED and old.reference == "STANAG 4569 Ed. 3"
    new = draft(edition=4, id="stanag-4569-4", supersedes=old)
    assert new.supersedes == old.id
    with pytest.raises(Unprocessable):  # not promulgated yet
        old.supersede(NSO, new, NOW)
    new = new.circulate_for_ratification(NSO, NOW).promulgate(NSO, NOW)
    done = old.supersede(NSO, new, NOW)
    assert done.status is StandardStatus.SUPERSEDED and done.superseded_by == new.id
    assert [c.action for c in done.history] == ["drafted", "circulate", "promulgate", "supersede"]
    assert done.version == 4


@pytest.mark.parametrize("start", ["study", "ratification_draft", "promulgated"])
def test_cancel_from_every_live_state(start: str) -> None:
    s = draft()
    if start != "study":
        s = s.circulate_for_ratification(NSO, NOW)
    if start == "promulgated":
        s = s.promulgate(NSO, NOW)
    cancelled = s.cancel(NSO, "merged into STANAG 4569 (synthetic)", NOW)
    assert cancelled.status is StandardStatus.CANCELLED and cancelled.cancellation_reason
    with pytest.raises(Unprocessable):
        s.cancel(NSO, "  ", NOW)


ALL_STANDARD_ACTIONS = ["circulate", "promulgate", "supersede", "cancel"]


@pytest.mark.parametrize("status", list(StandardStatus))
@pytest.mark.parametrize("action", ALL_STANDARD_ACTIONS)
def test_standard_transition_table(status: StandardStatus, action: str) -> None:
    if (action, status) in STANDARD_TRANSITIONS:
        assert next_standard_status(action, status) is STANDARD_TRANSITIONS[(action, status)]
    else:
        with pytest.raises(IllegalTransition) as e:
            next_standard_status(action, status)
        assert e.value.extensions["current_state"] == status.value


def test_illegal_standard_transitions_through_methods() -> None:
    s = draft()
    with pytest.raises(IllegalTransition):
        s.promulgate(NSO, NOW)  # study cannot skip ratification
    p = promulgated()
    with pytest.raises(IllegalTransition):
        p.circulate_for_ratification(NSO, NOW)
    c = p.cancel(NSO, "withdrawn (synthetic)", NOW)
    for move in (lambda: c.promulgate(NSO, NOW), lambda: c.cancel(NSO, "again", NOW)):
        with pytest.raises(IllegalTransition):
            move()


@given(st.lists(st.sampled_from(ALL_STANDARD_ACTIONS), max_size=8))
def test_any_action_sequence_follows_the_table(actions: list[str]) -> None:
    status = StandardStatus.STUDY
    for action in actions:
        expected = STANDARD_TRANSITIONS.get((action, status))
        if expected is None:
            with pytest.raises(IllegalTransition):
                next_standard_status(action, status)
        else:
            status = next_standard_status(action, status)
            assert status is expected
    # terminal states admit nothing
    if status in (StandardStatus.SUPERSEDED, StandardStatus.CANCELLED):
        assert not any((a, status) in STANDARD_TRANSITIONS for a in ALL_STANDARD_ACTIONS)


def test_only_nato_standards_staff_run_the_catalogue() -> None:
    for who in (DEU, NATO_PLANNER):
        with pytest.raises(Forbidden):
            draft(actor=who)
    s = draft()
    with pytest.raises(Forbidden):
        s.circulate_for_ratification(DEU, NOW)


def test_draft_validation() -> None:
    with pytest.raises(Unprocessable):
        draft(title=" ")
    with pytest.raises(Unprocessable):
        draft(edition=0)
    old = promulgated(edition=3)
    with pytest.raises(Unprocessable):  # another number
        draft(number="4586", edition=4, supersedes=old)
    with pytest.raises(Unprocessable):  # not a newer edition
        draft(edition=2, supersedes=old)


def test_search_by_number_text_area_status() -> None:
    s4569 = promulgated()
    s4586 = draft(
        "4586",
        4,
        title="Standard interfaces of UAV control system (UCS) for NATO UAV interoperability",
        domain="air",
        capability_areas=("uas",),
        levels=("LOI 1", "LOI 2", "LOI 3", "LOI 4", "LOI 5"),
        covering_publications=("AEP-84",),
    )
    s2459 = draft(
        "2459",
        1,
        title="Procedures for ammunition interchangeability",
        capability_areas=("munitions",),
        covering_publications=(),
    )
    cat = [s4586, s2459, s4569]
    assert search(cat, number="4586") == [s4586]
    assert search(cat, text="uav") == [s4586]
    assert search(cat, text="aep-55") == [s4569]
    assert search(cat, capability_area="munitions") == [s2459]
    assert search(cat, status=StandardStatus.PROMULGATED) == [s4569]
    assert [s.number for s in search(cat)] == ["2459", "4569", "4586"]


# --- national responses -----------------------------------------------------------------------------------


def test_nation_ratifies_with_reservations_then_withdraws_them() -> None:
    s = promulgated()
    r = NationalResponse.pending(s, "POL")
    r = r.ratify(POL, s, NOW, [NO_LEVEL_5])
    assert r.status is ResponseStatus.RATIFIED_WITH_RESERVATIONS
    limited = Reservation("4.2", ReservationKind.LIMITED, "mine blast tests only at 6 kg TNT (synthetic)")
    r = r.record_reservation(POL, s, limited, NOW)
    assert [x.clause for x in r.reservations] == ["3.5", "4.2"]
    r = r.withdraw_reservation(POL, s, "3.5", NOW)
    assert r.status is ResponseStatus.RATIFIED_WITH_RESERVATIONS
    r = r.withdraw_reservation(POL, s, "4.2", NOW)
    assert r.status is ResponseStatus.RATIFIED and r.reservations == ()
    with pytest.raises(IllegalTransition):  # no reservation left to withdraw
        r.withdraw_reservation(POL, s, "4.2", NOW)
    assert [c.action for c in r.history] == [
        "ratify",
        "record_reservation",
        "withdraw_reservation",
        "withdraw_reservation",
    ]
    assert r.version == 5


def test_withdrawing_an_unknown_clause_is_not_found() -> None:
    s = promulgated()
    r = ratified(s, POL, NO_LEVEL_5)
    with pytest.raises(NotFound):
        r.withdraw_reservation(POL, s, "9.9", NOW)


def test_a_reservation_on_the_same_clause_replaces_the_earlier_one() -> None:
    s = promulgated()
    r = ratified(s, POL, NO_LEVEL_5)
    softer = Reservation("3.5", ReservationKind.LIMITED, "Level 5 on wheeled vehicles only (synthetic)")
    r = r.record_reservation(POL, s, softer, NOW)
    assert r.reservations == (softer,)


def test_reservations_name_a_clause_and_what_is_not_done() -> None:
    s = promulgated()
    r = NationalResponse.pending(s, "DEU")
    with pytest.raises(Unprocessable):
        r.ratify(DEU, s, NOW, [Reservation(" ", ReservationKind.LIMITED, "x")])
    with pytest.raises(Unprocessable):
        r.ratify(DEU, s, NOW, [Reservation("1", ReservationKind.LIMITED, " ")])
    with pytest.raises(Unprocessable):
        r.ratify(DEU, s, NOW, [NO_LEVEL_5, NO_LEVEL_5])


def test_implementation_forecast_then_actual() -> None:
    s = promulgated()
    r = ratified(s, DEU).forecast_implementation(DEU, s, date(2027, 1, 1), NOW)
    assert r.implementation_forecast == date(2027, 1, 1) and not r.implemented(TODAY)
    r = r.record_implementation(DEU, s, date(2026, 2, 1), NOW)
    assert r.implemented(TODAY) and not r.implemented(date(2026, 1, 31))
    with pytest.raises(IllegalTransition):
        r.forecast_implementation(DEU, s, date(2028, 1, 1), NOW)
    with pytest.raises(Unprocessable):
        ratified(s, FRA).record_implementation(FRA, s, TODAY + timedelta(days=1), NOW)
    with pytest.raises(Unprocessable):  # before promulgation
        ratified(s, FRA).record_implementation(FRA, s, date(2020, 1, 1), NOW)


def test_declining_clears_reservations_and_implementation_and_can_be_reversed() -> None:
    s = promulgated()
    r = implemented(s, FRA, NO_LEVEL_5).decline(FRA, s, NOW)
    assert r.status is ResponseStatus.NOT_RATIFYING
    assert (r.reservations, r.implemented_on) == ((), None)
    assert r.history[-2].action == "record_implementation"  # kept in history
    assert r.ratify(FRA, s, NOW).status is ResponseStatus.RATIFIED


@pytest.mark.parametrize(
    ("status_of", "action"),
    [
        ("pending", "record_implementation"),
        ("pending", "forecast_implementation"),
        ("pending", "record_reservation"),
        ("pending", "withdraw_reservation"),
        ("ratified", "ratify"),
        ("ratified", "withdraw_reservation"),
        ("not_ratifying", "decline"),
        ("not_ratifying", "record_implementation"),
        ("not_ratifying", "record_reservation"),
    ],
)
def test_illegal_response_actions(status_of: str, action: str) -> None:
    s = promulgated()
    r = NationalResponse.pending(s, "DEU")
    if status_of == "ratified":
        r = r.ratify(DEU, s, NOW)
    elif status_of == "not_ratifying":
        r = r.decline(DEU, s, NOW)
    calls = {
        "ratify": lambda: r.ratify(DEU, s, NOW),
        "decline": lambda: r.decline(DEU, s, NOW),
        "record_reservation": lambda: r.record_reservation(DEU, s, NO_LEVEL_5, NOW),
        "withdraw_reservation": lambda: r.withdraw_reservation(DEU, s, "3.5", NOW),
        "forecast_implementation": lambda: r.forecast_implementation(DEU, s, date(2027, 1, 1), NOW),
        "record_implementation": lambda: r.record_implementation(DEU, s, TODAY, NOW),
    }
    with pytest.raises(IllegalTransition) as e:
        calls[action]()
    assert e.value.extensions["current_state"] == status_of


def test_responses_follow_the_standard_state() -> None:
    study = draft()
    with pytest.raises(IllegalTransition):
        NationalResponse.pending(study, "DEU").ratify(DEU, study, NOW)
    circulating = study.circulate_for_ratification(NSO, NOW)
    r = NationalResponse.pending(circulating, "DEU").ratify(DEU, circulating, NOW)
    with pytest.raises(IllegalTransition):  # nothing to implement before promulgation
        r.record_implementation(DEU, circulating, TODAY, NOW)
    cancelled = circulating.cancel(NSO, "abandoned (synthetic)", NOW)
    with pytest.raises(IllegalTransition):
        NationalResponse.pending(cancelled, "FRA").ratify(FRA, cancelled, NOW)


def test_a_nation_cannot_record_another_nations_response() -> None:
    s = promulgated()
    deu = NationalResponse.pending(s, "DEU")
    with pytest.raises(Forbidden, match="DEU's standards staff"):
        deu.ratify(FRA, s, NOW)
    with pytest.raises(Forbidden):
        deu.ratify(DEU_PLANNER, s, NOW)  # the nation, but not its standards role
    with pytest.raises(Forbidden):
        ratified(s, DEU).record_implementation(POL, s, TODAY, NOW)


def test_nato_staff_record_the_ratification_record_but_not_implementation() -> None:
    s = draft().circulate_for_ratification(NSO, NOW)
    r = NationalResponse.pending(s, "DEU").ratify(NSO, s, NOW, [NO_LEVEL_5])
    assert r.history[-1].by == NSO.id
    s = s.promulgate(NSO, NOW - timedelta(days=10))
    r = r.withdraw_reservation(NSO, s, "3.5", NOW)
    with pytest.raises(Forbidden):
        r.record_implementation(NSO, s, TODAY, NOW)
    with pytest.raises(Forbidden):
        r.forecast_implementation(NSO, s, date(2027, 1, 1), NOW)
    with pytest.raises(Forbidden):
        NationalResponse.pending(s, "FRA").ratify(NATO_PLANNER, s, NOW)


def test_only_nations_answer() -> None:
    s = promulgated()
    for code in ("NATO", "EU", "XXX"):
        with pytest.raises(Unprocessable):
            NationalResponse.pending(s, code)
    # A partner answers a standard released to it, and only then.
    with pytest.raises(Unprocessable, match="not released to UKR"):
        NationalResponse.pending(s, "UKR")
    shared = promulgated(
        releasability=Releasability(owner="NATO", scope=ReleasabilityScope.ALLIES_PARTNERS, nations=("UKR",))
    )
    assert NationalResponse.pending(shared, "UKR").status is ResponseStatus.PENDING


def test_one_edition_in_force_supersedes_every_lower_one() -> None:
    ed2, ed3 = promulgated(edition=2, id="ed2"), promulgated(edition=3, id="ed3")
    assert ed2.supersede(NSO, ed3, NOW).superseded_by == "ed3"  # even when ed3 did not name ed2
    with pytest.raises(Unprocessable):
        ed3.supersede(NSO, ed2, NOW)  # never by a lower edition
    with pytest.raises(Unprocessable):
        ed3.supersede(NSO, promulgated(number="4586", edition=4), NOW)  # nor by another standard


def test_releasability_of_standards_and_claims() -> None:
    with pytest.raises(Unprocessable):  # Allies are all in already: named nations are partners
        draft(
            releasability=Releasability(
                owner="NATO", scope=ReleasabilityScope.ALLIES_PARTNERS, nations=("DEU",)
            )
        )
    s = promulgated()
    with pytest.raises(Unprocessable, match="not released to UKR"):
        claim(
            s,
            releasability=Releasability(
                owner="DEU", scope=ReleasabilityScope.ALLIES_PARTNERS, nations=("UKR",)
            ),
        )
    national = claim(s, releasability=Releasability(owner="DEU", scope=ReleasabilityScope.NATIONAL))
    assert national.release.marking() == "DEU,NATO"


def test_a_response_belongs_to_its_edition() -> None:
    s3, s4 = promulgated(edition=3), promulgated(edition=4, id="stanag-4569-4")
    with pytest.raises(Unprocessable):
        NationalResponse.pending(s3, "DEU").ratify(DEU, s4, NOW)


# --- conformance ------------------------------------------------------------------------------------------

# Synthetic product.
BOXER = Product("ARTEC (synthetic)", "BXR-A1-SYN", "Boxer RCH 155 hull (synthetic)")


def claim(
    standard: Standard | None = None, level: str | None = "4", releasability: Releasability | None = None
) -> ConformanceClaim:
    return ConformanceClaim.claim(
        id="c1",
        actor=DEU,
        product=BOXER,
        standard=standard or promulgated(),
        level=level,
        now=NOW,
        evidence=("WTD91-report-2025-117 (synthetic)",),
        releasability=releasability,
    )


def test_conformance_life_to_verified_and_expired_exactly_once() -> None:
    c = claim().start_test(NSO, NOW, ("ballistic-trial-0042 (synthetic)",))
    assert c.status is ConformanceStatus.UNDER_TEST and len(c.evidence) == 2
    v = c.verify(NSO, date(2026, 12, 31), NOW)
    assert v.status is ConformanceStatus.VERIFIED and v.expires_on == date(2026, 12, 31)
    day_before = datetime(2026, 12, 30, 23, 59, tzinfo=UTC)
    on_the_day = datetime(2026, 12, 31, 0, 0, tzinfo=UTC)
    assert expire_due([v], day_before) == []
    with pytest.raises(IllegalTransition):
        v.expire(day_before)
    [expired] = expire_due([v], on_the_day)
    assert expired.status is ConformanceStatus.EXPIRED and expired.history[-1].by == "schedule"
    # After a restart the schedule sees the stored (expired) claim: it is not due again.
    assert expire_due([expired], on_the_day + timedelta(days=30)) == []
    with pytest.raises(IllegalTransition):
        expired.expire(on_the_day)


@given(
    st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=10),
    st.integers(min_value=0, max_value=500),
)
def test_expire_due_is_idempotent(days: list[int], elapsed: int) -> None:
    base = claim().start_test(NSO, NOW)
    claims = [base.verify(NSO, TODAY + timedelta(days=d), NOW) for d in days]
    now = NOW + timedelta(days=elapsed)
    first = expire_due(claims, now)
    assert len(first) == sum(1 for d in days if d <= elapsed)
    assert all(e.status is ConformanceStatus.EXPIRED for e in first)
    # What a restart finds stored: the expired ones expired, the others as they were.
    stored = [c.expire(now) if c.is_due(now) else c for c in claims]
    assert expire_due(stored, now) == []


def test_rejection_needs_a_reason_and_is_final() -> None:
    c = claim().start_test(NSO, NOW)
    with pytest.raises(Unprocessable):
        c.reject(NSO, " ", NOW)
    r = c.reject(NSO, "Level 4 mine blast not met (synthetic)", NOW)
    assert r.status is ConformanceStatus.REJECTED
    for move in (lambda: r.verify(NSO, date(2027, 1, 1), NOW), lambda: r.start_test(NSO, NOW)):
        with pytest.raises(IllegalTransition):
            move()
    assert expire_due([r], NOW + timedelta(days=5000)) == []


@pytest.mark.parametrize("status", list(ConformanceStatus))
@pytest.mark.parametrize("action", ["start_test", "verify", "reject", "expire"])
def test_conformance_transition_table(status: ConformanceStatus, action: str) -> None:
    if (action, status) in CONFORMANCE_TRANSITIONS:
        assert next_conformance_status(action, status) is CONFORMANCE_TRANSITIONS[(action, status)]
    else:
        with pytest.raises(IllegalTransition):
            next_conformance_status(action, status)


def test_claim_rules() -> None:
    with pytest.raises(Unprocessable):
        claim(level="7")  # STANAG 4569 has levels 1-6
    with pytest.raises(Unprocessable):
        claim(level=None)
    with pytest.raises(IllegalTransition):
        claim(standard=draft())  # not promulgated
    with pytest.raises(Forbidden):
        ConformanceClaim.claim(
            id="c", actor=DEU_PLANNER, product=BOXER, standard=promulgated(), level="4", now=NOW
        )
    c = claim(releasability=Releasability(owner="DEU")).start_test(DEU, NOW)
    with pytest.raises(Forbidden):
        c.verify(FRA, date(2027, 1, 1), NOW)  # the national claim is not released to FRA
    with pytest.raises(Unprocessable):
        c.verify(NSO, TODAY, NOW)  # expires the day it is given
    bare = ConformanceClaim.claim(
        id="c", actor=DEU, product=BOXER, standard=promulgated(), level="4", now=NOW
    )
    with pytest.raises(Unprocessable):
        bare.start_test(DEU, NOW).verify(NSO, date(2027, 1, 1), NOW)  # no evidence


def test_verification_is_independent_unless_self_verification_is_allowed() -> None:
    national = claim(releasability=Releasability(owner="DEU")).start_test(DEU, NOW)
    # The claiming nation's own staff: refused by default, whatever they verify with.
    with pytest.raises(Forbidden, match="independently"):
        national.verify(DEU, date(2027, 1, 1), NOW)
    own = national.verify(DEU, date(2027, 1, 1), NOW, allow_self_verification=True)
    assert own.status is ConformanceStatus.VERIFIED and own.history[-1].by == DEU.id
    # NATO verifies any claim; another nation's test centre a claim released to it, and no other.
    assert national.verify(NSO, date(2027, 1, 1), NOW).status is ConformanceStatus.VERIFIED
    with pytest.raises(Forbidden):
        national.verify(FRA, date(2027, 1, 1), NOW)
    to_fra = claim(
        releasability=Releasability(owner="DEU", scope=ReleasabilityScope.NATIONS, nations=("FRA",))
    )
    under_test = to_fra.start_test(DEU, NOW)
    assert under_test.verify(FRA, date(2027, 1, 1), NOW).history[-1].by == FRA.id
    with pytest.raises(Forbidden):
        under_test.verify(POL, date(2027, 1, 1), NOW)
    # Standards staff only; and the claiming nation may still withdraw its claim by rejecting it.
    with pytest.raises(Forbidden):
        under_test.verify(NATO_PLANNER, date(2027, 1, 1), NOW)
    assert under_test.reject(DEU, "withdrawn (synthetic)", NOW).status is ConformanceStatus.REJECTED
    assert under_test.reject(FRA, "failed at the test centre (synthetic)", NOW).rejection_reason


# --- interoperability -------------------------------------------------------------------------------------


def test_verdict_interoperable_limited_and_not() -> None:
    s = promulgated()
    responses = [implemented(s, DEU), implemented(s, FRA), implemented(s, POL, NO_LEVEL_5)]
    report = interoperability([s], responses, ["POL", "DEU", "FRA"], TODAY)
    pairs = {p.nations: p for p in report.standards[0].pairs}
    assert pairs[("DEU", "FRA")].verdict is Verdict.INTEROPERABLE
    assert pairs[("DEU", "POL")].verdict is Verdict.LIMITED
    assert any("POL will not implement clause 3.5" in r for r in pairs[("DEU", "POL")].reasons)
    positions = {p.nation: p for p in report.standards[0].positions}
    assert positions["POL"].reservations == (NO_LEVEL_5,)


def test_withdrawing_the_reservation_restores_the_verdict() -> None:
    s = promulgated()
    pol = implemented(s, POL, NO_LEVEL_5)
    before = interoperability([s], [implemented(s, DEU), pol], ["DEU", "POL"], TODAY)
    after = interoperability(
        [s], [implemented(s, DEU), pol.withdraw_reservation(POL, s, "3.5", NOW)], ["DEU", "POL"], TODAY
    )
    assert before.pairs[0].verdict is Verdict.LIMITED
    assert after.pairs[0].verdict is Verdict.INTEROPERABLE


def test_verdict_not_implemented_unknown_not_ratifying() -> None:
    s = promulgated()
    responses = [
        implemented(s, DEU),
        ratified(s, FRA),
        NationalResponse.pending(s, "POL").decline(POL, s, NOW),
    ]
    report = interoperability([s], responses, ["DEU", "FRA", "POL", "ITA"], TODAY)
    v = {p.nations: p.verdict for p in report.pairs}
    assert v[("DEU", "FRA")] is Verdict.NOT_IMPLEMENTED
    assert v[("DEU", "ITA")] is Verdict.UNKNOWN  # Italy has not answered
    assert v[("DEU", "POL")] is Verdict.NOT_INTEROPERABLE
    assert v[("ITA", "POL")] is Verdict.NOT_INTEROPERABLE


def test_verdict_over_several_standards_is_the_worst_with_every_reason() -> None:
    s4569 = promulgated()
    s4586 = promulgated("4586", 4, title="UAV control system interfaces", levels=())
    responses = [
        implemented(s4569, DEU),
        implemented(s4569, FRA),
        implemented(s4586, DEU),
        implemented(s4586, FRA, Reservation("LOI 5", ReservationKind.LIMITED, "LOI 4 at most (synthetic)")),
    ]
    report = interoperability([s4569, s4586], responses, ["FRA", "DEU"], TODAY)
    [pair] = report.pairs
    assert pair.nations == ("DEU", "FRA") and pair.verdict is Verdict.LIMITED
    assert any("STANAG 4586 Ed. 4: FRA limits clause LOI 5" in r for r in pair.reasons)


def test_standard_states_in_the_verdict() -> None:
    cancelled = promulgated().cancel(NSO, "replaced (synthetic)", NOW)
    in_ratification = draft("2459", 1).circulate_for_ratification(NSO, NOW)
    report = interoperability([cancelled, in_ratification], [], ["DEU", "FRA"], TODAY)
    assert report.standards[0].pairs[0].verdict is Verdict.NOT_INTEROPERABLE
    assert report.standards[1].pairs[0].verdict is Verdict.UNKNOWN


def test_interoperability_needs_two_nations_and_a_standard() -> None:
    with pytest.raises(Unprocessable):
        interoperability([promulgated()], [], ["DEU", "DEU"], TODAY)
    with pytest.raises(Unprocessable):
        interoperability([], [], ["DEU", "FRA"], TODAY)


@given(
    st.lists(
        st.sampled_from(["pending", "ratified", "reserved", "implemented", "declined"]),
        min_size=3,
        max_size=3,
    )
)
def test_verdict_is_symmetric_and_never_better_than_either_side(kinds: list[str]) -> None:
    s = promulgated()
    actors = [DEU, FRA, POL]
    responses = []
    for actor, kind in zip(actors, kinds, strict=True):
        r = NationalResponse.pending(s, actor.nation)
        if kind == "ratified":
            r = r.ratify(actor, s, NOW)
        elif kind == "reserved":
            r = r.ratify(actor, s, NOW, [NO_LEVEL_5]).record_implementation(actor, s, TODAY, NOW)
        elif kind == "implemented":
            r = r.ratify(actor, s, NOW).record_implementation(actor, s, TODAY, NOW)
        elif kind == "declined":
            r = r.decline(actor, s, NOW)
        responses.append(r)
    forward = interoperability([s], responses, ["DEU", "FRA", "POL"], TODAY)
    backward = interoperability([s], list(reversed(responses)), ["POL", "FRA", "DEU"], TODAY)
    assert [(p.nations, p.verdict) for p in forward.pairs] == [(p.nations, p.verdict) for p in backward.pairs]
    for p in forward.pairs:
        sides = [kinds[["DEU", "FRA", "POL"].index(n)] for n in p.nations]
        if "declined" in sides:
            assert p.verdict is Verdict.NOT_INTEROPERABLE
        elif sides == ["implemented", "implemented"]:
            assert p.verdict is Verdict.INTEROPERABLE
        else:
            assert p.verdict < Verdict.INTEROPERABLE and p.reasons


# --- interchangeability -----------------------------------------------------------------------------------

ROUND = "155mm DM121 HE (synthetic designation)"
GUN = "PzH 2000"


def clearance(
    nations: tuple[str, ...],
    status: InterchangeabilityStatus,
    basis: Basis,
    restrictions: tuple[str, ...] = (),
    at: datetime = NOW,
    id: str = "ic1",
) -> Interchangeability:
    return Interchangeability.record(
        id=id,
        actor=NSO,
        item=ROUND,
        platform=GUN,
        nations=nations,
        status=status,
        basis=basis,
        now=at,
        restrictions=restrictions,
    )


def test_can_fire_when_verified_under_stanag_2459() -> None:
    s = promulgated("2459", 1, title="Procedures for ammunition interchangeability", levels=())
    c = clearance(("DEU", "NLD"), InterchangeabilityStatus.VERIFIED, Basis(BasisKind.STANDARD, s.id))
    a = can_fire("DEU", ROUND, GUN, [c], [s], [implemented(s, DEU)], TODAY)
    assert a.answer is Answer.YES and a.clearance_id == "ic1"
    assert "on the basis of STANAG 2459 Ed. 1" in a.reasons[0]


def test_cannot_fire_without_a_clearance_and_says_who_can() -> None:
    c = clearance(
        ("DEU", "NLD"), InterchangeabilityStatus.VERIFIED, Basis(BasisKind.TRIAL, "Trial T-17 (synthetic)")
    )
    a = can_fire("POL", ROUND, GUN, [c])
    assert a.answer is Answer.NO
    assert a.reasons == (
        f"no clearance of {ROUND} for {GUN} is recorded for POL",
        "cleared for DEU, NLD only",
    )
    assert can_fire("DEU", ROUND, "CAESAR", [c]).answer is Answer.NO


def test_not_interchangeable_and_restricted_answers_carry_reasons() -> None:
    trial = Basis(BasisKind.TRIAL, "Trial T-22 (synthetic)")
    no = clearance(
        ("POL",), InterchangeabilityStatus.NOT_INTERCHANGEABLE, trial, ("charge system mismatch (synthetic)",)
    )
    a = can_fire("POL", ROUND, GUN, [no])
    assert (
        a.answer is Answer.NO
        and "firing trial Trial T-22" in a.reasons[0]
        and "charge system" in a.reasons[1]
    )
    limited = clearance(
        ("FRA",),
        InterchangeabilityStatus.RESTRICTED,
        trial,
        ("max charge zone 5; 50-60 m dispersion (synthetic)",),
    )
    b = can_fire("FRA", ROUND, GUN, [limited])
    assert b.answer is Answer.YES_WITH_RESTRICTIONS and "zone 5" in b.reasons[1]


def test_the_latest_clearance_for_the_nation_decides() -> None:
    trial = Basis(BasisKind.TRIAL, "Trial T-9 (synthetic)")
    old = clearance(
        ("POL",), InterchangeabilityStatus.NOT_INTERCHANGEABLE, trial, at=NOW - timedelta(days=90)
    )
    new = old.update(NSO, now=NOW, status=InterchangeabilityStatus.VERIFIED)
    assert new.version == 2 and [c.status for c in new.history] == ["not_interchangeable", "verified"]
    assert can_fire("POL", ROUND, GUN, [new]).answer is Answer.YES
    other = clearance(
        ("POL",), InterchangeabilityStatus.RESTRICTED, trial, ("cold only",), NOW + timedelta(1), "ic2"
    )
    assert can_fire("POL", ROUND, GUN, [new, other]).answer is Answer.YES_WITH_RESTRICTIONS


def test_a_reservation_or_not_ratifying_restricts_a_standard_based_clearance() -> None:
    s = promulgated("2459", 1, title="Procedures for ammunition interchangeability", levels=())
    c = clearance(("DEU", "FRA", "POL"), InterchangeabilityStatus.VERIFIED, Basis(BasisKind.STANDARD, s.id))
    reserved = implemented(
        s, FRA, Reservation("5.1", ReservationKind.LIMITED, "own charges only (synthetic)")
    )
    a = can_fire("FRA", ROUND, GUN, [c], [s], [reserved], TODAY)
    assert a.answer is Answer.YES_WITH_RESTRICTIONS
    assert "FRA limits clause 5.1: own charges only (synthetic)" in a.reasons
    declined = NationalResponse.pending(s, "POL").decline(POL, s, NOW)
    b = can_fire("POL", ROUND, GUN, [c], [s], [declined], TODAY)
    assert b.answer is Answer.YES_WITH_RESTRICTIONS and "POL does not ratify the basis standard" in b.reasons
    d = can_fire("DEU", ROUND, GUN, [c], [s], [ratified(s, DEU)], TODAY)
    assert d.answer is Answer.YES and any("has not implemented" in r for r in d.reasons)
    gone = s.cancel(NSO, "replaced (synthetic)", NOW)
    e = can_fire("DEU", ROUND, GUN, [c], [gone], [], TODAY)
    assert e.answer is Answer.YES_WITH_RESTRICTIONS and any("cancelled" in r for r in e.reasons)


def test_who_records_clearances() -> None:
    trial = Basis(BasisKind.TRIAL, "Trial T-1 (synthetic)")
    with pytest.raises(Forbidden):  # a nation clears for itself only
        Interchangeability.record(
            id="x",
            actor=DEU,
            item=ROUND,
            platform=GUN,
            nations=("DEU", "FRA"),
            status=InterchangeabilityStatus.VERIFIED,
            basis=trial,
            now=NOW,
        )
    own = Interchangeability.record(
        id="x",
        actor=DEU,
        item=ROUND,
        platform=GUN,
        nations=("DEU",),
        status=InterchangeabilityStatus.VERIFIED,
        basis=trial,
        now=NOW,
    )
    assert own.nations == ("DEU",)
    with pytest.raises(Forbidden):
        own.update(DEU_PLANNER, now=NOW, status=InterchangeabilityStatus.NOT_INTERCHANGEABLE)
    with pytest.raises(Unprocessable):  # restricted needs restrictions
        own.update(DEU, now=NOW, status=InterchangeabilityStatus.RESTRICTED)
    with pytest.raises(Unprocessable):
        clearance((), InterchangeabilityStatus.VERIFIED, trial)


# --- progress ---------------------------------------------------------------------------------------------


def test_progress_per_nation() -> None:
    s4569 = promulgated()
    s4586 = promulgated("4586", 4, title="UAV control system interfaces", levels=())
    s2459 = promulgated("2459", 1, title="Ammunition interchangeability", levels=())
    s1059 = promulgated("1059", 8, title="Country codes (synthetic edition)", levels=())
    old = promulgated("4569", 2, id="stanag-4569-2")  # superseded editions are not counted
    old = old.supersede(NSO, promulgated("4569", 3, id="stanag-4569-3b", supersedes=old), NOW)
    responses = [
        implemented(s4569, POL, NO_LEVEL_5),
        ratified(s4586, POL).forecast_implementation(POL, s4586, date(2025, 12, 31), NOW),
        NationalResponse.pending(s2459, "POL").decline(POL, s2459, NOW),
        ratified(promulgated("4569", 2, id="stanag-4569-2"), POL),  # the superseded edition
        implemented(s4569, DEU),  # someone else's
    ]
    p = progress("POL", [s4569, s4586, s2459, s1059, old], responses, TODAY)
    assert p.in_force == 4
    assert p.ratified == ("STANAG 4569 Ed. 3", "STANAG 4586 Ed. 4")
    assert p.with_reservations == ("STANAG 4569 Ed. 3",)
    assert p.implemented == ("STANAG 4569 Ed. 3",)
    assert p.implementation_overdue == ("STANAG 4586 Ed. 4",)
    assert p.pending == ("STANAG 1059 Ed. 8",)
    assert p.not_ratifying == ("STANAG 2459 Ed. 1",)
    assert p.ratification_rate == 0.5 and p.implementation_rate == 0.25
    assert progress("ITA", [], [], TODAY).ratification_rate == 0.0


# --- contracts --------------------------------------------------------------------------------------------


def test_every_event_named_in_the_issue_has_a_contract() -> None:
    types = {t for t in all_event_types() if t.startswith("icep.standards.")}
    expected = {
        "icep.standards.standard.drafted.v1",
        "icep.standards.standard.promulgated.v1",
        "icep.standards.standard.superseded.v1",
        "icep.standards.standard.cancelled.v1",
        "icep.standards.response.ratified.v1",
        "icep.standards.response.reservation_recorded.v1",
        "icep.standards.response.reservation_withdrawn.v1",
        "icep.standards.response.implemented.v1",
        "icep.standards.conformance.claimed.v1",
        "icep.standards.conformance.verified.v1",
        "icep.standards.conformance.rejected.v1",
        "icep.standards.conformance.expired.v1",
        "icep.standards.interchangeability.updated.v1",
    }
    assert expected <= types
    for t in types:
        cls = all_event_types()[t]
        _, service, aggregate, _, version = t.split(".")
        assert (service, version) == ("standards", "v1") and cls.aggregate == aggregate
    event = contracts.ConformanceExpired(
        claim_id="c1",
        nation="DEU",
        manufacturer=BOXER.manufacturer,
        product_code=BOXER.product_code,
        product_name=BOXER.name,
        standard_id="stanag-4569-3",
        standard_reference="STANAG 4569 Ed. 3",
        level="4",
        version=4,
        expires_on=date(2026, 12, 31),
        expired_at=NOW,
    )
    assert contracts.ConformanceExpired.model_validate_json(event.model_dump_json()) == event
