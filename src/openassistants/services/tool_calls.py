"""A model turn's tool calls, and running the built-in ones.

Every built-in tool is one function with one signature (``BuiltinTool``): it gets the call and a
``ToolContext`` (what the executing process serves, the run, what the turn loaded, and a way to stream
the call's progress), and fills in the call's result and the text the model reads. ``BUILTINS`` finds
it by the type the call names. Function calls are the client's to run: the turn stops for them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from openassistants import run_events
from openassistants.events import Event
from openassistants.services.code_interpreter_tool import code_of, run_code
from openassistants.services.file_search_tool import FileSearchOptions, run_file_search
from openassistants.services.run_context import RunContext
from openassistants.services.turn_host import TurnHost

_EMPTY_RESULTS: dict[str, dict[str, Any]] = {"code_interpreter": {"input": "", "outputs": []}}


@dataclass
class ToolCall:
    id: str
    name: str = ""
    arguments: str = ""
    #: "function", or the built-in tool it calls ("file_search").
    type: str = "function"
    #: A built-in call's step object (e.g. its file_search results) and the text the model gets.
    result: dict[str, Any] | None = None
    output: str | None = None
    #: Files a code_interpreter call produced: sandbox name → file id.
    files: dict[str, str] = field(default_factory=dict)

    def to_step(self) -> dict[str, Any]:
        if self.type == "function":
            function = {"name": self.name, "arguments": self.arguments, "output": None}
            return {"id": self.id, "type": "function", "function": function}
        # Keys with a leading underscore are ours: kept for the next prompt, never sent on the wire.
        step: dict[str, Any] = {
            "id": self.id,
            "type": self.type,
            self.type: self.result or _EMPTY_RESULTS.get(self.type, {}),
            "_arguments": self.arguments,
            "_output": self.output or "",
        }
        if self.files:
            step["_files"] = self.files
        return step


@dataclass
class ToolContext:
    """What a built-in tool may use."""

    host: TurnHost
    run: Mapping[str, Any]
    #: What the turn loaded (vector stores, the code's input files), and what calls leave for the
    #: turn's message (images, files, citation sources).
    context: RunContext
    publish: Callable[[Event], None]
    #: The tool_calls step the call belongs to, for its deltas.
    step_id: str | None


#: Runs call number ``index`` of the turn, filling in ``call.result`` and ``call.output``.
BuiltinTool = Callable[[ToolContext, int, ToolCall], Awaitable[None]]


async def file_search(tools: ToolContext, index: int, call: ToolCall) -> None:
    options = FileSearchOptions.from_tools(tools.run["tools"])
    call.result, call.output = await run_file_search(
        tools.host.searcher,
        tools.context.vector_store_ids,
        call.arguments,
        options,
        tools.context.file_searches,
    )
    tools.context.file_searches += 1


async def code_interpreter(tools: ToolContext, index: int, call: ToolCall) -> None:
    code = code_of(call.arguments)
    host = tools.host
    assert host.blobs is not None, "an executing runtime always has a blob store"
    outcome = await run_code(
        host.kernels, host.db, host.blobs, tools.run, code, tools.context.code_input_file_ids
    )
    call.result = {"input": code, "outputs": outcome.outputs}
    call.output = outcome.text_for_model
    call.files = outcome.files
    tools.context.code_files.update(outcome.files)
    tools.context.pending_images += outcome.images
    tools.context.pending_files += outcome.files.values()
    if outcome.outputs and tools.step_id is not None:
        outputs = [{"index": i, **o} for i, o in enumerate(outcome.outputs)]
        call_outputs = {"index": index, "type": "code_interpreter", "code_interpreter": {"outputs": outputs}}
        tools.publish(run_events.step_delta(tools.step_id, [call_outputs]))


#: The built-in tools this server executes itself, by the type a call names.
BUILTINS: dict[str, BuiltinTool] = {"file_search": file_search, "code_interpreter": code_interpreter}


async def run_builtin_calls(tools: ToolContext, calls: Mapping[int, ToolCall]) -> None:
    """Runs the turn's built-in calls, one after another in the order the model made them."""
    for index in sorted(calls):
        call = calls[index]
        tool = BUILTINS.get(call.type)
        if tool is not None:
            await tool(tools, index, call)
