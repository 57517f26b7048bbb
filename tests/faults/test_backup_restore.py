"""Backup and restore drill against the hub's real processes, RabbitMQ and PostgreSQL: a `pg_dump`
taken under load, more deliveries after it, then the hub restarted on a fresh database restored
from the dump by the runbook (docs/deploy.md, "Backup and restore").

The CRM simulator dedupes on `client_unique_identifier`, which the mapping fills with the hub's
idempotency key `<reference>/crm`: a case is an *effect*; a request whose key it already holds is
answered with the original case and counted as a *duplicate* (a request with no new effect).
"""

from __future__ import annotations

import json
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.config.settings import Settings
from simulators.crm import FailurePlan
from tests.faults.counting import Tally
from tests.support.backup import database_name, dump, query, restore, runbook_sql, stop_hub
from tests.support.processes import HubProcesses
from tests.support.servers import PostgresServer, RabbitMQServer

SAMPLE = json.loads((Settings().schemas_dir / "missed-bin-collection" / "samples" / "general-uprn.json").read_text())
OPEN_DELIVERIES = (
    "SELECT d.id, EXISTS (SELECT 1 FROM outbox o WHERE o.delivery_id = d.id) FROM deliveries d "
    "WHERE d.state IN ('pending', 'retrying')"
)


def in_background(target, *args) -> threading.Thread:  # type: ignore[no-untyped-def]
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def cases_by_key(stack: HubProcesses) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for case in stack.crm.cases():
        found.setdefault(case["client_unique_identifier"], []).append(case)
    return found


@dataclass
class Restored:
    dbname: str
    in_dump: set[str]
    # (delivery id, has an outbox row) of each delivery the dump holds open
    reopened: list[tuple[int, bool]]
    stranded: list[int]
    last_dumped_id: int
    # CRM requests in the 5 s the restored hub ran before the re-queue, and how many of the
    # stranded deliveries were still open then
    sent_without_requeue: int
    stranded_still_open: int


def restore_per_runbook(stack: HubProcesses, postgres: PostgresServer, old_db: str, backup: Path, requests_at_stop: int) -> Restored:
    """docs/deploy.md, "Restoring": a fresh database from the dump, migrate, move the sequences,
    start, re-queue; on the way, shows that without the re-queue nothing sends the open deliveries
    the broker no longer holds."""
    new_db = f"{old_db}_restored"
    stack.env["HUB_DATABASE_URL"] = restore(postgres, backup, new_db)
    stack.migrate()
    in_dump = {reference for (reference,) in query(postgres, new_db, "SELECT reference FROM submissions")}
    reopened = [(int(delivery_id), bool(queued)) for delivery_id, queued in query(postgres, new_db, OPEN_DELIVERIES)]
    stranded = [delivery_id for delivery_id, queued in reopened if not queued]
    [(last_dumped_id,)] = query(postgres, new_db, "SELECT max(id) FROM deliveries")
    query(postgres, new_db, runbook_sql("move the id sequences past the lost window"))
    stack.start_api("api")
    stack.start_worker("worker", "--concurrency", "4")
    # without the re-queue, the deliveries the broker had at the dump wait for ever: nothing sends them
    time.sleep(5)
    still_open = {delivery_id for delivery_id, _ in query(postgres, new_db, OPEN_DELIVERIES)}
    sent_without_requeue = stack.crm.stats()["requests"] - requests_at_stop
    query(postgres, new_db, runbook_sql("re-queue open deliveries"))  # works on a running hub too
    return Restored(new_db, in_dump, reopened, stranded, int(last_dumped_id), sent_without_requeue,
                    len(set(stranded) & still_open))


def test_a_restore_from_a_dump_taken_under_load_delivers_all_before_it_and_the_back_office_sees_no_second_effect(
    stack: HubProcesses, postgres: PostgresServer, tmp_path: Path
) -> None:
    old_db = database_name(stack.env["HUB_DATABASE_URL"])
    stack.start_api("api")
    stack.start_worker("worker-a", "--concurrency", "2")
    stack.start_worker("worker-b", "--concurrency", "2")
    # the CRM answers more slowly than submissions arrive (4 x 1/0.2 s = 20/s against 40/s), so the
    # dump catches deliveries the relay has already handed to the broker: open, with no outbox row
    stack.crm.arm(FailurePlan(count=1_000_000, mode="hang", seconds=0.2))
    tally = Tally()
    posting = in_background(tally.post_stream, stack, SAMPLE, 400, 40.0)
    time.sleep(4)
    with tally.lock:
        before_dump = list(tally.accepted)
    started = time.monotonic()
    backup = dump(postgres, old_db, tmp_path / "hub.dump")
    dump_seconds = time.monotonic() - started
    with tally.lock:
        answered_while_dumping = set(tally.accepted[len(before_dump):])
    posting.join()
    assert len(tally.accepted) == 400, tally.refused
    accepted = set(tally.accepted)

    # after the dump: everything is delivered, then the hub stops (its database is "lost")
    stack.crm.arm(FailurePlan(count=0))
    stack.wait_settled(tally.accepted, timeout=180)
    crm_at_stop = stack.crm.stats()
    assert crm_at_stop["cases"] == 400, crm_at_stop
    [(last_delivery_id,)] = query(postgres, old_db, "SELECT max(id) FROM deliveries")
    stop_hub(stack)

    restored = restore_per_runbook(stack, postgres, old_db, backup, crm_at_stop["requests"])
    in_dump, reopened, stranded, last_dumped_id = restored.in_dump, restored.reopened, restored.stranded, restored.last_dumped_id
    new_db = restored.dbname
    # the broker was empty at the stop: before the re-queue nothing sent the stranded deliveries;
    # the only requests are of those the dump still held an outbox row for, which the relay sends
    # (a loaded machine can catch one between its commit and the relay)
    assert restored.sent_without_requeue <= len(reopened) - len(stranded)
    assert restored.stranded_still_open == len(stranded)
    settled = stack.wait_settled(sorted(in_dump), timeout=180)
    crm_drained = stack.crm.stats()

    # every submission answered 202 before pg_dump started is in the restored database, delivered,
    # and points at the case the CRM made the first time
    assert set(before_dump) <= in_dump <= accepted
    by_key = cases_by_key(stack)
    for reference in in_dump:
        [delivery] = settled[reference]["deliveries"]
        assert delivery["state"] == "delivered", (reference, delivery)
        [case] = by_key[f"{reference}/crm"]
        assert delivery["external_reference"] == case["reference"], reference
    # the drill re-sent something: open deliveries in the dump, most with no outbox row left
    assert stranded and len(reopened) > len(before_dump) // 4, (len(reopened), len(stranded))
    # ...and the CRM made no second case for any of them: every re-send was answered with the original
    assert crm_drained["cases"] == crm_at_stop["cases"]
    resent = crm_drained["requests"] - crm_at_stop["requests"]
    absorbed = crm_drained["duplicates"] - crm_at_stop["duplicates"]
    assert absorbed == resent >= len(reopened), (resent, absorbed, len(reopened))

    # the window since the dump: answered 202, delivered, gone from the hub, still in the back office
    lost = accepted - in_dump
    assert lost and lost <= accepted - set(before_dump)
    with stack.client() as client:
        for reference in sorted(lost)[:20]:
            assert client.get(f"/v1/submissions/{reference}").status_code == 404
    for reference in lost:
        [case] = by_key[f"{reference}/crm"]
        assert case["record"]["data"][0]["source_ref"] == reference

    # new submissions after the restore: new cases, never taken for a lost one, on ids past the window
    fresh = Tally()
    fresh.post_stream(stack, SAMPLE, 50)
    assert len(fresh.accepted) == 50 and not set(fresh.accepted) & accepted
    stack.wait_settled(fresh.accepted, timeout=120)
    assert stack.crm.stats()["cases"] == 450
    [(first_new_id,)] = query(
        postgres, new_db,
        "SELECT min(d.id) FROM deliveries d JOIN submissions s ON s.id = d.submission_id WHERE s.reference = ANY(%(refs)s)",
        {"refs": fresh.accepted},
    )
    assert first_new_id > last_delivery_id
    final = stack.crm.stats()
    assert all(len(cases) == 1 for cases in cases_by_key(stack).values())

    counts = {
        "submitted": 400,
        "accepted_before_dump": len(before_dump),
        "answered_while_pg_dump_ran": len(answered_while_dumping),
        "dump_seconds": round(dump_seconds, 2),
        "in_dump": len(in_dump),
        "lost_window_accepted_after_dump": len(lost),
        "lost_window_found_in_crm": sum(f"{r}/crm" in by_key for r in lost),
        "open_in_dump": len(reopened),
        "open_in_dump_without_outbox_row": len(stranded),
        "crm_effects_at_stop": crm_at_stop["cases"],
        "crm_requests_at_stop": crm_at_stop["requests"],
        "crm_requests_after_restore": resent,
        "crm_effects_after_restore": crm_drained["cases"] - crm_at_stop["cases"],
        "crm_duplicates_absorbed_after_restore": absorbed,
        "new_after_restore": len(fresh.accepted),
        "crm_effects_final": final["cases"],
        "crm_requests_final": final["requests"],
        # ids the lost window used: a restore that left the sequences alone would issue them again
        "delivery_ids_in_lost_window": last_delivery_id - last_dumped_id,
    }
    print("restore drill counts:", counts)


def queued_messages(rabbitmq: RabbitMQServer, prefix: str) -> int:
    listed = rabbitmq.ctl("list_queues", "-q", "--no-table-headers", "name", "messages").stdout
    return sum(int(count) for name, count in (line.split() for line in listed.splitlines() if line.strip()) if name.startswith(prefix))


def test_a_restore_after_a_crash_with_a_backlog_resends_what_the_dump_holds_and_skips_the_broker_leftovers(
    stack: HubProcesses, postgres: PostgresServer, rabbitmq: RabbitMQServer, tmp_path: Path
) -> None:
    old_db = database_name(stack.env["HUB_DATABASE_URL"])
    stack.start_api("api")
    stack.start_worker("worker-a", "--concurrency", "2")
    stack.start_worker("worker-b", "--concurrency", "2")
    stack.crm.arm(FailurePlan(count=1_000_000, mode="hang", seconds=0.2))  # 20/s against 40/s
    tally = Tally()
    posting = in_background(tally.post_stream, stack, SAMPLE, 300, 40.0)
    time.sleep(3)
    with tally.lock:
        before_dump = list(tally.accepted)
    backup = dump(postgres, old_db, tmp_path / "hub.dump")
    posting.join()
    assert len(tally.accepted) == 300, tally.refused
    accepted = set(tally.accepted)

    # the crash: the database is lost while half the load still waits in the broker
    time.sleep(1)
    [(last_delivery_id,)] = query(postgres, old_db, "SELECT max(id) FROM deliveries")
    stop_hub(stack, signal.SIGKILL)
    crm_at_crash = stack.crm.stats()
    in_crm_at_crash = set(cases_by_key(stack))
    stack.crm.arm(FailurePlan(count=0))

    restored = restore_per_runbook(stack, postgres, old_db, backup, crm_at_crash["requests"])
    in_dump = restored.in_dump
    settled = stack.wait_settled(sorted(in_dump), timeout=180)
    deadline = time.monotonic() + 60
    while queued_messages(rabbitmq, stack.env["HUB_QUEUE_PREFIX"]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert queued_messages(rabbitmq, stack.env["HUB_QUEUE_PREFIX"]) == 0
    crm_drained = stack.crm.stats()
    by_key = cases_by_key(stack)

    # before the dump: all delivered, one case each, the hub holding the CRM's reference for it
    assert set(before_dump) <= in_dump <= accepted
    for reference in in_dump:
        [delivery] = settled[reference]["deliveries"]
        assert delivery["state"] == "delivered", (reference, delivery)
        [case] = by_key[f"{reference}/crm"]
        assert delivery["external_reference"] == case["reference"], reference
    assert all(len(cases) == 1 for cases in by_key.values())
    assert set(by_key) <= {f"{reference}/crm" for reference in accepted}
    # new effects only for what the dump held and the CRM had not got before the crash
    first_time = {f"{reference}/crm" for reference in in_dump} - in_crm_at_crash
    assert crm_drained["cases"] - crm_at_crash["cases"] == len(first_time)

    # the window: the restored hub sends nothing for it (the broker's leftovers name deliveries it
    # does not have: skipped); what the CRM had at the crash stays, the rest only the portal knows
    lost = accepted - in_dump
    assert {r for r in lost if f"{r}/crm" in by_key} == {r for r in lost if f"{r}/crm" in in_crm_at_crash}
    never_delivered = {r for r in lost if f"{r}/crm" not in by_key}
    skipped_unknown = stack.log("worker").count("delivery_unknown")
    assert lost and never_delivered and skipped_unknown >= len(never_delivered) > 0
    [(first_new_id,)] = query(postgres, restored.dbname, "SELECT nextval(pg_get_serial_sequence('deliveries', 'id'))")
    assert first_new_id > last_delivery_id

    counts = {
        "submitted": 300,
        "accepted_before_dump": len(before_dump),
        "in_dump": len(in_dump),
        "lost_window_accepted_after_dump": len(lost),
        "lost_window_in_crm": len(lost) - len(never_delivered),
        "lost_window_never_delivered": len(never_delivered),
        "open_in_dump": len(restored.reopened),
        "open_in_dump_without_outbox_row": len(restored.stranded),
        "crm_requests_before_requeue": restored.sent_without_requeue,
        "broker_leftovers_skipped_as_unknown": skipped_unknown,
        "crm_effects_at_crash": crm_at_crash["cases"],
        "crm_requests_at_crash": crm_at_crash["requests"],
        "crm_effects_after_restore": crm_drained["cases"] - crm_at_crash["cases"],
        "crm_requests_after_restore": crm_drained["requests"] - crm_at_crash["requests"],
        "crm_duplicates_absorbed_after_restore": crm_drained["duplicates"] - crm_at_crash["duplicates"],
    }
    print("restore after crash counts:", counts)
