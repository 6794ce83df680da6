"""Conversations through the SDK: create, retrieve, update, delete, items; responses that go on a
conversation; and the bridge: a conversation is a thread, so the Assistants API and the Responses
API continue each other's."""

from __future__ import annotations

import openai
import pytest

from tests.upstream import Reply, ScriptedUpstream, ToolCalls

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    "strict": False,
}


async def test_conversation_lifecycle_and_items(sdk: openai.AsyncOpenAI) -> None:
    conversation = await sdk.conversations.create(
        metadata={"topic": "demo"}, items=[{"type": "message", "role": "user", "content": "Hello"}]
    )
    assert conversation.id.startswith("conv_") and conversation.object == "conversation"
    assert conversation.metadata == {"topic": "demo"}

    added = await sdk.conversations.items.create(
        conversation.id,
        items=[
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hi!"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "How are you?"}]},
        ],
    )
    assert [i.role for i in added.data] == ["assistant", "user"]  # type: ignore[union-attr]

    items = await sdk.conversations.items.list(conversation.id, order="asc")
    assert [i.content[0].text for i in items.data] == ["Hello", "Hi!", "How are you?"]  # type: ignore[union-attr]
    first = await sdk.conversations.items.retrieve(items.data[0].id, conversation_id=conversation.id)
    assert first.id == items.data[0].id

    after_delete = await sdk.conversations.items.delete(items.data[1].id, conversation_id=conversation.id)
    assert after_delete.id == conversation.id
    assert len((await sdk.conversations.items.list(conversation.id)).data) == 2

    updated = await sdk.conversations.update(conversation.id, metadata={"topic": "changed"})
    assert updated.metadata == {"topic": "changed"}
    assert (await sdk.conversations.retrieve(conversation.id)).metadata == {"topic": "changed"}

    deleted = await sdk.conversations.delete(conversation.id)
    assert deleted.deleted is True and deleted.id == conversation.id
    with pytest.raises(openai.NotFoundError) as caught:
        await sdk.conversations.retrieve(conversation.id)
    assert caught.value.body["message"] == f"Conversation with id '{conversation.id}' not found."  # type: ignore[index]


async def test_at_most_twenty_items_per_call(client: openai.AsyncOpenAI) -> None:
    conversation = await client.conversations.create()
    items = [{"type": "message", "role": "user", "content": f"m{i}"} for i in range(21)]

    with pytest.raises(openai.BadRequestError) as caught:
        await client.conversations.items.create(conversation.id, items=items)  # type: ignore[arg-type]
    assert caught.value.body["param"] == "items"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        await client.conversations.create(items=items)  # type: ignore[arg-type]


async def test_responses_on_a_conversation_see_and_add_its_items(
    sdk: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, Reply("Nice to meet you, Ada."), Reply("Your name is Ada."))
    conversation = await sdk.conversations.create(items=[{"role": "user", "content": "I am Ada."}])

    first = await sdk.responses.create(model=model, conversation=conversation.id, input="Hello!")
    second = await sdk.responses.create(model=model, conversation={"id": conversation.id}, input="My name?")

    assert first.conversation is not None and first.conversation.id == conversation.id
    assert second.output_text == "Your name is Ada."
    assert upstream.requests(model)[1]["messages"] == [
        {"role": "user", "content": "I am Ada."},
        {"role": "user", "content": "Hello!"},
        {"role": "assistant", "content": "Nice to meet you, Ada."},
        {"role": "user", "content": "My name?"},
    ]
    items = await sdk.conversations.items.list(conversation.id, order="asc")
    texts = [i.content[0].text for i in items.data]  # type: ignore[union-attr]
    assert texts == ["I am Ada.", "Hello!", "Nice to meet you, Ada.", "My name?", "Your name is Ada."]


async def test_function_call_round_trip_via_a_conversation(
    sdk: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, ToolCalls([("get_weather", '{"city": "Bern"}')], ids=["call_b1"]), Reply("Snowy."))
    conversation = await sdk.conversations.create()

    first = await sdk.responses.create(
        model=model, conversation=conversation.id, input="Bern?", tools=[WEATHER]
    )
    assert first.output[0].type == "function_call"
    second = await sdk.responses.create(
        model=model,
        conversation=conversation.id,
        input=[{"type": "function_call_output", "call_id": "call_b1", "output": "snow"}],
        tools=[WEATHER],
    )

    assert second.output_text == "Snowy."
    items = await sdk.conversations.items.list(conversation.id, order="asc")
    assert [i.type for i in items.data] == ["message", "function_call", "function_call_output", "message"]


async def test_a_thread_made_with_assistants_goes_on_as_a_conversation(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, Reply("Hi from a run."), Reply("And from a response."))
    assistant = await client.beta.assistants.create(model=model)
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "Hello"}])
    await client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    conversation_id = "conv_" + thread.id.removeprefix("thread_")

    response = await client.responses.create(model=model, conversation=conversation_id, input="Again")

    assert response.output_text == "And from a response."
    assert [m["content"] for m in upstream.requests(model)[1]["messages"]] == [
        "Hello",
        "Hi from a run.",
        "Again",
    ]
    same = await client.responses.create(model=model, conversation=thread.id, input="By thread id")
    assert same.conversation is not None and same.conversation.id == conversation_id
    messages = await client.beta.threads.messages.list(thread.id, order="asc")
    assert [m.role for m in messages.data] == ["user", "assistant", "user", "assistant", "user", "assistant"]


async def test_a_conversation_is_read_and_continued_as_a_thread(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, Reply("From a response."), Reply("From a run."))
    conversation = await client.conversations.create()
    await client.responses.create(model=model, conversation=conversation.id, input="Hello")
    thread_id = "thread_" + conversation.id.removeprefix("conv_")

    messages = await client.beta.threads.messages.list(thread_id, order="asc")
    assert [m.content[0].text.value for m in messages.data] == ["Hello", "From a response."]  # type: ignore[union-attr]
    assistant = await client.beta.assistants.create(model=model)
    run = await client.beta.threads.runs.create_and_poll(thread_id=thread_id, assistant_id=assistant.id)

    assert run.status == "completed"
    assert [m["content"] for m in upstream.requests(model)[1]["messages"]] == ["Hello", "From a response."]


async def test_unknown_conversation_is_a_404(client: openai.AsyncOpenAI, model: str) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await client.responses.create(model=model, conversation="conv_nope", input="Hi")
    assert caught.value.body["message"] == "Conversation with id 'conv_nope' not found."  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        await client.conversations.items.list("conv_nope")


async def test_another_tenant_cannot_reach_a_conversation(
    client: openai.AsyncOpenAI, other_tenant: openai.AsyncOpenAI, model: str
) -> None:
    conversation = await client.conversations.create(items=[{"role": "user", "content": "secret"}])

    with pytest.raises(openai.NotFoundError):
        await other_tenant.conversations.retrieve(conversation.id)
    with pytest.raises(openai.NotFoundError):
        await other_tenant.conversations.items.list(conversation.id)
    with pytest.raises(openai.NotFoundError):
        await other_tenant.conversations.items.create(
            conversation.id, items=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(openai.NotFoundError):
        await other_tenant.responses.create(model=model, conversation=conversation.id, input="leak?")
    with pytest.raises(openai.NotFoundError):
        await other_tenant.conversations.delete(conversation.id)
    assert len((await client.conversations.items.list(conversation.id)).data) == 1


async def test_items_page_with_after(client: openai.AsyncOpenAI) -> None:
    conversation = await client.conversations.create(
        items=[{"role": "user", "content": f"m{i}"} for i in range(5)]  # type: ignore[misc]
    )

    first = await client.conversations.items.list(conversation.id, limit=2, order="asc")
    assert first.has_more and [i.content[0].text for i in first.data] == ["m0", "m1"]  # type: ignore[union-attr]
    texts = [
        i.content[0].text
        async for i in client.conversations.items.list(conversation.id, limit=2, order="asc")
    ]  # type: ignore[union-attr]
    assert texts == [f"m{i}" for i in range(5)]


async def test_a_function_output_added_as_an_item_answers_the_call(
    sdk: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, ToolCalls([("get_weather", '{"city": "Kyiv"}')], ids=["call_k1"]), Reply("Mild."))
    conversation = await sdk.conversations.create()
    await sdk.responses.create(model=model, conversation=conversation.id, input="Kyiv?", tools=[WEATHER])

    added = await sdk.conversations.items.create(
        conversation.id, items=[{"type": "function_call_output", "call_id": "call_k1", "output": "mild"}]
    )
    response = await sdk.responses.create(model=model, conversation=conversation.id, tools=[WEATHER])

    assert [i.type for i in added.data] == ["function_call_output"]
    assert response.output_text == "Mild."
    assert upstream.requests(model)[1]["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call_k1",
        "content": "mild",
    }
    with pytest.raises(openai.BadRequestError):
        await sdk.conversations.items.create(
            conversation.id, items=[{"type": "function_call_output", "call_id": "call_nope", "output": "x"}]
        )
