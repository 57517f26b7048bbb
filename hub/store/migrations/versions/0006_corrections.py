"""corrections: staff's edits of a parked delivery's answers, which the worker sends instead

Revision ID: 0006_corrections
Revises: 0005_attachments
Create Date: 2026-12-07
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_corrections"
down_revision = "0005_attachments"
branch_labels = None
depends_on = None

When = sa.DateTime(timezone=True)
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "delivery_corrections",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("delivery_id", Id, nullable=False),
        sa.Column("submission_id", Id, nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text()),
        sa.Column("diff", sa.Text()),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_delivery_corrections"),
        sa.ForeignKeyConstraint(["delivery_id"], ["deliveries.id"], name="fk_delivery_corrections_delivery_id_deliveries", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["submission_id"], ["submissions.id"], name="fk_delivery_corrections_submission_id_submissions", ondelete="CASCADE"),
    )
    op.create_index("ix_delivery_corrections_delivery", "delivery_corrections", ["delivery_id", "id"])
    op.create_index("ix_delivery_corrections_submission", "delivery_corrections", ["submission_id"])


def downgrade() -> None:
    op.drop_index("ix_delivery_corrections_submission", table_name="delivery_corrections")
    op.drop_index("ix_delivery_corrections_delivery", table_name="delivery_corrections")
    op.drop_table("delivery_corrections")
