"""``POST /v1/responses/input_tokens``: the prompt a response would send, counted with the tokenizer
the engine truncates with (tokens.py), without creating anything."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from openassistants.errors import NotFound
from openassistants.schemas.responses import ConversationRef, InputTokensCount
from openassistants.services.lookup import load_conversation
from openassistants.services.prompt import message_to_chat, tools_for_model
from openassistants.services.responses import requests
from openassistants.services.responses.hooks import chain_history
from openassistants.services.responses.ids import (
    response_not_found,
    run_id_of,
)
from openassistants.services.responses.inputs import NewMessage, read_input
from openassistants.services.runtime import Runtime
from openassistants.storage import tables
from openassistants.tokens import REPLY_PRIMING_TOKENS, count_chat_message, count_tools


async def count_input_tokens(rt: Runtime, tenant: str, body: InputTokensCount) -> dict[str, Any]:
    inputs = read_input(body.input)
    history: list[dict[str, Any]] = []
    threads = await _threads_of(rt, tenant, body)
    if threads:
        thread_id = threads[-1]
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
        history = [message_to_chat(m) for m in await chain_history(rt.db, threads, "", messages)]
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


async def _threads_of(rt: Runtime, tenant: str, body: InputTokensCount) -> list[str]:
    """The threads whose items come before the input (services/responses/hooks.chain_history)."""
    async with rt.db.read() as conn:
        if body.previous_response_id is not None:
            R = tables.responses
            try:
                run_id = run_id_of(body.previous_response_id)
            except NotFound:
                raise response_not_found(body.previous_response_id, param="previous_response_id") from None
            row = (
                await conn.execute(
                    select(R.c.thread_id, R.c.chain_thread_ids).where(
                        R.c.run_id == run_id, R.c.tenant_id == tenant
                    )
                )
            ).first()
            if row is None:
                raise response_not_found(body.previous_response_id, param="previous_response_id")
            return [*row[1], row[0]]
        conversation = (
            body.conversation.id if isinstance(body.conversation, ConversationRef) else body.conversation
        )
        if conversation is None:
            return []
        return [str((await load_conversation(conn, tenant, conversation))["id"])]
