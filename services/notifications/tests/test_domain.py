"""The notifications rules in plain Python: endpoints, Retry-After, the retry schedule, matching and
entitlement."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from icep.contracts import Releasability
from icep.contracts.releasability import ReleasabilityScope
from icep.notifications.domain import (
    MAX_RETRY_AFTER_SECONDS,
    RetrySchedule,
    address_allowed,
    entitled,
    matches,
    parse_retry_after,
    validate_endpoint,
    validate_event_patterns,
)
from icep.platform.errors import Unprocessable

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
