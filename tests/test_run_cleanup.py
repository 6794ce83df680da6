"""What a run leaves behind when it ends, or when its thread is deleted under it: nothing that grows.

Deleting a thread cancels its active run (streams get ``thread.run.cancelled`` and end, the model
call is closed, nothing is logged as a crash); an ended run's events are kept in memory (SQLite) no
longer, and in no larger amount, than the settings say."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path

import httpx
import openai
import pytest
from openai.types.beta import AssistantStreamEvent

from tests.conftest import TENANT_A_KEY
from tests.servers import make_settings, running_server
from tests.test_run_limits import NEVER_ENDS_S, model_call_ended
from tests.test_runs import WEATHER_TOOL
from tests.upstream import Endless, Reply, ScriptedUpstream, ToolCalls


def _server_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Errors the servers (running in threads of this process) logged."""
    main = threading.main_thread().ident
    return [
        r.getMessage()
        for r in caplog.records
        if r.thread != main and r.levelno >= logging.ERROR and r.name.startswith("openassistants")
    ]


async def _delete_during(
    client: openai.AsyncOpenAI, assistant_id: str, at_event: str
) -> tuple[list[AssistantStreamEvent], str]:
    """Streams a run on a new thread and deletes the thread at the run's first ``at_event``; returns
    every event the stream gave (it must end by itself) and the thread's id."""
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "hello"}])
    events: list[AssistantStreamEvent] = []
    async with (
        asyncio.timeout(NEVER_ENDS_S),
        client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant_id) as stream,
    ):
        async for event in stream:
            events.append(event)
            if event.event == at_event and [e.event for e in events].count(at_event) == 1:
                deleted = await client.beta.threads.delete(thread.id)
                assert deleted.deleted
    return events, thread.id


async def test_deleting_a_thread_mid_stream_cancels_its_run(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    upstream.script(model, Endless(delay=0.01))
    assistant = await client.beta.assistants.create(model=model)
    events, thread_id = await _delete_during(client, assistant.id, "thread.message.delta")
    assert events[-1].event == "thread.run.cancelled"
    assert events[-1].data.status == "cancelled"  # type: ignore[union-attr]
    await model_call_ended(upstream, model)
    with pytest.raises(openai.NotFoundError):
        await client.beta.threads.runs.retrieve(events[-1].data.id, thread_id=thread_id)
    assert _server_errors(caplog) == []


async def test_deleting_a_thread_before_the_first_token_leaves_no_crash(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str, caplog: pytest.LogCaptureFixture
) -> None:
    # With tools, the reply's message is stored only with its first token: after the thread is gone.
    caplog.set_level(logging.INFO)
    upstream.script(model, Reply("late answer", first_delay=0.5))
    assistant = await client.beta.assistants.create(model=model, tools=[WEATHER_TOOL])  # type: ignore[list-item]
    events, _ = await _delete_during(client, assistant.id, "thread.run.in_progress")
    assert events[-1].event == "thread.run.cancelled"
    # The server goes on serving runs, and logged no crash for the deleted one.
    upstream.script(model, Reply("next"))
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "again"}])
    run = await client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed"
    assert _server_errors(caplog) == []


async def test_deleting_a_thread_while_its_run_waits_for_tool_outputs(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    upstream.script(model, ToolCalls([("get_weather", "{}")]))
    assistant = await client.beta.assistants.create(model=model, tools=[WEATHER_TOOL])  # type: ignore[list-item]
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "weather?"}])
    run = await client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "requires_action"
    await client.beta.threads.delete(thread.id)
    with pytest.raises(openai.NotFoundError):
        await client.beta.threads.runs.retrieve(run.id, thread_id=thread.id)
    assert _server_errors(caplog) == []


# --- SQLite: ended runs' events in memory --------------------------------------------------------


async def _replayed(base: str, thread_id: str, run_id: str) -> list[str]:
    """The event names a resumed stream of an ended run replays."""
    url = f"{base}/v1/threads/{thread_id}/runs/{run_id}/events?after=0"
    headers = {"Authorization": f"Bearer {TENANT_A_KEY}"}
    async with httpx.AsyncClient() as http:
        body = (await http.get(url, headers=headers)).text
    return [line.removeprefix("event: ") for line in body.splitlines() if line.startswith("event: ")]


async def _one_run(client: openai.AsyncOpenAI, model: str) -> tuple[str, str]:
    assistant = await client.beta.assistants.create(model=model)
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    run = await client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed"
    return thread.id, run.id


async def test_sqlite_keeps_ended_runs_events_within_event_memory_mb(
    upstream: ScriptedUpstream, model: str, tmp_path: Path
) -> None:
    settings = make_settings(str(tmp_path), None, llm_base_url=upstream.url, event_memory_mb=0)
    with running_server(settings) as base:
        async with sdk_client_for(base) as client:
            thread_id, run_id = await _one_run(client, model)
            assert await _replayed(base, thread_id, run_id) == ["done"]


async def test_sqlite_keeps_ended_runs_events_within_event_retention_seconds(
    upstream: ScriptedUpstream, model: str, tmp_path: Path
) -> None:
    settings = make_settings(str(tmp_path), None, llm_base_url=upstream.url, event_retention_seconds=1)
    with running_server(settings) as base:
        async with sdk_client_for(base) as client:
            thread_id, run_id = await _one_run(client, model)
            replayed = await _replayed(base, thread_id, run_id)
            assert replayed[0] == "thread.run.created" and replayed[-2:] == ["thread.run.completed", "done"]
            await asyncio.sleep(1.5)  # the retention passes (what is tested here, not a wait for news)
            await _one_run(client, model)  # ended logs are forgotten as runs end
            assert await _replayed(base, thread_id, run_id) == ["done"]


def sdk_client_for(base: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=TENANT_A_KEY, max_retries=0)
