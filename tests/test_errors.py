"""Every failure, whatever caused it, leaves as OpenAI's error envelope (datasette's test_error_shape).

Each case below is one way to fail, sent through the SDK where the SDK can send it and raw httpx
where it cannot (broken JSON, odd headers). All must give the same shape: the right status, the SDK's
exception class for it, ``{"error": {message, type, param, code}}`` and an ``x-request-id``. The
spec-checked clients also fail the test on any 5xx.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from openassistants.app import create_app
from tests.conftest import TENANT_A_KEY, Server
from tests.servers import (
    free_port,
    make_settings,
    running_server,
    serve_in_thread,
    temporary_postgres_database,
)
from tests.spec import ANY, SpecChecker, assert_api_error

SMALL_BODY_LIMIT = 1024


@pytest.fixture(scope="module")
def small_body_server(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # A database of its own: a second server on the shared one would also execute its runs.
    with ExitStack() as stack:
        database_url = stack.enter_context(temporary_postgres_database()) if backend == "postgres" else None
        data_dir = str(tmp_path_factory.mktemp(f"small-body-{backend}"))
        settings = make_settings(data_dir, database_url, max_body_bytes=SMALL_BODY_LIMIT)
        with running_server(settings) as url:
            yield Server(url=url, backend=backend)


@dataclass
class Clients:
    sdk: openai.AsyncOpenAI
    raw: httpx.AsyncClient
    small: httpx.AsyncClient  # tenant A on a server with max_body_bytes=1024


@pytest.fixture
async def clients(
    sdk: openai.AsyncOpenAI, raw: httpx.AsyncClient, small_body_server: Server, spec_checker: SpecChecker
) -> AsyncIterator[Clients]:
    async with httpx.AsyncClient(
        base_url=small_body_server.base_url,
        headers={"Authorization": f"Bearer {TENANT_A_KEY}"},
        verify=False,
        event_hooks={"response": [spec_checker]},
    ) as small:
        yield Clients(sdk, raw, small)


Call = Callable[[Clients], Awaitable[Any]]


@dataclass
class Case:
    name: str
    status: int
    call: Call
    param: str | None = ANY
    code: str | None = ANY
    message: str = ""


def post_raw(path: str, content: bytes | str, content_type: str = "application/json") -> Call:
    async def call(c: Clients) -> httpx.Response:
        return await c.raw.post(path, content=content, headers={"Content-Type": content_type})

    return call


async def _new_thread(c: Clients) -> str:
    return (await c.sdk.beta.threads.create()).id


async def _retrieve_missing_message(c: Clients) -> Any:
    return await c.sdk.beta.threads.messages.retrieve("msg_missing", thread_id=await _new_thread(c))


async def _update_missing_message(c: Clients) -> Any:
    return await c.sdk.beta.threads.messages.update(
        "msg_missing", thread_id=await _new_thread(c), metadata={}
    )


async def _delete_missing_message(c: Clients) -> Any:
    return await c.sdk.beta.threads.messages.delete("msg_missing", thread_id=await _new_thread(c))


async def _bad_message_part(c: Clients) -> Any:
    return await c.sdk.beta.threads.messages.create(
        await _new_thread(c),
        role="user",
        content=[{"type": "video", "video": {}}],  # type: ignore[list-item]
    )


async def _chunked_oversized(c: Clients) -> httpx.Response:
    body = json.dumps({"model": "gpt-4o", "instructions": "x" * 4000}).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 256):
            yield body[start : start + 256]

    return await c.small.post("assistants", content=chunks(), headers={"Content-Type": "application/json"})


def _sdk(make: Callable[[openai.AsyncOpenAI], Awaitable[Any]]) -> Call:
    async def call(c: Clients) -> Any:
        return await make(c.sdk)

    return call


def _unauthenticated(headers: dict[str, str]) -> Call:
    async def call(c: Clients) -> httpx.Response:
        return await c.raw.get("assistants", headers={"Authorization": "", **headers})

    return call


NOT_FOUND_ASSISTANT = "No assistant found with id 'asst_missing'."
NOT_FOUND_THREAD = "No thread found with id 'thread_missing'."
NOT_FOUND_MESSAGE = "No message found with id 'msg_missing'."
UNPARSABLE = "We could not parse the JSON body of your request."

CASES = [
    # --- unknown ids: 404, OpenAI's wording ------------------------------------------------------------
    Case(
        "retrieve missing assistant",
        404,
        _sdk(lambda s: s.beta.assistants.retrieve("asst_missing")),
        None,
        None,
        NOT_FOUND_ASSISTANT,
    ),
    Case(
        "update missing assistant",
        404,
        _sdk(lambda s: s.beta.assistants.update("asst_missing", name="x")),
        None,
        None,
        NOT_FOUND_ASSISTANT,
    ),
    Case(
        "delete missing assistant",
        404,
        _sdk(lambda s: s.beta.assistants.delete("asst_missing")),
        None,
        None,
        NOT_FOUND_ASSISTANT,
    ),
    Case(
        "retrieve missing thread",
        404,
        _sdk(lambda s: s.beta.threads.retrieve("thread_missing")),
        None,
        None,
        NOT_FOUND_THREAD,
    ),
    Case(
        "update missing thread",
        404,
        _sdk(lambda s: s.beta.threads.update("thread_missing", metadata={})),
        None,
        None,
        NOT_FOUND_THREAD,
    ),
    Case(
        "delete missing thread",
        404,
        _sdk(lambda s: s.beta.threads.delete("thread_missing")),
        None,
        None,
        NOT_FOUND_THREAD,
    ),
    Case(
        "list messages of missing thread",
        404,
        _sdk(lambda s: s.beta.threads.messages.list("thread_missing")),
        None,
        None,
        NOT_FOUND_THREAD,
    ),
    Case(
        "create message in missing thread",
        404,
        _sdk(lambda s: s.beta.threads.messages.create("thread_missing", role="user", content="x")),
        None,
        None,
        NOT_FOUND_THREAD,
    ),
    Case("retrieve missing message", 404, _retrieve_missing_message, None, None, NOT_FOUND_MESSAGE),
    Case("update missing message", 404, _update_missing_message, None, None, NOT_FOUND_MESSAGE),
    Case("delete missing message", 404, _delete_missing_message, None, None, NOT_FOUND_MESSAGE),
    Case("id with a null character", 404, _sdk(lambda s: s.beta.assistants.retrieve("asst_\x00")), None),
    # --- unknown routes and methods: 404 as JSON, never HTML -------------------------------------------
    Case("unknown route", 404, lambda c: c.raw.get("nope"), None, None, "Invalid URL (GET /v1/nope)"),
    Case(
        "unknown method",
        404,
        lambda c: c.raw.put("assistants", json={}),
        None,
        None,
        "Invalid URL (PUT /v1/assistants)",
    ),
    Case(
        "route outside /v1",
        404,
        lambda c: c.raw.get(c.raw.base_url.join("/nope")),
        None,
        None,
        "Invalid URL (GET /nope)",
    ),
    # GET /v1/threads is served: an extension of ours (the console lists threads with it).
    Case("list runs (no such endpoint)", 404, lambda c: c.raw.get("runs"), None),
    # --- parameter validation: 400 naming the parameter ------------------------------------------------
    Case(
        "unknown parameter",
        400,
        _sdk(lambda s: s.beta.assistants.create(model="m", extra_body={"x": 1})),
        "x",
        "unknown_parameter",
    ),
    Case(
        "wrong type",
        400,
        _sdk(lambda s: s.beta.assistants.create(model="m", extra_body={"top_p": "1"})),
        "top_p",
        "invalid_type",
    ),
    Case(
        "boolean for a number",
        400,
        _sdk(lambda s: s.beta.assistants.create(model="m", extra_body={"temperature": True})),
        "temperature",
        "invalid_type",
    ),
    Case(
        "null character in a string",
        400,
        _sdk(lambda s: s.beta.assistants.create(model="m", name="a\x00")),
        "name",
        "invalid_value",
    ),
    Case(
        "limit above 100",
        400,
        _sdk(lambda s: s.beta.assistants.list(limit=101)),
        "limit",
        "integer_above_max_value",
    ),
    Case(
        "limit not an integer",
        400,
        lambda c: c.raw.get("assistants", params={"limit": "lots"}),
        "limit",
        "invalid_type",
    ),
    Case(
        "null character in the query", 400, lambda c: c.raw.get("assistants", params={"after": "\x00"}), None
    ),
    Case("bad content part", 400, _bad_message_part, "content[0].type", "invalid_value"),
    Case("missing required field", 400, post_raw("assistants", b"{}"), "model", "missing_required_parameter"),
    # --- bodies that are not (acceptable) JSON ---------------------------------------------------------
    Case("truncated JSON", 400, post_raw("assistants", b'{"model":'), None, None, UNPARSABLE),
    Case("not UTF-8", 400, post_raw("assistants", b"\xff\xfe\x00"), None, None, UNPARSABLE),
    Case("JSON array body", 400, post_raw("assistants", b"[]"), None, "invalid_type"),
    Case("JSON null body", 400, post_raw("assistants", b"null"), None, "invalid_type"),
    Case("empty body", 400, post_raw("assistants", b""), None),
    Case("form body", 400, post_raw("assistants", "model=gpt-4o", "application/x-www-form-urlencoded"), None),
    Case(
        "NaN", 400, post_raw("assistants", b'{"model":"m","temperature":NaN}'), "temperature", "invalid_value"
    ),
    Case(
        "Infinity inside parameters",
        400,
        post_raw(
            "assistants",
            b'{"model":"m","tools":[{"type":"function","function":'
            b'{"name":"f","parameters":{"maximum":Infinity}}}]}',
        ),
        "tools[0].function.parameters.maximum",
        "invalid_value",
    ),
    Case(
        "lone surrogate",
        400,
        post_raw("assistants", b'{"model":"m","metadata":{"k":"\\ud800"}}'),
        "metadata.k",
        "invalid_value",
    ),
    Case(
        "lone surrogate in a key",
        400,
        post_raw("threads", b'{"metadata":{"\\udc00":"v"}}'),
        "metadata.\\udc00",
        "invalid_value",
    ),
    Case(
        "integer beyond 64 bits",
        400,
        post_raw(
            "assistants",
            b'{"model":"m","response_format":{"type":"json_schema","json_schema":'
            b'{"name":"n","schema":{"maxLength":123456789012345678901234567890}}}}',
        ),
        "response_format.json_schema.schema.maxLength",
        "invalid_value",
    ),
    Case(
        "nested 300 deep",
        400,
        post_raw(
            "assistants",
            b'{"model":"m","metadata":null,"tools":[{"type":"function","function":'
            b'{"name":"f","parameters":' + b'{"a":' * 300 + b"1" + b"}" * 300 + b"}}]}",
        ),
        "tools[0].function.parameters" + ".a" * 61,
        "invalid_value",
        "nested more than 64 levels deep",
    ),
    Case(
        "nested 5000 deep",
        400,
        post_raw("threads", b'{"metadata":' + b"[" * 5000 + b"]" * 5000 + b"}"),
        None,
        None,
        UNPARSABLE,
    ),
    # --- size limit: 413 whether the length is declared or streamed ------------------------------------
    Case(
        "body over max_body_bytes",
        413,
        lambda c: c.small.post("assistants", json={"model": "m", "instructions": "x" * 4000}),
        None,
        None,
        "Request body too large",
    ),
    Case("streamed body over max_body_bytes", 413, _chunked_oversized, None, None, "Request body too large"),
    # --- authentication: 401 before anything else ----------------------------------------------------------
    Case("no API key", 401, _unauthenticated({}), None, "invalid_api_key"),
    Case(
        "wrong API key",
        401,
        _unauthenticated({"Authorization": "Bearer sk-wrong-key-123456"}),
        None,
        "invalid_api_key",
    ),
    Case(
        "not bearer auth",
        401,
        _unauthenticated({"Authorization": f"Basic {TENANT_A_KEY}"}),
        None,
        "invalid_api_key",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_error_shape(clients: Clients, case: Case) -> None:
    try:
        result = await case.call(clients)
    except openai.APIStatusError as exc:
        assert_api_error(exc, case.status, param=case.param, code=case.code, message=case.message)
        return
    assert isinstance(result, httpx.Response), f"{case.name} did not fail: {result!r}"
    assert result.status_code == case.status, result.text
    assert result.headers["content-type"] == "application/json"
    assert result.headers["x-request-id"].startswith("req_")
    body = result.json()
    assert list(body) == ["error"]
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and case.message in error["message"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] is None or isinstance(error["param"], str)
    assert error["code"] is None or isinstance(error["code"], str)
    if case.param is not ANY:
        assert error["param"] == case.param, error
    if case.code is not ANY:
        assert error["code"] == case.code, error


async def test_a_body_exactly_at_max_body_bytes_is_accepted(clients: Clients) -> None:
    compact = json.dumps({"model": "gpt-4o", "name": "edge"}).encode()
    body = compact[:-1] + b" " * (SMALL_BODY_LIMIT - len(compact)) + b"}"
    assert len(body) == SMALL_BODY_LIMIT
    response = await clients.small.post(
        "assistants", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "edge"


async def test_an_unexpected_failure_is_a_500_envelope_with_a_request_id(tmp_path: Path) -> None:
    # No request of ours can reach this handler any more, so give the app a route that fails.
    app = create_app(make_settings(str(tmp_path), None))

    async def fail() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/v1/fail", fail)
    with serve_in_thread(app, free_port()) as url:
        async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=TENANT_A_KEY, max_retries=0) as client:
            with pytest.raises(openai.InternalServerError) as caught:
                await client.get("/fail", cast_to=object)
    assert caught.value.status_code == 500
    assert caught.value.body == {
        "message": "The server had an error while processing your request. Sorry about that!",
        "type": "server_error",
        "param": None,
        "code": None,
    }
    assert caught.value.request_id and caught.value.request_id.startswith("req_")
