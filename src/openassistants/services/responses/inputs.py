"""Reading a request's ``input`` (a string or a list of items) and a conversation's new items:
what becomes thread messages, what answers earlier function calls, what joins the instructions.

Errors name the item (``input[2].content``) with the hosted API's wording."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from openassistants.errors import InvalidRequest
from openassistants.services.messages import text_part
from openassistants.services.responses.compaction import decode_summary

_TEXT_PARTS = frozenset({"input_text", "output_text", "text"})
_ITEM_TYPES = ("message", "function_call", "function_call_output")


@dataclass
class NewMessage:
    role: str
    content: list[dict[str, Any]]


@dataclass
class FunctionCall:
    call_id: str
    name: str
    arguments: str


@dataclass
class FunctionOutput:
    call_id: str
    output: str


@dataclass
class Inputs:
    """The items in order; ``instructions`` are the system and developer messages' text."""

    items: list[NewMessage | FunctionCall | FunctionOutput] = field(default_factory=list)
    instructions: list[str] = field(default_factory=list)

    @property
    def messages(self) -> list[NewMessage]:
        return [i for i in self.items if isinstance(i, NewMessage)]

    @property
    def outputs(self) -> list[FunctionOutput]:
        return [i for i in self.items if isinstance(i, FunctionOutput)]

    @property
    def calls(self) -> list[FunctionCall]:
        return [i for i in self.items if isinstance(i, FunctionCall)]


def read_input(value: str | list[dict[str, Any]] | None, *, param: str = "input") -> Inputs:
    inputs = Inputs()
    if value is None:
        return inputs
    if isinstance(value, str):
        inputs.items.append(NewMessage("user", [text_part(value)]))
        return inputs
    for index, item in enumerate(value):
        where = f"{param}[{index}]"
        kind = item.get("type", "message")
        if kind == "message":
            role, content = read_message(item, where)
            if role in ("system", "developer"):
                inputs.instructions.append(
                    "\n\n".join(p["text"]["value"] for p in content if p["type"] == "text")
                )
            else:
                inputs.items.append(NewMessage(role, content))
        elif kind == "function_call_output":
            output = item.get("output")
            if isinstance(output, list):
                output = "".join(str(p.get("text", "")) for p in output if isinstance(p, dict))
            inputs.items.append(
                FunctionOutput(_string(item, "call_id", where), _text(output, f"{where}.output"))
            )
        elif kind == "function_call":
            inputs.items.append(
                FunctionCall(
                    _string(item, "call_id", where),
                    _string(item, "name", where),
                    _text(item.get("arguments"), f"{where}.arguments"),
                )
            )
        elif kind == "compaction" and param == "input":
            # POST /v1/responses/compact's summary of what came before; a conversation keeps
            # messages, so among its items a compaction is an unknown type.
            inputs.instructions.append(
                decode_summary(item.get("encrypted_content"), f"{where}.encrypted_content")
            )
        elif kind in ("item_reference", "reasoning"):
            continue  # the hosted API resolves these to items it already has; ours are in the thread
        else:
            supported = ", ".join(f"'{t}'" for t in _ITEM_TYPES)
            raise InvalidRequest(
                f"Invalid value: '{kind}'. Supported values are: {supported}.",
                param=f"{where}.type",
                code="invalid_value",
            )
    return inputs


def read_message(item: dict[str, Any], where: str) -> tuple[str, list[dict[str, Any]]]:
    role = item.get("role")
    if role not in ("user", "assistant", "system", "developer"):
        raise InvalidRequest(
            f"Invalid value: '{role}'. Supported values are: 'assistant', 'system', 'developer', and 'user'.",
            param=f"{where}.role",
            code="invalid_value",
        )
    content = item.get("content")
    if isinstance(content, str):
        return role, [text_part(content)]
    if not isinstance(content, list):
        raise InvalidRequest(
            f"Invalid type for '{where}.content': expected one of a string or an array of content parts.",
            param=f"{where}.content",
            code="invalid_type",
        )
    parts: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        at = f"{where}.content[{index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in _TEXT_PARTS:
            parts.append(text_part(_text(part.get("text"), f"{at}.text")))
        elif kind == "refusal":
            parts.append(text_part(_text(part.get("refusal"), f"{at}.refusal")))
        elif kind == "input_image" and role == "user":
            parts.append(_image(part, at))
        else:
            raise InvalidRequest(
                f"Invalid value: '{kind}'. Supported values are: 'input_text' and 'input_image'."
                if role == "user"
                else f"Invalid value: '{kind}'. Supported values are: 'output_text' and 'refusal'.",
                param=f"{at}.type",
                code="invalid_value",
            )
    return role, parts


def _image(part: dict[str, Any], at: str) -> dict[str, Any]:
    detail = part.get("detail") or "auto"
    if isinstance(part.get("image_url"), str):
        return {"type": "image_url", "image_url": {"url": part["image_url"], "detail": detail}}
    if isinstance(part.get("file_id"), str):
        return {"type": "image_file", "image_file": {"file_id": part["file_id"], "detail": detail}}
    raise InvalidRequest(
        f"Missing required parameter: '{at}.image_url'.",
        param=f"{at}.image_url",
        code="missing_required_parameter",
    )


def _string(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidRequest(
            f"Missing required parameter: '{where}.{key}'.",
            param=f"{where}.{key}",
            code="missing_required_parameter",
        )
    return value


def _text(value: object, param: str) -> str:
    if not isinstance(value, str):
        raise InvalidRequest(
            f"Invalid type for '{param}': expected a string, but got {type(value).__name__} instead.",
            param=param,
            code="invalid_type",
        )
    return value
