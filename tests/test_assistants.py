"""Assistants through the SDK: create, retrieve, update, list, delete, and every request limit."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import openai
import pytest

from tests.spec import SpecChecker, assert_api_error, schema_errors

FULL: dict[str, Any] = {
    "model": "gpt-4o",
    "name": "Math tutor",
    "description": "Answers maths questions.",
    "instructions": "You are a patient maths tutor.",
    "tools": [
        {"type": "code_interpreter"},
        {
            "type": "file_search",
            "file_search": {
                "max_num_results": 7,
                "ranking_options": {"ranker": "default_2024_08_21", "score_threshold": 0.5},
            },
        },
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city.",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                "strict": True,
            },
        },
    ],
    "tool_resources": {
        "code_interpreter": {"file_ids": ["file-x"]},
        "file_search": {"vector_store_ids": ["vs_x"]},
    },
    "metadata": {"team": "maths", "tier": "gold"},
    "temperature": 0.25,
    "top_p": 0.5,
    "response_format": {"type": "json_object"},
}


async def with_real_ids(sdk: openai.AsyncOpenAI, fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` with its placeholder ids (file-x, vs_x) replaced by a real file's and vector store's:
    tool_resources may only name objects the tenant has."""
    text = json.dumps(fields)
    if "file-x" in text:
        file = await sdk.files.create(file=("notes.txt", b"notes"), purpose="assistants")
        text = text.replace('"file-x"', json.dumps(file.id))
    if "vs_x" in text:
        store = await sdk.vector_stores.create(name="assistant store")
        text = text.replace('"vs_x"', json.dumps(store.id))
    result: dict[str, Any] = json.loads(text)
    return result


@pytest.fixture
async def full(sdk: openai.AsyncOpenAI) -> dict[str, Any]:
    return await with_real_ids(sdk, FULL)


async def test_create_with_every_field_round_trips(sdk: openai.AsyncOpenAI, full: dict[str, Any]) -> None:
    before = int(time.time())
    created = await sdk.beta.assistants.create(**full, reasoning_effort="low")
    assert created.id.startswith("asst_")
    assert created.object == "assistant"
    assert before <= created.created_at <= int(time.time())
    sent = {key: value for key, value in full.items()}
    assert created.model_dump(exclude={"id", "object", "created_at"}, exclude_none=True) == sent
    retrieved = await sdk.beta.assistants.retrieve(created.id)
    assert retrieved == created
    # reasoning_effort is accepted on create but is not a field of the assistant object (spec §3.1).
    assert "reasoning_effort" not in retrieved.model_dump()


async def test_create_minimal_fills_the_defaults(sdk: openai.AsyncOpenAI) -> None:
    raw = await sdk.beta.assistants.with_raw_response.create(model="gpt-4o-mini")
    body = raw.http_response.json()
    assert {key: body[key] for key in body if key not in ("id", "created_at")} == {
        "object": "assistant",
        "name": None,
        "description": None,
        "model": "gpt-4o-mini",
        "instructions": None,
        "tools": [],
        "tool_resources": {},
        "metadata": {},
        "temperature": 1.0,
        "top_p": 1.0,
        "response_format": "auto",
    }


async def test_function_strict_defaults_to_false(sdk: openai.AsyncOpenAI) -> None:
    created = await sdk.beta.assistants.create(
        model="gpt-4o", tools=[{"type": "function", "function": {"name": "ping"}}]
    )
    assert created.tools[0].model_dump(exclude_none=True) == {
        "type": "function",
        "function": {"name": "ping", "strict": False},
    }


@pytest.mark.parametrize(
    "response_format",
    [
        "auto",
        {"type": "text"},
        {"type": "json_object"},
        {"type": "json_schema", "json_schema": {"name": "answer"}},
        {
            "type": "json_schema",
            "json_schema": {
                "name": "answer",
                "description": "The final answer.",
                "schema": {"type": "object", "properties": {"n": {"type": "integer"}}},
                "strict": True,
            },
        },
    ],
)
async def test_response_format_variants_round_trip(sdk: openai.AsyncOpenAI, response_format: Any) -> None:
    created = await sdk.beta.assistants.create(model="gpt-4o", response_format=response_format)
    raw = await sdk.beta.assistants.with_raw_response.retrieve(created.id)
    assert raw.http_response.json()["response_format"] == response_format


async def test_update_changes_only_the_given_fields(sdk: openai.AsyncOpenAI, full: dict[str, Any]) -> None:
    created = await sdk.beta.assistants.create(**full)
    updated = await sdk.beta.assistants.update(created.id, name="Physics tutor", temperature=1.5)
    assert updated.name == "Physics tutor"
    assert updated.temperature == 1.5
    unchanged = {"name", "temperature"}
    assert updated.model_dump(exclude=unchanged) == created.model_dump(exclude=unchanged)
    assert await sdk.beta.assistants.retrieve(created.id) == updated


async def test_update_replaces_metadata_tools_and_tool_resources(
    sdk: openai.AsyncOpenAI, full: dict[str, Any]
) -> None:
    created = await sdk.beta.assistants.create(**full)
    updated = await sdk.beta.assistants.update(
        created.id,
        metadata={"tier": "silver"},
        tools=[{"type": "code_interpreter"}],
        tool_resources={"code_interpreter": {"file_ids": []}},
        model="gpt-4.1",
        response_format="auto",
    )
    assert updated.metadata == {"tier": "silver"}  # replaced, not merged
    assert [t.type for t in updated.tools] == ["code_interpreter"]
    assert updated.tool_resources is not None
    assert updated.tool_resources.model_dump(exclude_none=True) == {"code_interpreter": {"file_ids": []}}
    assert updated.model == "gpt-4.1"
    assert updated.response_format == "auto"
    assert updated.instructions == FULL["instructions"]
    assert await sdk.beta.assistants.retrieve(created.id) == updated


async def test_update_can_clear_nullable_fields(sdk: openai.AsyncOpenAI, full: dict[str, Any]) -> None:
    created = await sdk.beta.assistants.create(**full)
    raw = await sdk.beta.assistants.with_raw_response.update(
        created.id, extra_body={"name": None, "description": None, "instructions": None, "metadata": None}
    )
    body = raw.http_response.json()
    assert (body["name"], body["description"], body["instructions"]) == (None, None, None)
    assert body["metadata"] == {}
    assert body["model"] == FULL["model"]


async def test_update_with_no_fields_changes_nothing(sdk: openai.AsyncOpenAI, full: dict[str, Any]) -> None:
    created = await sdk.beta.assistants.create(**full)
    assert await sdk.beta.assistants.update(created.id) == created


async def test_list_contains_created_assistants_newest_first(sdk: openai.AsyncOpenAI) -> None:
    first = await sdk.beta.assistants.create(model="gpt-4o", name="first")
    second = await sdk.beta.assistants.create(model="gpt-4o", name="second")
    page = await sdk.beta.assistants.list(limit=2)
    assert [a.id for a in page.data] == [second.id, first.id]
    assert page.data[0] == second


async def test_delete_then_everything_is_404(sdk: openai.AsyncOpenAI) -> None:
    created = await sdk.beta.assistants.create(model="gpt-4o")
    deleted = await sdk.beta.assistants.delete(created.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (created.id, "assistant.deleted", True)
    message = f"No assistant found with id '{created.id}'."
    with pytest.raises(openai.NotFoundError) as retrieving:
        await sdk.beta.assistants.retrieve(created.id)
    assert_api_error(retrieving.value, 404, message=message, param=None, code=None)
    with pytest.raises(openai.NotFoundError) as updating:
        await sdk.beta.assistants.update(created.id, name="ghost")
    assert_api_error(updating.value, 404, message=message)
    with pytest.raises(openai.NotFoundError) as deleting:
        await sdk.beta.assistants.delete(created.id)
    assert_api_error(deleting.value, 404, message=message)
    listed = await sdk.beta.assistants.list(limit=100)
    assert created.id not in [a.id for a in listed.data]


# --- limits: exactly at the limit is accepted, one past it is a 400 naming the parameter ---------------


def _metadata(pairs: int) -> dict[str, str]:
    return {f"key{i}": f"value{i}" for i in range(pairs)}


AT_LIMIT: list[tuple[str, dict[str, Any]]] = [
    ("metadata 16 pairs", {"metadata": _metadata(16)}),
    ("metadata key 64", {"metadata": {"k" * 64: "v"}}),
    ("metadata value 512", {"metadata": {"k": "v" * 512}}),
    ("name 256", {"name": "n" * 256}),
    ("description 512", {"description": "d" * 512}),
    ("instructions 256000", {"instructions": "i" * 256_000}),
    ("tools 128", {"tools": [{"type": "code_interpreter"}] * 128}),
    ("function name 64", {"tools": [{"type": "function", "function": {"name": "f" * 64}}]}),
    ("function name charset", {"tools": [{"type": "function", "function": {"name": "a-Z_0-9"}}]}),
    ("temperature 0", {"temperature": 0}),
    ("temperature 2", {"temperature": 2}),
    ("top_p 0", {"top_p": 0}),
    ("top_p 1", {"top_p": 1}),
    ("max_num_results 1", {"tools": [{"type": "file_search", "file_search": {"max_num_results": 1}}]}),
    ("max_num_results 50", {"tools": [{"type": "file_search", "file_search": {"max_num_results": 50}}]}),
    ("code_interpreter 20 files", {"tool_resources": {"code_interpreter": {"file_ids": ["file-x"] * 20}}}),
    ("file_search 1 store", {"tool_resources": {"file_search": {"vector_store_ids": ["vs_x"]}}}),
]


@pytest.mark.parametrize(("case", "fields"), AT_LIMIT, ids=[c for c, _ in AT_LIMIT])
async def test_values_at_the_limit_are_accepted(
    sdk: openai.AsyncOpenAI, case: str, fields: dict[str, Any]
) -> None:
    fields = await with_real_ids(sdk, fields)
    created = await sdk.beta.assistants.create(model="gpt-4o", **fields)
    updated = await sdk.beta.assistants.update(created.id, **fields)
    assert updated == created


OVER_LIMIT: list[tuple[str, dict[str, Any], str, str]] = [
    ("metadata 17 pairs", {"metadata": _metadata(17)}, "metadata", "invalid_value"),
    ("metadata key 65", {"metadata": {"k" * 65: "v"}}, "metadata", "invalid_value"),
    ("metadata value 513", {"metadata": {"k": "v" * 513}}, "metadata", "invalid_value"),
    ("metadata value not a string", {"metadata": {"k": 1}}, "metadata.k", "invalid_type"),
    ("metadata not an object", {"metadata": ["k"]}, "metadata", "invalid_type"),
    ("name 257", {"name": "n" * 257}, "name", "string_above_max_length"),
    ("description 513", {"description": "d" * 513}, "description", "string_above_max_length"),
    ("instructions 256001", {"instructions": "i" * 256_001}, "instructions", "string_above_max_length"),
    ("tools 129", {"tools": [{"type": "code_interpreter"}] * 129}, "tools", "array_above_max_length"),
    (
        "function name 65",
        {"tools": [{"type": "function", "function": {"name": "f" * 65}}]},
        "tools[0].function.name",
        "invalid_value",
    ),
    (
        "function name with a space",
        {"tools": [{"type": "function", "function": {"name": "get weather"}}]},
        "tools[0].function.name",
        "invalid_value",
    ),
    (
        "function name empty",
        {"tools": [{"type": "function", "function": {"name": ""}}]},
        "tools[0].function.name",
        "invalid_value",
    ),
    (
        "function without a name",
        {"tools": [{"type": "function", "function": {"description": "x"}}]},
        "tools[0].function.name",
        "missing_required_parameter",
    ),
    (
        "function parameters not an object",
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": "x"}}]},
        "tools[0].function.parameters",
        "invalid_type",
    ),
    ("unknown tool type", {"tools": [{"type": "browser"}]}, "tools[0].type", "invalid_value"),
    ("tool without a type", {"tools": [{}]}, "tools[0].type", "missing_required_parameter"),
    (
        "max_num_results 51",
        {"tools": [{"type": "file_search", "file_search": {"max_num_results": 51}}]},
        "tools[0].file_search.max_num_results",
        "integer_above_max_value",
    ),
    (
        "score_threshold 1.5",
        {"tools": [{"type": "file_search", "file_search": {"ranking_options": {"score_threshold": 1.5}}}]},
        "tools[0].file_search.ranking_options.score_threshold",
        "decimal_above_max_value",
    ),
    ("temperature -0.1", {"temperature": -0.1}, "temperature", "decimal_below_min_value"),
    ("temperature 2.01", {"temperature": 2.01}, "temperature", "decimal_above_max_value"),
    ("temperature a string", {"temperature": "hot"}, "temperature", "invalid_type"),
    ("top_p -1", {"top_p": -1}, "top_p", "integer_below_min_value"),
    ("top_p 1.01", {"top_p": 1.01}, "top_p", "decimal_above_max_value"),
    ("response_format unknown string", {"response_format": "json"}, "response_format", "invalid_value"),
    (
        "response_format unknown type",
        {"response_format": {"type": "xml"}},
        "response_format.type",
        "invalid_value",
    ),
    (
        "json_schema without a name",
        {"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
        "response_format.json_schema.name",
        "missing_required_parameter",
    ),
    (
        "code_interpreter 21 files",
        {"tool_resources": {"code_interpreter": {"file_ids": ["file-x"] * 21}}},
        "tool_resources.code_interpreter.file_ids",
        "array_above_max_length",
    ),
    (
        "file_search 2 stores",
        {"tool_resources": {"file_search": {"vector_store_ids": ["vs_a", "vs_b"]}}},
        "tool_resources.file_search.vector_store_ids",
        "array_above_max_length",
    ),
    ("reasoning_effort unknown", {"reasoning_effort": "extreme"}, "reasoning_effort", "invalid_value"),
    ("name a number", {"name": 5}, "name", "invalid_type"),
    ("tools an object", {"tools": {"type": "code_interpreter"}}, "tools", "invalid_type"),
    ("unknown field", {"colour": "blue"}, "colour", "unknown_parameter"),
    (
        "unknown nested field",
        {"tools": [{"type": "code_interpreter", "x": 1}]},
        "tools[0].x",
        "unknown_parameter",
    ),
]


@pytest.mark.parametrize(("case", "fields", "param", "code"), OVER_LIMIT, ids=[c for c, *_ in OVER_LIMIT])
async def test_invalid_values_are_400_naming_the_parameter(
    sdk: openai.AsyncOpenAI, case: str, fields: dict[str, Any], param: str, code: str
) -> None:
    with pytest.raises(openai.BadRequestError) as creating:
        await sdk.beta.assistants.create(model="gpt-4o", extra_body=fields)
    assert_api_error(creating.value, 400, param=param, code=code)
    existing = await sdk.beta.assistants.create(model="gpt-4o", name="kept")
    with pytest.raises(openai.BadRequestError) as updating:
        await sdk.beta.assistants.update(existing.id, extra_body=fields)
    assert_api_error(updating.value, 400, param=param, code=code)
    assert await sdk.beta.assistants.retrieve(existing.id) == existing


async def test_model_is_required_on_create(raw: httpx.AsyncClient) -> None:
    response = await raw.post("assistants", json={"name": "no model"})
    assert response.status_code == 400
    assert response.json()["error"] == {
        "message": "Missing required parameter: 'model'.",
        "type": "invalid_request_error",
        "param": "model",
        "code": "missing_required_parameter",
    }


async def test_vector_stores_helper_is_refused_on_update(sdk: openai.AsyncOpenAI) -> None:
    created = await sdk.beta.assistants.create(model="gpt-4o")
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.beta.assistants.update(
            created.id,
            extra_body={"tool_resources": {"file_search": {"vector_stores": [{"file_ids": []}]}}},
        )
    assert_api_error(caught.value, 400, param="tool_resources.file_search.vector_stores")


async def test_every_response_is_checked_against_the_spec(
    sdk: openai.AsyncOpenAI, spec_checker: SpecChecker
) -> None:
    # The harness itself: the SDK's responses reach the spec check, and a broken body would be caught.
    created = await sdk.beta.assistants.with_raw_response.create(model="gpt-4o")
    await sdk.beta.assistants.list(limit=1)
    with pytest.raises(openai.NotFoundError):
        await sdk.beta.assistants.retrieve("asst_missing")
    assert spec_checker.checked == 3
    assert not spec_checker.failures
    broken = {**created.http_response.json(), "tools": "none"}
    assert schema_errors("AssistantObject", broken) == ["tools: 'none' is not of type 'array'"]
