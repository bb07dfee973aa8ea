"""The notifications rules in plain Python: endpoints, Retry-After, the retry schedule, matching and
entitlement."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from icep.contracts import Releasability
from icep.contracts.releasability import ReleasabilityScope
from icep.notifications.deliveries.model import MAX_RETRY_AFTER_SECONDS, RetrySchedule, parse_retry_after
from icep.notifications.domain import PING_EVENT_TYPE, ping_body
from icep.notifications.subscriptions.endpoint import address_allowed, validate_endpoint
from icep.notifications.subscriptions.filters import (
    SubscriptionFilters,
    entitled,
    matches,
    validate_event_patterns,
    validate_nations,
    validate_terms,
)
from icep.notifications.subscriptions.model import (
    SubscriptionAction,
    SubscriptionStatus,
    new_signing_secret,
    next_status,
    signatures_for,
)
from icep.platform.errors import IllegalTransition, Unprocessable

PARTNERS = ReleasabilityScope.ALLIES_PARTNERS
NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


# --- endpoints -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://partner.example/icep/webhooks",
        "https://partner.example:8443/hooks?token=abc",
        "https://PARTNER.example./hooks",
        "https://8.8.8.8/hooks",
        "https://[2606:4700::1]/hooks",
        "https://[2002:808:808::1]/hooks",  # 6to4 of a public IPv4 address
        "https://[64:ff9b::808:808]/hooks",  # NAT64 of a public IPv4 address
        "https://partner.example:1/h",
        "https://partner.example:65535/h",
        "https://partner.example:/h",  # an empty port is the default one
    ],
)
def test_public_https_endpoints_are_accepted(url: str) -> None:
    assert validate_endpoint(url, allow_loopback=False) == url


@pytest.mark.parametrize(
    "url",
    [
        "https://example.org:99999/h",
        "https://example.org:65536/h",
        "https://example.org:0/h",
        "https://example.org:abc/h",
        "https://example.org:-1/h",
        "https://[::1/x",
        "https://[not-an-address]/x",
        "https://exa mple.org/h",
        "https://example.org\t/h",
    ],
)
def test_malformed_urls_and_ports_are_unprocessable_not_errors(url: str) -> None:
    with pytest.raises(Unprocessable) as raised:
        validate_endpoint(url, allow_loopback=False)
    assert raised.value.extensions == {"field": "url"}


@pytest.mark.parametrize(
    "url",
    [
        "ftp://partner.example/h",
        "partner.example/h",
        "/relative/path",
        "https:///no-host",
        "",
        "http://partner.example/h",  # http only for loopback in development
        "http://8.8.8.8/h",
    ],
)
def test_only_absolute_https_urls(url: str) -> None:
    with pytest.raises(Unprocessable):
        validate_endpoint(url, allow_loopback=False)


@pytest.mark.parametrize(
    "url", ["https://user:pass@partner.example/h", "https://user@partner.example/h", "https://:p@x.example/"]
)
def test_credentials_in_the_url_are_refused(url: str) -> None:
    with pytest.raises(Unprocessable, match="credentials"):
        validate_endpoint(url, allow_loopback=False)


@pytest.mark.parametrize(
    "host",
    [
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "100.64.0.1",  # carrier-grade NAT
        "169.254.169.254",  # cloud metadata
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "[::]",
        "[fe80::1]",
        "[fc00::1]",
        "[fd00:ec2::254]",  # the IPv6 metadata service
        "[ff02::1]",
        "[::ffff:10.0.0.1]",
        "[::ffff:169.254.169.254]",
        "[2002:a9fe:a9fe::1]",  # 6to4 of 169.254.169.254
        "[2002:c0a8:101::1]",  # 6to4 of 192.168.1.1
        "[2002:a00:1::]",  # 6to4 of 10.0.0.1
        "[2001:0:4136:e378:8000:63bf:3fff:fdd2]",  # Teredo
        "[2001:0:a9fe:a9fe::1]",  # Teredo with the metadata address as server
        "[64:ff9b::a9fe:a9fe]",  # NAT64 of 169.254.169.254
        "[64:ff9b::a00:1]",  # NAT64 of 10.0.0.1
        "[64:ff9b::7f00:1]",  # NAT64 of 127.0.0.1
        "[64:ff9b:1::a00:1]",  # local-use NAT64 prefix
        "2130706433",  # 127.0.0.1 as a number
        "0x7f.1",
        "127.1",
        "10.1",
    ],
)
def test_non_public_literals_are_refused(host: str) -> None:
    with pytest.raises(Unprocessable):
        validate_endpoint(f"https://{host}/hooks", allow_loopback=False)
    with pytest.raises(Unprocessable):
        validate_endpoint(f"https://{host}/hooks", allow_loopback=True)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "127.9.9.9", "[::ffff:127.0.0.1]"])
def test_loopback_only_when_allowed(host: str) -> None:
    for scheme in ("http", "https"):
        url = f"{scheme}://{host}:8080/hooks"
        with pytest.raises(Unprocessable, match="public" if scheme == "https" else "https"):
            validate_endpoint(url, allow_loopback=False)
        assert validate_endpoint(url, allow_loopback=True) == url


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("8.8.8.8", True),
        ("2606:4700::1", True),
        ("2002:808:808::1", True),
        ("64:ff9b::808:808", True),
        ("::ffff:8.8.8.8", True),
        ("0.0.0.0", False),
        ("::", False),
        ("2002::", False),  # 6to4 of 0.0.0.0
        ("2002:7f00:1::", False),  # 6to4 of loopback is not loopback
        ("64:ff9b::", False),  # NAT64 of 0.0.0.0
        ("2001:0:808:808:0:0:f7f7:f7f7", False),  # Teredo: client 8.8.8.8 is public, but Teredo is not
        ("169.254.169.254", False),
        ("fe80::1%eth0", False),
        ("not an address", False),
    ],
)
def test_address_allowed(address: str, allowed: bool) -> None:
    assert address_allowed(address, allow_loopback=False) is allowed


def test_embedded_loopback_counts_as_loopback_only_when_mapped() -> None:
    assert address_allowed("::ffff:127.0.0.1", allow_loopback=True)
    assert not address_allowed("::ffff:127.0.0.1", allow_loopback=False)
    assert not address_allowed("2002:7f00:1::", allow_loopback=True)
    assert not address_allowed("64:ff9b::7f00:1", allow_loopback=True)
    assert not address_allowed("0.0.0.0", allow_loopback=True)
    assert not address_allowed("::", allow_loopback=True)


@given(st.integers(min_value=0, max_value=2**128 - 1))
def test_any_ipv6_address_is_judged_without_error(value: int) -> None:
    ip = ipaddress.IPv6Address(value)
    allowed = address_allowed(str(ip), allow_loopback=False)
    if allowed:
        # Whatever is allowed is public itself or a translation of a public IPv4 address.
        assert ip.is_global or ip in ipaddress.IPv6Network("64:ff9b::/96") or ip.ipv4_mapped is not None
        if ip.sixtofour is not None:
            assert ip.sixtofour.is_global
        assert ip.teredo is None or all(v4.is_global for v4 in ip.teredo)


@given(st.text(max_size=80))
def test_any_text_is_a_valid_endpoint_or_unprocessable(text: str) -> None:
    for url in (text, f"https://{text}", f"https://example.org:{text}/h", f"https://[{text}]/"):
        try:
            validate_endpoint(url, allow_loopback=False)
        except Unprocessable as exc:
            assert exc.extensions == {"field": "url"}


# --- Retry-After -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("0", 0.0),
        ("120", 120.0),
        (" 120 ", 120.0),
        ("86400", MAX_RETRY_AFTER_SECONDS),
        ("86401", MAX_RETRY_AFTER_SECONDS),
        ("999999999999999999999999999999", MAX_RETRY_AFTER_SECONDS),
        ("9" * 10_000, MAX_RETRY_AFTER_SECONDS),  # longer than int() converts
        (format_datetime(NOW + timedelta(seconds=300), usegmt=True), 300.0),
        ("Tue, 01 Dec 2026 12:10:00 GMT", 600.0),
        ("Tue, 01 Dec 2026 12:10:00 -0000", 600.0),  # UTC, said without a zone
        ("Tue, 01 Dec 2026 14:10:00 +0200", 600.0),
        ("Tue, 01 Dec 2026 11:00:00 GMT", 0.0),  # in the past: no extra wait
        ("Tue, 01 Dec 2099 12:00:00 GMT", MAX_RETRY_AFTER_SECONDS),
    ],
)
def test_retry_after_seconds_and_http_dates(header: str, seconds: float) -> None:
    assert parse_retry_after(header, NOW) == seconds


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "soon",
        "-5",
        "1.5",
        "1e3",
        "\u00b2",  # superscript two: str.isdigit() says it is a digit
        "\u0661\u0662\u0660",  # Arabic-Indic digits
        "\uff11\uff12\uff10",  # full-width digits
        "12 0",
        "0x10",
        "Tue, 32 Foo 2026",
        "Mon,",
    ],
)
def test_retry_after_that_is_not_understood_is_ignored(header: str | None) -> None:
    assert parse_retry_after(header, NOW) is None
    assert RetrySchedule.honour_retry_after(5.0, header, NOW) == 5.0


def test_retry_after_pushes_later_never_earlier() -> None:
    assert RetrySchedule.honour_retry_after(5.0, "120", NOW) == 120.0
    assert RetrySchedule.honour_retry_after(300.0, "120", NOW) == 300.0
    assert RetrySchedule.honour_retry_after(5.0, "9" * 50, NOW) == MAX_RETRY_AFTER_SECONDS


@given(st.text(max_size=60))
def test_any_retry_after_is_a_bounded_delay_or_ignored(header: str) -> None:
    seconds = parse_retry_after(header, NOW)
    assert seconds is None or 0.0 <= seconds <= MAX_RETRY_AFTER_SECONDS
    # and the delay it gives can always be added to a time
    assert NOW + timedelta(seconds=RetrySchedule.honour_retry_after(1.0, header, NOW)) >= NOW


# --- retry schedule --------------------------------------------------------------------------------


def test_retry_schedule_gives_each_delay_then_fails() -> None:
    schedule = RetrySchedule((5.0, 300.0, 1800.0))
    assert [schedule.next_delay(n) for n in range(1, 5)] == [5.0, 300.0, 1800.0, None]


def test_an_empty_schedule_fails_after_the_first_attempt() -> None:
    assert RetrySchedule(()).next_delay(1) is None


def test_before_any_failure_there_is_no_wait() -> None:
    assert RetrySchedule((5.0,)).next_delay(0) == 0.0


# --- patterns and entitlement ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patterns", "event_type", "expected"),
    [
        (["*"], "icep.plans.plan.submitted.v1", True),
        (["icep.plans.*"], "icep.plans.plan.submitted.v1", True),
        (["icep.plans.*"], "icep.procurement.need.opened.v1", False),
        (["icep.plans.plan.submitted.v1"], "icep.plans.plan.submitted.v1", True),
        (["icep.plans.plan.submitted.v1"], "icep.plans.plan.submitted.v2", False),
        (["icep.*.submitted.v1"], "icep.plans.plan.submitted.v1", True),
        (["ICEP.plans.*"], "icep.plans.plan.submitted.v1", False),
        (["icep.standards.*", "icep.plans.*"], "icep.plans.plan.submitted.v1", True),
        ([], "icep.plans.plan.submitted.v1", False),
    ],
)
def test_pattern_matching(patterns: list[str], event_type: str, expected: bool) -> None:
    assert matches(patterns, event_type) is expected


def test_event_patterns_are_cleaned_and_checked() -> None:
    assert validate_event_patterns([" icep.plans.* "]) == ["icep.plans.*"]
    assert validate_event_patterns([]) == ["*"]
    for bad in (["icep plans"], [""], ["icep.plans.[a]"], ["icep/plans"]):
        with pytest.raises(Unprocessable):
            validate_event_patterns(bad)


@pytest.mark.parametrize(
    ("nation", "releasability", "expected"),
    [
        ("DEU", Releasability(owner="DEU"), True),
        ("FRA", Releasability(owner="DEU"), False),
        ("FRA", Releasability(owner="DEU", scope=ReleasabilityScope.NATIONS, nations=("FRA",)), True),
        ("POL", Releasability(owner="DEU", scope=ReleasabilityScope.NATIONS, nations=("FRA",)), False),
        ("POL", Releasability(owner="DEU", scope=ReleasabilityScope.ALLIES), True),
        ("NATO", Releasability(owner="DEU", scope=ReleasabilityScope.ALLIES), True),
        ("JPN", Releasability(owner="DEU", scope=ReleasabilityScope.ALLIES), False),
        ("JPN", Releasability(owner="DEU", scope=PARTNERS, nations=("JPN",)), True),
        ("UKR", Releasability(owner="DEU", scope=PARTNERS, nations=("JPN",)), False),
    ],
)
def test_entitlement_follows_releasability(nation: str, releasability: Releasability, expected: bool) -> None:
    assert entitled(nation, releasability) is expected


# --- filters ---------------------------------------------------------------------------------------

CAPACITY = "icep.plans.capacity.committed.v1"
SHELL = {"product": "155mm artillery round", "capability_area": "munitions"}


@pytest.mark.parametrize(
    ("filters", "event_type", "nation", "data", "expected"),
    [
        (SubscriptionFilters(), CAPACITY, "DEU", SHELL, True),
        (SubscriptionFilters(event_types=("icep.procurement.*",)), CAPACITY, "DEU", SHELL, False),
        (SubscriptionFilters(nations=("DEU", "FRA")), CAPACITY, "FRA", SHELL, True),
        (SubscriptionFilters(nations=("DEU",)), CAPACITY, "FRA", SHELL, False),
        (SubscriptionFilters(capability_areas=("munitions",)), CAPACITY, "DEU", SHELL, True),
        (SubscriptionFilters(capability_areas=("air defence",)), CAPACITY, "DEU", SHELL, False),
        # Free text is compared without case and extra spaces.
        (SubscriptionFilters(products=(" 155MM  Artillery round",)), CAPACITY, "DEU", SHELL, True),
        (SubscriptionFilters(products=("120mm tank round",)), CAPACITY, "DEU", SHELL, False),
        # An event without the field does not match a filter on it...
        (SubscriptionFilters(products=("155mm artillery round",)), CAPACITY, "DEU", {"plan_id": "p"}, False),
        (SubscriptionFilters(capability_areas=("munitions",)), CAPACITY, "DEU", {"product": "x"}, False),
        # ...but passes when the subscription does not filter on it.
        (SubscriptionFilters(nations=("DEU",)), CAPACITY, "DEU", {"plan_id": "p"}, True),
        # Lists count too: a standard's capability areas, a supplier's products.
        (
            SubscriptionFilters(capability_areas=("munitions",)),
            "t",
            "DEU",
            {"capability_areas": ["c2", "munitions"]},
            True,
        ),
        (SubscriptionFilters(products=("EX-155",)), "t", "DEU", {"products": ["EX-120"]}, False),
        (SubscriptionFilters(products=("ex-155",)), "t", "DEU", {"products": ["EX-155"]}, True),
        # A field that is not text does not count as having it.
        (SubscriptionFilters(products=("1",)), "t", "DEU", {"product": 1}, False),
        # Every filter must pass.
        (
            SubscriptionFilters(("icep.plans.*",), ("DEU",), ("munitions",), ("155mm artillery round",)),
            CAPACITY,
            "DEU",
            SHELL,
            True,
        ),
        (
            SubscriptionFilters(("icep.plans.*",), ("DEU",), ("munitions",), ("120mm tank round",)),
            CAPACITY,
            "DEU",
            SHELL,
            False,
        ),
    ],
)
def test_filters(
    filters: SubscriptionFilters, event_type: str, nation: str, data: dict[str, Any], expected: bool
) -> None:
    assert filters.accepts(event_type, nation, data) is expected


WORDS = st.sampled_from(["munitions", "air defence", "155mm", "EX-155", "Munitions"])


@given(
    nation=st.sampled_from(["DEU", "FRA", "UKR", "NATO"]),
    data=st.fixed_dictionaries(
        {},
        optional={
            "product": WORDS,
            "products": st.lists(WORDS, max_size=3),
            "capability_area": WORDS,
            "capability_areas": st.lists(WORDS, max_size=3),
        },
    ),
    nations=st.lists(st.sampled_from(["DEU", "FRA", "POL"]), max_size=2),
    areas=st.lists(WORDS, max_size=2),
    products=st.lists(WORDS, max_size=2),
)
def test_a_filter_only_ever_narrows(
    nation: str, data: dict[str, Any], nations: list[str], areas: list[str], products: list[str]
) -> None:
    wider = SubscriptionFilters(event_types=("icep.*",))
    narrower = SubscriptionFilters(("icep.*",), tuple(nations), tuple(areas), tuple(products))
    if narrower.accepts(CAPACITY, nation, data):
        assert wider.accepts(CAPACITY, nation, data)


def test_nation_filters_are_known_nations() -> None:
    assert validate_nations([" deu", "FRA", "DEU", "NATO", "UKR"]) == ["DEU", "FRA", "NATO", "UKR"]
    assert validate_nations([]) == []
    for bad in (["XXX"], [""], ["ALLIES"]):
        with pytest.raises(Unprocessable) as caught:
            validate_nations(bad)
        assert caught.value.extensions["field"] == "nations"


def test_capability_area_and_product_filters_are_cleaned() -> None:
    assert validate_terms(["  munitions ", "Munitions", "air  defence"], "capability_areas") == [
        "munitions",
        "air defence",
    ]
    for bad in ([""], ["   "], ["x" * 201], ["a\x00b"]):
        with pytest.raises(Unprocessable):
            validate_terms(bad, "products")


# --- the subscription's life -----------------------------------------------------------------------

S, A = SubscriptionStatus, SubscriptionAction


@pytest.mark.parametrize(
    ("current", "action", "expected"),
    [
        (S.ACTIVE, A.PAUSE, S.PAUSED),
        (S.PAUSED, A.RESUME, S.ACTIVE),
        (S.DISABLED, A.RESUME, S.ACTIVE),
        (S.ACTIVE, A.DISABLE, S.DISABLED),
        (S.PAUSED, A.DISABLE, S.DISABLED),
        (S.ACTIVE, A.DELETE, S.DELETED),
        (S.PAUSED, A.DELETE, S.DELETED),
        (S.DISABLED, A.DELETE, S.DELETED),
    ],
)
def test_subscription_transitions(current: S, action: A, expected: S) -> None:
    assert next_status(current, action) is expected


@pytest.mark.parametrize(
    ("current", "action"),
    [
        (S.ACTIVE, A.RESUME),
        (S.PAUSED, A.PAUSE),
        (S.DISABLED, A.PAUSE),
        (S.DISABLED, A.DISABLE),
        *((S.DELETED, a) for a in A),
    ],
)
def test_illegal_subscription_transitions(current: S, action: A) -> None:
    with pytest.raises(IllegalTransition) as caught:
        next_status(current, action)
    assert caught.value.extensions["current_state"] == current.value


# --- signatures and rotation -----------------------------------------------------------------------


@dataclass
class Keys:
    secret: str
    previous_secret: str | None = None
    previous_secret_expires_at: datetime | None = None


def signed_headers(keys: Keys, msg_id: str, at: datetime, body: str) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signatures_for(keys, msg_id, at, body),
    }


BODY = '{"id":"m1","type":"icep.plans.plan.submitted.v1"}'


def test_without_a_rotation_one_signature_with_the_secret() -> None:
    keys = Keys(new_signing_secret())
    now = datetime.now(UTC)
    headers = signed_headers(keys, "m1", now, BODY)
    assert headers["webhook-signature"].startswith("v1,") and " " not in headers["webhook-signature"]
    assert headers["webhook-signature"] == Webhook(keys.secret).sign("m1", now, BODY)
    assert Webhook(keys.secret).verify(BODY, headers)["id"] == "m1"


def test_during_the_grace_period_both_secrets_verify() -> None:
    old, new = new_signing_secret(), new_signing_secret()
    now = datetime.now(UTC)
    keys = Keys(new, previous_secret=old, previous_secret_expires_at=now + timedelta(hours=24))
    headers = signed_headers(keys, "m1", now, BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(old).verify(BODY, headers)["id"] == "m1"
    assert Webhook(new).verify(BODY, headers)["id"] == "m1"
    with pytest.raises(WebhookVerificationError):
        Webhook(new_signing_secret()).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(BODY.replace("m1", "m2"), headers)


@pytest.mark.parametrize("expired_by", [timedelta(0), timedelta(seconds=1), timedelta(days=3)])
def test_after_the_grace_period_only_the_new_secret_verifies(expired_by: timedelta) -> None:
    old, new = new_signing_secret(), new_signing_secret()
    now = datetime.now(UTC)
    keys = Keys(new, previous_secret=old, previous_secret_expires_at=now - expired_by)
    headers = signed_headers(keys, "m1", now, BODY)
    assert " " not in headers["webhook-signature"]
    assert Webhook(new).verify(BODY, headers)["id"] == "m1"
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(BODY, headers)


def test_grace_is_judged_at_the_time_of_sending_also_for_naive_stored_times() -> None:
    old, new = new_signing_secret(), new_signing_secret()
    expires = datetime(2026, 12, 2, 12, 0, 0)  # as SQLite hands it back: naive, meaning UTC
    keys = Keys(new, previous_secret=old, previous_secret_expires_at=expires)
    before = signatures_for(keys, "m1", expires.replace(tzinfo=UTC) - timedelta(seconds=1), BODY)
    after = signatures_for(keys, "m1", expires.replace(tzinfo=UTC), BODY)
    assert len(before.split(" ")) == 2 and len(after.split(" ")) == 1


def test_a_ping_looks_like_any_other_message() -> None:
    body = ping_body("m1", "sub-1", "DEU", NOW)
    assert body == {
        "id": "m1",
        "type": PING_EVENT_TYPE,
        "source": "/icep/notifications",
        "subject": "sub-1",
        "time": "2026-12-01T12:00:00Z",
        "nation": "DEU",
        "releasableto": "DEU",
        "data": {"subscription_id": "sub-1", "message": "ping"},
    }
