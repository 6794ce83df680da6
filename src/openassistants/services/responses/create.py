"""Creating a response: its thread (the conversation's, the previous response's, or a new one), its
input as thread messages and answered function calls, and its run, queued for the executor like
any other (services/run_actions.py starts it)."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from openassistants.errors import InvalidRequest, NotFound
from openassistants.ids import new_id
from openassistants.schemas.responses import (
    CodeInterpreterToolParam,
    FileSearchToolParam,
    ResponseCreate,
)
from openassistants.schemas.threads import ThreadCreate
from openassistants.services.attachments import check_files
from openassistants.services.lookup import load_conversation, load_thread
from openassistants.services.resources import check_tool_resources
from openassistants.services.responses import requests
from openassistants.services.responses.calls import answer_known_calls, replayed_steps
from openassistants.services.responses.hooks import NO_ASSISTANT
from openassistants.services.responses.ids import (
    call_item_id,
    response_not_found,
    run_id_of,
)
from openassistants.services.responses.inputs import (
    FunctionCall,
    FunctionOutput,
    Inputs,
    NewMessage,
    read_input,
)
from openassistants.services.responses.wire import ItemStatus, message_item, response_to_wire
from openassistants.services.run_actions import (
    _announce,
    _reply_ahead,
    _starting,
    start_claim,
    unstarted_run_fields,
)
from openassistants.services.runs import active_run_id
from openassistants.services.runtime import Runtime
from openassistants.services.threads import insert_thread
from openassistants.statuses import MessageStatus, RunStatus
from openassistants.storage import tables
from openassistants.storage.queries import insert_rows

R, S, M, T = tables.runs, tables.run_steps, tables.messages, tables.threads
RESPONSES = tables.responses


async def create_response(rt: Runtime, tenant: str, body: ResponseCreate) -> dict[str, Any]:
    """Stores and queues the response; returns it as created (``in_progress``, or ``queued`` in the
    background)."""
    if body.previous_response_id is not None and body.conversation is not None:
        raise InvalidRequest(
            "Mutually exclusive parameters: Ensure you are only providing one of: "
            "'previous_response_id' or 'conversation'.",
            param="conversation",
            code="mutually_exclusive_parameters",
        )
    if body.prompt is not None:
        raise InvalidRequest("Prompt templates are not available on this server.", param="prompt")
    if body.background and body.store is False:
        raise InvalidRequest(
            "A background response must be stored: 'store' cannot be false with 'background'.",
            param="store",
        )
    inputs = read_input(body.input)
    if not inputs.items and body.previous_response_id is None and body.conversation is None:
        raise InvalidRequest(
            "Missing required parameter: 'input'.", param="input", code="missing_required_parameter"
        )
    tools = requests.run_tools(body.tools or [])
    tool_choice = requests.run_tool_choice(body, tools)
    instructions = "\n\n".join(p for p in [body.instructions or "", *inputs.instructions] if p)
    async with _starting(rt) as start:
        async with rt.db.write(inline=True) as conn:
            thread_id, is_conversation, chain = await _thread_for(conn, tenant, body)
            await _check_free(conn, thread_id)
            await _use_tool_resources(conn, tenant, thread_id, body)
            run = _run_values(rt, tenant, thread_id, body, tools, tool_choice, instructions)
            claim = start_claim(run, start.claim)
            continuing = body.previous_response_id is not None or body.conversation is not None
            known = await answer_known_calls(conn, [*chain, thread_id], inputs, continuing=continuing)
            now = int(time.time())
            messages = await message_rows(conn, tenant, thread_id, inputs.messages, now)
            start_seq = await _newest_seq(conn, thread_id)
            if messages:
                await conn.execute(M.insert(), messages)
            seqs = await _seqs(conn, [m["id"] for m in messages])
            steps = replayed_steps(run, inputs, known, seqs, start_seq)
            stored = {
                "run_id": run["id"],
                "tenant_id": tenant,
                "thread_id": thread_id,
                "previous_response_id": body.previous_response_id,
                "conversation": is_conversation,
                "store": body.store is not False,
                "background": bool(body.background),
                "request": requests.echoed_request(body, body.instructions),
                "input_items": _input_items(inputs, messages, steps),
                "anchor_seq": max([start_seq, *seqs]),
                "chain_thread_ids": chain,
            }
            if steps:
                # The executor reads the steps of a run that has usage (services/executor.py).
                run["usage"] = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
            reply = None if steps else _reply_ahead(run, claim)
            rows = [(R, run | (claim or {})), *(reply.rows() if reply else [])]
            await insert_rows(conn, rows + [(S, step) for step in steps])
            await conn.execute(RESPONSES.insert(), [stored])
            await _announce(conn, rt, run)
        start.run, start.reply = run, reply
    return response_to_wire(run, stored, [])


async def _thread_for(
    conn: AsyncConnection, tenant: str, body: ResponseCreate
) -> tuple[str, bool, list[str]]:
    """The thread the response goes on, whether it is the client's conversation, and the threads
    of the chain it continues (a response after one that had no conversation gets a thread of its
    own, so that a chain can branch and its branches run at once, as hosted)."""
    if body.previous_response_id is not None:
        row = (
            (
                await conn.execute(
                    select(
                        RESPONSES.c.thread_id, RESPONSES.c.conversation, RESPONSES.c.chain_thread_ids
                    ).where(
                        RESPONSES.c.run_id == _run_of(body.previous_response_id),
                        RESPONSES.c.tenant_id == tenant,
                        RESPONSES.c.store.is_(True),
                    )
                )
            )
            .mappings()
            .first()
        )
        if row is None:
            raise response_not_found(body.previous_response_id, param="previous_response_id")
        if row["conversation"]:
            await load_thread(conn, tenant, row["thread_id"], lock=True)
            return row["thread_id"], True, []
        thread = await insert_thread(conn, tenant, ThreadCreate.model_validate({}))
        return str(thread["id"]), False, [*row["chain_thread_ids"], row["thread_id"]]
    conversation = body.conversation_id
    if conversation is not None:
        existing = await load_conversation(conn, tenant, conversation, lock=True)
        return str(existing["id"]), True, []
    thread = await insert_thread(conn, tenant, ThreadCreate.model_validate({}))
    return str(thread["id"]), False, []


def _run_of(response_id: str) -> str:
    try:
        return run_id_of(response_id)
    except NotFound:
        raise response_not_found(response_id, param="previous_response_id") from None


async def _check_free(conn: AsyncConnection, thread_id: str) -> None:
    run_id = await active_run_id(conn, thread_id)
    if run_id is not None:
        raise InvalidRequest(
            "Another response is in progress on this conversation; wait for it to finish.",
            param="conversation",
            code="conversation_locked",
        )


async def _use_tool_resources(
    conn: AsyncConnection, tenant: str, thread_id: str, body: ResponseCreate
) -> None:
    """file_search's vector stores and code_interpreter's files come with the tool here; the engine
    finds them on the thread (a conversation has no tool_resources of its own to show)."""
    resources: dict[str, Any] = {}
    for tool in body.tools or []:
        if isinstance(tool, FileSearchToolParam):
            resources["file_search"] = {"vector_store_ids": tool.vector_store_ids}
        elif isinstance(tool, CodeInterpreterToolParam) and not isinstance(tool.container, str):
            resources["code_interpreter"] = {"file_ids": tool.container.file_ids}
    if resources:
        await check_tool_resources(conn, tenant, resources)
        current = (await conn.execute(select(T.c.tool_resources).where(T.c.id == thread_id))).scalar() or {}
        await conn.execute(
            update(T).where(T.c.id == thread_id).values(tool_resources={**current, **resources})
        )


def _run_values(
    rt: Runtime,
    tenant: str,
    thread_id: str,
    body: ResponseCreate,
    tools: list[dict[str, Any]],
    tool_choice: str | dict[str, Any] | None,
    instructions: str,
) -> dict[str, Any]:
    now = int(time.time())
    return {
        "id": new_id("run"),
        "tenant_id": tenant,
        "thread_id": thread_id,
        "assistant_id": NO_ASSISTANT,
        "created_at": now,
        "status": RunStatus.queued.value,
        "model": body.model,
        "instructions": instructions,
        "additional_instructions": None,
        "tools": tools,
        "metadata": body.metadata or {},
        "temperature": body.temperature,
        "top_p": body.top_p,
        "max_prompt_tokens": None,
        "max_completion_tokens": body.max_output_tokens,
        "truncation_strategy": {"type": "auto", "last_messages": None},
        "tool_choice": tool_choice,
        "parallel_tool_calls": body.parallel_tool_calls is not False,
        "response_format": requests.run_response_format(body),
        "reasoning_effort": None,
        **unstarted_run_fields(now, rt.settings.run_expiry_seconds),
    }


async def message_rows(
    conn: AsyncConnection, tenant: str, thread_id: str, messages: list[NewMessage], now: int
) -> list[dict[str, Any]]:
    """The rows of messages added to a thread. Every file an ``input_image`` shows must be one of the
    tenant's: an unknown or another tenant's id is a 404, as in messages.create
    (attachments.check_message_files), rather than a reference to it stored in the tenant's thread."""
    shown = [
        part["image_file"]["file_id"]
        for message in messages
        for part in message.content
        if part["type"] == "image_file"
    ]
    await check_files(conn, tenant, shown)
    return [
        {
            "id": new_id("message"),
            "tenant_id": tenant,
            "thread_id": thread_id,
            "created_at": now,
            "role": message.role,
            "status": MessageStatus.completed.value,
            "content": message.content,
            "attachments": [],
            "metadata": {},
            "assistant_id": None,
            "run_id": None,
            "completed_at": now,
            "incomplete_at": None,
            "incomplete_details": None,
        }
        for message in messages
    ]


async def _newest_seq(conn: AsyncConnection, thread_id: str) -> int:
    statement = select(func.coalesce(func.max(M.c.seq), 0)).where(M.c.thread_id == thread_id)
    return int((await conn.execute(statement)).scalar() or 0)


async def _seqs(conn: AsyncConnection, message_ids: list[str]) -> list[int]:
    """The seqs the database gave these messages, in their order."""
    if not message_ids:
        return []
    rows = await conn.execute(select(M.c.id, M.c.seq).where(M.c.id.in_(message_ids)))
    seq = {row[0]: int(row[1]) for row in rows}
    return [seq[i] for i in message_ids]


def _input_items(
    inputs: Inputs, messages: list[dict[str, Any]], steps: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The input as ``GET /v1/responses/{id}/input_items`` lists it, oldest first."""
    items: list[dict[str, Any]] = []
    stored = iter(messages)
    replayed = {
        call["id"]: call_item_id(step["id"], n)
        for step in steps
        for n, call in enumerate(step["step_details"]["tool_calls"])
    }
    for item in inputs.items:
        if isinstance(item, NewMessage):
            items.append(message_item(next(stored)))
        elif isinstance(item, FunctionCall):
            item_id = replayed.get(item.call_id) or "fc_" + new_id("call").removeprefix("call_")
            items.append(
                {
                    "id": item_id,
                    "type": "function_call",
                    "call_id": item.call_id,
                    "name": item.name,
                    "arguments": item.arguments,
                    "status": ItemStatus.completed,
                }
            )
        elif isinstance(item, FunctionOutput):
            items.append(
                {
                    "id": "fco_" + new_id("call").removeprefix("call_"),
                    "type": "function_call_output",
                    "call_id": item.call_id,
                    "output": item.output,
                    "status": ItemStatus.completed,
                }
            )
    return items
