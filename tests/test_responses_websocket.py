"""WebSocket mode of /v1/responses through the SDK's own connection (``client.responses.connect()``):
responses streamed as typed events, turns continued with ``previous_response_id`` on the connection
and after a reconnect, lanes named by ``stream_id``, and bad events answered as HTTP errors are."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import openai
import pytest
import websockets
from openai.resources.responses.responses import AsyncResponsesConnection

from openassistants.api.responses.websocket import MAX_IN_FLIGHT
from tests.conftest import TENANT_A_KEY, Server, ServerFactory
from tests.upstream import Reply, ScriptedUpstream


async def _until_done(connection: AsyncResponsesConnection) -> list[Any]:
    """One response's events, up to the one that ends it (or an error)."""
    events: list[Any] = []
    async for event in connection:
        events.append(event)
        if event.type in ("response.completed", "response.failed", "response.incomplete", "error"):
            return events
    raise AssertionError("the connection closed mid-response")


async def test_turns_continue_on_the_connection_and_after_a_reconnect(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(
        model,
        Reply("Hello Ada.", chunks=["Hello", " Ada."]),
        Reply("Your name is Ada."),
        Reply("Still Ada."),
    )

    async with client.responses.connect() as connection:
        await connection.response.create(model=model, input="My name is Ada.")
        first = await _until_done(connection)
        first_id = first[-1].response.id
        await connection.response.create(model=model, previous_response_id=first_id, input="My name?")
        second = await _until_done(connection)
    async with client.responses.connect() as connection:
        await connection.response.create(
            model=model, previous_response_id=second[-1].response.id, input="And now?"
        )
        third = await _until_done(connection)

    kinds = [e.type for e in first]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert [e.sequence_number for e in first] == list(range(len(first)))
    assert "".join(e.delta for e in first if e.type == "response.output_text.delta") == "Hello Ada."
    assert second[-1].response.output_text == "Your name is Ada."
    assert second[-1].response.previous_response_id == first_id
    assert third[-1].type == "response.completed" and third[-1].response.output_text == "Still Ada."
    sent = upstream.requests(model)[2]["messages"]
    assert [m["content"] for m in sent if m["role"] == "user"] == ["My name is Ada.", "My name?", "And now?"]
    assert (await client.responses.retrieve(first_id)).output_text == "Hello Ada."


async def test_unstored_turns_continue_on_their_connection_and_are_forgotten_after(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    # As Codex sends them: store false, each turn only its new input after previous_response_id.
    upstream.script(model, Reply("Noted, Ada."), Reply("You are Ada."))

    async with client.responses.connect() as connection:
        await connection.response.create(model=model, input="I am Ada.", store=False)
        first = await _until_done(connection)
        await connection.response.create(
            model=model, previous_response_id=first[-1].response.id, input="Who am I?", store=False
        )
        second = await _until_done(connection)

    assert first[0].response.store is False and first[-1].response.store is False
    assert second[-1].type == "response.completed" and second[-1].response.output_text == "You are Ada."
    sent = upstream.requests(model)[1]["messages"]
    assert [m["content"] for m in sent] == ["I am Ada.", "Noted, Ada.", "Who am I?"]
    # Once the connection has closed, they are gone, as unstored responses are.
    async with asyncio.timeout(30):
        for response in (first[-1].response, second[-1].response):
            while True:
                try:
                    await client.responses.retrieve(response.id)
                except openai.NotFoundError:
                    break
                await asyncio.sleep(0.05)  # the closing connection forgets them after it


async def test_lanes_named_by_stream_id_answer_alongside_each_other(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    slow, quick = f"{model}-slow", f"{model}-quick"
    upstream.script(slow, Reply("slow " * 20, chunks=["slow "] * 20, delay=0.1))
    upstream.script(quick, Reply("quick"))

    async with client.responses.connect() as connection:
        await connection.response.create(model=slow, input="a", stream_id="lane-slow")
        await connection.response.create(model=quick, input="b", stream_id="lane-quick")
        ended: list[str] = []
        async for event in connection:
            assert event.stream_id in ("lane-slow", "lane-quick")
            if event.type == "response.completed":
                ended.append(event.stream_id)
                if len(ended) == 2:
                    break

    # The quick lane did not wait behind the slow one.
    assert ended == ["lane-quick", "lane-slow"]


@pytest.mark.parametrize(
    ("event", "param"),
    [
        ({"type": "response.cancel"}, "type"),
        ({"type": "response.create", "input": "hi"}, "model"),
        ({"type": "response.create", "model": "m", "input": "hi", "temperature": 9}, "temperature"),
        ({"type": "response.create", "model": "m", "input": "hi", "background": True}, "background"),
        (
            {"type": "response.create", "model": "m", "previous_response_id": "resp_nope"},
            "previous_response_id",
        ),
        ({"type": "response.steer", "input": "x", "previous_response_id": "resp_x"}, "type"),
    ],
)
async def test_bad_events_get_shaped_errors_and_the_connection_goes_on(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str, event: dict[str, Any], param: str
) -> None:
    upstream.script(model, Reply("Still here."))

    async with client.responses.connect() as connection:
        await connection.send(event)  # type: ignore[arg-type]
        error = await connection.recv()
        await connection.response.create(model=model, input="Hi")
        after = await _until_done(connection)

    assert error.type == "error" and error.error.param == param  # type: ignore[union-attr]
    assert error.status in (400, 404) and error.error.message  # type: ignore[union-attr]
    assert after[-1].type == "response.completed" and after[-1].response.output_text == "Still here."


async def test_frames_that_are_not_json_objects_get_400_events(server: Server) -> None:
    url = server.base_url.replace("http", "ws", 1) + "/responses"
    headers = {"Authorization": f"Bearer {TENANT_A_KEY}"}
    async with websockets.connect(url, additional_headers=headers) as ws:
        await ws.send("{not json")
        error = json.loads(await asyncio.wait_for(ws.recv(), timeout=30))
        await ws.send(b"[1]")  # a binary frame, and JSON but not an object
        binary = json.loads(await asyncio.wait_for(ws.recv(), timeout=30))
    assert error["type"] == "error" and error["status"] == 400
    assert set(error["error"]) == {"message", "type", "param", "code"}
    assert binary["status"] == 400 and binary["error"]["message"] == "A client event must be a JSON object."


async def test_a_bad_key_is_refused_at_the_handshake_with_a_401(server: Server) -> None:
    url = server.base_url.replace("http", "ws", 1) + "/responses"
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(url, additional_headers={"Authorization": "Bearer sk-wrong"}):
            pass
    response = refused.value.response
    assert response.status_code == 401
    assert json.loads(response.body)["error"]["code"] == "invalid_api_key"


async def _events_until(ws: Any, count: int, *, kinds: tuple[str, ...]) -> list[dict[str, Any]]:
    """Received events, up to the ``count``-th whose type is one of ``kinds``."""
    events: list[dict[str, Any]] = []
    seen = 0
    async with asyncio.timeout(60):
        while seen < count:
            event = json.loads(await ws.recv())
            events.append(event)
            seen += event["type"] in kinds
    return events


async def test_response_creates_over_websocket_take_from_the_keys_rate_limit(
    server_factory: ServerFactory, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, Reply("one"), Reply("two"))
    create = json.dumps({"type": "response.create", "model": model, "input": "hi"})
    with server_factory(rate_limit_per_minute=3) as server:
        headers = {"Authorization": f"Bearer {TENANT_A_KEY}"}
        async with httpx.AsyncClient(base_url=server.base_url, headers=headers) as http:
            assert (await http.get("/models")).status_code == 200  # one of the key's 3 tokens
        url = server.base_url.replace("http", "ws", 1) + "/responses"
        async with websockets.connect(url, additional_headers=headers) as ws:
            for _ in range(3):
                await ws.send(create)
            events = await _events_until(ws, 3, kinds=("response.completed", "error"))

    ends = [e for e in events if e["type"] in ("response.completed", "error")]
    assert [e["type"] for e in ends].count("response.completed") == 2
    refused = next(e for e in ends if e["type"] == "error")
    assert refused["status"] == 429 and refused["error"]["code"] == "rate_limit_exceeded"
    assert refused["error"]["message"].startswith("Rate limit reached for requests per min (RPM): Limit 3")


async def test_a_connection_holds_a_bounded_number_of_responses_in_flight(
    server: Server, upstream: ScriptedUpstream, model: str
) -> None:
    quick = [Reply("ok")] * (MAX_IN_FLIGHT - 1)
    upstream.script(model, Reply("first", first_delay=2.0), *quick, Reply("after"))
    create = json.dumps({"type": "response.create", "model": model, "input": "hi"})
    url = server.base_url.replace("http", "ws", 1) + "/responses"
    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {TENANT_A_KEY}"}) as ws:
        for _ in range(MAX_IN_FLIGHT + 1):
            await ws.send(create)
        events = await _events_until(ws, MAX_IN_FLIGHT + 1, kinds=("response.completed", "error"))
        # Once those are answered, the connection takes responses again.
        await ws.send(create)
        after = await _events_until(ws, 1, kinds=("response.completed", "error"))

    ends = [e for e in events if e["type"] in ("response.completed", "error")]
    refused = [e for e in ends if e["type"] == "error"]
    assert len(refused) == 1 and refused[0]["status"] == 429
    assert refused[0]["error"]["code"] == "rate_limit_exceeded"
    assert f"at most {MAX_IN_FLIGHT}" in refused[0]["error"]["message"]
    texts = [_text(e["response"]) for e in ends if e["type"] == "response.completed"]
    assert texts[:2] == ["first", "ok"] and len(texts) == MAX_IN_FLIGHT
    assert after[-1]["type"] == "response.completed" and _text(after[-1]["response"]) == "after"


def _text(response: dict[str, Any]) -> str:
    """The wire response's text (``output_text`` is the SDK's property, not a field)."""
    return "".join(
        part["text"]
        for item in response["output"]
        for part in item.get("content", [])
        if part["type"] == "output_text"
    )
