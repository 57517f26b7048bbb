"""The `hub` command: run the API, a worker or the demo, migrate the database, check configuration."""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Annotated, Any, NoReturn

import typer

from hub.cli import privacy as cli_privacy
from hub.cli.audit import audit_app
from hub.cli.clients import clients_app
from hub.cli.digest import digest
from hub.cli.payments import payments_app
from hub.config.settings import Settings, load_settings
from hub.errors import ConfigError, HubError

app = typer.Typer(help="Council Connector Hub", no_args_is_help=True, add_completion=False)
config_app = typer.Typer(help="Check the configuration before deploying it.", no_args_is_help=True)
connectors_app = typer.Typer(help="The configured back-office connectors.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(clients_app, name="clients")  # hub/cli/clients.py
deliveries_app = typer.Typer(help="Find parked deliveries and replay them.", no_args_is_help=True)
app.add_typer(connectors_app, name="connectors")
app.add_typer(deliveries_app, name="deliveries")
app.add_typer(cli_privacy.keys_app, name="keys")
app.add_typer(cli_privacy.retention_app, name="retention")
app.add_typer(cli_privacy.subjects_app, name="subjects")
app.add_typer(audit_app, name="audit")  # hub/cli/audit.py
app.command("digest")(digest)  # hub/cli/digest.py
app.add_typer(payments_app, name="payments")  # hub/cli/payments.py


def _settings() -> Settings:
    try:
        return load_settings()
    except HubError as exc:
        _fail(str(exc), 2)


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def _refuse(exc: Exception) -> NoReturn:
    """Stops a process that cannot start: exit 2 when the configuration is at fault (as for an
    unknown setting), 1 for anything else."""
    _fail(str(exc), 2 if isinstance(exc, ConfigError) else 1)


@app.command()
def migrate() -> None:
    """Bring the database to the newest schema (Alembic upgrade)."""
    from hub.config import production
    from hub.logs import configure
    from hub.store.db import make_engine
    from hub.store.migrate import upgrade

    settings = _settings()
    configure(settings.log_level, settings.log_json)
    try:
        production.ensure_ready(settings)
    except HubError as exc:
        _refuse(exc)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    engine.dispose()
    typer.echo("database is at the newest schema")


@app.command()
def api(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    relay: Annotated[bool, typer.Option(help="Run the outbox relay in this process")] = True,
    drain: Annotated[float, typer.Option(min=0, help="Seconds to keep serving after SIGTERM with /readyz at 503 and connections closing")] = 0.0,
    grace: Annotated[int, typer.Option(min=1, help="Seconds then to finish the requests in flight")] = 15,
) -> None:
    """Serve HTTP intake and status, with the outbox relay beside it."""
    from hub.api.app import create_app
    from hub.api.shutdown import serve
    from hub.logs import add_secrets, configure
    from hub.relay.outbox_relay import Relay
    from hub.runtime import Runtime

    settings = _settings()
    configure(settings.log_level, settings.log_json)
    try:
        runtime = Runtime.build(settings, os.environ)
    except HubError as exc:
        _refuse(exc)
    add_secrets(_secret_values(settings))
    the_relay = Relay(runtime) if relay else None
    serve(create_app(runtime, the_relay), host, port, drain_seconds=drain, grace_seconds=grace)


@app.command()
def worker(
    connector: Annotated[list[str] | None, typer.Option("--connector", "-c", help="Consume only this connector's queue (repeatable)")] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=256, help="Deliveries sent at once")] = 4,
    metrics_port: Annotated[int | None, typer.Option(help="Serve /metrics, /healthz and /readyz on this port")] = None,
    metrics_host: Annotated[str, typer.Option(help="Address for --metrics-port (0.0.0.0 in a container, for the probes)")] = "127.0.0.1",
    grace: Annotated[float, typer.Option(help="Seconds to finish in-flight deliveries on SIGTERM")] = 30.0,
    background: Annotated[bool, typer.Option(help="Also run periodic jobs (retention, status polling, webhooks)")] = True,
) -> None:
    """Consume delivery queues and send records to the back offices."""
    from hub.background import Periodic, jobs
    from hub.delivery import probes
    from hub.delivery.worker import Worker
    from hub.logs import add_secrets, configure, get_logger
    from hub.runtime import Runtime

    settings = _settings()
    configure(settings.log_level, settings.log_json)
    try:
        runtime = Runtime.build(settings, os.environ)
        the_worker = Worker(runtime, connector, concurrency)
    except (HubError, ValueError) as exc:
        _refuse(exc)
    add_secrets(_secret_values(settings))
    if metrics_port:
        probes.serve(the_worker, metrics_host, metrics_port)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    periodic = Periodic(jobs(runtime) if background else [])
    periodic.start(stop)
    get_logger("hub.delivery.worker").info("worker_started", pid=os.getpid(), jobs=[job.name for job in periodic.jobs])
    the_worker.run(stop, grace_seconds=grace)
    periodic.join()
    runtime.close()


@app.command()
def demo(
    once: Annotated[bool, typer.Option("--once", help="Send the samples, print the table and exit (0 only if all were delivered)")] = False,
    port: Annotated[int | None, typer.Option(help="Port for the hub's API")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for deliveries")] = 60.0,
) -> None:
    """Run the whole hub in one process on its embedded default, with simulated back offices."""
    from hub.demo import run_demo

    sys.exit(run_demo(_settings(), os.environ, once=once, port=port, timeout=timeout))


@config_app.command("check")
def config_check() -> None:
    """Prove the configuration offline: schemas compile, routes name real connectors and forms,
    connector options are valid, and every mapping turns its samples into its expected records."""
    from hub.config.checks import check_configuration

    problems = check_configuration(_settings(), os.environ)
    if problems:
        for problem in problems:
            typer.echo(problem, err=True)
        _fail(f"{len(problems)} problem(s) found", 1)
    typer.echo("configuration OK")


def _connectors() -> tuple[Any, list[str]]:
    from connectors.base import Secrets
    from connectors.registry import ConnectorRegistry
    from hub.config.connector_hosts import connector_allow_list
    from hub.config.files import load_config

    settings = _settings()
    try:
        config = load_config(settings.config_dir, os.environ, settings.standards_dir)
    except HubError as exc:
        _fail(str(exc))
    registry = ConnectorRegistry.from_entry_points()
    def build(name: str) -> Any:
        connector = config.connectors[name]
        return registry.build(connector, Secrets(os.environ), connector_allow_list(config, connector))

    return build, sorted(config.connectors)


@connectors_app.command("check")
def connectors_check() -> None:
    """Call each connector's live check (connectivity, credentials) and print a table."""
    build, names = _connectors()
    rows: list[tuple[str, str, str]] = []
    for name in names:
        try:
            connector = build(name)
            health = connector.check()
            connector.close()
            rows.append((name, "ok" if health.ok else "FAILING", health.detail))
        except HubError as exc:
            rows.append((name, "FAILING", str(exc)))
    width = max(len(r[0]) for r in rows) if rows else 10
    typer.echo(f"{'connector':<{width}}  state    detail")
    for name, state, detail in rows:
        typer.echo(f"{name:<{width}}  {state:<7}  {detail}")
    if any(state != "ok" for _, state, _ in rows):
        raise typer.Exit(1)


@connectors_app.command("describe")
def connectors_describe(name: Annotated[str, typer.Argument(help="A configured connector's name")]) -> None:
    """Print what a connector sends where (for SOAP: its operations and their argument types)."""
    build, names = _connectors()
    if name not in names:
        _fail(f"no connector {name!r}; configured: {', '.join(names)}")
    try:
        connector = build(name)
    except HubError as exc:
        _fail(str(exc))
    typer.echo(connector.describe())
    connector.close()


def _since(value: str | None) -> Any:
    """An ISO 8601 time, or a span back from now such as 30m, 2h or 7d."""
    from datetime import UTC, datetime, timedelta

    if value is None:
        return None
    units = {"m": "minutes", "h": "hours", "d": "days"}
    if value[:-1].isdigit() and value[-1] in units:
        return datetime.now(UTC) - timedelta(**{units[value[-1]]: int(value[:-1])})
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        _fail(f"--since {value!r} is neither an ISO 8601 time nor a span like 30m, 2h or 7d")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _print_deliveries(rows: list[dict[str, Any]]) -> None:
    typer.echo(f"{'id':>8}  {'reference':<14}  {'connector':<14}  {'attempts':>8}  reason")
    for row in rows:
        typer.echo(f"{row['delivery_id']:>8}  {row['reference']:<14}  {row['connector']:<14}  {row['attempts']:>8}  {row['last_error']}")


@deliveries_app.command("list")
def deliveries_list(
    connector: Annotated[str | None, typer.Option(help="Only this connector")] = None,
    since: Annotated[str | None, typer.Option(help="Parked since (ISO time, or 30m / 2h / 7d ago)")] = None,
    reason_contains: Annotated[str | None, typer.Option(help="Only reasons containing this text")] = None,
) -> None:
    """List parked deliveries with their reasons."""
    from hub.store.db import make_engine
    from hub.store.replay import ParkedFilter, find_parked

    engine = make_engine(_settings().database_url)
    rows = find_parked(engine, ParkedFilter(connector=connector, since=_since(since), reason_contains=reason_contains))
    _print_deliveries(rows)
    typer.echo(f"{len(rows)} parked deliveries")


@deliveries_app.command("replay")
def deliveries_replay(
    delivery_id: Annotated[int | None, typer.Argument(help="One delivery's id (see `hub deliveries list`)")] = None,
    connector: Annotated[str | None, typer.Option(help="Every parked delivery of this connector")] = None,
    since: Annotated[str | None, typer.Option(help="Parked since (ISO time, or 30m / 2h / 7d ago)")] = None,
    reason_contains: Annotated[str | None, typer.Option(help="Only reasons containing this text")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be replayed, change nothing")] = False,
) -> None:
    """Re-queue parked deliveries: mapped again from the original payload, with a fresh retry
    budget; each replay is written to the audit log."""
    import getpass

    from hub.store.db import make_engine
    from hub.store.replay import ParkedFilter, replay

    if delivery_id is None and not (connector or since or reason_contains):
        _fail("name a delivery id, or filter with --connector, --since or --reason-contains")
    flt = ParkedFilter(
        ids=(delivery_id,) if delivery_id is not None else (),
        connector=connector,
        since=_since(since),
        reason_contains=reason_contains,
    )
    engine = make_engine(_settings().database_url)
    rows = replay(engine, flt, f"cli:{getpass.getuser()}", dry_run=dry_run)
    _print_deliveries(rows)
    if delivery_id is not None and not rows:
        _fail(f"delivery {delivery_id} is not parked")
    typer.echo(f"{len(rows)} deliveries {'would be replayed (dry run)' if dry_run else 'replayed'}")


def _secret_values(settings: Settings) -> list[str]:
    """Values that must never be logged: the database and broker passwords, and the hub's keys."""
    from sqlalchemy.engine import make_url

    found: list[str] = [
        secret.get_secret_value()
        for secret in (settings.encryption_keys, settings.index_key, settings.oidc_client_secret, settings.session_key)
        if secret is not None
    ]
    if settings.encryption_keys is not None:
        found += settings.encryption_keys.get_secret_value().replace(",", " ").split()
    for url in (settings.database_url, settings.broker_url):
        try:
            password = make_url(url).password if "://" in url else None
        except Exception:
            password = None
        if password:
            found.append(str(password))
    return found


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
