"""The wire as plain HTTP clients see it (no SDK in between): the Open Responses compliance
suite's requests (a basic reply, a stream, a system prompt, a function tool, an image, a replayed
multi-turn history), with every field its response schema requires present and typed, and every
streamed event numbered and framed as one ``event:``/``data:`` block."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.upstream import Reply, ScriptedUpstream, ToolCalls

REQUIRED = {
    "id": str,
    "object": str,
    "status": str,
    "model": str,
    "service_tier": str,
    "created_at": int,
    "top_logprobs": int,
    "temperature": (int, float),
    "top_p": (int, float),
    "presence_penalty": (int, float),
    "frequency_penalty": (int, float),
    "parallel_tool_calls": bool,
    "store": bool,
    "background": bool,
    "tools": list,
    "output": list,
    "text": dict,
}
PRESENT = (
    "metadata",
    "completed_at",
    "max_output_tokens",
    "max_tool_calls",
    "previous_response_id",
    "instructions",
    "safety_identifier",
    "prompt_cache_key",
    "error",
    "incomplete_details",
    "reasoning",
    "usage",
    "truncation",
    "tool_choice",
)
PNG = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def _check_resource(response: dict[str, Any]) -> None:
    for key, kind in REQUIRED.items():
        assert isinstance(response[key], kind), key
    for key in PRESENT:
        assert key in response, key
    assert response["object"] == "response" and "format" in response["text"]
    for item in response["output"]:
        if item["type"] == "message":
            assert {"id", "status", "role", "content"} <= item.keys()
            for part in item["content"]:
                assert part["type"] != "output_text" or (
                    isinstance(part["annotations"], list) and isinstance(part["logprobs"], list)
                )
        elif item["type"] == "function_call":
            assert {"id", "call_id", "name", "arguments", "status"} <= item.keys()


@pytest.mark.parametrize(
    "payload",
    [
        {"input": [{"type": "message", "role": "user", "content": "Say hello in exactly 3 words."}]},
        {
            "input": [
                {"type": "message", "role": "system", "content": "You are a pirate."},
                {"type": "message", "role": "user", "content": "Say hello."},
            ]
        },
        {
            "input": [
                {
                    "type": "message",
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "What do you see?"},
                        {"type": "input_image", "image_url": PNG},
                    ],
                }
            ]
        },
        {
            "input": [
                {"type": "message", "role": "user", "content": "My name is Alice."},
                {"type": "message", "role": "assistant", "content": "Hello Alice!"},
                {"type": "message", "role": "user", "content": "What is my name?"},
            ]
        },
    ],
    ids=["basic", "system-prompt", "image-input", "multi-turn"],
)
async def test_compliance_requests_get_complete_responses(
    raw: httpx.AsyncClient, upstream: ScriptedUpstream, model: str, payload: dict[str, Any]
) -> None:
    upstream.script(model, Reply("Hello there, friend."))

    answer = await raw.post("/responses", json={"model": model, **payload})

    assert answer.status_code == 200
    body = answer.json()
    _check_resource(body)
    assert body["status"] == "completed" and body["output"][0]["type"] == "message"


async def test_compliance_tool_call(raw: httpx.AsyncClient, upstream: ScriptedUpstream, model: str) -> None:
    upstream.script(model, ToolCalls([("get_weather", '{"location": "San Francisco, CA"}')]))
    tool = {
        "type": "function",
        "name": "get_weather",
        "description": "Get the current weather for a location",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "required": ["location"],
        },
    }

    answer = await raw.post(
        "/responses",
        json={"model": model, "max_output_tokens": 500, "input": "Weather in SF?", "tools": [tool]},
    )

    body = answer.json()
    _check_resource(body)
    assert [i["type"] for i in body["output"]] == ["function_call"]
    assert body["tools"][0]["strict"] is True  # the Responses API's default


async def test_compliance_stream_is_numbered_and_framed(
    raw: httpx.AsyncClient, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, Reply("1 2 3 4 5", chunks=["1 ", "2 ", "3 ", "4 ", "5"]))
    blocks: list[tuple[str, dict[str, Any]]] = []

    async with raw.stream(
        "POST", "/responses", json={"model": model, "input": "Count", "stream": True}
    ) as answer:
        assert answer.headers["content-type"].startswith("text/event-stream")
        text = (await answer.aread()).decode()

    for block in text.strip().split("\n\n"):
        name_line, data_line = block.split("\n")
        assert name_line.startswith("event: ") and data_line.startswith("data: ")
        blocks.append((name_line[7:], json.loads(data_line[6:])))
    assert all(name == data["type"] for name, data in blocks)
    assert [data["sequence_number"] for _, data in blocks] == list(range(len(blocks)))
    names = [name for name, _ in blocks]
    assert names[0] == "response.created" and names[1] == "response.in_progress"
    assert names[-1] == "response.completed" and "[DONE]" not in text
    for name, data in blocks:
        if name in ("response.created", "response.in_progress", "response.completed"):
            _check_resource(data["response"])
        if name in ("response.output_text.delta", "response.output_text.done"):
            assert isinstance(data["logprobs"], list) and isinstance(data["content_index"], int)
    assert blocks[-1][1]["response"]["usage"]["total_tokens"] > 0
