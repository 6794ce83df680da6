"""The event bus of one process (SQLite): every run's log in memory, numbered from 1."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from openassistants.bus.base import Transaction
from openassistants.bus.waiters import Waiters
from openassistants.events import Event
from openassistants.run_events import ends_stream

#: What an event costs in memory besides its payload (the Event, its list slot, the bytes header).
EVENT_OVERHEAD_BYTES = 128


@dataclass
class _RunLog:
    events: list[Event] = field(default_factory=list)
    #: Subscribers waiting for the next publish (or the close).
    changed: Waiters = field(default_factory=Waiters)
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
        log.changed.wake()

    async def last_id(self, run_id: str) -> int:
        log = self._logs.get(run_id)
        return len(log.events) if log else 0

    async def flush(self, run_id: str) -> None:
        pass  # delivered as published

    async def publish_in(self, conn: Transaction, run_id: str, events: list[Event]) -> None:
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
            log.changed.wake()
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
