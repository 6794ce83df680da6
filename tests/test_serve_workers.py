"""``openassistants serve --workers 2``: two server processes on one port (SO_REUSEPORT), on PostgreSQL.

Every request below goes out on a new connection (a new client), which the kernel hands to either
process: a run's cancel, its tool outputs and its resumed stream land on the process executing it or
on the other one, and must work the same. That both processes execute runs is checked through the
``runs`` table (an executor's ``worker_id`` holds its pid)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import openai
import pytest

from tests.conftest import TENANT_A_KEY
from tests.processes import ServerProcess, process_env
from tests.test_runs import WEATHER_TOOL
from tests.test_scale_out import _delta_text, _sse, submit_weather_and_finish
from tests.upstream import Reply, ScriptedUpstream, ToolCalls

HEADERS = {"Authorization": f"Bearer {TENANT_A_KEY}", "OpenAI-Beta": "assistants=v2"}
#: Runs per test: enough that both processes get some (each new connection is one coin toss: with 8,
#: all landed on one process about once in 128 runs, and a fresh-clone run met it).
RUNS = 16


def _children(pid: int) -> set[int]:
    return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


@pytest.fixture
def two_processes(pg_url: str, upstream: ScriptedUpstream, tmp_path: Path) -> Iterator[ServerProcess]:
    data = tmp_path / "data"
    env = process_env(
        data_dir=str(data),
        database_url=pg_url,
        api_keys=TENANT_A_KEY,
        llm_base_url=upstream.url,
        access_log="false",
    )
    server = ServerProcess(data, env)
    server.args += ["--workers", "2"]
    server.start()
    try:
        yield server
        children = _children(server.pid)
        assert len(children) == 2
    finally:
        server.stop()
    assert server.popen is not None and server.popen.returncode == 0
    for child in children:
        assert not Path(f"/proc/{child}").exists(), "a server process outlived serve"


def _fresh(server: ServerProcess) -> openai.AsyncOpenAI:
    """A client of its own: its connection goes to whichever process the kernel picks."""
    return openai.AsyncOpenAI(base_url=server.base_url, api_key=TENANT_A_KEY, max_retries=0)


async def _executors(pg_url: str, run_ids: list[str]) -> set[int]:
    """The pids of the processes holding these runs (while they execute)."""
    conn = await asyncpg.connect(pg_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        rows = await conn.fetch("SELECT worker_id FROM runs WHERE id = ANY($1::text[])", run_ids)
    finally:
        await conn.close()
    return {int(row["worker_id"].split("-")[-2]) for row in rows if row["worker_id"]}


async def test_cancel_and_resume_land_on_either_process(
    two_processes: ServerProcess, upstream: ScriptedUpstream, model: str, pg_url: str
) -> None:
    server = two_processes
    chunks = [f"w{n} " for n in range(60)]
    upstream.script(model, *[Reply("".join(chunks), chunks=chunks, delay=0.1)] * RUNS)
    async with _fresh(server) as setup:
        assistant = await setup.beta.assistants.create(model=model)
        threads = [
            (await setup.beta.threads.create(messages=[{"role": "user", "content": "go"}])).id
            for _ in range(RUNS)
        ]

    async def started(thread_id: str) -> list[tuple[int | None, str, str]]:
        """Start a streamed run and read it up to its first delta, then drop the connection."""
        seen = []
        async with httpx.AsyncClient(base_url=server.base_url, headers=HEADERS, timeout=30) as http:
            body = {"assistant_id": assistant.id, "stream": True}
            async with http.stream("POST", f"/threads/{thread_id}/runs", json=body) as response:
                assert response.status_code == 200
                async for event in _sse(response):
                    seen.append(event)
                    if event[1] == "thread.message.delta":
                        break
        return seen

    firsts = await asyncio.gather(*(started(t) for t in threads))
    run_ids = [json.loads(first[0][2])["id"] for first in firsts]
    assert await _executors(pg_url, run_ids) == _children(server.pid), "one process executed every run"

    async def cancel(thread_id: str, run_id: str) -> None:
        async with _fresh(server) as client:
            await client.beta.threads.runs.cancel(run_id, thread_id=thread_id)
        async with _fresh(server) as client:
            run = await client.beta.threads.runs.poll(run_id, thread_id=thread_id, poll_interval_ms=50)
        assert run.status == "cancelled"

    async def resume(thread_id: str, run_id: str, first: list[tuple[int | None, str, str]]) -> None:
        last_id = first[-1][0]
        async with httpx.AsyncClient(base_url=server.base_url, headers=HEADERS, timeout=30) as http:
            resumed = {"Last-Event-ID": str(last_id)}
            path = f"/threads/{thread_id}/runs/{run_id}/events"
            async with http.stream("GET", path, headers=resumed) as response:
                assert response.status_code == 200
                rest = [event async for event in _sse(response)]
        assert rest[-2][1] == "thread.run.completed" and rest[-1][1] == "done"
        async with httpx.AsyncClient(base_url=server.base_url, headers=HEADERS, timeout=30) as http:
            async with http.stream("GET", path) as response:
                whole = [i async for i, _, _ in _sse(response) if i is not None]
        combined = first + rest[:-1]
        ids = [i for i, _, _ in combined]
        assert ids == whole, "an event was missed, repeated or reordered"
        text = "".join(_delta_text(data) for _, name, data in combined if name == "thread.message.delta")
        assert text == "".join(chunks)

    half = RUNS // 2
    await asyncio.gather(
        *(cancel(threads[n], run_ids[n]) for n in range(half)),
        *(resume(threads[n], run_ids[n], firsts[n]) for n in range(half, RUNS)),
    )


async def test_tool_outputs_land_on_either_process(
    two_processes: ServerProcess, upstream: ScriptedUpstream, model: str, pg_url: str
) -> None:
    server = two_processes

    async def one(n: int) -> str:
        # Each run has a model of its own: with one shared queue of turns, a run whose tool outputs
        # arrived before another run's first request took that run's tool call as its reply.
        own_model = f"{model}-{n}"
        upstream.script(own_model, ToolCalls([("get_weather", '{"city": "Bern"}')]), Reply("Cold in Bern."))
        async with _fresh(server) as client:
            assistant = await client.beta.assistants.create(model=own_model, tools=[WEATHER_TOOL])
            thread = await client.beta.threads.create(messages=[{"role": "user", "content": "Weather?"}])
            async with client.beta.threads.runs.stream(
                thread_id=thread.id, assistant_id=assistant.id
            ) as stream:
                await stream.until_done()
                run = await stream.get_final_run()
        async with _fresh(server) as client:
            await submit_weather_and_finish(client, thread.id, run)
        return run.id

    await asyncio.gather(*(one(n) for n in range(RUNS)))


@pytest.mark.parametrize("workers", ["0", "2"])
def test_sqlite_is_served_by_one_process(tmp_path: Path, workers: str) -> None:
    env = process_env(data_dir=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-m", "openassistants", "serve", "--port", "8", "--workers", workers],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    expected = "expected 1 or more" if workers == "0" else "--workers 2 needs a shared database"
    assert expected in done.stderr and len(done.stderr.strip().splitlines()) == 1
