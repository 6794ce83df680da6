"""A run step's tool calls as the Chat Completions turns that replay them to the model.

Shared by the Assistants prompt (``run_context.run_turns``) and a response's history
(``responses/hooks.py``): built-in calls reach the model as the function calls it made.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def call_name(call: Mapping[Any, Any]) -> str:
    return str(call["function"]["name"]) if call["type"] == "function" else str(call["type"])


def call_arguments(call: Mapping[Any, Any]) -> str:
    return str(call["function"]["arguments"] if call["type"] == "function" else call.get("_arguments", "{}"))


def call_output(call: Mapping[Any, Any]) -> str | None:
    """What the call returned; None for a function call not answered yet."""
    if call["type"] == "function":
        output = call["function"].get("output")
        return None if output is None else str(output)
    return str(call.get("_output", ""))


def tool_calls_turn(calls: Iterable[Mapping[Any, Any]]) -> dict[str, Any]:
    """The assistant turn that made ``calls``."""
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": c["id"],
                "type": "function",
                "function": {"name": call_name(c), "arguments": call_arguments(c)},
            }
            for c in calls
        ],
    }
