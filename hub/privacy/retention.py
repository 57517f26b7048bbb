"""Retention: a form's payloads are purged a set number of days after every delivery succeeded;
references, metadata, deliveries, attempts, the timeline's statuses and the audit trail stay.

Rules come from the `retention` section; `hub retention run` and a worker's schedule apply them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from hub.attachments.storage import BlobStore
from hub.config.files import HubConfig, RetentionRule
from hub.logs import get_logger
from hub.runtime import Runtime
from hub.store import attachments as attachment_rows
from hub.store import audit, personal_data

log = get_logger("hub.privacy.retention")


def rule_for(rules: Sequence[RetentionRule], tenant: str, form_id: str) -> RetentionRule | None:
    """The most specific rule: this form for this tenant, then this form, then this tenant, then
    "*". Among equally specific rules the first written wins. None: keep the payloads."""

    def rank(rule: RetentionRule) -> int | None:
        named = tenant in rule.tenants
        if rule.form == form_id:
            return 0 if named else 1 if "*" in rule.tenants else None
        if rule.form == "*":
            return 2 if named else 3 if "*" in rule.tenants else None
        return None

    ranked = [(r, index) for index, rule in enumerate(rules) if (r := rank(rule)) is not None]
    return rules[min(ranked)[1]] if ranked else None


def problems(rules: Sequence[RetentionRule], form_ids: Sequence[str]) -> list[str]:
    """Rules that can never apply (a misspelt form keeps its payloads for ever), for `hub config check`."""
    return [
        f"retention rule for form {rule.form!r} names no form the hub has (known: {', '.join(sorted(form_ids))})"
        for rule in rules
        if rule.form != "*" and rule.form not in form_ids
    ]


@dataclass(frozen=True)
class Purged:
    tenant: str
    form_id: str
    days: int
    count: int


def forget_attachments(engine: Engine, blobs: BlobStore) -> int:
    """Deletes the attachments of submissions whose payloads are gone (purged or erased): their
    rows in one transaction, then each blob no other row names. Returns how many blobs went."""
    with engine.begin() as conn:
        orphans = attachment_rows.forget_finished(conn)
    for sha256 in orphans:
        blobs.delete(sha256)
    if orphans:
        log.info("attachments_deleted", blobs=len(orphans))
    return len(orphans)


@dataclass(frozen=True)
class Expired:
    """Uploads no submission named, deleted for being older than the unlinked maximum age."""

    uploads: int
    blobs: int


def delete_blobs(engine: Engine, blobs: BlobStore, shas: Sequence[str]) -> int:
    """Deletes each blob no row names (checked again: the same bytes may have been uploaded since)."""
    gone = 0
    for sha256 in shas:
        with engine.connect() as conn:
            if attachment_rows.blob_named(conn, sha256):
                continue
        blobs.delete(sha256)
        gone += 1
    return gone


def expire_unlinked(engine: Engine, blobs: BlobStore | None, now: datetime, max_age: timedelta, dry_run: bool = False) -> Expired:
    """Deletes every upload that no submission names and that is older than `max_age`
    (HUB_ATTACHMENT_UNLINKED_MAX_AGE_HOURS): its row, then its blob unless another row names the
    same bytes. A linked upload is never touched; a dry run only counts."""
    with engine.begin() as conn:
        count, shas = attachment_rows.forget_unlinked(conn, created_before=now - max_age, dry_run=dry_run or blobs is None)
    gone = delete_blobs(engine, blobs, shas) if blobs is not None and not dry_run else 0
    if count and not dry_run:
        log.info("attachments_unlinked_deleted", uploads=count, blobs=gone, max_age_hours=max_age.total_seconds() / 3600)
    return Expired(count, gone)


def run(engine: Engine, config: HubConfig, now: datetime, actor: str, dry_run: bool = False,
        blobs: BlobStore | None = None) -> list[Purged]:
    """Purges every payload that is due (a dry run only counts them); writes one audit entry per
    tenant that had payloads purged. With `blobs`, the purged submissions' attachments go too."""
    found: list[Purged] = []
    for tenant, form_id in personal_data.unpurged_forms(engine):
        rule = rule_for(config.retention, tenant, form_id)
        if rule is None:
            continue
        count = personal_data.purge(engine, tenant, form_id, now - timedelta(days=rule.days), now, dry_run)
        found.append(Purged(tenant, form_id, rule.days, count))
        if count and not dry_run:
            log.info("retention_purged", tenant=tenant, form=form_id, days=rule.days, count=count)
    if not dry_run:
        _audit(engine, found, now, actor)
        if blobs is not None:
            forget_attachments(engine, blobs)
    return found


def _audit(engine: Engine, found: list[Purged], now: datetime, actor: str) -> None:
    by_tenant: dict[str, list[Purged]] = {}
    for item in found:
        if item.count:
            by_tenant.setdefault(item.tenant, []).append(item)
    with engine.begin() as conn:
        for tenant, items in by_tenant.items():
            detail = {
                "purged": sum(i.count for i in items),
                "forms": {i.form_id: {"purged": i.count, "days": i.days} for i in items},
            }
            audit.record(conn, actor, tenant, "retention.purge", f"tenant:{tenant}", detail, at=now)


def scheduled(runtime: Runtime) -> list[Purged]:
    """One scheduled run, as `hub worker` does every HUB_RETENTION_INTERVAL_SECONDS: payloads due,
    the attachments of purged submissions, and uploads left unlinked too long."""
    now = datetime.now(UTC)
    found = run(runtime.engine, runtime.config, now, "schedule:retention", blobs=runtime.attachment_store)
    expire_unlinked(runtime.engine, runtime.attachment_store, now, timedelta(hours=runtime.settings.attachment_unlinked_max_age_hours))
    return found

