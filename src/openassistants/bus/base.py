"""What services and the HTTP layer need of the event bus, and nothing more.

A run's events are appended to its log, in order, each with an increasing id (the SSE ``id:`` a
client resumes from). Subscribers replay the log from any point and then follow it live. Starting and
stopping a bus is the composition root's business (``services/runtime.py``), not part of this.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from openassistants.events import Event

#: The caller's open write transaction (``Database.write``'s connection), which ``publish_in``
#: writes in.
Transaction = AsyncConnection


class EventBus(Protocol):
    def publish(self, run_id: str, event: Event) -> None:
        """Append ``event`` to the run's log (durably soon after, on PostgreSQL)."""

    async def publish_in(self, conn: Transaction, run_id: str, events: list[Event]) -> None:
        """Publish as part of the caller's open transaction: on PostgreSQL the events become
        visible, and are notified, exactly when it commits, so a status change and its events are
        never seen apart (and nothing another process publishes later can get an earlier id)."""

    async def flush(self, run_id: str) -> None:
        """Returns once every event of the run published so far is visible to every subscriber
        (before a transaction that will publish in it, so as not to wait inside it)."""

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
