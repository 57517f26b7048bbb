"""The `hub clients` commands: front-end clients and their API keys, in the configuration files
(`new-key` prints a hash to paste) or in the database (`create`, `list`, `rotate`, `revoke`).
"""

from __future__ import annotations

import getpass
import os
import secrets as pysecrets
from typing import Annotated, Any, NoReturn

import typer

from hub.config.files import HubConfig, hash_api_key
from hub.config.settings import Settings, load_settings
from hub.errors import HubError

clients_app = typer.Typer(help="Front-end clients and their API keys.", no_args_is_help=True)


def _fail(message: str) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(1)


@clients_app.command("new-key")
def new_key() -> None:
    """Make a new API key for a front-end client and print the hash to put in its configuration."""
    key = pysecrets.token_urlsafe(32)
    typer.echo(f"API key (give it to the front end; it is not stored): {key}")
    typer.echo(f"api_key_sha256 (put this in the client's configuration): {hash_api_key(key)}")


def _client_store() -> tuple[Settings, HubConfig, Any]:
    """The settings, the configuration and the database engine, for the stored-client commands."""
    from hub.config.files import load_config
    from hub.store.db import make_engine

    try:
        settings = load_settings()
        config = load_config(settings.config_dir, os.environ, settings.standards_dir)
    except HubError as exc:
        _fail(str(exc))
    return settings, config, make_engine(settings.database_url)


def _actor(actor: str | None) -> str:
    return f"cli:{actor or getpass.getuser()}"


@clients_app.command("create")
def clients_create(
    tenant: Annotated[str, typer.Option(help="The tenant the front end works for")],
    client_id: Annotated[str, typer.Option("--id", help="The client's id: lower-case letters, digits and hyphens")],
    name: Annotated[str, typer.Option(help="What the front end is, for staff")] = "",
    forms: Annotated[str, typer.Option(help="Comma-separated form ids it may submit; * for every form its tenant offers")] = "*",
    expires_in_days: Annotated[int | None, typer.Option(help="The key stops working after this many days")] = None,
    actor: Annotated[str | None, typer.Option(help="Who is making it, for the audit log (default: your login name)")] = None,
) -> None:
    """Make a front-end client in the database with a new API key, printed once: only its hash is kept."""
    from hub.intake.forms import load_forms
    from hub.store import clients

    settings, config, engine = _client_store()
    new = clients.NewClient(client_id, tenant, name, tuple(f.strip() for f in forms.split(",") if f.strip()), expires_in_days)
    problems = clients.problems(new, config, load_forms(settings.schemas_dir, settings.standards_dir))
    if problems:
        _fail("\n".join(f"--{where.split('/')[0].replace('_', '-')}: {what}" for where, what in problems))
    try:
        stored, key = clients.create(engine, new, _actor(actor))
    except clients.ClientExists:
        _fail(f"--id: a client {client_id!r} already exists; choose another id")
    typer.echo(f"client {stored.id} ({stored.tenant}) created; forms: {', '.join(stored.forms)}; expires: {stored.expires_at.isoformat() if stored.expires_at else 'never'}")
    typer.echo(f"API key (shown this once; give it to the front end): {key}")


@clients_app.command("revoke")
def clients_revoke(
    client_id: Annotated[str, typer.Argument(help="The stored client's id")],
    actor: Annotated[str | None, typer.Option(help="Who is revoking it, for the audit log (default: your login name)")] = None,
) -> None:
    """Revoke a stored client's API key (API processes refuse it within HUB_CLIENT_CACHE_SECONDS)."""
    from hub.store import clients

    _, config, engine = _client_store()
    if client_id in config.clients:
        _fail(f"client {client_id!r} is defined in the configuration files; remove its key there")
    revoked = clients.revoke(engine, client_id, _actor(actor))
    if revoked is None:
        _fail(f"no stored client {client_id!r}")
    typer.echo(f"client {revoked.id} revoked at {revoked.revoked_at.isoformat() if revoked.revoked_at else '?'} by {revoked.revoked_by}")


@clients_app.command("rotate")
def clients_rotate(
    client_id: Annotated[str, typer.Argument(help="The stored client's id")],
    grace_hours: Annotated[int | None, typer.Option(min=0, max=720, help="Hours the old key keeps working (default HUB_CLIENT_KEY_GRACE_HOURS)")] = None,
    actor: Annotated[str | None, typer.Option(help="Who is rotating it, for the audit log (default: your login name)")] = None,
) -> None:
    """Give a stored client a new API key, printed once; the old key keeps working for the grace period."""
    from datetime import timedelta

    from hub.store import clients

    settings, config, engine = _client_store()
    if client_id in config.clients:
        _fail(f"client {client_id!r} is defined in the configuration files; change its key there")
    hours = settings.client_key_grace_hours if grace_hours is None else grace_hours
    try:
        done = clients.rotate(engine, client_id, _actor(actor), timedelta(hours=hours))
    except clients.ClientRevoked:
        _fail(f"client {client_id!r} was revoked; make a new client instead")
    if done is None:
        _fail(f"no stored client {client_id!r}")
    stored, key = done
    until = stored.previous_key_expires_at.isoformat() if stored.previous_key_expires_at else "?"
    typer.echo(f"client {stored.id} ({stored.tenant}) has a new key; the old one ({stored.previous_key_prefix}…) works until {until}")
    typer.echo(f"API key (shown this once; give it to the front end): {key}")


@clients_app.command("list")
def clients_list(tenant: Annotated[str | None, typer.Option(help="Only this tenant's clients")] = None) -> None:
    """List front-end clients, configured and stored: never their keys, only a stored key's first characters."""
    from hub.store import clients

    _, config, engine = _client_store()
    rows = [(c.id, c.tenant, "config", "-", "-", "configured") for c in config.clients.values() if tenant in (None, c.tenant)]
    rows += [
        (c.id, c.tenant, "database", c.key_prefix + "…", c.expires_at.date().isoformat() if c.expires_at else "never", c.state())
        for c in clients.listing(engine, tenant)
    ]
    typer.echo(f"{'id':<24}  {'tenant':<12}  {'source':<8}  {'key':<10}  {'expires':<10}  state")
    for row in sorted(rows, key=lambda r: (r[1], r[0])):
        typer.echo(f"{row[0]:<24}  {row[1]:<12}  {row[2]:<8}  {row[3]:<10}  {row[4]:<10}  {row[5]}")
    typer.echo(f"{len(rows)} clients")
