"""Cursor pagination (limit, order, after, before) on both lists, through the SDK and its auto-pagination.

Counting a list only works in a tenant nobody else writes to: each test runs in an empty tenant of
the ``isolated_server``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import openai
import pytest

from tests.conftest import Server, checked_sdk_client
from tests.spec import SpecChecker, assert_api_error


@dataclass
class Collection:
    """One paginated list in an empty tenant: how to add an item to it, and the SDK's list call."""

    add: Callable[[], Awaitable[tuple[str, int]]]
    list: Callable[..., Any]

    async def add_many(self, n: int) -> list[str]:
        """``n`` items one after another; their ids oldest first."""
        return [(await self.add())[0] for _ in range(n)]


@pytest.fixture(params=["assistants", "messages"])
async def collection(
    request: pytest.FixtureRequest, isolated_server: Server, isolated_key: str, spec_checker: SpecChecker
) -> AsyncIterator[Collection]:
    async with checked_sdk_client(isolated_server, spec_checker, isolated_key) as client:
        if request.param == "assistants":

            async def add_assistant() -> tuple[str, int]:
                created = await client.beta.assistants.create(model="gpt-4o")
                return created.id, created.created_at

            yield Collection(add_assistant, client.beta.assistants.list)
        else:
            thread_id = (await client.beta.threads.create()).id

            async def add_message() -> tuple[str, int]:
                created = await client.beta.threads.messages.create(thread_id, role="user", content="m")
                return created.id, created.created_at

            def list_messages(**params: Any) -> Any:
                return client.beta.threads.messages.list(thread_id, **params)

            yield Collection(add_message, list_messages)


@dataclass
class Page:
    ids: list[str]
    first_id: str | None
    last_id: str | None
    has_more: bool


async def page(collection: Collection, **params: Any) -> Page:
    """One page as the SDK parsed it; first_id and last_id are not SDK fields, so read from its extras."""
    listed = await collection.list(**params)
    extra = listed.model_extra or {}
    assert extra["object"] == "list"
    result = Page([item.id for item in listed.data], extra["first_id"], extra["last_id"], listed.has_more)
    assert result.first_id == (result.ids[0] if result.ids else None)
    assert result.last_id == (result.ids[-1] if result.ids else None)
    return result


def in_order(oldest_first: list[str], order: str) -> list[str]:
    return oldest_first if order == "asc" else oldest_first[::-1]


@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_empty_list(collection: Collection, order: str) -> None:
    assert await page(collection, order=order) == Page([], None, None, False)


@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_exactly_limit_items_has_no_more(collection: Collection, order: str) -> None:
    items = in_order(await collection.add_many(3), order)
    assert await page(collection, order=order, limit=3) == Page(items, items[0], items[-1], False)


@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_one_more_than_limit(collection: Collection, order: str) -> None:
    items = in_order(await collection.add_many(4), order)
    first = await page(collection, order=order, limit=3)
    assert (first.ids, first.has_more) == (items[:3], True)
    second = await page(collection, order=order, limit=3, after=first.last_id)
    assert (second.ids, second.has_more) == (items[3:], False)


async def test_default_order_is_newest_first_and_default_limit_is_20(collection: Collection) -> None:
    items = await collection.add_many(21)
    default = await page(collection)
    assert (default.ids, default.has_more) == (items[::-1][:20], True)


@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_after_at_both_ends(collection: Collection, order: str) -> None:
    items = in_order(await collection.add_many(5), order)
    after_first = await page(collection, order=order, after=items[0])
    assert (after_first.ids, after_first.has_more) == (items[1:], False)
    after_first_limited = await page(collection, order=order, after=items[0], limit=2)
    assert (after_first_limited.ids, after_first_limited.has_more) == (items[1:3], True)
    assert await page(collection, order=order, after=items[-1]) == Page([], None, None, False)


@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_before_at_both_ends(collection: Collection, order: str) -> None:
    items = in_order(await collection.add_many(5), order)
    before_last = await page(collection, order=order, before=items[-1])
    assert (before_last.ids, before_last.has_more) == (items[:-1], False)
    # The items nearest the cursor, still in the requested order; more remain further back.
    nearest = await page(collection, order=order, before=items[-1], limit=2)
    assert (nearest.ids, nearest.has_more) == (items[2:4], True)
    further = await page(collection, order=order, before=nearest.first_id, limit=2)
    assert (further.ids, further.has_more) == (items[0:2], False)
    assert await page(collection, order=order, before=items[0]) == Page([], None, None, False)


@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_after_and_before_together(collection: Collection, order: str) -> None:
    items = in_order(await collection.add_many(5), order)
    between = await page(collection, order=order, after=items[0], before=items[-1])
    assert (between.ids, between.has_more) == (items[1:-1], False)


async def test_150_items_created_at_once_are_walked_completely_and_stably(collection: Collection) -> None:
    # Created concurrently, so many share one created_at second; ties must still order stably.
    added = await asyncio.gather(*(collection.add() for _ in range(150)))
    created = {item_id for item_id, _ in added}
    assert len(created) == 150
    assert len({created_at for _, created_at in added}) < 150, "no created_at ties to order"

    async def walk(order: str, limit: int) -> list[str]:
        seen: list[str] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"order": order, "limit": limit}
            if cursor is not None:
                params["after"] = cursor
            current = await page(collection, **params)
            seen += current.ids
            if not current.has_more:
                return seen
            assert current.ids, "has_more with an empty page"
            cursor = current.last_id

    oldest_first = await walk("asc", 7)
    assert len(oldest_first) == 150 and set(oldest_first) == created
    created_at = dict(added)
    stamps = [created_at[item_id] for item_id in oldest_first]
    assert stamps == sorted(stamps), "asc order is not created_at order"
    assert await walk("desc", 30) == oldest_first[::-1]

    # Walking backwards with `before` from the newest item meets the same order.
    backwards: list[str] = [oldest_first[-1]]
    while True:
        current = await page(collection, order="asc", before=backwards[0], limit=20)
        backwards[:0] = current.ids
        if not current.has_more:
            break
    assert backwards == oldest_first

    # The SDK's auto-pagination follows `after` from each page's last item.
    collected = [item.id async for item in collection.list(limit=16)]
    assert collected == oldest_first[::-1]
    collected_asc = [item.id async for item in collection.list(order="asc", limit=100)]
    assert collected_asc == oldest_first


async def test_auto_pagination_stops_on_an_exact_multiple(collection: Collection) -> None:
    items = await collection.add_many(6)
    assert [item.id async for item in collection.list(order="asc", limit=3)] == items
    assert [item.id async for item in collection.list(order="asc", limit=100)] == items


@pytest.mark.parametrize(
    ("params", "param", "code"),
    [
        ({"limit": 0}, "limit", "integer_below_min_value"),
        ({"limit": -1}, "limit", "integer_below_min_value"),
        ({"limit": 101}, "limit", "integer_above_max_value"),
        ({"limit": "ten"}, "limit", "invalid_type"),
        ({"limit": 1.5}, "limit", "invalid_type"),
        ({"order": "sideways"}, "order", "invalid_value"),
        ({"after": "asst_doesnotexist"}, "after", None),
        ({"before": "msg_doesnotexist"}, "before", None),
    ],
)
async def test_bad_list_parameters_are_400(
    collection: Collection, params: dict[str, Any], param: str, code: str | None
) -> None:
    await collection.add_many(1)
    with pytest.raises(openai.BadRequestError) as caught:
        await collection.list(**params)
    assert_api_error(caught.value, 400, param=param)
    if code is not None:
        assert caught.value.code == code


async def test_limit_bounds_are_accepted(collection: Collection) -> None:
    items = await collection.add_many(2)
    assert (await page(collection, order="asc", limit=1)).ids == items[:1]
    assert (await page(collection, order="asc", limit=100)).ids == items


async def test_deleting_while_paging_walks_every_item(client: openai.AsyncOpenAI) -> None:
    # The SDK loop "list everything, delete each" sends the deleted last item's id as the next cursor.
    thread = await client.beta.threads.create(
        messages=[{"role": "user", "content": str(n)} for n in range(7)]
    )
    seen = []
    async for message in await client.beta.threads.messages.list(thread.id, limit=2):
        seen.append(message.content[0].text.value)  # type: ignore[union-attr]
        await client.beta.threads.messages.delete(message.id, thread_id=thread.id)
    assert seen == [str(n) for n in reversed(range(7))]
    assert (await client.beta.threads.messages.list(thread.id)).data == []
