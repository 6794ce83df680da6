"""Conversations: a thread under its ``conv_`` id, its metadata, and its items: the messages, and
the function and tool calls its responses made, each where it happened."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select

from openassistants.errors import InvalidRequest, NotFound
from openassistants.schemas.responses import ConversationCreate, ConversationUpdate, ItemListParams
from openassistants.schemas.threads import ThreadCreate, ThreadUpdate
from openassistants.services.lookup import load_conversation
from openassistants.services.responses.calls import answer_known_calls, input_position
from openassistants.services.responses.create import message_rows
from openassistants.services.responses.hooks import anchored_steps
from openassistants.services.responses.ids import conversation_id, thread_id_of
from openassistants.services.responses.inputs import FunctionOutput, NewMessage, read_input, read_message
from openassistants.services.responses.read import cited_filenames
from openassistants.services.responses.wire import call_items, call_output_item, message_item
from openassistants.services.runs import ensure_no_active_run
from openassistants.services.threads import delete_thread, insert_thread, update_thread
from openassistants.storage import tables
from openassistants.storage.db import Database
from openassistants.storage.queries import list_body

if TYPE_CHECKING:
    from openassistants.services.runtime import Runtime

M = tables.messages


def conversation_to_wire(thread: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": conversation_id(thread["id"]),
        "object": "conversation",
        "created_at": thread["created_at"],
        "metadata": thread["metadata"],
    }


async def create_conversation(db: Database, tenant: str, body: ConversationCreate) -> dict[str, Any]:
    inputs = read_input(body.items or [], param="items")
    _only_messages(inputs.items)
    async with db.write() as conn:
        thread = await insert_thread(conn, tenant, ThreadCreate.model_validate({"metadata": body.metadata}))
        rows = await message_rows(
            conn, tenant, thread["id"], _messages(body.items or []), thread["created_at"]
        )
        if rows:
            await conn.execute(M.insert(), rows)
    return conversation_to_wire(thread)


def _only_messages(items: Sequence[object]) -> None:
    if any(not isinstance(i, NewMessage) for i in items):
        raise InvalidRequest(
            "Only messages, and outputs of the conversation's function calls, can be added to a "
            "conversation.",
            param="items",
        )


def _messages(items: list[dict[str, Any]]) -> list[NewMessage]:
    """Every message item, system and developer ones included (a conversation keeps them)."""
    return [
        NewMessage(*read_message(item, f"items[{n}]"))
        for n, item in enumerate(items)
        if item.get("type", "message") == "message"
    ]


async def get_conversation(db: Database, tenant: str, conversation: str) -> dict[str, Any]:
    async with db.read() as conn:
        return conversation_to_wire(await load_conversation(conn, tenant, conversation))


async def update_conversation(
    db: Database, tenant: str, conversation: str, body: ConversationUpdate
) -> dict[str, Any]:
    async with db.read() as conn:
        await load_conversation(conn, tenant, conversation)
    update = ThreadUpdate.model_validate({"metadata": body.metadata})
    thread = await update_thread(db, tenant, thread_id_of(conversation), update)
    return conversation_to_wire(thread)


async def delete_conversation(rt: Runtime, tenant: str, conversation: str) -> dict[str, Any]:
    """Deletes the conversation's thread; a response still running on it is cancelled, as for threads."""
    async with rt.db.read() as conn:
        await load_conversation(conn, tenant, conversation)
    await delete_thread(rt, tenant, thread_id_of(conversation))
    return {"id": conversation, "object": "conversation.deleted", "deleted": True}


async def add_items(
    db: Database, tenant: str, conversation: str, items: list[dict[str, Any]]
) -> dict[str, Any]:
    """Adds messages, and outputs for the calls the conversation's responses made (as hosted, a
    conversation's next response then goes on from them)."""
    inputs = read_input(items, param="items")
    _only_messages([i for i in inputs.items if not isinstance(i, FunctionOutput)])
    async with db.write() as conn:
        thread = await load_conversation(conn, tenant, conversation, lock=True)
        await ensure_no_active_run(conn, thread["id"], for_message=True)
        if inputs.outputs:
            await answer_known_calls(conn, [thread["id"]], inputs, continuing=False)
        now = int(time.time())
        rows = await message_rows(conn, tenant, thread["id"], _messages(items), now)
        if rows:
            await conn.execute(M.insert(), rows)
        answered = {o.call_id for o in inputs.outputs}
        outputs = {
            i["call_id"]: i
            for i in await _items(conn, thread["id"])
            if i["type"] == "function_call_output" and i["call_id"] in answered
        }
    added = iter(rows)
    return list_body(
        [
            outputs[i.call_id] if isinstance(i, FunctionOutput) else message_item(next(added))
            for i in inputs.items
        ],
        False,
    )


async def _items(conn: Any, thread_id: str, *, include_results: bool = False) -> list[dict[str, Any]]:
    """Every item of the thread, oldest first (the ordering of hooks.thread_history)."""
    messages = (
        (await conn.execute(select(M).where(M.c.thread_id == thread_id).order_by(M.c.seq))).mappings().all()
    )
    anchors, steps = await anchored_steps(conn, [thread_id])
    by_id = {m["id"]: m for m in messages}
    names = await cited_filenames(conn, messages)
    keyed: list[tuple[tuple[int, ...], dict[str, Any]]] = [
        ((m["seq"], 0, 0, 0), message_item(m, names)) for m in messages if m["run_id"] not in anchors
    ]
    for step in steps:
        replayed = input_position(step)
        anchor = anchors[step["run_id"]] if replayed is None else replayed
        if step["type"] == "message_creation":
            message = by_id.get(step["step_details"]["message_creation"]["message_id"])
            if message is not None:
                keyed.append(((anchor, 1, step["seq"], 0), message_item(message, names)))
            continue
        for n, item in enumerate(call_items(step, include_results=include_results, replayed=True)):
            keyed.append(((anchor, 1, step["seq"], 2 * n), item))
        for index in range(len(step["step_details"].get("tool_calls") or [])):
            output = call_output_item(step, index)
            if output is not None:
                keyed.append(((anchor, 1, step["seq"], 2 * index + 1), output))
    keyed.sort(key=lambda pair: pair[0])
    return [item for _, item in keyed]


async def _conversation_items(
    db: Database, tenant: str, conversation: str, include_results: bool
) -> list[dict[str, Any]]:
    async with db.read() as conn:
        thread = await load_conversation(conn, tenant, conversation)
        return await _items(conn, thread["id"], include_results=include_results)


async def list_items(
    db: Database, tenant: str, conversation: str, params: ItemListParams, include_results: bool
) -> dict[str, Any]:
    items = await _conversation_items(db, tenant, conversation, include_results)
    if params.order == "desc":
        items.reverse()
    if params.after is not None:
        ids = [i["id"] for i in items]
        items = items[ids.index(params.after) + 1 :] if params.after in ids else []
    return list_body(items[: params.limit], len(items) > params.limit)


async def get_item(
    db: Database, tenant: str, conversation: str, item_id: str, include_results: bool
) -> dict[str, Any]:
    for item in await _conversation_items(db, tenant, conversation, include_results):
        if item["id"] == item_id:
            return item
    raise NotFound(f"Item with id '{item_id}' not found.", param=None)


async def delete_item(db: Database, tenant: str, conversation: str, item_id: str) -> dict[str, Any]:
    """Removes a message item; returns the conversation, as hosted."""
    async with db.write() as conn:
        thread = await load_conversation(conn, tenant, conversation, lock=True)
        await ensure_no_active_run(conn, thread["id"], for_message=True)
        found = (
            await conn.execute(select(M.c.id).where(M.c.id == item_id, M.c.thread_id == thread["id"]))
        ).scalar()
        if found is None:
            raise NotFound(f"Item with id '{item_id}' not found.", param=None)
        await conn.execute(delete(M).where(M.c.id == item_id))
    return conversation_to_wire(thread)
