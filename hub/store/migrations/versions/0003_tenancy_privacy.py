"""tenancy and personal data: sealed payloads, tenant on attempts, customer links, API clients,
status timeline, webhooks, paused connectors, an append-only audit log

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""
from __future__ import annotations

import orjson
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
When = sa.DateTime(timezone=True)

_REFUSE_PG = """
CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % is not allowed', TG_OP;
END;
$$ LANGUAGE plpgsql;
"""


def _seal_existing_payloads() -> None:
    """Payloads stored before this revision are sealed with the current key."""
    from hub.privacy import sealing as crypto
    from hub.config.settings import Settings

    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, payload FROM submissions")).all()
    if not rows:
        return
    sealer = crypto.sealer(Settings())
    for row in rows:
        value = row.payload if not isinstance(row.payload, str) else orjson.loads(row.payload)
        bind.execute(sa.text("UPDATE submissions SET payload_sealed = :s WHERE id = :i"), {"s": sealer.seal(value), "i": row.id})


def upgrade() -> None:
    with op.batch_alter_table("submissions") as batch:
        batch.add_column(sa.Column("payload_sealed", sa.Text(), nullable=True))
        batch.add_column(sa.Column("purged_at", When, nullable=True))
        batch.add_column(sa.Column("erased_at", When, nullable=True))
    _seal_existing_payloads()
    with op.batch_alter_table("submissions") as batch:
        batch.drop_column("payload")
    with op.batch_alter_table("submissions") as batch:
        batch.alter_column("payload_sealed", new_column_name="payload", existing_type=sa.Text(), existing_nullable=True)

    with op.batch_alter_table("delivery_attempts") as batch:
        batch.add_column(sa.Column("tenant", sa.String(length=64), nullable=True))
    op.execute(
        "UPDATE delivery_attempts SET tenant = "
        "(SELECT deliveries.tenant FROM deliveries WHERE deliveries.id = delivery_attempts.delivery_id)"
    )
    with op.batch_alter_table("delivery_attempts") as batch:
        batch.alter_column("tenant", existing_type=sa.String(length=64), nullable=False)

    with op.batch_alter_table("connector_circuits") as batch:
        batch.add_column(sa.Column("paused_at", When, nullable=True))
        batch.add_column(sa.Column("paused_by", sa.String(length=255), nullable=True))

    op.create_table(
        "customer_links",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("submission_id", Id, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["submission_id"], ["submissions.id"], name=op.f("fk_customer_links_submission_id_submissions"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_links")),
        sa.UniqueConstraint("submission_id", "kind", "digest", name="uq_customer_links_submission_kind_digest"),
    )
    op.create_index("ix_customer_links_tenant_digest", "customer_links", ["tenant", "kind", "digest"])

    op.create_table(
        "api_clients",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("forms", Json, nullable=False),
        sa.Column("key_sha256", sa.String(length=64), nullable=False),
        sa.Column("key_prefix", sa.String(length=16), nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("expires_at", When, nullable=True),
        sa.Column("revoked_at", When, nullable=True),
        sa.Column("revoked_by", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_clients")),
        sa.UniqueConstraint("key_sha256", name=op.f("uq_api_clients_key_sha256")),
    )

    op.create_table(
        "status_events",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("submission_id", Id, nullable=False),
        sa.Column("delivery_id", Id, nullable=True),
        sa.Column("connector", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=64), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("occurred_at", When, nullable=False),
        sa.Column("recorded_at", When, nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("dedupe_key", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(["submission_id"], ["submissions.id"], name=op.f("fk_status_events_submission_id_submissions"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["delivery_id"], ["deliveries.id"], name=op.f("fk_status_events_delivery_id_deliveries"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_status_events")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_status_events_dedupe_key")),
    )
    op.create_index("ix_status_events_submission", "status_events", ["submission_id"])

    op.create_table(
        "webhooks",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("secrets", sa.Text(), nullable=False),
        sa.Column("events", Json, nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.Column("disabled_at", When, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhooks")),
    )
    op.create_index("ix_webhooks_client", "webhooks", ["client_id"])

    op.create_table(
        "webhook_deliveries",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("webhook_id", sa.String(length=32), nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("body", Json, nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_at", When, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", When, nullable=False),
        sa.Column("updated_at", When, nullable=False),
        sa.ForeignKeyConstraint(["webhook_id"], ["webhooks.id"], name=op.f("fk_webhook_deliveries_webhook_id_webhooks"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint("webhook_id", "message_id", name="uq_webhook_deliveries_webhook_message"),
    )
    op.create_index("ix_webhook_deliveries_due", "webhook_deliveries", ["state", "next_attempt_at"])

    if op.get_bind().dialect.name == "postgresql":
        op.execute(_REFUSE_PG)
        op.execute(
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
        )
        op.execute(
            "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()"
        )
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log "
                f"BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: {verb} is not allowed'); END"
            )


def downgrade() -> None:
    # sealed payloads cannot go back to plain JSON columns safely: restore a backup instead
    raise NotImplementedError("revision 0003 cannot be downgraded: payloads are sealed at rest")
