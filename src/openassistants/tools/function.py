"""The ``function`` tool: a function of the client's. The model is offered it as defined; its calls
stream into the step as they come, and the client runs them: the run stops in ``requires_action``
(a response completes) until their outputs are submitted, which fill in each call's ``output``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from openassistants.tools.base import ToolBase, ToolCall, ToolContext

#: The keys of a function definition Chat Completions takes.
_MODEL_KEYS = ("name", "description", "parameters", "strict")


class FunctionTool(ToolBase):
    type: ClassVar[str] = "function"
    runs_on_server: ClassVar[bool] = False

    def for_model(self, definition: Mapping[str, Any]) -> dict[str, Any]:
        function = {
            key: value
            for key, value in definition["function"].items()
            if key in _MODEL_KEYS and value is not None
        }
        if not function.get("strict"):
            function.pop("strict", None)
        return {"type": "function", "function": function}

    def call_name(self, definition: Mapping[str, Any]) -> str:
        return str(definition["function"]["name"])

    def announce(self, index: int, call: ToolCall) -> dict[str, Any]:
        function = {"arguments": call.arguments, "name": call.name, "output": None}
        return {"index": index, "type": "function", "function": function, "id": call.id}

    def stream(self, index: int, call: ToolCall, fragment: str, name: str | None) -> dict[str, Any] | None:
        function: dict[str, Any] = {"arguments": fragment}
        if name:
            call.name += name
            function["name"] = name
        return {"index": index, "type": "function", "function": function}

    def recorded(self, call: ToolCall) -> dict[str, Any]:
        function = {"name": call.name, "arguments": call.arguments, "output": None}
        return {"id": call.id, "type": "function", "function": function}

    async def execute(self, context: ToolContext, index: int, call: ToolCall) -> None:
        raise RuntimeError("function calls are the client's to run")
