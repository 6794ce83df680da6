"""Several processes on one PostgreSQL: two API servers and separate workers. Streams cross
processes and resume on another replica; a killed worker's run is settled; a database outage
yields clean errors and loses nothing acknowledged."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import openai
import pytest
from openai.types.beta.threads import Run

from tests.conftest import TENANT_A_KEY
from tests.processes import ServerProcess, WorkerProcess, process_env, running
from tests.servers import free_port
from tests.test_runs import WEATHER_TOOL
from tests.upstream import Reply, ScriptedUpstream, ToolCalls

# Short, so that a killed worker's run is settled within the test's patience; not shorter, because a
# loop stalled for two thirds of it on a loaded machine (seen at a load of ~11 with 2 s) misses a renewal
# and a live worker's run is settled as a dead one's.
LEASE_SECONDS = 4


@dataclass
class Topology:
    a: ServerProcess
    b: ServerProcess
    workers: list[WorkerProcess]
    database_url: str

    @property
    def dsn(self) -> str:
        return self.database_url.replace("postgresql+asyncpg://", "postgresql://")


def _shared_env(pg_url: str, upstream: ScriptedUpstream, shared: Path) -> dict[str, str]:
    """Every process's environment: one database, one model, and one data dir, as on one host (file
    blobs are shared through it)."""
    return process_env(
        data_dir=str(shared),
        database_url=pg_url,
        api_keys=TENANT_A_KEY,
        llm_base_url=upstream.url,
        llm_retry_backoff_seconds="0.01",
        access_log="false",
        run_lease_seconds=str(LEASE_SECONDS),
    )


def _topology(pg_url: str, upstream: ScriptedUpstream, tmp_path: Path, workers: int) -> Iterator[Topology]:
    shared = tmp_path / "data"
    env = _shared_env(pg_url, upstream, shared)
    api_env = {**env, "OPENASSISTANTS_EXECUTE_RUNS": "false"}
    a = ServerProcess(shared, api_env)
    b = ServerProcess(shared, api_env)
    pool = [WorkerProcess(shared, env) for n in range(workers)]
    with running(a, b, *pool):
        yield Topology(a, b, pool, pg_url)


@pytest.fixture
def topology(pg_url: str, upstream: ScriptedUpstream, tmp_path: Path) -> Iterator[Topology]:
    yield from _topology(pg_url, upstream, tmp_path, workers=1)


@pytest.fixture
def two_worker_topology(pg_url: str, upstream: ScriptedUpstream, tmp_path: Path) -> Iterator[Topology]:
    yield from _topology(pg_url, upstream, tmp_path, workers=2)


def _sdk(server: ServerProcess) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base_url, api_key=TENANT_A_KEY, max_retries=0)


async def _sse(response: httpx.Response) -> AsyncIterator[tuple[int | None, str, str]]:
    """(id, event, data) of each server-sent event."""
    event_id: int | None = None
    name = data = ""
    async for line in response.aiter_lines():
        if line.startswith("id: "):
            event_id = int(line[4:])
        elif line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif line == "" and name:
            yield event_id, name, data
            event_id, name, data = None, "", ""


def _delta_text(data: str) -> str:
    parts = json.loads(data)["delta"].get("content", [])
    return "".join(p.get("text", {}).get("value", "") for p in parts)


async def _final_text(client: openai.AsyncOpenAI, thread_id: str) -> str:
    message = (await client.beta.threads.messages.list(thread_id, limit=1)).data[0]
    return message.content[0].text.value  # type: ignore[union-attr]


async def test_run_created_on_a_streams_through_b(
    topology: Topology, upstream: ScriptedUpstream, model: str
) -> None:
    chunks = [f"part{n} " for n in range(20)]
    upstream.script(model, Reply("".join(chunks), chunks=chunks, delay=0.02))
    async with _sdk(topology.a) as a, _sdk(topology.b) as b:
        assistant = await a.beta.assistants.create(model=model)
        thread = await a.beta.threads.create(messages=[{"role": "user", "content": "go"}])
        run = await a.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
        headers = {"Authorization": f"Bearer {TENANT_A_KEY}"}
        async with httpx.AsyncClient(base_url=topology.b.base_url, headers=headers, timeout=30) as http:
            async with http.stream("GET", f"/threads/{thread.id}/runs/{run.id}/events") as response:
                assert response.status_code == 200
                events = [e async for e in _sse(response)]
        names = [name for _, name, _ in events]
        assert names[:3] == ["thread.run.created", "thread.run.queued", "thread.run.in_progress"]
        assert names[-2:] == ["thread.run.completed", "done"]
        text = "".join(_delta_text(d) for _, n, d in events if n == "thread.message.delta")
        assert text == "".join(chunks) == await _final_text(b, thread.id)
        ids = [i for i, _, _ in events if i is not None]
        assert ids == sorted(set(ids))


async def test_stream_cut_resumes_on_the_other_replica(
    topology: Topology, upstream: ScriptedUpstream, model: str
) -> None:
    chunks = [f"w{n} " for n in range(40)]
    upstream.script(model, Reply("".join(chunks), chunks=chunks, delay=0.03))
    async with _sdk(topology.a) as a:
        assistant = await a.beta.assistants.create(model=model)
        thread = await a.beta.threads.create(messages=[{"role": "user", "content": "go"}])
    headers = {"Authorization": f"Bearer {TENANT_A_KEY}"}
    first: list[tuple[int | None, str, str]] = []
    async with httpx.AsyncClient(base_url=topology.a.base_url, headers=headers, timeout=30) as http:
        async with http.stream(
            "POST", f"/threads/{thread.id}/runs", json={"assistant_id": assistant.id, "stream": True}
        ) as response:
            async for event in _sse(response):
                first.append(event)
                # Five chunks in, the connection drops. Counted by text, not deltas: pieces of the reply
                # that arrive in one read go out as one delta, so a loaded machine sends fewer deltas.
                received = "".join(_delta_text(d) for _, n, d in first if n == "thread.message.delta")
                if "w4 " in received:
                    break
    run_id = json.loads(first[0][2])["id"]
    last_id = first[-1][0]
    assert last_id is not None
    async with httpx.AsyncClient(base_url=topology.b.base_url, headers=headers, timeout=30) as http:
        async with http.stream(
            "GET",
            f"/threads/{thread.id}/runs/{run_id}/events",
            headers={"Last-Event-ID": str(last_id)},
        ) as response:
            rest = [e async for e in _sse(response)]
        full = await http.get(f"/threads/{thread.id}/runs/{run_id}/events")
    combined = first + rest[:-1]  # without the final "done"
    ids = [i for i, _, _ in combined]
    assert ids == sorted(set(ids)), "an event was repeated or reordered"
    everything = [i for i, *_ in [e async for e in _sse(full)] if i is not None]
    assert ids == everything, "an event was missed"
    text = "".join(_delta_text(d) for _, n, d in combined if n == "thread.message.delta")
    assert text == "".join(chunks)


async def submit_weather_and_finish(client: openai.AsyncOpenAI, thread_id: str, run: Run) -> None:
    """``run`` asked for the weather tool's output: submit it (streamed) through ``client``; the run
    completes with the scripted "Cold in Bern." reply."""
    assert run.status == "requires_action" and run.required_action is not None
    call = run.required_action.submit_tool_outputs.tool_calls[0]
    async with client.beta.threads.runs.submit_tool_outputs_stream(
        thread_id=thread_id, run_id=run.id, tool_outputs=[{"tool_call_id": call.id, "output": "-3C"}]
    ) as stream:
        await stream.until_done()
        final = await stream.get_final_run()
        messages = await stream.get_final_messages()
    assert final.status == "completed"
    assert messages[0].content[0].text.value == "Cold in Bern."  # type: ignore[union-attr]


async def test_sdk_flows_across_replicas(topology: Topology, upstream: ScriptedUpstream, model: str) -> None:
    upstream.script(
        model, ToolCalls([("get_weather", '{"city": "Bern"}')]), Reply("Cold in Bern."), Reply("Hi")
    )
    async with _sdk(topology.a) as a, _sdk(topology.b) as b:
        assistant = await a.beta.assistants.create(model=model, tools=[WEATHER_TOOL])
        thread = await b.beta.threads.create(messages=[{"role": "user", "content": "Weather?"}])
        async with a.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as stream:
            await stream.until_done()
            run = await stream.get_final_run()
        await submit_weather_and_finish(b, thread.id, run)
        polled = await b.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
        assert polled.status == "completed"
        # Only one active run per thread, whichever replica is asked.
        upstream.script(model, Reply("slow", chunks=["s"] * 20, delay=0.05))
        await a.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
        with pytest.raises(openai.BadRequestError):
            await b.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)


async def test_killed_worker_run_is_settled_within_the_lease(
    two_worker_topology: Topology, upstream: ScriptedUpstream, model: str
) -> None:
    topo = two_worker_topology
    chunks = ["tick "] * 200
    upstream.script(model, Reply("".join(chunks), chunks=chunks, delay=0.05), Reply("survivor works"))
    async with _sdk(topo.a) as a, _sdk(topo.b) as b:
        assistant = await a.beta.assistants.create(model=model)
        thread = await a.beta.threads.create(messages=[{"role": "user", "content": "go"}])
        async with a.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as stream:
            async for event in stream:
                if event.event == "thread.message.delta":
                    run_id = stream.current_run.id  # type: ignore[union-attr]
                    break
        conn = await asyncpg.connect(topo.dsn)
        try:
            holder = await conn.fetchval("SELECT worker_id FROM runs WHERE id = $1", run_id)
        finally:
            await conn.close()
        victim = next(w for w in topo.workers if f"-{w.pid}-" in holder)
        victim.kill()
        killed_at = time.monotonic()
        run = await b.beta.threads.runs.poll(run_id, thread_id=thread.id)
        took = time.monotonic() - killed_at
        assert run.status == "failed"
        assert run.last_error is not None and run.last_error.message == (
            "Sorry, something went wrong. "
            "The worker executing this run stopped responding; the run was ended."
        )
        assert took < LEASE_SECONDS * 4 + 5, f"took {took:.1f}s to settle"
        message = (await b.beta.threads.messages.list(thread.id, limit=1)).data[0]
        assert message.status == "incomplete"
        # The surviving worker takes new runs.
        again = await b.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
        assert again.status == "completed"


async def test_database_outage_gives_clean_errors_and_loses_nothing(
    topology: Topology, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, *[Reply("steady", chunks=["st", "ea", "dy"], delay=0.05)] * 5)
    async with _sdk(topology.a) as a:
        assistant = await a.beta.assistants.create(model=model)
        threads = [(await a.beta.threads.create()).id for _ in range(6)]
    statuses: list[int] = []
    acknowledged: dict[str, list[str]] = {t: [] for t in threads}
    headers = {"Authorization": f"Bearer {TENANT_A_KEY}", "OpenAI-Beta": "assistants=v2"}
    stop = asyncio.Event()

    async def writer(thread_id: str, server: ServerProcess) -> None:
        async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=30) as http:
            n = 0
            while not stop.is_set():
                n += 1
                text = f"{thread_id} #{n}"
                response = await http.post(
                    f"/threads/{thread_id}/messages", json={"role": "user", "content": text}
                )
                statuses.append(response.status_code)
                if response.status_code == 200:
                    acknowledged[thread_id].append(response.json()["id"])
                else:
                    assert response.headers["content-type"].startswith("application/json")
                    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
                await asyncio.sleep(0.02)

    async def outage() -> None:
        await asyncio.sleep(1.0)
        conn = await asyncpg.connect(topology.dsn.rsplit("/", 1)[0] + "/test")
        try:
            name = topology.dsn.rsplit("/", 1)[1]
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
            )
        finally:
            await conn.close()
        await asyncio.sleep(2.0)
        stop.set()

    servers = [topology.a, topology.b]
    await asyncio.gather(outage(), *(writer(t, servers[i % 2]) for i, t in enumerate(threads)))

    assert 500 not in statuses and all(s in (200, 503) for s in statuses), sorted(set(statuses))
    assert statuses.count(200) > 20
    async with _sdk(topology.b) as b:
        for thread_id, ids in acknowledged.items():
            stored = [m.id async for m in b.beta.threads.messages.list(thread_id, order="asc", limit=100)]
            assert stored == ids, "an acknowledged message was lost or duplicated"
        # Runs still work after the outage.
        run = await b.beta.threads.runs.create_and_poll(thread_id=threads[0], assistant_id=assistant.id)
        assert run.status == "completed"


async def test_code_interpreter_session_is_rebuilt_on_another_worker(
    topology: Topology, upstream: ScriptedUpstream, model: str, tmp_path: Path
) -> None:
    upstream.script(
        model,
        ToolCalls([("code_interpreter", json.dumps({"code": "answer = 41"}))]),
        Reply("stored"),
        ToolCalls([("code_interpreter", json.dumps({"code": "print(answer + 1)"}))]),
        Reply("done"),
    )
    async with _sdk(topology.a) as a:
        assistant = await a.beta.assistants.create(model=model, tools=[{"type": "code_interpreter"}])
        thread = await a.beta.threads.create(messages=[{"role": "user", "content": "go"}])
        first = await a.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
        assert first.status == "completed"
        # The worker holding the session dies; a new one runs the thread's next run.
        old = topology.workers[0]
        old.kill()
        new = WorkerProcess(tmp_path / "data", old.env)
        new.start()
        try:
            second = await a.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
        finally:
            new.stop()
        assert second.status == "completed"
        steps = await a.beta.threads.runs.steps.list(second.id, thread_id=thread.id, order="asc")
        logs = steps.data[0].step_details.tool_calls[0].code_interpreter.outputs[0].logs  # type: ignore[union-attr]
        assert logs.strip() == "42"


async def test_a_worker_serves_its_own_metrics(
    pg_url: str, upstream: ScriptedUpstream, model: str, tmp_path: Path
) -> None:
    """The model upstream is called from the worker, so its latency and errors are the worker's metrics."""
    upstream.script(model, Reply("Measured."))
    shared = tmp_path / "data"
    port = free_port()
    env = _shared_env(pg_url, upstream, shared)
    api = ServerProcess(shared, {**env, "OPENASSISTANTS_EXECUTE_RUNS": "false"})
    worker = WorkerProcess(shared, {**env, "OPENASSISTANTS_WORKER_METRICS_PORT": str(port)})
    with running(api, worker):
        async with _sdk(api) as client:
            assistant = await client.beta.assistants.create(model=model)
            thread = await client.beta.threads.create(messages=[{"role": "user", "content": "go"}])
            run = await client.beta.threads.runs.create_and_poll(
                thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=50
            )
        assert run.status == "completed", run.last_error
        async with httpx.AsyncClient() as http:
            scraped = await http.get(f"http://127.0.0.1:{port}/metrics")
    assert scraped.status_code == 200
    lines = scraped.text.splitlines()
    assert "openassistants_upstream_duration_seconds_count 1.0" in lines
    assert any(line.startswith("process_cpu_seconds_total ") for line in lines)
