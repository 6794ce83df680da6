"""Threads through the SDK: create (with messages, metadata, tool_resources), retrieve, update, delete."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import openai
import pytest

from tests.spec import assert_api_error


async def test_create_with_no_arguments(sdk: openai.AsyncOpenAI) -> None:
    before = int(time.time())
    thread = await sdk.beta.threads.create()
    assert thread.id.startswith("thread_")
    assert thread.object == "thread"
    assert before <= thread.created_at <= int(time.time())
    assert thread.metadata == {}
    assert (await sdk.beta.threads.messages.list(thread.id)).data == []
    assert await sdk.beta.threads.retrieve(thread.id) == thread


async def test_create_without_a_body(raw: httpx.AsyncClient) -> None:
    response = await raw.post("threads")
    assert response.status_code == 200, response.text
    assert response.json()["object"] == "thread"


async def new_file(sdk: openai.AsyncOpenAI) -> str:
    return (await sdk.files.create(file=("notes.txt", b"notes"), purpose="assistants")).id


async def new_store(sdk: openai.AsyncOpenAI) -> str:
    return (await sdk.vector_stores.create(name="thread store")).id


async def test_create_with_messages_metadata_and_tool_resources(sdk: openai.AsyncOpenAI) -> None:
    file_a, file_b = await new_file(sdk), await new_file(sdk)
    tool_resources: Any = {
        "code_interpreter": {"file_ids": [file_a, file_b]},
        "file_search": {"vector_store_ids": [await new_store(sdk)]},
    }
    thread = await sdk.beta.threads.create(
        messages=[
            {"role": "user", "content": "first", "metadata": {"n": "1"}},
            {"role": "assistant", "content": [{"type": "text", "text": "second"}]},
            {
                "role": "user",
                "content": "third",
                "attachments": [{"file_id": file_a, "tools": [{"type": "code_interpreter"}]}],
            },
        ],
        metadata={"project": "apollo"},
        tool_resources=tool_resources,
    )
    assert thread.metadata == {"project": "apollo"}
    assert thread.tool_resources is not None
    assert thread.tool_resources.model_dump(exclude_none=True) == tool_resources
    assert await sdk.beta.threads.retrieve(thread.id) == thread

    messages = (await sdk.beta.threads.messages.list(thread.id, order="asc")).data
    assert [(m.role, m.content[0].text.value) for m in messages] == [  # type: ignore[union-attr]
        ("user", "first"),
        ("assistant", "second"),
        ("user", "third"),
    ]
    assert {m.thread_id for m in messages} == {thread.id}
    assert messages[0].metadata == {"n": "1"}
    assert messages[2].attachments is not None
    assert messages[2].attachments[0].file_id == file_a
    assert all(m.run_id is None and m.assistant_id is None for m in messages)


async def test_a_bad_initial_message_is_400_naming_it(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.beta.threads.create(
            messages=[{"role": "user", "content": "ok"}, {"role": "system", "content": "no"}]  # type: ignore[typeddict-item]
        )
    assert_api_error(caught.value, 400, param="messages[1].role", code="invalid_value")


async def test_update_metadata_replaces_and_keeps_tool_resources(sdk: openai.AsyncOpenAI) -> None:
    thread = await sdk.beta.threads.create(
        metadata={"a": "1", "b": "2"},
        tool_resources={"code_interpreter": {"file_ids": [await new_file(sdk)]}},
    )
    updated = await sdk.beta.threads.update(thread.id, metadata={"c": "3"})
    assert updated.metadata == {"c": "3"}
    assert updated.tool_resources == thread.tool_resources
    assert await sdk.beta.threads.retrieve(thread.id) == updated


async def test_update_tool_resources_keeps_metadata(sdk: openai.AsyncOpenAI) -> None:
    thread = await sdk.beta.threads.create(metadata={"a": "1"})
    store = await new_store(sdk)
    updated = await sdk.beta.threads.update(
        thread.id, tool_resources={"file_search": {"vector_store_ids": [store]}}
    )
    assert updated.metadata == {"a": "1"}
    assert updated.tool_resources is not None
    assert updated.tool_resources.model_dump(exclude_none=True) == {
        "file_search": {"vector_store_ids": [store]}
    }


async def test_tool_resources_naming_unknown_objects_are_404(
    sdk: openai.AsyncOpenAI, other_tenant: openai.AsyncOpenAI
) -> None:
    foreign_store = (await other_tenant.vector_stores.create(name="not yours")).id
    cases: list[tuple[Any, str]] = [
        (
            {"file_search": {"vector_store_ids": ["vs_missing"]}},
            "No vector store found with id 'vs_missing'.",
        ),
        (
            {"file_search": {"vector_store_ids": [foreign_store]}},
            f"No vector store found with id '{foreign_store}'.",
        ),
        ({"code_interpreter": {"file_ids": ["file-missing"]}}, "No such File object: file-missing"),
    ]
    thread = await sdk.beta.threads.create()
    assistant = await sdk.beta.assistants.create(model="gpt-4o")
    for resources, message in cases:
        attempts: list[Callable[[], Awaitable[object]]] = [
            lambda r=resources: sdk.beta.threads.create(tool_resources=r),
            lambda r=resources: sdk.beta.threads.update(thread.id, tool_resources=r),
            lambda r=resources: sdk.beta.assistants.create(model="gpt-4o", tool_resources=r),
            lambda r=resources: sdk.beta.assistants.update(assistant.id, tool_resources=r),
            lambda r=resources: sdk.beta.threads.create_and_run(assistant_id=assistant.id, tool_resources=r),
        ]
        for attempt in attempts:
            with pytest.raises(openai.NotFoundError) as caught:
                await attempt()
            assert_api_error(caught.value, 404)
            assert caught.value.body["message"] == message  # type: ignore[index]
    # Nothing was stored on the way to those errors.
    assert (await sdk.beta.threads.retrieve(thread.id)).tool_resources == thread.tool_resources
    assert (await sdk.beta.assistants.retrieve(assistant.id)).tool_resources == assistant.tool_resources


async def test_update_with_nothing_and_with_null_metadata(sdk: openai.AsyncOpenAI) -> None:
    thread = await sdk.beta.threads.create(metadata={"a": "1"})
    assert await sdk.beta.threads.update(thread.id) == thread
    cleared = await sdk.beta.threads.update(thread.id, extra_body={"metadata": None})
    assert cleared.metadata == {}


async def test_delete_cascades_to_messages(sdk: openai.AsyncOpenAI) -> None:
    thread = await sdk.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    message = (await sdk.beta.threads.messages.list(thread.id)).data[0]
    deleted = await sdk.beta.threads.delete(thread.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (thread.id, "thread.deleted", True)

    not_found = f"No thread found with id '{thread.id}'."
    for call in (
        sdk.beta.threads.retrieve(thread.id),
        sdk.beta.threads.update(thread.id, metadata={}),
        sdk.beta.threads.delete(thread.id),
        sdk.beta.threads.messages.list(thread.id),
        sdk.beta.threads.messages.create(thread.id, role="user", content="late"),
    ):
        with pytest.raises(openai.NotFoundError) as caught:
            await call
        assert_api_error(caught.value, 404, message=not_found, param=None, code=None)
    with pytest.raises(openai.NotFoundError) as caught:
        await sdk.beta.threads.messages.retrieve(message.id, thread_id=thread.id)
    assert_api_error(caught.value, 404)


async def test_deleting_one_thread_leaves_others_alone(sdk: openai.AsyncOpenAI) -> None:
    kept = await sdk.beta.threads.create(messages=[{"role": "user", "content": "keep me"}])
    doomed = await sdk.beta.threads.create(messages=[{"role": "user", "content": "bye"}])
    await sdk.beta.threads.delete(doomed.id)
    remaining = (await sdk.beta.threads.messages.list(kept.id)).data
    assert [m.content[0].text.value for m in remaining] == ["keep me"]  # type: ignore[union-attr]


INVALID: list[tuple[str, dict[str, Any], str, str]] = [
    ("metadata 17 pairs", {"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata", "invalid_value"),
    ("metadata key 65", {"metadata": {"k" * 65: "v"}}, "metadata", "invalid_value"),
    ("metadata value 513", {"metadata": {"k": "v" * 513}}, "metadata", "invalid_value"),
    (
        "code_interpreter 21 files",
        {"tool_resources": {"code_interpreter": {"file_ids": ["file-x"] * 21}}},
        "tool_resources.code_interpreter.file_ids",
        "array_above_max_length",
    ),
    (
        "file_search 2 stores",
        {"tool_resources": {"file_search": {"vector_store_ids": ["vs_a", "vs_b"]}}},
        "tool_resources.file_search.vector_store_ids",
        "array_above_max_length",
    ),
    (
        "unknown tool resource",
        {"tool_resources": {"browser": {}}},
        "tool_resources.browser",
        "unknown_parameter",
    ),
    ("unknown field", {"title": "x"}, "title", "unknown_parameter"),
]


@pytest.mark.parametrize(("case", "fields", "param", "code"), INVALID, ids=[c for c, *_ in INVALID])
async def test_invalid_create_and_update_are_400(
    sdk: openai.AsyncOpenAI, case: str, fields: dict[str, Any], param: str, code: str
) -> None:
    with pytest.raises(openai.BadRequestError) as creating:
        await sdk.beta.threads.create(extra_body=fields)
    assert_api_error(creating.value, 400, param=param, code=code)
    thread = await sdk.beta.threads.create(metadata={"kept": "yes"})
    with pytest.raises(openai.BadRequestError) as updating:
        await sdk.beta.threads.update(thread.id, extra_body=fields)
    assert_api_error(updating.value, 400, param=param, code=code)
    assert await sdk.beta.threads.retrieve(thread.id) == thread


async def test_metadata_at_the_limits_is_accepted(sdk: openai.AsyncOpenAI) -> None:
    metadata = {f"{i:02d}" + "k" * 62: "v" * 512 for i in range(16)}
    thread = await sdk.beta.threads.create(metadata=metadata)
    assert thread.metadata == metadata
    assert (await sdk.beta.threads.update(thread.id, metadata=metadata)).metadata == metadata


async def test_vector_stores_helper_is_refused_on_update(sdk: openai.AsyncOpenAI) -> None:
    thread = await sdk.beta.threads.create()
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.beta.threads.update(
            thread.id, extra_body={"tool_resources": {"file_search": {"vector_stores": [{}]}}}
        )
    assert_api_error(caught.value, 400, param="tool_resources.file_search.vector_stores")
