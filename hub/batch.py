"""Group work from many threads into one call: each caller hands in an item and waits; one
background thread takes everything waiting and makes a single call for all of it.

The worker's sending threads use it to load deliveries and to record outcomes, so the database
sees one statement for many deliveries instead of one round trip each.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


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
        # called in the background thread after `idle_seconds` with nothing to do (e.g. to give
        # back a connection kept while busy)
        self._on_idle = on_idle
        self._idle_seconds = idle_seconds
        self._waiting: list[tuple[Item, Future[Result]]] = []
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def __call__(self, item: Item) -> Result:
        """Hands in one item and waits for its result (or its batch's exception)."""
        future: Future[Result] = Future()
        with self._ready:
            self._waiting.append((item, future))
            self._ready.notify()
        return future.result()

    def _run(self) -> None:
        while True:
            with self._ready:
                if not self._waiting:
                    self._ready.wait(self._idle_seconds if self._on_idle is not None else None)
                batch, self._waiting = self._waiting[: self._max_batch], self._waiting[self._max_batch :]
            if not batch:
                if self._on_idle is not None:
                    self._on_idle()
                continue
            try:
                results = self._call_many([item for item, _ in batch])
            except BaseException as exc:  # every caller in the batch hears of it
                for _, future in batch:
                    future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results):
                future.set_result(result)
