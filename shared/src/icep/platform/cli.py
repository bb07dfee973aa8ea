"""The `icep` command: run the platform locally, one service, or its migrations."""

from __future__ import annotations

import importlib
import importlib.util
import os
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

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

    def _on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)

    var_dir = var_dir.resolve()
    broker: kafka_local.LocalKafka | None = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "")
    launcher: Launcher | None = None
    try:
        with console.status("[bold]preparing ICEP[/]") as status:
            if not bootstrap:
                if not kafka_local.jars_present():
                    status.update("downloading Apache Kafka with Maven (first run only)")
                    kafka_local.fetch_jars()
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
                    )
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
) -> None:
    """Generate the merged OpenAPI document and the AsyncAPI document from the code (no broker or
    database needed); the gateway serves them at /openapi.json, /asyncapi.json and /docs."""
    from icep.platform import apidocs

    if not check:
        for path in apidocs.write(out):
            console.print(f"wrote {path}")
        return
    drifted = apidocs.drift(out)
    if not drifted:
        console.print(f"{out} is up to date")
        return
    for name, where in drifted.items():
        console.print(f"[red]{out / name} differs from the code[/] at:", soft_wrap=True)
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
