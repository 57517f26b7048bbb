"""`hub payments reconcile`: settle the payments whose resident never came back through the
return URL (a closed browser, a lost redirect), by asking GOV.UK Pay how each one ended.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Annotated, NoReturn

import typer

from hub.config.settings import load_settings
from hub.errors import HubError

payments_app = typer.Typer(help="Payment before delivery (docs/payments.md).", no_args_is_help=True)


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(code)


@payments_app.command("reconcile")
def payments_reconcile(
    older_than: Annotated[float, typer.Option(help="only payments started at least this many minutes ago")] = 0.0,
    tenant: Annotated[str | None, typer.Option(help="only this council's payments")] = None,
) -> None:
    """Ask GOV.UK Pay about every unfinished payment whose return was never seen, settle those
    that finished (deliveries released, or the submission cancelled) and print a line for each."""
    from hub.payments.service import Payments
    from hub.runtime import Runtime

    try:
        runtime = Runtime.build(load_settings(), os.environ)
    except HubError as exc:
        _fail(str(exc), 2)
    try:
        settled = Payments.of(runtime).reconcile(timedelta(minutes=older_than), tenant)
    finally:
        runtime.close()
    for row, outcome in settled:
        typer.echo(f"{row.reference}  {row.payment_id or '-'}  {outcome}")
    finished = sum(1 for _, outcome in settled if outcome not in ("pending", "unavailable"))
    typer.echo(f"{len(settled)} payment(s) without a return, {finished} settled")
    if any(outcome == "unavailable" for _, outcome in settled):
        _fail("GOV.UK Pay did not answer for some payments: run again later", 1)
