"""The `hub digest` command: each tenant's daily digest of deliveries, failures and parked ones,
sent by e-mail once per day whatever runs it (the worker's `digest` job sends it too)."""

from __future__ import annotations

import os
from datetime import date
from typing import Annotated, NoReturn

import typer

from hub.config.settings import load_settings
from hub.errors import HubError


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def digest(
    day: Annotated[str | None, typer.Option(help="The UK day to report, YYYY-MM-DD (default: yesterday)")] = None,
    tenant: Annotated[list[str] | None, typer.Option(help="Only this tenant (repeat for more)")] = None,
    print_only: Annotated[bool, typer.Option("--print", help="Print the digests instead of sending them")] = False,
) -> None:
    """Send yesterday's digest to every tenant with `alerts` that has not had it yet (docs/alerts.md)."""
    from hub.delivery.digest import Digest, yesterday
    from hub.runtime import Runtime

    try:
        wanted = date.fromisoformat(day) if day else yesterday()
    except ValueError:
        _fail(f"--day {day!r} is not a date; write it as YYYY-MM-DD")
    try:
        runtime = Runtime.build(load_settings(), os.environ)
    except HubError as exc:
        _fail(str(exc))
    try:
        unknown = sorted(set(tenant or ()) - set(runtime.config.tenants))
        if unknown:
            _fail(f"unknown tenant(s): {', '.join(unknown)} (known: {', '.join(sorted(runtime.config.tenants))})")
        if print_only:
            for _, subject, body in Digest(runtime).preview(wanted, tenant or None):
                typer.echo(f"Subject: {subject}\n\n{body}")
            return
        results = Digest(runtime).send(wanted, tenant or None)
        for sent in results:
            typer.echo(f"{sent.tenant}: {sent.day.isoformat()} {sent.outcome}")
        if not results:
            typer.echo("no tenant has alerts with a digest configured (tenants: alerts: in config/)")
        if any(s.outcome == "failed" for s in results):
            raise typer.Exit(1)
    finally:
        runtime.close()
