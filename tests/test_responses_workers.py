"""Responses across processes on one PostgreSQL: created on one API server, executed by a separate
worker, answered, streamed and resumed on another server; a function-call round trip whose turns
run on the worker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.conftest import TENANT_A_KEY
from tests.processes import ServerProcess
from tests.test_scale_out import Topology, _topology
from tests.upstream import Reply, ScriptedUpstream, ToolCalls

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    "strict": False,
}


@pytest.fixture
def topology(pg_url: str, upstream: ScriptedUpstream, tmp_path: Path) -> Iterator[Topology]:
    yield from _topology(pg_url, upstream, tmp_path, workers=1)


def _sdk(server: ServerProcess) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base_url, api_key=TENANT_A_KEY, max_retries=0)


async def test_responses_run_on_a_worker_and_read_from_any_server(
    topology: Topology, upstream: ScriptedUpstream, model: str
) -> None:
    chunks = [f"part{n} " for n in range(10)]
    upstream.script(
        model,
        ToolCalls([("get_weather", '{"city": "Oslo"}')], ids=["call_s1"]),
        Reply("Cold in Oslo."),
        Reply("".join(chunks), chunks=chunks, delay=0.02),
    )
    async with _sdk(topology.a) as a, _sdk(topology.b) as b:
        first = await a.responses.create(model=model, input="Oslo?", tools=[WEATHER])
        assert first.output[0].type == "function_call"
        second = await b.responses.create(
            model=model,
            previous_response_id=first.id,
            tools=[WEATHER],
            input=[{"type": "function_call_output", "call_id": "call_s1", "output": "cold"}],
        )
        assert second.output_text == "Cold in Oslo."
        assert (await a.responses.retrieve(second.id)).output_text == "Cold in Oslo."

        stream = await a.responses.create(model=model, input="Count", background=True, stream=True)
        seen = []
        async for event in stream:
            seen.append(event)
            if event.type == "response.output_text.delta":
                break
        await stream.close()
        response_id = seen[0].response.id  # type: ignore[union-attr]
        rest = [
            e
            async for e in await b.responses.retrieve(
                response_id, stream=True, starting_after=seen[-1].sequence_number
            )
        ]

    assert rest[-1].type == "response.completed"
    text = "".join(e.delta for e in [*seen, *rest] if e.type == "response.output_text.delta")
    assert text == "".join(chunks)
