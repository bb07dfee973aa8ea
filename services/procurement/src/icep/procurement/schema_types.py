"""The request and response building blocks every aggregate's schemas and routes share: codes checked
against ISO lists, amounts, counts, quantities per year keyed by the year, paging and If-Match."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated

import pycountry
from fastapi import Path, Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, StringConstraints

from icep.contracts import Releasability
from icep.contracts.base import MoneyAmount
from icep.contracts.releasability import ReleasabilityIn
from icep.procurement.rules import MAX_QUANTITY, Change

Text = Annotated[str, Field(min_length=1, max_length=200)]
Reason = Annotated[str, Field(min_length=1, max_length=2000)]
#: ISO 4217 codes newer than OCDS 1.1.5's closed currency codelist: a release naming one would fail the
#: OCDS schema, so they are refused until the codelist knows them.
NOT_IN_OCDS_CURRENCIES = frozenset({"SLE", "VED", "XAD", "XCG", "ZWG"})


def iso_currency(code: str) -> str:
    """An ISO 4217 currency code (one OCDS 1.1.5 knows), or a ValueError saying why not."""
    if pycountry.currencies.get(alpha_3=code) is None:
        raise ValueError(f"{code} is not an ISO 4217 currency code")
    if code in NOT_IN_OCDS_CURRENCIES:
        raise ValueError(f"{code} is not in the currency codelist of OCDS 1.1.5, which releases follow")
    return code


def iso_country(code: str) -> str:
    """An ISO 3166-1 alpha-3 country code, or a ValueError saying why not."""
    if pycountry.countries.get(alpha_3=code) is None:
        raise ValueError(f"{code} is not an ISO 3166-1 alpha-3 country code")
    return code


Country = Annotated[
    str, Field(pattern=r"^[A-Z]{3}$", description="ISO 3166-1 alpha-3"), AfterValidator(iso_country)
]
Currency = Annotated[
    str,
    Field(pattern=r"^[A-Z]{3}$", description="ISO 4217", examples=["EUR"]),
    AfterValidator(iso_currency),
]
#: An amount of money: a JSON number, never `true` or `"5"`.
Money = Annotated[MoneyAmount, Field(ge=0, le=1e13)]
#: A count of units: a JSON integer (never `true`, `5.0` or `"5"`).
Count = Annotated[StrictInt, Field(ge=1, le=MAX_QUANTITY)]
Id = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$")]
Nation = Annotated[str, Path(pattern=r"^[A-Z]{2,4}$", description="The participating nation")]
YearKey = Annotated[str, StringConstraints(pattern=r"^[0-9]{4}$")]
Quantities = Annotated[
    dict[YearKey, Annotated[StrictInt, Field(ge=0, le=MAX_QUANTITY)]],
    Field(max_length=30, description="Quantity per year, keyed by the year", examples=[{"2026": 12000}]),
]


def per_year(quantities: Mapping[str, int]) -> dict[int, int]:
    """`{"2026": 5}` (keys already checked as four-digit years) -> `{2026: 5}`."""
    return {int(y): q for y, q in quantities.items()}


def years_out(quantities: Mapping[int, int]) -> dict[str, int]:
    return {str(y): q for y, q in sorted(quantities.items())}


Limit = Annotated[int, Query(ge=1, le=200)]
Cursor = Annotated[str | None, Query(max_length=64)]


class InputModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


def owned(r: ReleasabilityIn | None, owner: str) -> Releasability | None:
    return None if r is None else r.owned_by(owner)


class ChangeOut(BaseModel):
    action: str
    status: str
    by: str
    at: datetime
    note: str

    @classmethod
    def all(cls, history: tuple[Change, ...]) -> list[ChangeOut]:
        return [cls(action=c.action, status=c.status, by=c.by, at=c.at, note=c.note) for c in history]
