"""Issue 14's hardening, through the SDK and raw HTTP on both databases: ids out of the schema's bounds
are a 400 wherever they appear (a file batch's once escaped as a 500 and cost the client its keep-alive
connection), resuming a stream at odd event ids is a 400 or a stream that ends with the run, and a file
of another tenant is a 404 wherever a message names it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import openai
import pytest

from openassistants.app import create_app
from tests.conftest import TENANT_A_KEY, Server
from tests.servers import free_port, make_settings, serve_in_thread
from tests.spec import assert_api_error
from tests.upstream import Reply, ScriptedUpstream

LONG_ID = "file-" + "x" * 60  # 65 characters: over the 64 every object id is held to

# ---------------------------------------------------------------- finding 1: ids in the request schema


async def _raw_exchange(server: Server, requests: list[tuple[str, str, Any]]) -> list[tuple[int, Any]]:
    """Sends the requests one after another on ONE keep-alive connection; (status, JSON body) each."""
    address = urlsplit(server.url)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    answers = []
    try:
        for method, path, body in requests:
            payload = json.dumps(body).encode() if body is not None else b""
            head = (
                f"{method} /v1{path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {TENANT_A_KEY}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
            )
            writer.write(head.encode() + payload)
            await writer.drain()
            status_line = await reader.readline()
            assert status_line, f"the server closed the connection instead of answering {method} {path}"
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            data = await reader.readexactly(int(headers["content-length"]))
            answers.append((int(status_line.split()[1]), json.loads(data)))
    finally:
        writer.close()
    return answers


@pytest.mark.parametrize("file_id", ["", LONG_ID])
async def test_a_file_batch_with_a_bad_file_id_is_a_400_and_the_connection_goes_on(
    server: Server, client: openai.AsyncOpenAI, file_id: str
) -> None:
    store = await client.vector_stores.create()
    with pytest.raises(openai.BadRequestError) as caught:
        await client.vector_stores.file_batches.create(store.id, file_ids=[file_id])
    assert_api_error(caught.value, 400, param="file_ids[0]")

    # The same request and then another on one connection: both answered.
    batch, retrieve = await _raw_exchange(
        server,
        [
            ("POST", f"/vector_stores/{store.id}/file_batches", {"file_ids": [file_id]}),
            ("GET", f"/vector_stores/{store.id}", None),
        ],
    )
    assert batch[0] == 400 and set(batch[1]["error"]) == {"message", "type", "param", "code"}
    assert retrieve == (200, retrieve[1]) and retrieve[1]["id"] == store.id


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/vector_stores", {"file_ids": [""]}, "file_ids[0]"),
        ("/vector_stores", {"file_ids": [LONG_ID]}, "file_ids[0]"),
        ("/vector_stores/{store}/file_batches", {"files": [{"file_id": LONG_ID}]}, "files[0].file_id"),
        ("/vector_stores/{store}/files", {"file_id": LONG_ID}, "file_id"),
        (
            "/assistants",
            {"model": "m", "tool_resources": {"code_interpreter": {"file_ids": [LONG_ID]}}},
            "tool_resources.code_interpreter.file_ids[0]",
        ),
        (
            "/assistants",
            {"model": "m", "tool_resources": {"file_search": {"vector_store_ids": [""]}}},
            "tool_resources.file_search.vector_store_ids[0]",
        ),
        (
            "/threads",
            {"tool_resources": {"file_search": {"vector_stores": [{"file_ids": [LONG_ID]}]}}},
            "tool_resources.file_search.vector_stores[0].file_ids[0]",
        ),
        (
            "/threads",
            {"messages": [{"role": "user", "content": "x", "attachments": [{"file_id": LONG_ID}]}]},
            "messages[0].attachments[0].file_id",
        ),
        (
            "/threads/{thread}/messages",
            {"role": "user", "content": [{"type": "image_file", "image_file": {"file_id": LONG_ID}}]},
            "content[0].image_file.file_id",
        ),
    ],
)
async def test_an_id_out_of_bounds_is_a_400_wherever_it_appears(
    raw: httpx.AsyncClient, client: openai.AsyncOpenAI, path: str, body: dict[str, Any], param: str
) -> None:
    store = await client.vector_stores.create()
    thread = await client.beta.threads.create()
    response = await raw.post(path.format(store=store.id, thread=thread.id), json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param, error


# ---------------------------------------------------------------- finding 2: resuming a run's stream


async def _completed_run(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> tuple[str, str]:
    upstream.script(model, Reply("Done."))
    assistant = await client.beta.assistants.create(model=model)
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    run = await client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed"
    return thread.id, run.id


@pytest.mark.parametrize(
    "last_event_id",
    ["²", "1" * 5000, str(2**63), str(2**64 + 1), "-1", "1.5", ""],
    ids=["superscript-two", "5000-digits", "2^63", "2^64+1", "negative", "decimal", "empty"],
)
async def test_a_last_event_id_that_is_no_event_id_is_a_400(
    raw: httpx.AsyncClient,
    client: openai.AsyncOpenAI,
    upstream: ScriptedUpstream,
    model: str,
    last_event_id: str,
) -> None:
    thread_id, run_id = await _completed_run(client, upstream, model)
    # Latin-1, as a header's bytes are read: 0xB2 is "²", which str.isdigit takes and int refuses.
    response = await raw.get(
        f"/threads/{thread_id}/runs/{run_id}/events",
        headers={"Last-Event-ID": last_event_id.encode("latin-1")},
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "Last-Event-ID"


@pytest.mark.parametrize("after", [str(2**63), "1" * 5000, "-1"], ids=["2^63", "5000-digits", "negative"])
async def test_an_after_that_is_no_event_id_is_a_400(
    raw: httpx.AsyncClient, client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str, after: str
) -> None:
    thread_id, run_id = await _completed_run(client, upstream, model)
    response = await raw.get(f"/threads/{thread_id}/runs/{run_id}/events", params={"after": after})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "after"


async def _event_names(raw: httpx.AsyncClient, path: str, **kwargs: Any) -> list[str]:
    async with raw.stream("GET", path, **kwargs) as response:
        assert response.status_code == 200
        return [line[len("event: ") :] async for line in response.aiter_lines() if line.startswith("event: ")]


async def test_resuming_at_the_largest_event_id_ends_with_done(
    raw: httpx.AsyncClient, client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    thread_id, run_id = await _completed_run(client, upstream, model)
    path = f"/threads/{thread_id}/runs/{run_id}/events"
    assert await _event_names(raw, path, headers={"Last-Event-ID": str(2**63 - 1)}) == ["done"]
    assert await _event_names(raw, path, params={"after": 2**63 - 1}) == ["done"]


async def test_resuming_a_live_run_past_its_last_event_ends_when_the_run_does(
    raw: httpx.AsyncClient, client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    # Slow enough that the stream is open while the run goes on.
    upstream.script(model, Reply("one two three four", chunks=["one ", "two ", "three ", "four"], delay=0.3))
    assistant = await client.beta.assistants.create(model=model)
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "count"}])
    run = await client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    path = f"/threads/{thread.id}/runs/{run.id}/events"
    for resume in ({"params": {"after": 10**9}}, {"headers": {"Last-Event-ID": str(2**63 - 1)}}):
        # Nothing past that id will ever come: the stream says so once the run has stopped.
        names = await _event_names(raw, path, **resume)
        assert names[-1:] == ["done"] and not any(n.startswith("thread.") for n in names), names
    finished = await client.beta.threads.runs.poll(run.id, thread_id=thread.id)
    assert finished.status == "completed"


# ---------------------------------------------------------------- finding 9: another tenant's files


@pytest.fixture
async def foreign_file(other_tenant: openai.AsyncOpenAI) -> str:
    return (await other_tenant.files.create(file=("theirs.png", b"\x89PNG\r\n\x1a\n"), purpose="vision")).id


def _message_naming(file_id: str, how: str) -> dict[str, Any]:
    if how == "image_file":
        return {"role": "user", "content": [{"type": "image_file", "image_file": {"file_id": file_id}}]}
    tools = [{"type": how}] if how != "no tool" else []
    return {"role": "user", "content": "see the file", "attachments": [{"file_id": file_id, "tools": tools}]}


HOW = ["code_interpreter", "file_search", "no tool", "image_file"]


@pytest.mark.parametrize("how", HOW)
async def test_a_message_naming_another_tenants_file_is_a_404(
    client: openai.AsyncOpenAI, foreign_file: str, how: str
) -> None:
    thread = await client.beta.threads.create()
    with pytest.raises(openai.NotFoundError) as caught:
        await client.beta.threads.messages.create(thread.id, **_message_naming(foreign_file, how))
    assert_api_error(caught.value, 404, message=foreign_file)
    with pytest.raises(openai.NotFoundError):
        await client.beta.threads.create(messages=[_message_naming(foreign_file, how)])  # type: ignore[list-item]
    assert (await client.beta.threads.messages.list(thread.id)).data == [], "nothing was stored"


@pytest.mark.parametrize("how", HOW)
async def test_additional_messages_naming_another_tenants_file_are_a_404(
    client: openai.AsyncOpenAI, foreign_file: str, model: str, how: str
) -> None:
    assistant = await client.beta.assistants.create(model=model)
    thread = await client.beta.threads.create()
    with pytest.raises(openai.NotFoundError) as caught:
        await client.beta.threads.runs.create(
            thread.id,
            assistant_id=assistant.id,
            additional_messages=[_message_naming(foreign_file, how)],  # type: ignore[list-item]
        )
    assert_api_error(caught.value, 404, message=foreign_file)
    assert (await client.beta.threads.messages.list(thread.id)).data == []
    assert (await client.beta.threads.runs.list(thread.id)).data == [], "no run was started"


async def test_the_tenants_own_file_is_accepted_in_every_place(client: openai.AsyncOpenAI) -> None:
    own = (await client.files.create(file=("mine.png", b"\x89PNG\r\n\x1a\n"), purpose="vision")).id
    thread = await client.beta.threads.create()
    for how in HOW:
        message = await client.beta.threads.messages.create(thread.id, **_message_naming(own, how))
        assert own in message.model_dump_json()


# ---------------------------------------------------------------- finding 11: long threads' prompts


async def test_a_long_threads_prompt_is_read_a_page_at_a_time_and_comes_out_whole(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    # 900 messages: several of the pages services/run_context.py reads the thread in, newest first.
    upstream.script(model, Reply("first"), Reply("second"), Reply("third"))
    assistant = await client.beta.assistants.create(model=model)
    thread = await client.beta.threads.create(
        messages=[{"role": "user", "content": f"m{n}"} for n in range(900)]
    )

    async def sent(**options: Any) -> list[str]:
        run = await client.beta.threads.runs.create_and_poll(
            thread_id=thread.id, assistant_id=assistant.id, **options
        )
        assert run.status == "completed", run.last_error
        return [m["content"] for m in upstream.requests(model)[-1]["messages"]]

    assert await sent() == [f"m{n}" for n in range(900)], "every message, once, in order"
    assert await sent(truncation_strategy={"type": "last_messages", "last_messages": 450}) == [
        *(f"m{n}" for n in range(451, 900)),
        "first",
    ]
    newest = await sent(max_prompt_tokens=1000)
    assert 10 < len(newest) < 900 and newest[-2:] == ["first", "second"]
    assert newest[:-2] == [f"m{n}" for n in range(900 - len(newest) + 2, 900)], "the newest that fit"


# ---------------------------------------------------------------- a 500 keeps the connection usable


async def test_an_unexpected_error_is_a_500_envelope_and_the_connection_goes_on(tmp_path: Path) -> None:
    # A fault no request can provoke on purpose, planted in a real server: an endpoint that fails.
    app = create_app(make_settings(str(tmp_path), None))

    async def fails() -> None:
        raise RuntimeError("planted failure")

    app.add_api_route("/v1/planted-failure", fails, methods=["GET"])
    with serve_in_thread(app, free_port()) as url:
        failed, listed = await _raw_exchange(
            Server(url=url, backend="sqlite"),
            [("GET", "/planted-failure", None), ("GET", "/assistants", None)],
        )
    assert failed[0] == 500
    assert failed[1]["error"]["type"] == "server_error" and "planted" not in failed[1]["error"]["message"]
    assert listed[0] == 200 and listed[1]["object"] == "list"
