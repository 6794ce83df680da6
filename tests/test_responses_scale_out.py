"""Responses across processes on one PostgreSQL: a background response created on one API server is
streamed, resumed, polled and cancelled through the other, while separate workers execute it under
leases; a worker killed mid-response leaves it failed, as a run, and the survivor takes the next;
a WebSocket turn on one replica is continued after reconnecting to the other."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import openai
import pytest
from openai.resources.responses.responses import AsyncResponsesConnection
from openai.types.responses import ResponseStreamEvent

from tests.processes import ServerProcess, WorkerProcess, running
from tests.test_scale_out import Topology, _sdk, _shared_env, two_worker_topology
from tests.upstream import Reply, ScriptedUpstream

__all__ = ["two_worker_topology"]  # the fixture, shared with the runs' scale-out tests


@pytest.fixture
def topology(pg_url: str, upstream: ScriptedUpstream, tmp_path: Path) -> Iterator[Topology]:
    """Two API servers and a worker whose leases outlast a loaded machine's stalls: these tests kill
    nothing, and a 2 s lease missed under load would settle a healthy response as failed."""
    shared = tmp_path / "data"
    env = {**_shared_env(pg_url, upstream, shared), "OPENASSISTANTS_RUN_LEASE_SECONDS": "30"}
    api_env = {**env, "OPENASSISTANTS_EXECUTE_RUNS": "false"}
    a, b, worker = ServerProcess(shared, api_env), ServerProcess(shared, api_env), WorkerProcess(shared, env)
    with running(a, b, worker):
        yield Topology(a, b, [worker], pg_url)


async def _until_text(client: openai.AsyncOpenAI, response_id: str, text: str) -> list[ResponseStreamEvent]:
    """The response's events from its start until its streamed text holds ``text``; then the
    connection is dropped."""
    seen: list[ResponseStreamEvent] = []
    stream = await client.responses.retrieve(response_id, stream=True)
    async for event in stream:
        seen.append(event)
        received = "".join(e.delta for e in seen if e.type == "response.output_text.delta")
        if text in received:
            break
    await stream.close()
    return seen


async def test_background_response_streams_on_a_and_resumes_and_polls_on_b(
    topology: Topology, upstream: ScriptedUpstream, model: str
) -> None:
    chunks = [f"w{n} " for n in range(30)]
    upstream.script(model, Reply("".join(chunks), chunks=chunks, delay=0.03))
    async with _sdk(topology.a) as a, _sdk(topology.b) as b:
        created = await a.responses.create(model=model, input="go", background=True)
        assert created.status in ("queued", "in_progress")

        first = await _until_text(a, created.id, "w4 ")
        last = first[-1].sequence_number
        rest = [e async for e in await b.responses.retrieve(created.id, stream=True, starting_after=last)]
        done = await b.responses.retrieve(created.id)
        whole = [e async for e in await a.responses.retrieve(created.id, stream=True)]

    assert [e.sequence_number for e in first + rest] == list(range(len(first) + len(rest)))
    assert [e.model_dump() for e in first + rest][:-1] == [e.model_dump() for e in whole][:-1]
    assert rest[-1].type == "response.completed"
    text = "".join(e.delta for e in first + rest if e.type == "response.output_text.delta")
    assert text == "".join(chunks) == done.output_text
    assert done.status == "completed" and done.background is True


async def test_background_response_created_on_a_is_cancelled_through_b(
    topology: Topology, upstream: ScriptedUpstream, model: str
) -> None:
    chunks = ["tick "] * 200
    upstream.script(model, Reply("".join(chunks), chunks=chunks, delay=0.05), Reply("after"))
    async with _sdk(topology.a) as a, _sdk(topology.b) as b:
        created = await a.responses.create(model=model, input="go", background=True)
        await _until_text(b, created.id, "tick tick ")

        cancelled = await b.responses.cancel(created.id)

        assert cancelled.status == "cancelled"
        assert (await a.responses.retrieve(created.id)).status == "cancelled"
        # The worker is free for the next response, created through either replica.
        after = await b.responses.create(model=model, input="again")
        assert after.status == "completed" and after.output_text == "after"


async def test_killed_worker_response_fails_and_the_survivor_answers_the_next(
    two_worker_topology: Topology, upstream: ScriptedUpstream, model: str
) -> None:
    topo = two_worker_topology
    chunks = ["tick "] * 200
    upstream.script(model, Reply("".join(chunks), chunks=chunks, delay=0.05), Reply("survivor works"))
    async with _sdk(topo.a) as a, _sdk(topo.b) as b:
        created = await a.responses.create(model=model, input="go", background=True)
        await _until_text(a, created.id, "tick ")
        conn = await asyncpg.connect(topo.dsn)
        try:
            run_id = "run_" + created.id.removeprefix("resp_")
            holder = await conn.fetchval("SELECT worker_id FROM runs WHERE id = $1", run_id)
        finally:
            await conn.close()
        victim = next(w for w in topo.workers if f"-{w.pid}-" in holder)
        victim.kill()

        # The stream resumed on the other replica ends when the lease runs out and the run is settled.
        events = [e async for e in await b.responses.retrieve(created.id, stream=True)]
        failed = await b.responses.retrieve(created.id)

        assert events[-1].type == "response.failed"
        assert failed.status == "failed" and failed.error is not None
        assert "stopped responding" in failed.error.message
        again = await b.responses.create(model=model, input="still there?")
        assert again.status == "completed" and again.output_text == "survivor works"


async def test_a_websocket_turn_on_a_is_continued_over_a_websocket_to_b(
    topology: Topology, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, Reply("Hello Ada.", chunks=["Hello", " Ada."]), Reply("Your name is Ada."))
    async with _sdk(topology.a) as a, _sdk(topology.b) as b:
        async with a.responses.connect() as connection:
            await connection.response.create(model=model, input="My name is Ada.")
            first = [event async for event in _events_until_done(connection)]
        # The client reconnects, to the other replica.
        async with b.responses.connect() as connection:
            await connection.response.create(
                model=model, previous_response_id=first[-1].response.id, input="My name?"
            )
            second = [event async for event in _events_until_done(connection)]

    assert first[-1].type == "response.completed" and first[-1].response.output_text == "Hello Ada."
    assert second[-1].type == "response.completed" and second[-1].response.output_text == "Your name is Ada."
    sent = upstream.requests(model)[1]["messages"]
    assert [m["content"] for m in sent] == ["My name is Ada.", "Hello Ada.", "My name?"]


async def _events_until_done(connection: AsyncResponsesConnection) -> AsyncIterator[Any]:
    async for event in connection:
        yield event
        if event.type in ("response.completed", "response.failed", "response.incomplete", "error"):
            return
