"""Writing what a run produces: its steps and assistant messages, and closing them when the run
stops. Used by the executor, the cancel path and the expiry sweeper."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Table, delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from openassistants import run_events
from openassistants.events import Event
from openassistants.ids import new_id
from openassistants.services.messages import message_to_wire
from openassistants.services.runs import step_to_wire
from openassistants.statuses import MessageStatus, RunStatus, StepStatus
from openassistants.storage import tables
from openassistants.storage.queries import insert_row, update_row, update_rows

M = tables.messages
S = tables.run_steps

#: How a stopped run closes what it left open: step status, its stamp, the message's reason.
STEP_END = {
    RunStatus.cancelled: (StepStatus.cancelled.value, "cancelled_at", "run_cancelled"),
    RunStatus.failed: (StepStatus.failed.value, "failed_at", "run_failed"),
    RunStatus.expired: (StepStatus.expired.value, "expired_at", "run_expired"),
}


def new_step(run: Mapping[str, Any], step_type: str, details: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": new_id("step"),
        "tenant_id": run["tenant_id"],
        "run_id": run["id"],
        "thread_id": run["thread_id"],
        "assistant_id": run["assistant_id"],
        "created_at": int(time.time()),
        "type": step_type,
        "status": StepStatus.in_progress.value,
        "step_details": details,
        "last_error": None,
        "usage": None,
        "metadata": {},
        "expired_at": None,
        "cancelled_at": None,
        "failed_at": None,
        "completed_at": None,
    }


def new_assistant_message(run: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": new_id("message"),
        "tenant_id": run["tenant_id"],
        "thread_id": run["thread_id"],
        "created_at": int(time.time()),
        "role": "assistant",
        "status": MessageStatus.in_progress.value,
        "content": [],
        "attachments": [],
        "metadata": {},
        "assistant_id": run["assistant_id"],
        "run_id": run["id"],
        "completed_at": None,
        "incomplete_at": None,
        "incomplete_details": None,
    }


@dataclass(frozen=True)
class Reply:
    """A turn's text message and its message_creation step, made before the model answers."""

    message: dict[str, Any]
    step: dict[str, Any]

    @classmethod
    def new(cls, run: Mapping[str, Any]) -> Reply:
        message = new_assistant_message(run)
        details = {"type": "message_creation", "message_creation": {"message_id": message["id"]}}
        return cls(message, new_step(run, "message_creation", details))

    def rows(self) -> list[tuple[Table, dict[str, Any]]]:
        """What to insert (``queries.insert_rows``): the step, then the message."""
        return [(S, self.step), (M, self.message)]

    async def discard(self, conn: AsyncConnection) -> list[Any]:
        """Removes it, never shown (a ``Closing``: no events)."""
        await delete_message(conn, self.message, self.step)
        return []


async def insert_step(conn: AsyncConnection, step: dict[str, Any]) -> None:
    await insert_row(conn, S, step)


async def delete_message(conn: AsyncConnection, message: dict[str, Any], step: dict[str, Any]) -> None:
    """Removes a message (and its message_creation step) that was stored but never shown."""
    await conn.execute(delete(S).where(S.c.id == step["id"]))
    await conn.execute(delete(M).where(M.c.id == message["id"]))


async def update_step(conn: AsyncConnection, step: dict[str, Any], **changes: Any) -> None:
    step.update(changes)
    await update_row(conn, S, step["id"], changes)


def _step_completion(now: int | None, changes: dict[str, Any]) -> dict[str, Any]:
    completed_at = int(time.time()) if now is None else now
    return {**changes, "status": StepStatus.completed.value, "completed_at": completed_at}


def completing_step(step: dict[str, Any], *, now: int | None = None, **changes: Any) -> RowChanges:
    """``complete_step`` as row changes, with the step's event (a closing known ahead)."""
    step_changes = _step_completion(now, changes)
    step.update(step_changes)
    return RowChanges([(S, step["id"], step_changes)], [run_events.step_moved(step_to_wire(step))])


async def complete_step(
    conn: AsyncConnection, step: dict[str, Any], *, now: int | None = None, **changes: Any
) -> Event:
    """Completes ``step`` with ``changes`` (its final details, its usage); returns its event."""
    (event,) = await completing_step(step, now=now, **changes)(conn)
    return event


async def update_message(conn: AsyncConnection, message: dict[str, Any], **changes: Any) -> None:
    message.update(changes)
    await update_row(conn, M, message["id"], changes)


async def finish_message(
    conn: AsyncConnection,
    message: dict[str, Any],
    content: list[dict[str, Any]],
    *,
    now: int,
    incomplete_reason: str | None = None,
) -> None:
    """Closes an assistant message with its final ``content``: completed, or incomplete for
    ``incomplete_reason`` (a token limit, or the run stopping under it)."""
    await update_message(conn, message, **_message_end(content, now, incomplete_reason))


def _message_end(content: list[dict[str, Any]], now: int, incomplete_reason: str | None) -> dict[str, Any]:
    if incomplete_reason is None:
        return {"status": MessageStatus.completed.value, "completed_at": now, "content": content}
    return {
        "status": MessageStatus.incomplete.value,
        "incomplete_at": now,
        "incomplete_details": {"reason": incomplete_reason},
        "content": content,
    }


def finish_reply(
    message: dict[str, Any],
    step: dict[str, Any],
    content: list[dict[str, Any]],
    *,
    now: int,
    usage: dict[str, int],
    incomplete_reason: str | None = None,
    first: Sequence[Event] = (),
) -> RowChanges:
    """``finish_message`` and ``complete_step`` (with ``usage``) for a text reply and its step, as
    row changes (one statement on PostgreSQL: ``queries.update_rows``), and their events after
    ``first``: the message's, then the step's."""
    message_changes = _message_end(content, now, incomplete_reason)
    step_changes = _step_completion(now, {"usage": usage})
    message.update(message_changes)
    step.update(step_changes)
    return RowChanges(
        [(M, message["id"], message_changes), (S, step["id"], step_changes)],
        [
            *first,
            run_events.message_moved(message_to_wire(message)),
            run_events.step_moved(step_to_wire(step)),
        ],
    )


@dataclass(frozen=True)
class RowChanges:
    """A ``Closing`` (services/run_status.py) known before it is made: rows to change, and the events
    saying so. Having nothing to read first, it can go in the statement that ends its run
    (services/run_end.py); elsewhere it is made as any closing."""

    #: A table, a row id and its changes each, as ``queries.update_rows`` takes them.
    updates: list[tuple[Table, str, dict[str, Any]]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    async def __call__(self, conn: AsyncConnection) -> list[Event]:
        await update_rows(conn, self.updates)
        return list(self.events)


async def close_open_work(
    conn: AsyncConnection, run_id: str, outcome: RunStatus
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Ends the run's in-progress steps and messages for a run that stopped with ``outcome``
    (cancelled, failed or expired). Returns the closed steps and messages, for their events."""
    step_status, stamp, reason = STEP_END[outcome]
    now = int(time.time())
    steps: list[dict[str, Any]] = []
    for step in await _in_progress(conn, S, run_id, StepStatus.in_progress.value):
        await update_step(conn, step, status=step_status, **{stamp: now})
        steps.append(step)
    messages: list[dict[str, Any]] = []
    for message in await _in_progress(conn, M, run_id, MessageStatus.in_progress.value):
        content = message["content"] or await _streamed_content(conn, run_id, message["id"])
        await finish_message(conn, message, content, now=now, incomplete_reason=reason)
        messages.append(message_to_wire(message))
    return steps, messages


async def _in_progress(conn: AsyncConnection, table: Table, run_id: str, status: str) -> list[dict[str, Any]]:
    """The run's steps or messages still in ``status``, as dicts to update."""
    rows = await conn.execute(select(table).where(table.c.run_id == run_id, table.c.status == status))
    return [dict(row) for row in rows.mappings()]


async def _streamed_content(conn: AsyncConnection, run_id: str, message_id: str) -> list[dict[str, Any]]:
    """The text a message had streamed when its executor died (it keeps content only in memory until
    the message ends): rebuilt from the event log, so clients get the text they saw — and always one
    text part, which the SDK's stream helpers need to close the message they were building."""
    events = tables.run_events
    rows = await conn.execute(
        select(events.c.data)
        .where(events.c.run_id == run_id, events.c.name == run_events.MESSAGE_DELTA)
        .order_by(events.c.id)
    )
    pieces = []
    for (data,) in rows:
        delta = orjson.loads(data)
        if delta.get("id") != message_id:
            continue
        for part in delta.get("delta", {}).get("content", []):
            if part.get("type") == "text":
                pieces.append(part.get("text", {}).get("value", ""))
    return [{"type": "text", "text": {"value": "".join(pieces), "annotations": []}}]
