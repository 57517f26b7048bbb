"""one customer record: the back-office references learned for each signed-in resident

Revision ID: 0004_residents
Revises: 0003
Create Date: 2026-12-07
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_residents"
down_revision = "0003"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "resident_references",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("connector", sa.String(64), nullable=False),
        sa.Column("submission_id", Id, nullable=True),
        sa.Column("learned_at", When, nullable=False),
        sa.ForeignKeyConstraint(
            ["submission_id"], ["submissions.id"], ondelete="SET NULL",
            name="fk_resident_references_submission_id_submissions",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_resident_references"),
        sa.UniqueConstraint("tenant", "subject", "kind", name="uq_resident_references_tenant_subject_kind"),
    )


def downgrade() -> None:
    op.drop_table("resident_references")
