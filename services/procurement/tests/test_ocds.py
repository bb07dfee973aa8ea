"""The OCDS 1.1.5 export: every release, release package and record package validates against the
standard's schemas, with codes from its codelists, and says what happened at each step."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pycountry
import pytest
from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from icep.platform.domain import Actor
from icep.procurement import schema_types as schema_types
from icep.procurement.initiatives.model import Initiative
from icep.procurement.initiatives.parts import (
    AwardInput,
    Bid,
    CallOff,
    Contract,
    Item,
    Lot,
    Milestone,
    RequiredStandard,
)
from icep.procurement.initiatives.standing import SupplierStanding
from icep.procurement.ocds import packages as ocds_packages
from icep.procurement.ocds import releases as ocds_releases
from icep.procurement.ocds import tags as ocds_tags
from icep.procurement.rules import OCID_PREFIX
from icep.procurement.suppliers.model import Scale, ScreeningLists, Supplier

# --- the OCDS 1.1.5 schemas and codelists ---------------------------------------------------------------

SCHEMA_URL = "https://standard.open-contracting.org/schema/1__1__5/"
SCHEMAS = (
    "release-schema.json",
    "release-package-schema.json",
    "record-package-schema.json",
    "versioned-release-validation-schema.json",
)
CODELISTS = (
    "releaseTag.csv",
    "partyRole.csv",
    "tenderStatus.csv",
    "relatedProcess.csv",
    "relatedProcessScheme.csv",
    "milestoneStatus.csv",
    "milestoneType.csv",
    "documentType.csv",
    "awardStatus.csv",
    "contractStatus.csv",
    "initiationType.csv",
    "currency.csv",
)
REPO = Path(__file__).resolve().parents[3]
LOCAL = REPO.parent / "shared" / "ocds-1.1.5"
CACHE = REPO / "var" / "ocds-1.1.5"


def ocds_dir(
    local: Path = LOCAL, cache_dir: Path = CACHE, transport: httpx.BaseTransport | None = None
) -> Path:
    """The schemas beside the repository (../shared/ocds-1.1.5, as CI has it); where that folder is
    missing, a copy downloaded once from the standard's published URLs and cached under ./var. A failed
    download is an error, never a skipped test."""
    if local.is_dir():
        return local
    wanted = [*SCHEMAS, *(f"codelists/{name}" for name in CODELISTS)]
    missing = [name for name in wanted if not (cache_dir / name).is_file()]
    if missing:
        try:
            with httpx.Client(timeout=30, follow_redirects=True, transport=transport) as client:
                for name in missing:
                    response = client.get(SCHEMA_URL + name)
                    response.raise_for_status()
                    target = cache_dir / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    partial = target.with_name(target.name + ".part")
                    partial.write_bytes(response.content)
                    partial.replace(target)
        except httpx.HTTPError as e:
            raise RuntimeError(
                f"the OCDS 1.1.5 schemas are neither at {local} nor cached at {cache_dir}, and downloading "
                f"them from {SCHEMA_URL} failed: {e}"
            ) from e
    return cache_dir


@cache
def validators() -> dict[str, Draft4Validator]:
    folder = ocds_dir()
    schemas = {name: json.loads((folder / name).read_text(encoding="utf-8")) for name in SCHEMAS}
    registry: Registry[Any] = Registry().with_resources(
        (SCHEMA_URL + name, Resource.from_contents(schema, default_specification=DRAFT4))
        for name, schema in schemas.items()
    )
    checker = Draft4Validator.FORMAT_CHECKER
    return {
        name: Draft4Validator(schemas[f"{name}-schema.json"], registry=registry, format_checker=checker)
        for name in ("release", "release-package", "record-package")
    }


@cache
def codes(codelist: str) -> frozenset[str]:
    with (ocds_dir() / "codelists" / f"{codelist}.csv").open(encoding="utf-8") as f:
        return frozenset(row["Code"] for row in csv.DictReader(f))


def assert_valid(kind: str, document: dict[str, Any]) -> None:
    errors = sorted(validators()[kind].iter_errors(document), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def walk(value: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from walk(v, (*path, k))
    elif isinstance(value, list):
        for v in value:
            yield from walk(v, (*path, "[]"))


def assert_codes(release: dict[str, Any]) -> None:
    """Every code from an open codelist is one of the codelist's (the schema checks only closed ones)."""
    for path, value in walk(release):
        if path[-1:] == ("[]",):
            continue
        keys = tuple(p for p in path if p != "[]")
        if keys[-1:] == ("roles",):
            assert set(value) <= codes("partyRole"), path
        elif keys[-2:] == ("relatedProcesses", "relationship"):
            assert set(value) <= codes("relatedProcess"), path
        elif keys[-2:] == ("relatedProcesses", "scheme"):
            assert value in codes("relatedProcessScheme"), path
        elif keys[-2:] == ("milestones", "type"):
            assert value in codes("milestoneType"), path
        elif keys[-2:] == ("milestones", "status"):
            assert value in codes("milestoneStatus"), path
        elif keys[-1:] == ("documentType",):
            assert value in codes("documentType"), path
        elif keys[-1:] == ("currency",):
            assert value in codes("currency"), path
        elif keys == ("initiationType",):
            assert value in codes("initiationType")
        elif keys == ("tag",):
            assert set(value) <= codes("releaseTag")


def test_the_validator_checks_schema_and_date_time_format() -> None:
    assert "date-time" in Draft4Validator.FORMAT_CHECKER.checkers
    bad = {
        "ocid": "ocds-icep01-x",
        "id": "1",
        "date": "yesterday",
        "tag": ["planning"],
        "initiationType": "tender",
    }
    assert not validators()["release"].is_valid(bad)
    assert not validators()["release"].is_valid({**bad, "date": "2026-11-28T09:00:00Z", "tag": ["bogus"]})
    good = {**bad, "date": "2026-11-28T09:00:00Z"}
    assert validators()["release"].is_valid(good)
    package = {"uri": "https://x.example/p", "version": "1.1", "publisher": {"name": "ICEP"}}
    package |= {"publishedDate": "2026-11-28T09:00:00Z"}
    # The package's releases are checked against the release schema, found through the registry.
    assert validators()["release-package"].is_valid({**package, "releases": [good]})
    assert not validators()["release-package"].is_valid({**package, "releases": [bad]})
    assert not validators()["release-package"].is_valid({**package, "releases": [good], "uri": "not a uri"})


def test_schemas_are_downloaded_once_and_cached_where_shared_is_missing(tmp_path: Path) -> None:
    source = ocds_dir()
    served: list[str] = []

    def publish(request: httpx.Request) -> httpx.Response:
        name = request.url.path.removeprefix("/schema/1__1__5/")
        served.append(name)
        path = source / name
        return httpx.Response(200, content=path.read_bytes()) if path.is_file() else httpx.Response(404)

    transport = httpx.MockTransport(publish)
    folder = ocds_dir(tmp_path / "absent", tmp_path / "cache", transport)
    assert folder == tmp_path / "cache"
    assert len(served) == len(SCHEMAS) + len(CODELISTS)
    assert (folder / "release-schema.json").read_bytes() == (source / "release-schema.json").read_bytes()
    assert ocds_dir(tmp_path / "absent", tmp_path / "cache", transport) == folder
    assert len(served) == len(SCHEMAS) + len(CODELISTS)  # cached: nothing fetched again


def test_a_failed_download_is_an_error(tmp_path: Path) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(404))
    with pytest.raises(RuntimeError, match="downloading them"):
        ocds_dir(tmp_path / "absent", tmp_path / "cache", transport)


# --- a joint procurement, step by step ------------------------------------------------------------------

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
DEU = Actor("deu-buyer", "DEU", frozenset({"procurement"}))
FRA = Actor("fra-buyer", "FRA", frozenset({"procurement"}))
POL = Actor("pol-buyer", "POL", frozenset({"procurement"}))
NLD = Actor("nld-buyer", "NLD", frozenset({"procurement"}))
STANAG = RequiredStandard("STANAG 4425", 2)
ITEM = Item("155 mm artillery shell", "round", "CPV", "35330000", "155 mm high-explosive projectile")
LOTS = (
    Lot("L1", "Lot 1: deliveries 2027", 200, 1_000_000.0, "EUR"),
    Lot("L2", "Lot 2: deliveries 2028", 150, 800_000.0, "EUR"),
)
SUPPLIER_NAMES = {"s1": ("Rheinmetall Waffe Munition", Scale.LARGE), "s2": ("Nitro-Chem", Scale.SME)}
SUPPLIERS = {k: (name, scale.value) for k, (name, scale) in SUPPLIER_NAMES.items()}


def supplier(supplier_id: str, now: datetime) -> Supplier:
    name, scale = SUPPLIER_NAMES[supplier_id]
    registered = Supplier.register(
        id=supplier_id,
        actor=DEU,
        organisation_id=f"ORG-{supplier_id}",
        name=name,
        scale=scale,
        country_of_incorporation="DEU",
        now=now,
        products=("155-HE",),
    )
    return registered.screen(ScreeningLists(frozenset(), frozenset()), now)


@dataclass
class Story:
    """An initiative told through the domain's own methods, with a release after every change."""

    initiative: Initiative
    now: datetime = T0
    releases: list[dict[str, Any]] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)

    @classmethod
    def propose(cls) -> Story:
        initiative = Initiative.propose(
            id="i1",
            actor=DEU,
            title="155 mm ammunition 2027-2028",
            item=ITEM,
            capability_area="land/indirect fire",
            participation_deadline=T0.date() + timedelta(days=30),
            now=T0,
            description="Aggregated buy of 155 mm rounds.",
            required_standards=(STANAG,),
        )
        story = cls(initiative)
        story.publish()
        return story

    def tick(self) -> datetime:
        self.now += timedelta(hours=1)
        return self.now

    def publish(self) -> dict[str, Any]:
        r = ocds_releases.latest_release(self.initiative, suppliers=SUPPLIERS)
        self.releases.append(r)
        self.actions.append(self.initiative.history[-1].action)
        return r

    def step(self, change: Callable[[Initiative, datetime], Initiative]) -> dict[str, Any]:
        self.initiative = change(self.initiative, self.tick())
        return self.publish()


def participation_closed() -> Story:
    s = Story.propose()
    s.step(lambda i, now: i.open(DEU, now))
    s.step(lambda i, now: i.join(FRA, {2027: 100, 2028: 200}, now))
    s.step(lambda i, now: i.join(POL, {2027: 50}, now))
    s.step(lambda i, now: i.join(DEU, {2027: 80}, now))
    s.step(lambda i, now: i.join(NLD, {2028: 40}, now))
    s.step(lambda i, now: i.withdraw(NLD, "budget moved to air defence", now)[0])
    s.step(lambda i, now: i.commit(FRA, {2027: 100, 2028: 150}, {2027: 100}, now))
    s.step(lambda i, now: i.commit(POL, {2027: 50}, {2027: 50}, now))
    s.step(lambda i, now: i.commit(DEU, {2027: 80}, {2027: 80}, now))
    s.step(lambda i, now: i.flag(STANAG, "superseded", now) or i)
    s.step(lambda i, now: i.close_participation(DEU, now))
    return s


def tendering() -> Story:
    s = participation_closed()
    s.step(lambda i, now: i.publish_tender(DEU, LOTS, now.date() + timedelta(days=60), now))
    for bid_id, lot, supplier_id, quantity, value in (
        ("b1", "L1", "s1", 200, 950_000.0),
        ("b2", "L2", "s1", 150, 820_000.0),
        ("b3", "L2", "s2", 150, 780_000.0),
    ):
        bid = Bid(bid_id, lot, supplier_id, quantity, value, "EUR", s.now)
        s.step(lambda i, now, bid=bid: i.record_bid(DEU, bid, supplier(bid.supplier_id, now), now))
    return s


def awarded() -> Story:
    s = tendering()
    verified = frozenset({(STANAG.number, STANAG.edition)})
    standings = {k: SupplierStanding(supplier(k, s.now), {"155-HE": verified}) for k in ("s1", "s2")}
    awards = [
        ("a1", AwardInput("L1", "s1", 200, 950_000.0, "EUR")),
        ("a2", AwardInput("L2", "s2", 150, 780_000.0, "EUR")),
    ]
    s.step(lambda i, now: i.award(DEU, awards, standings, now))
    return s


FRAMEWORK = Contract(
    id="c1",
    award_id="a1",
    supplier_id="",
    framework=True,
    value=950_000.0,
    currency="EUR",
    period_start=date(2027, 1, 1),
    period_end=date(2027, 12, 31),
    milestones=(
        Milestone("m1", "First batch", date(2027, 3, 31), 100),
        Milestone("m2", "Second batch", date(2027, 9, 30), 100),
    ),
    signed_at=T0,
)
SECOND = Contract(
    id="c2",
    award_id="a2",
    supplier_id="",
    framework=False,
    value=780_000.0,
    currency="EUR",
    period_start=date(2028, 1, 1),
    period_end=date(2028, 12, 31),
    milestones=(Milestone("c2-m1", "All rounds", date(2028, 6, 30), 150),),
    signed_at=T0,
)
CALL_OFF = CallOff(
    id="co1",
    ocid=f"{OCID_PREFIX}-i1-co1",
    contract_id="c1",
    buyer="FRA",
    quantity=60,
    value=285_000.0,
    currency="EUR",
    delivery_by=date(2027, 6, 30),
    placed_at=T0,
)


def delivered() -> Story:
    s = awarded()
    s.step(lambda i, now: i.sign_contract(DEU, FRAMEWORK, now))
    s.step(lambda i, now: i.sign_contract(DEU, SECOND, now))
    s.step(lambda i, now: i.place_call_off(DEU, CALL_OFF, now))
    s.step(lambda i, now: i.start_delivery(DEU, now))
    s.step(lambda i, now: i.record_milestone(DEU, "c1", "m1", now.date(), "", now)[0])
    s.step(lambda i, now: i.record_milestone(DEU, "c1", "m2", None, "propellant shortage", now)[0])
    s.step(lambda i, now: i.record_milestone(DEU, "c2", "c2-m1", now.date(), "", now)[0])
    s.step(lambda i, now: i.close(DEU, now))
    return s


@pytest.fixture(scope="module")
def story() -> Story:
    return delivered()


EXPECTED_TAGS = [
    ("proposed", ["planning"]),
    ("open", ["planningUpdate"]),
    ("join", ["planningUpdate"]),
    ("join", ["planningUpdate"]),
    ("join", ["planningUpdate"]),
    ("join", ["planningUpdate"]),
    ("withdraw", ["planningUpdate"]),
    ("commit", ["planningUpdate"]),
    ("commit", ["planningUpdate"]),
    ("commit", ["planningUpdate"]),
    ("flagged", ["planningUpdate"]),
    ("close_participation", ["planningUpdate"]),
    ("publish_tender", ["tender"]),
    ("record_bid", ["tenderUpdate"]),
    ("record_bid", ["tenderUpdate"]),
    ("record_bid", ["tenderUpdate"]),
    ("award", ["award"]),
    ("sign_contract", ["contract"]),
    ("sign_contract", ["contract"]),
    ("place_call_off", ["implementation"]),
    ("start_delivery", ["implementation"]),
    ("milestone_met", ["implementationUpdate"]),
    ("milestone_missed", ["implementationUpdate"]),
    ("milestone_met", ["implementationUpdate"]),
    ("close", ["contractTermination"]),
]


def test_each_step_is_a_valid_release_with_its_stage_tags(story: Story) -> None:
    assert [(a, r["tag"]) for a, r in zip(story.actions, story.releases, strict=True)] == EXPECTED_TAGS
    for r in story.releases:
        assert_valid("release", r)
        assert_codes(r)
        assert r["ocid"] == story.initiative.ocid
        assert r["initiationType"] == "tender"
        assert r["date"].endswith("Z")
    assert len({r["id"] for r in story.releases}) == len(story.releases)
    dates = [datetime.fromisoformat(r["date"]) for r in story.releases]
    assert dates == sorted(dates)


def test_tender_status_follows_the_life_cycle(story: Story) -> None:
    statuses = [r["tender"]["status"] for r in story.releases]
    assert statuses[:12] == ["planning"] * 12
    assert statuses[12:16] == ["active"] * 4
    assert statuses[16:] == ["complete"] * (len(statuses) - 16)


def test_planning_carries_the_aggregated_demand_and_the_deadline(story: Story) -> None:
    proposed, after_commits, tendered = story.releases[0], story.releases[9], story.releases[12]
    assert proposed["planning"]["icepDemand"]["participants"] == 0
    assert "quantity" not in proposed["tender"]["items"][0]
    # While participants may still change their figures, the release (read by everyone who may read the
    # initiative) carries who participates but no figure (disclosure control).
    demand = after_commits["planning"]["icepDemand"]
    assert (demand["participants"], demand["committed"], demand["disclosure"]) == (3, 3, "withheld")
    assert "years" not in demand and "totals" not in demand
    assert "published once it is settled" in after_commits["planning"]["rationale"]
    item = after_commits["tender"]["items"][0]
    assert item == {
        "id": "1",
        "description": "155 mm artillery shell: 155 mm high-explosive projectile",
        "classification": {
            "scheme": "CPV",
            "id": "35330000",
            "description": "155 mm artillery shell",
        },
        "unit": {"name": "round"},
    }
    # Settled with the tender: the firm demand published, each year only when 3 nations commit to it
    # (2027: FRA, POL and DEU; 2028 only FRA, left out). No indicative or funded figure.
    published = tendered["planning"]["icepDemand"]
    assert published["disclosure"] == "published"
    assert published["years"] == [{"year": 2027, "firm": 230}]
    assert published["totals"] == {"firm": 230}
    assert all(r["planning"]["icepDemand"] == published for r in story.releases[13:])
    deadline = after_commits["planning"]["milestones"][0]
    assert (deadline["status"], deadline["dueDate"]) == ("scheduled", "2026-12-28T23:59:59Z")
    closed = story.releases[11]["planning"]["milestones"][0]
    assert closed["status"] == "met" and "dateMet" in closed


def test_parties_have_their_roles(story: Story) -> None:
    roles = {p["id"]: p["roles"] for p in story.releases[-1]["parties"]}
    assert roles == {
        "nation-DEU": ["buyer", "procuringEntity"],
        "nation-FRA": ["buyer"],
        "nation-POL": ["buyer"],
        "nation-NLD": ["interestedParty"],
        "supplier-s1": ["supplier", "tenderer"],
        "supplier-s2": ["supplier", "tenderer"],
    }
    parties = {p["id"]: p for p in story.releases[-1]["parties"]}
    assert parties["supplier-s2"]["details"] == {"scale": "sme"}
    assert parties["supplier-s1"]["name"] == "Rheinmetall Waffe Munition"
    assert parties["nation-DEU"]["name"] == "Germany"
    # Before NLD withdrew it was a buyer; a joint procurement names its buyers as parties, not `buyer`.
    assert {p["id"]: p["roles"] for p in story.releases[5]["parties"]}["nation-NLD"] == ["buyer"]
    assert all("buyer" not in r for r in story.releases)
    tender = story.releases[-1]["tender"]
    assert tender["procuringEntity"] == {"id": "nation-DEU", "name": "Germany"}
    assert [t["id"] for t in tender["tenderers"]] == ["supplier-s1", "supplier-s2"]
    assert tender["numberOfTenderers"] == 2


def test_the_tender_has_lots_items_and_period(story: Story) -> None:
    tender = story.releases[12]["tender"]
    assert [lot["id"] for lot in tender["lots"]] == ["L1", "L2"]
    assert [(i["id"], i["quantity"], i["relatedLot"]) for i in tender["items"]] == [
        ("1", 200, "L1"),
        ("2", 150, "L2"),
    ]
    assert tender["value"] == {"amount": 1_800_000.0, "currency": "EUR"}
    assert tender["tenderPeriod"]["startDate"] == story.releases[12]["date"]
    assert tender["eligibilityCriteria"].endswith("STANAG 4425 Ed. 2")
    assert tender["icepStandardFlags"][0]["standardStatus"] == "superseded"


def test_the_record_compiles_the_final_state(story: Story) -> None:
    ocid = story.initiative.ocid
    package = ocds_packages.release_package(
        story.releases, uri=f"https://icep.example.org/ocds/releases/{ocid}.json", published_date=story.now
    )
    assert_valid("release-package", package)
    assert package["extensions"] == [ocds_packages.LOTS_EXTENSION]
    record_pkg = ocds_packages.record_package(
        ocid,
        list(reversed(story.releases)),
        uri=f"https://icep.example.org/ocds/records/{ocid}.json",
        published_date=story.now,
    )
    assert_valid("record-package", record_pkg)
    (record,) = record_pkg["records"]
    assert record["ocid"] == ocid
    assert [r["id"] for r in record["releases"]] == [r["id"] for r in story.releases]  # date order
    compiled = record["compiledRelease"]
    assert_codes(compiled)
    assert (compiled["id"], compiled["tag"], compiled["date"]) == (
        f"{ocid}-compiled",
        ["compiled"],
        story.releases[-1]["date"],
    )
    assert compiled["tender"]["status"] == "complete"
    assert [lot["status"] for lot in compiled["tender"]["lots"]] == ["complete", "complete"]
    assert [(a["id"], a["status"], a["suppliers"][0]["id"]) for a in compiled["awards"]] == [
        ("a1", "active", "supplier-s1"),
        ("a2", "active", "supplier-s2"),
    ]
    contracts = {c["id"]: c for c in compiled["contracts"]}
    assert {c["status"] for c in contracts.values()} == {"terminated"}
    milestones = {m["id"]: m for c in contracts.values() for m in c["implementation"]["milestones"]}
    assert {k: m["status"] for k, m in milestones.items()} == {"m1": "met", "m2": "notMet", "c2-m1": "met"}
    assert "dateMet" in milestones["m1"] and "dateMet" not in milestones["m2"]
    assert "propellant shortage" in milestones["m2"]["description"]
    assert contracts["c1"]["relatedProcesses"] == [
        {
            "id": "co1",
            "title": ocds_releases.call_off_title(story.initiative, CALL_OFF),
            "scheme": "ocid",
            "identifier": CALL_OFF.ocid,
        }
    ]
    # Nothing published is ever dropped by a later snapshot: the compiled release is the latest one.
    assert normalised(compiled) == normalised(story.releases[-1])


def normalised(release: dict[str, Any]) -> Any:
    def norm(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: norm(v) for k, v in value.items()}
        if isinstance(value, list) and all(isinstance(x, dict) and "id" in x for x in value):
            return sorted((norm(x) for x in value), key=lambda x: str(x["id"]))
        if isinstance(value, list):
            return [norm(x) for x in value]
        return value

    return norm({k: v for k, v in release.items() if k not in ("id", "date", "tag")})


def test_a_call_off_is_its_own_process_linked_to_the_framework(story: Story) -> None:
    framework = story.initiative
    call_off = framework.call_offs[0]
    r = ocds_releases.call_off_release(
        framework, call_off, release_id=f"{call_off.ocid}-1", date=call_off.placed_at, suppliers=SUPPLIERS
    )
    assert_valid("release", r)
    assert_codes(r)
    assert (r["ocid"], r["tag"]) == (call_off.ocid, ["award", "contract"])
    assert r["relatedProcesses"] == [
        {
            "id": "framework",
            "relationship": ["framework"],
            "title": framework.title,
            "scheme": "ocid",
            "identifier": framework.ocid,
        }
    ]
    assert r["buyer"] == {"id": "nation-FRA", "name": "France"}
    assert {p["id"]: p["roles"] for p in r["parties"]} == {
        "nation-DEU": ["procuringEntity"],
        "nation-FRA": ["buyer"],
        "supplier-s1": ["supplier"],
    }
    (contract,) = r["contracts"]
    assert (contract["awardID"], contract["value"], contract["items"][0]["quantity"]) == (
        "co1",
        {"amount": 285_000.0, "currency": "EUR"},
        60,
    )
    assert r["tender"]["title"] == ocds_releases.call_off_title(framework, call_off)
    package = ocds_packages.release_package(
        [r], uri="https://icep.example.org/ocds/co1.json", published_date=T0
    )
    assert_valid("release-package", package)
    assert "extensions" not in package
    records = ocds_packages.record_package(
        call_off.ocid, [r], uri="https://icep.example.org/ocds/co1-record.json", published_date=T0
    )
    assert_valid("record-package", records)


# --- cancellations --------------------------------------------------------------------------------------


def cancel(s: Story) -> dict[str, Any]:
    return s.step(lambda i, now: i.cancel(DEU, "requirement merged into another initiative", now))


def test_cancelled_before_a_tender_is_a_planning_update() -> None:
    s = Story.propose()
    s.step(lambda i, now: i.open(DEU, now))
    s.step(lambda i, now: i.join(FRA, {2027: 10}, now))
    r = cancel(s)
    assert_valid("release", r)
    assert_codes(r)
    assert r["tag"] == ["planningUpdate"]
    assert r["tender"]["status"] == "cancelled"
    (document,) = r["tender"]["documents"]
    assert document["documentType"] == "cancellationDetails"
    assert document["description"] == "requirement merged into another initiative"
    # The one nation cannot change any more: a single-buyer process names its buyer.
    assert r["buyer"] == {"id": "nation-FRA", "name": "France"}
    assert_valid(
        "record-package",
        ocds_packages.record_package(
            s.initiative.ocid, s.releases, uri="https://x.example/r", published_date=s.now
        ),
    )


def test_cancelled_while_tendering_is_a_tender_cancellation() -> None:
    s = tendering()
    r = cancel(s)
    assert_valid("release", r)
    assert (r["tag"], r["tender"]["status"]) == (["tenderCancellation"], "cancelled")
    assert {lot["status"] for lot in r["tender"]["lots"]} == {"cancelled"}


def test_cancelled_after_the_award_cancels_the_awards() -> None:
    s = awarded()
    r = cancel(s)
    assert_valid("release", r)
    assert r["tag"] == ["tenderCancellation", "awardCancellation"]
    assert {a["status"] for a in r["awards"]} == {"cancelled"}
    record = ocds_packages.record_package(
        s.initiative.ocid, s.releases, uri="https://x.example/r", published_date=s.now
    )
    assert_valid("record-package", record)
    assert {a["status"] for a in record["records"][0]["compiledRelease"]["awards"]} == {"cancelled"}


# --- tags and packages ----------------------------------------------------------------------------------

ACTIONS = [
    "proposed",
    "open",
    "join",
    "commit",
    "withdraw",
    "withdraw_amendment",
    "request_withdrawal",
    "approve_withdrawal",
    "refuse_withdrawal",
    "close_participation",
    "publish_tender",
    "record_bid",
    "award",
    "sign_contract",
    "place_call_off",
    "milestone_met",
    "milestone_missed",
    "start_delivery",
    "close",
    "cancel",
    "flagged",
]


@pytest.mark.parametrize("action", ACTIONS)
def test_every_domain_action_has_release_tags_from_the_codelist(action: str) -> None:
    tags = ocds_tags.tags_for(action)
    assert tags
    assert set(tags) <= codes("releaseTag") - {"compiled"}


def test_tags_for_an_unknown_action_is_an_error() -> None:
    with pytest.raises(ValueError, match="frobnicate"):
        ocds_tags.tags_for("frobnicate")


def test_a_release_needs_valid_tags_and_an_aware_date() -> None:
    initiative = Story.propose().initiative
    with pytest.raises(ValueError, match="not release tags"):
        ocds_releases.release(initiative, ["compiled"], release_id="x", date=T0)
    with pytest.raises(ValueError, match="timezone"):
        ocds_releases.release(initiative, ["planning"], release_id="x", date=datetime(2026, 11, 28, 9))
    r = ocds_releases.release(
        initiative, ["planning"], release_id="x", date=T0.astimezone(timezone(timedelta(hours=1)))
    )
    assert r["date"] == "2026-11-28T09:00:00Z"


def test_packages_refuse_repeated_releases_and_other_processes() -> None:
    s = Story.propose()
    r = s.releases[0]
    with pytest.raises(ValueError, match="twice"):
        ocds_packages.release_package([r, r], uri="https://x.example/p", published_date=T0)
    with pytest.raises(ValueError, match="other processes"):
        ocds_packages.record_package("ocds-icep01-other", [r], uri="https://x.example/p", published_date=T0)


def test_nspa_procures_for_the_nations() -> None:
    nspa = Actor("nspa-officer", "NATO", frozenset({"procurement"}))
    initiative = Initiative.propose(
        id="i2",
        actor=nspa,
        title="Air defence interceptors",
        item=Item("interceptor", "missile"),
        capability_area="air defence",
        participation_deadline=T0.date() + timedelta(days=10),
        now=T0,
    )
    initiative = initiative.open(nspa, T0 + timedelta(hours=1))
    initiative = initiative.join(POL, {2028: 12}, T0 + timedelta(hours=2))
    r = ocds_releases.latest_release(initiative)
    assert_valid("release", r)
    assert_codes(r)
    assert {p["id"]: p["roles"] for p in r["parties"]} == {
        "org-NSPA": ["procuringEntity"],
        "nation-POL": ["buyer"],
    }
    assert r["tender"]["procuringEntity"]["id"] == "org-NSPA"
    assert "classification" not in r["tender"]["items"][0]  # no classification id given
    # One nation's figure (POL's 12 interceptors) is never in the release every reader reads.
    assert "quantity" not in r["tender"]["items"][0]
    assert r["planning"]["icepDemand"] == {
        "unit": "missile",
        "participants": 1,
        "committed": 0,
        "disclosure": "withheld",
    }


def test_every_currency_the_api_takes_is_in_the_ocds_currency_codelist() -> None:
    """The API takes ISO 4217 codes (pycountry's) that OCDS 1.1.5's closed codelist knows: no release
    fails the schema on its currency."""
    taken = set()
    for currency in pycountry.currencies:
        try:
            taken.add(schema_types.iso_currency(currency.alpha_3))
        except ValueError:
            continue
    assert taken <= codes("currency"), sorted(taken - codes("currency"))
    assert {"EUR", "USD", "GBP", "PLN", "NOK", "CAD", "TRY"} <= taken
