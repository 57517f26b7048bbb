"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-23
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("submissions",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
    sa.Column("reference", sa.String(length=32), nullable=False),
    sa.Column("tenant", sa.String(length=64), nullable=False),
    sa.Column("client_id", sa.String(length=64), nullable=False),
    sa.Column("form_id", sa.String(length=128), nullable=False),
    sa.Column("form_version", sa.Integer(), nullable=False),
    sa.Column("payload", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("idempotency_key", sa.String(length=255), nullable=True),
    sa.Column("body_sha256", sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_submissions")),
    sa.UniqueConstraint("client_id", "idempotency_key", name="uq_submissions_client_idempotency"),
    sa.UniqueConstraint("reference", name=op.f("uq_submissions_reference"))
    )
    op.create_index("ix_submissions_tenant_received", "submissions", ["tenant", "received_at"], unique=False)

    op.create_table("deliveries",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
    sa.Column("submission_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("tenant", sa.String(length=64), nullable=False),
    sa.Column("connector", sa.String(length=64), nullable=False),
    sa.Column("state", sa.String(length=16), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.Column("external_reference", sa.String(length=255), nullable=True),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(["submission_id"], ["submissions.id"], name=op.f("fk_deliveries_submission_id_submissions"), ondelete="CASCADE"),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
    sa.UniqueConstraint("submission_id", "connector", name="uq_deliveries_submission_connector")
    )
    op.create_index("ix_deliveries_connector_state", "deliveries", ["connector", "state"], unique=False)

    op.create_table("delivery_attempts",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
    sa.Column("delivery_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("number", sa.Integer(), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("outcome", sa.String(length=16), nullable=False),
    sa.Column("error", sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(["delivery_id"], ["deliveries.id"], name=op.f("fk_delivery_attempts_delivery_id_deliveries"), ondelete="CASCADE"),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_attempts"))
    )
    op.create_index("ix_delivery_attempts_delivery", "delivery_attempts", ["delivery_id"], unique=False)

    op.create_table("outbox",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
    sa.Column("delivery_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("connector", sa.String(length=64), nullable=False),
    sa.Column("available_at", sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(["delivery_id"], ["deliveries.id"], name=op.f("fk_outbox_delivery_id_deliveries"), ondelete="CASCADE"),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox"))
    )
    op.create_index("ix_outbox_available", "outbox", ["available_at"], unique=False)



def downgrade() -> None:
    op.drop_index("ix_outbox_available", table_name="outbox")

    op.drop_table("outbox")
    op.drop_index("ix_delivery_attempts_delivery", table_name="delivery_attempts")

    op.drop_table("delivery_attempts")
    op.drop_index("ix_deliveries_connector_state", table_name="deliveries")

    op.drop_table("deliveries")
    op.drop_index("ix_submissions_tenant_received", table_name="submissions")

    op.drop_table("submissions")
