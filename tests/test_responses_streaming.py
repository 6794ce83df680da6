"""Streamed responses through the SDK's helpers and typed events; function calls and their outputs
(via previous_response_id and via a conversation); background responses polled, cancelled, and
their streams resumed by sequence number."""

from __future__ import annotations

import json

import openai
from openai.types.responses import ResponseStreamEvent

from tests.upstream import Fail, Reply, ScriptedUpstream, ToolCalls

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": False,
}


def _types(events: list[ResponseStreamEvent]) -> list[str]:
    return [e.type for e in events]


async def test_stream_helper_relays_typed_text_events_in_sequence(
    sdk: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, Reply("Hello there, friend!", chunks=["Hello", " there,", " friend!"]))
    events: list[ResponseStreamEvent] = []

    async with sdk.responses.stream(model=model, input="Hi") as stream:
        async for event in stream:
            events.append(event)
        final = await stream.get_final_response()

    assert final.status == "completed" and final.output_text == "Hello there, friend!"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    kinds = _types(events)
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == "Hello there, friend!" and len(deltas) >= 1
    text_events = [k for k in kinds if k != "response.output_text.delta"]
    assert text_events == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    created = events[0]
    assert created.type == "response.created" and created.response.status == "in_progress"
    assert created.response.output == []
    done = next(e for e in events if e.type == "response.output_item.done")
    assert done.item.id == final.output[0].id
    completed = events[-1]
    assert completed.type == "response.completed" and completed.response.usage is not None


async def test_function_call_round_trip_with_previous_response_id(
    sdk: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(
        model,
        ToolCalls([("get_weather", '{"city": "Paris"}')], ids=["call_w1"]),
        Reply("It is sunny in Paris."),
    )

    first = await sdk.responses.create(model=model, input="Weather in Paris?", tools=[WEATHER])

    assert first.status == "completed"
    call = first.output[0]
    assert call.type == "function_call" and call.name == "get_weather" and call.call_id == "call_w1"
    assert json.loads(call.arguments) == {"city": "Paris"} and call.status == "completed"
    assert first.tools[0].type == "function" and first.tools[0].name == "get_weather"
    assert upstream.requests(model)[0]["tools"][0]["function"]["name"] == "get_weather"

    second = await sdk.responses.create(
        model=model,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": "call_w1", "output": "sunny, 24C"}],
        tools=[WEATHER],
    )

    assert second.output_text == "It is sunny in Paris."
    messages = upstream.requests(model)[1]["messages"]
    assert messages[0] == {"role": "user", "content": "Weather in Paris?"}
    assert messages[1]["role"] == "assistant" and messages[1]["tool_calls"][0]["id"] == "call_w1"
    assert messages[2] == {"role": "tool", "tool_call_id": "call_w1", "content": "sunny, 24C"}
    items = await sdk.responses.input_items.list(second.id)
    assert [i.type for i in items.data] == ["function_call_output"]


async def test_a_function_call_needs_its_output_before_going_on(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, ToolCalls([("get_weather", '{"city": "Oslo"}')], ids=["call_o1"]))
    first = await client.responses.create(model=model, input="Weather?", tools=[WEATHER])

    try:
        await client.responses.create(model=model, previous_response_id=first.id, input="never mind")
    except openai.BadRequestError as error:
        assert error.body["message"] == "No tool output found for function call call_o1."  # type: ignore[index]
    else:
        raise AssertionError("expected a 400")
    try:
        await client.responses.create(
            model=model,
            previous_response_id=first.id,
            input=[{"type": "function_call_output", "call_id": "call_unknown", "output": "x"}],
        )
    except openai.BadRequestError as error:
        assert "call_unknown" in error.body["message"]  # type: ignore[index]
    else:
        raise AssertionError("expected a 400")


async def test_streamed_function_call_events(
    sdk: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, ToolCalls([("get_weather", '{"city": "Rome"}')], ids=["call_r1"], arg_chunks=3))
    events: list[ResponseStreamEvent] = []

    async with sdk.responses.stream(model=model, input="Weather in Rome?", tools=[WEATHER]) as stream:
        async for event in stream:
            events.append(event)
        final = await stream.get_final_response()

    kinds = _types(events)
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert kinds.count("response.function_call_arguments.delta") == 3
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert json.loads(done.arguments) == {"city": "Rome"}
    assert kinds.index("response.output_item.added") < kinds.index("response.function_call_arguments.delta")
    assert kinds[-2:] == ["response.output_item.done", "response.completed"]
    assert final.output[0].type == "function_call" and final.output[0].call_id == "call_r1"


async def test_client_kept_history_replays_its_calls(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, Reply("Noted."))

    response = await client.responses.create(
        model=model,
        tools=[WEATHER],
        input=[
            {"role": "user", "content": "Weather in Lima?"},
            {
                "type": "function_call",
                "call_id": "call_l1",
                "name": "get_weather",
                "arguments": '{"city":"Lima"}',
            },
            {"type": "function_call_output", "call_id": "call_l1", "output": "foggy"},
        ],
    )

    assert response.output_text == "Noted." and [o.type for o in response.output] == ["message"]
    messages = upstream.requests(model)[0]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]


async def test_a_replayed_agent_history_reaches_the_model_in_order(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    # As agent frameworks send it: the whole history each time, earlier output items included.
    upstream.script(model, Reply("Both done."))
    history = [
        {"role": "user", "content": "Weather in Oslo?"},
        {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "cold"},
        {
            "type": "message",
            "id": "msg_1",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": "Cold.", "annotations": []}],
        },
        {"role": "user", "content": "And Rome?"},
        {
            "type": "function_call",
            "call_id": "c2",
            "name": "get_weather",
            "arguments": "{}",
            "status": "completed",
        },
        {"type": "function_call_output", "call_id": "c2", "output": "warm"},
    ]

    response = await client.responses.create(model=model, tools=[WEATHER], input=history)  # type: ignore[arg-type]

    assert [o.type for o in response.output] == ["message"]
    sent = upstream.requests(model)[0]["messages"]
    assert [(m["role"], m.get("tool_call_id") or m.get("content")) for m in sent] == [
        ("user", "Weather in Oslo?"),
        ("assistant", None),
        ("tool", "c1"),
        ("assistant", "Cold."),
        ("user", "And Rome?"),
        ("assistant", None),
        ("tool", "c2"),
    ]
    assert sent[1]["tool_calls"][0]["id"] == "c1" and sent[5]["tool_calls"][0]["id"] == "c2"
    items = await client.responses.input_items.list(response.id, order="asc")
    assert [i.type for i in items.data] == [
        "message",
        "function_call",
        "function_call_output",
        "message",
        "message",
        "function_call",
        "function_call_output",
    ]


async def test_background_response_polls_to_completion(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    # Not spec-checked: an unfinished response has "usage": null, as the hosted API and the Open
    # Responses schema have it, where OpenAI's OpenAPI document types usage as an object only.
    upstream.script(model, Reply("Done in the background."))

    response = await client.responses.create(model=model, input="Work", background=True)
    assert response.background is True and response.status in ("queued", "in_progress")
    assert response.usage is None
    # Waits on the response's stream rather than sleeping between polls.
    events = [e async for e in await client.responses.retrieve(response.id, stream=True)]
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    response = await client.responses.retrieve(response.id)

    assert response.status == "completed" and response.output_text == "Done in the background."


async def test_background_response_is_cancelled_and_a_synchronous_one_cannot_be(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, Reply("slow " * 50, chunks=["slow "] * 50, delay=0.2), Reply("quick"))
    response = await client.responses.create(model=model, input="Work", background=True)

    cancelled = await client.responses.cancel(response.id)

    assert cancelled.status == "cancelled"
    assert (await client.responses.retrieve(response.id)).status == "cancelled"
    done = await client.responses.create(model=model, input="Hi")
    try:
        await client.responses.cancel(done.id)
    except openai.BadRequestError as error:
        assert error.body["message"] == "Cannot cancel a synchronous response."  # type: ignore[index]
    else:
        raise AssertionError("expected a 400")


async def test_a_stream_resumes_after_a_sequence_number(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, Reply("one two three", chunks=["one", " two", " three"]))
    stream = await client.responses.create(model=model, input="Count", background=True, stream=True)
    seen: list[ResponseStreamEvent] = []
    async for event in stream:
        seen.append(event)
        if event.type == "response.output_text.delta":
            break
    await stream.close()
    last = seen[-1].sequence_number
    response_id = seen[0].response.id  # type: ignore[union-attr]

    rest = [e async for e in await client.responses.retrieve(response_id, stream=True, starting_after=last)]

    assert [e.sequence_number for e in rest] == list(range(last + 1, last + 1 + len(rest)))
    assert rest[-1].type == "response.completed"
    text = "".join(e.delta for e in [*seen, *rest] if e.type == "response.output_text.delta")
    assert text == "one two three"


async def test_an_upstream_error_fails_the_response_and_its_stream(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(
        model, Fail(400, message="model does not exist"), Fail(400, message="model does not exist")
    )

    failed = await client.responses.create(model=model, input="Hi")
    assert failed.status == "failed" and failed.error is not None
    assert failed.error.code == "invalid_prompt" and "model does not exist" in failed.error.message

    events = [e async for e in await client.responses.create(model=model, input="Hi", stream=True)]
    assert events[-1].type == "response.failed"
    assert events[-1].response.error is not None  # type: ignore[union-attr]


async def test_max_output_tokens_makes_an_incomplete_response(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, Reply("A long story that the limit cuts", finish_reason="length"))

    response = await client.responses.create(model=model, input="Tell a story", max_output_tokens=16)

    assert response.status == "incomplete"
    assert (
        response.incomplete_details is not None and response.incomplete_details.reason == "max_output_tokens"
    )
    assert response.output[0].status == "incomplete"  # type: ignore[union-attr]


async def test_stream_holds_back_a_marker_until_it_closes_and_sends_one_that_never_does(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    # The Responses text shows no 【n:m†file】 marker; the start of one that never closes is text.
    upstream.script(model, Reply("See【0:1†a.md】 it【2:", chunks=["See【0", ":1†a", ".md】 it【", "2:"]))

    async with client.responses.stream(model=model, input="Hi") as stream:
        events = [event async for event in stream]
        final = await stream.get_final_response()

    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    # However the chunks batch, the open 【2: goes out only when the message ends.
    assert "".join(deltas) == "See it【2:" and deltas[-1] == "【2:"
    assert not any("†" in d or "】" in d for d in deltas)
    [done] = [e for e in events if e.type == "response.output_text.done"]
    assert done.text == "See it【2:" == final.output_text
