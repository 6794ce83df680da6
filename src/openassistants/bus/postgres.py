"""The event bus for several processes: every run's events in the ``run_events`` table, fanned out
to other processes with PostgreSQL NOTIFY, and to this process's own streams straight from memory.

Ids. An event's id (the SSE ``id:`` a client resumes from, on any process) is known when it is
published, before it is written: ids come in blocks of ID_BLOCK, a block being a value of the table's
sequence times ID_BLOCK, so no two processes hand out the same id, and a block taken later holds
larger ids than every block taken before. A run publishing here numbers its events from a block of
its own: the rest of the one its latest ``publish_in`` began, or a fresh one when it has none (its
first event here, a block used up, or another process published for it meanwhile). A fresh block
is fetched after the run's earlier events were committed, wherever they were, so a run's ids keep
increasing as it moves between processes (created by one, executed by another, resumed by a third).

Delivery. ``publish`` numbers the event and appends it at once to the run's log here, which this
process's streams read, and to a buffer that one flusher task writes, in order, with one multi-row
INSERT and the NOTIFYs carrying them, in one transaction, so a notification is delivered exactly
when its events are visible. ``publish_in`` writes in the caller's transaction; its events reach
the log here when that commits. Each process keeps a LISTEN connection: events other processes
publish reach the logs of runs streamed here; those of this process's own blocks are echoes, and
skipped. A subscriber first replays the table after the id it starts from, then follows the log;
the replay is skipped when the log here began with the run's ``created`` event (the run was created
in this process, which streams it to its creator): the log then holds all of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from openassistants.bus.base import Transaction
from openassistants.bus.notify import RUN_EVENTS, PostgresNotifier
from openassistants.bus.postgres_sql import ID_BLOCK, NEXT_BLOCKS, REPLAY, WRITE, WRITE_NEW, write_parameters
from openassistants.bus.waiters import Waiters
from openassistants.events import Event
from openassistants.run_events import RUN_CREATED, ends_stream
from openassistants.storage.db import on_commit, runner_for
from openassistants.storage.prepared import Prepared, Runner

logger = logging.getLogger("openassistants.events")

CLEANUP_EVERY_SECONDS = 600.0


@dataclass
class _RunLog:
    """A run as this process knows it: the events it published here, and those other processes
    published that NOTIFY brought while somebody here streams it."""

    #: (id, event, whole): not whole when the notification could not carry the data (fetched by id).
    events: list[tuple[int, Event, bool]] = field(default_factory=list)
    changed: Waiters = field(default_factory=Waiters)
    subscribers: int = 0
    #: Publishing here: kept without subscribers, until its stream ends or it is closed.
    active: bool = False
    #: The block it numbers from: the next id, and the block's end (no block when they are equal).
    next_id: int = 0
    end_id: int = 0
    #: Published while it had no block; numbered when one comes.
    waiting: list[Event] = field(default_factory=list)
    #: Blocks (id // ID_BLOCK) this process numbered the run's events from: their notifications are
    #: echoes of events the log has (or will have, once their transaction commits).
    blocks: set[int] = field(default_factory=set)
    #: Begun by the run's first event (its ``created``, published here): the log then has (or will
    #: have, as they are numbered or come) every event of the run, and a subscriber needs no replay.
    whole: bool = False

    def wake(self) -> None:
        self.changed.wake()

    def idle(self) -> bool:
        return not (self.subscribers or self.active or self.waiting)


class PostgresEventBus:
    def __init__(self, notifier: PostgresNotifier, retention_seconds: int) -> None:
        self._notifier = notifier
        self._retention = retention_seconds
        self._pending: list[tuple[int, str, Event]] = []
        #: Events numbered so far, and how many of them are written and notified.
        self._published = 0
        self._written = 0
        #: Each run's newest event not known to be written yet: its number among all published.
        self._newest: dict[str, int] = {}
        #: Set (and replaced) whenever events are written or blocks come.
        self._progress = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._logs: dict[str, _RunLog] = {}
        #: Runs waiting for a block (a dict: ordered, and each run once).
        self._want_blocks: dict[str, None] = {}
        self._blocker: asyncio.Task[None] | None = None
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
        for task in (self._cleanup, self._flusher, self._blocker, self._replayer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    # --- publishing -------------------------------------------------------------------------

    def _log(self, run_id: str) -> _RunLog:
        log = self._logs.get(run_id)
        if log is None:
            log = self._logs[run_id] = _RunLog()
        return log

    def _forget_if_idle(self, run_id: str, log: _RunLog) -> None:
        if log.idle() and self._logs.get(run_id) is log:
            del self._logs[run_id]

    def publish(self, run_id: str, event: Event) -> None:
        log = self._logs.get(run_id)
        if log is None:
            log = self._logs[run_id] = _RunLog(whole=event.name == RUN_CREATED)
        log.active = True
        if log.waiting or log.next_id == log.end_id:
            log.waiting.append(event)
            self._want_block(run_id)
            return
        self._number(run_id, log, event)

    def _number(self, run_id: str, log: _RunLog, event: Event) -> None:
        event_id = log.next_id
        log.next_id += 1
        log.events.append((event_id, event, True))
        if log.subscribers:
            log.wake()
        self._pending.append((event_id, run_id, event))
        self._published += 1
        self._newest[run_id] = self._published
        if ends_stream(event):
            self._stopped(run_id, log)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_all(), name="run-events-flush")

    def _stopped(self, run_id: str, log: _RunLog) -> None:
        """The run's stream ended here (requires_action, or a last status). Whatever it publishes
        next (resumed, maybe after another process queued it again) is numbered from a fresh block,
        into a fresh log: the streams following this one end with it."""
        log.next_id = log.end_id = 0
        log.active = False
        if self._logs.get(run_id) is log:
            del self._logs[run_id]

    def _want_block(self, run_id: str) -> None:
        self._want_blocks[run_id] = None
        if self._blocker is None or self._blocker.done():
            self._blocker = asyncio.create_task(self._fetch_blocks(), name="run-events-blocks")

    async def _fetch_blocks(self) -> None:
        """Blocks for every run waiting for one, in one round trip per batch of such runs."""
        delay = 0.05
        while self._want_blocks:
            runs = list(self._want_blocks)
            try:
                bases = await self._notifier.pool.fetch(NEXT_BLOCKS, len(runs))
            except Exception:
                logger.warning("could not number %d runs' stream events; retrying", len(runs))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            for run_id, row in zip(runs, bases, strict=True):
                del self._want_blocks[run_id]
                log = self._logs.get(run_id)
                if log is None or not log.waiting:
                    continue
                base = int(row[0])
                log.next_id, log.end_id = base, base + ID_BLOCK
                log.blocks.add(base // ID_BLOCK)
                waiting, log.waiting = log.waiting, []
                for n, event in enumerate(waiting):
                    if log.next_id == log.end_id:
                        log.waiting = waiting[n:]
                        self._want_block(run_id)
                        break
                    self._number(run_id, log, event)
                self._forget_if_idle(run_id, log)
            self._progress.set()
            self._progress = asyncio.Event()

    async def publish_in(self, conn: Transaction, run_id: str, events: list[Event]) -> None:
        if not events:
            return
        await self.flush(run_id)  # the run's earlier events first: their ids are lower
        ids: list[int] = []
        # Straight on the transaction's asyncpg connection: a Core execution costs more than the write.
        runner = await runner_for(conn)
        for start in range(0, len(events), ID_BLOCK):
            chunk = events[start : start + ID_BLOCK]
            records = await runner.fetch_sql(
                WRITE_NEW,
                (run_id, [e.name for e in chunk], [e.data.decode() for e in chunk], int(time.time())),
            )
            ids += [int(record[0]) for record in records]
        log = self._logs.get(run_id)
        if log is None:
            return  # nobody here streams or publishes it: the table and NOTIFY serve the others
        blocks = {event_id // ID_BLOCK for event_id in ids}
        if not on_commit(conn, lambda: self._committed(run_id, log, ids, events)):
            return  # a transaction of unknown end: its notifications will bring the events
        # Before the commit: its notifications, whenever they come, are echoes.
        log.blocks |= blocks

    async def publish_with(
        self, runner: Runner, run_id: str, events: list[Event], statement: Prepared, values: dict[str, Any]
    ) -> bool:
        """Runs ``statement``, made by ``postgres_sql.write_new_after`` and with its own ``values``,
        on ``runner`` outside any transaction, so that it commits by itself; ``events`` (fewer than
        ID_BLOCK) are the ones it writes. They are published as ``publish_in``'s are when its
        transaction commits, if the statement's gate let them be written; False if it did not (then
        none of them was). Their notifications may come before the statement's answer: a stream here
        then gets them both ways, and keeps one of each id."""
        await self.flush(run_id)  # the run's earlier events first: their ids are lower
        parameters = {
            **values,
            "event_run_id": run_id,
            "event_names": [e.name for e in events],
            "event_data": [e.data.decode() for e in events],
            "event_time": int(time.time()),
        }
        ids = [int(row["id"]) for row in await runner.rows(statement, parameters)]
        if not ids:
            return False
        log = self._logs.get(run_id)
        if log is not None:
            log.blocks |= {event_id // ID_BLOCK for event_id in ids}
            self._committed(run_id, log, ids, events)
        return True

    def _committed(self, run_id: str, log: _RunLog, ids: list[int], events: list[Event]) -> None:
        log.events += [(event_id, event, True) for event_id, event in zip(ids, events, strict=True)]
        log.wake()
        if log.active:
            # What the run publishes next comes after these: the rest of their block.
            log.next_id, log.end_id = ids[-1] + 1, (ids[-1] // ID_BLOCK + 1) * ID_BLOCK
        if any(ends_stream(event) for event in events):
            self._stopped(run_id, log)

    async def flush(self, run_id: str | None = None) -> None:
        """Returns once every event published before the call (of ``run_id`` only, when given) is
        numbered, in the table and notified, without waiting for events published meanwhile. A
        run's own events are all its ids need ordering against: under load the flusher is always
        writing other runs' deltas, and waiting for those would hold every run's status change for
        a round trip."""
        while True:
            progress = self._progress
            if run_id is None:
                waiting = bool(self._want_blocks)
                target = self._published
            else:
                log = self._logs.get(run_id)
                waiting = log is not None and bool(log.waiting)
                target = self._newest.get(run_id, 0)
            if not waiting and self._written >= target:
                return
            if self._written < target and (self._flusher is None or self._flusher.done()):
                self._flusher = asyncio.create_task(self._flush_all(), name="run-events-flush")
            await progress.wait()

    async def _flush_all(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            delay = 0.05
            while True:
                try:
                    # The notifier's pool commits without waiting for a WAL flush (bus/notify.py).
                    await self._notifier.pool.execute(WRITE, *write_parameters(batch))
                    self._written += len(batch)
                    for _, run_id, _ in batch:
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

    # --- receiving --------------------------------------------------------------------------

    def _on_notify(self, payload: str) -> None:
        touched: set[str] = set()
        for line in payload.split("\n"):
            event_id, run_id, name, data = line.split("\t", 3)
            log = self._logs.get(run_id)
            if log is None:
                continue
            number = int(event_id)
            if number // ID_BLOCK in log.blocks:
                continue  # this process's own
            log.events.append((number, Event(name, data.encode()), bool(data)))
            if number >= log.next_id:
                # Another process published for it (a cancel): what this one publishes next comes after.
                log.next_id = log.end_id
            touched.add(run_id)
        for run_id in touched:
            self._logs[run_id].wake()

    async def _resync(self) -> None:
        """After a lost LISTEN connection: fetch what the logs may have missed."""
        for run_id, log in list(self._logs.items()):
            known = max((e[0] for e in log.events), default=0)
            for event_id, event in await self._fetch(run_id, known):
                log.events.append((event_id, event, True))
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
                    REPLAY, [run_id for run_id, _, _ in batch], [after for _, after, _ in batch]
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
        log = self._log(run_id)
        log.subscribers += 1
        try:
            # Registered before the replay, so nothing committed meanwhile is missed; ids dedupe. A
            # run created here, streamed by its creator (the usual case), has its whole log here.
            replayed = [] if log.whole else await self._fetch(run_id, after)
            seen = {event_id for event_id, _ in replayed}
            for n, (_, event) in enumerate(replayed):
                if ends_stream(event):
                    yield replayed[: n + 1]
                    return
            if replayed:
                yield replayed
            elif after > 0 and not log.whole and await self._stopped_by(run_id, after):
                return  # resumed past the run's last event, which ended it: nothing more will come
            position = 0
            while True:
                batch: list[tuple[int, Event]] = []
                while position < len(log.events):
                    event_id, event, whole = log.events[position]
                    position += 1
                    if event_id <= after or event_id in seen:
                        if event_id <= after and log.whole and ends_stream(event):
                            return  # the run stopped at or before the client's place: nothing to say
                        # Not news. Nor, in a log without the run's beginning, a sign that the run
                        # stopped: the replay (or ``_stopped_by``) asked the table that. Such a log
                        # may hold a late echo of this process's own stopping event of the run's
                        # earlier part (the requires_action before these tool outputs): notified after
                        # the log that published it was dropped, it came as another process's.
                        continue
                    seen.add(event_id)
                    if not whole:
                        event = Event(event.name, await self._fetch_one(event_id))
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
            self._forget_if_idle(run_id, log)

    def close(self, run_id: str) -> None:
        """The table keeps the log (retention is by age); this process's copy goes, once nobody
        here streams it."""
        log = self._logs.get(run_id)
        if log is not None:
            log.next_id = log.end_id = 0
            log.active = False
            self._forget_if_idle(run_id, log)

    async def _cleanup_loop(self) -> None:
        while True:
            await asyncio.sleep(CLEANUP_EVERY_SECONDS)
            try:
                await self._notifier.pool.execute(
                    "DELETE FROM run_events WHERE created_at < $1", int(time.time()) - self._retention
                )
            except Exception:
                logger.warning("run_events cleanup failed", exc_info=True)
