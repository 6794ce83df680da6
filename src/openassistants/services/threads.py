"""Threads: create (with initial messages), retrieve, update, delete (cascading to its messages and
runs, an active run cancelled), list."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from openassistants import run_events
from openassistants.ids import new_id
from openassistants.schemas.common import ListParams
from openassistants.schemas.threads import ThreadCreate, ThreadUpdate
from openassistants.services.attachments import create_tool_resources, index_attachments, queues_ingestion
from openassistants.services.lookup import load_thread
from openassistants.services.messages import message_values
from openassistants.services.resources import check_tool_resources, tool_resources_to_stored
from openassistants.services.runs import run_to_wire
from openassistants.services.wire_object import wire_object
from openassistants.statuses import ACTIVE_STATUSES, RunStatus
from openassistants.storage import tables
from openassistants.storage.db import Database
from openassistants.storage.queries import delete_remembering_cursors, list_body, page

if TYPE_CHECKING:
    from openassistants.services.claim_loop import Wakeable
    from openassistants.services.runtime import Runtime

T = tables.threads


_THREAD_COLUMNS = ("created_at", "tool_resources", "metadata")


def thread_to_wire(row: Mapping[str, Any]) -> dict[str, Any]:
    return wire_object("thread", row, _THREAD_COLUMNS)


async def insert_thread(conn: AsyncConnection, tenant: str, body: ThreadCreate) -> dict[str, Any]:
    """Write a thread and its initial messages on an open transaction; returns the thread row."""
    now = int(time.time())
    thread_id = new_id("thread")
    values: dict[str, Any] = {
        "id": thread_id,
        "tenant_id": tenant,
        "created_at": now,
        "tool_resources": await create_tool_resources(conn, tenant, body.tool_resources),
        "metadata": body.metadata or {},
    }
    await conn.execute(T.insert().values(values))
    if body.messages:
        await conn.execute(
            tables.messages.insert(),
            [message_values(tenant, thread_id, m, now) for m in body.messages],
        )
        await index_attachments(conn, tenant, thread_id, body.messages)
        # Attachments may have given the thread its vector store.
        values["tool_resources"] = (
            await conn.execute(select(T.c.tool_resources).where(T.c.id == thread_id))
        ).scalar()
    return values


async def create_thread(
    db: Database, tenant: str, body: ThreadCreate, *, ingestion: Wakeable
) -> dict[str, Any]:
    async with db.write() as conn:
        values = await insert_thread(conn, tenant, body)
    if queues_ingestion(body.tool_resources, body.messages):
        await ingestion.wake()
    return thread_to_wire(values)


async def get_thread(db: Database, tenant: str, thread_id: str) -> dict[str, Any]:
    async with db.reader() as reader:
        return thread_to_wire(await load_thread(reader, tenant, thread_id))


async def update_thread(db: Database, tenant: str, thread_id: str, body: ThreadUpdate) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if "metadata" in body.model_fields_set:
        changes["metadata"] = body.metadata or {}
    if "tool_resources" in body.model_fields_set:
        changes["tool_resources"] = tool_resources_to_stored(body.tool_resources)
    async with db.write() as conn:
        if "tool_resources" in changes:
            await load_thread(conn, tenant, thread_id)  # an unknown thread is the 404 to give
            await check_tool_resources(conn, tenant, changes["tool_resources"])
        if changes:
            await conn.execute(update(T).where(T.c.id == thread_id, T.c.tenant_id == tenant).values(changes))
        row = await load_thread(conn, tenant, thread_id)
    return thread_to_wire(row)


async def delete_thread(rt: Runtime, tenant: str, thread_id: str) -> dict[str, Any]:
    """Deletes the thread with its messages and runs. A run still active on it is cancelled: its
    streams get ``thread.run.cancelled`` (and end), and whoever executes it stops between two tokens
    rather than write into a thread that is gone."""
    async with rt.db.write() as conn:
        # Locked (PostgreSQL) so that no run starts on the thread while it goes.
        await load_thread(conn, tenant, thread_id, lock=True)
        active = await _cancel_active_runs(rt, conn, thread_id)
        # Explicit rather than relying on ON DELETE CASCADE, which SQLite only honours per connection.
        await conn.execute(delete(tables.messages).where(tables.messages.c.thread_id == thread_id))
        # Remembered, so that the deleted thread's id still works as a cursor of GET /v1/threads.
        await delete_remembering_cursors(conn, T, T.c.id == thread_id)
    for run_id, holder in active:
        await rt.executor.stop_deleted(run_id, holder)
    return {"id": thread_id, "object": "thread.deleted", "deleted": True}


async def _cancel_active_runs(
    rt: Runtime, conn: AsyncConnection, thread_id: str
) -> list[tuple[str, str | None]]:
    """Publishes ``thread.run.cancelled`` for the thread's active runs, in the transaction deleting
    them; returns them with the executor holding each (None when nobody executes it)."""
    R = tables.runs
    statuses = [s.value for s in ACTIVE_STATUSES]
    rows = (
        (await conn.execute(select(R).where(R.c.thread_id == thread_id, R.c.status.in_(statuses))))
        .mappings()
        .all()
    )
    now = int(time.time())
    for row in rows:
        cancelled = {**row, "status": RunStatus.cancelled.value, "cancelled_at": now, "required_action": None}
        await rt.bus.publish_in(
            conn, row["id"], [run_events.run_moved(RunStatus.cancelled, run_to_wire(cancelled))]
        )
    return [(row["id"], row["worker_id"]) for row in rows]


async def list_threads(db: Database, tenant: str, params: ListParams) -> dict[str, Any]:
    """The tenant's threads, newest first by default: an extension (the hosted API cannot list threads)."""
    async with db.reader() as reader:
        rows, has_more = await page(
            reader,
            T,
            {"tenant_id": tenant},
            limit=params.limit,
            order=params.order,
            after=params.after,
            before=params.before,
        )
    return list_body([thread_to_wire(r) for r in rows], has_more)
