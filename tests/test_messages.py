"""Messages through the SDK: create (string, parts, attachments, metadata), retrieve, update, list, delete."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import openai
import pytest

from tests.spec import assert_api_error


@pytest.fixture
async def thread_id(sdk: openai.AsyncOpenAI) -> str:
    return (await sdk.beta.threads.create()).id


async def test_create_from_a_string(sdk: openai.AsyncOpenAI, thread_id: str) -> None:
    before = int(time.time())
    message = await sdk.beta.threads.messages.create(thread_id, role="user", content="Hello there")
    assert message.id.startswith("msg_")
    assert message.object == "thread.message"
    assert message.thread_id == thread_id
    assert message.role == "user"
    assert before <= message.created_at <= int(time.time())
    assert message.status == "completed"
    assert message.completed_at == message.created_at
    assert (message.incomplete_at, message.incomplete_details) == (None, None)
    assert (message.assistant_id, message.run_id) == (None, None)
    assert message.attachments == []
    assert message.metadata == {}
    assert [c.model_dump() for c in message.content] == [
        {"type": "text", "text": {"value": "Hello there", "annotations": []}}
    ]
    assert await sdk.beta.threads.messages.retrieve(message.id, thread_id=thread_id) == message


async def test_create_from_parts(sdk: openai.AsyncOpenAI, thread_id: str) -> None:
    # image_file parts must name the tenant's own files (tests/test_hardening.py: another's is a 404).
    img = (await sdk.files.create(file=("img.png", b"\x89PNG\r\n\x1a\n"), purpose="vision")).id
    hi = (await sdk.files.create(file=("hi.png", b"\x89PNG\r\n\x1a\n"), purpose="vision")).id
    message = await sdk.beta.threads.messages.create(
        thread_id,
        role="assistant",
        content=[
            {"type": "text", "text": "Look at these:"},
            {"type": "image_file", "image_file": {"file_id": img}},
            {"type": "image_file", "image_file": {"file_id": hi, "detail": "high"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/dog.png", "detail": "low"}},
        ],
    )
    assert message.role == "assistant"
    assert [c.model_dump(exclude_none=True) for c in message.content] == [
        {"type": "text", "text": {"value": "Look at these:", "annotations": []}},
        {"type": "image_file", "image_file": {"file_id": img, "detail": "auto"}},
        {"type": "image_file", "image_file": {"file_id": hi, "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "auto"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/dog.png", "detail": "low"}},
    ]
    assert await sdk.beta.threads.messages.retrieve(message.id, thread_id=thread_id) == message


async def test_create_with_attachments_and_metadata(sdk: openai.AsyncOpenAI, thread_id: str) -> None:
    # Attached files must exist: file_search attachments are put in the thread's vector store.
    a = await sdk.files.create(file=("a.txt", b"alpha"), purpose="assistants")
    b = await sdk.files.create(file=("b.txt", b"beta"), purpose="assistants")
    attachments: Any = [
        {"file_id": a.id, "tools": [{"type": "code_interpreter"}, {"type": "file_search"}]},
        {"file_id": b.id, "tools": [{"type": "file_search"}]},
    ]
    message = await sdk.beta.threads.messages.create(
        thread_id, role="user", content="see files", attachments=attachments, metadata={"k": "v"}
    )
    assert [a.model_dump(exclude_none=True) for a in message.attachments or []] == attachments
    assert message.metadata == {"k": "v"}
    assert await sdk.beta.threads.messages.retrieve(message.id, thread_id=thread_id) == message


async def test_update_replaces_metadata_only(sdk: openai.AsyncOpenAI, thread_id: str) -> None:
    message = await sdk.beta.threads.messages.create(
        thread_id, role="user", content="x", metadata={"a": "1", "b": "2"}
    )
    updated = await sdk.beta.threads.messages.update(message.id, thread_id=thread_id, metadata={"c": "3"})
    assert updated.metadata == {"c": "3"}
    assert updated.model_dump(exclude={"metadata"}) == message.model_dump(exclude={"metadata"})
    assert await sdk.beta.threads.messages.retrieve(message.id, thread_id=thread_id) == updated
    assert await sdk.beta.threads.messages.update(message.id, thread_id=thread_id) == updated


async def test_update_rejects_other_fields(sdk: openai.AsyncOpenAI, thread_id: str) -> None:
    message = await sdk.beta.threads.messages.create(thread_id, role="user", content="x")
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.beta.threads.messages.update(
            message.id, thread_id=thread_id, extra_body={"content": "changed"}
        )
    assert_api_error(caught.value, 400, param="content", code="unknown_parameter")


async def test_list_is_newest_first_and_asc_on_request(sdk: openai.AsyncOpenAI, thread_id: str) -> None:
    created = [
        await sdk.beta.threads.messages.create(thread_id, role="user", content=str(i)) for i in range(3)
    ]
    ids = [m.id for m in created]
    newest_first = await sdk.beta.threads.messages.list(thread_id)
    assert [m.id for m in newest_first.data] == ids[::-1]
    assert newest_first.data[0] == created[-1]
    oldest_first = await sdk.beta.threads.messages.list(thread_id, order="asc")
    assert [m.id for m in oldest_first.data] == ids


async def test_list_filters_by_run_id(sdk: openai.AsyncOpenAI, thread_id: str) -> None:
    message = await sdk.beta.threads.messages.create(thread_id, role="user", content="x")
    assert message.run_id is None
    filtered = await sdk.beta.threads.messages.list(thread_id, run_id="run_unknown")
    assert (filtered.data, filtered.has_more) == ([], False)
    assert [m.id for m in (await sdk.beta.threads.messages.list(thread_id)).data] == [message.id]


async def test_delete(sdk: openai.AsyncOpenAI, thread_id: str) -> None:
    kept = await sdk.beta.threads.messages.create(thread_id, role="user", content="kept")
    doomed = await sdk.beta.threads.messages.create(thread_id, role="user", content="doomed")
    deleted = await sdk.beta.threads.messages.delete(doomed.id, thread_id=thread_id)
    assert (deleted.id, deleted.object, deleted.deleted) == (doomed.id, "thread.message.deleted", True)
    assert [m.id for m in (await sdk.beta.threads.messages.list(thread_id)).data] == [kept.id]
    not_found = f"No message found with id '{doomed.id}'."
    for call in (
        sdk.beta.threads.messages.retrieve(doomed.id, thread_id=thread_id),
        sdk.beta.threads.messages.update(doomed.id, thread_id=thread_id, metadata={}),
        sdk.beta.threads.messages.delete(doomed.id, thread_id=thread_id),
    ):
        with pytest.raises(openai.NotFoundError) as caught:
            await call
        assert_api_error(caught.value, 404, message=not_found, param=None, code=None)


async def test_a_message_is_only_found_in_its_own_thread(sdk: openai.AsyncOpenAI, thread_id: str) -> None:
    message = await sdk.beta.threads.messages.create(thread_id, role="user", content="x")
    elsewhere = (await sdk.beta.threads.create()).id
    for call in (
        sdk.beta.threads.messages.retrieve(message.id, thread_id=elsewhere),
        sdk.beta.threads.messages.update(message.id, thread_id=elsewhere, metadata={"a": "b"}),
        sdk.beta.threads.messages.delete(message.id, thread_id=elsewhere),
    ):
        with pytest.raises(openai.NotFoundError) as caught:
            await call
        assert_api_error(caught.value, 404)
    assert await sdk.beta.threads.messages.retrieve(message.id, thread_id=thread_id) == message


async def test_messages_of_an_unknown_thread_are_404(sdk: openai.AsyncOpenAI) -> None:
    message = "No thread found with id 'thread_nope'."
    for call in (
        sdk.beta.threads.messages.create("thread_nope", role="user", content="x"),
        sdk.beta.threads.messages.list("thread_nope"),
    ):
        with pytest.raises(openai.NotFoundError) as caught:
            await call
        assert_api_error(caught.value, 404, message=message)


async def test_content_at_the_limits_is_accepted(sdk: openai.AsyncOpenAI, thread_id: str) -> None:
    long_text = "x" * 256_000
    message = await sdk.beta.threads.messages.create(
        thread_id,
        role="user",
        content=long_text,
        metadata={f"k{i}": "v" * 512 for i in range(16)},
    )
    assert message.content[0].text.value == long_text  # type: ignore[union-attr]
    parts: Any = [{"type": "text", "text": str(i)} for i in range(100)]
    many = await sdk.beta.threads.messages.create(thread_id, role="user", content=parts)
    assert len(many.content) == 100


INVALID: list[tuple[str, dict[str, Any], str, str]] = [
    ("role system", {"role": "system", "content": "x"}, "role", "invalid_value"),
    ("no role", {"content": "x"}, "role", "missing_required_parameter"),
    ("no content", {"role": "user"}, "content", "missing_required_parameter"),
    ("content a number", {"role": "user", "content": 5}, "content", "invalid_type"),
    ("content null", {"role": "user", "content": None}, "content", "invalid_type"),
    ("content empty array", {"role": "user", "content": []}, "content", "empty_array"),
    ("content too long", {"role": "user", "content": "x" * 256_001}, "content", "string_above_max_length"),
    (
        "content 101 parts",
        {"role": "user", "content": [{"type": "text", "text": "x"}] * 101},
        "content",
        "array_above_max_length",
    ),
    (
        "unknown part type",
        {"role": "user", "content": [{"type": "audio", "audio": {}}]},
        "content[0].type",
        "invalid_value",
    ),
    (
        "part without a type",
        {"role": "user", "content": [{"text": "x"}]},
        "content[0].type",
        "missing_required_parameter",
    ),
    (
        "text part given an object",
        {"role": "user", "content": [{"type": "text", "text": {"value": "x"}}]},
        "content[0].text",
        "invalid_type",
    ),
    (
        "image_file without file_id",
        {"role": "user", "content": [{"type": "image_file", "image_file": {}}]},
        "content[0].image_file.file_id",
        "missing_required_parameter",
    ),
    (
        "image_file bad detail",
        {
            "role": "user",
            "content": [{"type": "image_file", "image_file": {"file_id": "f", "detail": "max"}}],
        },
        "content[0].image_file.detail",
        "invalid_value",
    ),
    (
        "image_url not a url",
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]},
        "content[0].image_url",
        "invalid_value",
    ),
    (
        "attachment without file_id",
        {"role": "user", "content": "x", "attachments": [{"tools": []}]},
        "attachments[0].file_id",
        "missing_required_parameter",
    ),
    (
        "attachment unknown tool",
        {"role": "user", "content": "x", "attachments": [{"file_id": "f", "tools": [{"type": "function"}]}]},
        "attachments[0].tools[0].type",
        "invalid_value",
    ),
    (
        "metadata 17 pairs",
        {"role": "user", "content": "x", "metadata": {str(i): "v" for i in range(17)}},
        "metadata",
        "invalid_value",
    ),
    ("unknown field", {"role": "user", "content": "x", "name": "bob"}, "name", "unknown_parameter"),
]


@pytest.mark.parametrize(("case", "body", "param", "code"), INVALID, ids=[c for c, *_ in INVALID])
async def test_invalid_message_is_400(
    sdk: openai.AsyncOpenAI, thread_id: str, case: str, body: dict[str, Any], param: str, code: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.post(f"/threads/{thread_id}/messages", body=body, cast_to=object)
    assert_api_error(caught.value, 400, param=param, code=code)
    # The same message inside threads.create names its position in the list.
    with pytest.raises(openai.BadRequestError) as in_thread:
        await sdk.beta.threads.create(extra_body={"messages": [{"role": "user", "content": "ok"}, body]})
    assert_api_error(in_thread.value, 400, param=f"messages[1].{param}", code=code)
    assert (await sdk.beta.threads.messages.list(thread_id)).data == []


async def test_concurrent_creates_on_one_thread_are_each_stored_once(
    sdk: openai.AsyncOpenAI, other_tenant: openai.AsyncOpenAI, thread_id: str
) -> None:
    """Concurrent creates on a thread are written together on PostgreSQL (group commit): each still gets
    its own message, stored once, in a list whose created_at never goes back; another tenant's creates
    among them get 404 and store nothing."""
    texts = [f"message {n}" for n in range(24)]
    created, refused = await asyncio.gather(
        asyncio.gather(*(sdk.beta.threads.messages.create(thread_id, role="user", content=t) for t in texts)),
        asyncio.gather(
            *(
                other_tenant.beta.threads.messages.create(thread_id, role="user", content="x")
                for _ in range(4)
            ),
            return_exceptions=True,
        ),
    )
    assert [m.content[0].text.value for m in created] == texts  # type: ignore[union-attr]
    assert all(isinstance(e, openai.NotFoundError) for e in refused)
    listed = [m async for m in sdk.beta.threads.messages.list(thread_id, order="asc", limit=100)]
    assert sorted(m.id for m in listed) == sorted(m.id for m in created)
    assert {m.id: m for m in listed} == {m.id: m for m in created}
    assert [m.created_at for m in listed] == sorted(m.created_at for m in listed)


async def test_a_run_committed_while_a_create_waits_for_the_thread_refuses_it(
    sdk: openai.AsyncOpenAI, thread_id: str, backend: str, database_url: str | None
) -> None:
    """PostgreSQL: a run being stored holds its thread's KEY SHARE lock (its foreign key) until it
    commits; a message created meanwhile waits for it, then sees the run, and gets the 400 of a
    thread with an active run (rather than a check made before the wait, which would miss it). Here
    the run is stored by a transaction of the test's own, held open while the create waits."""
    if backend != "postgres" or database_url is None:
        pytest.skip("SQLite's single writer takes no row locks")
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
    run_id = "run_stored_while_a_message_waits"
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO runs (id, tenant_id, thread_id, assistant_id, created_at, status, model,"
                " instructions, tools, metadata, truncation_strategy, parallel_tool_calls)"
                " SELECT $1, tenant_id, id, 'asst_none', $3, 'requires_action', 'm', '', '[]', '{}',"
                ' \'{"type": "auto"}\', true FROM threads WHERE id = $2',
                run_id,
                thread_id,
                int(time.time()),
            )
            create = asyncio.create_task(
                sdk.beta.threads.messages.create(thread_id, role="user", content="hi")
            )
            while not await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock'"
            ):
                assert not create.done(), create
                await asyncio.sleep(0.01)
        with pytest.raises(openai.BadRequestError) as refused:
            await create
        assert refused.value.body["message"] == (  # type: ignore[index]
            f"Can't add messages to {thread_id} while a run {run_id} is active."
        )
        assert (await sdk.beta.threads.messages.list(thread_id)).data == []
        await conn.execute("UPDATE runs SET status = 'expired' WHERE id = $1", run_id)
    finally:
        await conn.close()
    added = await sdk.beta.threads.messages.create(thread_id, role="user", content="now")
    assert [m.id for m in (await sdk.beta.threads.messages.list(thread_id)).data] == [added.id]
