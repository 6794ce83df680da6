"""Streaming runs through the SDK's helpers: event order and shapes as AssistantEventHandler needs."""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
from openai.lib.streaming import AsyncAssistantEventHandler
from typing_extensions import override

from tests.conftest import TENANT_A_KEY, Server
from tests.test_runs import WEATHER_TOOL
from tests.upstream import Reply, ScriptedUpstream, ToolCalls


class Recorder(AsyncAssistantEventHandler):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []
        self.text = ""
        self.tool_calls_created: list[str] = []

    @override
    async def on_event(self, event: openai.types.beta.AssistantStreamEvent) -> None:
        self.events.append(event.event)

    @override
    async def on_text_delta(self, delta, snapshot) -> None:  # type: ignore[no-untyped-def]
        self.text += delta.value or ""

    @override
    async def on_tool_call_created(self, tool_call) -> None:  # type: ignore[no-untyped-def]
        self.tool_calls_created.append(tool_call.id)


TEXT_RUN_ORDER = [
    "thread.run.created",
    "thread.run.queued",
    "thread.run.in_progress",
    "thread.run.step.created",
    "thread.run.step.in_progress",
    "thread.message.created",
    "thread.message.in_progress",
]


async def test_text_stream_event_order_and_deltas(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    # Apart in time: pieces that reach the server in one read go out as one delta.
    chunks = ["Stream", "ing ", "works ", "fine."]
    upstream.script(model, Reply("Streaming works fine.", chunks=chunks, delay=0.02))
    assistant = await client.beta.assistants.create(model=model)
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    handler = Recorder()
    async with client.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=assistant.id, event_handler=handler
    ) as stream:
        await stream.until_done()
        final_run = await stream.get_final_run()
        final_messages = await stream.get_final_messages()

    assert handler.events[: len(TEXT_RUN_ORDER)] == TEXT_RUN_ORDER
    assert handler.events[len(TEXT_RUN_ORDER) : -3] == ["thread.message.delta"] * 4
    assert handler.events[-3:] == [
        "thread.message.completed",
        "thread.run.step.completed",
        "thread.run.completed",
    ]
    assert handler.text == "Streaming works fine."
    assert final_run.status == "completed" and final_run.usage is not None
    assert final_messages[0].content[0].text.value == "Streaming works fine."  # type: ignore[union-attr]
    stored = await client.beta.threads.messages.retrieve(final_messages[0].id, thread_id=thread.id)
    assert stored.content[0].text.value == handler.text  # type: ignore[union-attr]


async def test_function_calling_stream_and_submit_stream(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(
        model,
        ToolCalls([("get_weather", '{"city": "Lima"}'), ("get_weather", '{"city": "Quito"}')]),
        Reply("Both mild."),
    )
    assistant = await client.beta.assistants.create(model=model, tools=[WEATHER_TOOL])
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "Weather?"}])
    first = Recorder()
    async with client.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=assistant.id, event_handler=first
    ) as stream:
        await stream.until_done()
        run = await stream.get_final_run()
        steps = await stream.get_final_run_steps()
    assert run.status == "requires_action" and run.required_action is not None
    assert first.events[-1] == "thread.run.requires_action"
    assert "thread.run.step.completed" not in first.events
    calls = run.required_action.submit_tool_outputs.tool_calls
    assert len(first.tool_calls_created) == 2
    # The step snapshot the SDK built from deltas has the exact arguments.
    snapshot_calls = steps[0].step_details.tool_calls  # type: ignore[union-attr]
    assert [json.loads(c.function.arguments) for c in snapshot_calls] == [{"city": "Lima"}, {"city": "Quito"}]  # type: ignore[union-attr]
    assert [c.id for c in snapshot_calls] == [c.id for c in calls]

    second = Recorder()
    async with client.beta.threads.runs.submit_tool_outputs_stream(
        thread_id=thread.id,
        run_id=run.id,
        tool_outputs=[{"tool_call_id": c.id, "output": "mild"} for c in calls],
        event_handler=second,
    ) as stream:
        await stream.until_done()
        final = await stream.get_final_run()
        messages = await stream.get_final_messages()
    assert second.events[:3] == ["thread.run.step.completed", "thread.run.queued", "thread.run.in_progress"]
    assert second.events[-1] == "thread.run.completed"
    assert final.status == "completed"
    assert second.text == "Both mild." and messages[0].content[0].text.value == "Both mild."  # type: ignore[union-attr]


async def test_create_and_run_stream_starts_with_thread_created(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, Reply("new thread"))
    assistant = await client.beta.assistants.create(model=model)
    handler = Recorder()
    async with client.beta.threads.create_and_run_stream(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": "hello"}]},
        event_handler=handler,
    ) as stream:
        await stream.until_done()
    assert handler.events[:2] == ["thread.created", "thread.run.created"]
    assert handler.text == "new thread"


async def test_cancel_mid_stream(client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str) -> None:
    upstream.script(model, Reply("x" * 400, chunks=["x"] * 400, delay=0.02))
    assistant = await client.beta.assistants.create(model=model)
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "long please"}])
    handler = Recorder()
    async with client.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=assistant.id, event_handler=handler
    ) as stream:
        async for event in stream:
            if event.event == "thread.message.delta":
                run_id = stream.current_run.id  # type: ignore[union-attr]
                await client.beta.threads.runs.cancel(run_id, thread_id=thread.id)
                break
        await stream.until_done()
    assert handler.events[-1] == "thread.run.cancelled"
    run = await client.beta.threads.runs.retrieve(run_id, thread_id=thread.id)
    assert run.status == "cancelled"
    message = (await client.beta.threads.messages.list(thread.id)).data[0]
    assert message.status == "incomplete"
    assert message.incomplete_details is not None and message.incomplete_details.reason == "run_cancelled"
    assert len(message.content[0].text.value) < 400  # type: ignore[union-attr]


async def test_client_leaving_does_not_stop_the_run(
    server: Server, client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, Reply("finished anyway", chunks=["finished", " anyway"], delay=0.2))
    assistant = await client.beta.assistants.create(model=model)
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "go"}])
    headers = {"Authorization": f"Bearer {TENANT_A_KEY}", "OpenAI-Beta": "assistants=v2"}
    run_id = None
    async with (
        httpx.AsyncClient(base_url=server.base_url, headers=headers) as http,
        http.stream(
            "POST", f"/threads/{thread.id}/runs", json={"assistant_id": assistant.id, "stream": True}
        ) as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.aiter_lines()
        async for line in lines:
            if line.startswith("data: {") and run_id is None:
                run_id = json.loads(line[6:])["id"]
                break
    assert run_id is not None
    run = await client.beta.threads.runs.poll(run_id, thread_id=thread.id)
    assert run.status == "completed"
    assert (await client.beta.threads.messages.list(thread.id)).data[0].content[
        0
    ].text.value == "finished anyway"  # type: ignore[union-attr]


async def test_every_event_has_an_increasing_id(
    server: Server, client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, Reply("ids"))
    assistant = await client.beta.assistants.create(model=model)
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "go"}])
    headers = {"Authorization": f"Bearer {TENANT_A_KEY}"}
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers) as http:
        response = await http.post(
            f"/threads/{thread.id}/runs", json={"assistant_id": assistant.id, "stream": True}
        )
    blocks = [b for b in response.text.split("\n\n") if b.strip()]
    ids = [int(b.split("\n")[0].removeprefix("id: ")) for b in blocks[:-1]]
    assert len(ids) > 5 and ids == sorted(set(ids))
    assert blocks[-1] == "event: done\ndata: [DONE]"


async def test_many_concurrent_streams(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, *[Reply(f"reply {n}", delay=0.01) for n in range(20)])
    assistant = await client.beta.assistants.create(model=model)

    async def one() -> str:
        handler = Recorder()
        async with client.beta.threads.create_and_run_stream(
            assistant_id=assistant.id,
            thread={"messages": [{"role": "user", "content": "hi"}]},
            event_handler=handler,
        ) as stream:
            await stream.until_done()
        return handler.text

    texts = await asyncio.gather(*(one() for _ in range(20)))
    assert sorted(texts) == sorted(f"reply {n}" for n in range(20))


async def test_events_too_large_for_a_notification_still_stream(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    # PostgreSQL's NOTIFY carries at most 8000 bytes: these events travel without their data, which
    # the receiving process fetches by id.
    text = "".join(f"word{n} " for n in range(2000))
    upstream.script(model, Reply(text, chunks=[text[i : i + 500] for i in range(0, len(text), 500)]))
    instructions = "Be thorough. " * 800
    assistant = await client.beta.assistants.create(model=model, instructions=instructions)
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "go"}])
    handler = Recorder()
    async with client.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=assistant.id, event_handler=handler
    ) as stream:
        await stream.until_done()
        run = await stream.get_final_run()
        messages = await stream.get_final_messages()
    assert handler.events[: len(TEXT_RUN_ORDER)] == TEXT_RUN_ORDER
    assert handler.text == text
    assert run.status == "completed" and run.instructions == instructions
    assert messages[0].content[0].text.value == text  # type: ignore[union-attr]
