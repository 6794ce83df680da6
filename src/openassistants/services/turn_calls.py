"""A model turn's tool calls: each announced and streamed into the turn's ``tool_calls`` step as the
model writes it, the server's run once the model's reply ended, and all recorded in the step. What a
call looks like, and what running it means, is its tool's (``tools/``, found in the registry by the
type the call is for); this module names no tool."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from openassistants import run_events
from openassistants.events import Event
from openassistants.ids import new_id
from openassistants.services import run_records as records
from openassistants.services.run_context import RunContext
from openassistants.services.run_status import Closing
from openassistants.services.runs import step_to_wire
from openassistants.storage.db import Database
from openassistants.tools.base import ToolCall, ToolContext, ToolHost
from openassistants.tools.registry import TOOLS
from openassistants.upstream.chat import ToolCallDelta


class TurnCalls:
    """The turn's tool_calls step (made at the first call) and its calls, by the model's index."""

    def __init__(
        self, db: Database, run: Mapping[str, Any], host: ToolHost, publish: Callable[[Event], None]
    ) -> None:
        self.db = db
        self.run = run
        self.host = host
        self.publish = publish
        self.step: dict[str, Any] | None = None
        self.calls: dict[int, ToolCall] = {}

    def ordered(self) -> list[ToolCall]:
        return [self.calls[i] for i in sorted(self.calls)]

    def details(self) -> dict[str, Any]:
        """The step's details, as far as the calls came."""
        return {"type": "tool_calls", "tool_calls": [TOOLS[c.type].recorded(c) for c in self.ordered()]}

    def for_client(self) -> list[ToolCall]:
        """The calls the client runs (functions): the run waits for their outputs."""
        return [c for c in self.ordered() if not TOOLS[c.type].runs_on_server]

    async def on_delta(self, context: RunContext, delta: ToolCallDelta) -> None:
        """A piece of a call: the step's first call makes the step; a new call is announced, more of
        one streams (as its tool shows it)."""
        if self.step is None:
            step = records.new_step(self.run, "tool_calls", {"type": "tool_calls", "tool_calls": []})
            async with self.db.write(inline=True) as conn:
                await records.insert_step(conn, step)
            self.step = step
            for event in run_events.step_created(step_to_wire(step)):
                self.publish(event)
        call = self.calls.get(delta.index)
        if call is None:
            # A name no offered tool has is a function call (the model's mistake, for the client to see).
            tool = context.tools_by_call_name.get(delta.name or "") or TOOLS["function"]
            call = ToolCall(delta.id or new_id("call"), delta.name or "", delta.arguments, tool.type)
            self.calls[delta.index] = call
            payload: dict[str, Any] | None = tool.announce(delta.index, call)
        else:
            call.arguments += delta.arguments
            payload = TOOLS[call.type].stream(delta.index, call, delta.arguments, delta.name)
        if payload is not None:
            self.publish(run_events.step_delta(self.step["id"], [payload]))

    async def run_on_server(self, context: RunContext) -> None:
        """Runs the calls the server runs, one after another in the order the model made them."""
        assert self.step is not None
        step_id = self.step["id"]

        def step_delta(entries: list[dict[str, Any]]) -> None:
            self.publish(run_events.step_delta(step_id, entries))

        for index in sorted(self.calls):
            call = self.calls[index]
            tool = TOOLS[call.type]
            if tool.runs_on_server:
                state = context.tools.by_type.get(call.type)
                tool_context = ToolContext(self.host, self.run, state, context.tools, step_delta)
                await tool.execute(tool_context, index, call)

    def completing(self, usage: dict[str, int]) -> Closing:
        """Completes the step (if the turn has one) with its calls as far as they came."""
        step, details = self.step, self.details()
        if step is None:
            return records.RowChanges()
        return records.completing_step(step, step_details=details, usage=usage)

    def recording(self, usage: dict[str, int]) -> Closing:
        """Records the calls in the step, which stays open for the client's outputs."""
        step, details = self.step, self.details()
        assert step is not None

        async def record(conn: AsyncConnection) -> list[Event]:
            await records.update_step(conn, step, step_details=details, usage=usage)
            return []

        return record

    def required_action(self) -> dict[str, Any]:
        """The run's ``required_action``: the calls the client is to run."""
        calls = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in self.for_client()
        ]
        return {"type": "submit_tool_outputs", "submit_tool_outputs": {"tool_calls": calls}}


def both(first: Closing, second: Closing) -> Closing:
    """One closing doing ``first``, then ``second``."""

    async def close(conn: AsyncConnection) -> list[Event]:
        return [*await first(conn), *await second(conn)]

    return close


async def unless_stopped(work: Awaitable[None], stop: Awaitable[object]) -> bool:
    """Does ``work`` (server-run tool calls, which may take long), unless ``stop`` comes first (a
    cancel, or the run's expiry): then ``work`` is cancelled (a code cell's kernel is killed) and
    False returned."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop)
    await asyncio.wait((task, stopped), return_when=asyncio.FIRST_COMPLETED)
    if not stopped.done():
        stopped.cancel()
        task.result()  # its exception, if it failed
        return True
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return False
