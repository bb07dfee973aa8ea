"""The shape docs/architecture.md describes, checked on the source so that it stays true: one shape per
service, the dependency rules, plain-Python aggregates, and no module a newcomer cannot read in one go."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("plans", "procurement", "standards", "notifications", "gateway")
#: The services that own aggregates and publish what they record.
DOMAIN_SERVICES = ("plans", "procurement", "standards", "notifications")
#: About 600 lines: past that, a module holds more than one thing (DESIGN.md, "Repository layout").
MAX_LINES = 600
#: What an aggregate's rules may not know about: the web, the database, the broker.
INFRASTRUCTURE = ("fastapi", "starlette", "sqlalchemy", "sqlmodel", "aiokafka", "httpx", "icep.platform.db")


def sources() -> list[Path]:
    return sorted(
        [
            *(ROOT / "shared" / "src").rglob("*.py"),
            *(ROOT / "services").glob("*/src/**/*.py"),
            *(ROOT / "clients").glob("*/src/**/*.py"),
        ],
    )


def package_of(path: Path) -> str:
    """`icep.plans.plans.model` for services/plans/src/icep/plans/plans/model.py."""
    src = next(p for p in path.parents if p.name == "src")
    return ".".join(path.relative_to(src).with_suffix("").parts)


def imported(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    here = package_of(path).split(".")
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = here[: len(here) - node.level]
                module = ".".join([*base, node.module] if node.module else base)
            elif node.module:
                module = node.module
            else:
                continue
            # `from icep.plans.plans import repository` imports the module icep.plans.plans.repository
            names.update([module, *(f"{module}.{alias.name}" for alias in node.names)])
    return names


def test_no_module_is_longer_than_a_reader_can_hold() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in sources()
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}, f"split these by what they hold (at most {MAX_LINES} lines): {long}"


def test_a_service_imports_the_platform_and_the_contracts_never_another_service() -> None:
    crossing: list[str] = []
    for path in sources():
        module = package_of(path)
        owner = module.split(".")[1]
        for name in imported(path):
            parts = name.split(".")
            if parts[0] != "icep" or len(parts) < 2:
                continue
            target = parts[1]
            if owner in ("platform", "contracts"):
                if target in SERVICES:
                    crossing.append(f"{module} -> {name}")
            elif target in SERVICES and target != owner:
                crossing.append(f"{module} -> {name}")
    assert crossing == []


def aggregate_models() -> list[Path]:
    return sorted(
        p for s in DOMAIN_SERVICES for p in (ROOT / "services" / s / "src" / "icep" / s).glob("*/model.py")
    )


def test_every_domain_service_has_the_same_shape() -> None:
    for service in DOMAIN_SERVICES:
        package = ROOT / "services" / service / "src" / "icep" / service
        assert (package / "app.py").is_file() and (package / "settings.py").is_file(), service
        assert (package / "events.py").is_file(), f"{service} maps its domain events in events.py"
        aggregates = [p.parent for p in package.glob("*/model.py")]
        assert aggregates, f"{service} has no aggregate package"
        for folder in aggregates:
            present = {p.name for p in folder.glob("*.py")}
            # A package that owns tables reaches them through its repository; a read side over other
            # packages' tables (the capacity summary, interoperability verdicts) may have none of its own.
            needed = {"model.py", "use_cases.py"} | ({"repository.py"} if "rows.py" in present else set())
            missing = needed - present
            assert not missing, f"{folder.relative_to(ROOT)} lacks {sorted(missing)}"


def test_aggregate_rules_are_plain_python() -> None:
    models = aggregate_models()
    assert len(models) >= len(DOMAIN_SERVICES)
    leaks = {
        str(model.relative_to(ROOT)): sorted(
            name
            for name in imported(model)
            if any(name == i or name.startswith(i + ".") for i in INFRASTRUCTURE)
        )
        for model in models
    }
    assert {m: names for m, names in leaks.items() if names} == {}


def test_routes_reach_storage_only_through_use_cases_and_queries() -> None:
    """Thin routes: a change goes through a use case, a read through a use case or a repository's query
    (the read side); a route never builds SQL or touches table rows itself."""
    offenders: list[str] = []
    for service in DOMAIN_SERVICES:
        for routes in (ROOT / "services" / service / "src" / "icep" / service).rglob("routes.py"):
            for name in imported(routes):
                if name.startswith(("sqlalchemy", "sqlmodel")) or name.endswith((".rows", ".models")):
                    offenders.append(f"{routes.relative_to(ROOT)} -> {name}")
    assert offenders == []


#: What the partner SDK may import besides the standard library: its declared dependencies, nothing of
#: the platform (partners install it alone, with none of the workspace).
SDK_DEPENDENCIES = ("httpx", "httpx_sse", "pydantic", "standardwebhooks", "tenacity", "icep_client")


def test_the_partner_sdk_imports_only_its_own_dependencies() -> None:
    import sys

    sdk = ROOT / "clients" / "python" / "src" / "icep_client"
    modules = sorted(sdk.rglob("*.py"))
    assert modules
    foreign = {
        str(path.relative_to(ROOT)): sorted(
            name
            for name in imported(path)
            if name.split(".")[0] not in SDK_DEPENDENCIES
            and name.split(".")[0] not in sys.stdlib_module_names
        )
        for path in modules
    }
    assert {path: names for path, names in foreign.items() if names} == {}
    project = (ROOT / "clients" / "python" / "pyproject.toml").read_text()
    for dependency in SDK_DEPENDENCIES[:-1]:
        assert f'"{dependency.replace("_", "-")}>=' in project, dependency
