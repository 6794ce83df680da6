"""Stream events and their fan-out.

A run's events (``thread.run.created`` … ``thread.message.delta`` …) are appended, in order, to that
run's log and numbered from 1; that number is the SSE ``id:``, so a client can resume after the last
event it saw. Subscribers replay the log from any point and then follow it live. The log lives in
this process (``InProcessEventBus``); the boundary is the ``EventBus`` protocol so that a shared log
can replace it for several processes.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from openassistants.statuses import STREAM_STOP_STATUSES

#: The largest event id a client may resume after: ids are PostgreSQL ``bigint``s.
MAX_EVENT_ID = 2**63 - 1


def parse_event_id(value: str) -> int | None:
    """A ``Last-Event-ID`` as an event id; None unless it is 1 to 19 ASCII digits up to MAX_EVENT_ID
    (``str.isdigit`` also takes ``²``, which ``int`` does not)."""
    value = value.strip()
    if not (0 < len(value) <= len(str(MAX_EVENT_ID)) and value.isascii() and value.isdigit()):
        return None
    number = int(value)
    return number if number <= MAX_EVENT_ID else None


@dataclass(frozen=True, slots=True)
class Event:
    """One server-sent event: ``name`` is the SDK's event type, ``data`` its JSON payload."""

    name: str
    data: bytes

    @classmethod
    def of(cls, name: str, payload: Any) -> Event:
        return cls(name, _encode(payload))

    @classmethod
    def each(cls, names: tuple[str, ...], payload: Any) -> list[Event]:
        """One payload under several names (an object ``created``, then ``in_progress``), encoded once."""
        data = _encode(payload)
        return [cls(name, data) for name in names]


def _encode(payload: Any) -> bytes:
    # orjson's bytes keep the buffer they were written in, 4 KiB at least: a log of a run's events
    # (kept for resumes) held 4 KiB per 150-byte delta, 9/10 of a SQLite server's growth under load.
    # An exact copy costs a memcpy of the payload.
    return memoryview(orjson.dumps(payload)).tobytes()


def encode_sse(event: Event, event_id: int | None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return b"".join((head.encode(), b"event: ", event.name.encode(), b"\ndata: ", event.data, b"\n\n"))


DONE = b"event: done\ndata: [DONE]\n\n"


def error_event(code: str, message: str) -> Event:
    """The ``error`` event in the framing every SDK path raises on (spec notes, §5.5)."""
    inner = {"message": message, "type": "server_error", "param": None, "code": code}
    return Event.of("error", {"error": inner, **inner})


def ends_stream(event: Event) -> bool:
    """True for the run event after which a stream has nothing more to say."""
    prefix = "thread.run."
    if not event.name.startswith(prefix) or event.name.startswith("thread.run.step"):
        return False
    return event.name[len(prefix) :] in STREAM_STOP_STATUSES


class EventBus(Protocol):
    def publish(self, run_id: str, event: Event) -> None:
        """Append ``event`` to the run's log (durably soon after, on PostgreSQL)."""

    async def publish_in(self, conn: AsyncConnection, run_id: str, events: list[Event]) -> None:
        """Publish as part of the caller's open transaction: on PostgreSQL the events become
        visible, and are notified, exactly when it commits, so a status change and its events are
        never seen apart (and nothing another process publishes later can get an earlier id)."""

    async def flush(self, run_id: str | None = None) -> None:
        """Returns once every event published so far (of ``run_id`` only, when given) is visible to
        every subscriber."""

    async def last_id(self, run_id: str) -> int:
        """The id of the newest event in the run's log (0 when empty), this process's included."""

    def subscribe(self, run_id: str, after: int) -> AsyncIterator[list[tuple[int, Event]]]:
        """Events with id > ``after``: first those already logged, then live ones, until the stream
        ends (a requires_action or terminal run event) or the log is closed. Each item is every
        event there was when the subscriber looked (so a busy server writes them out together)."""

    async def replay(self, run_id: str, after: int) -> list[tuple[int, Event]]:
        """The logged events with id > ``after``, without waiting for more."""

    def close(self, run_id: str) -> None:
        """No more events for this run until it is queued again; the log is kept for late readers."""

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...


#: What an event costs in memory besides its payload (the Event, its list slot, the bytes header).
EVENT_OVERHEAD_BYTES = 128


@dataclass
class _RunLog:
    events: list[Event] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    closed_at: float | None = None
    #: Bytes its events hold, about (payloads plus EVENT_OVERHEAD_BYTES each).
    size: int = 0
    subscribers: int = 0


class InProcessEventBus:
    """Per-run logs in memory. A run's log is kept while it runs; after it stops, so that a stream
    can still be resumed, for ``retention_seconds`` at most and only while the stopped runs' logs
    hold at most ``max_bytes`` in all (the oldest are forgotten first): memory, unlike a table, is
    not a place to keep a day of every token (a resume after that replays nothing)."""

    def __init__(self, retention_seconds: float = 300.0, max_bytes: int = 32 << 20) -> None:
        self._logs: dict[str, _RunLog] = {}
        self._retention = retention_seconds
        self._max_bytes = max_bytes
        #: Bytes held by the logs of stopped runs.
        self._kept_bytes = 0
        #: (closed_at, run_id) in the order of closing, so that forgetting looks only at the oldest.
        #: Scanning every kept log on each close cost 67 µs a close with 1,000 logs kept, 133 µs with
        #: 2,000, and a busy server keeps retention x runs/s of them.
        self._closings: deque[tuple[float, str]] = deque()

    def _log(self, run_id: str) -> _RunLog:
        log = self._logs.get(run_id)
        if log is None:
            log = self._logs[run_id] = _RunLog()
        return log

    def publish(self, run_id: str, event: Event) -> None:
        log = self._log(run_id)
        log.events.append(event)
        if log.closed_at is not None:  # reopened (a run resumed): no longer a stopped run's log
            self._kept_bytes -= log.size
            log.closed_at = None
        log.size += len(event.data) + EVENT_OVERHEAD_BYTES
        # Wake every waiter, then arm a fresh event for the next publish.
        log.changed.set()
        log.changed = asyncio.Event()

    async def last_id(self, run_id: str) -> int:
        log = self._logs.get(run_id)
        return len(log.events) if log else 0

    async def flush(self, run_id: str | None = None) -> None:
        pass  # delivered as published

    async def publish_in(self, conn: AsyncConnection, run_id: str, events: list[Event]) -> None:
        # One process: nothing can interleave before the caller's commit returns.
        for event in events:
            self.publish(run_id, event)

    async def replay(self, run_id: str, after: int) -> list[tuple[int, Event]]:
        log = self._logs.get(run_id)
        events = log.events if log else []
        return [(i + 1, e) for i, e in enumerate(events) if i + 1 > after]

    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    async def subscribe(self, run_id: str, after: int) -> AsyncIterator[list[tuple[int, Event]]]:
        log = self._log(run_id)
        log.subscribers += 1
        position = after
        try:
            while True:
                if position < len(log.events):
                    batch: list[tuple[int, Event]] = []
                    while position < len(log.events):
                        event = log.events[position]
                        position += 1
                        batch.append((position, event))
                        if ends_stream(event):
                            yield batch
                            return
                    yield batch
                    continue
                if log.closed_at is not None:
                    return
                await log.changed.wait()
        finally:
            log.subscribers -= 1
            # A log made only for subscribers (of a run gone quiet: forgotten, or never here).
            if not (log.events or log.subscribers) and self._logs.get(run_id) is log:
                del self._logs[run_id]

    def close(self, run_id: str) -> None:
        log = self._logs.get(run_id)
        if log is not None:
            if log.closed_at is None:
                self._kept_bytes += log.size
            log.closed_at = time.monotonic()
            log.changed.set()
            log.changed = asyncio.Event()
            self._closings.append((log.closed_at, run_id))
        self._forget_old()

    def _forget_old(self) -> None:
        cutoff = time.monotonic() - self._retention
        while self._closings and (self._closings[0][0] < cutoff or self._kept_bytes > self._max_bytes):
            closed_at, run_id = self._closings.popleft()
            log = self._logs.get(run_id)
            # Only if it stayed closed since: a publish reopens a log, a later close queues it again.
            if log is not None and log.closed_at == closed_at:
                del self._logs[run_id]
                self._kept_bytes -= log.size
