"""the audit log as a hash chain: prev_hash and entry_hash on every entry, filled in id order
for the entries already there (the append-only triggers step aside for that, in this
transaction only)

Revision ID: 0005_audit_chain
Revises: 0004_residents
Create Date: 2026-12-07
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_audit_chain"
down_revision = "0004_residents"
branch_labels = None
depends_on = None

_entries = sa.table(
    "audit_log",
    sa.column("id", sa.BigInteger()),
    sa.column("at", sa.DateTime(timezone=True)),
    sa.column("actor", sa.String()),
    sa.column("tenant", sa.String()),
    sa.column("action", sa.String()),
    sa.column("target", sa.String()),
    sa.column("detail", sa.JSON()),
    sa.column("prev_hash", sa.String()),
    sa.column("entry_hash", sa.String()),
)


def _drop_refusals(dialect: str) -> None:
    if dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")


def _create_refusals(dialect: str) -> None:
    # as revision 0003 made them (the function audit_log_append_only() is still there)
    if dialect == "postgresql":
        op.execute(
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
        )
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log "
                f"BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: {verb} is not allowed'); END"
            )


def _chain_existing() -> None:
    from hub.store.audit import GENESIS, entry_hash

    bind = op.get_bind()
    prev = GENESIS
    last_id = 0
    while True:  # in batches, oldest first, so a long log never sits in memory at once
        rows = bind.execute(sa.select(_entries).where(_entries.c.id > last_id).order_by(_entries.c.id).limit(5000)).all()
        if not rows:
            return
        for row in rows:
            digest = entry_hash(row.id, row.at, row.actor, row.tenant, row.action, row.target, row.detail, prev)
            bind.execute(_entries.update().where(_entries.c.id == row.id).values(prev_hash=prev, entry_hash=digest))
            prev = digest
        last_id = rows[-1].id


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(sa.Column("prev_hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("entry_hash", sa.String(length=64), nullable=True))
    _drop_refusals(dialect)
    _chain_existing()
    # on SQLite this copies the table, which drops its triggers: they are made again below
    with op.batch_alter_table("audit_log") as batch:
        batch.alter_column("prev_hash", existing_type=sa.String(length=64), nullable=False)
        batch.alter_column("entry_hash", existing_type=sa.String(length=64), nullable=False)
        batch.create_unique_constraint("uq_audit_log_prev_hash", ["prev_hash"])
    if dialect != "postgresql":
        _drop_refusals(dialect)
    _create_refusals(dialect)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_constraint("uq_audit_log_prev_hash", type_="unique")
        batch.drop_column("entry_hash")
        batch.drop_column("prev_hash")
    if dialect != "postgresql":
        _drop_refusals(dialect)
        _create_refusals(dialect)
