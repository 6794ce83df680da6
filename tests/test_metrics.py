"""/metrics: Prometheus text, no API key, request latency by route template, run counts from the
database, upstream timings and errors, open event streams; off with metrics_enabled=false.

The process-wide figures are shared by every test server in this process (they run in threads), so
tests check how much a figure moved, at least; run counts come from each server's own database.
"""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Server, ServerFactory, sdk_client
from tests.upstream import Fail, Hang, Reply, ScriptedUpstream

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(server: Server) -> Samples:
    """Every sample of the server's /metrics, fetched with no API key."""
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{server.url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


REQUESTS = "openassistants_http_request_duration_seconds_count"


async def test_requests_are_timed_by_route_template_and_status_class(
    server: Server, client: openai.AsyncOpenAI
) -> None:
    before = await scrape(server)
    assistants = [await client.beta.assistants.create(model="gpt-4o") for _ in range(3)]
    for assistant in assistants:
        await client.beta.assistants.retrieve(assistant.id)
    with pytest.raises(openai.NotFoundError):
        await client.beta.assistants.retrieve("asst_missing")
    async with sdk_client(server, api_key="sk-not-a-key") as stranger:
        with pytest.raises(openai.AuthenticationError):
            await stranger.beta.assistants.retrieve(assistants[0].id)
    after = await scrape(server)

    def moved(method: str, route: str, status: str) -> float:
        labels = {"method": method, "route": route, "status": status}
        return value(after, REQUESTS, **labels) - value(before, REQUESTS, **labels)

    assert moved("POST", "/v1/assistants", "2xx") >= 3
    assert moved("GET", "/v1/assistants/{assistant_id}", "2xx") >= 3
    # A 404 from the service and a 401 from the auth middleware, before routing: same template.
    assert moved("GET", "/v1/assistants/{assistant_id}", "4xx") >= 2
    routes = {dict(labels)["route"] for name, labels in after if name == REQUESTS}
    assert not any(a.id in route for a in assistants for route in routes), "raw paths became labels"


async def test_unknown_paths_share_one_label(server: Server) -> None:
    before = await scrape(server)
    async with httpx.AsyncClient() as http:
        for n in range(3):
            assert (await http.get(f"{server.url}/no/such/path/{n}")).status_code == 404
        assert (await http.get(f"{server.url}/openapi.json")).status_code == 200
    samples = await scrape(server)
    assert value(samples, REQUESTS, method="GET", route="unmatched", status="4xx") >= 3
    openapi = {"method": "GET", "route": "/openapi.json", "status": "2xx"}
    assert value(samples, REQUESTS, **openapi) - value(before, REQUESTS, **openapi) >= 1
    assert not any("/no/such" in dict(labels).get("route", "") for _, labels in samples)


async def test_runs_by_status_and_upstream_timings_and_errors(
    server_factory: ServerFactory, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, Reply("fine", chunks=["fi", "ne"]), Fail(400, "no such model"))
    with server_factory() as server:
        before = await scrape(server)
        assert value(before, "openassistants_runs", status="completed") == 0
        async with sdk_client(server) as client:
            assistant = await client.beta.assistants.create(model=model)
            thread = await client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
            ok = await client.beta.threads.runs.create_and_poll(
                thread_id=thread.id, assistant_id=assistant.id
            )
            failed = await client.beta.threads.runs.create_and_poll(
                thread_id=thread.id, assistant_id=assistant.id
            )
        assert ok.status == "completed"
        assert failed.status == "failed" and failed.last_error is not None
        assert failed.last_error.code == "invalid_prompt"
        after = await scrape(server)

    # Read from this server's own database at scrape time: exact.
    runs = {dict(labels)["status"]: v for (name, labels), v in after.items() if name == "openassistants_runs"}
    assert runs == {
        "queued": 0,
        "in_progress": 0,
        "requires_action": 0,
        "cancelling": 0,
        "cancelled": 0,
        "failed": 1,
        "completed": 1,
        "incomplete": 0,
        "expired": 0,
    }
    assert value(after, "openassistants_run_queue_depth") == 0

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # Both calls reached the model; only the completed one has a first token and a whole reply.
    assert moved("openassistants_upstream_time_to_first_token_seconds_count") >= 1
    assert moved("openassistants_upstream_duration_seconds_count") >= 1
    assert moved("openassistants_upstream_errors_total", code="invalid_prompt") >= 1
    assert ("openassistants_upstream_errors_total", frozenset({("code", "server_error")})) in after


async def test_queue_depth_counts_runs_no_executor_claimed(server_factory: ServerFactory, model: str) -> None:
    with server_factory(execute_runs=False) as server:
        async with sdk_client(server) as client:
            assistant = await client.beta.assistants.create(model=model)
            for _ in range(2):
                thread = await client.beta.threads.create()
                await client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
        samples = await scrape(server)
    assert value(samples, "openassistants_runs", status="queued") == 2
    assert value(samples, "openassistants_run_queue_depth") == 2


async def test_open_event_streams_are_counted_while_open(
    server: Server, client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, Hang(60))  # the run stays in_progress, its stream open, until cancelled
    assistant = await client.beta.assistants.create(model=model)
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    stream = await client.beta.threads.runs.create(
        thread_id=thread.id, assistant_id=assistant.id, stream=True
    )
    events = aiter(stream)
    first = await anext(events)
    assert first.event == "thread.run.created"
    during = value(await scrape(server), "openassistants_sse_streams_active")
    assert during >= 1

    await client.beta.threads.runs.cancel(first.data.id, thread_id=thread.id)
    rest = [event.event async for event in events]
    assert rest[-1] == "thread.run.cancelled"

    # This stream ended before its last byte reached us; streams elsewhere can only have ended too.
    assert value(await scrape(server), "openassistants_sse_streams_active") <= during - 1


async def test_a_stream_the_client_left_is_released_while_its_run_goes_on(
    server: Server, client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, Hang(60))  # the run stays in_progress: only the client's leaving ends its stream
    assistant = await client.beta.assistants.create(model=model)
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    stream = await client.beta.threads.runs.create(
        thread_id=thread.id, assistant_id=assistant.id, stream=True
    )
    first = await anext(aiter(stream))
    during = value(await scrape(server), "openassistants_sse_streams_active")
    assert during >= 1

    await stream.close()  # the client leaves mid-stream

    for _ in range(100):
        if value(await scrape(server), "openassistants_sse_streams_active") <= during - 1:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the stream the client left is still open")
    run = await client.beta.threads.runs.retrieve(first.data.id, thread_id=thread.id)
    assert run.status == "in_progress"  # leaving ends the stream, not the run
    await client.beta.threads.runs.cancel(run.id, thread_id=thread.id)


async def test_metrics_can_be_turned_off(server_factory: ServerFactory) -> None:
    with server_factory(metrics_enabled=False) as server:
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{server.url}/metrics")).status_code == 404
            assert (await http.get(f"{server.url}/healthz")).status_code == 200
