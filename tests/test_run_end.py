"""services/run_end.py: on PostgreSQL an executor ends a run in one statement (its reply's message and
step, the run's compare-and-set, its events and their NOTIFYs). Its events reach streams here and in
another process (a second bus on the same database) with increasing ids, the run's last event is the
run as stored; and when the statement's gate is shut (a cancel came first, the metadata changed) it
writes nothing, and the run ends as the transaction always ended it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from sqlalchemy import select, text

from openassistants import run_events
from openassistants.bus.postgres import PostgresEventBus
from openassistants.events import Event
from openassistants.ids import new_id
from openassistants.services import run_end
from openassistants.services import run_records as records
from openassistants.services.run_status import RunStatusWriter
from openassistants.services.runs import run_to_wire, transition
from openassistants.statuses import RunStatus
from openassistants.storage import tables
from openassistants.storage.db import Database
from openassistants.storage.queries import insert_rows, update_row
from tests.test_pg_event_bus import _bus, _stop
from tests.test_prepared import migrated

TENANT = "t_run_end"
USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
#: The events of a reply completed as its run ends, before the run's own.
REPLY_END = ["thread.message.completed", "thread.run.step.completed"]


@pytest.fixture
async def db(pg_url: str) -> AsyncIterator[Database]:
    async for database in migrated(pg_url):
        yield database


@pytest.fixture
async def buses(db: Database) -> AsyncIterator[tuple[PostgresEventBus, PostgresEventBus]]:
    """This process's bus (the executor's) and another process's."""
    (here, here_notifier), (there, there_notifier) = await _bus(db), await _bus(db)
    yield here, there
    await _stop(here, here_notifier)
    await _stop(there, there_notifier)


async def _executing_run(db: Database) -> tuple[dict[str, Any], records.Reply]:
    """A run claimed and in progress, with its reply's message and step stored (as a run created
    here gets them), the row as its executor holds it."""
    now = int(time.time())
    thread = {"id": new_id("thread"), "tenant_id": TENANT, "created_at": now, "tool_resources": {}}
    run = {
        "id": new_id("run"),
        "tenant_id": TENANT,
        "thread_id": thread["id"],
        "assistant_id": "asst_end",
        "created_at": now,
        "status": RunStatus.in_progress.value,
        "model": "m",
        "instructions": "",
        "additional_instructions": None,
        "tools": [],
        "metadata": {"k": "v"},
        "temperature": None,
        "top_p": None,
        "max_prompt_tokens": None,
        "max_completion_tokens": None,
        "truncation_strategy": {"type": "auto", "last_messages": None},
        "tool_choice": None,
        "parallel_tool_calls": True,
        "response_format": None,
        "reasoning_effort": None,
        "required_action": None,
        "last_error": None,
        "incomplete_details": None,
        "usage": None,
        "started_at": now,
        "expires_at": now + 600,
        "cancelled_at": None,
        "failed_at": None,
        "completed_at": None,
        "incomplete_at": None,
        "worker_id": "w_end",
        "lease_expires_at": (now + 60) * 1000,
    }
    reply = records.Reply.new(run)
    async with db.write() as conn:
        await conn.execute(tables.threads.insert().values(**thread, metadata={}))
        await insert_rows(conn, [(tables.runs, run), *reply.rows()])
    return run, reply


def _closing(reply: records.Reply, text_: str = "Hello there") -> records.RowChanges:
    content = [{"type": "text", "text": {"value": text_, "annotations": []}}]
    return records.finish_reply(reply.message, reply.step, content, now=int(time.time()), usage=USAGE)


async def _collect(stream: AsyncIterator[list[tuple[int, Event]]]) -> list[tuple[int, Event]]:
    return [item async for batch in stream for item in batch]


async def _stored(db: Database, table: Any, row_id: str) -> dict[str, Any]:
    async with db.read() as conn:
        row = (await conn.execute(select(table).where(table.c.id == row_id))).mappings().one()
    return dict(row)


async def test_the_end_is_one_statement_with_the_events_every_process_streams(
    db: Database, buses: tuple[PostgresEventBus, PostgresEventBus]
) -> None:
    here, there = buses
    run, reply = await _executing_run(db)
    run_id = run["id"]
    local = asyncio.ensure_future(_collect(here.subscribe(run_id, 0)))
    remote = asyncio.ensure_future(_collect(there.subscribe(run_id, 0)))
    await asyncio.sleep(0.2)  # both subscribed
    here.publish(run_id, run_events.run_moved(RunStatus.in_progress, run_to_wire(run)))
    here.publish(run_id, run_events.message_delta(reply.message["id"], [{"index": 0, "type": "text"}]))

    ended = await run_end.end_at_once(
        db, here, run, {RunStatus.in_progress}, RunStatus.completed, _closing(reply), {"usage": USAGE}
    )

    assert ended
    got_here, got_there = await asyncio.wait_for(asyncio.gather(local, remote), timeout=10)
    names = [event.name for _, event in got_here]
    assert names == ["thread.run.in_progress", "thread.message.delta", *REPLY_END, "thread.run.completed"]
    ids = [event_id for event_id, _ in got_here]
    assert ids == sorted(set(ids))
    assert [(i, e.name, e.data) for i, e in got_there] == [(i, e.name, e.data) for i, e in got_here]
    assert [(i, e.name) for i, e in await there.replay(run_id, 0)] == [(i, e.name) for i, e in got_here]
    # Written together: the run as stored is its last event, its reply completed with it.
    stored_run = await _stored(db, tables.runs, run_id)
    assert stored_run["status"] == "completed" and stored_run["worker_id"] is None
    assert orjson.loads(got_here[-1][1].data) == run_to_wire(stored_run)
    message = await _stored(db, tables.messages, reply.message["id"])
    assert message["status"] == "completed" and message["content"][0]["text"]["value"] == "Hello there"
    step = await _stored(db, tables.run_steps, reply.step["id"])
    assert step["status"] == "completed" and step["usage"] == USAGE


async def _wait_for_lock_wait(db: Database) -> None:
    """Until a statement of the end waits for a row lock (the cancel's, not committed yet)."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%ended AS%'"
    )
    for _ in range(200):
        async with db.read() as conn:
            if (await conn.execute(query)).scalar():
                return
        await asyncio.sleep(0.025)
    raise AssertionError("the end never waited for the cancel's lock")


async def test_a_cancel_committed_while_the_reply_finishes_ends_the_run_cancelled(
    db: Database, buses: tuple[PostgresEventBus, PostgresEventBus]
) -> None:
    """The contract the transaction kept: the reply, streamed whole, is completed (its events go out),
    and the run ends ``cancelled``, never ``completed``; the one statement writes nothing of it."""
    here, _ = buses
    run, reply = await _executing_run(db)
    run_id = run["id"]
    stream = asyncio.ensure_future(_collect(here.subscribe(run_id, 0)))
    await asyncio.sleep(0.2)
    here.publish(run_id, run_events.run_moved(RunStatus.in_progress, run_to_wire(run)))
    writer = RunStatusWriter(db, here)
    async with db.write() as conn:
        # The cancel's compare-and-set (run_actions.cancel_run), its transaction still open.
        assert await transition(conn, run_id, {RunStatus.in_progress}, RunStatus.cancelling)
        ending = asyncio.ensure_future(
            writer.end(
                run_id,
                {RunStatus.in_progress},
                RunStatus.completed,
                closing=_closing(reply),
                run=run,
                usage=USAGE,
            )
        )
        await _wait_for_lock_wait(db)
    assert not await asyncio.wait_for(ending, timeout=10)

    events = await asyncio.wait_for(stream, timeout=10)
    assert [event.name for _, event in events] == [
        "thread.run.in_progress",
        *REPLY_END,
        "thread.run.cancelled",
    ]
    assert [(i, e.name) for i, e in await here.replay(run_id, 0)] == [(i, e.name) for i, e in events]
    stored_run = await _stored(db, tables.runs, run_id)
    assert stored_run["status"] == "cancelled" and stored_run["completed_at"] is None
    assert stored_run["usage"] is None  # the completion's fields were not written
    message = await _stored(db, tables.messages, reply.message["id"])
    assert message["status"] == "completed"
    step = await _stored(db, tables.run_steps, reply.step["id"])
    assert step["status"] == "completed"


async def test_a_cancel_committed_before_the_end_shuts_its_gate(
    db: Database, buses: tuple[PostgresEventBus, PostgresEventBus]
) -> None:
    here, _ = buses
    run, reply = await _executing_run(db)
    async with db.write() as conn:
        assert await transition(conn, run["id"], {RunStatus.in_progress}, RunStatus.cancelling)

    ended = await run_end.end_at_once(
        db, here, run, {RunStatus.in_progress}, RunStatus.completed, _closing(reply), {"usage": USAGE}
    )

    assert not ended
    assert await here.replay(run["id"], 0) == []
    assert (await _stored(db, tables.runs, run["id"]))["status"] == "cancelling"
    assert (await _stored(db, tables.messages, reply.message["id"]))["status"] == "in_progress"
    assert (await _stored(db, tables.run_steps, reply.step["id"]))["status"] == "in_progress"


async def test_metadata_changed_while_the_run_ran_is_in_its_last_event(
    db: Database, buses: tuple[PostgresEventBus, PostgresEventBus]
) -> None:
    """The executor's row has the metadata it was claimed with; the one statement would publish that,
    so it does nothing, and the transaction ends the run with the run as stored."""
    here, _ = buses
    run, reply = await _executing_run(db)
    run_id = run["id"]
    async with db.write() as conn:
        await update_row(conn, tables.runs, run_id, {"metadata": {"k": "changed"}})  # runs.update's write
    closing = _closing(reply)
    assert not await run_end.end_at_once(
        db, here, run, {RunStatus.in_progress}, RunStatus.completed, closing, {"usage": USAGE}
    )

    writer = RunStatusWriter(db, here)
    assert await writer.end(
        run_id, {RunStatus.in_progress}, RunStatus.completed, closing=closing, run=run, usage=USAGE
    )

    events = await here.replay(run_id, 0)
    assert [e.name for _, e in events] == [*REPLY_END, "thread.run.completed"]
    last = orjson.loads(events[-1][1].data)
    assert last["metadata"] == {"k": "changed"}
    assert last == run_to_wire(await _stored(db, tables.runs, run_id))
