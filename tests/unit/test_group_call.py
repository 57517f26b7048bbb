"""GroupCall: many threads' items reach one call, every caller gets its own result or its batch's
error, and the idle hook runs only once nothing is waiting or running."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from hub.store.group_call import GroupCall


def test_every_caller_gets_its_own_result_and_calls_are_shared() -> None:
    calls: list[list[int]] = []
    running = threading.Lock()

    def doubled(items: Sequence[int]) -> list[int]:
        assert running.acquire(blocking=False), "two calls ran at once"
        try:
            calls.append(list(items))
            time.sleep(0.002)
            return [item * 2 for item in items]
        finally:
            running.release()

    group: GroupCall[int, int] = GroupCall(doubled, "test-group")
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(group, range(2000)))
    assert results == [item * 2 for item in range(2000)]
    assert sorted(item for call in calls for item in call) == list(range(2000))
    assert len(calls) < 1000  # items were grouped


def test_a_failing_call_fails_every_caller_in_its_batch_and_the_next_call_still_runs() -> None:
    def refuse_odd(items: Sequence[int]) -> list[int]:
        if any(item % 2 for item in items):
            raise RuntimeError("database down")
        return list(items)

    group: GroupCall[int, int] = GroupCall(refuse_odd, "test-group")
    with pytest.raises(RuntimeError, match="database down"):
        group(1)
    assert group(2) == 2


def test_the_idle_hook_runs_after_a_quiet_spell_and_not_while_work_arrives() -> None:
    idle = threading.Event()
    during_call = threading.Event()
    busy = threading.Lock()

    def call(items: Sequence[int]) -> list[int]:
        with busy:
            return list(items)

    def on_idle() -> None:
        if busy.locked():
            during_call.set()
        idle.set()

    group: GroupCall[int, int] = GroupCall(call, "test-group", on_idle=on_idle, idle_seconds=0.2)
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:  # steady work: never idle for 0.2 s
        assert group(1) == 1
        time.sleep(0.01)
    assert not idle.is_set()
    assert idle.wait(2.0)
    assert not during_call.is_set()
    idle.clear()
    assert not idle.wait(0.5)  # nothing used since: nothing to give back
    assert group(3) == 3
    assert idle.wait(2.0)
