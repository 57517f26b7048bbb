"""attachment location: a photo's GPS position, sealed, when its form field keeps it

Revision ID: 0010_attachment_location
Revises: 0009_attachment_links
Create Date: 2026-12-07
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_attachment_location"
down_revision = "0009_attachment_links"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a Fernet token of {"lat", "long"} (hub.privacy.sealing), never the clear numbers
    with op.batch_alter_table("attachments") as batch:
        batch.add_column(sa.Column("location", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("attachments") as batch:
        batch.drop_column("location")
