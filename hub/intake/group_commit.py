"""Group commit for intake: submissions arriving together are stored in one transaction.

The first submission is written at once; those that arrive while a write is under way wait
for the next one and share it, so a quiet hub adds no latency and a busy one makes far fewer
round trips to the database.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import Engine

from hub.errors import IdempotencyConflict
from hub.store import submissions as store


class IntakeBatcher:
    def __init__(self, engine: Engine, max_batch: int = 256) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self._waiting: list[tuple[store.NewSubmission, asyncio.Future[store.Accepted]]] = []
        self._writing = False
        # one writer thread of its own: cheaper hand-offs than the shared request thread pool
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="hub-intake-writer")

    async def accept(self, new: store.NewSubmission) -> store.Accepted:
        """Stores the submission; raises IdempotencyConflict for a reused key with another body."""
        future: asyncio.Future[store.Accepted] = asyncio.get_running_loop().create_future()
        self._waiting.append((new, future))
        if not self._writing:
            self._writing = True
            asyncio.get_running_loop().create_task(self._write())
        return await future

    async def _write(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[: self.max_batch], self._waiting[self.max_batch :]
                try:
                    accepted = await asyncio.get_running_loop().run_in_executor(
                        self._writer, store.accept_many, self.engine, [new for new, _ in batch]
                    )
                except Exception as exc:  # the database is down: every waiting request hears so
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(batch, accepted):
                    if future.done():
                        continue
                    if isinstance(result, IdempotencyConflict):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._writing = False
