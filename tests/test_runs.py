"""Runs through the SDK against the scripted model: the state machine, function calling, overrides,
illegal moves, and what reaches the model."""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest

from tests.conftest import TENANT_B_KEY, Server, ServerFactory, sdk_client
from tests.upstream import Raw, Reply, ScriptedUpstream, ToolCalls

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


async def test_plain_run_completes_with_message_steps_and_usage(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, Reply("Hello there!"))
    assistant = await client.beta.assistants.create(model=model, instructions="Be brief.")
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "Hi"}])

    run = await client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)

    assert run.status == "completed"
    assert run.started_at is not None and run.completed_at is not None
    assert run.created_at <= run.started_at <= run.completed_at
    assert run.expires_at is None and run.failed_at is None and run.last_error is None
    assert run.instructions == "Be brief." and run.model == model
    assert run.usage is not None and run.usage.completion_tokens > 0
    assert run.usage.total_tokens == run.usage.prompt_tokens + run.usage.completion_tokens
    messages = await client.beta.threads.messages.list(thread.id)
    reply = messages.data[0]
    assert reply.role == "assistant" and reply.run_id == run.id and reply.assistant_id == assistant.id
    assert reply.status == "completed"
    assert reply.content[0].text.value == "Hello there!"  # type: ignore[union-attr]
    steps = await client.beta.threads.runs.steps.list(run.id, thread_id=thread.id)
    assert [s.type for s in steps.data] == ["message_creation"]
    step = steps.data[0]
    assert step.status == "completed" and step.usage is not None
    assert step.step_details.message_creation.message_id == reply.id  # type: ignore[union-attr]
    again = await client.beta.threads.runs.steps.retrieve(step.id, thread_id=thread.id, run_id=run.id)
    assert again.id == step.id

    prompt = upstream.requests(model)[0]
    assert prompt["model"] == model and prompt["stream"] is True
    assert prompt["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]


async def test_run_overrides_reach_the_model(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, Reply("ok"))
    assistant = await client.beta.assistants.create(
        model="never-used", instructions="assistant instructions", tools=[WEATHER_TOOL]
    )
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "first"}])
    run = await client.beta.threads.runs.create_and_poll(
        thread_id=thread.id,
        assistant_id=assistant.id,
        model=model,
        instructions="run instructions",
        additional_instructions="extra rules",
        additional_messages=[{"role": "user", "content": "second"}],
        temperature=0.3,
        top_p=0.9,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        parallel_tool_calls=False,
        response_format={"type": "json_object"},
        metadata={"k": "v"},
    )
    assert run.status == "completed"
    assert run.instructions == "run instructions" and run.metadata == {"k": "v"}
    assert run.temperature == 0.3 and run.top_p == 0.9 and run.parallel_tool_calls is False
    sent = upstream.requests(model)[0]
    assert sent["messages"][0] == {"role": "system", "content": "run instructions\n\nextra rules"}
    assert [m["content"] for m in sent["messages"][1:]] == ["first", "second"]
    assert sent["temperature"] == 0.3 and sent["top_p"] == 0.9
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert sent["parallel_tool_calls"] is False
    assert sent["response_format"] == {"type": "json_object"}
    assert sent["tools"][0]["function"]["name"] == "get_weather"


async def test_tools_override_and_tool_choice_none(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, Reply("no tools"), Reply("none please"))
    assistant = await client.beta.assistants.create(model=model, tools=[WEATHER_TOOL])
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "x"}])
    run = await client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, tools=[]
    )
    assert run.tools == []
    assert "tools" not in upstream.requests(model)[0]
    run = await client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, tool_choice="none"
    )
    assert run.tool_choice == "none"
    assert upstream.requests(model)[1]["tool_choice"] == "none"


async def test_function_call_requires_action_then_completes(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(
        model,
        ToolCalls([("get_weather", '{"city": "Paris"}')], ids=["call_paris"]),
        Reply("It is sunny in Paris."),
    )
    assistant = await client.beta.assistants.create(model=model, tools=[WEATHER_TOOL])
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "Weather?"}])

    run = await client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "requires_action"
    assert run.required_action is not None
    calls = run.required_action.submit_tool_outputs.tool_calls
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("call_paris", "get_weather", {"city": "Paris"})
    ]
    assert run.expires_at is not None and run.usage is not None
    steps = await client.beta.threads.runs.steps.list(run.id, thread_id=thread.id)
    assert steps.data[0].type == "tool_calls" and steps.data[0].status == "in_progress"

    run = await client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": "call_paris", "output": "sunny"}]
    )
    assert run.status == "completed" and run.required_action is None
    steps = await client.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc")
    assert [(s.type, s.status) for s in steps.data] == [
        ("tool_calls", "completed"),
        ("message_creation", "completed"),
    ]
    call = steps.data[0].step_details.tool_calls[0]  # type: ignore[union-attr]
    assert call.function.output == "sunny"  # type: ignore[union-attr]

    second = upstream.requests(model)[1]["messages"]
    assert second[-2] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_paris",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    }
    assert second[-1] == {"role": "tool", "tool_call_id": "call_paris", "content": "sunny"}
    messages = await client.beta.threads.messages.list(thread.id, run_id=run.id)
    assert [m.content[0].text.value for m in messages.data] == ["It is sunny in Paris."]  # type: ignore[union-attr]


async def test_parallel_function_calls_need_every_output(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(
        model,
        ToolCalls([("get_weather", '{"city": "Oslo"}'), ("get_weather", '{"city": "Rome"}')]),
        Reply("Oslo cold, Rome warm."),
    )
    assistant = await client.beta.assistants.create(model=model, tools=[WEATHER_TOOL])
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "Both?"}])
    run = await client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.required_action is not None
    ids = [c.id for c in run.required_action.submit_tool_outputs.tool_calls]
    assert len(ids) == 2

    with pytest.raises(openai.BadRequestError) as missing:
        await client.beta.threads.runs.submit_tool_outputs(
            run_id=run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": ids[0], "output": "x"}]
        )
    assert "Expected tool outputs for call_ids" in missing.value.message
    with pytest.raises(openai.BadRequestError):
        await client.beta.threads.runs.submit_tool_outputs(
            run_id=run.id,
            thread_id=thread.id,
            tool_outputs=[
                {"tool_call_id": ids[0], "output": "x"},
                {"tool_call_id": "call_nope", "output": "y"},
            ],
        )
    run = await client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id,
        thread_id=thread.id,
        tool_outputs=[{"tool_call_id": i, "output": f"out {i}"} for i in ids],
    )
    assert run.status == "completed"
    tool_messages = [m for m in upstream.requests(model)[1]["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_messages] == ids


async def test_concurrent_submissions_exactly_one_wins(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, ToolCalls([("get_weather", "{}")]), Reply("done"))
    assistant = await client.beta.assistants.create(model=model, tools=[WEATHER_TOOL])
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "go"}])
    run = await client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.required_action is not None
    call_id = run.required_action.submit_tool_outputs.tool_calls[0].id

    async def submit(output: str) -> str:
        try:
            await client.beta.threads.runs.submit_tool_outputs(
                run_id=run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": call_id, "output": output}]
            )
        except openai.BadRequestError:
            return "rejected"
        return "accepted"

    results = await asyncio.gather(*(submit(f"answer {n}") for n in range(5)))
    assert sorted(results) == ["accepted"] + ["rejected"] * 4
    final = await client.beta.threads.runs.poll(run.id, thread_id=thread.id)
    assert final.status == "completed"
    assert len(upstream.requests(model)) == 2


async def test_concurrent_runs_on_one_thread_exactly_one_is_created(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    """Creations racing on one thread (on PostgreSQL, written in one batch, where the partial unique
    index refuses all but one): one run, and the hosted API's 400 naming it for each of the others;
    runs on other threads in the same moment are created. Each reply takes two seconds, so that the
    winner is still active when the last of the others is refused."""
    upstream.script(model, *(Reply("slow", chunks=["s"] * 40, delay=0.05) for _ in range(4)))
    assistant = await client.beta.assistants.create(model=model)
    thread, other, third = [await client.beta.threads.create() for _ in range(3)]

    async def create(thread_id: str) -> openai.types.beta.threads.Run | openai.BadRequestError:
        try:
            return await client.beta.threads.runs.create(thread_id=thread_id, assistant_id=assistant.id)
        except openai.BadRequestError as error:
            return error

    results = await asyncio.gather(*(create(t.id) for t in [thread] * 5 + [other, third]))
    on_thread = results[:5]
    created = [r for r in on_thread if not isinstance(r, openai.BadRequestError)]
    assert len(created) == 1
    refused = [r for r in on_thread if isinstance(r, openai.BadRequestError)]
    for error in refused:
        assert error.body["message"] == f"Thread {thread.id} already has an active run {created[0].id}."  # type: ignore[index]
    assert not any(isinstance(r, openai.BadRequestError) for r in results[5:])
    for run, thread_id in [(created[0], thread.id), (results[5], other.id), (results[6], third.id)]:
        assert not isinstance(run, openai.BadRequestError)
        final = await client.beta.threads.runs.poll(run.id, thread_id=thread_id)
        assert final.status == "completed"
    runs = await client.beta.threads.runs.list(thread.id)
    assert [r.id for r in runs.data] == [created[0].id]


async def test_concurrent_creations_each_get_their_own_answer(
    client: openai.AsyncOpenAI, other_tenant: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    """Creations arriving together (on PostgreSQL, read in one statement): a thread that is not the
    tenant's, an assistant that is not, a thread with an active run, and good ones, each answered as
    if alone, in the checks' order (the thread's 404 before the assistant's)."""
    upstream.script(model, *(Reply("slow", chunks=["s"] * 20, delay=0.05) for _ in range(3)))
    assistant = await client.beta.assistants.create(model=model)
    foreign_assistant = await other_tenant.beta.assistants.create(model=model)
    foreign_thread = await other_tenant.beta.threads.create()
    busy, free, also_free = [await client.beta.threads.create() for _ in range(3)]
    active = await client.beta.threads.runs.create(thread_id=busy.id, assistant_id=assistant.id)

    async def create(thread_id: str, assistant_id: str) -> object:
        try:
            return await client.beta.threads.runs.create(thread_id=thread_id, assistant_id=assistant_id)
        except openai.APIStatusError as error:
            return error

    results = await asyncio.gather(
        create(foreign_thread.id, assistant.id),
        create(free.id, foreign_assistant.id),
        create(foreign_thread.id, foreign_assistant.id),
        create(busy.id, assistant.id),
        create(free.id, assistant.id),
        create(also_free.id, assistant.id),
    )
    assert isinstance(results[0], openai.NotFoundError) and foreign_thread.id in str(results[0])
    assert isinstance(results[1], openai.NotFoundError) and foreign_assistant.id in str(results[1])
    assert isinstance(results[2], openai.NotFoundError) and foreign_thread.id in str(results[2])
    assert isinstance(results[3], openai.BadRequestError)
    assert results[3].body["message"] == f"Thread {busy.id} already has an active run {active.id}."  # type: ignore[index]
    for run, thread_id in [(results[4], free.id), (results[5], also_free.id), (active, busy.id)]:
        assert isinstance(run, openai.types.beta.threads.Run)
        assert run.assistant_id == assistant.id and run.thread_id == thread_id
        final = await client.beta.threads.runs.poll(run.id, thread_id=thread_id)
        assert final.status == "completed"


async def test_illegal_moves_are_400(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, ToolCalls([("get_weather", "{}")]))
    assistant = await client.beta.assistants.create(model=model, tools=[WEATHER_TOOL])
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "go"}])
    run = await client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "requires_action"

    with pytest.raises(openai.BadRequestError) as busy_message:
        await client.beta.threads.messages.create(thread.id, role="user", content="more")
    assert (
        busy_message.value.body["message"]
        == f"Can't add messages to {thread.id} while a run {run.id} is active."
    )
    with pytest.raises(openai.BadRequestError) as busy_run:
        await client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    assert run.id in busy_run.value.message

    cancelled = await client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
    assert cancelled.status in ("cancelling", "cancelled")
    final = await client.beta.threads.runs.poll(run.id, thread_id=thread.id)
    assert final.status == "cancelled" and final.cancelled_at is not None
    steps = await client.beta.threads.runs.steps.list(run.id, thread_id=thread.id)
    assert steps.data[0].status == "cancelled"

    with pytest.raises(openai.BadRequestError) as late_cancel:
        await client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
    assert late_cancel.value.body["message"] == "Cannot cancel run with status 'cancelled'."
    with pytest.raises(openai.BadRequestError) as late_submit:
        await client.beta.threads.runs.submit_tool_outputs(
            run_id=run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": "call_1", "output": "x"}]
        )
    assert late_submit.value.body["message"] == 'Runs in status "cancelled" do not accept tool outputs.'
    # The thread is free again.
    await client.beta.threads.messages.create(thread.id, role="user", content="after")


async def test_bad_run_requests(client: openai.AsyncOpenAI, model: str) -> None:
    assistant = await client.beta.assistants.create(model=model)
    thread = await client.beta.threads.create()
    with pytest.raises(openai.NotFoundError):
        await client.beta.threads.runs.create(thread_id=thread.id, assistant_id="asst_missing")
    with pytest.raises(openai.NotFoundError):
        await client.beta.threads.runs.create(thread_id="thread_missing", assistant_id=assistant.id)
    with pytest.raises(openai.BadRequestError) as too_small:
        await client.beta.threads.runs.create(
            thread_id=thread.id, assistant_id=assistant.id, max_completion_tokens=10
        )
    assert too_small.value.param == "max_completion_tokens"
    with pytest.raises(openai.BadRequestError) as unknown_tool:
        await client.beta.threads.runs.create(
            thread_id=thread.id,
            assistant_id=assistant.id,
            tool_choice={"type": "function", "function": {"name": "nope"}},
        )
    assert unknown_tool.value.param == "tool_choice"
    with pytest.raises(openai.BadRequestError):
        await client.beta.threads.runs.create(
            thread_id=thread.id, assistant_id=assistant.id, truncation_strategy={"type": "last_messages"}
        )
    with pytest.raises(openai.NotFoundError):
        await client.beta.threads.runs.retrieve("run_missing", thread_id=thread.id)
    with pytest.raises(openai.BadRequestError):
        await client.beta.threads.runs.list(thread.id, limit=0)


async def test_list_retrieve_update_runs(
    client: openai.AsyncOpenAI, other_tenant: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    assistant = await client.beta.assistants.create(model=model)
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "a"}])
    ids = []
    for _ in range(3):
        run = await client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
        ids.append(run.id)
    listed = await client.beta.threads.runs.list(thread.id, limit=2)
    assert [r.id for r in listed.data] == ids[::-1][:2] and listed.has_more
    everything = [r.id async for r in await client.beta.threads.runs.list(thread.id, limit=1, order="asc")]
    assert everything == ids
    updated = await client.beta.threads.runs.update(ids[0], thread_id=thread.id, metadata={"tag": "x"})
    assert updated.metadata == {"tag": "x"}
    assert (await client.beta.threads.runs.retrieve(ids[0], thread_id=thread.id)).metadata == {"tag": "x"}
    with pytest.raises(openai.NotFoundError):
        await other_tenant.beta.threads.runs.retrieve(ids[0], thread_id=thread.id)
    with pytest.raises(openai.NotFoundError):
        await other_tenant.beta.threads.runs.list(thread.id)
    with pytest.raises(openai.NotFoundError):
        await other_tenant.beta.threads.runs.steps.list(ids[0], thread_id=thread.id)


async def test_create_thread_and_run_poll(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, Reply("Made a thread."))
    assistant = await client.beta.assistants.create(model=model)
    run = await client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": "start"}], "metadata": {"a": "b"}},
    )
    assert run.status == "completed"
    thread = await client.beta.threads.retrieve(run.thread_id)
    assert thread.metadata == {"a": "b"}
    messages = await client.beta.threads.messages.list(run.thread_id, order="asc")
    assert [m.role for m in messages.data] == ["user", "assistant"]


async def test_max_completion_tokens_makes_run_incomplete(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, Reply("a long answer cut short", finish_reason="length"))
    assistant = await client.beta.assistants.create(model=model)
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "go"}])
    run = await client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, max_completion_tokens=300
    )
    assert run.status == "incomplete"
    assert run.incomplete_details is not None and run.incomplete_details.reason == "max_completion_tokens"
    assert upstream.requests(model)[0]["max_tokens"] == 300
    message = (await client.beta.threads.messages.list(thread.id)).data[0]
    assert message.status == "incomplete"
    assert message.incomplete_details is not None and message.incomplete_details.reason == "max_tokens"


async def test_truncation_last_messages_and_max_prompt_tokens(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    assistant = await client.beta.assistants.create(model=model)
    thread = await client.beta.threads.create(
        messages=[{"role": "user", "content": f"message {n} " + "word " * 100} for n in range(6)]
    )
    run = await client.beta.threads.runs.create_and_poll(
        thread_id=thread.id,
        assistant_id=assistant.id,
        truncation_strategy={"type": "last_messages", "last_messages": 2},
    )
    assert run.status == "completed"
    sent = upstream.requests(model)[0]["messages"]
    assert [m["content"].split()[1] for m in sent] == ["4", "5"]

    run = await client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, max_prompt_tokens=256
    )
    assert run.status == "completed"
    kept = upstream.requests(model)[1]["messages"]
    # The thread holds six long user messages and the first run's reply; only the newest fit.
    assert 1 <= len(kept) <= 2
    assert kept[-1]["role"] == "assistant" and kept[-1]["content"].startswith("echo: message 5")


async def test_max_prompt_tokens_too_small_for_newest_message(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    assistant = await client.beta.assistants.create(model=model)
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "word " * 2000}])
    run = await client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, max_prompt_tokens=256
    )
    assert run.status == "incomplete"
    assert run.incomplete_details is not None and run.incomplete_details.reason == "max_prompt_tokens"
    assert upstream.requests(model) == []
    # The reply's message and step, stored with the run, were never begun: none is left.
    messages = await client.beta.threads.messages.list(thread_id=thread.id)
    assert [m.role for m in messages.data] == ["user"]
    assert (await client.beta.threads.runs.steps.list(run_id=run.id, thread_id=thread.id)).data == []


async def test_other_tenants_cannot_touch_runs(
    server: Server,
    client: openai.AsyncOpenAI,
    other_tenant: openai.AsyncOpenAI,
    upstream: ScriptedUpstream,
    model: str,
) -> None:
    upstream.script(model, ToolCalls([("get_weather", "{}")]))
    assistant = await client.beta.assistants.create(model=model, tools=[WEATHER_TOOL])
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "go"}])
    run = await client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.required_action is not None
    call_id = run.required_action.submit_tool_outputs.tool_calls[0].id
    own_assistant = await other_tenant.beta.assistants.create(model=model)
    own_thread = await other_tenant.beta.threads.create()
    runs = other_tenant.beta.threads.runs
    attempts = [
        runs.create(thread_id=thread.id, assistant_id=own_assistant.id),
        runs.create(thread_id=own_thread.id, assistant_id=assistant.id),
        other_tenant.beta.threads.create_and_run(assistant_id=assistant.id),
        runs.retrieve(run.id, thread_id=thread.id),
        runs.update(run.id, thread_id=thread.id, metadata={"x": "y"}),
        runs.cancel(run.id, thread_id=thread.id),
        runs.submit_tool_outputs(
            run_id=run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": call_id, "output": "x"}]
        ),
        runs.steps.list(run.id, thread_id=thread.id),
    ]
    for attempt in attempts:
        with pytest.raises(openai.NotFoundError):
            await attempt
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TENANT_B_KEY}"}) as http:
        response = await http.get(f"{server.base_url}/threads/{thread.id}/runs/{run.id}/events")
    assert response.status_code == 404
    # Untouched for its owner.
    assert (await client.beta.threads.runs.retrieve(run.id, thread_id=thread.id)).status == "requires_action"


async def test_a_reply_without_text_leaves_no_message(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    # Without tools the reply's message is stored while the model thinks; an empty reply removes it.
    upstream.script(model, Reply("", chunks=[]))
    assistant = await client.beta.assistants.create(model=model)
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "Say nothing"}])

    run = await client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)

    assert run.status == "completed"
    messages = await client.beta.threads.messages.list(thread_id=thread.id)
    assert [m.role for m in messages.data] == ["user"]
    steps = await client.beta.threads.runs.steps.list(run_id=run.id, thread_id=thread.id)
    assert steps.data == []


async def test_cancel_before_the_first_token_leaves_no_message(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, Reply("too late", first_delay=5.0))
    assistant = await client.beta.assistants.create(model=model)
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "Hi"}])
    async with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as stream:
        async for event in stream:
            if event.event == "thread.run.in_progress":
                await client.beta.threads.runs.cancel(run_id=event.data.id, thread_id=thread.id)
            last = event
    assert last.event == "thread.run.cancelled"
    messages = await client.beta.threads.messages.list(thread_id=thread.id)
    assert [m.role for m in messages.data] == ["user"]
    steps = await client.beta.threads.runs.steps.list(run_id=last.data.id, thread_id=thread.id)
    assert steps.data == []


def _sse(*chunks: dict[str, object]) -> str:
    frames = [
        {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 0, "model": "m", "choices": [c]}
        for c in chunks
    ]
    return "".join(f"data: {json.dumps(f)}\n\n" for f in frames) + "data: [DONE]\n\n"


async def test_text_after_tool_calls_is_a_message_of_its_own(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    # Some models write text, call a tool, then write more text in the same reply.
    call = {"index": 0, "id": "call_1", "type": "function"}
    body = _sse(
        {"index": 0, "delta": {"role": "assistant", "content": "Let me check. "}, "finish_reason": None},
        {
            "index": 0,
            "delta": {"tool_calls": [{**call, "function": {"name": "get_weather", "arguments": "{}"}}]},
            "finish_reason": None,
        },
        {"index": 0, "delta": {"content": "One moment."}, "finish_reason": None},
        {"index": 0, "delta": {}, "finish_reason": "tool_calls"},
    )
    upstream.script(model, Raw(body))
    assistant = await client.beta.assistants.create(model=model, tools=[WEATHER_TOOL])  # type: ignore[list-item]
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "Weather?"}])
    run = await client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "requires_action"
    messages = (await client.beta.threads.messages.list(thread.id, order="asc", run_id=run.id)).data
    texts = [m.content[0].text.value for m in messages]  # type: ignore[union-attr]
    assert texts == ["Let me check. ", "One moment."]


async def test_a_run_queued_at_capacity_starts_when_a_place_frees(
    server_factory: ServerFactory, upstream: ScriptedUpstream, model: str
) -> None:
    """With room for one run, a second is stored queued; the first one's end (not the queue's poll,
    set beyond the test's patience here) has the executor claim it."""
    upstream.script(model, Reply("first", delay=0.2), Reply("second", delay=0.05))
    with server_factory(max_concurrent_runs=1, queue_poll_seconds=600) as server:
        async with sdk_client(server) as client:
            assistant = await client.beta.assistants.create(model=model)
            threads = [
                await client.beta.threads.create(messages=[{"role": "user", "content": "go"}])
                for _ in range(2)
            ]
            first = await client.beta.threads.runs.create(thread_id=threads[0].id, assistant_id=assistant.id)
            second = await client.beta.threads.runs.create(thread_id=threads[1].id, assistant_id=assistant.id)
            assert second.status == "queued"
            async with asyncio.timeout(60):
                done = [
                    await client.beta.threads.runs.poll(run.id, thread_id=run.thread_id, poll_interval_ms=50)
                    for run in (first, second)
                ]
    assert [run.status for run in done] == ["completed", "completed"]
