"""What clients ask of runs: create (also with a new thread), retrieve, list, update, cancel, submit
tool outputs; and run steps. Each returns the wire object plus, where a stream may follow, the event
id the stream starts after."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from openassistants import run_events
from openassistants.errors import InvalidRequest
from openassistants.events import Event
from openassistants.ids import new_id
from openassistants.schemas.common import ListParams, response_format_to_wire, tool_to_wire
from openassistants.schemas.runs import (
    RunCreate,
    RunOptions,
    RunUpdate,
    SubmitToolOutputs,
    ThreadAndRunCreate,
)
from openassistants.schemas.threads import ThreadCreate
from openassistants.services import run_batches
from openassistants.services import run_records as records
from openassistants.services.attachments import index_attachments, queues_ingestion
from openassistants.services.lookup import load_assistant, load_run, load_step, load_thread
from openassistants.services.messages import message_values
from openassistants.services.resources import check_tool_resources, tool_resources_to_stored
from openassistants.services.run_context import offered_tools
from openassistants.services.run_records import Reply
from openassistants.services.runs import (
    ensure_no_active_run,
    run_to_wire,
    step_to_wire,
    transition,
)
from openassistants.services.runtime import Runtime
from openassistants.services.threads import insert_thread, thread_to_wire
from openassistants.statuses import RunStatus, StepStatus, is_terminal
from openassistants.storage import tables
from openassistants.storage.queries import insert_rows, list_body, page, update_row

logger = logging.getLogger("openassistants.runs")

R = tables.runs
S = tables.run_steps


def _run_values(rt: Runtime, tenant: str, thread_id: str, assistant: Any, body: RunOptions) -> dict[str, Any]:
    now = int(time.time())
    tools = [tool_to_wire(t) for t in body.tools] if body.tools is not None else assistant["tools"]
    instructions = body.instructions if body.instructions is not None else assistant["instructions"]
    truncation = (
        body.truncation_strategy.model_dump()
        if body.truncation_strategy is not None
        else {"type": "auto", "last_messages": None}
    )
    tool_choice: Any = body.tool_choice
    if tool_choice is not None and not isinstance(tool_choice, str):
        tool_choice = tool_choice.model_dump(exclude_none=True)
    response_format = (
        response_format_to_wire(body.response_format)
        if body.response_format is not None
        else assistant["response_format"]
    )
    return {
        "id": new_id("run"),
        "tenant_id": tenant,
        "thread_id": thread_id,
        "assistant_id": assistant["id"],
        "created_at": now,
        "status": RunStatus.queued.value,
        "model": body.model or assistant["model"],
        "instructions": instructions or "",
        "additional_instructions": getattr(body, "additional_instructions", None),
        "tools": tools,
        "metadata": body.metadata or {},
        "temperature": body.temperature if body.temperature is not None else assistant["temperature"],
        "top_p": body.top_p if body.top_p is not None else assistant["top_p"],
        "max_prompt_tokens": body.max_prompt_tokens,
        "max_completion_tokens": body.max_completion_tokens,
        "truncation_strategy": truncation,
        "tool_choice": tool_choice,
        "parallel_tool_calls": body.parallel_tool_calls,
        "response_format": response_format,
        "reasoning_effort": getattr(body, "reasoning_effort", None) or assistant["reasoning_effort"],
        **unstarted_run_fields(now, rt.settings.run_expiry_seconds),
    }


def _check_tool_choice(body: RunOptions, tools: list[dict[str, Any]]) -> None:
    choice = body.tool_choice
    if choice is None or isinstance(choice, str):
        return
    if choice.type == "function":
        names = {t["function"]["name"] for t in tools if t.get("type") == "function"}
        assert choice.function is not None
        if choice.function.name not in names:
            raise InvalidRequest(
                f"Invalid 'tool_choice': function '{choice.function.name}' is not among the run's tools.",
                param="tool_choice",
            )
    elif not any(t.get("type") == choice.type for t in tools):
        raise InvalidRequest(
            f"Invalid 'tool_choice': the run has no {choice.type} tool.", param="tool_choice"
        )


def _new_run(
    rt: Runtime, tenant: str, thread_id: str, assistant: Any, body: RunOptions, claim: dict[str, Any] | None
) -> tuple[dict[str, Any], Reply | None]:
    """The run's values as queued (what the client and the first events see), checked, and the reply
    it gets ahead (``_reply_ahead``)."""
    values = _run_values(rt, tenant, thread_id, assistant, body)
    _check_tool_choice(body, values["tools"])
    return values, _reply_ahead(values, start_claim(values, claim))


def start_claim(run: Mapping[str, Any], claim: dict[str, Any] | None) -> dict[str, Any] | None:
    """``claim`` (``offer_claim``'s columns, stored and adopted with ``run``), started no earlier than
    ``run`` was created: it was stamped before the run's values were made, maybe in the second before
    (tests/test_runs.py saw ``started_at < created_at`` once in a loaded run). Changed in place, so
    that the row adopted (``_starting``) is the row stored."""
    if claim is not None and claim["started_at"] < run["created_at"]:
        claim["started_at"] = run["created_at"]
    return claim


async def _insert_run(
    conn: AsyncConnection,
    rt: Runtime,
    tenant: str,
    thread_id: str,
    assistant: Mapping[str, Any],
    body: RunOptions,
    claim: dict[str, Any] | None,
) -> tuple[dict[str, Any], Reply | None]:
    """Stores the run, and its reply when it gets one ahead; returns ``_new_run``'s values and reply."""
    values, reply = _new_run(rt, tenant, thread_id, assistant, body, claim)
    await insert_rows(conn, [(R, values | (claim or {})), *(reply.rows() if reply else [])])
    return values, reply


async def _announce(
    conn: AsyncConnection, rt: Runtime, wire: dict[str, Any], *, thread: dict[str, Any] | None = None
) -> None:
    """A new run's first events (of ``wire``, the run as the client sees it), in the transaction that
    creates it: no executor can start the run, and so publish ``thread.run.in_progress``, before
    these are in the log."""
    events = [run_events.thread_created(thread)] if thread is not None else []
    events += run_events.run_created(wire)
    await rt.bus.publish_in(conn, wire["id"], events)


@dataclass
class _Start:
    """A run being created: the claim offered to it, and once its transaction has committed, its
    stored values and the reply stored ahead with it."""

    claim: dict[str, Any] | None
    run: dict[str, Any] | None = None
    reply: Reply | None = None


@asynccontextmanager
async def _starting(rt: Runtime) -> AsyncIterator[_Start]:
    """Around the transaction that queues a run: when this process's executor has room, the run is
    stored already claimed by it (``Executor.offer_claim``) and starts as soon as the transaction
    commits, without a claim transaction or a wake-up; otherwise an executor is woken to claim it.
    The caller sets ``run`` (and ``reply``) once the run is stored."""
    start = _Start(rt.executor.offer_claim())
    try:
        yield start
    finally:
        if start.claim is not None:
            rt.executor.adopt(start.run | start.claim if start.run else None, start.reply)
    if start.claim is None:
        await _wake(rt)


def _reply_ahead(run: dict[str, Any], claim: dict[str, Any] | None) -> Reply | None:
    """A run that starts at once here and can only answer in text (it has no tools) gets its reply's
    message and step stored with it, in the transaction creating it (on PostgreSQL, in the same
    statement): one transaction fewer before its first token (the executor's turn would store them
    while the model thinks). The turn removes them if the run ends before the model wrote any of it."""
    if claim is None or offered_tools(run):
        return None
    return Reply.new(run)


async def _wake(rt: Runtime) -> None:
    """Wake an executor. The run is already committed, so a failed wake-up costs only time: every
    executor also looks for queued runs every ``queue_poll_seconds``."""
    try:
        await rt.executor.wake()
    except Exception:
        logger.warning("could not wake the executors; they will find the run by polling", exc_info=True)


async def create_run(rt: Runtime, tenant: str, thread_id: str, body: RunCreate) -> tuple[dict[str, Any], int]:
    async with _starting(rt) as start:
        if start.claim is not None and not rt.db.is_sqlite and not body.additional_messages:
            # Two round trips, the second shared with concurrent creations (services/run_batches.py).
            assistant = await run_batches.load_for_run(rt.db, tenant, thread_id, body.assistant_id)
            run, reply = _new_run(rt, tenant, thread_id, assistant, body, start.claim)
            rows = [(R, run | start.claim), *(reply.rows() if reply else [])]
            wire = run_to_wire(run)
            await run_batches.store_run(rt, wire, rows)
        else:
            async with rt.db.write(inline=True) as conn:
                await load_thread(conn, tenant, thread_id, lock=True)
                await ensure_no_active_run(conn, thread_id, for_message=False)
                if body.additional_messages:
                    now = int(time.time())
                    await conn.execute(
                        tables.messages.insert(),
                        [message_values(tenant, thread_id, m, now) for m in body.additional_messages],
                    )
                    await index_attachments(conn, tenant, thread_id, body.additional_messages)
                assistant = await load_assistant(conn, tenant, body.assistant_id)
                run, reply = await _insert_run(conn, rt, tenant, thread_id, assistant, body, start.claim)
                wire = run_to_wire(run)
                await _announce(conn, rt, wire)
        start.run, start.reply = run, reply
    if queues_ingestion(messages=body.additional_messages):
        await rt.ingestor.wake()
    return wire, 0


async def create_thread_and_run(
    rt: Runtime, tenant: str, body: ThreadAndRunCreate
) -> tuple[dict[str, Any], int]:
    thread_body = body.thread or ThreadCreate.model_validate({})
    async with _starting(rt) as start:
        async with rt.db.write(inline=True) as conn:
            assistant = await load_assistant(conn, tenant, body.assistant_id)
            thread = await insert_thread(conn, tenant, thread_body)
            if body.tool_resources is not None:
                thread["tool_resources"] = tool_resources_to_stored(body.tool_resources)
                await check_tool_resources(conn, tenant, thread["tool_resources"])
                await conn.execute(
                    update(tables.threads)
                    .where(tables.threads.c.id == thread["id"])
                    .values(tool_resources=thread["tool_resources"])
                )
            run, reply = await _insert_run(conn, rt, tenant, thread["id"], assistant, body, start.claim)
            wire = run_to_wire(run)
            await _announce(conn, rt, wire, thread=thread_to_wire(thread))
        start.run, start.reply = run, reply
    if queues_ingestion(thread_body.tool_resources, thread_body.messages):
        await rt.ingestor.wake()
    return wire, 0


async def get_run(rt: Runtime, tenant: str, thread_id: str, run_id: str) -> dict[str, Any]:
    async with rt.db.read() as conn:
        return run_to_wire(await load_run(conn, tenant, thread_id, run_id))


async def list_runs(rt: Runtime, tenant: str, thread_id: str, params: ListParams) -> dict[str, Any]:
    async with rt.db.read() as conn:
        await load_thread(conn, tenant, thread_id)
        rows, has_more = await page(
            conn, R, {"thread_id": thread_id, "tenant_id": tenant}, **params.model_dump()
        )
    return list_body([run_to_wire(r) for r in rows], has_more)


async def update_run(
    rt: Runtime, tenant: str, thread_id: str, run_id: str, body: RunUpdate
) -> dict[str, Any]:
    async with rt.db.write(inline=True) as conn:
        await load_run(conn, tenant, thread_id, run_id)
        if "metadata" in body.model_fields_set:
            await update_row(conn, R, run_id, {"metadata": body.metadata or {}})
        return run_to_wire(await load_run(conn, tenant, thread_id, run_id))


async def cancel_run(rt: Runtime, tenant: str, thread_id: str, run_id: str) -> dict[str, Any]:
    sources = {RunStatus.queued, RunStatus.in_progress, RunStatus.requires_action}
    async with rt.db.write(inline=True) as conn:
        row = await load_run(conn, tenant, thread_id, run_id)
        if row["status"] == RunStatus.cancelling:
            return run_to_wire(row)
        if is_terminal(row["status"]) or not await transition(conn, run_id, sources, RunStatus.cancelling):
            current = await load_run(conn, tenant, thread_id, run_id)
            raise InvalidRequest(f"Cannot cancel run with status '{current['status']}'.")
        row = await load_run(conn, tenant, thread_id, run_id)
        wire = run_to_wire(row)
        await rt.bus.publish_in(conn, run_id, [run_events.run_moved(RunStatus.cancelling, wire)])
    await rt.executor.request_cancel(run_id)
    return wire


async def submit_tool_outputs(
    rt: Runtime, tenant: str, thread_id: str, run_id: str, body: SubmitToolOutputs
) -> tuple[dict[str, Any], int]:
    """Raises InvalidRequest unless the run waits for exactly these outputs; of two concurrent
    submissions exactly one is accepted (decided by the status compare-and-set)."""
    now = int(time.time())
    # Where the answer's stream starts: after everything the run has said so far.
    start = await rt.bus.last_id(run_id)
    async with rt.db.write(inline=True) as conn:
        row = await load_run(conn, tenant, thread_id, run_id)
        if row["status"] != RunStatus.requires_action:
            raise InvalidRequest(f'Runs in status "{row["status"]}" do not accept tool outputs.')
        pending = [c["id"] for c in row["required_action"]["submit_tool_outputs"]["tool_calls"]]
        given = [o.tool_call_id for o in body.tool_outputs]
        outputs = {o.tool_call_id: o.output or "" for o in body.tool_outputs}
        if set(outputs) != set(pending) or len(outputs) != len(given):
            raise InvalidRequest(
                f"Expected tool outputs for call_ids {pending}, got {given}", param="tool_outputs"
            )
        if not await transition(
            conn, run_id, {RunStatus.requires_action}, RunStatus.queued, required_action=None
        ):
            current = await load_run(conn, tenant, thread_id, run_id)
            raise InvalidRequest(f'Runs in status "{current["status"]}" do not accept tool outputs.')
        step_row = (
            (
                await conn.execute(
                    select(S)
                    .where(
                        S.c.run_id == run_id,
                        S.c.type == "tool_calls",
                        S.c.status == StepStatus.in_progress.value,
                    )
                    .order_by(S.c.seq.desc())
                    .limit(1)
                )
            )
            .mappings()
            .first()
        )
        step = dict(step_row) if step_row is not None else None
        events: list[Event] = []
        if step is not None:
            details = orjson.loads(orjson.dumps(step["step_details"]))
            for call in details["tool_calls"]:
                if call.get("type") == "function" and call["id"] in outputs:
                    call["function"]["output"] = outputs[call["id"]]
            events = [await records.complete_step(conn, step, now=now, step_details=details)]
        row = await load_run(conn, tenant, thread_id, run_id)
        wire = run_to_wire(row)
        events.append(run_events.run_moved(RunStatus.queued, wire))
        await rt.bus.publish_in(conn, run_id, events)
    await _wake(rt)
    return wire, start


async def list_steps(
    rt: Runtime, tenant: str, thread_id: str, run_id: str, params: ListParams, include_content: bool
) -> dict[str, Any]:
    async with rt.db.read() as conn:
        await load_run(conn, tenant, thread_id, run_id)
        rows, has_more = await page(conn, S, {"run_id": run_id, "tenant_id": tenant}, **params.model_dump())
    return list_body([step_to_wire(r, include_content=include_content) for r in rows], has_more)


async def get_step(
    rt: Runtime, tenant: str, thread_id: str, run_id: str, step_id: str, include_content: bool
) -> dict[str, Any]:
    async with rt.db.read() as conn:
        await load_run(conn, tenant, thread_id, run_id)
        row = await load_step(conn, tenant, run_id, step_id)
    return step_to_wire(row, include_content=include_content)


def unstarted_run_fields(now: int, expiry_seconds: int) -> dict[str, Any]:
    """The fields of a run row that nothing has happened to yet (a run and a response alike)."""
    return {
        "required_action": None,
        "last_error": None,
        "incomplete_details": None,
        "usage": None,
        "started_at": None,
        "expires_at": now + expiry_seconds,
        "cancelled_at": None,
        "failed_at": None,
        "completed_at": None,
        "incomplete_at": None,
    }
