"""A run's limits hold whatever the model does: ``max_completion_tokens`` against a model that never
stops, and ``expires_at`` against a run still executing (its model call or its tool call)."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path

import openai
import pytest
from openai.lib.streaming import AsyncAssistantEventHandler
from openai.types.beta import AssistantStreamEvent

from openassistants.tokens import count_text
from tests.conftest import TENANT_A_KEY, ServerFactory, sdk_client
from tests.processes import ServerProcess, WorkerProcess, process_env, running
from tests.upstream import Endless, ScriptedUpstream, ToolCalls

#: Not a timing assertion: only a bound, so that a run that never ends fails its test.
NEVER_ENDS_S = 90


async def _stream(
    client: openai.AsyncOpenAI, model: str, tools: list[dict[str, str]] | None = None, **run: object
) -> tuple[list[AssistantStreamEvent], str]:
    """Streams a new run on a new thread to its end: its events and its thread's id."""
    assistant = await client.beta.assistants.create(model=model, tools=tools or [])  # type: ignore[arg-type]
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "go on forever"}])
    events: list[AssistantStreamEvent] = []
    # A run that never ends must fail the test, not hang it: far longer than any of these runs takes.
    async with (
        asyncio.timeout(NEVER_ENDS_S),
        client.beta.threads.runs.stream(
            thread_id=thread.id,
            assistant_id=assistant.id,
            event_handler=AsyncAssistantEventHandler(),
            **run,  # type: ignore[arg-type]
        ) as stream,
    ):
        async for event in stream:
            events.append(event)
    return events, thread.id


async def model_call_ended(upstream: ScriptedUpstream, model: str) -> None:
    """Waits until the server has closed its ``Endless`` model call(s) (bounded: a call that stays
    open fails the test)."""
    deadline = time.monotonic() + NEVER_ENDS_S
    while upstream.endless_open(model) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert upstream.endless_open(model) == 0, "the model call was never closed"


def _streamed_text(events: list[AssistantStreamEvent]) -> str:
    text = ""
    for event in events:
        if event.event == "thread.message.delta":
            for part in event.data.delta.content or []:
                if part.type == "text" and part.text is not None:
                    text += part.text.value or ""
    return text


async def test_model_ignoring_max_tokens_is_cut_at_max_completion_tokens(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, Endless())
    events, thread_id = await _stream(client, model, max_completion_tokens=256)
    names = [e.event for e in events]
    assert names[-3:] == ["thread.message.incomplete", "thread.run.step.completed", "thread.run.incomplete"]
    run = events[-1].data
    assert run.status == "incomplete"  # type: ignore[union-attr]
    assert run.incomplete_details is not None  # type: ignore[union-attr]
    assert run.incomplete_details.reason == "max_completion_tokens"  # type: ignore[union-attr]
    message = (await client.beta.threads.messages.list(thread_id)).data[0]
    assert message.status == "incomplete"
    assert message.incomplete_details is not None and message.incomplete_details.reason == "max_tokens"
    text = message.content[0].text.value  # type: ignore[union-attr]
    assert text == _streamed_text(events)
    assert 240 <= count_text(text) <= 256
    retrieved = await client.beta.threads.runs.retrieve(run.id, thread_id=thread_id)
    assert retrieved.status == "incomplete" and retrieved.usage is not None
    assert retrieved.usage.completion_tokens == count_text(text)
    steps = await client.beta.threads.runs.steps.list(run.id, thread_id=thread_id)
    assert [s.status for s in steps.data] == ["completed"]
    # The thread is free again, and the model's stream was closed.
    await client.beta.threads.messages.create(thread_id, role="user", content="enough")
    await model_call_ended(upstream, model)


async def test_run_still_streaming_at_expires_at_expires(
    server_factory: ServerFactory, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, Endless(delay=0.02))
    with server_factory(run_expiry_seconds=2) as server:
        async with sdk_client(server) as client:
            events, thread_id = await _stream(client, model)
            names = [e.event for e in events]
            assert names[-3:] == [
                "thread.message.incomplete",
                "thread.run.step.expired",
                "thread.run.expired",
            ]
            run = await client.beta.threads.runs.retrieve(events[-1].data.id, thread_id=thread_id)
            assert run.status == "expired" and run.expires_at is None
            message = (await client.beta.threads.messages.list(thread_id)).data[0]
            assert message.status == "incomplete"
            assert message.incomplete_details is not None
            assert message.incomplete_details.reason == "run_expired"
            assert message.content[0].text.value == _streamed_text(events)  # type: ignore[union-attr]
            await client.beta.threads.messages.create(thread_id, role="user", content="free again")
            await model_call_ended(upstream, model)


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed")
async def test_run_in_a_long_code_cell_at_expires_at_expires(
    server_factory: ServerFactory, upstream: ScriptedUpstream, model: str
) -> None:
    code = json.dumps({"code": "import time\ntime.sleep(120)"})
    upstream.script(model, ToolCalls([("code_interpreter", code)]))
    with server_factory(run_expiry_seconds=3, code_interpreter_timeout_seconds=120) as server:
        async with sdk_client(server) as client:
            events, thread_id = await _stream(client, model, tools=[{"type": "code_interpreter"}])
            assert [e.event for e in events][-2:] == ["thread.run.step.expired", "thread.run.expired"]
            steps = await client.beta.threads.runs.steps.list(events[-1].data.id, thread_id=thread_id)
            assert [s.status for s in steps.data] == ["expired"]
            assert len(upstream.requests(model)) == 1  # the model never got the cell's (missing) result


async def test_run_executed_by_a_worker_expires_and_is_deleted_cleanly_across_processes(
    pg_url: str, upstream: ScriptedUpstream, model: str, tmp_path: Path
) -> None:
    """PostgreSQL, an API process that executes nothing and a worker: the worker stops its run at
    ``expires_at``; and a thread deleted through the API process stops the worker's run on it."""
    other = f"{model}-deleted"
    upstream.script(model, Endless(delay=0.02))
    upstream.script(other, Endless(delay=0.02))
    env = process_env(
        data_dir=str(tmp_path),
        database_url=pg_url,
        api_keys=TENANT_A_KEY,
        llm_base_url=upstream.url,
        run_expiry_seconds="3",
    )
    api = ServerProcess(tmp_path, {**env, "OPENASSISTANTS_EXECUTE_RUNS": "false"})
    worker = WorkerProcess(tmp_path, env)
    with running(api, worker):
        async with openai.AsyncOpenAI(base_url=api.base_url, api_key=TENANT_A_KEY, max_retries=0) as client:
            events, _ = await _stream(client, model)
            assert [e.event for e in events][-1] == "thread.run.expired"
            await model_call_ended(upstream, model)

            assistant = await client.beta.assistants.create(model=other)
            thread = await client.beta.threads.create(messages=[{"role": "user", "content": "go"}])
            names = []
            async with (
                asyncio.timeout(NEVER_ENDS_S),
                client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as stream,
            ):
                async for event in stream:
                    names.append(event.event)
                    if names.count("thread.message.delta") == 1 and event.event == "thread.message.delta":
                        await client.beta.threads.delete(thread.id)
            assert names[-1] == "thread.run.cancelled"
            await model_call_ended(upstream, other)
    log = worker.log.read_text()
    assert "Traceback" not in log and "crashed" not in log
