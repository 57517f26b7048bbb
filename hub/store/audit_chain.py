"""Checks the audit log's hash chain (`hub audit verify`): walks every entry in id order and
names the first that was edited, deleted or inserted behind the hub's back.

What a chain cannot show on its own: entries cut off the end of the log, or a log rewritten
from some entry on with every hash recomputed (the hash is public, not keyed). Both change the
head hash, so an operator who records the head elsewhere and passes it back as `expect_head`
finds them; an entry appended at the end with a correct hash looks like any other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine, func, select

from hub.store.audit import GENESIS, entry_hash
from hub.store.tables import audit_log

BATCH = 5000


@dataclass(frozen=True)
class Broken:
    """The first broken link: `entry_id` is the entry where the walk found it (None when the
    recorded head is missing), `problem` says what is wrong in words staff can act on."""

    entry_id: int | None
    problem: str


@dataclass(frozen=True)
class Verdict:
    entries: int
    head_id: int | None
    head_hash: str  # GENESIS for an empty log
    broken: Broken | None = None
    # the entry whose hash is the expected head, and how many entries came after it
    anchor_id: int | None = None
    after_anchor: int = 0

    @property
    def intact(self) -> bool:
        return self.broken is None


def verify(engine: Engine, expect_head: str | None = None, progress: Callable[[int, int], None] | None = None) -> Verdict:
    """Walks the chain oldest first, in batches (each its own short transaction, so appends go
    on meanwhile; they only ever add higher ids). `progress(done, total)` is called per batch."""
    with engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(audit_log)).scalar_one()
    expect_head = expect_head.strip().lower() if expect_head else None
    expected_prev, before_prev = GENESIS, None  # the last entry's hash, and the one before it
    prev_id: int | None = None
    done, anchor_id, after_anchor = 0, None, 0

    def verdict(broken: Broken | None) -> Verdict:
        return Verdict(done, prev_id, expected_prev, broken, anchor_id, after_anchor)

    while True:
        query = select(audit_log).order_by(audit_log.c.id).limit(BATCH)
        if prev_id is not None:
            query = query.where(audit_log.c.id > prev_id)
        with engine.connect() as conn:
            rows = conn.execute(query).all()
        if not rows:
            break
        for row in rows:
            if entry_hash(row.id, row.at, row.actor, row.tenant, row.action, row.target, row.detail, row.prev_hash) != row.entry_hash:
                return verdict(Broken(row.id, "was edited: its contents no longer match its entry_hash"))
            if row.prev_hash != expected_prev:
                if prev_id is None:
                    problem = "is the first entry but does not start the chain: the entries before it were deleted"
                    return verdict(Broken(row.id, problem))
                if row.prev_hash == before_prev:
                    problem = f"was inserted: entry {row.id} after it links to the entry before it"
                    return verdict(Broken(prev_id, problem))
                problem = (
                    f"does not follow entry {prev_id}: its prev_hash is not that entry's hash, so entries between "
                    f"{prev_id} and {row.id} were deleted (or entry {prev_id} was rewritten along with its hash)"
                )
                return verdict(Broken(row.id, problem))
            before_prev, expected_prev, prev_id = expected_prev, row.entry_hash, row.id
            done += 1
            if anchor_id is not None:
                after_anchor += 1
            elif row.entry_hash == expect_head:
                anchor_id = row.id
        if progress:
            progress(done, max(total, done))
    if expect_head and anchor_id is None:
        last = f"entry {prev_id}" if prev_id is not None else "no entry (the log is empty)"
        problem = (
            f"the recorded head {expect_head} is no entry's hash (the log ends at {last}): entries were cut off "
            "the end of the log, or the log was rewritten with new hashes"
        )
        return verdict(Broken(None, problem))
    return verdict(None)
