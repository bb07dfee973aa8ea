"""OCDS release and record packages, and the compiled release by the OCDS merge rules."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from icep.procurement.ocds.formats import Release, aware, timestamp

#: The OCDS version of every package (major.minor).
OCDS_VERSION = "1.1"
#: The lots extension (tender.lots, items.relatedLot, awards.relatedLots), declared in packages using it.
LOTS_EXTENSION = (
    "https://raw.githubusercontent.com/open-contracting-extensions/ocds_lots_extension/v1.1.5/extension.json"
)


_OMIT_WHEN_MERGED = frozenset({"id", "date", "tag"})
_WHOLE_LIST_MERGE = frozenset({"additionalIdentifiers", "additionalClassifications"})


def release_package(
    releases: Sequence[Release], *, uri: str, published_date: datetime, publisher: str = "ICEP"
) -> dict[str, Any]:
    """An OCDS release package of releases (of one or more processes)."""
    if not releases:
        raise ValueError("a release package holds at least one release")
    seen: set[tuple[str, str]] = set()
    for r in releases:
        key = (r["ocid"], r["id"])
        if key in seen:
            raise ValueError(f"release {r['id']} of {r['ocid']} is in the package twice")
        seen.add(key)
    return {
        **_package_header(releases, uri, published_date, publisher),
        "releases": [copy.deepcopy(r) for r in releases],
    }


def record_package(
    ocid: str,
    releases: Sequence[Release],
    *,
    uri: str,
    published_date: datetime,
    publisher: str = "ICEP",
) -> dict[str, Any]:
    """An OCDS record package with the one record of `ocid`: its releases, embedded in date order, and
    the compiled release."""
    if not releases:
        raise ValueError("a record holds at least one release")
    others = sorted({r["ocid"] for r in releases if r["ocid"] != ocid})
    if others:
        raise ValueError(f"releases of other processes {others} in the record of {ocid}")
    ordered = _in_date_order(releases)
    if len({r["id"] for r in ordered}) != len(ordered):
        raise ValueError(f"release ids repeat in the record of {ocid}")
    record = {
        "ocid": ocid,
        "releases": [copy.deepcopy(r) for r in ordered],
        "compiledRelease": compile_release(ordered),
    }
    return {**_package_header(ordered, uri, published_date, publisher), "records": [record]}


def compile_release(releases: Sequence[Release]) -> Release:
    """The compiled release of one process, by the OCDS merge rules: releases merged in date order;
    objects merged by key; arrays of objects with `id` merged by id; other arrays (and those marked
    `wholeListMerge`, and arrays inside ICEP's own `icep*` fields) replaced; a null removes a field.
    `id`, `date` and `tag` are not merged: the compiled release has the id `<ocid>-compiled`, the date of
    the latest release and the tag `compiled`."""
    if not releases:
        raise ValueError("nothing to compile")
    ordered = _in_date_order(releases)
    ocids = {r["ocid"] for r in ordered}
    if len(ocids) != 1:
        raise ValueError(f"a compiled release is of one process, not {sorted(ocids)}")
    merged: dict[str, Any] = {}
    for r in ordered:
        _merge(merged, {k: v for k, v in r.items() if k not in _OMIT_WHEN_MERGED}, icep=False)
    ocid = ordered[0]["ocid"]
    body = {k: v for k, v in merged.items() if k != "ocid"}
    return {"ocid": ocid, "id": f"{ocid}-compiled", "date": ordered[-1]["date"], "tag": ["compiled"], **body}


def _package_header(
    releases: Sequence[Release], uri: str, published_date: datetime, publisher: str
) -> dict[str, Any]:
    out: dict[str, Any] = {"uri": uri, "version": OCDS_VERSION}
    if any(_uses_lots(r) for r in releases):
        out["extensions"] = [LOTS_EXTENSION]
    out["publisher"] = {"name": publisher}
    out["publishedDate"] = timestamp(aware(published_date, strict=True))
    return out


def _uses_lots(r: Release) -> bool:
    return "lots" in r.get("tender", {}) or any("relatedLots" in a for a in r.get("awards", ()))


def _in_date_order(releases: Sequence[Release]) -> list[Release]:
    return sorted(releases, key=lambda r: datetime.fromisoformat(r["date"]))


def _merge(into: dict[str, Any], new: Mapping[str, Any], *, icep: bool) -> None:
    for key, value in new.items():
        in_icep = icep or key.startswith("icep")
        if value is None:
            into.pop(key, None)
        elif isinstance(value, Mapping):
            target = into.get(key)
            if not isinstance(target, dict):
                target = into[key] = {}
            _merge(target, value, icep=in_icep)
        elif isinstance(value, list):
            into[key] = _merge_list(into.get(key), value, whole=in_icep or key in _WHOLE_LIST_MERGE)
        else:
            into[key] = value


def _merge_list(old: Any, new: list[Any], *, whole: bool) -> list[Any]:
    if whole or not all(isinstance(x, Mapping) and "id" in x for x in new):
        return copy.deepcopy(new)
    by_id: dict[Any, dict[str, Any]] = {}
    if isinstance(old, list):
        for x in old:
            if isinstance(x, dict) and "id" in x:
                by_id[x["id"]] = x
    for x in new:
        target = by_id.setdefault(x["id"], {})
        _merge(target, x, icep=False)
    return list(by_id.values())
