"""The upstream request for a run: instructions, thread messages truncated to a budget, tools as functions.

Pure functions over wire dicts; loading the thread and calling the model are the executor's job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from openassistants.tokens import REPLY_PRIMING_TOKENS, count_chat_message, count_tools
from openassistants.tools.registry import TOOLS


@dataclass(frozen=True)
class PromptInput:
    instructions: str  #: the run's effective instructions (the assistant's or the run's override), or ""
    additional_instructions: str | None  #: appended after ``instructions``, a blank line between
    thread_messages: list[dict[str, Any]]  #: ``thread.message`` wire dicts, oldest first
    run_turns: list[dict[str, Any]]  #: chat messages produced inside this run; never truncated
    tools: list[dict[str, Any]]  #: assistant tool wire dicts
    #: ``{"type": "auto"|"last_messages", ...}``; None = auto; ``disabled`` (a response's
    #: ``truncation``): the prompt keeps every thread message or is too large.
    truncation_strategy: dict[str, Any] | None
    max_prompt_tokens: int | None
    context_window: int
    completion_reserve: int  #: tokens kept free for the reply
    #: Each thread message's tokens as a chat message, when the caller counted them already (in order).
    thread_message_tokens: list[int] | None = None


@dataclass(frozen=True)
class Prompt:
    messages: list[dict[str, Any]]  #: system (if any), kept thread messages, then the run's turns
    tools: list[dict[str, Any]] | None  #: Chat Completions function tools; None when there are none
    prompt_tokens: int  #: ``count_chat_messages(messages) + count_tools(tools)``
    dropped_messages: int  #: thread messages left out by truncation


#: A run's ``last_error.code`` when its truncation ``disabled`` left the prompt too large.
CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"


class PromptTooLarge(Exception):
    """Even the system message, the newest thread message and the run's turns exceed the budget
    (``untruncated``: the thread's messages, which its truncation ``disabled`` may not drop)."""

    def __init__(self, needed: int, budget: int, *, untruncated: bool = False) -> None:
        super().__init__(f"the prompt needs at least {needed} tokens but its budget is {budget}")
        self.needed = needed
        self.budget = budget
        self.untruncated = untruncated


def build_prompt(inp: PromptInput) -> Prompt:
    """The Chat Completions messages and tools for a run, truncated to fit its token budget.

    ``last_messages`` first keeps only the newest N thread messages; then, for both strategies, the
    oldest thread messages are dropped until the prompt fits. Raises ``PromptTooLarge`` when it cannot.
    """
    budget = prompt_budget(inp.context_window, inp.completion_reserve, inp.max_prompt_tokens)

    system = _system_message(inp.instructions, inp.additional_instructions)
    head = [system] if system else []
    tools = tools_for_model(inp.tools) or None
    fixed = (
        REPLY_PRIMING_TOKENS
        + sum(count_chat_message(m) for m in head + inp.run_turns)
        + count_tools(tools or [])
    )

    candidates = inp.thread_messages
    costs = inp.thread_message_tokens
    strategy = inp.truncation_strategy or {}
    last_n = strategy.get("last_messages")
    if strategy.get("type") == "last_messages" and last_n is not None:
        candidates = candidates[max(len(candidates) - last_n, 0) :]
    if costs is not None:
        costs = costs[len(costs) - len(candidates) :]

    # Newest first, each message converted and counted once, stopping at the first that does not fit:
    # a 10,000-message thread costs only the messages that end up in the prompt (plus one).
    kept: list[dict[str, Any]] = []
    total = fixed
    for position in range(len(candidates) - 1, -1, -1):
        chat = message_to_chat(candidates[position])
        cost = count_chat_message(chat) if costs is None else costs[position]
        if total + cost > budget:
            if strategy.get("type") == "disabled":
                older = costs[:position] if costs is not None else [_cost(m) for m in candidates[:position]]
                needed = total + cost + sum(older)
                raise PromptTooLarge(needed, budget, untruncated=True)
            if not kept:
                raise PromptTooLarge(total + cost, budget)
            break
        kept.append(chat)
        total += cost
    if total > budget:  # no thread message at all, and the rest alone is too large
        raise PromptTooLarge(total, budget, untruncated=strategy.get("type") == "disabled")
    kept.reverse()

    # Thread messages are user/assistant text today, so this drops nothing until they carry tool turns.
    orphans = leading_tool_results(kept)
    total -= sum(count_chat_message(m) for m in kept[:orphans])
    kept = kept[orphans:]
    return Prompt(
        messages=head + kept + inp.run_turns,
        tools=tools,
        prompt_tokens=total,
        dropped_messages=len(inp.thread_messages) - len(kept),
    )


def _cost(message: dict[str, Any]) -> int:
    return count_chat_message(message_to_chat(message))


def prompt_budget(context_window: int, completion_reserve: int, max_prompt_tokens: int | None) -> int:
    """The tokens a prompt may take: the context window less the reply's reserve, at most
    ``max_prompt_tokens``."""
    budget = context_window - completion_reserve
    return budget if max_prompt_tokens is None else min(budget, max_prompt_tokens)


def _system_message(instructions: str, additional: str | None) -> dict[str, Any] | None:
    content = "\n\n".join(part for part in (instructions, additional) if part)
    return {"role": "system", "content": content} if content else None


def leading_tool_results(history: list[dict[str, Any]]) -> int:
    """How many messages open ``history`` with tool results whose tool call was cut off before them.

    Only the start can be orphaned: the kept history is a suffix, so a kept tool call keeps its results.
    """
    count = 0
    while count < len(history) and history[count]["role"] == "tool":
        count += 1
    return count


def message_to_chat(message: dict[str, Any]) -> dict[str, Any]:
    """A ``thread.message`` as a Chat Completions message; annotations are not sent.

    Text is a plain string unless the message has an image URL, which needs the list-of-parts form.
    An entry that carries its ``chat`` form already (a response's earlier tool calls) is that.
    """
    if "chat" in message:
        return dict(message["chat"])
    role = message["role"]
    parts: list[dict[str, Any]] = []
    for part in message["content"]:
        kind = part["type"]
        if kind == "text":
            parts.append(_text(part["text"]["value"]))
        elif kind == "refusal":
            parts.append(_text(part["refusal"]))
        elif kind == "image_url" and role == "user":
            image = part["image_url"]
            parts.append(
                {
                    "type": "image_url",
                    "image_url": {"url": image["url"], "detail": image.get("detail") or "auto"},
                }
            )
        elif kind == "image_url":
            # Chat Completions accepts images from the user only; a data URL would be megabytes of text.
            url = part["image_url"]["url"]
            parts.append(_text("[image]" if url.startswith("data:") else f"[image {url}]"))
        elif kind == "image_file":
            # TODO(#5): send the image itself once the Files API stores uploads.
            parts.append(_text(f"[image file {part['image_file']['file_id']}]"))
    note = _attachments_note(message.get("attachments") or [])
    if note:
        parts.append(_text(note))

    if any(p["type"] == "image_url" for p in parts):
        return {"role": role, "content": parts}
    return {"role": role, "content": "\n\n".join(p["text"] for p in parts)}


def _text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def _attachments_note(attachments: list[dict[str, Any]]) -> str:
    """Tells the model which files came with the message, so it can ask its tools about them."""
    described = []
    for attachment in attachments:
        tools = ", ".join(t["type"] for t in attachment.get("tools") or [])
        described.append(f"{attachment['file_id']} ({tools})" if tools else attachment["file_id"])
    return f"[attached files: {'; '.join(described)}]" if described else ""


def tools_for_model(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Assistant tools as Chat Completions function tools (``tools/``: each tool says how)."""
    functions: list[dict[str, Any]] = []
    for tool in tools:
        kind = tool["type"]
        found = TOOLS.get(kind)
        if found is None:
            raise ValueError(f"unknown tool type {kind!r}")
        functions.append(found.for_model(tool))
    return functions


def tool_choice_for_model(tool_choice: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
    """A run's ``tool_choice`` in Chat Completions terms; a built-in tool is forced by its function name.

    ``{"type": "function"}`` without a name forces *some* tool call, which Chat Completions calls "required".
    """
    if tool_choice is None or isinstance(tool_choice, str):
        return tool_choice
    kind = tool_choice["type"]
    if kind == "function":
        function = tool_choice.get("function")
        if not function:
            return "required"
        return {"type": "function", "function": {"name": function["name"]}}
    found = TOOLS.get(kind)
    if found is None:
        raise ValueError(f"unknown tool_choice type {kind!r}")
    return {"type": "function", "function": {"name": found.call_name(tool_choice)}}


def response_format_for_model(response_format: str | dict[str, Any] | None) -> dict[str, Any] | None:
    """A run's ``response_format`` for Chat Completions; None where the model's default (text) applies."""
    if response_format is None or isinstance(response_format, str):  # "auto" is the only string
        return None
    kind = response_format["type"]
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        schema = response_format["json_schema"]
        return {
            "type": "json_schema",
            "json_schema": {
                key: schema[key]
                for key in ("name", "description", "schema", "strict")
                if schema.get(key) is not None
            },
        }
    raise ValueError(f"unknown response_format type {kind!r}")
