"""Property tests: any sequence of creates, updates and deletes leaves the list endpoints agreeing with
an in-memory model, walked page by page in both orders (first_id, last_id and has_more included).

Assistants run in an empty tenant of the ``isolated_server`` (emptied again before each example);
messages in a new thread per example.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Server, checked_sdk_client
from tests.spec import SpecChecker

EXAMPLES = settings(
    max_examples=20,
    deadline=None,
    # The client fixture is deliberately shared by the examples; each example resets its own state.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

metadata = st.dictionaries(
    st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8),
    st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12),
    max_size=3,
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("create"), metadata),
        st.tuples(st.just("update"), st.integers(min_value=0, max_value=30), metadata),
        st.tuples(st.just("delete"), st.integers(min_value=0, max_value=30)),
    ),
    max_size=10,
)


@dataclass
class Model:
    """What the list should hold: every id ever created (oldest first) and the live ones' metadata."""

    created: list[str] = field(default_factory=list)
    live: dict[str, dict[str, str]] = field(default_factory=dict)

    def pick(self, index: int) -> str | None:
        return self.created[index % len(self.created)] if self.created else None


@dataclass
class Resource:
    create: Callable[[dict[str, str]], Awaitable[str]]
    update: Callable[[str, dict[str, str]], Awaitable[Any]]
    delete: Callable[[str], Awaitable[Any]]
    list: Callable[..., Awaitable[Any]]


async def apply(resource: Resource, ops: list[tuple[Any, ...]]) -> Model:
    model = Model()
    for op in ops:
        if op[0] == "create":
            object_id = await resource.create(op[1])
            model.created.append(object_id)
            model.live[object_id] = op[1]
            continue
        target = model.pick(op[1])
        if target is None:
            continue
        if target not in model.live:
            with pytest.raises(openai.NotFoundError):
                await (resource.update(target, op[2]) if op[0] == "update" else resource.delete(target))
        elif op[0] == "update":
            await resource.update(target, op[2])
            model.live[target] = op[2]  # metadata is replaced, never merged
        else:
            await resource.delete(target)
            del model.live[target]
    return model


async def assert_lists_agree(resource: Resource, model: Model, page_size: int) -> None:
    oldest_first = [object_id for object_id in model.created if object_id in model.live]
    for order, expected in (("asc", oldest_first), ("desc", oldest_first[::-1])):
        seen: list[Any] = []
        params: dict[str, Any] = {"order": order, "limit": page_size}
        while True:
            page = await resource.list(**params)
            items = list(page.data)
            remaining = len(expected) - len(seen) - len(items)
            assert page.has_more == (remaining > 0)
            extra = page.model_extra or {}
            assert extra["first_id"] == (items[0].id if items else None)
            assert extra["last_id"] == (items[-1].id if items else None)
            seen += items
            if not page.has_more:
                break
            params["after"] = items[-1].id
        assert [item.id for item in seen] == expected
        assert {item.id: item.metadata for item in seen} == {i: model.live[i] for i in expected}


@pytest.fixture
async def isolated_sdk(
    isolated_server: Server, isolated_key: str, spec_checker: SpecChecker
) -> AsyncIterator[openai.AsyncOpenAI]:
    async with checked_sdk_client(isolated_server, spec_checker, isolated_key) as client:
        yield client


@EXAMPLES
@given(ops=operations, page_size=st.integers(min_value=1, max_value=4))
async def test_assistant_lists_follow_the_model(
    isolated_sdk: openai.AsyncOpenAI, ops: list[tuple[Any, ...]], page_size: int
) -> None:
    assistants = isolated_sdk.beta.assistants
    async for leftover in assistants.list(limit=100):  # from the previous example
        await assistants.delete(leftover.id)

    async def create(meta: dict[str, str]) -> str:
        return (await assistants.create(model="gpt-4o", metadata=meta)).id

    resource = Resource(
        create=create,
        update=lambda object_id, meta: assistants.update(object_id, metadata=meta),
        delete=assistants.delete,
        list=assistants.list,  # type: ignore[arg-type]
    )
    model = await apply(resource, ops)
    await assert_lists_agree(resource, model, page_size)


@EXAMPLES
@given(ops=operations, page_size=st.integers(min_value=1, max_value=4))
async def test_message_lists_follow_the_model(
    isolated_sdk: openai.AsyncOpenAI, ops: list[tuple[Any, ...]], page_size: int
) -> None:
    thread_id = (await isolated_sdk.beta.threads.create()).id
    messages = isolated_sdk.beta.threads.messages

    async def create(meta: dict[str, str]) -> str:
        return (await messages.create(thread_id, role="user", content="hi", metadata=meta)).id

    def list_messages(**params: Any) -> Any:
        return messages.list(thread_id, **params)

    resource = Resource(
        create=create,
        update=lambda object_id, meta: messages.update(object_id, thread_id=thread_id, metadata=meta),
        delete=lambda object_id: messages.delete(object_id, thread_id=thread_id),
        list=list_messages,
    )
    model = await apply(resource, ops)
    await assert_lists_agree(resource, model, page_size)
