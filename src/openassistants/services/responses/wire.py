"""The Responses API's objects drawn from the engine's rows: ``response``, its output items, message
and call items, usage. Pure functions over rows; loading them is read.py's job."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any

import orjson

from openassistants.services.prompt import CONTEXT_LENGTH_EXCEEDED
from openassistants.services.responses.ids import call_item_id, conversation_id, response_id
from openassistants.statuses import MessageStatus, RunStatus, StepStatus
from openassistants.tools.file_search import MARKER


class ResponseStatus(StrEnum):
    """A ``response``'s status: the Responses API's own words for its run's (``_STATUS``)."""

    queued = "queued"
    in_progress = "in_progress"
    completed = "completed"
    incomplete = "incomplete"
    failed = "failed"
    cancelled = "cancelled"


class ItemStatus(StrEnum):
    """An output or conversation item's status (a message, a call): the Responses API's words."""

    in_progress = "in_progress"
    completed = "completed"
    incomplete = "incomplete"


#: Run status → response status; a run the executor has not picked up yet is ``queued`` only when
#: the client asked for a background response (otherwise the hosted API says ``in_progress``).
_STATUS = {
    RunStatus.queued: ResponseStatus.in_progress,
    RunStatus.in_progress: ResponseStatus.in_progress,
    RunStatus.cancelling: ResponseStatus.in_progress,
    RunStatus.requires_action: ResponseStatus.completed,
    RunStatus.completed: ResponseStatus.completed,
    RunStatus.incomplete: ResponseStatus.incomplete,
    RunStatus.failed: ResponseStatus.failed,
    RunStatus.cancelled: ResponseStatus.cancelled,
    RunStatus.expired: ResponseStatus.failed,
}
#: A stored message's status → its item's (any other: completed).
_MESSAGE_STATUS = {
    MessageStatus.in_progress: ItemStatus.in_progress,
    MessageStatus.incomplete: ItemStatus.incomplete,
}
#: The codes a response's ``error`` may carry (ResponseError.code); the engine's others are server errors.
_ERROR_CODES = frozenset({"server_error", "rate_limit_exceeded", "invalid_prompt", CONTEXT_LENGTH_EXCEEDED})
_OMITTED_WHEN_NULL = frozenset({"user"})
_INCOMPLETE = {"max_completion_tokens": "max_output_tokens", "max_prompt_tokens": "max_output_tokens"}


def response_status(run: Mapping[Any, Any], background: bool) -> ResponseStatus:
    if background and run["status"] == RunStatus.queued:
        return ResponseStatus.queued
    return _STATUS.get(run["status"], ResponseStatus.in_progress)


def usage_to_wire(usage: Mapping[str, int] | None) -> dict[str, Any] | None:
    if usage is None:
        return None
    return {
        "input_tokens": usage["prompt_tokens"],
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": usage["completion_tokens"],
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage["total_tokens"],
    }


def response_to_wire(
    run: Mapping[Any, Any], stored: Mapping[Any, Any], output: list[dict[str, Any]]
) -> dict[str, Any]:
    """The ``response`` object: every field the hosted API returns, the request's echoed."""
    request = stored["request"]
    status = response_status(run, stored["background"])
    error = None
    if status == ResponseStatus.failed:
        last = run["last_error"] or {"code": "server_error", "message": "The response expired."}
        code = last["code"] if last["code"] in _ERROR_CODES else "server_error"
        error = {"code": code, "message": last["message"]}
    incomplete = None
    if status == ResponseStatus.incomplete:
        reason = (run["incomplete_details"] or {}).get("reason", "")
        incomplete = {"reason": _INCOMPLETE.get(reason, reason)}
    wire = {
        "id": response_id(run["id"]),
        "object": "response",
        "created_at": run["created_at"],
        "status": status,
        "background": stored["background"],
        "completed_at": run["completed_at"] if status == ResponseStatus.completed else None,
        "conversation": {"id": conversation_id(run["thread_id"])} if stored["conversation"] else None,
        "error": error,
        "incomplete_details": incomplete,
        "instructions": request.get("instructions"),
        "max_output_tokens": run["max_completion_tokens"],
        "max_tool_calls": request.get("max_tool_calls"),
        "metadata": run["metadata"],
        "model": run["model"],
        "output": output,
        "parallel_tool_calls": run["parallel_tool_calls"],
        "previous_response_id": stored["previous_response_id"],
        "prompt_cache_key": request.get("prompt_cache_key"),
        "reasoning": {"effort": None, "summary": None},
        "safety_identifier": request.get("safety_identifier"),
        "service_tier": "default",
        "store": stored["store"],
        "temperature": run["temperature"] if run["temperature"] is not None else 1.0,
        "text": request["text"],
        "tool_choice": request["tool_choice"],
        "tools": request["tools"],
        "top_logprobs": request.get("top_logprobs") or 0,
        "top_p": run["top_p"] if run["top_p"] is not None else 1.0,
        "truncation": request["truncation"],
        "usage": usage_to_wire(run["usage"]),
        "user": request.get("user"),
        "presence_penalty": request.get("presence_penalty") or 0.0,
        "frequency_penalty": request.get("frequency_penalty") or 0.0,
    }
    # ``user`` may not be null in OpenAI's schema; the hosted API leaves it out when not given.
    return {k: v for k, v in wire.items() if v is not None or k not in _OMITTED_WHEN_NULL}


def output_text_part(text: str, annotations: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": annotations or [], "logprobs": []}


def without_markers(text: str) -> str:
    """A message's text as the Responses API shows it: without the model's ``【n:m†file】`` citation
    markers (its ``file_citation`` annotations say where they were)."""
    return MARKER.sub("", text)


def shown_offset(text: str, offset: int) -> int:
    """Where ``offset`` in ``text`` falls in ``without_markers(text)``."""
    removed = 0
    for match in MARKER.finditer(text, 0, offset):
        removed += min(match.end(), offset) - match.start()
    return offset - removed


#: The start of a citation marker ``text`` ends with, not closed yet (a stream holds it back).
_OPEN_MARKER = re.compile(r"【(?:\d+(?::(?:\d+(?:†[^】]*)?)?)?)?$")


def settled_text(text: str) -> str:
    """``without_markers(text)`` short of an unclosed marker at its end, which more text may close."""
    pending = _OPEN_MARKER.search(text)
    return without_markers(text if pending is None else text[: pending.start()])


def cited_files(annotations: Iterable[Mapping[Any, Any]]) -> set[str]:
    """The ids of the files Assistants text ``annotations`` name."""
    return {a[key]["file_id"] for a in annotations for key in ("file_citation", "file_path") if key in a}


def annotation_to_wire(
    annotation: Mapping[Any, Any], filenames: Mapping[str, str], text: str
) -> dict[str, Any] | None:
    """An Assistants text annotation (its offsets into the message's ``text``) as the Responses
    API's, whose text has no markers: a citation's ``index`` is where its marker was."""
    if annotation["type"] == "file_citation":
        file_id = annotation["file_citation"]["file_id"]
        return {
            "type": "file_citation",
            "file_id": file_id,
            "filename": filenames.get(file_id, ""),
            "index": shown_offset(text, annotation["start_index"]),
        }
    if annotation["type"] == "file_path":
        file_id = annotation["file_path"]["file_id"]
        return {
            "type": "container_file_citation",
            "container_id": "",
            "file_id": file_id,
            "filename": filenames.get(file_id, ""),
            "start_index": shown_offset(text, annotation["start_index"]),
            "end_index": shown_offset(text, annotation["end_index"]),
        }
    return None


def message_item(message: Mapping[Any, Any], filenames: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A stored message as a ``message`` item: the user's parts are input, the assistant's output."""
    role = message["role"]
    content: list[dict[str, Any]] = []
    for part in message["content"] or []:
        kind = part.get("type")
        if kind == "text":
            value = part["text"]["value"]
            if role == "assistant":
                wires = [annotation_to_wire(a, filenames or {}, value) for a in part["text"]["annotations"]]
                content.append(output_text_part(without_markers(value), [a for a in wires if a is not None]))
            else:
                content.append({"type": "input_text", "text": value})
        elif role == "assistant":
            continue  # an image the code made: the code_interpreter_call's outputs show it
        elif kind == "image_url":
            image = part["image_url"]
            content.append(
                {"type": "input_image", "image_url": image["url"], "detail": image.get("detail") or "auto"}
            )
        elif kind == "image_file":
            image = part["image_file"]
            content.append(
                {"type": "input_image", "file_id": image["file_id"], "detail": image.get("detail") or "auto"}
            )
    status = _MESSAGE_STATUS.get(message["status"], ItemStatus.completed)
    return {"id": message["id"], "type": "message", "role": role, "status": status, "content": content}


def call_items(
    step: Mapping[Any, Any], *, include_results: bool = False, replayed: bool = False
) -> list[dict[str, Any]]:
    """The items of a tool_calls step: its calls (those a client replayed in its input only with
    ``replayed``: they are history, not the response's output)."""
    items: list[dict[str, Any]] = []
    status = ItemStatus.completed if step["status"] == StepStatus.completed else ItemStatus.in_progress
    for index, call in enumerate(step["step_details"].get("tool_calls") or []):
        kind = call.get("type")
        item_id = call_item_id(step["id"], index, kind)
        if kind == "function":
            function = call["function"]
            if replayed or "_input" not in call:
                items.append(
                    function_call_item(item_id, call["id"], function["name"], function["arguments"], status)
                )
        elif kind == "file_search":
            items.append(file_search_item(item_id, call, include_results=include_results))
        elif kind == "code_interpreter":
            items.append(code_interpreter_item(item_id, call, status))
    return items


def call_output_item(step: Mapping[Any, Any], index: int) -> dict[str, Any] | None:
    """The ``function_call_output`` item of a step's ``index``-th call, once it has its output."""
    call = step["step_details"]["tool_calls"][index]
    output = call.get("function", {}).get("output") if call.get("type") == "function" else None
    if output is None:
        return None
    return function_call_output_item(call_item_id(step["id"], index, output=True), call["id"], output)


def function_call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "function_call",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def function_call_output_item(item_id: str, call_id: str, output: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "function_call_output",
        "call_id": call_id,
        "output": output,
        "status": ItemStatus.completed,
    }


def file_search_item(item_id: str, call: Mapping[Any, Any], *, include_results: bool) -> dict[str, Any]:
    search = call.get("file_search") or {}
    results = None
    if include_results:
        results = [
            {
                "file_id": r["file_id"],
                "filename": r.get("file_name", ""),
                "score": r.get("score", 0.0),
                "text": "".join(c.get("text", "") for c in r.get("content") or []),
                "attributes": r.get("attributes") or {},
            }
            for r in search.get("results") or []
        ]
    query = _argument(call.get("_arguments"), "query")
    return {
        "id": item_id,
        "type": "file_search_call",
        "status": ItemStatus.completed if "results" in search else ItemStatus.in_progress,
        "queries": [query] if query else [],
        "results": results,
    }


def code_interpreter_item(item_id: str, call: Mapping[Any, Any], status: str) -> dict[str, Any]:
    code = call.get("code_interpreter") or {}
    outputs = []
    for output in code.get("outputs") or []:
        if output.get("type") == "logs":
            outputs.append({"type": "logs", "logs": output["logs"]})
        elif output.get("type") == "image":
            outputs.append({"type": "image", "url": f"/v1/files/{output['image']['file_id']}/content"})
    return {
        "id": item_id,
        "type": "code_interpreter_call",
        "status": status,
        "code": code.get("input", ""),
        "container_id": "",
        "outputs": outputs,
    }


def _argument(arguments: object, key: str) -> str:
    try:
        value = orjson.loads(arguments) if isinstance(arguments, str) else None
    except orjson.JSONDecodeError:
        return ""
    return str(value.get(key, "")) if isinstance(value, dict) else ""


def output_items(
    steps: Iterable[Mapping[Any, Any]],
    messages: Mapping[str, Mapping[Any, Any]],
    *,
    filenames: Mapping[str, str] | None = None,
    include_results: bool = False,
) -> list[dict[str, Any]]:
    """A run's output items in the order its steps made them."""
    items: list[dict[str, Any]] = []
    for step in steps:
        details = step["step_details"]
        if step["type"] == "message_creation":
            message = messages.get(details["message_creation"]["message_id"])
            if message is not None:
                items.append(message_item(message, filenames))
        else:
            items.extend(call_items(step, include_results=include_results))
    return items
