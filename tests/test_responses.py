"""The Responses API through the official SDK against the real server and the scripted model: text,
structured output, what reaches the model, retrieve, delete, input items, and the errors."""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pydantic
import pytest

from tests.conftest import Server, ServerFactory, sdk_client
from tests.upstream import Reply, ScriptedUpstream


async def test_text_response_with_usage_and_echoed_request(
    sdk: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, Reply("Hello there!"))

    response = await sdk.responses.create(
        model=model,
        input="Say hi",
        instructions="Be brief.",
        temperature=0.5,
        top_p=0.9,
        max_output_tokens=100,
        metadata={"k": "v"},
    )

    assert response.id.startswith("resp_") and response.object == "response"
    assert response.status == "completed" and response.completed_at is not None
    assert response.output_text == "Hello there!"
    message = response.output[0]
    assert message.type == "message" and message.role == "assistant" and message.status == "completed"
    assert message.id.startswith("msg_")
    assert response.instructions == "Be brief." and response.model == model
    assert response.temperature == 0.5 and response.top_p == 0.9 and response.max_output_tokens == 100
    assert response.metadata == {"k": "v"} and response.store is True and response.background is False
    assert response.text.format is not None and response.text.format.type == "text"
    assert response.truncation == "disabled" and response.tool_choice == "auto" and response.tools == []
    usage = response.usage
    assert usage is not None and usage.input_tokens > 0 and usage.output_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    request = upstream.requests(model)[0]
    assert request["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hi"},
    ]
    assert request["temperature"] == 0.5 and request["top_p"] == 0.9
    assert request["max_tokens"] == 100

    again = await sdk.responses.retrieve(response.id)
    assert again.model_dump() == response.model_dump()


async def test_message_items_and_developer_instructions_reach_the_model(
    sdk: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, Reply("Paris."))

    response = await sdk.responses.create(
        model=model,
        input=[
            {"role": "developer", "content": "Answer in one word."},
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Capital of France?"}],
            },
        ],
    )

    assert response.output_text == "Paris."
    assert upstream.requests(model)[0]["messages"] == [
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": "Capital of France?"},
    ]
    items = await sdk.responses.input_items.list(response.id, order="asc")
    assert [(i.type, i.role) for i in items.data] == [("message", "user")]  # type: ignore[union-attr]
    assert items.data[0].content[0].text == "Capital of France?"  # type: ignore[union-attr]


async def test_json_schema_output_is_asked_of_the_model_and_parses(
    sdk: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, Reply('{"city": "Paris"}'))
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }

    response = await sdk.responses.create(
        model=model,
        input="Where?",
        text={"format": {"type": "json_schema", "name": "place", "schema": schema, "strict": True}},
    )

    assert json.loads(response.output_text) == {"city": "Paris"}
    assert response.text.format is not None and response.text.format.type == "json_schema"
    sent = upstream.requests(model)[0]["response_format"]
    assert sent == {"type": "json_schema", "json_schema": {"name": "place", "schema": schema, "strict": True}}


async def test_parse_helper_gives_the_typed_object(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    class Place(pydantic.BaseModel):
        city: str
        population: int

    upstream.script(model, Reply('{"city": "Oslo", "population": 709000}'))

    parsed = await client.responses.parse(model=model, input="Biggest city in Norway?", text_format=Place)

    assert parsed.output_parsed == Place(city="Oslo", population=709000)
    sent = upstream.requests(model)[0]["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["strict"] is True


async def test_previous_response_id_continues_the_conversation(
    sdk: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, Reply("I am Ada."), Reply("You asked my name."))
    first = await sdk.responses.create(model=model, input="Who are you?")

    second = await sdk.responses.create(model=model, input="What did I ask?", previous_response_id=first.id)

    assert second.previous_response_id == first.id and second.output_text == "You asked my name."
    assert upstream.requests(model)[1]["messages"] == [
        {"role": "user", "content": "Who are you?"},
        {"role": "assistant", "content": "I am Ada."},
        {"role": "user", "content": "What did I ask?"},
    ]


async def test_a_chain_branches_from_any_of_its_responses_and_branches_run_at_once(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, Reply("Pick a colour."), Reply("Red it is.", delay=0.05), Reply("Blue it is."))
    root = await client.responses.create(model=model, input="Let's choose.")

    red, blue = await asyncio.gather(
        client.responses.create(model=model, input="Red", previous_response_id=root.id),
        client.responses.create(model=model, input="Blue", previous_response_id=root.id),
    )

    assert {red.output_text, blue.output_text} == {"Red it is.", "Blue it is."}
    for request in upstream.requests(model)[1:]:
        contents = [m["content"] for m in request["messages"]]
        assert contents[:2] == ["Let's choose.", "Pick a colour."] and len(contents) == 3
    upstream.script(model, Reply("You chose blue."))
    after_blue = await client.responses.create(model=model, input="Which?", previous_response_id=blue.id)
    assert after_blue.output_text == "You chose blue."
    contents = [m["content"] for m in upstream.requests(model)[3]["messages"]]
    # The scripted model answers in the order requests arrive: the blue branch has whichever reply.
    assert contents == ["Let's choose.", "Pick a colour.", "Blue", blue.output_text, "Which?"]


async def test_delete_forgets_the_response(
    sdk: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, Reply("Bye."))
    response = await sdk.responses.create(model=model, input="Hi")

    await sdk.responses.delete(response.id)

    with pytest.raises(openai.NotFoundError) as caught:
        await sdk.responses.retrieve(response.id)
    assert caught.value.body == {
        "message": f"Response with id '{response.id}' not found.",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }


async def test_unstored_response_cannot_be_retrieved_or_continued(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, Reply("Ephemeral."))
    response = await client.responses.create(model=model, input="Hi", store=False)
    assert response.output_text == "Ephemeral." and response.store is False

    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError) as caught:
        await client.responses.create(model=model, input="Again", previous_response_id=response.id)
    assert caught.value.body == {
        "message": f"Previous response with id '{response.id}' not found.",
        "type": "invalid_request_error",
        "param": "previous_response_id",
        "code": "previous_response_not_found",
    }


async def test_errors_are_shaped_as_hosted(client: openai.AsyncOpenAI, model: str, server: object) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.responses.create(
            model=model,
            input="Hi",
            tools=[{"type": "function", "name": "f", "parameters": {"type": "string"}, "strict": False}],
        )
    assert caught.value.body["param"] == "tools[0].parameters"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as caught:
        await client.responses.create(model=model, input=[{"type": "bogus"}])  # type: ignore[list-item]
    assert caught.value.body["param"] == "input[0].type"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as caught:
        await client.responses.create(
            model=model, input="Hi", previous_response_id="resp_x", conversation="conv_y"
        )
    assert caught.value.body["code"] == "mutually_exclusive_parameters"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve("resp_doesnotexist")
    with pytest.raises(openai.BadRequestError) as caught:
        await client.responses.create(model=model, input=[])
    assert caught.value.body["code"] == "missing_required_parameter"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as caught:
        await client.responses.create(model=model, input="Hi", temperature=3)
    assert caught.value.body["param"] == "temperature"  # type: ignore[index]


async def test_other_tenants_cannot_see_a_response(
    client: openai.AsyncOpenAI, other_tenant: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, Reply("Mine."))
    response = await client.responses.create(model=model, input="Hi")
    with pytest.raises(openai.NotFoundError):
        await other_tenant.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError):
        await other_tenant.responses.create(model=model, input="Hi", previous_response_id=response.id)


async def test_raw_body_without_model_is_a_400(raw: httpx.AsyncClient) -> None:
    answer = await raw.post("/responses", json={"input": "Hi"})
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "model"


async def test_an_unstored_response_leaves_nothing_behind(
    isolated_server: Server, isolated_key: str, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, Reply("Gone."), Reply("Gone too."))
    async with openai.AsyncOpenAI(base_url=isolated_server.base_url, api_key=isolated_key) as client:
        plain = await client.responses.create(model=model, input="Hi", store=False)
        streamed = [
            e async for e in await client.responses.create(model=model, input="Hi", store=False, stream=True)
        ]

        assert plain.output_text == "Gone." and streamed[-1].type == "response.completed"
        threads = await client.get("/threads", cast_to=httpx.Response)
        assert threads.json()["data"] == []


async def test_truncation_disabled_refuses_input_beyond_the_context_window_and_auto_drops_the_oldest(
    server_factory: ServerFactory, upstream: ScriptedUpstream, model: str
) -> None:
    long = "lighthouse " * 120
    with server_factory(model_context_windows={model: 300}, completion_reserve_tokens=100) as server:
        async with sdk_client(server) as client:
            upstream.script(model, Reply("first"), Reply("auto"), Reply("never"))
            conversation = await client.conversations.create()
            first = await client.responses.create(
                model=model, input=f"one {long}", conversation=conversation.id
            )
            assert first.status == "completed" and first.truncation == "disabled"

            # Both long messages exceed the window: as hosted, the default (disabled) is a 400.
            with pytest.raises(openai.BadRequestError) as refused:
                await client.responses.create(model=model, input=f"two {long}", conversation=conversation.id)
            assert refused.value.code == "context_length_exceeded" and refused.value.param == "input"
            assert "context window" in refused.value.message
            assert len(upstream.requests(model)) == 1
            # The Assistants API shows the same run failed with a code of its own.
            thread = "thread_" + conversation.id.removeprefix("conv_")
            runs = await client.beta.threads.runs.list(thread, order="desc", limit=1)
            assert runs.data[0].status == "failed" and runs.data[0].last_error is not None
            assert runs.data[0].last_error.code == "invalid_prompt"

            # auto drops the oldest items until the input fits.
            auto = await client.responses.create(
                model=model, input=f"three {long}", conversation=conversation.id, truncation="auto"
            )
            assert auto.status == "completed" and auto.truncation == "auto" and auto.output_text == "auto"
            sent = upstream.requests(model)[-1]["messages"]
            assert [m["content"][:5] for m in sent if m["role"] == "user"] == ["three"]

            # Streamed, the response fails with the same error.
            async with client.responses.stream(
                model=model, input=f"four {long}", previous_response_id=first.id
            ) as stream:
                events = [event async for event in stream]
            failed = events[-1]
            assert failed.type == "response.failed"
            assert (
                failed.response.error is not None and failed.response.error.code == "context_length_exceeded"
            )
            assert len(upstream.requests(model)) == 2
