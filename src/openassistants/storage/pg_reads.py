"""PostgreSQL connections kept checked out for ``Database.reader``.

A checkout from SQLAlchemy's pool and its return (a greenlet hop each way, the connection fairy, the
reset, a task that shields the close) cost more CPU than the prepared statement a read runs: a
retrieve took about 170 µs of server CPU this way, 40 to 70 µs on a connection already in hand
(docs/benchmarks.md, "Issue 18 — PostgreSQL read paths, round three"). So ``reader``'s connections
come from an engine of their own and stay checked out: a read takes one from a list and puts it back.
Their statements run outside any transaction (``Runner`` with ``begin`` False), so a connection goes
back as clean as it came, and there is nothing to reset.

What the pool did on the way is kept: a connection is opened through the engine (its connect-time
set-up, JSON codecs, errors), at most ``size`` are open, a read waits for one up to ``timeout``
seconds, and a disconnect, which ``Runner`` reports by invalidating its connection, retires every
connection opened before it (as SQLAlchemy's pool recycles them), so that after a database restart
one read answers 503 and the next ones reconnect.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from openassistants.storage.prepared import Runner


@dataclass(eq=False, slots=True)
class HeldConnection:
    connection: AsyncConnection
    runner: Runner
    #: The pool's generation when it was opened: older than a disconnect seen since, it is retired.
    generation: int


class HeldReads:
    """Up to ``size`` connections of ``engine``, each checked out once and lent to one read at a time."""

    def __init__(self, engine: AsyncEngine, size: int, timeout: float) -> None:
        self._engine = engine
        self._size = size
        self._timeout = timeout
        # Most recently returned first: a light load keeps to a few warm connections.
        self._idle: list[HeldConnection] = []
        self._open = 0
        # Reads waiting, first come first served. Each is handed a connection, or None: a slot is
        # free to open one.
        self._waiters: deque[asyncio.Future[HeldConnection | None]] = deque()
        self._generation = 0
        self._closing: set[asyncio.Task[None]] = set()

    async def acquire(self) -> HeldConnection:
        while self._idle:
            held = self._idle.pop()
            if held.generation == self._generation:
                return held
            self._retire(held.connection)
        if self._open >= self._size:
            held_or_slot = await self._wait()
            if held_or_slot is not None:
                return held_or_slot
        else:
            self._open += 1
        try:
            connection = await self._engine.connect().start()
        except BaseException:
            self._free_slot()
            raise
        try:
            adapter = (await connection.get_raw_connection()).dbapi_connection
        except BaseException:
            self._retire(connection)
            raise
        return HeldConnection(connection, Runner.asyncpg(connection, adapter, begin=False), self._generation)

    def release(self, held: HeldConnection) -> None:
        if held.connection.invalidated:
            # Lost (``Runner`` invalidated it): so are, most likely, all those opened before it.
            if held.generation == self._generation:
                self._generation += 1
            self._retire(held.connection)
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(held)
                return
        self._idle.append(held)

    async def close(self) -> None:
        """Closes the idle connections and the engine (reads still under way lose theirs)."""
        idle, self._idle = self._idle, []
        for held in idle:
            await held.connection.close()
        self._open -= len(idle)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        await self._engine.dispose()

    async def _wait(self) -> HeldConnection | None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[HeldConnection | None] = loop.create_future()
        self._waiters.append(waiter)
        # A timer of its own rather than ``asyncio.timeout``: cheaper, and a timeout can never take
        # the place of a connection handed over in the same turn.
        expiry = loop.call_later(self._timeout, self._expire, waiter)
        try:
            return await waiter
        except BaseException:
            # Cancelled after being handed a connection or a slot: pass it on.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                handed = waiter.result()
                if handed is None:
                    self._free_slot()
                else:
                    self.release(handed)
            raise
        finally:
            expiry.cancel()

    def _expire(self, waiter: asyncio.Future[HeldConnection | None]) -> None:
        if not waiter.done():
            waiter.set_exception(
                SQLAlchemyTimeoutError(
                    f"no read connection free within {self._timeout:g} s ({self._size} open)"
                )
            )

    def _retire(self, connection: AsyncConnection) -> None:
        """Gives ``connection`` back to the engine's pool (which, after a disconnect, recycles it) and
        its slot to the next read."""
        task = asyncio.get_running_loop().create_task(connection.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        self._free_slot()

    def _free_slot(self) -> None:
        """A slot is free: the first waiting read opens a connection in it."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._open -= 1
