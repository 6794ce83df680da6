"""Round five's hostile inputs, on both databases: what the speed work's fast paths (api/hot.py, the
batched reads and writes of run creation, SharedFinds) must still answer with OpenAI's error envelope,
never a 500, and never at the cost of another request (another tenant's, above all)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import openai
import pytest

from openassistants.schemas.common import MAX_TOKEN_LIMIT
from tests.conftest import TENANT_B_KEY, Server, sdk_client
from tests.processes import ServerProcess, process_env, running
from tests.servers import make_settings, running_server
from tests.spec import assert_api_error
from tests.upstream import ScriptedUpstream

# ---------------------------------------------------------------- token limits beyond the runs table

#: One past what the runs table's integer columns hold; and one past a 64-bit integer (SQLite's own).
TOO_MANY_TOKENS = [MAX_TOKEN_LIMIT + 1, 2**63]


@pytest.mark.parametrize("tokens", TOO_MANY_TOKENS, ids=["2^31", "2^63"])
@pytest.mark.parametrize("field", ["max_prompt_tokens", "max_completion_tokens"])
async def test_a_runs_token_limit_beyond_32_bits_is_a_400(
    client: openai.AsyncOpenAI, field: str, tokens: int
) -> None:
    assistant = await client.beta.assistants.create(model="gpt-4o")
    thread = await client.beta.threads.create()
    options: dict[str, Any] = {field: tokens}
    with pytest.raises(openai.BadRequestError) as caught:
        await client.beta.threads.runs.create(thread.id, assistant_id=assistant.id, **options)
    assert_api_error(caught.value, 400, param=field, code="integer_above_max_value", message=str(tokens))
    with pytest.raises(openai.BadRequestError) as caught:
        await client.beta.threads.create_and_run(assistant_id=assistant.id, **options)
    assert_api_error(caught.value, 400, param=field, code="integer_above_max_value")
    assert (await client.beta.threads.runs.list(thread.id)).data == []


@pytest.mark.parametrize("tokens", TOO_MANY_TOKENS, ids=["2^31", "2^63"])
async def test_a_responses_max_output_tokens_beyond_32_bits_is_a_400(
    client: openai.AsyncOpenAI, model: str, tokens: int
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.responses.create(model=model, input="hi", max_output_tokens=tokens)
    assert_api_error(caught.value, 400, param="max_output_tokens", code="integer_above_max_value")


async def test_the_largest_token_limits_are_accepted(client: openai.AsyncOpenAI, model: str) -> None:
    assistant = await client.beta.assistants.create(model=model)
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    run = await client.beta.threads.runs.create_and_poll(
        thread_id=thread.id,
        assistant_id=assistant.id,
        max_prompt_tokens=MAX_TOKEN_LIMIT,
        max_completion_tokens=MAX_TOKEN_LIMIT,
    )
    assert run.status == "completed"
    assert (run.max_prompt_tokens, run.max_completion_tokens) == (MAX_TOKEN_LIMIT, MAX_TOKEN_LIMIT)
    response = await client.responses.create(model=model, input="hi", max_output_tokens=MAX_TOKEN_LIMIT)
    assert response.status == "completed" and response.max_output_tokens == MAX_TOKEN_LIMIT


async def _runs_created_together(
    mine: openai.AsyncOpenAI,
    theirs: openai.AsyncOpenAI,
    model: str,
    refused: dict[str, Any],
    error: type[openai.APIStatusError],
) -> None:
    """Ten runs of ``mine`` with the ``refused`` options, each answered with ``error``, created at
    once with twenty of ``theirs``, which must all be created; none of mine is stored."""
    my_assistant = await mine.beta.assistants.create(model=model)
    their_assistant = await theirs.beta.assistants.create(model=model)
    my_threads = [(await mine.beta.threads.create()).id for _ in range(10)]
    their_threads = [(await theirs.beta.threads.create()).id for _ in range(20)]

    async def refuse(thread_id: str) -> None:
        with pytest.raises(error):
            await mine.beta.threads.runs.create(thread_id, assistant_id=my_assistant.id, **refused)

    async def create(thread_id: str) -> None:
        run = await theirs.beta.threads.runs.create(thread_id, assistant_id=their_assistant.id)
        assert (await theirs.beta.threads.runs.retrieve(run.id, thread_id=thread_id)).id == run.id

    await asyncio.gather(*[refuse(t) for t in my_threads], *[create(t) for t in their_threads])
    for thread_id in my_threads:
        assert (await mine.beta.threads.runs.list(thread_id)).data == []


async def test_one_tenants_refused_runs_cost_another_tenants_runs_nothing(
    client: openai.AsyncOpenAI, other_tenant: openai.AsyncOpenAI, model: str
) -> None:
    """On PostgreSQL run creations arriving together are written by one statement: an out-of-range
    value once failed that statement, and with it every other tenant's run in it (a 500 each)."""
    refused = {"max_completion_tokens": MAX_TOKEN_LIMIT + 1}
    await _runs_created_together(client, other_tenant, model, refused, openai.BadRequestError)


#: A trigger refusing, as the table would an out-of-range value, the runs of one model: a failure of
#: the database's own for one run, wherever it meets a batch of others.
_REFUSE_POISONED_RUNS = """
CREATE FUNCTION refuse_poisoned_run() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.model = 'poisoned' THEN
        RAISE EXCEPTION 'value out of range' USING ERRCODE = 'numeric_value_out_of_range';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_poisoned_run BEFORE INSERT ON runs FOR EACH ROW EXECUTE FUNCTION refuse_poisoned_run();
"""


async def test_a_run_the_database_refuses_fails_alone_in_its_batch(
    pg_url: str, upstream: ScriptedUpstream, tmp_path: Path, model: str
) -> None:
    """PostgreSQL: whatever makes the runs table refuse one run (here a trigger), the other runs
    written in the same statement, other tenants' among them, are created; only that one fails."""
    settings = make_settings(str(tmp_path), pg_url, llm_base_url=upstream.url)
    with running_server(settings) as url:
        connection = await asyncpg.connect(pg_url.replace("postgresql+asyncpg", "postgresql"))
        try:
            await connection.execute(_REFUSE_POISONED_RUNS)
        finally:
            await connection.close()
        server = Server(url=url, backend="postgres")
        async with sdk_client(server) as mine, sdk_client(server, TENANT_B_KEY) as theirs:
            refused = {"model": "poisoned"}
            await _runs_created_together(mine, theirs, model, refused, openai.InternalServerError)


# ---------------------------------------------------------------- messages added together


async def test_a_message_naming_a_missing_file_fails_alone_among_concurrent_ones(
    client: openai.AsyncOpenAI,
) -> None:
    """On PostgreSQL messages created on one thread at once are added in one transaction: one naming
    a file that is not the tenant's once failed all the others with its 404, their messages lost."""
    thread = await client.beta.threads.create()

    async def valid(n: int) -> str:
        return (await client.beta.threads.messages.create(thread.id, role="user", content=f"valid {n}")).id

    async def refused(n: int) -> int:
        with pytest.raises(openai.NotFoundError) as caught:
            if n % 2:
                await client.beta.threads.messages.create(
                    thread.id,
                    role="user",
                    content="refused",
                    attachments=[{"file_id": "file-missing", "tools": [{"type": "file_search"}]}],
                )
            else:
                await client.beta.threads.messages.create(
                    thread.id,
                    role="user",
                    content=[{"type": "image_file", "image_file": {"file_id": "file-missing"}}],
                )
        assert_api_error(caught.value, 404, message="No such File object: file-missing")
        return caught.value.status_code

    outcomes = await asyncio.gather(*[valid(n) if n % 4 else refused(n) for n in range(60)])
    created = [o for o in outcomes if isinstance(o, str)]
    assert len(created) == 45 and outcomes.count(404) == 15
    listed = await client.beta.threads.messages.list(thread.id, limit=100)
    assert sorted(m.id for m in listed.data) == sorted(created)


# ---------------------------------------------------------------- the Responses API's files


def _image_input(file_id: str) -> list[Any]:
    return [{"role": "user", "content": [{"type": "input_image", "file_id": file_id, "detail": "auto"}]}]


async def test_an_input_image_of_another_tenants_file_is_a_404(
    client: openai.AsyncOpenAI, other_tenant: openai.AsyncOpenAI, model: str
) -> None:
    """As messages.create refuses an ``image_file`` of another tenant's (test_hardening.py), the
    Responses and Conversations APIs refuse an ``input_image`` of one, storing nothing."""
    theirs = (await other_tenant.files.create(file=("theirs.png", b"\x89PNG\r\n\x1a\n"), purpose="vision")).id
    conversation = await client.conversations.create()
    attempts: list[Callable[[], Awaitable[object]]] = [
        lambda: client.responses.create(model=model, input=_image_input(theirs)),
        lambda: client.responses.create(
            model=model, input=_image_input(theirs), conversation=conversation.id
        ),
        lambda: client.conversations.create(items=_image_input(theirs)),
        lambda: client.conversations.items.create(conversation.id, items=_image_input(theirs)),
        lambda: client.conversations.items.create(conversation.id, items=_image_input("file-missing")),
    ]
    for attempt in attempts:
        with pytest.raises(openai.NotFoundError) as caught:
            await attempt()
        assert_api_error(caught.value, 404, message="No such File object")
    assert (await client.conversations.items.list(conversation.id)).data == []


async def test_an_input_image_of_the_tenants_own_file_is_accepted(
    client: openai.AsyncOpenAI, model: str
) -> None:
    own = (await client.files.create(file=("mine.png", b"\x89PNG\r\n\x1a\n"), purpose="vision")).id
    response = await client.responses.create(model=model, input=_image_input(own))
    assert response.status == "completed"
    conversation = await client.conversations.create(items=_image_input(own))
    added = await client.conversations.items.create(conversation.id, items=_image_input(own))
    assert len(added.data) == 1
    items = (await client.conversations.items.list(conversation.id, order="asc")).data
    assert [item.content[0].file_id for item in items] == [own, own]  # type: ignore[union-attr]


# ---------------------------------------------------------------- paths


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/assistants/"),
        ("POST", "/assistants/"),
        ("GET", "/assistants/%2F"),
        ("POST", "/assistants/%2F"),
        ("GET", "/threads/{thread}/messages/"),
        ("POST", "/threads/{thread}/messages/"),
        ("POST", "/threads/{thread}/runs/"),
        ("POST", "/responses/"),
        ("GET", "/conversations/{conversation}/items/"),
    ],
)
async def test_a_trailing_slash_is_an_invalid_url_not_a_redirect(
    raw: httpx.AsyncClient, client: openai.AsyncOpenAI, method: str, path: str
) -> None:
    """Starlette's default answered these with an empty 307 to the path without the slash, which a
    client following it (the SDK does) took to another operation: a POST to ``/assistants/%2F``,
    meant to modify the assistant ``/``, went to assistants.create."""
    thread = await client.beta.threads.create()
    conversation = await client.conversations.create()
    url = path.format(thread=thread.id, conversation=conversation.id)
    response = await raw.request(method, url, json={"model": "gpt-4o"} if method == "POST" else None)
    assert response.status_code == 404, (response.status_code, response.headers)
    error = response.json()["error"]
    assert (
        error["message"].startswith(f"Invalid URL ({method} /v1/")
        and error["type"] == "invalid_request_error"
    )


# ---------------------------------------------------------------- requests the HTTP parser refuses


@pytest.fixture(scope="module")
def serve_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """``openassistants serve``: its HTTP protocol (api/read_timeouts.py) is the one answering here."""
    process = ServerProcess(tmp_path_factory.mktemp("unparsable"), process_env(access_log="false"))
    with running(process):
        yield process


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /v1/assistants/\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /v1/assistants?after=\xed\xa0\x80 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /v1/assistants HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer key\x7f\r\n\r\n",
        b"POST /v1/threads HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        b"HELLO\r\n\r\n",
    ],
    ids=[
        "raw-utf8-in-path",
        "lone-surrogate-bytes-in-query",
        "control-byte-in-header",
        "two-lengths",
        "no-http",
    ],
)
async def test_a_request_the_http_parser_refuses_is_a_400_envelope(
    serve_process: ServerProcess, request_bytes: bytes
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", serve_process.port)
    try:
        writer.write(request_bytes)
        answer = await asyncio.wait_for(reader.read(), 10)  # then the server closes the connection
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), answer
    assert b"content-type: application/json" in head.lower(), head
    assert json.loads(body) == {
        "error": {
            "message": "Invalid HTTP request received.",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
