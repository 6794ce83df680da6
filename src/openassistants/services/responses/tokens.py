"""``POST /v1/responses/input_tokens``: the prompt a response would send, counted with the tokenizer
the engine truncates with (tokens.py), without creating anything."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from openassistants.errors import NotFound
from openassistants.schemas.responses import InputTokensCount
from openassistants.services.lookup import load_thread
from openassistants.services.prompt import message_to_chat, tools_for_model
from openassistants.services.responses import requests
from openassistants.services.responses.hooks import thread_history
from openassistants.services.responses.ids import (
    conversation_not_found,
    response_not_found,
    run_id_of,
    thread_id_of,
)
from openassistants.services.responses.inputs import NewMessage, read_input
from openassistants.services.runtime import Runtime
from openassistants.storage import tables
from openassistants.tokens import REPLY_PRIMING_TOKENS, count_chat_message, count_tools


async def count_input_tokens(rt: Runtime, tenant: str, body: InputTokensCount) -> dict[str, Any]:
    inputs = read_input(body.input)
    history: list[dict[str, Any]] = []
    thread_id = await _thread_of(rt, tenant, body)
    if thread_id is not None:
        async with rt.db.read() as conn:
            messages = (
                (
                    await conn.execute(
                        select(tables.messages)
                        .where(tables.messages.c.thread_id == thread_id)
                        .order_by(tables.messages.c.seq)
                    )
                )
                .mappings()
                .all()
            )
        nobody = {"id": "", "thread_id": thread_id, "assistant_id": ""}
        history = [message_to_chat(m) for m in await thread_history(rt.db, nobody, messages)]
    system = "\n\n".join(p for p in [body.instructions or "", *inputs.instructions] if p)
    chat = [{"role": "system", "content": system}] if system else []
    chat += history
    for item in inputs.items:
        if isinstance(item, NewMessage):
            chat.append(message_to_chat({"role": item.role, "content": item.content}))
        else:
            chat.append({"role": "tool", "content": getattr(item, "output", getattr(item, "arguments", ""))})
    tools = tools_for_model(requests.run_tools(body.tools or []))
    total = REPLY_PRIMING_TOKENS + sum(count_chat_message(m) for m in chat) + count_tools(tools)
    return {"object": "response.input_tokens", "input_tokens": total}


async def _thread_of(rt: Runtime, tenant: str, body: InputTokensCount) -> str | None:
    async with rt.db.read() as conn:
        if body.previous_response_id is not None:
            R = tables.responses
            try:
                run_id = run_id_of(body.previous_response_id)
            except NotFound:
                raise response_not_found(body.previous_response_id, param="previous_response_id") from None
            thread_id = (
                await conn.execute(select(R.c.thread_id).where(R.c.run_id == run_id, R.c.tenant_id == tenant))
            ).scalar()
            if thread_id is None:
                raise response_not_found(body.previous_response_id, param="previous_response_id")
            return str(thread_id)
        conversation = (
            body.conversation
            if isinstance(body.conversation, str)
            else body.conversation.id
            if body.conversation
            else None
        )
        if conversation is None:
            return None
        try:
            return str((await load_thread(conn, tenant, thread_id_of(conversation)))["id"])
        except NotFound:
            raise conversation_not_found(conversation) from None
