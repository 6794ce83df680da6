"""api/hot.py serves retrieve-assistant and list/create-message itself; whatever it declines goes to
the FastAPI routes. Both ways must answer alike: same status, headers and body."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import TENANT_A_KEY, Server
from tests.test_metrics import REQUESTS, scrape, value

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
