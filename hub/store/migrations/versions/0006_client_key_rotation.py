"""client key rotation: a stored client's previous key, valid until its grace period ends

Revision ID: 0006_client_key_rotation
Revises: 0006_corrections
Create Date: 2026-12-07
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_client_key_rotation"
down_revision = "0006_corrections"
branch_labels = None
depends_on = None

When = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("api_clients") as batch:
        batch.add_column(sa.Column("previous_key_sha256", sa.String(64), nullable=True))
        batch.add_column(sa.Column("previous_key_prefix", sa.String(16), nullable=True))
        batch.add_column(sa.Column("previous_key_expires_at", When, nullable=True))
        batch.add_column(sa.Column("rotated_at", When, nullable=True))
    op.create_index("ix_api_clients_previous_key_sha256", "api_clients", ["previous_key_sha256"])


def downgrade() -> None:
    op.drop_index("ix_api_clients_previous_key_sha256", table_name="api_clients")
    with op.batch_alter_table("api_clients") as batch:
        for column in ("rotated_at", "previous_key_expires_at", "previous_key_prefix", "previous_key_sha256"):
            batch.drop_column(column)
