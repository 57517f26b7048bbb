"""alerts: what each tenant was told by e-mail about parked deliveries, open circuits and digests

Revision ID: 0006_alerts
Revises: 0006_client_key_rotation
Create Date: 2026-12-07
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_alerts"
down_revision = "0006_client_key_rotation"
branch_labels = None
depends_on = None

When = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "alert_state",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("connector", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("pending", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("pending_since", When),
        sa.Column("last_event_at", When),
        sa.Column("last_reason", sa.Text()),
        sa.Column("window_until", When),
        sa.Column("period", sa.String(16)),
        sa.Column("sent", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_sent_at", When),
        sa.Column("last_error", sa.Text()),
        sa.PrimaryKeyConstraint("tenant", "connector", "kind", name="pk_alert_state"),
    )


def downgrade() -> None:
    op.drop_table("alert_state")
