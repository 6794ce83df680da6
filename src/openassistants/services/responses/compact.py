"""``POST /v1/responses/compact``: a long context made short. The model summarizes the context (the
chain before ``previous_response_id`` and the ``input``); the answer keeps the user's messages, as
hosted, and ends with one ``compaction`` item carrying the summary.

The item's ``encrypted_content`` is services/responses/compaction.py's; nothing is stored.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select

from openassistants.errors import InvalidRequest, ServiceUnavailable
from openassistants.ids import new_id
from openassistants.schemas.compact import ResponseCompact
from openassistants.services.prompt import message_to_chat
from openassistants.services.responses.compaction import encode_summary
from openassistants.services.responses.hooks import chain_history
from openassistants.services.responses.ids import response_not_found, run_id_of
from openassistants.services.responses.inputs import NewMessage, read_input
from openassistants.services.responses.wire import ItemStatus
from openassistants.services.runtime import Runtime
from openassistants.storage import tables
from openassistants.tokens import count_chat_message
from openassistants.upstream.chat import ChatRequest, TextDelta, UpstreamError, UsageReport

_SUMMARIZE = (
    "Summarize the conversation above for a model that will continue it without seeing it: keep every "
    "fact, decision, name, number, open question and the user's goals; leave out pleasantries. Write "
    "the summary only."
)


async def compact(rt: Runtime, tenant: str, body: ResponseCompact) -> dict[str, Any]:
    inputs = read_input(body.input)
    history = await _chain(rt, tenant, body.previous_response_id)
    if not history and not inputs.items:
        raise InvalidRequest(
            "Missing required parameter: 'input'.", param="input", code="missing_required_parameter"
        )
    system = "\n\n".join(p for p in [body.instructions or "", *inputs.instructions] if p)
    chat = [{"role": "system", "content": system}] if system else []
    chat += history
    users: list[dict[str, Any]] = [m for m in history if m["role"] == "user"]
    for item in inputs.items:
        if isinstance(item, NewMessage):
            message = message_to_chat({"role": item.role, "content": item.content})
            chat.append(message)
            if item.role == "user":
                users.append(message)
        else:
            text = getattr(item, "output", None) or getattr(item, "arguments", "")
            chat.append({"role": "user", "content": f"(tool {item.call_id}) {text}"})
    summary, usage = await _summarize(rt, body.model, chat)
    output = [_user_item(m) for m in users]
    output.append(
        {
            "id": "cmp_" + new_id("call").removeprefix("call_"),
            "type": "compaction",
            "encrypted_content": encode_summary(summary),
        }
    )
    return {
        "id": "resp_" + new_id("run").removeprefix("run_"),
        "object": "response.compaction",
        "created_at": int(time.time()),
        "output": output,
        "usage": usage,
    }


async def _chain(rt: Runtime, tenant: str, previous_response_id: str | None) -> list[dict[str, Any]]:
    if previous_response_id is None:
        return []
    R, M = tables.responses, tables.messages
    if not previous_response_id.startswith("resp_"):
        raise response_not_found(previous_response_id, param="previous_response_id")
    run_id = run_id_of(previous_response_id)
    async with rt.db.read() as conn:
        row = (
            await conn.execute(
                select(R.c.thread_id, R.c.chain_thread_ids).where(
                    R.c.run_id == run_id, R.c.tenant_id == tenant, R.c.store.is_(True)
                )
            )
        ).first()
        if row is None:
            raise response_not_found(previous_response_id, param="previous_response_id")
        threads = [*row[1], row[0]]
        messages = (
            (await conn.execute(select(M).where(M.c.thread_id == row[0]).order_by(M.c.seq))).mappings().all()
        )
    return [message_to_chat(m) for m in await chain_history(rt.db, threads, "", messages)]


async def _summarize(rt: Runtime, model: str, chat: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    request = ChatRequest(model=model, messages=[*chat, {"role": "user", "content": _SUMMARIZE}])
    pieces: list[str] = []
    reported = None
    try:
        async for event in rt.executor.chat.stream(request):
            if isinstance(event, TextDelta):
                pieces.append(event.text)
            elif isinstance(event, UsageReport):
                reported = event.usage
    except UpstreamError as error:
        if error.code == "invalid_prompt":
            raise InvalidRequest(error.message, param=None) from None
        raise ServiceUnavailable(error.message, param=None, code=error.code) from None
    summary = "".join(pieces)
    if reported is not None:
        prompt, completion = reported.prompt_tokens, reported.completion_tokens
    else:
        prompt = sum(count_chat_message(m) for m in request.messages)
        completion = count_chat_message({"role": "assistant", "content": summary})
    usage = {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }
    return summary, usage


def _user_item(message: dict[str, Any]) -> dict[str, Any]:
    content = message["content"]
    parts = (
        [{"type": "input_text", "text": content}]
        if isinstance(content, str)
        else [
            {"type": "input_text", "text": p["text"]}
            if p.get("type") == "text"
            else {"type": "input_image", "image_url": p["image_url"]["url"], "detail": "auto"}
            for p in content
        ]
    )
    return {
        "id": new_id("message"),
        "type": "message",
        "role": "user",
        "status": ItemStatus.completed,
        "content": parts,
    }
