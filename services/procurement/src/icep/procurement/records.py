"""How every aggregate's repository stores it: kept whole as a JSON document (through pydantic's dataclass
support) beside the reader tokens its rows are filtered on in SQL."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import TypeAdapter

from icep.contracts import Releasability
from icep.platform import visibility
from icep.procurement.rules import readers

T = TypeVar("T")


def to_json(adapter: TypeAdapter[T], value: T) -> dict[str, Any]:
    # What an aggregate recorded is published when it is saved, never stored with it.
    data: dict[str, Any] = adapter.dump_python(value, mode="json", exclude={"events"})
    return data


def stored_readers(r: Releasability) -> str:
    """The stored readers of an initiative, supplier or demand signal: who may read it, and who its
    events are marked for (`events.py` releases them alike), by `icep.platform.visibility`."""
    return visibility.encode(readers(r))
