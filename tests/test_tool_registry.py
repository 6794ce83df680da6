"""A new tool is one class and one registry line (``tools/registry.py``): this test's ``echo`` tool,
registered into the process of a server the test starts (test servers run in this process: uvicorn
in a thread), goes end to end
through the official SDK like a built-in one: accepted on an assistant, offered to the model, its call
run by the server and recorded in a run step, and its output in the model's next turn. Registered
only for the test: without it, ``echo`` is refused as before."""

from __future__ import annotations

import ast
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar, Literal

import openai
import pytest

from openassistants.schemas.common import RequestModel
from openassistants.tools.base import ServerTool, ToolCall, ToolContext
from openassistants.tools.registry import TOOLS
from tests.conftest import ServerFactory, sdk_client
from tests.upstream import Reply, ScriptedUpstream, ToolCalls


class EchoOptions(RequestModel):
    prefix: str = "echo: "


class EchoRequest(RequestModel):
    type: Literal["echo"]
    echo: EchoOptions | None = None


class Echo(ServerTool):
    """Says back the text the model gives it, after the assistant's ``prefix``."""

    type: ClassVar[str] = "echo"
    request_model = EchoRequest
    description = "Say the given text back."
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"text": {"type": "string"}},
        "required": ["text"],
    }

    async def execute(self, context: ToolContext, index: int, call: ToolCall) -> None:
        text = str(json.loads(call.arguments or "{}").get("text", ""))
        definition = next(t for t in context.run["tools"] if t["type"] == self.type)
        prefix = (definition.get("echo") or {}).get("prefix", "echo: ")
        call.result = {"text": text}
        call.output = prefix + text


@pytest.fixture
async def echo_client(server_factory: ServerFactory) -> AsyncIterator[openai.AsyncOpenAI]:
    """A client of a server of its own (its assistants with ``echo`` leave no other test's lists
    invalid), while ``echo`` is registered."""
    TOOLS.register(Echo())
    try:
        with server_factory() as server:
            async with sdk_client(server) as client:
                yield client
    finally:
        TOOLS.unregister("echo")


async def _create_echo_assistant(client: openai.AsyncOpenAI, model: str) -> Any:
    tools: Any = [{"type": "echo", "echo": {"prefix": "you said: "}}]
    return await client.beta.assistants.create(model=model, tools=tools)


async def test_an_unregistered_tool_type_is_refused(client: openai.AsyncOpenAI, model: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await _create_echo_assistant(client, model)
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["message"].startswith("Invalid value: 'echo'. Supported values are:")
    assert error["param"] == "tools[0].type"


async def test_a_registered_tool_runs_end_to_end(
    echo_client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    client = echo_client
    upstream.script(model, ToolCalls([("echo", json.dumps({"text": "hello"}))]), Reply("It said hello."))
    assistant = await _create_echo_assistant(client, model)
    assert [t.model_dump(exclude_none=True) for t in assistant.tools] == [
        {"type": "echo", "echo": {"prefix": "you said: "}}
    ]
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "echo hello"}])
    run = await client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed"

    # The step records the call as the tool shows it.
    raw = await client.beta.threads.runs.steps.with_raw_response.list(
        run.id, thread_id=thread.id, order="asc"
    )
    steps = raw.http_response.json()["data"]
    assert [s["type"] for s in steps] == ["tool_calls", "message_creation"]
    assert steps[0]["status"] == "completed"
    assert steps[0]["step_details"]["tool_calls"] == [
        {"id": "call_1", "type": "echo", "echo": {"text": "hello"}}
    ]

    # The model was offered the tool as a function, and its next turn saw the call and its output.
    first, second = upstream.requests(model)
    assert {
        "type": "function",
        "function": {"name": "echo", **{k: Echo.__dict__[k] for k in ("description", "parameters")}},
    } in first["tools"]
    call_turn, output_turn = second["messages"][-2:]
    assert call_turn["tool_calls"][0]["function"] == {"name": "echo", "arguments": '{"text": "hello"}'}
    assert output_turn == {"role": "tool", "tool_call_id": "call_1", "content": "you said: hello"}

    message = (await client.beta.threads.messages.list(thread.id, limit=1)).data[0]
    assert message.content[0].type == "text" and message.content[0].text.value == "It said hello."


#: The run engine's modules: they ask the registry, and name no built-in tool.
ENGINE = ("run_turn", "turn_calls", "turn_message", "run_context", "prompt", "runs", "executor")


def test_the_engine_names_no_built_in_tool() -> None:
    services = Path(__file__).resolve().parent.parent / "src" / "openassistants" / "services"
    named = [
        f"{module}.py:{node.lineno}: {node.value!r}"
        for module in ENGINE
        for node in ast.walk(ast.parse((services / f"{module}.py").read_text()))
        if isinstance(node, ast.Constant) and node.value in {"file_search", "code_interpreter"}
    ]
    assert named == []
