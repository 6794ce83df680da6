"""Function calls across responses: the outputs an input gives for calls the thread's earlier
responses made (written into the steps that made them), and the calls a client replays from its own
history (stored as steps of the new response, each where it stood among the input's messages).

A replayed call's ``_input`` key (private: never on the wire) is the ``seq`` of the message it
follows, so that the prompt and the conversation's items keep the order the client gave."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from openassistants.errors import InvalidRequest
from openassistants.services import run_records as records
from openassistants.services.responses.inputs import FunctionCall, FunctionOutput, Inputs, NewMessage
from openassistants.statuses import StepStatus
from openassistants.storage import tables

S = tables.run_steps
RESPONSES = tables.responses


async def answer_known_calls(
    conn: AsyncConnection, thread_ids: list[str], inputs: Inputs, *, continuing: bool
) -> set[str]:
    """Writes the outputs given for the calls of the threads' responses; returns the ids of the
    calls they know. As the hosted API: an output needs its call, and (``continuing``) every call of
    the response continued needs its output."""
    steps = await _thread_call_steps(conn, thread_ids)
    known = {c["id"] for s in steps for c in s["step_details"]["tool_calls"] if c.get("type") == "function"}
    replayed = {c.call_id for c in inputs.calls if c.call_id not in known}
    outputs = {o.call_id: o.output for o in inputs.outputs if o.call_id not in replayed}
    for call_id in replayed:
        if call_id not in {o.call_id for o in inputs.outputs}:
            raise InvalidRequest(f"No tool output found for function call {call_id}.", param="input")
    for call_id in outputs:
        if call_id not in known:
            raise InvalidRequest(
                f"No tool call found for function call output with call_id {call_id}.", param="input"
            )
    for step in steps:
        details = orjson.loads(orjson.dumps(step["step_details"]))
        answered = [c for c in details["tool_calls"] if c.get("type") == "function" and c["id"] in outputs]
        for call in answered:
            call["function"]["output"] = outputs[call["id"]]
        if answered:
            await records.update_step(conn, step, step_details=details)
    if continuing and steps:
        last_run = steps[-1]["run_id"]
        for step in steps:
            for call in step["step_details"]["tool_calls"] if step["run_id"] == last_run else []:
                if call.get("type") == "function" and call["function"].get("output") is None:
                    raise InvalidRequest(
                        f"No tool output found for function call {call['id']}.", param="input"
                    )
    return known


async def _thread_call_steps(conn: AsyncConnection, thread_ids: list[str]) -> list[dict[str, Any]]:
    """The tool_calls steps of the threads' responses, oldest first."""
    rows = await conn.execute(
        select(S)
        .join(RESPONSES, RESPONSES.c.run_id == S.c.run_id)
        .where(RESPONSES.c.thread_id.in_(thread_ids), S.c.type == "tool_calls")
        .order_by(S.c.seq)
    )
    return [dict(r) for r in rows.mappings()]


def replayed_steps(
    run: Mapping[str, Any], inputs: Inputs, known: set[str], message_seqs: list[int], start_seq: int
) -> list[dict[str, Any]]:
    """A step of ``run`` for each run of consecutive replayed calls in the input, answered.
    ``message_seqs`` are the input's messages' seqs in order; ``start_seq`` the thread's newest
    before them."""
    outputs = {o.call_id: o.output for o in inputs.outputs}
    seqs = iter(message_seqs)
    position = start_seq
    groups: list[tuple[int, list[FunctionCall]]] = []
    for item in inputs.items:
        if isinstance(item, NewMessage):
            position = next(seqs)
        elif isinstance(item, FunctionCall) and item.call_id not in known:
            if not groups or groups[-1][0] != position:
                groups.append((position, []))
            groups[-1][1].append(item)
        elif isinstance(item, FunctionOutput):
            continue
    steps = []
    for after, calls in groups:
        details = {
            "type": "tool_calls",
            "tool_calls": [
                {
                    "id": c.call_id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments, "output": outputs[c.call_id]},
                    "_input": after,
                }
                for c in calls
            ],
        }
        step = records.new_step(run, "tool_calls", details)
        step.update(status=StepStatus.completed.value, completed_at=run["created_at"])
        steps.append(step)
    return steps


def input_position(step: Mapping[Any, Any]) -> int | None:
    """Where a replayed call's step stands (the seq of the message it follows), or None for a step
    the model made."""
    calls = step["step_details"].get("tool_calls") if step["type"] == "tool_calls" else None
    if not calls or "_input" not in calls[0]:
        return None
    position = calls[0]["_input"]
    return int(position) if isinstance(position, int) and not isinstance(position, bool) else 0
