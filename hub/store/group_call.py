"""Group work from many threads into one call: each caller hands in an item and waits; one of
the callers makes a single call for everything waiting.

The worker's sending threads use it to load deliveries and to record outcomes, so the database
sees one statement for many deliveries instead of one round trip each. The call runs in a
caller's own thread (the first to arrive while no call is running, the "leader"), not in a
thread of its own: a delivery then costs one thread wake-up fewer each way. When the leader's
call returns, the oldest caller that arrived meanwhile leads the next call with everything that
waited, so no caller waits behind more than one call it is not part of.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class _Slot:
    """One caller's item, and what its call gave back. `wake` lets the caller go on, to read its
    result or, when `lead` is set, to make the next call itself."""

    __slots__ = ("_done", "error", "item", "lead", "result")

    def __init__(self, item: Any) -> None:
        self.item = item
        self.result: Any = None
        self.error: BaseException | None = None
        self.lead = False
        self._done = threading.Lock()
        self._done.acquire()

    def wait(self) -> None:
        self._done.acquire()

    def wake(self) -> None:
        self._done.release()


class GroupCall(Generic[Item, Result]):
    def __init__(
        self,
        call_many: Callable[[Sequence[Item]], Sequence[Result]],
        name: str,
        max_batch: int = 256,
        on_idle: Callable[[], None] | None = None,
        idle_seconds: float = 1.0,
    ) -> None:
        self._call_many = call_many
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._waiting: list[_Slot] = []
        # a call (or on_idle) is running; whoever runs it hands over to the next waiting caller
        self._busy = False
        self._last_call = time.monotonic()
        self._idle_pending = False
        # called after `idle_seconds` with nothing to do (e.g. to give back a connection kept while
        # busy), from a watcher thread, never while a call runs
        self._on_idle = on_idle
        self._idle_seconds = idle_seconds
        if on_idle is not None:
            threading.Thread(target=self._watch_idle, name=name, daemon=True).start()

    def __call__(self, item: Item) -> Result:
        """Hands in one item and waits for its result (or its batch's exception)."""
        slot = _Slot(item)
        with self._lock:
            self._waiting.append(slot)
            lead = not self._busy
            self._busy = True
        if not lead:
            slot.wait()
            lead = slot.lead
        if lead:
            self._lead(slot)
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[no-any-return]

    def _lead(self, own: _Slot) -> None:
        """Makes one call for what is waiting (the leader's own item first), then hands over."""
        with self._lock:
            batch, self._waiting = self._waiting[: self._max_batch], self._waiting[self._max_batch :]
        try:
            results = self._call_many([slot.item for slot in batch])
        except BaseException as exc:  # every caller in the batch hears of it
            for slot in batch:
                slot.error = exc
        else:
            for slot, result in zip(batch, results):
                slot.result = result
        self._hand_over(called=True)
        for slot in batch:
            if slot is not own:  # the leader is awake already
                slot.wake()

    def _hand_over(self, called: bool) -> None:
        with self._lock:
            if called:
                self._last_call = time.monotonic()
                self._idle_pending = self._on_idle is not None
            else:
                self._idle_pending = False
            if not self._waiting:
                self._busy = False
                return
            following = self._waiting[0]
        following.lead = True
        following.wake()

    def _watch_idle(self) -> None:
        assert self._on_idle is not None
        while True:
            time.sleep(self._idle_seconds / 2)
            with self._lock:
                due = self._idle_pending and not self._busy and time.monotonic() - self._last_call >= self._idle_seconds
                if due:
                    self._busy = True
            if not due:
                continue
            try:
                self._on_idle()
            except Exception:  # e.g. closing a connection the database already dropped
                pass
            finally:
                self._hand_over(called=False)
