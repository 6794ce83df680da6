"""Cross-process wake-ups: PostgreSQL LISTEN/NOTIFY, or plain callbacks within one process.

Channels carry small text payloads (a run id, or a batch of stream events). A listener connection
that drops (PostgreSQL restarted) is reopened with backoff; notifications sent meanwhile are lost, so
every user of a channel registers an ``on_reconnect`` hook that catches up from the tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import asyncpg

logger = logging.getLogger("openassistants.notify")

Listener = Callable[[str], None]
ReconnectHook = Callable[[], Awaitable[None]]

#: A queued run is waiting for an executor (payload: the run id).
RUNS_QUEUED = "oa_runs_queued"
#: Cancel asked for a run (payload: the run id); its executor, wherever it is, stops it.
RUN_CANCEL = "oa_run_cancel"
#: Files wait to be ingested into vector stores.
INGEST_QUEUED = "oa_ingest_queued"
#: New stream events (payload: see bus.postgres.PostgresEventBus).
RUN_EVENTS = "oa_run_events"

RECONNECT_BACKOFF_SECONDS = (0.1, 0.25, 0.5, 1.0, 2.0)


class Notifier(Protocol):
    def listen(self, channel: str, callback: Listener) -> None: ...

    def on_reconnect(self, hook: ReconnectHook) -> None: ...

    async def notify(self, channel: str, payload: str) -> None: ...

    @property
    def connected(self) -> bool: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class InProcessNotifier:
    """One process: notifications are delivered directly, on the next loop iteration."""

    def __init__(self) -> None:
        self._listeners: dict[str, list[Listener]] = defaultdict(list)

    def listen(self, channel: str, callback: Listener) -> None:
        self._listeners[channel].append(callback)

    def on_reconnect(self, hook: ReconnectHook) -> None:
        pass  # never disconnected

    async def notify(self, channel: str, payload: str) -> None:
        for callback in self._listeners[channel]:
            callback(payload)

    @property
    def connected(self) -> bool:
        return True

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass


class PostgresNotifier:
    """One LISTEN connection per process, kept open; NOTIFY goes through short-lived pool use (the
    pool is also the event log's: ``PostgresEventBus``)."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._listeners: dict[str, list[Listener]] = defaultdict(list)
        self._hooks: list[ReconnectHook] = []
        self._conn: asyncpg.Connection | None = None
        self._pool: asyncpg.Pool | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "PostgresNotifier.start() was not awaited"
        return self._pool

    def listen(self, channel: str, callback: Listener) -> None:
        self._listeners[channel].append(callback)

    def on_reconnect(self, hook: ReconnectHook) -> None:
        self._hooks.append(hook)

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def start(self) -> None:
        # Small: NOTIFYs and event-log writes are short, and PostgreSQL's connections are shared.
        # It writes stream events only, never run state: its commits need not wait for a WAL flush
        # (a PostgreSQL crash may lose the newest events, at most wal_writer_delay's worth).
        self._pool = await asyncpg.create_pool(
            self._dsn,
            min_size=1,
            max_size=4,
            server_settings={"synchronous_commit": "off"},
            reset=_keep_session,
        )
        await self._connect()
        self._supervisor = asyncio.create_task(self._supervise(), name="notify-supervisor")

    async def close(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        if self._conn is not None and not self._conn.is_closed():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._conn.close(), timeout=2)
        if self._pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._pool.close(), timeout=5)

    async def notify(self, channel: str, payload: str) -> None:
        await self.pool.execute("SELECT pg_notify($1, $2)", channel, payload)

    async def _connect(self) -> None:
        conn = await asyncpg.connect(self._dsn)
        for channel in self._listeners:
            await conn.add_listener(channel, self._dispatch)
        conn.add_termination_listener(lambda _c: self._lost.set())
        self._conn = conn
        self._lost.clear()

    def _dispatch(self, _conn: Any, _pid: int, channel: str, payload: str) -> None:
        for callback in self._listeners.get(channel, ()):
            try:
                callback(payload)
            except Exception:
                logger.exception("listener for %s failed", channel)

    async def _supervise(self) -> None:
        while True:
            await self._lost.wait()
            logger.warning("LISTEN connection lost; reconnecting")
            self._conn = None
            attempt = 0
            while True:
                try:
                    await self._connect()
                    break
                except (OSError, asyncpg.PostgresError):
                    delay = RECONNECT_BACKOFF_SECONDS[min(attempt, len(RECONNECT_BACKOFF_SECONDS) - 1)]
                    attempt += 1
                    await asyncio.sleep(delay)
            for hook in self._hooks:
                try:
                    await hook()
                except Exception:
                    logger.exception("reconnect hook failed")


async def _keep_session(_connection: asyncpg.Connection) -> None:
    """The pool's reset between two uses: nothing beyond the rollback of an open transaction that
    asyncpg always does. Its default, one more round trip per use (``RESET ALL``, ``UNLISTEN *``,
    ``CLOSE ALL``, unlocking advisory locks), undoes what these statements never do: they set,
    listen, lock and open cursors nowhere (the LISTEN connection is not the pool's)."""
