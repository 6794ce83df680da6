"""Group commit: concurrent writes with the same key, done together in one transaction.

On PostgreSQL, writes that take one row lock (messages added to one thread) wait for each other, and
each holds the lock for its statements' round trips and its commit's flush to disk. Requests that
arrive while one such transaction runs queue here instead, and the next transaction writes all of
them: the same round trips and one flush for the lot. Each caller gets its own result, or the
exception the batch raised (every write in it shared the transaction, so each meets the same fate).
Reads that can share one statement batch the same way (services/run_batches.py: run creations' reads).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[K, T, R]):
    """``await submit(key, item)`` runs ``write(key, items)`` for ``item`` and every item submitted
    with ``key`` meanwhile; ``write`` returns one result per item, in order. One batch per key runs
    at a time, in a task of its own, so that a caller's cancellation never cuts the others' short."""

    def __init__(self, write: Callable[[K, list[T]], Awaitable[list[R]]], *, most: int) -> None:
        """``most``: the largest batch ``write`` is given."""
        self._write = write
        self._most = most
        self._queues: dict[K, list[tuple[T, asyncio.Future[R]]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, key: K, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = []
            task = asyncio.create_task(self._drain(key, queue))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        queue.append((item, future))
        return await future

    async def _drain(self, key: K, queue: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            while queue:
                batch = queue[: self._most]
                del queue[: self._most]
                try:
                    results = await self._write(key, [item for item, _ in batch])
                except BaseException as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            del self._queues[key]
            for _, future in queue:  # only if cancelled itself (at shutdown)
                future.cancel()
