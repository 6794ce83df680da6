"""The engine's only questions about responses, kept here so that they stay few and named:

- ``is_response_run``: a run made by the Responses API (it has no assistant). The turn asks it when
  the model calls functions: such a run completes, and the outputs come with the next response
  (services/run_turn.py), where an Assistants run waits in ``requires_action``.
- ``thread_history``: the prompt's history for such a run: the thread's messages (a chain's threads'
  first) with the earlier responses' function calls and their outputs where they happened, and the
  calls its input replays (services/run_context.py, which leaves those out of the run's own turns:
  ``is_replayed``); an Assistants run's prompt has the messages only. Its call entries carry their
  Chat Completions form, which services/prompt.message_to_chat passes through.

Besides these, the engine learned one thing for the Responses API that is not about responses: the
file_search tool applies a stored attribute filter (tools/file_search.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from openassistants.services.messages import message_to_wire
from openassistants.services.responses.calls import input_position
from openassistants.services.tool_turns import call_output, tool_calls_turn
from openassistants.storage import tables
from openassistants.storage.db import Database

#: The ``assistant_id`` of a response's run.
NO_ASSISTANT = ""


def is_response_run(run: Mapping[Any, Any]) -> bool:
    return bool(run["assistant_id"] == NO_ASSISTANT)


def is_replayed(step: Mapping[Any, Any]) -> bool:
    """A step holding calls a client replayed in its input (placed by ``thread_history``)."""
    return input_position(step) is not None


async def thread_history(
    db: Database, run: Mapping[Any, Any], messages: Sequence[Mapping[Any, Any]]
) -> tuple[list[dict[str, Any]], str]:
    """``thread.message`` dicts, oldest first, the earlier responses' calls among them as entries
    that carry their Chat Completions form (``chat``; services/prompt.message_to_chat). A response
    continuing a chain (``previous_response_id`` without a conversation) has the chain's threads'
    items first. With it, the response's ``truncation`` (``auto`` or ``disabled``)."""
    R = tables.responses
    async with db.read() as conn:
        row = (
            await conn.execute(select(R.c.chain_thread_ids, R.c.request).where(R.c.run_id == run["id"]))
        ).first()
    chain, request = (row[0], row[1]) if row is not None else (None, None)
    truncation = str((request or {}).get("truncation") or "disabled")
    return await chain_history(db, [*(chain or []), run["thread_id"]], run["id"], messages), truncation


async def chain_history(
    db: Database, thread_ids: list[str], run_id: str, messages: Sequence[Mapping[Any, Any]]
) -> list[dict[str, Any]]:
    """The history of ``thread_ids`` in that order; ``messages`` are the last thread's, ``run_id``
    the run whose own turns are left out."""
    M = tables.messages
    async with db.read() as conn:
        anchors, steps = await anchored_steps(conn, thread_ids)
        earlier = (
            (await conn.execute(select(M).where(M.c.thread_id.in_(thread_ids[:-1])).order_by(M.c.seq)))
            .mappings()
            .all()
            if len(thread_ids) > 1
            else []
        )
    rank = {thread_id: n for n, thread_id in enumerate(thread_ids)}
    everything = [*earlier, *messages]
    by_id = {m["id"]: m for m in everything}
    keyed: list[tuple[tuple[int, ...], dict[str, Any]]] = [
        ((rank[m["thread_id"]], m["seq"], 0, 0, 0), message_to_wire(m))
        for m in everything
        if m["run_id"] != run_id and m["run_id"] not in anchors
    ]
    for step in steps:
        replayed = input_position(step)
        if step["run_id"] == run_id and replayed is None:
            continue  # the run's own turns (run_context.run_turns)
        anchor = anchors[step["run_id"]] if replayed is None else replayed
        place = rank[step["thread_id"]]
        details = step["step_details"]
        if step["type"] == "message_creation":
            message = by_id.get(details["message_creation"]["message_id"])
            if message is not None and message["content"]:
                keyed.append(((place, anchor, 1, step["seq"], 0), message_to_wire(message)))
            continue
        calls = [c for c in details.get("tool_calls") or [] if call_output(c) is not None]
        if not calls:
            continue
        turn = tool_calls_turn(calls)
        keyed.append(((place, anchor, 1, step["seq"], 0), _entry(turn)))
        for n, call in enumerate(calls, start=1):
            result = {"role": "tool", "tool_call_id": call["id"], "content": call_output(call)}
            keyed.append(((place, anchor, 1, step["seq"], n), _entry(result)))
    keyed.sort(key=lambda pair: pair[0])
    return [entry for _, entry in keyed]


async def anchored_steps(
    conn: AsyncConnection, thread_ids: list[str]
) -> tuple[dict[str, int], Sequence[RowMapping]]:
    """The runs of the responses on ``thread_ids``, each with its anchor (the ``seq`` its items sort
    at, among the thread's messages), and those runs' steps, oldest first."""
    R, S = tables.responses, tables.run_steps
    anchors = dict(
        (await conn.execute(select(R.c.run_id, R.c.anchor_seq).where(R.c.thread_id.in_(thread_ids)))).all()
    )
    if not anchors:
        return anchors, []
    steps = await conn.execute(select(S).where(S.c.run_id.in_(list(anchors))).order_by(S.c.seq))
    return anchors, steps.mappings().all()


def _entry(chat: dict[str, Any]) -> dict[str, Any]:
    return {"role": chat["role"], "content": [], "chat": chat}
