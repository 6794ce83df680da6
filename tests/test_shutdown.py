"""SIGTERM: a worker stops claiming, lets its running run finish, then exits."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.conftest import TENANT_A_KEY
from tests.processes import ServerProcess, WorkerProcess, process_env, running
from tests.upstream import Reply, ScriptedUpstream


@pytest.fixture
def api_and_worker(
    pg_url: str,
    upstream: ScriptedUpstream,
    tmp_path: Path,
) -> Iterator[tuple[ServerProcess, WorkerProcess]]:
    env = process_env(
        database_url=pg_url, api_keys=TENANT_A_KEY, llm_base_url=upstream.url, access_log="false"
    )
    api = ServerProcess(tmp_path / "api", {**env, "OPENASSISTANTS_EXECUTE_RUNS": "false"})
    worker = WorkerProcess(tmp_path / "worker", env)
    with running(api, worker):
        yield api, worker


async def test_sigterm_lets_running_runs_finish(
    api_and_worker: tuple[ServerProcess, WorkerProcess], upstream: ScriptedUpstream, model: str
) -> None:
    api, worker = api_and_worker
    chunks = [f"c{n} " for n in range(30)]
    upstream.script(model, Reply("".join(chunks), chunks=chunks, delay=0.05))
    async with openai.AsyncOpenAI(base_url=api.base_url, api_key=TENANT_A_KEY, max_retries=0) as client:
        assistant = await client.beta.assistants.create(model=model)
        thread = await client.beta.threads.create(messages=[{"role": "user", "content": "go"}])
        async with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as stream:
            async for event in stream:
                if event.event == "thread.message.delta":
                    assert worker.popen is not None
                    worker.popen.send_signal(signal.SIGTERM)
                    break
            await stream.until_done()
            run = await stream.get_final_run()
        assert run.status == "completed"
        assert worker.popen is not None
        assert worker.popen.wait(timeout=20) == 0
        message = (await client.beta.threads.messages.list(thread.id, limit=1)).data[0]
        assert message.content[0].text.value == "".join(chunks)  # type: ignore[union-attr]
