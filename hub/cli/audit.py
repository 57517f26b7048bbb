"""The `hub audit` commands: check that nobody edited, deleted or slipped in an audit entry
with SQL (`verify`), and print the head hash to record somewhere the database cannot reach.
"""

from __future__ import annotations

from typing import Annotated, NoReturn

import typer

from hub.config.settings import load_settings
from hub.errors import HubError

audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)

PROGRESS_EVERY = 10_000


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(code)


@audit_app.command("verify")
def audit_verify(
    expect_head: Annotated[str | None, typer.Option(
        help="A head hash printed by an earlier verify: fails unless it is still in the chain "
             "(finds entries cut off the end, or a log rewritten with new hashes)",
    )] = None,
) -> None:
    """Walk the audit log's hash chain oldest first; exit 1 naming the first entry edited,
    deleted or inserted, else print the count and the head hash to record elsewhere."""
    from sqlalchemy.exc import DBAPIError

    from hub.store.audit_chain import verify
    from hub.store.db import make_engine

    try:
        settings = load_settings()
    except HubError as exc:
        _fail(str(exc), 2)
    shown = [0]

    def progress(done: int, total: int) -> None:
        if done - shown[0] >= PROGRESS_EVERY:
            shown[0] = done
            typer.echo(f"verified {done:,} of {total:,} entries", err=True)

    engine = make_engine(settings.database_url)
    try:
        verdict = verify(engine, expect_head, progress)
    except DBAPIError as exc:
        _fail(f"cannot read the audit log ({type(exc.orig).__name__}); has `hub migrate` run? {str(exc.orig).splitlines()[0]}", 2)
    finally:
        engine.dispose()
    if verdict.broken is not None:
        where = f"entry {verdict.broken.entry_id} " if verdict.broken.entry_id is not None else ""
        _fail(f"audit chain broken after {verdict.entries:,} good entries: {where}{verdict.broken.problem}")
    typer.echo(f"{verdict.entries} entries, chain intact")
    if verdict.head_id is None:
        typer.echo("head: none yet (the log is empty)")
    else:
        typer.echo(f"head: entry {verdict.head_id} {verdict.head_hash}")
    if verdict.anchor_id is not None:
        typer.echo(f"the expected head is entry {verdict.anchor_id}; {verdict.after_anchor} entries were added after it")
    typer.echo("record the head hash outside the database and pass it as --expect-head next time", err=True)
