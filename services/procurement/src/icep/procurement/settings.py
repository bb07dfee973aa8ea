"""The procurement service's settings, including the supply-chain screening lists.

The restricted countries and parties come from the environment as JSON lists
(`ICEP_PROCUREMENT_RESTRICTED_COUNTRIES='["RUS", "BLR"]'`, `ICEP_PROCUREMENT_RESTRICTED_PARTIES=[...]`).
Changing them changes the lists' version, and every supplier screened under another version is screened
again on the next start (and on every re-screening interval).
"""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from icep.platform.settings import ServiceSettings
from icep.procurement.initiatives.parts import MIN_AGGREGATE_PARTICIPANTS
from icep.procurement.suppliers.model import ScreeningLists

#: Countries under restrictive measures (ISO 3166-1 alpha-3), as a sensible default for development.
DEFAULT_RESTRICTED_COUNTRIES = ("RUS", "BLR", "PRK", "IRN", "SYR")
#: Clearly invented names: real restricted-party lists are configured per deployment, never shipped.
DEFAULT_RESTRICTED_PARTIES = (
    "Sample Sanctioned Holdings (synthetic)",
    "Example Restricted Trading Ltd (synthetic)",
)


class ProcurementSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ICEP_PROCUREMENT_", extra="ignore")

    service_name: str = "procurement"
    port: int = 8002
    #: Countries whose incorporation, ultimate control or ownership makes a supplier a potential match.
    restricted_countries: list[str] = Field(default_factory=lambda: list(DEFAULT_RESTRICTED_COUNTRIES))
    #: Restricted parties (compared without regard to case) among a supplier, its parent and owners.
    restricted_parties: list[str] = Field(default_factory=lambda: list(DEFAULT_RESTRICTED_PARTIES))
    #: How often every supplier screened under other lists is screened again (also once at start).
    rescreen_interval_seconds: float = Field(default=3600.0, gt=0, le=7 * 86_400)
    #: Disclosure control: an initiative's aggregated demand reaches readers other than the lead nation
    #: and NATO staff only once settled (the tender published): its firm demand, each year only when at
    #: least this many nations commit to it (see `icep.procurement.initiatives.parts.Disclosure`).
    min_aggregate_participants: int = Field(default=MIN_AGGREGATE_PARTICIPANTS, ge=2, le=100)
    #: Where callers reach the API (the gateway): the base of the `uri` of OCDS packages. Configured, never
    #: taken from request headers, which a caller controls.
    public_url: str = Field(default="http://127.0.0.1:8000", pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$")

    @field_validator("public_url")
    @classmethod
    def _no_trailing_slash(cls, v: str) -> str:
        return v.rstrip("/")

    @field_validator("restricted_countries")
    @classmethod
    def _country_codes(cls, v: list[str]) -> list[str]:
        codes = [c.strip().upper() for c in v if c.strip()]
        wrong = [c for c in codes if len(c) != 3 or not c.isalpha()]
        if wrong:
            raise ValueError(f"restricted countries are ISO 3166-1 alpha-3 codes, not {wrong}")
        return sorted(set(codes))

    @field_validator("restricted_parties")
    @classmethod
    def _party_names(cls, v: list[str]) -> list[str]:
        return list(dict.fromkeys(p.strip() for p in v if p.strip()))

    def screening_lists(self) -> ScreeningLists:
        return ScreeningLists(frozenset(self.restricted_countries), frozenset(self.restricted_parties))


_lists: ScreeningLists | None = None
_min_aggregate: int | None = None


def configure_lists(settings: ProcurementSettings) -> ScreeningLists:
    """Make `settings`' lists (and disclosure threshold) the ones in force in this process (the app does
    this when it is created)."""
    global _lists, _min_aggregate
    _lists = settings.screening_lists()
    _min_aggregate = settings.min_aggregate_participants
    return _lists


def min_aggregate_participants() -> int:
    """The disclosure threshold in force: that of the settings the app was created with, else the
    environment's, read once."""
    if _min_aggregate is None:
        configure_lists(ProcurementSettings())
    assert _min_aggregate is not None
    return _min_aggregate


def current_lists() -> ScreeningLists:
    """The screening lists in force: those of the settings the app was created with, else the
    environment's, read once."""
    return _lists if _lists is not None else configure_lists(ProcurementSettings())
