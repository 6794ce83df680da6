"""End to end through the SDK: the core objects round-trip on every backend."""

from __future__ import annotations

import openai
import pytest


async def test_assistant_thread_message_round_trip(client: openai.AsyncOpenAI) -> None:
    assistant = await client.beta.assistants.create(model="gpt-4o", name="helper")
    assert assistant.id.startswith("asst_")
    assert (await client.beta.assistants.retrieve(assistant.id)).name == "helper"

    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "hello"}])
    message = await client.beta.threads.messages.create(thread.id, role="user", content="again")
    listed = await client.beta.threads.messages.list(thread.id)
    assert listed.data[0].id == message.id
    assert listed.data[1].content[0].text.value == "hello"  # type: ignore[union-attr]

    await client.beta.threads.delete(thread.id)
    with pytest.raises(openai.NotFoundError):
        await client.beta.threads.messages.list(thread.id)


async def test_other_tenant_sees_nothing(
    client: openai.AsyncOpenAI, other_tenant: openai.AsyncOpenAI
) -> None:
    assistant = await client.beta.assistants.create(model="gpt-4o")
    with pytest.raises(openai.NotFoundError):
        await other_tenant.beta.assistants.retrieve(assistant.id)
    listed = await other_tenant.beta.assistants.list(limit=100)
    assert assistant.id not in [a.id for a in listed.data]
