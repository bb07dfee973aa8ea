"""The CloudEvents envelope in Kafka binary mode, and releasability markings."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from icep.contracts import Releasability, ReleasabilityScope
from icep.contracts.nations import ALLIES, NATO, PARTNERS
from icep.platform.events import InvalidEnvelope, decode, encode
from icep.platform.ids import new_id


def test_binary_mode_headers_key_and_roundtrip() -> None:
    event_id = new_id()
    when = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    key, value, headers = encode(
        id=event_id,
        type="icep.plans.plan.submitted.v1",
        source="/icep/plans",
        subject="plan-1",
        time=when,
        nation="DEU",
        releasable_to="DEU,NATO",
        data_json='{"plan_id": "plan-1"}',
        trace_headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
    )
    names = dict(headers)
    assert key == b"plan-1"
    assert names["ce_id"] == event_id.encode()
    assert names["ce_specversion"] == b"1.0"
    assert names["ce_type"] == b"icep.plans.plan.submitted.v1"
    assert names["ce_source"] == b"/icep/plans"
    assert names["ce_subject"] == b"plan-1"
    assert names["ce_nation"] == b"DEU"
    assert names["ce_releasableto"] == b"DEU,NATO"
    assert names["content-type"] == b"application/json"
    assert names["traceparent"].startswith(b"00-0af7651916cd43dd8448eb211c80319c")
    event = decode(key, value, headers)
    assert event.id == event_id and event.time == when and event.data == {"plan_id": "plan-1"}
    assert event.releasability == Releasability(
        owner="DEU", scope=ReleasabilityScope.NATIONS, nations=(NATO,)
    )


def test_naive_times_are_sent_as_utc() -> None:
    _, _, headers = encode(
        id="x",
        type="t",
        source="/s",
        subject="k",
        time=datetime(2026, 1, 1, 8, 30),
        nation="DEU",
        releasable_to="DEU",
        data_json="{}",
    )
    assert dict(headers)["ce_time"] == b"2026-01-01T08:30:00Z"


def test_record_without_cloudevent_headers_is_rejected() -> None:
    with pytest.raises(InvalidEnvelope):
        decode(b"k", b"{}", [("content-type", b"application/json")])
    base = [("ce_id", b"1"), ("ce_type", b"t"), ("ce_source", b"/s"), ("ce_specversion", b"1.0")]
    marked = [*base, ("ce_nation", b"DEU"), ("ce_releasableto", b"DEU")]
    for key, value, headers, reason in [
        (b"k", b"[1, 2]", marked, "not a JSON object"),
        (b"k", b"{}", base, "nation"),  # nobody could tell who may see it
        (b"k", b"{not json", marked, "not a JSON object|not a valid CloudEvent"),
        (b"k", b"{}", [*marked, ("ce_time", b"yesterday")], "not a valid CloudEvent"),
        (b"k", b"{}", [*marked, ("ce_subject", None)], ""),  # a null header is dropped, not a crash
    ]:
        if reason:
            with pytest.raises(InvalidEnvelope, match=reason):
                decode(key, value, headers)
        else:
            assert decode(key, value, headers).subject == "k"


def test_ids_are_uuid7_and_time_ordered() -> None:
    ids = [new_id() for _ in range(200)]
    assert all(i[14] == "7" for i in ids)
    assert ids == sorted(ids)


NATIONS = sorted(ALLIES | PARTNERS | {NATO})


@given(
    owner=st.sampled_from(sorted(ALLIES)),
    scope=st.sampled_from(list(ReleasabilityScope)),
    nations=st.lists(st.sampled_from(NATIONS), max_size=5),
    viewer=st.sampled_from(NATIONS),
)
def test_marking_roundtrip_keeps_who_may_see(
    owner: str, scope: ReleasabilityScope, nations: list[str], viewer: str
) -> None:
    if scope is ReleasabilityScope.ALLIES_PARTNERS:
        nations = [n for n in nations if n in PARTNERS]
    rel = Releasability(owner=owner, scope=scope, nations=tuple(nations))
    back = Releasability.from_marking(owner, rel.marking())
    assert back.allows(viewer) == rel.allows(viewer)
    assert rel.allows(owner)


def test_releasability_rules() -> None:
    national = Releasability(owner="DEU")
    assert national.allows("DEU") and not national.allows("FRA") and not national.allows(NATO)
    allies = Releasability(owner="DEU", scope=ReleasabilityScope.ALLIES)
    assert allies.allows("FRA") and allies.allows(NATO) and not allies.allows("UKR")
    partners = Releasability(owner="DEU", scope=ReleasabilityScope.ALLIES_PARTNERS, nations=("UKR",))
    assert partners.allows("UKR") and partners.allows("POL") and not partners.allows("JPN")
    selected = Releasability(owner="DEU", scope=ReleasabilityScope.NATIONS, nations=("POL",))
    assert selected.allows("POL") and not selected.allows("FRA")
    with pytest.raises(ValueError):
        Releasability(owner="XXX")
