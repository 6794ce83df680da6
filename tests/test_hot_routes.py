"""api/hot.py serves retrieve-assistant, list/create-message and create-run itself; what it declines goes to
the FastAPI routes. Both ways must answer alike: same status, headers and body."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import TENANT_A_KEY, Server
from tests.test_metrics import REQUESTS, scrape, value
from tests.upstream import Reply, ScriptedUpstream

TEXT = "Compare the two quarters."


@pytest.fixture
async def http(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"authorization": f"Bearer {TENANT_A_KEY}", "openai-beta": "assistants=v2"}
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers) as c:
        yield c


def same_headers(a: httpx.Response, b: httpx.Response) -> None:
    assert a.status_code == b.status_code
    assert a.headers["content-type"] == b.headers["content-type"] == "application/json"
    assert {k for k in a.headers if k not in ("date", "content-length")} == {
        k for k in b.headers if k not in ("date", "content-length")
    }
    assert a.headers["x-request-id"] != b.headers["x-request-id"]


def without_ids(message: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in message.items() if k not in ("id", "created_at", "completed_at")}


async def test_create_answers_as_the_fastapi_route(
    http: httpx.AsyncClient, client: openai.AsyncOpenAI
) -> None:
    thread = await client.beta.threads.create()
    body = {"role": "user", "content": TEXT, "metadata": {"k": "v"}}
    hot = await http.post(f"/threads/{thread.id}/messages", json=body)
    # A JSON media type other than application/json is left to FastAPI, which reads it alike.
    routed = await http.post(
        f"/threads/{thread.id}/messages",
        content=httpx.Request("POST", "/", json=body).content,
        headers={"content-type": "application/merge-patch+json"},
    )
    same_headers(hot, routed)
    assert without_ids(hot.json()) == without_ids(routed.json())
    assert hot.json()["content"] == [{"type": "text", "text": {"value": TEXT, "annotations": []}}]


async def test_list_answers_as_the_fastapi_route(http: httpx.AsyncClient, client: openai.AsyncOpenAI) -> None:
    thread = await client.beta.threads.create(
        messages=[{"role": "user", "content": f"{n}"} for n in range(5)]
    )
    hot = await http.get(f"/threads/{thread.id}/messages", params={"limit": 2, "order": "asc"})
    # A repeated parameter is left to FastAPI, which takes the last value.
    routed = await http.get(f"/threads/{thread.id}/messages?limit=7&limit=2&order=asc")
    same_headers(hot, routed)
    assert hot.json() == routed.json()
    assert [m["content"][0]["text"]["value"] for m in hot.json()["data"]] == ["0", "1"]
    assert hot.json()["has_more"] is True


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=101", "limit=abc", "limit=", "order=sideways", "after=", "before=" + "x" * 129],
)
async def test_invalid_list_parameters_get_fastapis_errors(
    http: httpx.AsyncClient, client: openai.AsyncOpenAI, query: str
) -> None:
    thread = await client.beta.threads.create()
    response = await http.get(f"/threads/{thread.id}/messages?{query}")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == query.split("=")[0]


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"role": "user"}', "application/json"),
        (b'{"role": "user", "content": "x"', "application/json"),
        (b"[1]", "application/json"),
        (b'{"role": "robot", "content": "x"}', "application/json"),
        (b'{"role": "user", "content": "x"}', "text/plain"),
    ],
)
async def test_invalid_create_bodies_get_fastapis_errors(
    http: httpx.AsyncClient, client: openai.AsyncOpenAI, content: bytes, content_type: str
) -> None:
    thread = await client.beta.threads.create()
    response = await http.post(
        f"/threads/{thread.id}/messages", content=content, headers={"content-type": content_type}
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert "x-request-id" in response.headers
    listed = await client.beta.threads.messages.list(thread.id)
    assert listed.data == []


#: A valid ``include[]``: with a query string the run's creation goes to the FastAPI route.
INCLUDE = "include[]=step_details.tool_calls[*].file_search.results[*].content"
#: What differs between two runs made alike.
RUN_VOLATILE = ("id", "thread_id", "created_at", "expires_at", "started_at")


async def test_run_create_answers_as_the_fastapi_route(
    http: httpx.AsyncClient, client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, Reply("one"), Reply("two"))
    assistant = await client.beta.assistants.create(model=model, instructions="Be brief.")
    first, second = await client.beta.threads.create(), await client.beta.threads.create()
    body = {"assistant_id": assistant.id, "metadata": {"k": "v"}, "temperature": 0.5}
    hot = await http.post(f"/threads/{first.id}/runs", json=body)
    routed = await http.post(f"/threads/{second.id}/runs?{INCLUDE}", json=body)
    same_headers(hot, routed)
    assert hot.headers["openai-poll-after-ms"] == routed.headers["openai-poll-after-ms"]
    assert {k: v for k, v in hot.json().items() if k not in RUN_VOLATILE} == {
        k: v for k, v in routed.json().items() if k not in RUN_VOLATILE
    }
    assert hot.json()["thread_id"] == first.id and hot.json()["status"] == "queued"
    for thread in (first, second):
        run = await client.beta.threads.runs.poll(
            hot.json()["id"] if thread is first else routed.json()["id"], thread_id=thread.id
        )
        assert run.status == "completed"


async def test_run_streams_answer_as_the_fastapi_route(
    http: httpx.AsyncClient, client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, Reply("same words"), Reply("same words"))
    assistant = await client.beta.assistants.create(model=model)
    first, second = await client.beta.threads.create(), await client.beta.threads.create()
    body = {"assistant_id": assistant.id, "stream": True}
    streams = []
    for url in (f"/threads/{first.id}/runs", f"/threads/{second.id}/runs?{INCLUDE}"):
        async with http.stream("POST", url, json=body) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            text = "".join([chunk async for chunk in response.aiter_text()])
        names = [line.removeprefix("event: ") for line in text.splitlines() if line.startswith("event: ")]
        # How many deltas the reply took depends on how its pieces arrived: one stands for them all.
        streams.append([n for i, n in enumerate(names) if n != "thread.message.delta" or names[i - 1] != n])
        assert '"value":"same' in text
    assert streams[0] == streams[1]
    assert streams[0][:3] == ["thread.run.created", "thread.run.queued", "thread.run.in_progress"]
    assert streams[0][-2:] == ["thread.run.completed", "done"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"assistant_id": 7},
        {"assistant_id": "asst_x", "temperature": 5},
        {"assistant_id": "asst_x", "truncation_strategy": {"type": "last_messages"}},
        {"assistant_id": "asst_x", "unknown": 1},
    ],
)
async def test_invalid_run_bodies_get_fastapis_errors(
    http: httpx.AsyncClient, client: openai.AsyncOpenAI, body: dict[str, Any]
) -> None:
    thread = await client.beta.threads.create()
    response = await http.post(f"/threads/{thread.id}/runs", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert "x-request-id" in response.headers
    assert (await client.beta.threads.runs.list(thread.id)).data == []


async def test_run_errors_from_the_hot_path(
    http: httpx.AsyncClient, client: openai.AsyncOpenAI, other_tenant: openai.AsyncOpenAI
) -> None:
    assistant = await client.beta.assistants.create(model="gpt-4o")
    thread = await client.beta.threads.create()
    missing = await http.post("/threads/thread_missing/runs", json={"assistant_id": assistant.id})
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "No thread found with id 'thread_missing'."
    no_assistant = await http.post(f"/threads/{thread.id}/runs", json={"assistant_id": "asst_missing"})
    assert no_assistant.status_code == 404
    with pytest.raises(openai.NotFoundError):
        await other_tenant.beta.threads.runs.create(thread.id, assistant_id=assistant.id)


async def test_not_found_and_other_tenants(
    http: httpx.AsyncClient, client: openai.AsyncOpenAI, other_tenant: openai.AsyncOpenAI
) -> None:
    assistant = await client.beta.assistants.create(model="gpt-4o")
    thread = await client.beta.threads.create()
    with pytest.raises(openai.NotFoundError):
        await other_tenant.beta.assistants.retrieve(assistant.id)
    with pytest.raises(openai.NotFoundError):
        await other_tenant.beta.threads.messages.list(thread.id)
    with pytest.raises(openai.NotFoundError):
        await other_tenant.beta.threads.messages.create(thread.id, role="user", content=TEXT)
    missing = await http.get("/assistants/asst_missing")
    assert missing.status_code == 404
    assert missing.json()["error"] == {
        "message": "No assistant found with id 'asst_missing'.",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }


async def test_metrics_name_the_route_templates(server: Server, client: openai.AsyncOpenAI) -> None:
    before = await scrape(server)
    thread = await client.beta.threads.create()
    await client.beta.threads.messages.create(thread.id, role="user", content=TEXT)
    await client.beta.threads.messages.list(thread.id)
    after = await scrape(server)
    labels = {"route": "/v1/threads/{thread_id}/messages", "status": "2xx"}
    for method in ("GET", "POST"):
        moved = value(after, REQUESTS, method=method, **labels) - value(
            before, REQUESTS, method=method, **labels
        )
        assert moved >= 1, method
