"""deploy/k8s is fit for production, checked offline: every manifest is valid Kubernetes (kubernetes-validate,
strict), every pod meets the restricted Pod Security Standard, every ICEP Deployment has a disruption budget,
an autoscaler, topology spread, a preStop drain and its probes, images carry a version, topics get three
replicas, the kustomization writes no Secret, each database service has a migrations Job, and the runtime
image carries no tests. And, with real processes and a real database: a service that does not migrate on
start waits for the migrations Job, then serves."""

from __future__ import annotations

import asyncio
import copy
import importlib
import os
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import sqlalchemy as sa
import yaml

from icep.platform import migrations
from icep.platform.db import create_engine
from icep.platform.launcher import Launcher, free_platform_ports, platform_env
from icep.platform.testing import wait_for

#: The ICEP processes (Deployments built from the repository's image) and those that keep a database.
PROCESSES = ["gateway", "plans", "procurement", "standards", "notifications"]
DATABASE_SERVICES = ["plans", "procurement", "standards", "notifications"]
#: The oldest Kubernetes the manifests are for, and the newest the validator knows.
KUBERNETES_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
#: Volume types the restricted Pod Security Standard allows.
RESTRICTED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}

Objects = list[dict[str, Any]]


@pytest.fixture(scope="module")
def base(repo_root: Path) -> Path:
    return repo_root / "deploy/k8s"


@pytest.fixture(scope="module")
def kustomization(base: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((base / "kustomization.yaml").read_text())
    return loaded


@pytest.fixture(scope="module")
def objects(base: Path, kustomization: dict[str, Any]) -> Objects:
    """Every object `kubectl apply -k` would send (the kustomization only lists files and sets images)."""
    assert set(kustomization) <= {"apiVersion", "kind", "resources", "images"}, (
        "the kustomization does more than list files and set images: render it with kustomize here"
    )
    found: Objects = []
    for resource in kustomization["resources"]:
        found += [doc for doc in yaml.safe_load_all((base / resource).read_text()) if doc]
    return found


def _of(objects: Objects, kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def _pod_specs(objects: Objects) -> Iterator[tuple[str, dict[str, Any]]]:
    for o in objects:
        if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"):
            yield f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"]["spec"]
        elif o["kind"] == "CronJob":
            yield f"CronJob/{o['metadata']['name']}", o["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        else:
            assert o["kind"] != "Pod", "no bare Pods"


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"], *pod.get("ephemeralContainers", [])]


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def _project_version(repo_root: Path) -> str:
    version: str = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]["version"]
    return version


# --- valid Kubernetes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_is_valid_kubernetes_strictly(objects: Objects, version: str) -> None:
    assert len(objects) >= 30
    for o in objects:
        kubernetes_validate.validate(o, version, strict=True)  # raises on any error or unknown field
    # The check is strict: a misspelt field is refused, not ignored.
    deployment = copy.deepcopy(_of(objects, "Deployment")["plans"])
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesytem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, version, strict=True)


def test_every_object_is_in_the_icep_namespace(objects: Objects) -> None:
    for o in objects:
        if o["kind"] != "Namespace":
            assert o["metadata"]["namespace"] == "icep", o["metadata"]["name"]


# --- restricted Pod Security ------------------------------------------------------------------------------


def test_the_namespace_enforces_the_restricted_pod_security_standard(objects: Objects) -> None:
    labels = _of(objects, "Namespace")["icep"]["metadata"]["labels"]
    for mode in ("enforce", "warn", "audit"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"


def test_every_pod_meets_the_restricted_pod_security_standard(objects: Objects, repo_root: Path) -> None:
    uid, gid = _dockerfile_user(repo_root)
    pods = dict(_pod_specs(objects))
    assert set(pods) >= {f"Deployment/{p}" for p in [*PROCESSES, "redis"]}
    for where, pod in pods.items():
        security = pod.get("securityContext", {})
        assert not any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")), where
        assert pod.get("automountServiceAccountToken") is False, f"{where}: no service account token"
        assert security.get("runAsNonRoot") is True, where
        assert security.get("seccompProfile") == {"type": "RuntimeDefault"}, where
        for volume in pod.get("volumes", []):
            kinds = set(volume) - {"name"}
            assert kinds <= RESTRICTED_VOLUME_TYPES, f"{where}: volume {volume['name']} is {kinds}"
        for container in _containers(pod):
            name = f"{where}/{container['name']}"
            own = container.get("securityContext", {})
            merged = {**security, **own}
            assert merged.get("runAsNonRoot") is True, name
            assert isinstance(merged.get("runAsUser"), int) and merged["runAsUser"] > 0, name
            assert isinstance(merged.get("runAsGroup"), int) and merged["runAsGroup"] > 0, name
            assert merged.get("seccompProfile", {}).get("type") in ("RuntimeDefault", "Localhost"), name
            assert own.get("allowPrivilegeEscalation") is False, name
            assert own.get("privileged", False) is False, name
            assert own.get("readOnlyRootFilesystem") is True, name
            assert own.get("capabilities", {}).get("drop") == ["ALL"], name
            assert set(own.get("capabilities", {}).get("add", [])) <= {"NET_BIND_SERVICE"}, name
            assert not any(p.get("hostPort") for p in container.get("ports", [])), name
            if container["image"].split(":")[0] == "icep":
                # The image's own user, so files it owns (/app/var) are the pod's.
                assert (merged["runAsUser"], merged["runAsGroup"]) == (uid, gid), name
                assert {m["mountPath"] for m in container["volumeMounts"]} >= {"/tmp", "/app/var"}, name
                mounted = {m["name"] for m in container["volumeMounts"]}
                writable = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
                assert {"tmp", "var"} <= mounted & writable, name


# --- available and scalable -------------------------------------------------------------------------------


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) == {"matchLabels"}, selector
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


def test_every_icep_deployment_has_a_disruption_budget_an_autoscaler_and_spreads(objects: Objects) -> None:
    deployments = _of(objects, "Deployment")
    budgets = _of(objects, "PodDisruptionBudget").values()
    autoscalers = _of(objects, "HorizontalPodAutoscaler").values()
    assert all(h["apiVersion"] == "autoscaling/v2" for h in autoscalers)
    for name in PROCESSES:
        deployment = deployments[name]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        [budget] = [b for b in budgets if _selects(b["spec"]["selector"], labels)]
        assert budget["spec"].get("minAvailable") == 1 or budget["spec"].get("maxUnavailable") == 1, name
        [hpa] = [h for h in autoscalers if h["spec"]["scaleTargetRef"]["name"] == name]
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"], name
        [metric] = hpa["spec"]["metrics"]
        assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu", name
        assert metric["resource"]["target"]["type"] == "Utilization", name
        # The autoscaler owns the count: an apply must not reset it.
        assert "replicas" not in deployment["spec"], name
        # No rollout takes a serving replica away before its successor is ready.
        assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0, name
        pod = deployment["spec"]["template"]["spec"]
        spread = {c["topologyKey"]: c for c in pod["topologySpreadConstraints"]}
        assert set(spread) == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}, name
        for constraint in spread.values():
            assert constraint["maxSkew"] == 1
            assert _selects(constraint["labelSelector"], labels), name
        # Every container asks for CPU: the autoscaler's utilisation is measured against it.
        assert all(c["resources"]["requests"]["cpu"] for c in pod["containers"]), name


def test_every_icep_deployment_drains_before_it_stops_and_probes_health(objects: Objects) -> None:
    for name in PROCESSES:
        pod = _of(objects, "Deployment")[name]["spec"]["template"]["spec"]
        [container] = pod["containers"]
        command = container["lifecycle"]["preStop"]["exec"]["command"]
        assert command[0] == "sleep" and len(command) == 2, name
        drain = int(command[1])
        # Long enough for the endpoint removal to reach every proxy; then SIGTERM and a graceful
        # shutdown (uvicorn: 10 s) must still fit in the grace period.
        assert drain >= 5, name
        assert pod["terminationGracePeriodSeconds"] >= drain + 10 + 5, name
        assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        startup = container["startupProbe"]
        budget = startup["periodSeconds"] * startup["failureThreshold"]
        wait = _env(container).get(f"ICEP_{name.upper()}_MIGRATION_WAIT_SECONDS")
        # A new pod may wait for the migrations Job this long before liveness counts.
        assert budget > float(wait or 0) + 10, name


# --- images, topics, secrets ------------------------------------------------------------------------------


def test_images_carry_a_version_never_latest(
    objects: Objects, kustomization: dict[str, Any], repo_root: Path
) -> None:
    version = _project_version(repo_root)
    [icep] = [i for i in kustomization["images"] if i["name"] == "icep"]
    assert icep["newTag"] == version, "the kustomization deploys the project's version"
    for where, pod in _pod_specs(objects):
        for container in _containers(pod):
            image = container["image"]
            match = re.fullmatch(r"(?P<repo>[^:@]+)(:(?P<tag>[\w.-]+))?(@sha256:[0-9a-f]{64})?", image)
            assert match, image
            tag = match["tag"]
            assert tag and tag != "latest", f"{where}: {image} has no version"
            if match["repo"] == "icep":
                assert tag == version, f"{where}: {image}"


def test_topics_get_three_replicas(objects: Objects, monkeypatch: pytest.MonkeyPatch) -> None:
    common = _of(objects, "ConfigMap")["icep-common"]["data"]
    assert common["ICEP_TOPIC_REPLICATION_FACTOR"] == "3"
    # The setting the services create their topics with reads exactly that variable.
    for key, value in common.items():
        monkeypatch.setenv(key, value)
    for service in DATABASE_SERVICES:
        settings = importlib.import_module(f"icep.{service}.settings")
        [cls] = [v for k, v in vars(settings).items() if k.endswith("Settings") and k != "ServiceSettings"]
        assert cls().topic_replication_factor == 3, service
    for name in PROCESSES:
        container = _of(objects, "Deployment")[name]["spec"]["template"]["spec"]["containers"][0]
        assert {"configMapRef": {"name": "icep-common"}} in container["envFrom"], name


def _secrets_referenced(objects: Objects) -> set[str]:
    names: set[str] = set()
    for _, pod in _pod_specs(objects):
        for volume in pod.get("volumes", []):
            if "secret" in volume:
                names.add(volume["secret"]["secretName"])
        for container in _containers(pod):
            names |= {s["secretRef"]["name"] for s in container.get("envFrom", []) if "secretRef" in s}
            for value in _env(container).values():
                if isinstance(value, dict) and "secretKeyRef" in value:
                    names.add(value["secretKeyRef"]["name"])
    return names


def test_no_secret_is_written_by_apply_and_every_referenced_one_is_documented(
    objects: Objects, kustomization: dict[str, Any], base: Path
) -> None:
    assert not [o for o in objects if o["kind"] == "Secret"], "apply -k would write over the real Secrets"
    assert "secretGenerator" not in kustomization
    referenced = _secrets_referenced(objects)
    expected = {
        "icep-database-urls",
        "icep-migration-database-urls",
        "icep-gateway-clients",
        "icep-gateway-signing-keys",
        *(f"icep-{s}-secret-keys" for s in DATABASE_SERVICES),
    }
    assert referenced == expected
    readme = (base / "README.md").read_text()
    created = set(re.findall(r"kubectl -n icep create secret generic ([\w-]+)", readme))
    assert created == expected, "README.md shows how to create every Secret the pods read"


# --- migrations -------------------------------------------------------------------------------------------


def test_each_database_service_is_migrated_by_its_job_and_runs_without_ddl(objects: Objects) -> None:
    jobs = _of(objects, "Job")
    assert set(jobs) == {f"{s}-migrate" for s in DATABASE_SERVICES}
    for service in DATABASE_SERVICES:
        assert importlib.import_module(f"icep.{service}.app").MIGRATIONS.is_dir()
        job = jobs[f"{service}-migrate"]
        pod = job["spec"]["template"]["spec"]
        assert pod["restartPolicy"] in ("OnFailure", "Never")
        [container] = pod["containers"]
        assert container["args"] == ["migrate", service]
        url = _env(container)[f"ICEP_{service.upper()}_DATABASE_URL"]
        assert url == {"secretKeyRef": {"name": "icep-migration-database-urls", "key": service}}
        # A finished Job is removed in time, so the next release's apply can create it again.
        assert job["spec"]["ttlSecondsAfterFinished"] > 0
        deployment = _of(objects, "Deployment")[service]["spec"]["template"]["spec"]["containers"][0]
        env = _env(deployment)
        assert env[f"ICEP_{service.upper()}_DATABASE_URL"] == {
            "secretKeyRef": {"name": "icep-database-urls", "key": service}
        }
        assert env[f"ICEP_{service.upper()}_MIGRATE_ON_START"] == "false"
    assert "ICEP_GATEWAY_DATABASE_URL" not in _env(
        _of(objects, "Deployment")["gateway"]["spec"]["template"]["spec"]["containers"][0]
    )


def _sql_statements(path: Path) -> list[str]:
    text = re.sub(r"--[^\n]*", "", path.read_text())
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("\\")]
    return [" ".join(s.split()) for s in "\n".join(lines).split(";") if s.strip()]


def test_the_application_role_gets_rows_only_and_the_migrator_owns_the_schema(repo_root: Path) -> None:
    statements = _sql_statements(repo_root / "deploy/postgres/roles.sql")
    app, migrator = ':"service"', ':"migrator"'
    assert f"CREATE DATABASE {app} OWNER {migrator}" in statements
    assert f"ALTER SCHEMA public OWNER TO {migrator}" in statements
    assert "REVOKE ALL ON SCHEMA public FROM PUBLIC" in statements
    assert f"REVOKE ALL ON DATABASE {app} FROM PUBLIC" in statements
    grants = [s for s in statements if s.split()[0] in ("GRANT", "ALTER") and s.endswith(f"TO {app}")]
    assert len(grants) >= 5
    allowed = {"CONNECT", "USAGE", "SELECT", "INSERT", "UPDATE", "DELETE"}
    for grant in grants:
        privileges = re.search(r"GRANT (.+?) ON ", grant)
        assert privileges, grant
        assert {p.strip() for p in privileges[1].split(",")} <= allowed, grant
    # The application role owns nothing and is given no role (ownership or membership would be DDL).
    assert not [s for s in statements if re.search(rf"OWNER (TO )?{re.escape(app)}$", s)]
    assert not [s for s in statements if re.fullmatch(rf"GRANT :\"\w+\" TO {re.escape(app)}", s)]
    # Tables created by later migrations are the application's too, without a grant after each release.
    defaults = [s for s in grants if s.startswith(f"ALTER DEFAULT PRIVILEGES FOR ROLE {migrator}")]
    assert any(" ON TABLES " in s for s in defaults)


# --- the image --------------------------------------------------------------------------------------------


def _dockerfile_stages(repo_root: Path) -> list[tuple[str, list[list[str]]]]:
    """(stage name, instructions as [keyword, *arguments]) for each FROM."""
    text = re.sub(r"\\\n", " ", (repo_root / "Dockerfile").read_text())
    stages: list[tuple[str, list[list[str]]]] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        keyword, *rest = shlex.split(line)
        if keyword.upper() == "FROM":
            stages.append((rest[-1] if len(rest) >= 3 and rest[-2].upper() == "AS" else "", []))
        stages[-1][1].append([keyword.upper(), *rest])
    return stages


def _dockerfile_user(repo_root: Path) -> tuple[int, int]:
    _, runtime = _dockerfile_stages(repo_root)[-1]
    [user] = [i for i in runtime if i[0] == "USER"]
    uid, gid = user[1].split(":")
    return int(uid), int(gid)


def test_the_runtime_image_carries_no_tests_nor_development_files(repo_root: Path) -> None:
    stages = _dockerfile_stages(repo_root)
    build_name, build = stages[0]
    _, runtime = stages[-1]
    members = tomllib.loads((repo_root / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]["members"]
    member_dirs = sorted({p.relative_to(repo_root).as_posix() for m in members for p in repo_root.glob(m)})
    # The build stage copies only the lock, the members' pyproject.toml, src/ and migrations/ ...
    build_sources = [src for i in build if i[0] in ("COPY", "ADD") for src in i[1:-1]]
    assert "." not in build_sources and "./" not in build_sources
    for src in build_sources:
        assert (repo_root / src).exists(), src
        assert re.fullmatch(r"pyproject\.toml|uv\.lock|[\w/]+/(pyproject\.toml|src|migrations)", src), src
        files = (
            [src]
            if (repo_root / src).is_file()
            else [p.relative_to(repo_root).as_posix() for p in (repo_root / src).rglob("*") if p.is_file()]
        )
        for f in files:
            assert not re.search(r"(^|/)(tests?|bench|conftest\.py|test_[^/]*\.py)(/|$)", f), f
            assert "dev-clients" not in f, f
    # Every member a process runs is installed from its sources; a member left out of the install
    # (`--no-install-package`: the partner SDK) brings only its pyproject.toml, which uv reads.
    syncs = [" ".join(i[1:]) for i in build if i[0] == "RUN" and "uv sync" in " ".join(i[1:])]
    left_out = {name for s in syncs for name in re.findall(r"--no-install-package (\S+)", s)}
    for member in member_dirs:
        name = tomllib.loads((repo_root / member / "pyproject.toml").read_text())["project"]["name"]
        if name in left_out:
            assert all(f"--no-install-package {name}" in s for s in syncs), name
            assert f"{member}/src" not in build_sources and f"{member}/pyproject.toml" in build_sources
            continue
        assert f"{member}/src" in build_sources, f"{member}'s sources are missing from the image"
        if (repo_root / member / "migrations").is_dir():
            assert f"{member}/migrations" in build_sources, member
    # ... and the runtime stage takes the environment and those sources from it, nothing else.
    runtime_copies = [i for i in runtime if i[0] in ("COPY", "ADD")]
    assert runtime_copies
    for copy_ in runtime_copies:
        # The guides and API documents the gateway's developer portal serves come from the context as they
        # are (Markdown and the generated documents): no code, no tests.
        if copy_[0] == "COPY" and copy_[1:] in (
            ["docs/*.md", "/app/docs/"],
            ["docs/operations/*.md", "/app/docs/operations/"],
            ["docs/api", "/app/docs/api"],
        ):
            continue
        assert copy_[0] == "COPY" and copy_[1] == f"--from={build_name}", copy_
        for src in copy_[2:-1]:
            assert re.fullmatch(r"/app/(\.venv|shared/src|services/\w+/(src|migrations))", src), src
    assert not [i for i in runtime if i[0] == "RUN" and re.search(r"\b(pip|uv)\b", " ".join(i[1:]))]
    assert _dockerfile_user(repo_root)[0] != 0
    # The development install (pytest and the like) stays out: the lock is synced without dev groups.
    assert syncs and all("--no-dev" in s and "--frozen" in s for s in syncs)


# --- a service that does not migrate waits for the migrations Job -----------------------------------------


async def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))
    finally:
        await engine.dispose()


def _migrate_as_the_job(service: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, f"ICEP_{service.upper()}_DATABASE_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "icep.platform.cli", "migrate", service],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_a_service_that_does_not_migrate_waits_for_the_job_then_serves(
    kafka_bootstrap: str, make_database_url: Callable[[str], str], tmp_path: Path
) -> None:
    ports, management = free_platform_ports()
    url = make_database_url("k8s_plans")
    launcher = Launcher(
        env=platform_env(
            ports,
            bootstrap=kafka_bootstrap,
            var_dir=tmp_path / "var",
            management_ports=management,
            extra={
                "ICEP_PLANS_DATABASE_URL": url,
                "ICEP_PLANS_MIGRATE_ON_START": "false",
                "ICEP_PLANS_MIGRATION_WAIT_SECONDS": "60",
                "ICEP_TOPIC_NAMESPACE": "k8s.",
            },
        ),
        log_dir=tmp_path / "logs",
        ports=ports,
        management_ports=management,
    )
    try:
        plans = launcher.start("plans")
        await wait_for(
            lambda: "waiting for the migrations Job" in launcher.log_tail("plans", 200),
            timeout=60,
            what="plans to wait for the migrations",
        )
        assert plans.alive()
        # It changed nothing: the schema is the Job's to create.
        assert await _tables(url) == set()
        result = await asyncio.to_thread(_migrate_as_the_job, "plans", url)
        assert result.returncode == 0, result.stderr
        await asyncio.to_thread(launcher.wait_ready, "plans", 60)
        assert "alembic_version" in await _tables(url)
    finally:
        launcher.stop_all()


async def test_a_service_gives_up_when_the_schema_never_comes(
    make_database_url: Callable[[str], str], tmp_path: Path
) -> None:
    from icep.plans.app import MIGRATIONS

    url = make_database_url("k8s_plans_late")
    with pytest.raises(migrations.SchemaNotCurrent, match="icep migrate"):
        await migrations.wait_until_current(MIGRATIONS, url, timeout=0.3, interval=0.1)
    assert await migrations.applied(url) == set()
    await asyncio.to_thread(migrations.upgrade, MIGRATIONS, url)
    await migrations.wait_until_current(MIGRATIONS, url, timeout=0)
    assert await migrations.applied(url) == migrations.heads(MIGRATIONS, url)


async def test_an_older_release_runs_on_a_newer_schema_but_waits_for_an_older_one(
    make_database_url: Callable[[str], str],
) -> None:
    """A rollback (or an old pod restarting mid-rollout) finds the database ahead of its code: it serves.
    A database behind the code (the Job has not run) is waited for."""
    from icep.plans.app import MIGRATIONS

    url = make_database_url("k8s_plans_ahead")
    [head] = migrations.heads(MIGRATIONS, url)
    previous = f"{int(head) - 1:04d}"
    await asyncio.to_thread(migrations.upgrade, MIGRATIONS, url, previous)
    with pytest.raises(migrations.SchemaNotCurrent, match="icep migrate"):
        await migrations.wait_until_current(MIGRATIONS, url, timeout=0.2, interval=0.1)
    # A newer release's revision, unknown to this code, on top of the current head.
    await asyncio.to_thread(migrations.upgrade, MIGRATIONS, url)
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    finally:
        await engine.dispose()
    await migrations.wait_until_current(MIGRATIONS, url, timeout=0)
