"""payments: the fee a submission waits for before its deliveries are sent

Revision ID: 0006_payments
Revises: 0006_alerts
Create Date: 2026-12-07
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_payments"
down_revision = "0006_alerts"
branch_labels = None
depends_on = None

When = sa.DateTime(timezone=True)
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "payments",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("submission_id", Id, nullable=False),
        sa.Column("payment_id", sa.String(64)),
        sa.Column("return_token", sa.String(64), nullable=False),
        sa.Column("amount_pence", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("next_url", sa.Text()),
        sa.Column("last_error", sa.Text()),
        sa.Column("created_at", When, nullable=False),
        sa.Column("updated_at", When, nullable=False),
        sa.Column("returned_at", When),
        sa.Column("finished_at", When),
        sa.ForeignKeyConstraint(["submission_id"], ["submissions.id"], name="fk_payments_submission_id_submissions", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_payments"),
        sa.UniqueConstraint("submission_id", name="uq_payments_submission_id"),
        sa.UniqueConstraint("payment_id", name="uq_payments_payment_id"),
        sa.UniqueConstraint("return_token", name="uq_payments_return_token"),
    )
    op.create_index("ix_payments_state", "payments", ["state"])


def downgrade() -> None:
    op.drop_index("ix_payments_state", table_name="payments")
    op.drop_table("payments")
