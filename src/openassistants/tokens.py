"""Token counts for prompts, with OpenAI's ``o200k_base`` encoding (the GPT-4o family), fully offline.

Counts are exact for o200k models and an estimate for every other model (Llama, Qwen… tokenize
differently), which is why prompt budgets keep ``completion_reserve_tokens`` free.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Protocol

ENCODING_NAME = "o200k_base"

# Chat accounting from the OpenAI cookbook ("How to count tokens with tiktoken", gpt-4o models).
TOKENS_PER_MESSAGE = 3  #: <|start|>{role}<|message|> … <|end|> around every message
TOKENS_PER_NAME = 1  #: a message's optional "name" field
REPLY_PRIMING_TOKENS = 3  #: every reply is primed with <|start|>assistant<|message|>
# What OpenAI charges for a low-detail image. A high-detail image costs more (85 + 170 per 512px tile),
# but we never fetch the image to learn its size, so every image part counts as low detail.
IMAGE_PART_TOKENS = 85


class _Tokenizer(Protocol):
    def encode(self, text: str) -> list[int]: ...
    def decode(self, tokens: list[int]) -> str: ...
    def count(self, text: str) -> int: ...


_tokenizer: _Tokenizer | None = None
_tokenizer_lock = threading.Lock()


def _get_tokenizer() -> _Tokenizer:
    # Importing bpe_openai and building the tokenizer take about a second and 130 MB, so they happen on
    # first use (not at server start), once, even under threads.
    global _tokenizer
    if _tokenizer is None:
        with _tokenizer_lock:
            if _tokenizer is None:
                # The Rust tokenizer itself, not bpe_openai's tiktoken-style wrapper: the wrapper refuses
                # texts over 1,000,000 characters or 200,000 tokens, raises on "<|endoftext|>" in user
                # text, and has no count().
                from bpe_openai import _bindings  # type: ignore[import-untyped]

                _tokenizer = _bindings.tokenizer_for_encoding(ENCODING_NAME)
    return _tokenizer


def _encodable(text: str) -> str:
    """``text`` with lone surrogates (valid in JSON escapes, not in UTF-8) replaced by U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def count_text(text: str) -> int:
    """Number of o200k_base tokens in ``text``; special-token strings count as ordinary text."""
    return _get_tokenizer().count(_encodable(text))


def truncate_to_tokens(text: str, max_tokens: int) -> str:
    """The longest prefix of ``text`` (of its first tokens) that is at most ``max_tokens`` tokens.

    Never cuts a character in half. Lone surrogates in ``text`` come back as U+FFFD.
    """
    if max_tokens <= 0:
        return ""
    text = _encodable(text)
    tokenizer = _get_tokenizer()
    tokens = tokenizer.encode(text)
    if len(tokens) <= max_tokens:
        return text
    # A cut may fall inside a multi-byte character (undecodable), and a cut text may re-encode into more
    # tokens than the pieces it was cut from; step back until neither is true.
    for end in range(max_tokens, 0, -1):
        try:
            prefix = tokenizer.decode(tokens[:end])
        except ValueError:
            continue
        if tokenizer.count(prefix) <= max_tokens:
            return prefix
    return ""


def encode(text: str) -> list[int]:
    """The o200k_base tokens of ``text``; special-token strings are ordinary text, lone surrogates U+FFFD."""
    return _get_tokenizer().encode(_encodable(text))


# A character is at most 4 bytes and a token at least 1, so the part of a character that a cut leaves
# at either end of a token list lies in at most 3 tokens.
_MAX_PARTIAL_CHAR_TOKENS = 3


def decode(tokens: list[int]) -> str:
    """The text of ``tokens``; never raises on a window cut from a longer list.

    A window's ends may fall inside a multi-byte character. As ``truncate_to_tokens`` steps back from
    such a cut, the fewest tokens holding such a partial character are left out at either end (with
    whatever else those tokens hold); a list that decodes as a whole is decoded as it is.
    """
    tokenizer = _get_tokenizer()
    n = len(tokens)
    for dropped in range(2 * _MAX_PARTIAL_CHAR_TOKENS + 1):
        for head in range(
            max(0, dropped - _MAX_PARTIAL_CHAR_TOKENS), min(dropped, _MAX_PARTIAL_CHAR_TOKENS) + 1
        ):
            try:
                return tokenizer.decode(tokens[head : n - (dropped - head)])
            except ValueError:
                continue
    return ""


def count_chat_message(message: dict[str, Any]) -> int:
    """One chat message's tokens, without the reply priming that ``count_chat_messages`` adds once."""
    total = TOKENS_PER_MESSAGE
    for key, value in message.items():
        if isinstance(value, str):
            total += count_text(value)
            if key == "name":
                total += TOKENS_PER_NAME
        elif key == "content" and isinstance(value, list):
            total += sum(_count_content_part(part) for part in value)
        elif key == "tool_calls" and isinstance(value, list):
            for call in value:
                function = call.get("function") or {}
                total += count_text(function.get("name", "")) + count_text(function.get("arguments", ""))
    return total


def _count_content_part(part: dict[str, Any]) -> int:
    if part.get("type") == "image_url":
        return IMAGE_PART_TOKENS
    text = part.get("text")
    return count_text(text) if isinstance(text, str) else 0


def count_chat_messages(messages: list[dict[str, Any]]) -> int:
    """Prompt tokens of a Chat Completions ``messages`` list, by the OpenAI cookbook's accounting.

    Each message costs 3, plus the tokens of every string field (role, content, name +1, tool_call_id),
    of each text part, 85 per image part (see ``IMAGE_PART_TOKENS``), and of each tool call's function
    name and arguments; the list costs 3 more for the primed reply.
    """
    return REPLY_PRIMING_TOKENS + sum(count_chat_message(m) for m in messages)


def count_tools(tools: list[dict[str, Any]]) -> int:
    """A deterministic estimate of what tool definitions add: the tokens of their functions' JSON.

    Providers render tools into the prompt each in their own way; this is near OpenAI's figure, not exact.
    """
    if not tools:
        return 0
    functions = [tool.get("function", tool) for tool in tools]
    return count_text(json.dumps(functions, separators=(",", ":"), sort_keys=True, ensure_ascii=False))
