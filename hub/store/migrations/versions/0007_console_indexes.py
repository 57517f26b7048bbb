"""console indexes: what the console's pages need at 1,000,000 submissions (bench/console.py)

Revision ID: 0007_console_indexes
Revises: 0006_payments
Create Date: 2026-12-07
"""
from __future__ import annotations

from alembic import op

revision = "0007_console_indexes"
down_revision = "0006_payments"
branch_labels = None
depends_on = None

INDEXES = (
    # the dashboard's waiting deliveries and the search's "state" filter: a few per cent of rows
    ("ix_deliveries_state_tenant", "deliveries", ("state", "tenant")),
    # the dashboard's window of deliveries (made with their submission, so created_at is its received_at)
    ("ix_deliveries_tenant_created", "deliveries", ("tenant", "created_at")),
    # search by a back office's reference
    ("ix_deliveries_external_reference", "deliveries", ("external_reference",)),
    # search by the portal's reference (its Idempotency-Key), without knowing the client
    ("ix_submissions_idempotency_key", "submissions", ("idempotency_key",)),
    # search by form, newest first
    ("ix_submissions_tenant_form_received", "submissions", ("tenant", "form_id", "received_at")),
)


# the dashboard's figures over a window: the form and the id in the index, so PostgreSQL counts and joins from
# the index alone instead of reading each submission's row (a kilobyte of sealed answers each)
COVERING = ("ix_submissions_tenant_received_form", "submissions", ("tenant", "received_at"), ("form_id", "id"))


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, list(columns))
    name, table, columns, included = COVERING
    op.create_index(name, table, list(columns), postgresql_include=list(included))


def downgrade() -> None:
    op.drop_index(COVERING[0], table_name=COVERING[1])
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
