"""If-Match as the routes read it: required for a change (428), `*` for any version, 412 for a tag that is
no ETag of this API."""

from __future__ import annotations

import pytest

from icep.platform.errors import PreconditionFailed, PreconditionRequired
from icep.platform.http import etag, if_match_version, optional_if_match


@pytest.mark.parametrize(
    ("header", "version"), [('"3"', 3), ("3", 3), ('W/"12"', 12), (' "7" ', 7), ("*", None)]
)
def test_what_a_change_may_name(header: str, version: int | None) -> None:
    assert if_match_version(header) == version


def test_a_change_without_if_match_is_428() -> None:
    with pytest.raises(PreconditionRequired) as raised:
        if_match_version(None)
    assert raised.value.status == 428 and "If-Match" in raised.value.detail


@pytest.mark.parametrize("header", ['"abc"', "", "W/", '"1", "2"', '"-1"', '"1e5"', "9" * 19])
def test_a_tag_this_api_never_issued_is_412(header: str) -> None:
    with pytest.raises(PreconditionFailed):
        if_match_version(header)


def test_an_upsert_tells_absent_any_and_a_version_apart() -> None:
    assert optional_if_match(None) is None
    assert optional_if_match("*") == "*"
    assert optional_if_match(etag(4)) == 4
    with pytest.raises(PreconditionFailed):
        optional_if_match("W/")
