"""Runs never get stuck: upstream errors and timeouts, expiry, and a server killed mid-run all end
in a defined status."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import TENANT_A_KEY, Server, ServerFactory, sdk_client
from tests.servers import free_port, temporary_postgres_database
from tests.test_runs import WEATHER_TOOL
from tests.upstream import Fail, Hang, Reply, ScriptedUpstream, ToolCalls


async def _run_once(client: openai.AsyncOpenAI, model: str) -> openai.types.beta.threads.Run:
    assistant = await client.beta.assistants.create(model=model)
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "hello"}])
    return await client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)


async def test_upstream_5xx_is_retried(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, Fail(502, times=2), Reply("recovered"))
    run = await _run_once(client, model)
    assert run.status == "completed"
    assert len(upstream.requests(model)) == 3


async def test_upstream_keeps_failing_fails_the_run(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, Fail(500, times=10))
    run = await _run_once(client, model)
    assert run.status == "failed" and run.failed_at is not None
    assert run.last_error is not None and run.last_error.code == "server_error"
    assert run.last_error.message == (
        f"Sorry, something went wrong. The model upstream at {upstream.url} (OPENASSISTANTS_LLM_BASE_URL) "
        "answered 500: scripted failure"
    )
    # Thread is unlocked: a new message can be added.
    await client.beta.threads.messages.create(run.thread_id, role="user", content="again?")


async def test_upstream_rate_limit(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, Fail(429, times=10))
    run = await _run_once(client, model)
    assert run.status == "failed"
    assert run.last_error is not None and run.last_error.code == "rate_limit_exceeded"
    # The hosted API's words, which frameworks (agency-swarm) match to decide to retry.
    assert run.last_error.message.startswith("Sorry, something went wrong. Rate limit reached: ")


async def test_upstream_rejects_the_prompt(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, Fail(400, message="model does not exist"))
    run = await _run_once(client, model)
    assert run.status == "failed"
    assert run.last_error is not None and run.last_error.code == "invalid_prompt"
    assert run.last_error.message.startswith("Sorry, something went wrong. The model upstream at ")
    assert run.last_error.message.endswith("answered 400: model does not exist")
    assert len(upstream.requests(model)) == 1  # a 400 is not retried
    # No reply began: no assistant message or step is left (they were stored with the run).
    messages = await client.beta.threads.messages.list(thread_id=run.thread_id)
    assert [m.role for m in messages.data] == ["user"]
    assert (await client.beta.threads.runs.steps.list(run_id=run.id, thread_id=run.thread_id)).data == []


async def test_failure_mid_stream_closes_message_and_stream(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    from tests.upstream import Disconnect

    upstream.script(model, Disconnect(after_chunks=3))
    assistant = await client.beta.assistants.create(model=model)
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "a longer message here"}])
    events = []
    async with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as stream:
        async for event in stream:
            events.append(event.event)
    assert events[-3:] == ["thread.message.incomplete", "thread.run.step.failed", "thread.run.failed"]
    message = (await client.beta.threads.messages.list(thread.id)).data[0]
    assert message.status == "incomplete"
    assert message.incomplete_details is not None and message.incomplete_details.reason == "run_failed"
    assert message.content[0].text.value  # type: ignore[union-attr]


async def test_silent_upstream_times_out(
    server_factory: ServerFactory, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, Hang(5))
    with server_factory(llm_read_timeout_seconds=0.3, llm_max_retries=0) as server:
        async with sdk_client(server) as client:
            run = await _run_once(client, model)
    assert run.status == "failed"
    assert run.last_error is not None and run.last_error.code == "server_error"
    assert run.last_error.message == (
        f"Sorry, something went wrong. The model upstream at {upstream.url} (OPENASSISTANTS_LLM_BASE_URL) "
        "timed out waiting for the reply."
    )


async def test_unanswered_function_call_expires(
    server_factory: ServerFactory, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, ToolCalls([("get_weather", "{}")]))
    with server_factory(run_expiry_seconds=1) as server:
        async with sdk_client(server) as client:
            assistant = await client.beta.assistants.create(model=model, tools=[WEATHER_TOOL])
            thread = await client.beta.threads.create(messages=[{"role": "user", "content": "go"}])
            run = await client.beta.threads.runs.create_and_poll(
                thread_id=thread.id, assistant_id=assistant.id
            )
            assert run.status == "requires_action"
            run = await _wait_for_status(client, run, "expired", within=10)
            assert run.expires_at is None
            steps = await client.beta.threads.runs.steps.list(run.id, thread_id=thread.id)
            assert steps.data[0].status == "expired" and steps.data[0].expired_at is not None
            with pytest.raises(openai.BadRequestError):
                await client.beta.threads.runs.submit_tool_outputs(
                    run_id=run.id,
                    thread_id=thread.id,
                    tool_outputs=[{"tool_call_id": "call_1", "output": "x"}],
                )
            await client.beta.threads.messages.create(thread.id, role="user", content="free again")


async def _wait_for_status(
    client: openai.AsyncOpenAI, run: openai.types.beta.threads.Run, status: str, within: float
) -> openai.types.beta.threads.Run:
    """Waits for a change that only time brings (expiry): bounded polling of the run."""
    deadline = time.monotonic() + within
    while run.status != status and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        run = await client.beta.threads.runs.retrieve(run.id, thread_id=run.thread_id)
    assert run.status == status
    return run


def _serve_process(port: int, data_dir: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "openassistants", "serve", "--port", str(port), "--data-dir", str(data_dir)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("server process exited")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError("server did not become healthy")


@contextmanager
def _process_env(backend: str, upstream: ScriptedUpstream) -> Iterator[dict[str, str]]:
    with ExitStack() as stack:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENASSISTANTS_")}
        env.update(
            OPENASSISTANTS_API_KEYS=TENANT_A_KEY,
            OPENASSISTANTS_LLM_BASE_URL=upstream.url,
            OPENASSISTANTS_ACCESS_LOG="false",
            # Short leases: on PostgreSQL the restarted server settles the dead one's run by lease.
            OPENASSISTANTS_RUN_LEASE_SECONDS="2",
        )
        if backend == "postgres":
            env["OPENASSISTANTS_DATABASE_URL"] = stack.enter_context(temporary_postgres_database())
        yield env


async def test_killed_server_leaves_no_run_in_progress(
    backend: str, upstream: ScriptedUpstream, model: str, tmp_path: Path
) -> None:
    upstream.script(model, Reply("slow " * 40, chunks=["slow "] * 40, delay=0.25), Reply("after restart"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with _process_env(backend, upstream) as env:
        process = _serve_process(port, tmp_path, env)
        try:
            _wait_healthy(url, process)
            server = Server(url=url, backend=backend)
            async with sdk_client(server) as client:
                assistant = await client.beta.assistants.create(model=model)
                thread = await client.beta.threads.create(messages=[{"role": "user", "content": "go"}])
                async with client.beta.threads.runs.stream(
                    thread_id=thread.id, assistant_id=assistant.id
                ) as stream:
                    async for event in stream:
                        if event.event == "thread.message.delta":
                            run_id = stream.current_run.id  # type: ignore[union-attr]
                            process.send_signal(signal.SIGKILL)
                            break
        finally:
            process.kill()
            process.wait()

        process = _serve_process(port, tmp_path, env)
        try:
            _wait_healthy(url, process)
            async with sdk_client(server) as client:
                run = await client.beta.threads.runs.poll(run_id, thread_id=thread.id)
                assert run.status == "failed"
                assert run.last_error is not None and run.last_error.code == "server_error"
                message = (await client.beta.threads.messages.list(thread.id)).data[0]
                assert message.status == "incomplete"
                # The thread is usable again.
                again = await client.beta.threads.runs.create_and_poll(
                    thread_id=thread.id, assistant_id=assistant.id
                )
                assert again.status == "completed"
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=15)


@pytest.mark.parametrize("cancel_while", ["requires_action"])
async def test_cancel_waiting_run(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str, cancel_while: str
) -> None:
    upstream.script(model, ToolCalls([("get_weather", "{}")]))
    assistant = await client.beta.assistants.create(model=model, tools=[WEATHER_TOOL])
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "go"}])
    run = await client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == cancel_while
    await client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
    run = await client.beta.threads.runs.poll(run.id, thread_id=thread.id)
    assert run.status == "cancelled"
