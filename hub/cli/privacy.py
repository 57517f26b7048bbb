"""The personal-data commands of `hub`: encryption keys (`hub keys`), retention (`hub retention`)
and a resident's access and erasure requests (`hub subjects`).
"""

from __future__ import annotations

import getpass
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, NoReturn

import orjson
import typer

from hub.config.settings import Settings, load_settings
from hub.errors import HubError

keys_app = typer.Typer(help="Keys that seal payloads at rest.", no_args_is_help=True)
retention_app = typer.Typer(help="Purge payloads their retention rule no longer allows.", no_args_is_help=True)
subjects_app = typer.Typer(help="A resident's subject access and erasure requests.", no_args_is_help=True)

ActorOption = Annotated[str | None, typer.Option(help="Who is doing this, for the audit log (default: cli:<your user name>)")]
TenantOption = Annotated[str, typer.Option(help="The tenant (council) the resident made their submissions to")]
EmailOption = Annotated[str, typer.Option(help="The resident's e-mail address")]


def _fail(message: str) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(1)


def _actor(actor: str | None) -> str:
    return actor.strip() if actor and actor.strip() else f"cli:{getpass.getuser()}"


def _settings() -> Settings:
    try:
        return load_settings()
    except HubError as exc:
        _fail(str(exc))


def _runtime() -> Any:
    from hub.runtime import Runtime

    try:
        return Runtime.build(_settings(), os.environ)
    except HubError as exc:
        _fail(str(exc))


@keys_app.command("new")
def keys_new() -> None:
    """Print a fresh Fernet key. Put it FIRST in HUB_ENCRYPTION_KEYS, keep the old ones after it,
    restart the hub, then run `hub keys rotate`."""
    from hub.privacy.sealing import new_key

    typer.echo(new_key())


@keys_app.command("rotate")
def keys_rotate(
    batch: Annotated[int, typer.Option(min=1, max=100_000, help="Rows re-sealed per transaction")] = 500,
    actor: ActorOption = None,
) -> None:
    """Re-seal every stored payload and webhook secret with the newest key of HUB_ENCRYPTION_KEYS.
    Safe to stop and run again; once it reports nothing unreadable, older keys may be removed."""
    from hub.privacy.sealing import sealer
    from hub.store import audit, personal_data
    from hub.store.db import make_engine

    settings = _settings()
    try:
        the_sealer = sealer(settings)
    except HubError as exc:
        _fail(str(exc))
    engine = make_engine(settings.database_url)
    found: dict[str, personal_data.Resealed] = {}
    for what in ("submissions", "webhooks", "corrections", "correction-diffs", "attachment-locations"):
        def progress(done: personal_data.Resealed, what: str = what) -> None:
            typer.echo(f"{what}: {done.seen} checked, {done.resealed} re-sealed, {done.current} already on the newest key")

        found[what] = personal_data.reseal(engine, the_sealer, what, batch, progress)
        progress(found[what])
    detail = {w: {"resealed": r.resealed, "current": r.current, "unreadable": len(r.unreadable)} for w, r in found.items()}
    audit.record(engine, _actor(actor), None, "keys.rotate", "HUB_ENCRYPTION_KEYS", detail)
    engine.dispose()
    unreadable = [(w, label) for w, r in found.items() for label in r.unreadable]
    if unreadable:
        for what, label in unreadable:
            typer.echo(f"{what}: {label} cannot be opened with any key of HUB_ENCRYPTION_KEYS", err=True)
        _fail(f"{len(unreadable)} value(s) unreadable: put back the key they were sealed with and run again")
    typer.echo("every payload and webhook secret is sealed with the newest key; older keys may now be removed")


def _when(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        _fail(f"--now {value!r} is not an ISO 8601 time, like 2026-03-01T00:00:00Z")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@retention_app.command("run")
def retention_run(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would be purged, change nothing")] = False,
    now: Annotated[str | None, typer.Option(help="Purge as if it were this time (ISO 8601)")] = None,
    actor: ActorOption = None,
) -> None:
    """Purge the payloads their form's retention rule no longer allows, and print counts per tenant and form."""
    from hub.config.files import load_config
    from hub.privacy import retention
    from hub.store.db import make_engine

    settings = _settings()
    at = _when(now)
    try:
        config = load_config(settings.config_dir, os.environ, settings.standards_dir)
    except HubError as exc:
        _fail(str(exc))
    if not config.retention:
        typer.echo("no retention rules are configured: every payload is kept", err=True)
    from hub.attachments.storage import store_from_settings
    from hub.privacy.sealing import sealer

    engine = make_engine(settings.database_url)
    blobs = store_from_settings(settings, sealer(settings).fernet)
    found = retention.run(engine, config, at, _actor(actor), dry_run=dry_run, blobs=blobs)
    expired = retention.expire_unlinked(engine, blobs, at, timedelta(hours=settings.attachment_unlinked_max_age_hours), dry_run)
    engine.dispose()
    typer.echo(f"{'tenant':<16}  {'form':<36}  {'days':>5}  {'would purge' if dry_run else 'purged':>11}")
    for item in found:
        typer.echo(f"{item.tenant:<16}  {item.form_id:<36}  {item.days:>5}  {item.count:>11}")
    total = sum(item.count for item in found)
    typer.echo(f"{total} payload(s) {'would be purged (dry run)' if dry_run else 'purged'}")
    typer.echo(f"{expired.uploads} upload(s) no submission named, older than "
               f"{settings.attachment_unlinked_max_age_hours:g} h, {'would be deleted (dry run)' if dry_run else 'deleted'}")


def _tenant(runtime: Any, tenant: str, email: str) -> None:
    from hub.privacy.subjects import plausible_email

    if tenant not in runtime.config.tenants:
        _fail(f"no tenant {tenant!r}; configured: {', '.join(sorted(runtime.config.tenants))}")
    if not plausible_email(email):
        _fail("--email must be an e-mail address, like name@example.org")


@subjects_app.command("export")
def subjects_export(
    tenant: TenantOption,
    email: EmailOption,
    out: Annotated[Path | None, typer.Option(help="Write the JSON here (readable by you only); default: standard output")] = None,
    actor: ActorOption = None,
) -> None:
    """Write every submission this resident made to this tenant as JSON: answers, deliveries and timeline."""
    from hub.privacy.subjects import export

    runtime = _runtime()
    _tenant(runtime, tenant, email)
    found = export(runtime, tenant, email, _actor(actor))
    runtime.close()
    document = orjson.dumps(found, option=orjson.OPT_INDENT_2) + b"\n"
    if out is None:
        sys.stdout.buffer.write(document)
        sys.stdout.flush()
    else:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(document)
    typer.echo(f"{len(found['submissions'])} submission(s) exported" + (f" to {out}" if out else ""), err=out is None)


@subjects_app.command("erase")
def subjects_erase(
    tenant: TenantOption,
    email: EmailOption,
    actor: Annotated[str, typer.Option(help="Who is erasing (a name for the audit log)")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation")] = False,
) -> None:
    """Remove this resident's personal data from every submission they made to this tenant; open
    deliveries are parked so nothing half-erased is sent. Each erasure goes to the audit log."""
    from hub.privacy.subjects import erase

    runtime = _runtime()
    _tenant(runtime, tenant, email)
    if not actor.strip():
        _fail("--actor must name who is erasing")
    if not yes and not typer.confirm(f"Erase this resident's personal data from every submission to {tenant}?"):
        _fail("nothing erased")
    done = erase(runtime, tenant, email, actor.strip())
    runtime.close()
    for item in done:
        typer.echo(f"{item.reference:<16}  {item.form_id:<36}  {item.payload}; {item.deliveries_parked} open delivery(ies) parked")
    typer.echo(f"{len(done)} submission(s) erased")


@subjects_app.command("reindex")
def subjects_reindex(batch: Annotated[int, typer.Option(min=1, max=100_000, help="Submissions per transaction")] = 500) -> None:
    """Link every stored submission to its resident's e-mail address again (as keyed digests):
    once for submissions received before the index existed, and after HUB_INDEX_KEY changes."""
    from hub.privacy.subjects import reindex

    runtime = _runtime()
    read, written, unreadable = reindex(runtime, batch)
    runtime.close()
    typer.echo(f"{read} submission(s) read, {written} link(s) written, {unreadable} unreadable")
    if unreadable:
        _fail(f"{unreadable} payload(s) cannot be opened with any key of HUB_ENCRYPTION_KEYS; their links were left as they were")
