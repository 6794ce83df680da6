"""Built-in tools through the Responses API, run by the engine's own: file_search over the given
vector stores (results with include, file_citation annotations), code_interpreter; and counting a
response's input tokens."""

from __future__ import annotations

import openai
import pytest

from tests.test_file_search import MARKER, store_with_fact
from tests.test_vector_stores import FACT
from tests.upstream import Reply, ScriptedUpstream, ToolCalls


async def test_file_search_tool_searches_the_given_stores_and_cites(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    store_id, fact_id = await store_with_fact(client)
    shown = "The keeper feeds seventeen cats"
    answer = f"{shown}{MARKER}."
    upstream.script(model, ToolCalls([("file_search", '{"query": "lighthouse keeper cats"}')]), Reply(answer))

    response = await client.responses.create(
        model=model,
        input="How many cats?",
        tools=[{"type": "file_search", "vector_store_ids": [store_id], "max_num_results": 3}],
        include=["file_search_call.results"],
    )

    assert response.status == "completed"
    call, message = response.output
    assert call.type == "file_search_call" and call.status == "completed"
    assert call.queries == ["lighthouse keeper cats"]
    assert call.results is not None and call.results[0].file_id == fact_id
    assert call.results[0].filename == "island.md" and FACT in (call.results[0].text or "")
    assert message.type == "message"
    [part] = message.content
    # As hosted: the text has no markers; the citation's index is where its marker was.
    assert part.type == "output_text" and part.text == f"{shown}." == response.output_text
    [citation] = part.annotations
    assert citation.type == "file_citation" and citation.file_id == fact_id
    assert citation.filename == "island.md" and citation.index == len(shown)
    assert response.tools[0].type == "file_search"
    without = await client.responses.retrieve(response.id)
    assert without.output[0].results is None  # type: ignore[union-attr]
    assert without.output[1] == message


async def test_citations_in_a_conversation_items_have_no_markers(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    store_id, fact_id = await store_with_fact(client)
    upstream.script(
        model,
        ToolCalls([("file_search", '{"query": "cats"}')]),
        Reply(f"Seventeen{MARKER} cats{MARKER}, not 【9:9†nowhere.txt】 nine."),
    )
    conversation = await client.conversations.create()
    await client.responses.create(
        model=model,
        input="cats?",
        conversation=conversation.id,
        tools=[{"type": "file_search", "vector_store_ids": [store_id]}],
    )

    items = await client.conversations.items.list(conversation.id, order="asc")
    message = items.data[-1]
    assert message.type == "message" and message.role == "assistant"
    [part] = message.content
    assert part.type == "output_text" and part.text == "Seventeen cats, not  nine."
    assert [(a.type, a.file_id, a.filename, a.index) for a in part.annotations] == [  # type: ignore[union-attr]
        ("file_citation", fact_id, "island.md", len("Seventeen")),
        ("file_citation", fact_id, "island.md", len("Seventeen cats")),
    ]


async def test_file_search_with_an_unknown_store_is_a_404(client: openai.AsyncOpenAI, model: str) -> None:
    with pytest.raises(openai.NotFoundError):
        await client.responses.create(
            model=model, input="Hi", tools=[{"type": "file_search", "vector_store_ids": ["vs_missing"]}]
        )


async def test_code_interpreter_tool_runs_code(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, ToolCalls([("code_interpreter", '{"code": "print(6 * 7)"}')]), Reply("It is 42."))

    response = await client.responses.create(
        model=model,
        input="Six times seven?",
        tools=[{"type": "code_interpreter", "container": {"type": "auto"}}],
    )

    call, message = response.output
    assert call.type == "code_interpreter_call" and call.code == "print(6 * 7)"
    assert call.outputs is not None and "42" in call.outputs[0].logs  # type: ignore[union-attr]
    assert message.type == "message" and response.output_text == "It is 42."


async def test_input_tokens_counts_the_prompt(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    short = await client.responses.input_tokens.count(model=model, input="Hi")
    longer = await client.responses.input_tokens.count(
        model=model, input="Hi " * 50, instructions="Be brief and kind to everyone."
    )
    assert short.object == "response.input_tokens" and 0 < short.input_tokens < longer.input_tokens

    upstream.script(model, Reply("Hello."))
    first = await client.responses.create(model=model, input="Hi")
    continued = await client.responses.input_tokens.count(
        model=model, input="Hi", previous_response_id=first.id
    )
    assert continued.input_tokens > short.input_tokens
    with pytest.raises(openai.NotFoundError):
        await client.responses.input_tokens.count(model=model, input="Hi", previous_response_id="resp_nope")


async def test_streamed_file_search_announces_the_call_and_the_citation(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    store_id, fact_id = await store_with_fact(client)
    upstream.script(
        model,
        ToolCalls([("file_search", '{"query": "cats"}')]),
        Reply(f"Seventeen{MARKER}, not this one【9:9†nowhere.txt】."),
    )

    async with client.responses.stream(
        model=model, input="cats?", tools=[{"type": "file_search", "vector_store_ids": [store_id]}]
    ) as stream:
        events = [event async for event in stream]
        final = await stream.get_final_response()

    kinds = [e.type for e in events]
    assert kinds.index("response.file_search_call.completed") < kinds.index("response.output_text.delta")
    [added] = [e for e in events if e.type == "response.output_text.annotation.added"]
    assert added.annotation_index == 0 and added.annotation.file_id == fact_id  # type: ignore[union-attr]
    assert added.annotation.filename == "island.md"  # type: ignore[union-attr]
    assert added.annotation.index == len("Seventeen")  # type: ignore[union-attr]
    # The markers, split across the model's chunks, never reach the deltas.
    shown = "Seventeen, not this one."
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]  # type: ignore[union-attr]
    assert "".join(deltas) == shown and not any("【" in d or "】" in d for d in deltas)
    [done] = [e for e in events if e.type == "response.output_text.done"]
    assert done.text == shown  # type: ignore[union-attr]
    call, message = final.output
    assert call.type == "file_search_call" and message.type == "message"
    [part] = message.content  # type: ignore[union-attr]
    assert part.type == "output_text" and part.text == shown
    assert [(a.file_id, a.filename, a.index) for a in part.annotations] == [  # type: ignore[union-attr]
        (fact_id, "island.md", len("Seventeen"))
    ]
    retrieved = (await client.responses.retrieve(final.id)).output[1]
    assert retrieved.type == "message" and retrieved.content[0].to_dict() == {
        k: v for k, v in part.to_dict().items() if k != "parsed"
    }


async def test_file_search_filters_on_file_attributes(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    red = await client.files.create(file=("red.md", FACT.encode()), purpose="assistants")
    blue = await client.files.create(file=("blue.md", FACT.encode()), purpose="assistants")
    store = await client.vector_stores.create(name="teams")
    for file, team in ((red, "red"), (blue, "blue")):
        await client.vector_stores.files.create_and_poll(
            vector_store_id=store.id, file_id=file.id, attributes={"team": team}
        )
    upstream.script(model, ToolCalls([("file_search", '{"query": "lighthouse keeper cats"}')]), Reply("ok"))

    response = await client.responses.create(
        model=model,
        input="cats?",
        tools=[
            {
                "type": "file_search",
                "vector_store_ids": [store.id],
                "filters": {"type": "eq", "key": "team", "value": "blue"},
            }
        ],
        include=["file_search_call.results"],
    )

    call = response.output[0]
    assert call.type == "file_search_call" and call.results
    assert {r.file_id for r in call.results} == {blue.id}


@pytest.mark.parametrize(
    "ranking",
    [
        {"ranker": "none"},
        {"ranker": "auto", "hybrid_search": {"embedding_weight": 0.2, "text_weight": 1.0}},
        {"ranker": "default-2024-11-15", "hybrid_search": {"embedding_weight": 1.0, "text_weight": 0.0}},
    ],
)
async def test_file_search_ranking_options_reach_the_search(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str, ranking: dict[str, object]
) -> None:
    store_id, fact_id = await store_with_fact(client)
    upstream.script(model, ToolCalls([("file_search", '{"query": "lighthouse keeper cats"}')]), Reply("ok"))
    tool = {"type": "file_search", "vector_store_ids": [store_id], "ranking_options": ranking}
    response = await client.responses.create(
        model=model,
        input="How many cats?",
        tools=[tool],  # type: ignore[list-item]
        include=["file_search_call.results"],
    )
    assert response.status == "completed"
    call = response.output[0]
    assert call.type == "file_search_call" and call.results
    assert call.results[0].file_id == fact_id
    echoed = response.tools[0].ranking_options  # type: ignore[union-attr]
    assert echoed is not None and echoed.ranker == ranking["ranker"]


async def test_file_search_ranking_weights_both_zero_are_a_400(
    client: openai.AsyncOpenAI, model: str
) -> None:
    store_id, _ = await store_with_fact(client)
    weights = {"embedding_weight": 0, "text_weight": 0}
    tool = {
        "type": "file_search",
        "vector_store_ids": [store_id],
        "ranking_options": {"hybrid_search": weights},
    }
    with pytest.raises(openai.BadRequestError) as caught:
        await client.responses.create(model=model, input="Hi", tools=[tool])  # type: ignore[list-item]
    assert "hybrid_search" in str(caught.value.body)
