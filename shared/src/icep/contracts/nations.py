"""Who is who in the Pledge: the 32 Allies (ISO 3166-1 alpha-3, as STANAG 1059), partners, NATO staff."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

ALLIES: frozenset[str] = frozenset(
    [
        "ALB",
        "BEL",
        "BGR",
        "CAN",
        "HRV",
        "CZE",
        "DNK",
        "EST",
        "FIN",
        "FRA",
        "DEU",
        "GRC",
        "HUN",
        "ISL",
        "ITA",
        "LVA",
        "LTU",
        "LUX",
        "MNE",
        "NLD",
        "MKD",
        "NOR",
        "POL",
        "PRT",
        "ROU",
        "SVK",
        "SVN",
        "ESP",
        "SWE",
        "TUR",
        "GBR",
        "USA",
    ]
)
#: Partners named in the Pledge; the EU is an organisation, not a nation.
PARTNERS: frozenset[str] = frozenset({"AUS", "JPN", "NZL", "KOR", "UKR", "EU"})
#: International Staff and agencies such as NSPA.
NATO = "NATO"


def _known(code: str) -> str:
    if code not in ALLIES and code not in PARTNERS and code != NATO:
        raise ValueError(f"{code!r} is not an Ally, a partner or NATO (ISO 3166-1 alpha-3)")
    return code


#: A nation code in an API model: an Ally, a partner or NATO, else a 422 naming the field.
NationCode = Annotated[str, AfterValidator(_known)]
