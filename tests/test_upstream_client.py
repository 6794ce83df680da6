"""upstream/chat.py against the scripted model server over real HTTP; and that server's wire format,
checked with the official SDK."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from openassistants.config import Settings
from openassistants.upstream import (
    ChatClient,
    ChatEvent,
    ChatRequest,
    Finish,
    TextDelta,
    ToolCallDelta,
    UpstreamError,
    Usage,
    UsageReport,
)
from tests.servers import free_port
from tests.upstream import (
    Disconnect,
    Echo,
    Fail,
    Hang,
    Raw,
    Reply,
    ScriptedUpstream,
    ToolCalls,
    scripted_upstream,
)

HELLO: list[dict[str, Any]] = [{"role": "user", "content": "Hello there"}]
SDK_HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hello there"}]


def new_model() -> str:
    return f"script-{uuid.uuid4().hex}"


@asynccontextmanager
async def chat_client(base_url: str, **settings: Any) -> AsyncIterator[ChatClient]:
    settings = {"llm_retry_backoff_seconds": 0.01, **settings}
    client = ChatClient(Settings(llm_base_url=base_url, **settings))
    try:
        yield client
    finally:
        await client.aclose()


async def collect(client: ChatClient, request: ChatRequest) -> list[ChatEvent]:
    return [event async for event in client.stream(request)]


def text_of(events: list[ChatEvent]) -> str:
    return "".join(event.text for event in events if isinstance(event, TextDelta))


def tool_calls_of(events: list[ChatEvent]) -> list[tuple[str | None, str | None, str]]:
    """(id, name, arguments) per index, reassembled from the deltas."""
    calls: dict[int, list[Any]] = {}
    for event in events:
        if isinstance(event, ToolCallDelta):
            call = calls.setdefault(event.index, [None, None, ""])
            assert event.id is None or call[0] is None, "id sent twice"
            assert event.name is None or call[1] is None, "name sent twice"
            call[0] = event.id or call[0]
            call[1] = event.name or call[1]
            call[2] += event.arguments
    return [tuple(calls[index]) for index in sorted(calls)]


def ending(events: list[ChatEvent]) -> list[ChatEvent]:
    return [event for event in events if isinstance(event, Finish | UsageReport)]


@pytest.fixture
def model() -> str:
    return new_model()


@pytest.fixture
async def client(upstream: ScriptedUpstream) -> AsyncIterator[ChatClient]:
    async with chat_client(upstream.url) as c:
        yield c


# --- streaming what the model says


async def test_text_streams_as_deltas_then_finish_and_usage(
    upstream: ScriptedUpstream, client: ChatClient, model: str
) -> None:
    upstream.script(model, Reply("Hello, streaming world!", chunks=["Hello", ", stream", "ing world!"]))

    events = await collect(client, ChatRequest(model=model, messages=HELLO))

    assert [e for e in events if isinstance(e, TextDelta)] == [
        TextDelta("Hello"),
        TextDelta(", stream"),
        TextDelta("ing world!"),
    ]
    assert ending(events) == [Finish("stop"), UsageReport(Usage(2, 3, 5))]
    assert events[-2:] == ending(events)


async def test_request_body_carries_the_options_set(
    upstream: ScriptedUpstream, client: ChatClient, model: str
) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    await collect(client, ChatRequest(model=model, messages=HELLO))
    await collect(
        client,
        ChatRequest(
            model=model,
            messages=HELLO,
            tools=tools,
            tool_choice="required",
            parallel_tool_calls=False,
            temperature=0.2,
            top_p=0.9,
            response_format={"type": "json_object"},
            max_completion_tokens=64,
        ),
    )

    plain, full = upstream.requests(model)
    stream_fields = {"stream": True, "stream_options": {"include_usage": True}}
    assert plain == {"model": model, "messages": HELLO, **stream_fields}
    assert full == {
        "model": model,
        "messages": HELLO,
        **stream_fields,
        "tools": tools,
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "temperature": 0.2,
        "top_p": 0.9,
        "response_format": {"type": "json_object"},
        "max_tokens": 64,
    }


async def test_what_orjson_refuses_still_reaches_the_model_intact(
    upstream: ScriptedUpstream, client: ChatClient, model: str
) -> None:
    # A tool's JSON schema may hold an integer beyond 64 bits; text may be any Unicode.
    huge = 2**70
    parameters = {"type": "object", "properties": {"n": {"type": "integer", "maximum": huge}}}
    tools = [{"type": "function", "function": {"name": "f", "parameters": parameters}}]
    messages = [{"role": "user", "content": "Grüße, 世界 🌊"}]
    await collect(client, ChatRequest(model=model, messages=messages, tools=tools))
    await collect(client, ChatRequest(model=model, messages=messages))

    with_tools, plain = upstream.requests(model)
    assert with_tools["tools"][0]["function"]["parameters"]["properties"]["n"]["maximum"] == huge
    assert with_tools["messages"] == messages == plain["messages"]


async def test_tool_choice_is_only_sent_with_tools(
    upstream: ScriptedUpstream, client: ChatClient, model: str
) -> None:
    await collect(client, ChatRequest(model=model, messages=HELLO, tool_choice="none", tools=[]))
    assert "tool_choice" not in upstream.requests(model)[0]


async def test_a_tool_call_reassembles_to_its_exact_arguments(
    upstream: ScriptedUpstream, client: ChatClient, model: str
) -> None:
    arguments = json.dumps({"city": "Paris", "unit": "celsius", "note": 'quotes " and \\ and é'})
    upstream.script(model, ToolCalls([("get_weather", arguments)], arg_chunks=5))

    events = await collect(client, ChatRequest(model=model, messages=HELLO))

    assert tool_calls_of(events) == [("call_1", "get_weather", arguments)]
    assert len([e for e in events if isinstance(e, ToolCallDelta)]) == 6  # header + 5 fragments
    assert text_of(events) == ""
    assert ending(events)[0] == Finish("tool_calls")


async def test_parallel_tool_calls_after_text(
    upstream: ScriptedUpstream, client: ChatClient, model: str
) -> None:
    calls = [("get_weather", '{"city": "Paris"}'), ("get_time", '{"tz": "Europe/Paris"}')]
    upstream.script(model, ToolCalls(calls, ids=["call_a", "call_b"], text="Checking both."))

    events = await collect(client, ChatRequest(model=model, messages=HELLO))

    assert text_of(events) == "Checking both."
    assert tool_calls_of(events) == [
        ("call_a", "get_weather", '{"city": "Paris"}'),
        ("call_b", "get_time", '{"tz": "Europe/Paris"}'),
    ]
    assert ending(events)[0] == Finish("tool_calls")


async def test_default_tool_call_ids_count_on_per_model(
    upstream: ScriptedUpstream, client: ChatClient, model: str
) -> None:
    upstream.script(model, ToolCalls([("a", "{}"), ("b", "{}")]), ToolCalls([("c", "{}")]))
    first = await collect(client, ChatRequest(model=model, messages=HELLO))
    second = await collect(client, ChatRequest(model=model, messages=HELLO))
    assert [call[0] for call in tool_calls_of(first) + tool_calls_of(second)] == [
        "call_1",
        "call_2",
        "call_3",
    ]


async def test_no_usage_report_when_the_upstream_reports_none(
    upstream: ScriptedUpstream, client: ChatClient, model: str
) -> None:
    upstream.script(model, Reply("ok", usage=None), Reply("ok", usage=Usage(7, 1, 8)))
    assert ending(await collect(client, ChatRequest(model=model, messages=HELLO))) == [Finish("stop")]
    assert ending(await collect(client, ChatRequest(model=model, messages=HELLO))) == [
        Finish("stop"),
        UsageReport(Usage(7, 1, 8)),
    ]


async def test_echo_is_the_default_turn(upstream: ScriptedUpstream, client: ChatClient, model: str) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "second "}, {"type": "text", "text": "part"}]},
    ]
    upstream.script(model, Echo())
    for _ in range(2):  # the scripted Echo, then the default
        events = await collect(client, ChatRequest(model=model, messages=messages))
        assert text_of(events) == "echo: second part"


async def test_stopping_early_leaves_the_client_usable(
    upstream: ScriptedUpstream, client: ChatClient, model: str
) -> None:
    upstream.script(model, Reply("a long reply " * 20, delay=0.01))
    async with aclosing(client.stream(ChatRequest(model=model, messages=HELLO))) as events:
        async for event in events:
            assert isinstance(event, TextDelta)
            break
    assert text_of(await collect(client, ChatRequest(model=model, messages=HELLO))) == "echo: Hello there"


# --- failures, retries and their codes


async def test_a_500_is_retried(upstream: ScriptedUpstream, client: ChatClient, model: str) -> None:
    upstream.script(model, Fail(500), Reply("recovered"))
    events = await collect(client, ChatRequest(model=model, messages=HELLO))
    assert text_of(events) == "recovered"
    assert len(upstream.requests(model)) == 2


async def test_5xx_beyond_the_retries_is_a_server_error(upstream: ScriptedUpstream, model: str) -> None:
    upstream.script(model, Fail(503, "overloaded", times=3), Reply("too late"))
    async with chat_client(upstream.url, llm_max_retries=2) as client:
        with pytest.raises(UpstreamError) as caught:
            await collect(client, ChatRequest(model=model, messages=HELLO))
    assert caught.value.code == "server_error"
    assert "503" in caught.value.message and "overloaded" in caught.value.message
    assert len(upstream.requests(model)) == 3


async def test_429_after_the_retries_is_rate_limit_exceeded(upstream: ScriptedUpstream, model: str) -> None:
    upstream.script(model, Fail(429, "slow down", times=2))
    async with chat_client(upstream.url, llm_max_retries=1) as client:
        with pytest.raises(UpstreamError) as caught:
            await collect(client, ChatRequest(model=model, messages=HELLO))
    assert caught.value.code == "rate_limit_exceeded"
    # Frameworks (agency-swarm) retry a run whose error says so.
    assert caught.value.message == (
        f"Rate limit reached: the model upstream at {upstream.url} (OPENASSISTANTS_LLM_BASE_URL) "
        "answered 429: slow down"
    )
    assert len(upstream.requests(model)) == 2


async def test_retry_after_is_honoured_over_the_backoff(upstream: ScriptedUpstream, model: str) -> None:
    upstream.script(model, Fail(429, retry_after=0.05), Reply("ok"))
    async with chat_client(upstream.url, llm_retry_backoff_seconds=60) as client, asyncio.timeout(10):
        assert text_of(await collect(client, ChatRequest(model=model, messages=HELLO))) == "ok"


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (400, "messages: field required"),
        (404, "The model `llama-9000` does not exist."),
        (422, "temperature must be at most 2"),
    ],
)
async def test_a_4xx_is_an_invalid_prompt_and_not_retried(
    upstream: ScriptedUpstream, client: ChatClient, model: str, status: int, message: str
) -> None:
    upstream.script(model, Fail(status, message))
    with pytest.raises(UpstreamError) as caught:
        await collect(client, ChatRequest(model=model, messages=HELLO))
    assert caught.value.code == "invalid_prompt"
    assert message in caught.value.message
    assert len(upstream.requests(model)) == 1


async def test_a_wrong_upstream_key_is_a_server_error_not_retried(model: str) -> None:
    with scripted_upstream(api_key="sk-right") as guarded:
        async with chat_client(guarded.url, llm_api_key="sk-wrong") as client:
            with pytest.raises(UpstreamError) as caught:
                await collect(client, ChatRequest(model=model, messages=HELLO))
    assert caught.value.code == "server_error"
    assert "401" in caught.value.message and "Incorrect API key" in caught.value.message
    assert "sk-wrong" not in caught.value.message


async def test_error_bodies_in_other_shapes_are_quoted(
    upstream: ScriptedUpstream, client: ChatClient, model: str
) -> None:
    upstream.script(
        model,
        Raw('{"detail": "Not Found"}', "application/json", status=404),
        Raw('{"error": "model is required"}', "application/json", status=400),
        Raw("plain words", "text/plain", status=400),
        Raw("", "text/plain", status=400),
        Raw("", "text/plain", status=302),
    )
    messages = []
    for _ in range(5):
        with pytest.raises(UpstreamError) as caught:
            await collect(client, ChatRequest(model=model, messages=HELLO))
        messages.append((caught.value.code, caught.value.message))
    where = f"The model upstream at {upstream.url} (OPENASSISTANTS_LLM_BASE_URL)"
    assert messages == [
        ("invalid_prompt", f"{where} answered 404: Not Found"),
        ("invalid_prompt", f"{where} answered 400: model is required"),
        ("invalid_prompt", f"{where} answered 400: plain words"),
        ("invalid_prompt", f"{where} answered 400: Bad Request"),
        ("server_error", f"{where} answered 302: Found"),
    ]


async def test_a_hang_times_out_as_a_server_error(upstream: ScriptedUpstream, model: str) -> None:
    upstream.script(model, Hang(10))
    async with chat_client(upstream.url, llm_read_timeout_seconds=0.3, llm_max_retries=0) as client:
        with pytest.raises(UpstreamError) as caught:
            await collect(client, ChatRequest(model=model, messages=HELLO))
    assert caught.value.code == "server_error"
    assert "timed out" in caught.value.message


async def test_a_hang_before_any_token_is_retried(upstream: ScriptedUpstream, model: str) -> None:
    upstream.script(model, Hang(10), Reply("second try"))
    async with chat_client(upstream.url, llm_read_timeout_seconds=0.3, llm_max_retries=1) as client:
        assert text_of(await collect(client, ChatRequest(model=model, messages=HELLO))) == "second try"


async def test_silence_shorter_than_the_read_timeout_is_fine(upstream: ScriptedUpstream, model: str) -> None:
    upstream.script(model, Reply("slow but steady", delay=0.1, first_delay=0.2))
    async with chat_client(upstream.url, llm_read_timeout_seconds=1, llm_max_retries=0) as client:
        assert text_of(await collect(client, ChatRequest(model=model, messages=HELLO))) == "slow but steady"


async def test_a_disconnect_after_tokens_is_a_server_error_not_retried(
    upstream: ScriptedUpstream, client: ChatClient, model: str
) -> None:
    upstream.script(model, Disconnect(after_chunks=3), Reply("must not be used"))
    received: list[ChatEvent] = []
    with pytest.raises(UpstreamError) as caught:
        async for event in client.stream(ChatRequest(model=model, messages=HELLO)):
            received.append(event)
    assert caught.value.code == "server_error"
    assert text_of(received) == "echo: He"  # the two chunks after the role chunk
    assert len(upstream.requests(model)) == 1


async def test_a_disconnect_before_any_token_is_retried(
    upstream: ScriptedUpstream, client: ChatClient, model: str
) -> None:
    upstream.script(model, Disconnect(after_chunks=1), Reply("whole"))
    assert text_of(await collect(client, ChatRequest(model=model, messages=HELLO))) == "whole"
    assert len(upstream.requests(model)) == 2


async def test_an_unreachable_upstream_is_a_server_error_naming_its_url_and_setting(model: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    async with chat_client(dead, llm_max_retries=1) as client:
        with pytest.raises(UpstreamError) as caught:
            await collect(client, ChatRequest(model=model, messages=HELLO))
    assert caught.value.code == "server_error"
    assert caught.value.message == (
        f"The model upstream at {dead} (OPENASSISTANTS_LLM_BASE_URL) refused the connection "
        "(is a model server running there?)."
    )


async def test_an_unresolvable_route_host_names_the_route(model: str) -> None:
    routes = json.dumps({"gpt-4*": {"base_url": "http://no-such-host.invalid/v1", "api_key": "sk-route"}})
    async with chat_client(
        f"http://127.0.0.1:{free_port()}/v1", llm_max_retries=0, llm_routes=routes
    ) as client:
        with pytest.raises(UpstreamError) as caught:
            await collect(client, ChatRequest(model="gpt-4o", messages=HELLO))
    assert caught.value.message == (
        "The model upstream at http://no-such-host.invalid/v1 (the route 'gpt-4*' in "
        "OPENASSISTANTS_LLM_ROUTES) could not be found (its host name did not resolve)."
    )


async def test_credentials_in_an_upstream_url_are_never_quoted(model: str) -> None:
    port = free_port()
    async with chat_client(
        f"http://user:sk-secret@127.0.0.1:{port}/v1?key=sk-query", llm_max_retries=0
    ) as client:
        with pytest.raises(UpstreamError) as caught:
            await collect(client, ChatRequest(model=model, messages=HELLO))
    assert f"at http://127.0.0.1:{port}/v1 (OPENASSISTANTS_LLM_BASE_URL)" in caught.value.message
    assert "sk-secret" not in caught.value.message and "sk-query" not in caught.value.message


async def test_an_undecodable_body_is_a_server_error(
    upstream: ScriptedUpstream, client: ChatClient, model: str
) -> None:
    upstream.script(model, Raw("not gzip at all", headers={"content-encoding": "gzip"}))
    with pytest.raises(UpstreamError) as caught:
        await collect(client, ChatRequest(model=model, messages=HELLO))
    assert caught.value.code == "server_error"
    assert len(upstream.requests(model)) == 1


# --- the dialects of other OpenAI-compatible servers


def sse(*chunks: dict[str, Any] | str, newline: str = "\n") -> str:
    lines = [chunk if isinstance(chunk, str) else f"data: {json.dumps(chunk)}" for chunk in chunks]
    return "".join(line + newline + newline for line in lines)


def delta(finish_reason: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": fields, "finish_reason": finish_reason}]}


def call(index: int, arguments: str, **fields: Any) -> dict[str, Any]:
    return {"index": index, **fields, "function": {"name": "lookup", "arguments": arguments}}


async def test_local_server_dialect(upstream: ScriptedUpstream, client: ChatClient, model: str) -> None:
    """CRLF, keep-alive comments, reasoning deltas, id and name repeated on every fragment, finish_reason
    on a chunk with content, no usage, an event and id field, a multi-line data field."""
    body = sse(
        ": keep-alive",
        delta(role="assistant", reasoning_content="Let me think"),
        delta(reasoning="… still thinking", content=None),
        "event: message\r\nid: 7\r\ndata: " + json.dumps(delta(content="Sure")),
        'data: {"choices": [{"index": 0,\r\ndata: "delta": {"content": "."}}]}',
        delta(tool_calls=[call(0, '{"q": ', id="c1", type="function")]),
        delta(tool_calls=[call(0, '"x"}', id="c1", type="function")]),
        delta(tool_calls=[call(0, "", id="c1", type="function")]),
        delta("stop", content="!", tool_calls=[call(1, "{}", id="c2")]),
        {"choices": [{"index": 1, "delta": {"content": "second choice"}}]},
        "data: [DONE]",
        newline="\r\n",
    )
    upstream.script(model, Raw(body))

    events = await collect(client, ChatRequest(model=model, messages=HELLO))

    assert text_of(events) == "Sure.!"
    assert tool_calls_of(events) == [("c1", "lookup", '{"q": "x"}'), ("c2", "lookup", "{}")]
    assert ending(events) == [Finish("tool_calls")]  # "stop" after tool calls means tool_calls
    assert events[-1] == Finish("tool_calls")


async def test_a_json_answer_to_a_stream_request_becomes_events(
    upstream: ScriptedUpstream, client: ChatClient, model: str
) -> None:
    completion = {
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Calling.",
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4},
    }
    upstream.script(model, Raw(json.dumps(completion), "application/json"))

    events = await collect(client, ChatRequest(model=model, messages=HELLO))

    assert events == [
        TextDelta("Calling."),
        ToolCallDelta(0, "c1", "f", '{"a": 1}'),
        Finish("tool_calls"),
        UsageReport(Usage(3, 4, 7)),
    ]


@pytest.mark.parametrize(
    ("reason", "normalized"),
    [("function_call", "tool_calls"), ("eos_token", "stop"), ("length", "length"), (None, "stop")],
)
async def test_finish_reasons_are_normalized(
    upstream: ScriptedUpstream, client: ChatClient, model: str, reason: str | None, normalized: str
) -> None:
    upstream.script(model, Raw(sse(delta(reason, content="x"), "data: [DONE]")))
    events = await collect(client, ChatRequest(model=model, messages=HELLO))
    assert events == [TextDelta("x"), Finish(normalized)]  # type: ignore[arg-type]


async def test_usage_is_reported_once_at_the_end(
    upstream: ScriptedUpstream, client: ChatClient, model: str
) -> None:
    body = sse(
        {**delta(content="a"), "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}},
        {**delta("stop", content="b"), "usage": {"prompt_tokens": 5, "completion_tokens": 2}},
    ).rstrip()  # no [DONE], not even a last blank line: the stream had finished
    upstream.script(model, Raw(body))
    events = await collect(client, ChatRequest(model=model, messages=HELLO))
    assert events == [TextDelta("a"), TextDelta("b"), Finish("stop"), UsageReport(Usage(5, 2, 7))]


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (sse(delta(content="a"), "data: {not json"), "text/event-stream", "malformed"),
        (sse(delta(content="a"), 'data: ["a list"]'), "text/event-stream", "malformed"),
        (sse(delta(tool_calls=[{"index": "0"}])), "text/event-stream", "malformed"),
        (sse(delta(content="a")), "text/event-stream", "ended before the reply did"),
        ("", "text/event-stream", "ended before the reply did"),
        (sse({"error": {"message": "CUDA out of memory"}}), "text/event-stream", "CUDA out of memory"),
        (sse({"error": "overloaded"}), "text/event-stream", "overloaded"),
        ('{"choices": []}', "application/json", "malformed"),
        ("<html>", "application/json", "malformed"),
    ],
)
async def test_a_broken_stream_is_a_server_error_not_retried(
    upstream: ScriptedUpstream, client: ChatClient, model: str, body: str, content_type: str, message: str
) -> None:
    upstream.script(model, Raw(body, content_type))
    with pytest.raises(UpstreamError) as caught:
        await collect(client, ChatRequest(model=model, messages=HELLO))
    assert caught.value.code == "server_error"
    assert message in caught.value.message
    assert len(upstream.requests(model)) == 1


# --- routing


@pytest.fixture
def second_upstream() -> Iterator[ScriptedUpstream]:
    with scripted_upstream(api_key="sk-second") as second:
        yield second


@pytest.mark.parametrize("routes_in", ["json", "file"])
async def test_a_routed_model_goes_to_its_upstream_under_its_served_name(
    upstream: ScriptedUpstream, second_upstream: ScriptedUpstream, tmp_path: Path, routes_in: str
) -> None:
    alias, served, other = new_model(), new_model(), new_model()
    routes = json.dumps(
        {
            alias: {"base_url": second_upstream.url + "/", "api_key": "sk-second", "model": served},
            other: {"base_url": second_upstream.url, "api_key": "sk-second"},
        }
    )
    if routes_in == "file":
        (tmp_path / "routes.json").write_text(routes)
        routes = str(tmp_path / "routes.json")
    second_upstream.script(served, Reply("from the second upstream"))
    unrouted = new_model()

    async with chat_client(upstream.url, llm_api_key="sk-first", llm_routes=routes) as client:
        routed = await collect(client, ChatRequest(model=alias, messages=HELLO))
        kept_name = await collect(client, ChatRequest(model=other, messages=HELLO))
        default = await collect(client, ChatRequest(model=unrouted, messages=HELLO))

    assert text_of(routed) == "from the second upstream"
    assert [body["model"] for body in second_upstream.requests(served)] == [served]
    assert upstream.requests(alias) == [] and upstream.requests(served) == []
    assert text_of(kept_name) == "echo: Hello there"
    assert len(second_upstream.requests(other)) == 1
    assert text_of(default) == "echo: Hello there"
    assert len(upstream.requests(unrouted)) == 1


@pytest.mark.parametrize(
    "settings",
    [
        {"llm_routes": '{"m": {"base_url": "http://h/v1", "apikey": "typo"}}'},
        {"llm_routes": '{"m": {"model": "no base_url"}}'},
        {"llm_routes": '{"m": {"base_url": "ftp://h/v1"}}'},
        {"llm_routes": "/nonexistent/routes.json"},
        {"llm_base_url": "http://[::1/v1"},
        {"llm_base_url": "not a url"},
    ],
)
def test_unusable_upstream_settings_fail_at_start(settings: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        ChatClient(Settings(**settings))  # type: ignore[arg-type]


async def test_blank_routes_mean_the_default_upstream(upstream: ScriptedUpstream, model: str) -> None:
    async with chat_client(upstream.url, llm_routes="  ") as client:
        await collect(client, ChatRequest(model=model, messages=HELLO))
    assert len(upstream.requests(model)) == 1


# --- load: hundreds of concurrent streams through one client and one scripted server


async def test_hundreds_of_concurrent_streams(upstream: ScriptedUpstream, client: ChatClient) -> None:
    models = [new_model() for _ in range(300)]
    for name in models:
        upstream.script(name, Reply(f"reply for {name}", delay=0.05, chunks=["reply ", "for ", name]))

    async with asyncio.timeout(20):  # serialized, it would take 300 x 0.15 s = 45 s
        results = await asyncio.gather(
            *(collect(client, ChatRequest(model=name, messages=HELLO)) for name in models)
        )

    assert [text_of(events) for events in results] == [f"reply for {name}" for name in models]


# --- the scripted server's wire format, read by the official SDK


@pytest.fixture
async def sdk(upstream: ScriptedUpstream) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=upstream.url, api_key="unused", max_retries=0) as c:
        yield c


async def test_sdk_accumulates_a_scripted_stream(
    upstream: ScriptedUpstream, sdk: openai.AsyncOpenAI, model: str
) -> None:
    upstream.script(model, ToolCalls([("f", '{"x": 1}'), ("g", "{}")], text="Hi."))
    async with sdk.chat.completions.stream(
        model=model, messages=SDK_HELLO, stream_options={"include_usage": True}
    ) as stream:
        chunks = [event async for event in stream if event.type == "chunk"]
        completion = await stream.get_final_completion()

    assert all(chunk.chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert chunks[-1].chunk.choices == [] and chunks[-1].chunk.usage is not None
    message = completion.choices[0].message
    assert message.content == "Hi."
    assert [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls or []] == [
        ("call_1", "f", '{"x": 1}'),
        ("call_2", "g", "{}"),
    ]
    assert completion.choices[0].finish_reason == "tool_calls"
    assert completion.usage is not None and completion.usage.completion_tokens == len(chunks) - 3


async def test_sdk_reads_a_scripted_completion_error_and_models(
    upstream: ScriptedUpstream, sdk: openai.AsyncOpenAI, model: str
) -> None:
    upstream.script(
        model,
        Reply("whole", delay=0.01),
        ToolCalls([("f", '{"a": [1, 2]}')], ids=["call_z"]),
        Fail(404, "no such model"),
    )

    completion = await sdk.chat.completions.create(model=model, messages=SDK_HELLO)
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "whole"
    assert completion.usage is not None and completion.usage.total_tokens == 2 + 2

    called = await sdk.chat.completions.create(model=model, messages=SDK_HELLO)
    (tool_call,) = called.choices[0].message.tool_calls or []
    assert (tool_call.id, tool_call.function.arguments) == ("call_z", '{"a": [1, 2]}')  # type: ignore[union-attr]
    assert called.choices[0].message.content is None

    with pytest.raises(openai.NotFoundError, match="no such model"):
        await sdk.chat.completions.create(model=model, messages=SDK_HELLO)

    listed = await sdk.models.list()
    assert model in [m.id async for m in listed]


async def test_sdk_streams_a_hang_as_an_empty_body(
    upstream: ScriptedUpstream, sdk: openai.AsyncOpenAI, model: str
) -> None:
    upstream.script(model, Hang(0.05))
    completion = await sdk.chat.completions.create(model=model, messages=SDK_HELLO, stream=True)
    assert [chunk async for chunk in completion] == []


def test_sse_parser_takes_bytes_as_they_come() -> None:
    from openassistants.upstream.chat_reply import SSEParser

    stream = b': comment\r\nevent: x\r\ndata: {"a":\r\ndata:1}\r\n\r\ndata: two\n\ndata:three\rid: 4\r\r'
    # Every split point, including one between a \r and its \n.
    for cut in range(len(stream) + 1):
        parser = SSEParser()
        found = parser.feed(stream[:cut]) + parser.feed(stream[cut:]) + parser.end()
        assert found == [b'{"a":\n1}', b"two", b"three"], cut
    parser = SSEParser()
    assert parser.feed(b"data: last without a blank line") == []
    assert parser.end() == [b"last without a blank line"]
