"""A create-response request in the engine's terms: its tools, tool choice and text format as a
run stores them, and the fields the response echoes as the client gave them."""

from __future__ import annotations

from typing import Any

from openassistants.errors import InvalidRequest
from openassistants.schemas.responses import (
    CodeInterpreterToolParam,
    FileSearchToolParam,
    FunctionToolParam,
    ResponseCreate,
    TextFormatJsonObject,
    TextFormatJsonSchema,
    ToolChoiceFunction,
    ToolParam,
)

TEXT_FORMAT_DEFAULT: dict[str, Any] = {"type": "text"}


def run_tools(tools: list[ToolParam]) -> list[dict[str, Any]]:
    """The run's tools (the Assistants shape the engine reads)."""
    stored: list[dict[str, Any]] = []
    names: set[str] = set()
    for index, tool in enumerate(tools):
        if isinstance(tool, FunctionToolParam):
            _check_parameters(tool, index)
            if tool.name in names:
                raise InvalidRequest(
                    f"Duplicate function name '{tool.name}' in tools.", param=f"tools[{index}].name"
                )
            names.add(tool.name)
            function: dict[str, Any] = {
                "name": tool.name,
                "parameters": tool.parameters or {"type": "object", "properties": {}},
            }
            if tool.description is not None:
                function["description"] = tool.description
            function["strict"] = bool(tool.strict)
            stored.append({"type": "function", "function": function})
        elif isinstance(tool, FileSearchToolParam):
            options: dict[str, Any] = {}
            if tool.max_num_results is not None:
                options["max_num_results"] = tool.max_num_results
            if tool.ranking_options is not None:
                # ranker ("none": embeddings alone), hybrid_search weights and the threshold, as given.
                options["ranking_options"] = tool.ranking_options.model_dump(exclude_none=True)
            if tool.filters is not None:
                options["filters"] = tool.filters.model_dump()
            stored.append({"type": "file_search", "file_search": options})
        else:
            stored.append({"type": "code_interpreter"})
    return stored


def _check_parameters(tool: FunctionToolParam, index: int) -> None:
    """As the hosted API: a function's parameters are a JSON Schema of type object."""
    kind = (tool.parameters or {}).get("type", "object")
    if kind != "object":
        raise InvalidRequest(
            f"Invalid schema for function '{tool.name}': schema must be a JSON Schema of 'type: \"object\"', "
            f"got 'type: \"{kind}\"'.",
            param=f"tools[{index}].parameters",
            code="invalid_function_parameters",
        )


def echoed_tools(tools: list[ToolParam]) -> list[dict[str, Any]]:
    """The tools as the response shows them (strict functions unless told otherwise)."""
    echoed: list[dict[str, Any]] = []
    for tool in tools:
        wire = tool.model_dump(exclude_none=True)
        if isinstance(tool, FunctionToolParam):
            wire = {
                "type": "function",
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.parameters,
                "strict": True if tool.strict is None else tool.strict,
            }
        elif isinstance(tool, FileSearchToolParam):
            wire.setdefault("filters", None)
            wire.setdefault("max_num_results", None)
            wire.setdefault("ranking_options", {"ranker": "auto", "score_threshold": 0.0})
        elif isinstance(tool, CodeInterpreterToolParam) and not isinstance(tool.container, str):
            wire["container"] = tool.container.model_dump(exclude_none=True)
        echoed.append(wire)
    return echoed


def run_tool_choice(body: ResponseCreate, tools: list[dict[str, Any]]) -> str | dict[str, Any] | None:
    choice = body.tool_choice
    if choice == "required" and not tools:
        raise InvalidRequest(
            "Tool choice 'required' must be specified with 'tools' parameter.", param="tool_choice"
        )
    if choice is None or isinstance(choice, str):
        return choice
    if isinstance(choice, ToolChoiceFunction):
        if not any(t["type"] == "function" and t["function"]["name"] == choice.name for t in tools):
            raise InvalidRequest(
                f"Tool choice '{choice.name}' not found in 'tools' parameter.", param="tool_choice"
            )
        return {"type": "function", "function": {"name": choice.name}}
    if not any(t["type"] == choice.type for t in tools):
        raise InvalidRequest(
            f"Tool choice '{choice.type}' not found in 'tools' parameter.", param="tool_choice"
        )
    return {"type": choice.type}


def echoed_tool_choice(body: ResponseCreate) -> str | dict[str, Any]:
    choice = body.tool_choice
    if choice is None:
        return "auto"
    return choice if isinstance(choice, str) else choice.model_dump()


def run_response_format(body: ResponseCreate) -> dict[str, Any] | None:
    fmt = body.text.format if body.text is not None else None
    if isinstance(fmt, TextFormatJsonObject):
        return {"type": "json_object"}
    if isinstance(fmt, TextFormatJsonSchema):
        schema = {"name": fmt.name, "schema": fmt.schema_, "strict": bool(fmt.strict)}
        if fmt.description is not None:
            schema["description"] = fmt.description
        return {"type": "json_schema", "json_schema": schema}
    return None


def echoed_text(body: ResponseCreate) -> dict[str, Any]:
    fmt = body.text.format if body.text is not None else None
    wire: dict[str, Any] = TEXT_FORMAT_DEFAULT
    if fmt is not None:
        wire = fmt.model_dump(by_alias=True, exclude_none=True)
        if isinstance(fmt, TextFormatJsonSchema):
            wire["strict"] = bool(fmt.strict)
    verbosity = body.text.verbosity if body.text is not None else None
    return {"format": wire, "verbosity": verbosity or "medium"}


def echoed_request(body: ResponseCreate, instructions: str | None) -> dict[str, Any]:
    """What the response repeats of the request and no run column holds."""
    return {
        "instructions": instructions,
        "text": echoed_text(body),
        "tools": echoed_tools(body.tools or []),
        "tool_choice": echoed_tool_choice(body),
        "truncation": body.truncation or "disabled",
        "max_tool_calls": body.max_tool_calls,
        "user": body.user,
        "safety_identifier": body.safety_identifier,
        "prompt_cache_key": body.prompt_cache_key,
        "top_logprobs": body.top_logprobs,
        "presence_penalty": body.presence_penalty,
        "frequency_penalty": body.frequency_penalty,
        "include": body.include or [],
    }
