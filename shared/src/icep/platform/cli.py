"""The `icep` command: run the platform locally, one service, or its migrations."""

from __future__ import annotations

import importlib
import importlib.util
import os
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from icep.platform.launcher import (
    SERVICES,
    START_ORDER,
    Launcher,
    LaunchError,
    RestartPolicy,
    Watchdog,
    platform_env,
)

if TYPE_CHECKING:
    from icep.platform.kafka_local import LocalKafkaCluster

app = typer.Typer(help="ICEP: the NATO Industrial Capacity Expansion Pledge platform.", no_args_is_help=True)
console = Console()

#: Modules whose `COMMANDS` (name -> typer app) join `icep`: `icep clients`, `icep keys` from the gateway.
#: By name, like the services themselves: the platform imports no service.
SERVICE_COMMANDS = ["icep.gateway.admin"]
for _module in SERVICE_COMMANDS:
    if importlib.util.find_spec(_module.rsplit(".", 1)[0]) is not None:
        for _name, _group in importlib.import_module(_module).COMMANDS.items():
            app.add_typer(_group, name=_name)


def _settings_for(name: str) -> Any:
    module = importlib.import_module(f"icep.{name}.settings")
    cls = next(v for k, v in vars(module).items() if k.endswith("Settings") and k != "ServiceSettings")
    return cls()


def _check_service(name: str) -> str:
    if name not in SERVICES:
        raise typer.BadParameter(f"unknown service {name!r}; one of {', '.join(SERVICES)}")
    return name


@app.command()
def serve(
    service: Annotated[str, typer.Argument(help="gateway, plans, procurement, standards or notifications")],
) -> None:
    """Run one service in this process (uvicorn): its API on ICEP_<SERVICE>_PORT, its metrics, health and
    own API documents on ICEP_<SERVICE>_MANAGEMENT_PORT."""
    from uvicorn.importer import import_from_string

    from icep.platform import serving

    _check_service(service)
    settings = _settings_for(service)
    serving.run(import_from_string(SERVICES[service][0])(), settings)


@app.command()
def migrate(
    service: Annotated[str, typer.Argument(help="plans, procurement, standards or notifications")],
    revision: Annotated[str, typer.Option(help="Target revision")] = "head",
    down: Annotated[bool, typer.Option("--down", help="Downgrade to the revision instead")] = False,
) -> None:
    """Run a service's Alembic migrations against its configured database."""
    from icep.platform import migrations

    _check_service(service)
    settings = _settings_for(service)
    module = importlib.import_module(f"icep.{service}.app")
    migrations_dir: Path | None = getattr(module, "MIGRATIONS", None)
    if migrations_dir is None:
        console.print(f"{service} keeps no database")
        return
    if down:
        migrations.downgrade(migrations_dir, settings.database_url, revision)
    else:
        migrations.upgrade(migrations_dir, settings.database_url, revision)
    console.print(f"[green]{service}[/] migrated to {revision} ({'down' if down else 'up'})")


@app.command()
def up(
    var_dir: Annotated[Path, typer.Option(help="Where databases, keys, logs and Kafka data live")] = Path(
        "var"
    ),
    kafka_port: Annotated[
        int, typer.Option(help="Port of the local broker (its controller uses the next one)")
    ] = 9092,
    brokers: Annotated[
        int,
        typer.Option(
            min=1,
            envvar="ICEP_UP_BROKERS",
            help="Local Kafka nodes: 3 runs a KRaft cluster replicated like production (topics at "
            "replication factor 3, min.insync.replicas=2); node i listens on --kafka-port + 2(i-1), its "
            "controller on the port after",
        ),
    ] = 1,
    restart_backoff: Annotated[
        float,
        typer.Option(
            envvar="ICEP_UP_RESTART_BACKOFF_SECONDS", help="Wait before restarting a process that died"
        ),
    ] = 1.0,
    restart_backoff_max: Annotated[
        float,
        typer.Option(
            envvar="ICEP_UP_RESTART_BACKOFF_MAX_SECONDS",
            help="Longest wait between restarts of a process that keeps dying (the wait doubles up to it)",
        ),
    ] = 30.0,
) -> None:
    """Start Kafka (unless KAFKA_BOOTSTRAP_SERVERS is set), migrate, start all five services; Ctrl-C stops.

    A process that dies is restarted (after `--restart-backoff` seconds, doubling up to
    `--restart-backoff-max` while it keeps dying); only Ctrl-C or SIGTERM stops everything."""
    from icep.platform import kafka_local, migrations

    stop = threading.Event()

    def _on_signal(_signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)

    var_dir = var_dir.resolve()
    broker: kafka_local.LocalKafka | None = None
    cluster: kafka_local.LocalKafkaCluster | None = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "")
    topic_settings: dict[str, str] = {}
    launcher: Launcher | None = None
    try:
        with console.status("[bold]preparing ICEP[/]") as status:
            if not bootstrap:
                if not kafka_local.jars_present():
                    status.update("downloading Apache Kafka with Maven (first run only)")
                    kafka_local.fetch_jars()
                if brokers > 1:
                    status.update(
                        f"starting Apache Kafka (KRaft, {brokers} nodes from 127.0.0.1:{kafka_port})"
                    )
                    cluster = _start_cluster(var_dir, kafka_port, brokers)
                    bootstrap = cluster.bootstrap_servers
                    replication = str(min(brokers, 3))
                    topic_settings["ICEP_TOPIC_REPLICATION_FACTOR"] = os.environ.get(
                        "ICEP_TOPIC_REPLICATION_FACTOR", replication
                    )
                else:
                    status.update(f"starting Apache Kafka (KRaft, 127.0.0.1:{kafka_port})")
                    broker = kafka_local.LocalKafka(
                        data_dir=var_dir / "kafka", port=kafka_port, controller_port=kafka_port + 1
                    )
                    broker.start()
                    broker.wait_ready(90)
                    bootstrap = broker.bootstrap_servers
            # Ports: the defaults, or ICEP_<SERVICE>_PORT and ICEP_<SERVICE>_MANAGEMENT_PORT where set.
            settings = {name: _settings_for(name) for name in SERVICES}
            ports = {name: int(s.port) for name, s in settings.items()}
            management_ports = {name: s.management_address[1] for name, s in settings.items()}
            env = platform_env(
                ports,
                bootstrap=bootstrap,
                var_dir=var_dir,
                management_ports=management_ports,
                extra={
                    "ICEP_NOTIFICATIONS_ALLOW_LOOPBACK_ENDPOINTS": os.environ.get(
                        "ICEP_NOTIFICATIONS_ALLOW_LOOPBACK_ENDPOINTS", "true"
                    ),
                    **topic_settings,
                },
            )
            os.environ.update(env)
            for name in START_ORDER:
                module = importlib.import_module(f"icep.{name}.app")
                migrations_dir = getattr(module, "MIGRATIONS", None)
                if migrations_dir is not None:
                    status.update(f"migrating {name}")
                    migrations.upgrade(migrations_dir, _settings_for(name).database_url)
            launcher = Launcher(
                env=env, log_dir=var_dir / "logs", ports=ports, management_ports=management_ports
            )
            for name in START_ORDER:
                status.update(f"starting {name}")
                if name == "gateway":
                    for other in START_ORDER[:-1]:
                        launcher.wait_ready(other, 90)
                launcher.start(name)
            status.update("waiting for the gateway")
            launcher.wait_ready("gateway", 90)
        table = Table(title="ICEP is up", show_header=True)
        table.add_column("process")
        table.add_column("API")
        table.add_column("management (metrics, health, docs)")
        table.add_column("pid")
        for name in START_ORDER:
            sp = launcher.processes[name]
            table.add_row(name, sp.url, sp.management_url, str(sp.process.pid))
        if cluster is not None:
            pids = ", ".join(str(pid) for pid in cluster.pids.values())
            table.add_row(f"kafka ({len(cluster.nodes)} nodes)", bootstrap, "", pids)
        else:
            table.add_row("kafka", bootstrap, "", str(broker.pid) if broker else "external")
        console.print(table)
        console.print(f"API docs: {launcher.processes['gateway'].url}/docs   logs: {var_dir / 'logs'}")
        console.print("Press Ctrl-C to stop everything.")
        watchdog = Watchdog(
            launcher,
            say=lambda line: console.print(line, markup=False, soft_wrap=True),
            policy=RestartPolicy(initial=restart_backoff, maximum=max(restart_backoff, restart_backoff_max)),
        )
        while not stop.wait(0.5):
            watchdog.check()
    except (LaunchError, kafka_local.KafkaLocalError) as exc:
        console.print(f"[red]could not start ICEP:[/] {exc}")
        raise typer.Exit(1) from exc
    finally:
        console.print("stopping ...")
        if launcher is not None:
            launcher.stop_all()
        if cluster is not None:
            cluster.stop()  # its nodes together: each one's clean shutdown needs the others
        if broker is not None:
            broker.stop()
        console.print("stopped")


@app.command()
def seed(
    gateway: Annotated[str, typer.Option(help="The gateway's base URL")] = "http://127.0.0.1:8000",
    secret: Annotated[
        list[str] | None,
        typer.Option(help="client_id=secret, to use other than the development clients' secrets"),
    ] = None,
) -> None:
    """Load the labelled sample through the API (idempotent): national plans and capability targets, then
    NATO standards with national answers, interchangeability clearances and conformance claims, then joint
    procurement: suppliers (one left for adjudication), NSPA initiatives and nations' demand signals."""
    import asyncio

    # The platform imports no service statically: each seed lives with its service.
    secrets = dict(s.split("=", 1) for s in secret or [])
    for service in ("plans", "standards", "procurement"):
        module = importlib.import_module(f"icep.{service}.seed")
        console.print(f"[bold]{service}[/]")
        # Records are printed as they are (a title's brackets are not markup), a line per record.
        asyncio.run(
            module.seed(gateway, secrets, say=lambda line: console.print(line, markup=False, soft_wrap=True))
        )


@app.command()
def docs(
    out: Annotated[Path, typer.Option(help="Where the documents live")] = Path("docs/api"),
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 when a file differs from the code")
    ] = False,
    config_reference: Annotated[
        Path, typer.Option(help="The configuration reference generated from the settings classes")
    ] = Path("docs/configuration.md"),
) -> None:
    """Generate the merged OpenAPI document and the AsyncAPI document from the code (no broker or
    database needed; the gateway serves them at /openapi.json, /asyncapi.json and /docs), and the
    configuration reference from the settings classes."""
    from icep.platform import apidocs
    from icep.platform.apidocs import config_reference as reference

    if not check:
        for path in apidocs.write(out):
            console.print(f"wrote {path}")
        console.print(f"wrote {reference.write_reference(config_reference)}")
        return
    drifted = {str(out / name): where for name, where in apidocs.drift(out).items()}
    if reference_drift := reference.reference_drift(config_reference):
        drifted[str(config_reference)] = reference_drift
    if not drifted:
        console.print(f"{out} and {config_reference} are up to date")
        return
    for name, where in drifted.items():
        console.print(f"[red]{name} differs from the code[/] at:", soft_wrap=True)
        for line in where:
            console.print(f"  {line}", markup=False, soft_wrap=True)
    console.print("run `icep docs` to regenerate them", markup=False)
    raise typer.Exit(1)


# Operators' tools for a consuming service (docs/operations/dead-letters.md).
from icep.platform.operations.cli import consumer_app, dead_letters_app  # noqa: E402

app.add_typer(dead_letters_app, name="dead-letters")
app.add_typer(consumer_app, name="consumer")

secrets_app = typer.Typer(
    help="Keys that seal secrets at rest (docs/operations/secrets.md).", no_args_is_help=True
)
app.add_typer(secrets_app, name="secrets")


@secrets_app.command("new-key")
def secrets_new_key() -> None:
    """Print a new key for `ICEP_<SERVICE>_SECRET_KEYS`: put it first in the list, keep the old ones after
    it until every service has restarted (which reseals what they keep under it), then remove them."""
    from icep.platform.secrets import new_key

    typer.echo(new_key())


# --- outbox and retention (docs/operations/outbox-and-retention.md) -----------------------------------

outbox_app = typer.Typer(
    help="A service's outbox: status, retry, park, unpark (docs/operations/outbox-and-retention.md).",
    no_args_is_help=True,
)
app.add_typer(outbox_app, name="outbox")
retention_app = typer.Typer(
    help="Purge what is past retention (docs/operations/outbox-and-retention.md).", no_args_is_help=True
)
app.add_typer(retention_app, name="retention")
errors = Console(stderr=True)
ServiceArg = Annotated[str, typer.Argument(help="plans, procurement, standards or notifications")]
RowArg = Annotated[str, typer.Argument(help="The outbox row's id (the event id)")]


def _service_spec(service: str) -> Any:
    """The service's settings and spec (tables, retention rules), as its app would run with them."""
    _check_service(service)
    settings = _settings_for(service)
    module = importlib.import_module(f"icep.{service}.app")
    spec = module.create_app(settings).state.spec
    if spec.tables is None or spec.metadata is None:
        errors.print(f"{service} keeps no database")
        raise typer.Exit(2)
    return spec


def _on_database(service: str, work: Any) -> Any:
    """Run `work(db, spec)` against the service's database (from its own settings), like `icep migrate`."""
    import asyncio

    from icep.platform.db import Database
    from icep.platform.errors import DomainError

    spec = _service_spec(service)

    async def run() -> Any:
        db = Database(spec.settings.database_url)
        try:
            return await work(db, spec)
        finally:
            await db.dispose()

    try:
        return asyncio.run(run())
    except DomainError as exc:
        errors.print(f"[red]{exc.detail}[/]", soft_wrap=True)
        raise typer.Exit(2) from exc


def _show_rows(title: str, rows: list[Any]) -> None:
    table = Table(title=title, show_header=True)
    for column in ("id", "key", "type", "attempts", "last error", "parked"):
        table.add_column(column, overflow="fold")
    for row in rows:
        parked = f"{row.parked_at:%Y-%m-%d %H:%M:%SZ} {row.parked_reason or ''}" if row.parked_at else ""
        table.add_row(row.id, row.key, row.type, str(row.attempts), row.last_error or "", parked)
    console.print(table)


@outbox_app.command("status")
def outbox_status(
    service: ServiceArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON")] = False,
) -> None:
    """Backlog, age of the oldest unsent row, parked rows, the rows failing most, and the relay's leader."""
    from icep.platform import outbox_admin

    found = _on_database(
        service, lambda db, spec: outbox_admin.status(db, spec.tables.outbox, spec.settings.service_name)
    )
    if as_json:
        typer.echo(found.model_dump_json(indent=2))
        return
    leader = found.leader
    if leader.mode == "single-process":
        who = "SQLite: the relay of the process using the database"
    elif leader.held:
        pids = ", ".join(str(pid) for pid in leader.holder_pids)
        who = f"{leader.shards_held} shards held by relays (database backend pids {pids})"
    else:
        who = "[red]no relay holds a shard[/]"
    console.print(f"[bold]{service}[/] outbox")
    console.print(
        f"  backlog: {found.backlog}   oldest: {found.oldest_age_seconds:.1f} s   parked: {found.parked}"
    )
    console.print(f"  leader: {who}")
    if found.failing:
        _show_rows("failing rows (most attempts first)", found.failing)
    if found.parked_rows:
        _show_rows("parked rows", found.parked_rows)


def _changed(row: Any, what: str) -> None:
    console.print(f"outbox row {row.id} ({row.type}, key {row.key}) {what}", markup=False, soft_wrap=True)


@outbox_app.command("retry")
def outbox_retry(service: ServiceArg, row_id: RowArg) -> None:
    """Queue a row again from scratch: clears its error and attempts and unparks it. The relay publishes it
    at its next poll (`ICEP_<SERVICE>_OUTBOX_POLL_SECONDS`)."""
    from icep.platform import outbox_admin

    row = _on_database(service, lambda db, spec: outbox_admin.retry(db, spec.tables.outbox, row_id))
    _changed(row, "queued again")


@outbox_app.command("park")
def outbox_park(
    service: ServiceArg,
    row_id: RowArg,
    reason: Annotated[str, typer.Option("--reason", help="Why it cannot be published (kept with the row)")],
) -> None:
    """Take a row that cannot be published out of the relay's queue. Its key's later rows then go on
    without it: the order of that key is given up for this row, on purpose."""
    from icep.platform import outbox_admin

    if not reason.strip() or len(reason) > 500:
        raise typer.BadParameter("give a reason of 1 to 500 characters", param_hint="--reason")
    row = _on_database(service, lambda db, spec: outbox_admin.park(db, spec.tables.outbox, row_id, reason))
    _changed(row, "parked")


@outbox_app.command("unpark")
def outbox_unpark(service: ServiceArg, row_id: RowArg) -> None:
    """Queue a parked row again, keeping its attempts and last error."""
    from icep.platform import outbox_admin

    row = _on_database(service, lambda db, spec: outbox_admin.unpark(db, spec.tables.outbox, row_id))
    _changed(row, "unparked")


@retention_app.command("purge")
def retention_purge(
    service: ServiceArg,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be purged; delete nothing")
    ] = False,
) -> None:
    """Purge once what is past retention (the service does it on schedule too); prints rows per table."""
    from icep.platform import retention

    async def work(db: Any, spec: Any) -> list[retention.Purged]:
        rules = retention.rules_for(spec.tables, spec.retention)
        return await retention.purge_once(
            db, spec.settings.service_name, spec.settings, rules, dry_run=dry_run
        )

    done = _on_database(service, work)
    table = Table(title=f"{service}: {'would purge' if dry_run else 'purged'}", show_header=True)
    table.add_column("table")
    table.add_column("older than")
    table.add_column("rows", justify="right")
    for purged in done:
        for name, rows in purged.rows.items():
            table.add_row(name, f"{purged.cutoff:%Y-%m-%d %H:%M:%SZ}", str(rows))
    console.print(table)


def _start_cluster(var_dir: Path, kafka_port: int, nodes: int) -> LocalKafkaCluster:
    """A local KRaft cluster for `icep up --brokers N`: node i on `kafka_port + 2(i-1)`, its controller on
    the next port, data in `var_dir/kafka-cluster` (kept between runs, like the single broker's)."""
    from icep.platform import kafka_local

    cluster = kafka_local.LocalKafkaCluster(
        var_dir / "kafka-cluster",
        nodes=nodes,
        ports=[kafka_port + 2 * i for i in range(nodes)],
        controller_ports=[kafka_port + 2 * i + 1 for i in range(nodes)],
    )
    cluster.start()
    try:
        cluster.wait_ready(120)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def main() -> None:
    app()


if __name__ == "__main__":
    main()
