"""The hub's tables: submissions, their deliveries, every attempt, and the outbox.

SQLAlchemy Core tables, so the hot intake path inserts without ORM overhead.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite has no BIGINT autoincrement; INTEGER PRIMARY KEY is its 64-bit rowid
Id = BigInteger().with_variant(Integer(), "sqlite")
Json = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every database (SQLite returns naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        if value is not None and dialect.name == "sqlite":
            return value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


submissions = Table(
    "submissions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("reference", String(32), nullable=False, unique=True),
    Column("tenant", String(64), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("form_id", String(128), nullable=False),
    Column("form_version", Integer, nullable=False),
    Column("payload", Json, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("idempotency_key", String(255)),
    Column("body_sha256", String(64), nullable=False),
    UniqueConstraint("client_id", "idempotency_key", name="uq_submissions_client_idempotency"),
    Index("ix_submissions_tenant_received", "tenant", "received_at"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("submission_id", Id, ForeignKey("submissions.id", ondelete="CASCADE"), nullable=False),
    Column("tenant", String(64), nullable=False),
    Column("connector", String(64), nullable=False),
    # pending -> delivered, or pending -> retrying -> ... -> parked
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    # attempts made before the last replay: a replayed delivery gets its full retry budget again
    Column("attempts_base", Integer, nullable=False, default=0, server_default="0"),
    Column("last_error", Text),
    Column("external_reference", String(255)),
    Column("next_attempt_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("submission_id", "connector", name="uq_deliveries_submission_connector"),
    Index("ix_deliveries_connector_state", "connector", "state"),
)

attempts = Table(
    "delivery_attempts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("delivery_id", Id, ForeignKey("deliveries.id", ondelete="CASCADE"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=False),
    # delivered | transient | permanent
    Column("outcome", String(16), nullable=False),
    Column("error", Text),
    Index("ix_delivery_attempts_delivery", "delivery_id"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("delivery_id", Id, ForeignKey("deliveries.id", ondelete="CASCADE"), nullable=False),
    Column("connector", String(64), nullable=False),
    # a retry waits here until its backoff is over; the relay publishes rows that are due
    Column("available_at", UTCDateTime, nullable=False),
    Index("ix_outbox_available", "available_at"),
)

circuits = Table(
    "connector_circuits",
    metadata,
    Column("connector", String(64), primary_key=True),
    # closed | open | half_open
    Column("state", String(16), nullable=False),
    Column("failures", Integer, nullable=False),
    Column("opened_until", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(255), nullable=False),
    Column("tenant", String(64)),
    Column("action", String(64), nullable=False),
    Column("target", String(255), nullable=False),
    Column("detail", Json),
    Index("ix_audit_log_at", "at"),
)
