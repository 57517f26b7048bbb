"""attachment links: which submission names which uploaded attachment, and in which field

Revision ID: 0009_attachment_links
Revises: 0008_notifications
Create Date: 2026-12-07
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_attachment_links"
down_revision = "0008_notifications"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "submission_attachments",
        sa.Column("submission_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("attachment_id", sa.String(40), nullable=False),
        sa.Column("field", sa.String(200), nullable=False),
        sa.ForeignKeyConstraint(["submission_id"], ["submissions.id"], name="fk_submission_attachments_submission_id_submissions",
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["attachment_id"], ["attachments.id"], name="fk_submission_attachments_attachment_id_attachments",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("submission_id", "attachment_id", name="pk_submission_attachments"),
    )
    op.create_index("ix_submission_attachments_attachment_id", "submission_attachments", ["attachment_id"])
    op.create_index("ix_attachments_scan", "attachments", ["scan"])


def downgrade() -> None:
    op.drop_index("ix_attachments_scan", table_name="attachments")
    op.drop_index("ix_submission_attachments_attachment_id", table_name="submission_attachments")
    op.drop_table("submission_attachments")
