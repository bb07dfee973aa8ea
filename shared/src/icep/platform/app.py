"""Service defaults: the one call that gives a service its app, telemetry, health, auth and messaging.

`service_app(ServiceSpec(...))` returns a FastAPI app whose lifespan sets up logs and traces, opens the
database and migrates it, creates the Kafka topics, and runs the outbox relay, the consumer and any
background loops the service names, each supervised (restarted with backoff when it fails).

What is for operators only (/metrics, the service's own API documents) is not on that app: it is on the
app's management app (`management_of(app)`), which `icep serve` serves on the management port of the same
process (see `icep.platform.serving`). /healthz and /readyz answer on both ports.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

import sqlalchemy as sa
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from icep.platform import (
    audit,
    faults,
    logs,
    migrations,
    observe,
    outbox_admin,
    retention,
    secrets,
    telemetry,
)
from icep.platform.aio import within
from icep.platform.consumer import ConsumerRunner, Handler, RetryPolicy
from icep.platform.db import Database
from icep.platform.idempotency import IdempotencyMiddleware, IdempotencyStore, purge_expired_keys
from icep.platform.jsonbody import RejectDuplicateKeys
from icep.platform.kafka import ensure_topics, kafka_reachable
from icep.platform.openapi import install_openapi
from icep.platform.operations import api as operations_api
from icep.platform.operations.dead_letters import keep_gauge_fresh
from icep.platform.outbox import EventMapper, UnitOfWorkFactory
from icep.platform.problems import AnswerErrors, install_problem_handlers
from icep.platform.relay import OutboxRelay
from icep.platform.retention import RetentionRule
from icep.platform.settings import ServiceSettings
from icep.platform.tables import PlatformTables
from icep.platform.wakeups import Wakeups

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)
PartT = TypeVar("PartT")
log = logging.getLogger("icep.app")

REQUEST_SECONDS = Histogram(
    "icep_http_request_duration_seconds",
    "HTTP request latency by route template and status",
    ["service", "method", "route", "status"],
)

#: Methods that get their own label value; any other token a client sends is counted as "OTHER".
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

Background = Callable[["Runtime"], Awaitable[None]]
Hook = Callable[[FastAPI], Awaitable[None]]


@dataclass
class ServiceSpec:
    settings: ServiceSettings
    routers: Sequence[APIRouter] = ()
    title: str = "ICEP service"
    description: str = ""
    version: str = "0.1.0"
    #: The service's metadata and platform tables; None means the service keeps no database.
    metadata: sa.MetaData | None = None
    tables: PlatformTables | None = None
    migrations_dir: Path | None = None
    uses_kafka: bool = True
    #: Event type -> handler (`"*"` for every type); the consumer group is `icep-<service>`.
    handlers: Mapping[str, Handler] = field(default_factory=dict)
    subscribe_topics: Sequence[str] = ()
    background: Sequence[tuple[str, Background]] = ()
    startup: Sequence[Hook] = ()
    shutdown: Sequence[Hook] = ()
    #: Extra readiness checks: name -> async check returning True when ready.
    readiness: Mapping[str, Callable[[FastAPI], Awaitable[bool]]] = field(default_factory=dict)
    #: The service's own retention rules besides the platform's (inbox, outbox): `icep.platform.retention`.
    retention: Sequence[RetentionRule] = ()
    #: Serve the app's own document at /openapi.json and /docs (the gateway serves the merged ones).
    own_api_docs: bool = True
    #: The OpenAPI tags of its routes with their descriptions (who reads what, in which state).
    tags: Sequence[Mapping[str, Any]] = ()
    #: The service's `events.py`: maps the domain events its aggregates record to published events.
    events: EventMapper | None = None


@dataclass
class Runtime:
    """What a running service holds; routes reach it through `request.app.state.runtime`."""

    spec: ServiceSpec
    db: Database | None = None
    uow: UnitOfWorkFactory | None = None
    relay: OutboxRelay | None = None
    consumer: ConsumerRunner | None = None
    #: The POST `Idempotency-Key` store (services with a database; see `icep.platform.idempotency`).
    idempotency: IdempotencyStore | None = None
    topics_ready: bool = False
    #: The last look of the dependency observer: name (database, kafka) -> up (`icep.platform.observe`).
    dependencies: dict[str, bool] = field(default_factory=dict)
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    #: What a platform feature or the service adds when it starts, one per type (`runtime.part(AuditLog)`).
    parts: dict[type[Any], Any] = field(default_factory=dict)
    #: Called after each commit that wrote events or handled one (wakes the relay, a dispatcher, ...).
    after_commit: list[Callable[[], None]] = field(default_factory=list)
    #: Commits of every replica waking this one's loops (PostgreSQL LISTEN/NOTIFY; `icep.platform.wakeups`).
    wakeups: Wakeups | None = None

    def committed(self) -> None:
        for hook in self.after_commit:
            hook()

    @property
    def settings(self) -> ServiceSettings:
        return self.spec.settings

    def provide(self, part: object) -> None:
        """Keep `part` for the process's life, found again by its type."""
        self.parts[type(part)] = part

    def part(self, kind: type[PartT]) -> PartT | None:
        """The `kind` this process keeps, if it made one."""
        found = self.parts.get(kind)
        return found if isinstance(found, kind) else None

    def settings_as(self, kind: type[SettingsT]) -> SettingsT:
        """The service's settings as its own settings class (`runtime.settings_as(PlansSettings)`); a
        service built with other settings is a wiring bug, raised as one."""
        settings = self.spec.settings
        if not isinstance(settings, kind):
            raise TypeError(
                f"{settings.service_name} runs with {type(settings).__name__}, not {kind.__name__}"
            )
        return settings

    @property
    def group(self) -> str:
        return self.settings.consumer_group

    def start(self, name: str, body: Background) -> None:
        self.tasks[name] = asyncio.create_task(supervise(name, body, self), name=name)


async def supervise(name: str, body: Background, runtime: Runtime) -> None:
    """Run a background loop for the life of the process, restarting it after a failure."""
    delay = 0.5
    while True:
        try:
            await body(runtime)
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background task %s failed; restarting in %.1fs", name, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


async def _kafka_setup(runtime: Runtime) -> None:
    s = runtime.settings
    spec = runtime.spec
    topics = [s.topic] if spec.tables is not None else []
    if spec.subscribe_topics:
        topics += [*(s.topic_name(t) for t in spec.subscribe_topics), s.dead_letter_topic]
    creating = asyncio.ensure_future(
        ensure_topics(
            s.kafka_bootstrap_servers,
            topics,
            s.topic_partitions,
            s.topic_replication_factor,
            min_insync_replicas=s.topic_min_insync_replicas,
        )
    )
    try:
        await within(s.outbox_send_timeout_seconds, asyncio.shield(creating))
    except TimeoutError:
        # The broker is down at start: the API serves (readiness is the database), events wait in the
        # outbox, and the relay, which starts once the topics exist, is reported blocked until then.
        if runtime.relay is not None:
            runtime.relay.mark_blocked("the broker does not answer: its topics are not created yet")
        await creating
    finally:
        creating.cancel()
    runtime.topics_ready = True
    if runtime.relay is not None:
        runtime.relay.mark_unblocked()  # the broker answered; the relay's rounds say whether it publishes
        runtime.start("outbox-relay", lambda rt: rt.relay.run() if rt.relay else _noop())
    if runtime.consumer is not None:
        runtime.start("consumer", lambda rt: rt.consumer.run() if rt.consumer else _noop())


async def _noop() -> None:
    return None


def _start_observers(runtime: Runtime) -> None:
    """The loops that keep the operators' gauges moving apart from the work they describe (a relay
    blocked by a broker outage, a consumer stopped or disabled): see `icep.platform.observe`."""
    spec, settings = runtime.spec, runtime.settings
    name = settings.service_name
    observe.build_info(name)
    checks: dict[str, Callable[[], Awaitable[bool]]] = {}
    db = runtime.db
    if db is not None:

        async def database_up() -> bool:
            await db.ping()
            return True

        checks["database"] = database_up
    if spec.uses_kafka:
        checks["kafka"] = observe.kafka_check(settings.kafka_bootstrap_servers)
    if checks:
        every = settings.dependency_observe_seconds
        runtime.start(
            "dependency-observer",
            lambda rt: observe.observe_dependencies(name, checks, every, rt.dependencies),
        )
    if db is not None and spec.tables is not None and spec.uses_kafka:
        outbox = observe.OutboxObserver(
            db.sessions, spec.tables.outbox, name, settings.outbox_observe_seconds
        )
        runtime.after_commit.append(outbox.wake)
        if runtime.relay is not None:
            runtime.relay.after_sent.append(outbox.wake)
        runtime.start("outbox-observer", lambda _: outbox.run())
    if spec.tables is not None and spec.subscribe_topics and spec.uses_kafka:
        # Also when this process's consumer is disabled: the group's lag is what an operator must see then.
        lag = observe.LagObserver(
            settings.kafka_bootstrap_servers,
            runtime.group,
            [settings.topic_name(t) for t in spec.subscribe_topics],
        )
        lag_every = settings.consumer_lag_observe_seconds
        runtime.start("consumer-lag-observer", lambda _: lag.run(lag_every))


class RequestMetrics:
    """Request latency per route template (not per path, so ids do not explode the label set)."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = asyncio.get_running_loop().time()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            # A gateway names the upstream's route template (`icep.gateway.metrics`) for its catch-all route.
            route = scope.get("icep.route_template") or getattr(scope.get("route"), "path", "unmatched")
            if route not in ("/healthz", "/readyz"):
                method = scope["method"] if scope["method"] in HTTP_METHODS else "OTHER"  # bounded labels
                REQUEST_SECONDS.labels(self.service, method, route, str(status)).observe(
                    asyncio.get_running_loop().time() - started
                )


def service_app(spec: ServiceSpec) -> FastAPI:
    settings = spec.settings
    name = settings.service_name

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        telemetry.setup_logging(name, settings.log_level)
        telemetry.setup_tracing(name)
        telemetry.instrument_httpx()
        faults.arm(settings.faults)
        runtime = Runtime(spec=spec)
        app.state.runtime = runtime
        from icep.platform.auth import TokenVerifier

        app.state.token_verifier = TokenVerifier.from_settings(settings)
        if spec.metadata is not None:
            db = Database(settings.database_url)
            telemetry.instrument_engine(db.engine.sync_engine)
            runtime.db = db
            if spec.migrations_dir is not None and settings.migrate_on_start:
                await asyncio.to_thread(migrations.upgrade, spec.migrations_dir, settings.database_url)
            elif spec.migrations_dir is not None:  # a migrations Job migrates (deploy/k8s)
                await migrations.wait_until_current(
                    spec.migrations_dir, settings.database_url, settings.migration_wait_seconds
                )
            runtime.wakeups = Wakeups(db, name)
            if spec.tables is not None:
                runtime.uow = UnitOfWorkFactory(db, spec.tables.outbox, name, settings.topic, spec.events)
                box = secrets.box_from_settings(
                    name, settings.secret_keys, settings.var_dir, required=settings.require_secret_keys
                )
                secrets.install(box)  # for `Sealed` columns
                runtime.idempotency = IdempotencyStore(
                    db,
                    spec.tables.idempotency,
                    ttl=timedelta(seconds=settings.idempotency_ttl_seconds),
                    lock=timedelta(seconds=settings.idempotency_lock_seconds),
                    box=box,
                )
                if settings.outbox_relay_enabled and spec.uses_kafka:
                    runtime.relay = OutboxRelay(
                        db=db,
                        outbox=spec.tables.outbox,
                        service=name,
                        bootstrap=settings.kafka_bootstrap_servers,
                        batch_size=settings.outbox_batch_size,
                        poll_seconds=settings.outbox_poll_seconds,
                        retention=timedelta(hours=settings.outbox_retention_hours),
                        send_timeout=settings.outbox_send_timeout_seconds,
                        shards=settings.work_shards,
                        rebalance_seconds=settings.shard_rebalance_seconds,
                    )
                    runtime.after_commit.append(runtime.wakeups.unless_listening(runtime.relay.wake))
                runtime.uow.after_commit.append(runtime.committed)
                # A commit on any replica that wrote outbox rows wakes every replica's relay: the row's
                # shard may be another replica's.
                runtime.wakeups.watch(spec.tables.outbox, "outbox")
                if runtime.relay is not None:
                    runtime.wakeups.on("outbox", runtime.relay.wake)
                audit.attach(runtime)
                if spec.subscribe_topics and settings.consumer_enabled and spec.uses_kafka:
                    runtime.consumer = ConsumerRunner(
                        db=db,
                        inbox=spec.tables.inbox,
                        group=runtime.group,
                        topics=[settings.topic_name(t) for t in spec.subscribe_topics],
                        dead_letter_topic=settings.dead_letter_topic,
                        handlers=spec.handlers,
                        bootstrap=settings.kafka_bootstrap_servers,
                        retry=RetryPolicy(
                            settings.consumer_max_attempts,
                            settings.consumer_backoff_seconds,
                            settings.consumer_backoff_max_seconds,
                        ),
                        after_commit=runtime.committed,
                        uow=runtime.uow,
                        dead_letters=spec.tables.dead_letters,
                        service=name,
                        session_timeout_ms=settings.consumer_session_timeout_ms,
                        heartbeat_interval_ms=settings.consumer_heartbeat_interval_ms,
                        group_instance_id=settings.consumer_group_instance_id,
                    )
                if spec.subscribe_topics and spec.uses_kafka:
                    # Also while the consumer is disabled: what waits is still the operators' to see.
                    dead_letters = spec.tables.dead_letters
                    runtime.start(
                        "dead-letters-gauge",
                        lambda _rt: keep_gauge_fresh(
                            db,
                            dead_letters,
                            name,
                            [settings.dead_letter_topic],
                            settings.dead_letters_gauge_seconds,
                        ),
                    )
        for hook in spec.startup:
            await hook(app)
        if runtime.wakeups is not None and runtime.wakeups.enabled:
            wakeups = runtime.wakeups
            runtime.start("wakeups", lambda _: wakeups.run())
        _start_observers(runtime)
        if spec.uses_kafka:
            runtime.start("kafka-setup", _kafka_setup)
        for task_name, body in spec.background:
            runtime.start(task_name, body)
        if runtime.db is not None and spec.tables is not None:
            runtime.start("retention", retention.keep)
        if runtime.idempotency is not None:
            store = runtime.idempotency
            runtime.start(
                "idempotency-purge", lambda _: purge_expired_keys(store, settings.idempotency_purge_seconds)
            )
        log.info("%s started on %s:%s", name, settings.host, settings.port)
        try:
            yield
        finally:
            for task in runtime.tasks.values():
                task.cancel()
            await asyncio.gather(*runtime.tasks.values(), return_exceptions=True)
            for hook in spec.shutdown:
                await hook(app)
            await app.state.token_verifier.aclose()
            if runtime.db is not None:
                await runtime.db.dispose()
            telemetry.shutdown_tracing()

    app = FastAPI(
        title=spec.title,
        description=spec.description,
        version=spec.version,
        openapi_tags=[dict(tag) for tag in spec.tags] or None,
        lifespan=lifespan,
        # The API port serves no documents of its own: they are on the management port (see management_app).
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        # Traces come from the OpenTelemetry instrumentation `telemetry` installs and metrics from the
        # platform's own; FastAPI's built-in telemetry would only wrap every request once more.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_openapi(app)
    install_problem_handlers(app)
    if spec.metadata is not None and spec.tables is not None:
        app.add_middleware(audit.AuditMiddleware)  # inside the idempotency replays: a replay changes nothing
        app.include_router(audit.router)
        app.include_router(outbox_admin.operations_router(name))
        app.add_middleware(RejectDuplicateKeys)  # inside the key's hold: a refused body releases it
        # Inside the metrics and tracing middleware, so replays are measured and traced like any answer.
        app.add_middleware(IdempotencyMiddleware)
    # Outside the idempotency, audit and body middlewares: what they raise is answered as a problem too.
    app.add_middleware(AnswerErrors)
    app.add_middleware(RequestMetrics, service=name)
    logs.install_access_log(app, name)  # outside every middleware, inside the tracing one (installed next)
    telemetry.instrument_app(app)
    for router in spec.routers:
        app.include_router(router)
    if spec.subscribe_topics and spec.tables is not None:
        app.include_router(operations_api.router_for(name))

    # Health stays on the API port too: it says whether this port can serve (orchestrators, `icep up`).
    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": name}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        return await readiness(app)

    app.state.management = management_app(app, spec)
    app.state.spec = spec  # for the CLI's tools that work on the service's database (`icep retention`)
    return app


async def readiness(app: FastAPI) -> JSONResponse:
    """The answer of /readyz for a service's API app: 200 when it can serve its API, else 503.

    Ready means the database answers (and the service's own checks pass). The broker is reported in
    `checks.kafka` (and `topics_ready`) but does not count: during a broker outage the outbox keeps the
    events and the API goes on serving, so the pods must stay in rotation. `degraded` names what is down
    without making the pod unready."""
    runtime: Runtime | None = getattr(app.state, "runtime", None)
    if runtime is None:  # the API app has not started (yet)
        return JSONResponse({"status": "starting", "checks": {}}, status_code=503)
    spec = runtime.spec
    settings = runtime.settings
    checks: dict[str, bool] = {}
    if runtime.db is not None:
        try:
            await within(2.0, runtime.db.ping())
            checks["database"] = True
        except Exception:
            checks["database"] = False
    for check_name, check in spec.readiness.items():
        try:
            checks[check_name] = await within(2.0, check(app))
        except Exception:
            checks[check_name] = False
    ok = all(checks.values())
    reported: dict[str, bool] = {}
    if spec.uses_kafka:
        # What the dependency observer last saw (no network I/O here: a broker that drops packets must not
        # make the probe itself time out); only before its first look is the broker asked, briefly.
        seen = runtime.dependencies.get("kafka")
        if seen is None:
            seen = await kafka_reachable(settings.kafka_bootstrap_servers, timeout=0.5)
        reported["kafka"] = seen
    body: dict[str, Any] = {
        "status": "ready" if ok else "not ready",
        "service": settings.service_name,
        "checks": {**checks, **reported},
        "required": sorted(checks),
        "degraded": sorted(k for k, up in reported.items() if not up),
    }
    if spec.uses_kafka:
        body["topics_ready"] = runtime.topics_ready
    return JSONResponse(body, status_code=200 if ok else 503)


def management_app(api: FastAPI, spec: ServiceSpec) -> FastAPI:
    """The operators' app of a service, served on its management port in the same process and event loop:
    Prometheus metrics (the process's registry), health, and the service's own API documents. It has no
    lifespan: it reads the runtime the API app's lifespan made."""
    name = spec.settings.service_name
    management = FastAPI(title=f"{spec.title} (management)", openapi_url=None, docs_url=None, redoc_url=None)
    install_problem_handlers(management)

    @management.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @management.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": name}

    @management.get("/readyz")
    async def readyz() -> JSONResponse:
        return await readiness(api)

    if spec.own_api_docs:

        @management.get("/openapi.json")
        async def openapi() -> JSONResponse:
            return JSONResponse(api.openapi())

        @management.get("/docs")
        async def docs() -> HTMLResponse:
            return get_swagger_ui_html(
                openapi_url="/openapi.json",
                title=f"{spec.title} (service API)",
                oauth2_redirect_url="/docs/oauth2-redirect",
            )

        @management.get("/docs/oauth2-redirect")
        async def oauth2_redirect() -> HTMLResponse:
            return get_swagger_ui_oauth2_redirect_html()

        @management.get("/redoc")
        async def redoc() -> HTMLResponse:
            return get_redoc_html(openapi_url="/openapi.json", title=f"{spec.title} (service API)")

    return management


def management_of(app: FastAPI) -> FastAPI:
    """The management app `service_app` made for `app`."""
    management: FastAPI = app.state.management
    return management


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def database(request: Request) -> Database:
    """The service's database, for read-only use cases."""
    db = runtime_of(request).db
    if db is None:
        raise RuntimeError("this service keeps no database")
    return db


def unit_of_work(request: Request) -> UnitOfWorkFactory:
    """The service's unit of work, for use cases that change state and raise events."""
    uow = runtime_of(request).uow
    if uow is None:
        raise RuntimeError("this service has no outbox")
    return uow


# Typed dependencies for routes. Coroutines, so FastAPI calls them on the loop, not in a worker thread.
async def _database_dependency(request: Request) -> Database:
    return database(request)


async def _unit_of_work_dependency(request: Request) -> UnitOfWorkFactory:
    return unit_of_work(request)


#: The service's database, for a route whose use case only reads.
DatabaseDep = Annotated[Database, Depends(_database_dependency)]
#: The service's unit of work, for a route whose use case changes state.
UnitOfWorkDep = Annotated[UnitOfWorkFactory, Depends(_unit_of_work_dependency)]
