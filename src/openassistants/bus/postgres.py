"""The event bus for several processes: every run's events in the ``run_events`` table, fanned out
with PostgreSQL NOTIFY.

Publishing is synchronous and cheap: events wait in a buffer that one flusher task writes, in order,
with one multi-row INSERT and the NOTIFYs carrying them, in one transaction, so a notification is
delivered exactly when its events are visible. Each process keeps a LISTEN connection and hands the
events of runs it is streaming to their subscribers; a subscriber first replays the table after the
id it starts from, then follows the live ones. Event ids are the table's ids: increasing per run,
they are the SSE ``id:`` a client resumes from.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from openassistants.bus.base import Transaction
from openassistants.bus.notify import RUN_EVENTS, PostgresNotifier
from openassistants.events import Event, ends_stream

logger = logging.getLogger("openassistants.events")

#: NOTIFY payloads must stay under 8000 bytes; an event too large to travel is fetched by id.
NOTIFY_PAYLOAD_BYTES = 7500
CLEANUP_EVERY_SECONDS = 600.0

#: Writes a batch of events and notifies each, in one statement (one round trip): a notification is
#: delivered when its transaction commits, so exactly when its event is visible. An event too large to
#: travel in a NOTIFY goes without its data, which the receiver fetches by id. Volatile output
#: expressions are evaluated after the sort, so the notifications go out in id order.
_WRITE = f"""
WITH written AS (
    INSERT INTO run_events (run_id, name, data, created_at)
    SELECT r, n, d, $4 FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS t(r, n, d, o)
    ORDER BY o
    RETURNING id, run_id, name, data
), lines AS (
    SELECT id, id || E'\\t' || run_id || E'\\t' || name || E'\\t' AS head, data FROM written
)
SELECT id, pg_notify(
    '{RUN_EVENTS}',
    CASE WHEN octet_length(head) + octet_length(data) > {NOTIFY_PAYLOAD_BYTES} THEN head ELSE head || data END
)
FROM lines ORDER BY id
"""


#: Several runs' logs after given ids, in one query: ``o`` is the request's place in the arrays.
_REPLAY = """
SELECT r.o, e.id, e.name, e.data
FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS r(run_id, after, o)
JOIN run_events e ON e.run_id = r.run_id AND e.id > r.after
ORDER BY r.o, e.id
"""


@dataclass
class _LiveLog:
    """Events of one run that arrived by NOTIFY while somebody here is streaming it."""

    events: list[tuple[int, str, bytes | None]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    subscribers: int = 0

    def wake(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


class PostgresEventBus:
    def __init__(self, notifier: PostgresNotifier, retention_seconds: int) -> None:
        self._notifier = notifier
        self._retention = retention_seconds
        self._pending: list[tuple[str, Event]] = []
        #: Events published so far, and how many of them are written and notified.
        self._published = 0
        self._written = 0
        #: Each run's newest event not known to be written yet: its number among all published.
        self._newest: dict[str, int] = {}
        self._progress = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._live: dict[str, _LiveLog] = {}
        #: Replays asked for and not read yet: (run id, after, the waiting reader).
        self._replays: list[tuple[str, int, asyncio.Future[list[tuple[int, Event]]]]] = []
        self._replayer: asyncio.Task[None] | None = None
        self._cleanup: asyncio.Task[None] | None = None
        notifier.listen(RUN_EVENTS, self._on_notify)
        notifier.on_reconnect(self._resync)

    async def start(self) -> None:
        self._cleanup = asyncio.create_task(self._cleanup_loop(), name="run-events-cleanup")

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.flush(), timeout=5)
        for task in (self._cleanup, self._flusher, self._replayer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    # --- publishing -------------------------------------------------------------------------

    def publish(self, run_id: str, event: Event) -> None:
        self._pending.append((run_id, event))
        self._published += 1
        self._newest[run_id] = self._published
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_all(), name="run-events-flush")

    async def publish_in(self, conn: Transaction, run_id: str, events: list[Event]) -> None:
        if not events:
            return
        await self.flush(run_id)  # the run's earlier events first: they must get lower ids
        await conn.exec_driver_sql(_WRITE, _columns([(run_id, e) for e in events]))

    async def flush(self, run_id: str | None = None) -> None:
        """Returns once every event published before the call (of ``run_id`` only, when given) is in
        the table and notified — without waiting for events published meanwhile. A run's own events
        are all its ids need ordering against: under load the flusher is always writing other runs'
        deltas, and waiting for those would hold every run's status change for a round trip."""
        target = self._published if run_id is None else self._newest.get(run_id, 0)
        while self._written < target:
            if self._flusher is None or self._flusher.done():
                self._flusher = asyncio.create_task(self._flush_all(), name="run-events-flush")
            progress = self._progress
            await progress.wait()

    async def _flush_all(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            delay = 0.05
            while True:
                try:
                    await self._write(batch)
                    self._written += len(batch)
                    for run_id, _ in batch:
                        if self._newest.get(run_id, 0) <= self._written:
                            self._newest.pop(run_id, None)
                    # Wake flush() callers, then arm a fresh event for the next batch.
                    self._progress.set()
                    self._progress = asyncio.Event()
                    break
                except Exception:
                    # The database is away: keep the events, in order, and try again.
                    logger.warning("could not write %d stream events; retrying", len(batch))
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)

    async def _write(self, batch: list[tuple[str, Event]]) -> None:
        # The notifier's pool commits without waiting for a WAL flush (bus/notify.py).
        await self._notifier.pool.execute(_WRITE, *_columns(batch))

    # --- receiving --------------------------------------------------------------------------

    def _on_notify(self, payload: str) -> None:
        touched: set[str] = set()
        for line in payload.split("\n"):
            event_id, run_id, name, data = line.split("\t", 3)
            log = self._live.get(run_id)
            if log is None:
                continue
            log.events.append((int(event_id), name, data.encode() if data else None))
            touched.add(run_id)
        for run_id in touched:
            self._live[run_id].wake()

    async def _resync(self) -> None:
        """After a lost LISTEN connection: fetch what the live logs may have missed."""
        for run_id, log in list(self._live.items()):
            known = max((e[0] for e in log.events), default=0)
            for event_id, event in await self._fetch(run_id, known):
                log.events.append((event_id, event.name, event.data))
            log.wake()

    async def _fetch(self, run_id: str, after: int) -> list[tuple[int, Event]]:
        """The run's logged events with id > ``after``. Asked for together (a burst of streams starting,
        each replaying its run's log first), they are read together: one query for every request
        made while the previous one was out, instead of one round trip each through the notifier's
        small pool, where 500 new streams waited seconds for their first event."""
        wanted: asyncio.Future[list[tuple[int, Event]]] = asyncio.get_running_loop().create_future()
        self._replays.append((run_id, after, wanted))
        if self._replayer is None or self._replayer.done():
            self._replayer = asyncio.create_task(self._replay_all(), name="run-events-replay")
        return await wanted

    async def _replay_all(self) -> None:
        while self._replays:
            batch, self._replays = self._replays, []
            try:
                rows = await self._notifier.pool.fetch(
                    _REPLAY, [run_id for run_id, _, _ in batch], [after for _, after, _ in batch]
                )
            except Exception as exc:
                for _, _, wanted in batch:
                    if not wanted.done():
                        wanted.set_exception(exc)
                continue
            found: dict[int, list[tuple[int, Event]]] = {}
            for row in rows:
                found.setdefault(row["o"], []).append((row["id"], Event(row["name"], row["data"].encode())))
            for ordinal, (_, _, wanted) in enumerate(batch, start=1):
                if not wanted.done():
                    wanted.set_result(found.get(ordinal, []))

    async def _fetch_one(self, event_id: int) -> bytes:
        data = await self._notifier.pool.fetchval("SELECT data FROM run_events WHERE id = $1", event_id)
        return str(data).encode()

    async def _stopped_by(self, run_id: str, after: int) -> bool:
        """Whether the run's newest event, at or before ``after``, ended its stream."""
        name = await self._notifier.pool.fetchval(
            "SELECT name FROM run_events WHERE run_id = $1 AND id <= $2 ORDER BY id DESC LIMIT 1",
            run_id,
            after,
        )
        return name is not None and ends_stream(Event(str(name), b""))

    async def last_id(self, run_id: str) -> int:
        await self.flush(run_id)
        value = await self._notifier.pool.fetchval("SELECT max(id) FROM run_events WHERE run_id = $1", run_id)
        return int(value or 0)

    async def replay(self, run_id: str, after: int) -> list[tuple[int, Event]]:
        await self.flush(run_id)
        return await self._fetch(run_id, after)

    async def subscribe(self, run_id: str, after: int) -> AsyncIterator[list[tuple[int, Event]]]:
        log = self._live.get(run_id)
        if log is None:
            log = self._live[run_id] = _LiveLog()
        log.subscribers += 1
        try:
            # Registered before the replay, so nothing committed meanwhile is missed; ids dedupe.
            replayed = await self._fetch(run_id, after)
            seen = {event_id for event_id, _ in replayed}
            for n, (_, event) in enumerate(replayed):
                if ends_stream(event):
                    yield replayed[: n + 1]
                    return
            if replayed:
                yield replayed
            elif after > 0 and await self._stopped_by(run_id, after):
                return  # resumed past the run's last event, which ended it: nothing more will come
            position = 0
            while True:
                batch: list[tuple[int, Event]] = []
                while position < len(log.events):
                    event_id, name, data = log.events[position]
                    position += 1
                    if event_id <= after or event_id in seen:
                        if event_id <= after and ends_stream(Event(name, b"")):
                            return  # the run stopped at or before the client's place: nothing to say
                        continue
                    seen.add(event_id)
                    event = Event(name, data if data is not None else await self._fetch_one(event_id))
                    batch.append((event_id, event))
                    if ends_stream(event):
                        yield batch
                        return
                if batch:
                    yield batch
                else:
                    await log.changed.wait()
        finally:
            log.subscribers -= 1
            if log.subscribers == 0 and self._live.get(run_id) is log:
                del self._live[run_id]

    def close(self, run_id: str) -> None:
        pass  # the table keeps the log; retention is by age

    async def _cleanup_loop(self) -> None:
        while True:
            await asyncio.sleep(CLEANUP_EVERY_SECONDS)
            try:
                await self._notifier.pool.execute(
                    "DELETE FROM run_events WHERE created_at < $1", int(time.time()) - self._retention
                )
            except Exception:
                logger.warning("run_events cleanup failed", exc_info=True)


def _columns(batch: list[tuple[str, Event]]) -> tuple[list[str], list[str], list[str], int]:
    """``_WRITE``'s parameters."""
    return (
        [run_id for run_id, _ in batch],
        [event.name for _, event in batch],
        [event.data.decode() for _, event in batch],
        int(time.time()),
    )
