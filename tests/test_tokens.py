"""Token counting (pure; no server): o200k_base counts, chat accounting, tools, truncation."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import bpe_openai  # type: ignore[import-untyped]
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openassistants.tokens import (
    IMAGE_PART_TOKENS,
    count_chat_message,
    count_chat_messages,
    count_text,
    count_tools,
    truncate_to_tokens,
)

SAMPLES = [
    "",
    "hello world",
    "Hello, world!",
    "tiktoken is great!",
    "The quick brown fox jumps over the lazy dog.",
    "日本語のテキスト",
    "héllo 你好 🎉 ẞ ﷽ \U0001d518\U0001d52b",
    "def f(x):\n    return x ** 2\r\n\n\n",
    " " * 100,
    "<|endoftext|> is just text here",
]


@pytest.fixture(scope="module")
def reference() -> bpe_openai.Encoding:
    """bpe_openai's own tiktoken-compatible encoding, to check our counts against."""
    return bpe_openai.get_encoding("o200k_base")


@pytest.mark.parametrize("text", SAMPLES)
def test_count_text_matches_the_reference_encoding(reference: bpe_openai.Encoding, text: str) -> None:
    assert count_text(text) == len(reference.encode(text, disallowed_special=()))


def test_count_text_known_values() -> None:
    assert count_text("hello world") == 2
    assert count_text("tiktoken is great!") == 6
    assert count_text("The quick brown fox jumps over the lazy dog.") == 10


def test_count_text_long_text() -> None:
    # 1.8M characters: beyond what bpe_openai's wrapper accepts (1M characters, 200k tokens).
    assert count_text("hello" + " hello" * 299_999) == 300_000


def test_count_text_lone_surrogate_counts_as_replacement_character() -> None:
    assert count_text("a\ud800b") == count_text("a\ufffdb")


def test_count_text_from_many_threads() -> None:
    texts = [f"message {i} " * i for i in range(64)]
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(count_text, texts)) == [count_text(t) for t in texts]


def test_count_chat_messages_matches_the_cookbook() -> None:
    # The OpenAI cookbook's example, which it counts as 124 prompt tokens for gpt-4o (as did the API).
    messages = [
        {
            "role": "system",
            "content": "You are a helpful, pattern-following assistant that translates corporate jargon "
            "into plain English.",
        },
        {
            "role": "system",
            "name": "example_user",
            "content": "New synergies will help drive top-line growth.",
        },
        {
            "role": "system",
            "name": "example_assistant",
            "content": "Things working well together will increase revenue.",
        },
        {
            "role": "system",
            "name": "example_user",
            "content": "Let's circle back when we have more bandwidth to touch base on opportunities for "
            "increased leverage.",
        },
        {
            "role": "system",
            "name": "example_assistant",
            "content": "Let's talk later when we're less busy about how to do better.",
        },
        {
            "role": "user",
            "content": "This late pivot means we don't have time to boil the ocean for the client "
            "deliverable.",
        },
    ]
    assert count_chat_messages(messages) == 124


def test_count_chat_messages_overheads() -> None:
    assert count_chat_messages([]) == 3
    # 3 per message + "user" (1) + "Hello!" (2), and 3 for the primed reply.
    assert count_chat_messages([{"role": "user", "content": "Hello!"}]) == 9
    named = {"role": "user", "content": "Hello!", "name": "bob"}
    assert count_chat_message(named) == 6 + count_text("bob") + 1


def test_count_chat_messages_content_parts() -> None:
    parts = {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "high"}},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        ],
    }
    expected = 3 + count_text("user") + count_text("What is in this picture?") + 2 * IMAGE_PART_TOKENS
    assert count_chat_message(parts) == expected


def test_count_chat_messages_tool_calls_and_results() -> None:
    arguments = json.dumps({"city": "Paris", "unit": "celsius"})
    call = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": arguments}}
        ],
    }
    assert count_chat_message(call) == 3 + count_text("assistant") + count_text("get_weather") + count_text(
        arguments
    )
    result = {"role": "tool", "tool_call_id": "call_1", "content": "18C, sunny"}
    expected = 3 + count_text("tool") + count_text("call_1") + count_text("18C, sunny")
    assert count_chat_message(result) == expected
    assert count_chat_messages([call, result]) == 3 + count_chat_message(call) + count_chat_message(result)


def test_count_tools() -> None:
    assert count_tools([]) == 0
    function = {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}
    tools = [{"type": "function", "function": function}]
    assert count_tools(tools) == count_text(json.dumps([function], separators=(",", ":"), sort_keys=True))
    reordered = [{"function": dict(reversed(function.items())), "type": "function"}]
    assert count_tools(reordered) == count_tools(tools)


def test_truncate_to_tokens_keeps_short_text_whole() -> None:
    assert truncate_to_tokens("hello world", 2) == "hello world"
    assert truncate_to_tokens("hello world", 100) == "hello world"
    assert truncate_to_tokens("", 5) == ""


def test_truncate_to_tokens_cuts_at_a_token_boundary() -> None:
    text = "one two three four five six seven eight nine ten"
    assert truncate_to_tokens(text, 3) == "one two three"
    assert truncate_to_tokens(text, 0) == ""
    assert truncate_to_tokens(text, -1) == ""
    long = "word " * 10_000
    assert count_text(truncate_to_tokens(long, 1000)) == 1000


def test_truncate_to_tokens_never_splits_a_character() -> None:
    # Each 🎉 is two tokens that are not valid UTF-8 apart; a cut between them steps back.
    assert truncate_to_tokens("🎉🎉🎉", 3) == "🎉"
    assert truncate_to_tokens("🎉🎉🎉", 4) == "🎉🎉"
    assert truncate_to_tokens("🎉", 1) == ""


def test_truncate_to_tokens_replaces_lone_surrogates() -> None:
    assert truncate_to_tokens("a\ud800b", 10) == "a\ufffdb"


@settings(deadline=None)  # the first example may be the one that loads the tokenizer (~1 s)
@given(st.text(max_size=300), st.integers(min_value=0, max_value=120))
def test_truncate_to_tokens_is_a_prefix_within_the_limit(text: str, max_tokens: int) -> None:
    cut = truncate_to_tokens(text, max_tokens)
    assert text.startswith(cut)
    assert count_text(cut) <= max_tokens
    if count_text(text) <= max_tokens:
        assert cut == text
