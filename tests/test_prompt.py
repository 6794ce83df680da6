"""Building a run's Chat Completions request (pure; no server): truncation, budgets, tools, formats."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openassistants.services.prompt import (
    Prompt,
    PromptInput,
    PromptTooLarge,
    build_prompt,
    leading_tool_results,
    message_to_chat,
    response_format_for_model,
    tool_choice_for_model,
    tools_for_model,
)
from openassistants.tokens import count_chat_message, count_chat_messages, count_tools
from openassistants.tools.code_interpreter import CodeInterpreter
from openassistants.tools.file_search import FileSearch

FILE_SEARCH_FUNCTION = {
    "name": "file_search",
    "description": FileSearch.description,
    "parameters": FileSearch.parameters,
}
CODE_INTERPRETER_FUNCTION = {
    "name": "code_interpreter",
    "description": CodeInterpreter.description,
    "parameters": CodeInterpreter.parameters,
}


def wire_message(role: str, *parts: dict[str, Any], attachments: list[Any] | None = None) -> dict[str, Any]:
    """A ``thread.message`` as services/messages.py puts it on the wire."""
    return {
        "id": "msg_x",
        "object": "thread.message",
        "created_at": 0,
        "thread_id": "thread_x",
        "status": "completed",
        "incomplete_details": None,
        "completed_at": 0,
        "incomplete_at": None,
        "role": role,
        "content": list(parts),
        "assistant_id": None,
        "run_id": None,
        "attachments": attachments or [],
        "metadata": {},
    }


def text(value: str, annotations: list[Any] | None = None) -> dict[str, Any]:
    return {"type": "text", "text": {"value": value, "annotations": annotations or []}}


def say(role: str, value: str) -> dict[str, Any]:
    return wire_message(role, text(value))


def thread_of(count: int, words: int = 5) -> list[dict[str, Any]]:
    """``count`` alternating user/assistant messages, oldest first, each numbered."""
    roles = ("user", "assistant")
    return [say(roles[i % 2], f"message {i}: " + "word " * words) for i in range(count)]


def prompt_input(**overrides: Any) -> PromptInput:
    fields: dict[str, Any] = {
        "instructions": "",
        "additional_instructions": None,
        "thread_messages": [],
        "run_turns": [],
        "tools": [],
        "truncation_strategy": None,
        "max_prompt_tokens": None,
        "context_window": 128_000,
        "completion_reserve": 4096,
    }
    return PromptInput(**(fields | overrides))


def thread_part(prompt: Prompt, inp: PromptInput) -> list[dict[str, Any]]:
    """The thread messages the prompt kept (between the system message and the run's turns)."""
    start = 1 if prompt.messages and prompt.messages[0]["role"] == "system" else 0
    return prompt.messages[start : len(prompt.messages) - len(inp.run_turns)]


def assert_accounted(prompt: Prompt) -> None:
    assert prompt.prompt_tokens == count_chat_messages(prompt.messages) + count_tools(prompt.tools or [])


# --- system message and order ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("instructions", "additional", "system"),
    [
        ("Be brief.", None, "Be brief."),
        ("Be brief.", "", "Be brief."),
        ("Be brief.", "Answer in French.", "Be brief.\n\nAnswer in French."),
        ("", "Answer in French.", "Answer in French."),
        ("", None, None),
        ("", "", None),
    ],
)
def test_system_message(instructions: str, additional: str | None, system: str | None) -> None:
    prompt = build_prompt(
        prompt_input(
            instructions=instructions, additional_instructions=additional, thread_messages=[say("user", "hi")]
        )
    )
    expected = [{"role": "system", "content": system}] if system is not None else []
    assert prompt.messages == [*expected, {"role": "user", "content": "hi"}]
    assert_accounted(prompt)


def test_messages_are_system_then_thread_then_run_turns() -> None:
    run_turns = [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "42"},
    ]
    inp = prompt_input(
        instructions="Be brief.",
        thread_messages=[say("user", "first"), say("assistant", "second"), say("user", "third")],
        run_turns=run_turns,
    )
    prompt = build_prompt(inp)
    assert prompt.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "second"},
        {"role": "user", "content": "third"},
        *run_turns,
    ]
    assert prompt.dropped_messages == 0
    assert prompt.tools is None
    assert_accounted(prompt)


def test_prompt_tokens_include_tools() -> None:
    tools: list[dict[str, Any]] = [
        {"type": "code_interpreter"},
        {"type": "function", "function": {"name": "f"}},
    ]
    prompt = build_prompt(prompt_input(thread_messages=[say("user", "hi")], tools=tools))
    assert prompt.tools == tools_for_model(tools)
    assert prompt.prompt_tokens > count_chat_messages(prompt.messages)
    assert_accounted(prompt)


# --- truncation --------------------------------------------------------------------------------


def budget_for(messages: list[dict[str, Any]]) -> int:
    """The exact number of tokens these thread messages need as a whole prompt (no system, no tools)."""
    return count_chat_messages([message_to_chat(m) for m in messages])


def test_auto_truncation_drops_the_oldest_messages() -> None:
    thread = thread_of(10)
    inp = prompt_input(thread_messages=thread, context_window=budget_for(thread[-4:]), completion_reserve=0)
    prompt = build_prompt(inp)
    assert thread_part(prompt, inp) == [message_to_chat(m) for m in thread[-4:]]
    assert prompt.dropped_messages == 6
    assert prompt.prompt_tokens == budget_for(thread[-4:])
    assert_accounted(prompt)


def test_auto_truncation_one_token_short_drops_one_more() -> None:
    thread = thread_of(10)
    inp = prompt_input(
        thread_messages=thread, context_window=budget_for(thread[-4:]) - 1, completion_reserve=0
    )
    assert build_prompt(inp).dropped_messages == 7


def test_disabled_truncation_keeps_every_message_or_says_what_the_whole_thread_needs() -> None:
    thread = thread_of(10)
    disabled = {"type": "disabled"}
    whole = prompt_input(
        thread_messages=thread,
        context_window=budget_for(thread),
        completion_reserve=0,
        truncation_strategy=disabled,
    )
    assert build_prompt(whole).dropped_messages == 0
    with pytest.raises(PromptTooLarge) as refused:
        build_prompt(dataclasses.replace(whole, context_window=budget_for(thread) - 1))
    assert refused.value.untruncated and refused.value.needed == budget_for(thread)
    assert refused.value.budget == budget_for(thread) - 1


def test_completion_reserve_is_kept_free() -> None:
    thread = thread_of(10)
    window = budget_for(thread)
    assert (
        build_prompt(
            prompt_input(thread_messages=thread, context_window=window, completion_reserve=0)
        ).dropped_messages
        == 0
    )
    reserved = build_prompt(
        prompt_input(thread_messages=thread, context_window=window, completion_reserve=100)
    )
    assert reserved.dropped_messages > 0
    assert reserved.prompt_tokens <= window - 100


def test_truncation_never_drops_system_or_run_turns() -> None:
    thread = thread_of(10)
    run_turns = [{"role": "tool", "tool_call_id": "call_1", "content": "result " * 200}]
    inp = prompt_input(
        instructions="Be brief.",
        thread_messages=thread,
        run_turns=run_turns,
        context_window=count_chat_messages(
            [{"role": "system", "content": "Be brief."}, message_to_chat(thread[-1]), *run_turns]
        ),
        completion_reserve=0,
    )
    prompt = build_prompt(inp)
    assert prompt.messages == [
        {"role": "system", "content": "Be brief."},
        message_to_chat(thread[-1]),
        *run_turns,
    ]
    assert prompt.dropped_messages == 9
    assert_accounted(prompt)


def test_last_messages_keeps_only_the_newest_n() -> None:
    thread = thread_of(10)
    inp = prompt_input(
        thread_messages=thread, truncation_strategy={"type": "last_messages", "last_messages": 3}
    )
    prompt = build_prompt(inp)
    assert thread_part(prompt, inp) == [message_to_chat(m) for m in thread[-3:]]
    assert prompt.dropped_messages == 7
    assert_accounted(prompt)


def test_last_messages_larger_than_the_thread_keeps_everything() -> None:
    thread = thread_of(3)
    strategy = {"type": "last_messages", "last_messages": 50}
    prompt = build_prompt(prompt_input(thread_messages=thread, truncation_strategy=strategy))
    assert prompt.dropped_messages == 0


@pytest.mark.parametrize("strategy", [None, {"type": "auto"}, {"type": "auto", "last_messages": None}])
def test_auto_keeps_everything_that_fits(strategy: dict[str, Any] | None) -> None:
    prompt = build_prompt(prompt_input(thread_messages=thread_of(10), truncation_strategy=strategy))
    assert prompt.dropped_messages == 0
    assert len(prompt.messages) == 10


def test_last_messages_then_budget() -> None:
    thread = thread_of(10)
    inp = prompt_input(
        thread_messages=thread,
        truncation_strategy={"type": "last_messages", "last_messages": 5},
        context_window=budget_for(thread[-2:]),
        completion_reserve=0,
    )
    prompt = build_prompt(inp)
    assert thread_part(prompt, inp) == [message_to_chat(m) for m in thread[-2:]]
    assert prompt.dropped_messages == 8


def test_max_prompt_tokens_lowers_the_budget() -> None:
    thread = thread_of(10)
    inp = prompt_input(thread_messages=thread, max_prompt_tokens=budget_for(thread[-3:]))
    prompt = build_prompt(inp)
    assert prompt.dropped_messages == 7
    assert prompt.prompt_tokens <= budget_for(thread[-3:])


def test_context_window_wins_over_a_larger_max_prompt_tokens() -> None:
    thread = thread_of(10)
    inp = prompt_input(
        thread_messages=thread,
        max_prompt_tokens=100_000,
        context_window=budget_for(thread[-3:]) + 10,
        completion_reserve=10,
    )
    assert build_prompt(inp).dropped_messages == 7


def test_empty_thread() -> None:
    prompt = build_prompt(prompt_input(instructions="Be brief."))
    assert prompt.messages == [{"role": "system", "content": "Be brief."}]
    assert prompt.dropped_messages == 0
    assert_accounted(prompt)


# --- too large ---------------------------------------------------------------------------------


def test_newest_message_too_large() -> None:
    thread = [say("user", "short"), say("user", "long " * 500)]
    inp = prompt_input(
        instructions="Be brief.", thread_messages=thread, max_prompt_tokens=300, completion_reserve=0
    )
    with pytest.raises(PromptTooLarge) as caught:
        build_prompt(inp)
    minimal = [{"role": "system", "content": "Be brief."}, message_to_chat(thread[-1])]
    assert caught.value.needed == count_chat_messages(minimal)
    assert caught.value.budget == 300
    assert (
        str(caught.value) == f"the prompt needs at least {caught.value.needed} tokens but its budget is 300"
    )


def test_run_turns_too_large_without_thread_messages() -> None:
    run_turns = [{"role": "tool", "tool_call_id": "call_1", "content": "x " * 1000}]
    with pytest.raises(PromptTooLarge) as caught:
        build_prompt(prompt_input(run_turns=run_turns, max_prompt_tokens=256))
    assert caught.value.needed == count_chat_messages(run_turns)


def test_completion_reserve_larger_than_the_window() -> None:
    with pytest.raises(PromptTooLarge) as caught:
        build_prompt(
            prompt_input(thread_messages=[say("user", "hi")], context_window=1000, completion_reserve=2000)
        )
    assert caught.value.budget == -1000


# --- orphans -----------------------------------------------------------------------------------


def test_leading_tool_results_are_orphans() -> None:
    call = {"role": "assistant", "content": None, "tool_calls": [{"id": "c1"}, {"id": "c2"}]}
    result_1 = {"role": "tool", "tool_call_id": "c1", "content": "1"}
    result_2 = {"role": "tool", "tool_call_id": "c2", "content": "2"}
    user = {"role": "user", "content": "next"}
    assert leading_tool_results([call, result_1, result_2, user]) == 0
    assert leading_tool_results([result_2, user]) == 1
    assert leading_tool_results([result_1, result_2, user]) == 2
    assert leading_tool_results([result_1, result_2]) == 2
    assert leading_tool_results([]) == 0


# --- large threads -----------------------------------------------------------------------------


def test_ten_thousand_messages_all_fit() -> None:
    thread = thread_of(10_000, words=1)
    inp = prompt_input(thread_messages=thread, context_window=1_000_000, completion_reserve=0)
    prompt = build_prompt(inp)
    assert prompt.dropped_messages == 0
    assert thread_part(prompt, inp) == [message_to_chat(m) for m in thread]
    assert_accounted(prompt)


def test_ten_thousand_messages_truncated() -> None:
    thread = thread_of(10_000, words=5)
    inp = prompt_input(thread_messages=thread)
    prompt = build_prompt(inp)
    kept = len(thread) - prompt.dropped_messages
    assert 0 < kept < len(thread)
    assert thread_part(prompt, inp) == [message_to_chat(m) for m in thread[-kept:]]
    assert prompt.prompt_tokens <= 128_000 - 4096
    assert budget_for(thread[-kept - 1 :]) > 128_000 - 4096
    assert_accounted(prompt)


@settings(deadline=None)  # the first example may be the one that loads the tokenizer (~1 s)
@given(
    lengths=st.lists(st.integers(min_value=0, max_value=60), max_size=25),
    budget=st.integers(min_value=0, max_value=800),
    instructions=st.sampled_from(["", "Be brief."]),
    via_max_prompt_tokens=st.booleans(),
)
def test_keeps_the_longest_suffix_that_fits(
    lengths: list[int], budget: int, instructions: str, via_max_prompt_tokens: bool
) -> None:
    thread = [say(("user", "assistant")[i % 2], f"{i} " + "lorem ipsum " * n) for i, n in enumerate(lengths)]
    if via_max_prompt_tokens:
        limits = {"max_prompt_tokens": budget, "context_window": budget + 5000, "completion_reserve": 100}
    else:
        limits = {"context_window": budget + 100, "completion_reserve": 100}
    inp = prompt_input(instructions=instructions, thread_messages=thread, **limits)
    head = [{"role": "system", "content": instructions}] if instructions else []

    def needs(kept: int) -> int:
        return count_chat_messages(head + [message_to_chat(m) for m in thread[len(thread) - kept :]])

    try:
        prompt = build_prompt(inp)
    except PromptTooLarge as exc:
        assert exc.budget == budget
        assert exc.needed == needs(min(len(thread), 1)) > budget
        return
    kept = len(thread) - prompt.dropped_messages
    assert prompt.prompt_tokens == needs(kept) <= budget
    assert prompt.messages == head + [message_to_chat(m) for m in thread[len(thread) - kept :]]
    assert kept >= 1 or not thread
    assert kept == len(thread) or needs(kept + 1) > budget


# --- message_to_chat ---------------------------------------------------------------------------


def test_text_parts_join_into_a_string_without_annotations() -> None:
    citation = {
        "type": "file_citation",
        "text": "【4:0†source】",
        "file_citation": {"file_id": "file-1"},
        "start_index": 5,
        "end_index": 17,
    }
    message = wire_message("assistant", text("Hello【4:0†source】", [citation]), text("Second part"))
    assert message_to_chat(message) == {"role": "assistant", "content": "Hello【4:0†source】\n\nSecond part"}


def test_empty_content_is_an_empty_string() -> None:
    assert message_to_chat(wire_message("assistant")) == {"role": "assistant", "content": ""}


def test_image_url_makes_a_list_of_parts() -> None:
    message = wire_message(
        "user",
        text("What is this?"),
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}},
        {"type": "image_file", "image_file": {"file_id": "file-abc", "detail": "auto"}},
    )
    assert message_to_chat(message) == {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}},
            {"type": "text", "text": "[image file file-abc]"},
        ],
    }


def test_image_url_detail_defaults_to_auto() -> None:
    message = wire_message("user", {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}})
    assert message_to_chat(message)["content"] == [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "auto"}}
    ]


def test_image_file_alone_is_a_text_placeholder() -> None:
    message = wire_message(
        "user", {"type": "image_file", "image_file": {"file_id": "file-abc"}}, text("Look")
    )
    assert message_to_chat(message) == {"role": "user", "content": "[image file file-abc]\n\nLook"}


def test_assistant_images_become_text() -> None:
    message = wire_message(
        "assistant",
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "auto"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "auto"}},
    )
    assert message_to_chat(message) == {
        "role": "assistant",
        "content": "[image https://example.com/a.png]\n\n[image]",
    }


def test_refusal_is_sent_as_text() -> None:
    message = wire_message("assistant", {"type": "refusal", "refusal": "I can't help with that."})
    assert message_to_chat(message) == {"role": "assistant", "content": "I can't help with that."}


def test_attachments_are_listed() -> None:
    attachments = [
        {"file_id": "file-1", "tools": [{"type": "code_interpreter"}, {"type": "file_search"}]},
        {"file_id": "file-2", "tools": []},
    ]
    message = wire_message("user", text("Summarise these."), attachments=attachments)
    assert message_to_chat(message) == {
        "role": "user",
        "content": "Summarise these.\n\n[attached files: file-1 (code_interpreter, file_search); file-2]",
    }


def test_attachments_with_an_image_url_are_a_text_part() -> None:
    message = wire_message(
        "user",
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "auto"}},
        attachments=[{"file_id": "file-1", "tools": [{"type": "file_search"}]}],
    )
    assert message_to_chat(message)["content"][-1] == {
        "type": "text",
        "text": "[attached files: file-1 (file_search)]",
    }


# --- tools, tool_choice, response_format -------------------------------------------------------


def test_function_tools_pass_through() -> None:
    parameters = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    tools = [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "Weather now.",
                "parameters": parameters,
                "strict": True,
            },
        },
        {
            "type": "function",
            "function": {"name": "ping", "description": None, "parameters": None, "strict": False},
        },
        {"type": "function", "function": {"name": "noop"}},
    ]
    assert tools_for_model(tools) == [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "Weather now.",
                "parameters": parameters,
                "strict": True,
            },
        },
        {"type": "function", "function": {"name": "ping"}},
        {"type": "function", "function": {"name": "noop"}},
    ]


def test_builtin_tools_are_fixed_functions() -> None:
    tools: list[dict[str, Any]] = [
        {"type": "file_search", "file_search": {"max_num_results": 5}},
        {"type": "code_interpreter"},
    ]
    file_search, code_interpreter = tools_for_model(tools)
    assert file_search == {"type": "function", "function": FILE_SEARCH_FUNCTION}
    assert code_interpreter == {"type": "function", "function": CODE_INTERPRETER_FUNCTION}
    assert file_search["function"]["name"] == "file_search"
    assert file_search["function"]["parameters"]["properties"].keys() == {"query"}
    assert file_search["function"]["parameters"]["required"] == ["query"]
    assert code_interpreter["function"]["name"] == "code_interpreter"
    assert code_interpreter["function"]["parameters"]["properties"].keys() == {"code"}
    assert code_interpreter["function"]["parameters"]["required"] == ["code"]
    assert "/mnt/data" in code_interpreter["function"]["description"]


def test_builtin_tool_definitions_are_copies() -> None:
    tools_for_model([{"type": "code_interpreter"}])[0]["function"]["parameters"]["required"].append("x")
    assert CODE_INTERPRETER_FUNCTION["parameters"]["required"] == ["code"]


def test_unknown_tool_type() -> None:
    with pytest.raises(ValueError, match="retrieval"):
        tools_for_model([{"type": "retrieval"}])


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (None, None),
        ("none", "none"),
        ("auto", "auto"),
        ("required", "required"),
        (
            {"type": "function", "function": {"name": "weather"}},
            {"type": "function", "function": {"name": "weather"}},
        ),
        ({"type": "file_search"}, {"type": "function", "function": {"name": "file_search"}}),
        ({"type": "code_interpreter"}, {"type": "function", "function": {"name": "code_interpreter"}}),
        ({"type": "function"}, "required"),
        ({"type": "function", "function": None}, "required"),
    ],
)
def test_tool_choice_for_model(choice: Any, expected: Any) -> None:
    assert tool_choice_for_model(choice) == expected


def test_unknown_tool_choice_type() -> None:
    with pytest.raises(ValueError, match="retrieval"):
        tool_choice_for_model({"type": "retrieval"})


@pytest.mark.parametrize(
    ("response_format", "expected"),
    [
        (None, None),
        ("auto", None),
        ({"type": "text"}, None),
        ({"type": "json_object"}, {"type": "json_object"}),
        (
            {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True},
            },
            {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True},
            },
        ),
        (
            {
                "type": "json_schema",
                "json_schema": {
                    "name": "answer",
                    "description": "The answer.",
                    "schema": None,
                    "strict": None,
                },
            },
            {"type": "json_schema", "json_schema": {"name": "answer", "description": "The answer."}},
        ),
    ],
)
def test_response_format_for_model(response_format: Any, expected: Any) -> None:
    assert response_format_for_model(response_format) == expected


def test_unknown_response_format_type() -> None:
    with pytest.raises(ValueError, match="xml"):
        response_format_for_model({"type": "xml"})


def test_prompt_objects_are_frozen() -> None:
    prompt = build_prompt(prompt_input(thread_messages=[say("user", "hi")]))
    with pytest.raises(dataclasses.FrozenInstanceError):
        prompt.prompt_tokens = 0  # type: ignore[misc]
    assert count_chat_message(prompt.messages[0]) == prompt.prompt_tokens - 3


@pytest.mark.parametrize(
    "options",
    [{}, {"max_prompt_tokens": 500}, {"truncation_strategy": {"type": "last_messages", "last_messages": 7}}],
    ids=["all", "max_prompt_tokens", "last_messages"],
)
def test_token_counts_given_by_the_caller_give_the_same_prompt(options: dict[str, Any]) -> None:
    # services/run_context.py counts each message as it reads the thread; build_prompt reuses those.
    thread = thread_of(40, words=20)
    counts = [count_chat_message(message_to_chat(m)) for m in thread]
    counted = build_prompt(prompt_input(thread_messages=thread, **options))
    given = build_prompt(prompt_input(thread_messages=thread, thread_message_tokens=counts, **options))
    assert given == counted
