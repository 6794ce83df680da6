"""Tasks waiting for something to grow (a run's log, a model turn's inbox): each waits on a future of
its own, and a wake resolves them all.

Not an ``asyncio.Event`` armed afresh on every publish, as the logs once had: that made an Event
(a lock object and its deque) per event published, and each wait cost more than the future it makes
underneath, for every event of every run of a burst.
"""

from __future__ import annotations

import asyncio


class Waiters:
    __slots__ = ("_futures",)

    def __init__(self) -> None:
        self._futures: list[asyncio.Future[None]] = []

    def __bool__(self) -> bool:
        return bool(self._futures)

    async def wait(self) -> None:
        """Returns at the next ``wake``."""
        future = asyncio.get_running_loop().create_future()
        self._futures.append(future)
        try:
            await future
        finally:
            if future in self._futures:  # cancelled before a wake resolved it
                self._futures.remove(future)

    def wake(self) -> None:
        """Resolves every wait (each then reads what is new)."""
        if not self._futures:
            return  # most wakes: nobody waits (a subscriber still writing, a turn still busy)
        futures, self._futures = self._futures, []
        for future in futures:
            if not future.done():
                future.set_result(None)
