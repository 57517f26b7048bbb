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
    # the form's answers, sealed with Fernet (hub/privacy/sealing.py); NULL once purged by retention
    Column("payload", Text),
    Column("received_at", UTCDateTime, nullable=False),
    # retention purged the payload (the reference and metadata stay)
    Column("purged_at", UTCDateTime),
    # the resident's personal data was erased on request (`hub subjects erase`)
    Column("erased_at", UTCDateTime),
    Column("idempotency_key", String(255)),
    Column("body_sha256", String(64), nullable=False),
    UniqueConstraint("client_id", "idempotency_key", name="uq_submissions_client_idempotency"),
    Index("ix_submissions_tenant_received", "tenant", "received_at"),
    # the console's search (0007_console_indexes): by the portal's reference, by form newest first
    Index("ix_submissions_idempotency_key", "idempotency_key"),
    Index("ix_submissions_tenant_form_received", "tenant", "form_id", "received_at"),
    # the dashboard's counts per form: answered from the index alone on PostgreSQL (INCLUDE)
    Index("ix_submissions_tenant_received_form", "tenant", "received_at", postgresql_include=["form_id", "id"]),
)

# the states of a delivery (and of a webhook's delivery) still to be sent; the others are final
OPEN_STATES = ("pending", "retrying")

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
    # the console (0007_console_indexes): waiting or parked deliveries per tenant, a back office's reference
    Index("ix_deliveries_state_tenant", "state", "tenant"),
    Index("ix_deliveries_external_reference", "external_reference"),
    Index("ix_deliveries_tenant_created", "tenant", "created_at"),
)

attempts = Table(
    "delivery_attempts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("delivery_id", Id, ForeignKey("deliveries.id", ondelete="CASCADE"), nullable=False),
    Column("tenant", String(64), nullable=False),
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
    # an operator paused the connector: its deliveries wait, uncounted, until it is resumed
    Column("paused_at", UTCDateTime),
    Column("paused_by", String(255)),
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
    # the hash chain (hub/store/audit.py, checked by `hub audit verify`): the previous entry's
    # entry_hash (64 zeros for the first), and the SHA-256 of this entry's canonical form
    Column("prev_hash", String(64), nullable=False),
    Column("entry_hash", String(64), nullable=False),
    Index("ix_audit_log_at", "at"),
    # one successor per entry: an append that skipped the lock fails instead of forking the chain
    UniqueConstraint("prev_hash", name="uq_audit_log_prev_hash"),
)
# audit_log is append-only: migration 0003 adds triggers that refuse UPDATE and DELETE
# (0005_audit_chain re-creates them after filling the chain for entries already there)

customer_links = Table(
    "customer_links",
    metadata,
    # which submissions belong to one resident, found without decrypting every payload:
    # `digest` is an HMAC of the normalised identifier (e-mail address) under HUB_INDEX_KEY
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant", String(64), nullable=False),
    Column("submission_id", Id, ForeignKey("submissions.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("digest", String(64), nullable=False),
    UniqueConstraint("submission_id", "kind", "digest", name="uq_customer_links_submission_kind_digest"),
    Index("ix_customer_links_tenant_digest", "tenant", "kind", "digest"),
)

api_clients = Table(
    "api_clients",
    metadata,
    # front-end clients made by `hub clients create` or the admin API (config clients stay in YAML)
    Column("id", String(64), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("name", String(255), nullable=False),
    Column("forms", Json, nullable=False),
    Column("key_sha256", String(64), nullable=False, unique=True),
    # the key's first characters, so staff can tell keys apart without seeing them
    Column("key_prefix", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(255), nullable=False),
    Column("expires_at", UTCDateTime),
    Column("revoked_at", UTCDateTime),
    Column("revoked_by", String(255)),
    # after a rotation: the key it replaced, which still works until previous_key_expires_at
    Column("previous_key_sha256", String(64)),
    Column("previous_key_prefix", String(16)),
    Column("previous_key_expires_at", UTCDateTime),
    Column("rotated_at", UTCDateTime),
    Index("ix_api_clients_previous_key_sha256", "previous_key_sha256"),
)

status_events = Table(
    "status_events",
    metadata,
    # a submission's timeline: what each back office said about it, pushed or polled
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant", String(64), nullable=False),
    Column("submission_id", Id, ForeignKey("submissions.id", ondelete="CASCADE"), nullable=False),
    Column("delivery_id", Id, ForeignKey("deliveries.id", ondelete="CASCADE")),
    Column("connector", String(64)),
    Column("status", String(64), nullable=False),
    Column("message", Text),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("recorded_at", UTCDateTime, nullable=False),
    # push | poll | hub
    Column("source", String(16), nullable=False),
    # the same update pushed or polled twice is recorded once
    Column("dedupe_key", String(128), nullable=False, unique=True),
    Index("ix_status_events_submission", "submission_id"),
)

webhooks = Table(
    "webhooks",
    metadata,
    # where a front-end client wants status events sent, signed as Standard Webhooks says
    Column("id", String(32), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("url", Text, nullable=False),
    # Fernet-sealed JSON list of signing secrets, newest first (two during a rotation)
    Column("secrets", Text, nullable=False),
    Column("events", Json, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("disabled_at", UTCDateTime),
    Index("ix_webhooks_client", "client_id"),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant", String(64), nullable=False),
    Column("webhook_id", String(32), ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False),
    # the Standard Webhooks message id (webhook-id header), the same on every retry
    Column("message_id", String(64), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("body", Json, nullable=False),
    # pending -> delivered, or pending -> ... -> failed
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0, server_default="0"),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("last_error", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("webhook_id", "message_id", name="uq_webhook_deliveries_webhook_message"),
    Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
)

resident_references = Table(
    "resident_references",
    metadata,
    # one signed-in resident's references in the back offices (CRM contact id, council tax account,
    # UPRN, planning applicant id), learned from what the back offices accepted or answered.
    # `subject` is the keyed digest of the portal's `sub` (as in customer_links, kind "sub");
    # `value` is sealed like payloads, since an account number is personal data
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant", String(64), nullable=False),
    Column("subject", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("value", Text, nullable=False),
    Column("connector", String(64), nullable=False),
    Column("submission_id", Id, ForeignKey("submissions.id", ondelete="SET NULL")),
    Column("learned_at", UTCDateTime, nullable=False),
    UniqueConstraint("tenant", "subject", "kind", name="uq_resident_references_tenant_subject_kind"),
)


attachments = Table(
    "attachments",
    metadata,
    # one file a front end uploaded (POST /v1/attachments), before any submission names it.
    # `id` is the unguessable id the client was given; `sha256` the key of the blob in the
    # attachment store (content-addressed, encrypted); no file name is kept (it may be personal)
    Column("id", String(40), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("media_type", String(100), nullable=False),
    Column("size", BigInteger, nullable=False),
    # clean | unscanned | quarantined (infected on upload: not kept; found infected by a rescan:
    # quarantined, its blob deleted; docs/attachments.md)
    Column("scan", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    # the photo's GPS position {"lat", "long"}, sealed like payloads, only when its form field sets
    # `keep_location` (migration 0010); NULL otherwise, and once retention or an erasure removed it
    Column("location", Text),
    Index("ix_attachments_sha256", "sha256"),
    Index("ix_attachments_scan", "scan"),
)


submission_attachments = Table(
    "submission_attachments",
    metadata,
    # which submission names which attachment, and in which x-attachment field (migration 0006),
    # written in intake's transaction with the submission
    Column("submission_id", Id, ForeignKey("submissions.id", ondelete="CASCADE"), primary_key=True),
    Column("attachment_id", String(40), ForeignKey("attachments.id", ondelete="CASCADE"), primary_key=True),
    Column("field", String(200), nullable=False),
    Index("ix_submission_attachments_attachment_id", "attachment_id"),
)

corrections = Table(
    "delivery_corrections",
    metadata,
    # staff's edit of a parked delivery's answers (edit then replay, docs/console.md): the worker
    # sends the newest one for the delivery instead of the submission's payload, which stays as it came.
    # `payload` and `diff` are sealed like payloads; both NULL once retention or an erasure removed them
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("delivery_id", Id, ForeignKey("deliveries.id", ondelete="CASCADE"), nullable=False),
    Column("submission_id", Id, ForeignKey("submissions.id", ondelete="CASCADE"), nullable=False),
    Column("tenant", String(64), nullable=False),
    Column("payload", Text),
    Column("diff", Text),
    Column("reason", Text, nullable=False),
    Column("actor", String(255), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_delivery_corrections_delivery", "delivery_id", "id"),
    Index("ix_delivery_corrections_submission", "submission_id"),
)

alert_state = Table(
    "alert_state",
    metadata,
    # e-mail alerts to a tenant's ICT staff (hub/delivery/alerts.py), one row per tenant, connector and
    # kind (parked | circuit | digest, the digest with connector "*"), shared by every worker process:
    # events not yet mailed are counted in `pending`; a mail claims them with one guarded UPDATE
    Column("tenant", String(64), primary_key=True),
    Column("connector", String(64), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("pending", Integer, nullable=False, default=0, server_default="0"),
    Column("pending_since", UTCDateTime),
    Column("last_event_at", UTCDateTime),
    Column("last_reason", Text),
    # a mail was sent; further events wait until then and go out together as one summary
    Column("window_until", UTCDateTime),
    # the digest: the day (YYYY-MM-DD, Europe/London) last sent
    Column("period", String(16)),
    Column("sent", Integer, nullable=False, default=0, server_default="0"),
    Column("last_sent_at", UTCDateTime),
    Column("last_error", Text),
)


payments = Table(
    "payments",
    metadata,
    # a fee a submission waits for (docs/payments.md): its deliveries stay `held` until `state` is
    # success, and are cancelled when it failed, was cancelled or expired. `payment_id` is GOV.UK
    # Pay's id (NULL until the payment was created: the service may have been down); `return_token`
    # is the unguessable part of the return URL the resident comes back to
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant", String(64), nullable=False),
    Column("submission_id", Id, ForeignKey("submissions.id", ondelete="CASCADE"), nullable=False, unique=True),
    Column("payment_id", String(64), unique=True),
    Column("return_token", String(64), nullable=False, unique=True),
    Column("amount_pence", Integer, nullable=False),
    # creating | created | started | submitted | capturable | success | failed | cancelled | error
    Column("state", String(16), nullable=False),
    Column("next_url", Text),
    Column("last_error", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # when the resident came back through the return URL; NULL: reconcile finds these
    Column("returned_at", UTCDateTime),
    Column("finished_at", UTCDateTime),
    Index("ix_payments_state", "state"),
)

notifications = Table(
    "notifications",
    metadata,
    # a message to the resident through GOV.UK Notify (hub/notifications/): one per submission and
    # kind (acknowledgement, closed). No address is kept: the sender reads it from the sealed
    # payload when it sends, so erasing the payload erases it here too
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant", String(64), nullable=False),
    Column("submission_id", Id, ForeignKey("submissions.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(16), nullable=False),
    # the final status that closed the case (kind closed)
    Column("status", String(64)),
    # pending -> sent, or pending -> retrying -> ... -> failed
    Column("state", String(16), nullable=False),
    Column("channel", String(8)),
    Column("attempts", Integer, nullable=False, default=0, server_default="0"),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("last_error", Text),
    # Notify's id for the message it accepted
    Column("notify_id", String(64)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("submission_id", "kind", name="uq_notifications_submission_kind"),
    Index("ix_notifications_due", "state", "next_attempt_at"),
)

ratings = Table(
    "ratings",
    metadata,
    # a resident's rating of a completed request (POST /v1/submissions/{reference}/rating): one per
    # submission. The comment may name the resident, so it is sealed like payloads and erased with them
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant", String(64), nullable=False),
    Column("submission_id", Id, ForeignKey("submissions.id", ondelete="CASCADE"), nullable=False, unique=True),
    Column("form_id", String(128), nullable=False),
    Column("score", Integer, nullable=False),
    Column("comment", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_ratings_tenant_form", "tenant", "form_id"),
)
