"""notifications: messages to residents through GOV.UK Notify, and residents' ratings

Revision ID: 0008_notifications
Revises: 0007_console_indexes
Create Date: 2026-12-07
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_notifications"
down_revision = "0007_console_indexes"
branch_labels = None
depends_on = None

When = sa.DateTime(timezone=True)
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("submission_id", Id, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(64)),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("channel", sa.String(8)),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_at", When, nullable=False),
        sa.Column("last_error", sa.Text()),
        sa.Column("notify_id", sa.String(64)),
        sa.Column("created_at", When, nullable=False),
        sa.Column("updated_at", When, nullable=False),
        sa.ForeignKeyConstraint(["submission_id"], ["submissions.id"], ondelete="CASCADE",
                                name="fk_notifications_submission_id_submissions"),
        sa.PrimaryKeyConstraint("id", name="pk_notifications"),
        sa.UniqueConstraint("submission_id", "kind", name="uq_notifications_submission_kind"),
    )
    op.create_index("ix_notifications_due", "notifications", ["state", "next_attempt_at"])
    op.create_table(
        "ratings",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("submission_id", Id, nullable=False),
        sa.Column("form_id", sa.String(128), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("comment", sa.Text()),
        sa.Column("created_at", When, nullable=False),
        sa.ForeignKeyConstraint(["submission_id"], ["submissions.id"], ondelete="CASCADE", name="fk_ratings_submission_id_submissions"),
        sa.PrimaryKeyConstraint("id", name="pk_ratings"),
        sa.UniqueConstraint("submission_id", name="uq_ratings_submission_id"),
    )
    op.create_index("ix_ratings_tenant_form", "ratings", ["tenant", "form_id"])


def downgrade() -> None:
    op.drop_index("ix_ratings_tenant_form", table_name="ratings")
    op.drop_table("ratings")
    op.drop_index("ix_notifications_due", table_name="notifications")
    op.drop_table("notifications")
