"""API keys and tenancy: no key or a wrong key is a 401; another tenant's objects are 404 and never listed.

Every response, success or error, carries an ``x-request-id`` (the spec-checked clients assert it on
every response; the tests here check what the SDK makes of it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import Server, checked_sdk_client
from tests.spec import SpecChecker, assert_api_error


async def test_missing_key_is_401(raw: httpx.AsyncClient) -> None:
    response = await raw.get("assistants", headers={"Authorization": ""})
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "invalid_api_key"
    assert error["message"].startswith("You didn't provide an API key.")


async def test_wrong_key_is_401_and_not_echoed(server: Server, spec_checker: SpecChecker) -> None:
    secret = "sk-not-a-real-key-0123456789"
    async with checked_sdk_client(server, spec_checker, api_key=secret) as stranger:
        with pytest.raises(openai.AuthenticationError) as caught:
            await stranger.beta.assistants.create(model="gpt-4o")
    error = assert_api_error(caught.value, 401, code="invalid_api_key", message="Incorrect API key provided")
    assert secret not in str(error.body)
    assert error.request_id


@pytest.mark.parametrize(
    "authorization",
    [
        "Basic c2stdGVzdA==",
        "Bearer",
        "Bearer sk-test-tenant-a-but-longer",
        "sk-test-tenant-a",
        "Token sk-test-tenant-a",
    ],
)
async def test_malformed_authorization_is_401(raw: httpx.AsyncClient, authorization: str) -> None:
    response = await raw.get("assistants", headers={"Authorization": authorization})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


async def test_auth_comes_before_routing_and_validation(raw: httpx.AsyncClient) -> None:
    wrong = {"Authorization": "Bearer sk-wrong"}
    for response in (
        await raw.post("assistants", content=b"{not json", headers=wrong),
        await raw.get("no-such-route", headers=wrong),
        await raw.get("assistants", params={"limit": 0}, headers=wrong),
    ):
        assert response.status_code == 401, response.text


async def test_routes_outside_v1_need_no_key(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.url) as anonymous:
        assert (await anonymous.get("/healthz")).status_code == 200
        assert (await anonymous.get("/openapi.json")).status_code == 200


# --- tenancy -------------------------------------------------------------------------------------------

Attempt = Callable[[openai.AsyncOpenAI], Awaitable[Any]]


async def _all_not_found(client: openai.AsyncOpenAI, attempts: list[Attempt]) -> None:
    for attempt in attempts:
        with pytest.raises(openai.NotFoundError) as caught:
            await attempt(client)
        assert_api_error(caught.value, 404)


async def test_other_tenants_assistant_is_invisible(
    sdk: openai.AsyncOpenAI, sdk_b: openai.AsyncOpenAI
) -> None:
    mine = await sdk.beta.assistants.create(model="gpt-4o", name="tenant A's")
    await _all_not_found(
        sdk_b,
        [
            lambda c: c.beta.assistants.retrieve(mine.id),
            lambda c: c.beta.assistants.update(mine.id, name="stolen"),
            lambda c: c.beta.assistants.delete(mine.id),
        ],
    )
    with pytest.raises(openai.NotFoundError) as caught:
        await sdk_b.beta.assistants.retrieve(mine.id)
    # The same message as for an id that never existed: nothing tells B the id is taken.
    assert caught.value.body == {
        "message": f"No assistant found with id '{mine.id}'.",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    assert mine.id not in [a.id async for a in sdk_b.beta.assistants.list(limit=100)]
    assert await sdk.beta.assistants.retrieve(mine.id) == mine


async def test_other_tenants_thread_and_messages_are_invisible(
    sdk: openai.AsyncOpenAI, sdk_b: openai.AsyncOpenAI
) -> None:
    thread = await sdk.beta.threads.create(metadata={"owner": "a"})
    message = await sdk.beta.threads.messages.create(thread.id, role="user", content="private")
    await _all_not_found(
        sdk_b,
        [
            lambda c: c.beta.threads.retrieve(thread.id),
            lambda c: c.beta.threads.update(thread.id, metadata={"owner": "b"}),
            lambda c: c.beta.threads.messages.list(thread.id),
            lambda c: c.beta.threads.messages.create(thread.id, role="user", content="injected"),
            lambda c: c.beta.threads.messages.retrieve(message.id, thread_id=thread.id),
            lambda c: c.beta.threads.messages.update(message.id, thread_id=thread.id, metadata={"x": "y"}),
            lambda c: c.beta.threads.messages.delete(message.id, thread_id=thread.id),
            lambda c: c.beta.threads.delete(thread.id),
        ],
    )
    assert await sdk.beta.threads.retrieve(thread.id) == thread
    assert [m.id for m in (await sdk.beta.threads.messages.list(thread.id)).data] == [message.id]
    assert await sdk.beta.threads.messages.retrieve(message.id, thread_id=thread.id) == message


async def test_a_message_is_not_reachable_through_another_tenants_thread(
    sdk: openai.AsyncOpenAI, sdk_b: openai.AsyncOpenAI
) -> None:
    message = await sdk.beta.threads.messages.create(
        (await sdk.beta.threads.create()).id, role="user", content="private"
    )
    their_thread = await sdk_b.beta.threads.create()
    await _all_not_found(
        sdk_b,
        [
            lambda c: c.beta.threads.messages.retrieve(message.id, thread_id=their_thread.id),
            lambda c: c.beta.threads.messages.update(message.id, thread_id=their_thread.id, metadata={}),
            lambda c: c.beta.threads.messages.delete(message.id, thread_id=their_thread.id),
        ],
    )


async def test_another_tenants_id_is_no_cursor(sdk: openai.AsyncOpenAI, sdk_b: openai.AsyncOpenAI) -> None:
    mine = await sdk.beta.assistants.create(model="gpt-4o")
    await sdk_b.beta.assistants.create(model="gpt-4o")
    for cursor in ({"after": mine.id}, {"before": mine.id}):
        with pytest.raises(openai.BadRequestError) as caught:
            await sdk_b.beta.assistants.list(**cursor)  # type: ignore[arg-type]
        assert_api_error(caught.value, 400, param=next(iter(cursor)))


# --- x-request-id --------------------------------------------------------------------------------------


async def test_every_response_has_a_fresh_request_id(sdk: openai.AsyncOpenAI) -> None:
    created = await sdk.beta.assistants.with_raw_response.create(model="gpt-4o")
    listed = await sdk.beta.assistants.with_raw_response.list()
    with pytest.raises(openai.NotFoundError) as missing:
        await sdk.beta.assistants.retrieve("asst_missing")
    with pytest.raises(openai.BadRequestError) as invalid:
        await sdk.beta.assistants.create(model="gpt-4o", temperature=5)
    ids = [
        created.request_id,
        created.parse()._request_id,
        listed.request_id,
        missing.value.request_id,
        invalid.value.request_id,
    ]
    assert all(isinstance(i, str) and i.startswith("req_") for i in ids), ids
    assert ids[0] == ids[1]
    assert len(set(ids)) == 4
