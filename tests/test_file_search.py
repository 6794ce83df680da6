"""The file_search tool end to end: the model's call becomes a file_search step with results, the
model receives the chunks with source markers, and the markers it cites become annotations."""

from __future__ import annotations

import openai
from openai.types.beta.threads import Annotation, Text, TextDelta

from tests.test_vector_stores import FACT, FILLER
from tests.upstream import Reply, ScriptedUpstream, ToolCalls

CONTENT_INCLUDE = "step_details.tool_calls[*].file_search.results[*].content"
MARKER = "【0:0†island.md】"


async def store_with_fact(client: openai.AsyncOpenAI) -> tuple[str, str]:
    fact = await client.files.create(file=("island.md", FACT.encode()), purpose="assistants")
    others = [
        (await client.files.create(file=(f"f{n}.txt", t.encode()), purpose="assistants")).id
        for n, t in enumerate(FILLER)
    ]
    store = await client.vector_stores.create(name="kb")
    batch = await client.vector_stores.file_batches.create_and_poll(
        vector_store_id=store.id, file_ids=[fact.id, *others]
    )
    assert batch.file_counts.completed == 5
    return store.id, fact.id


async def test_file_search_run_cites_the_right_file(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    store_id, fact_id = await store_with_fact(client)
    answer = f"The keeper feeds seventeen cats{MARKER}."
    upstream.script(model, ToolCalls([("file_search", '{"query": "lighthouse keeper cats"}')]), Reply(answer))
    assistant = await client.beta.assistants.create(
        model=model,
        tools=[{"type": "file_search"}],
        tool_resources={"file_search": {"vector_store_ids": [store_id]}},
    )
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "How many cats?"}])
    run = await client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed"

    offered = upstream.requests(model)[0]["tools"]
    assert [t["function"]["name"] for t in offered] == ["file_search"]
    to_model = upstream.requests(model)[1]["messages"][-1]
    assert to_model["role"] == "tool" and MARKER in to_model["content"] and FACT in to_model["content"]

    steps = await client.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc")
    assert [(s.type, s.status) for s in steps.data] == [
        ("tool_calls", "completed"),
        ("message_creation", "completed"),
    ]
    call = steps.data[0].step_details.tool_calls[0]  # type: ignore[union-attr]
    assert call.type == "file_search"
    results = call.file_search.results  # type: ignore[union-attr]
    assert results is not None and results[0].file_id == fact_id and results[0].file_name == "island.md"
    assert results[0].content is None  # only with include[]
    with_content = await client.beta.threads.runs.steps.retrieve(
        steps.data[0].id, thread_id=thread.id, run_id=run.id, include=[CONTENT_INCLUDE]
    )
    content = with_content.step_details.tool_calls[0].file_search.results[0].content  # type: ignore[union-attr]
    assert content is not None and FACT in content[0].text

    message = (await client.beta.threads.messages.list(thread.id, limit=1)).data[0]
    text = message.content[0].text  # type: ignore[union-attr]
    assert text.value == answer
    [annotation] = text.annotations
    assert annotation.type == "file_citation"
    assert annotation.file_citation.file_id == fact_id  # type: ignore[union-attr]
    assert annotation.text == MARKER
    assert text.value[annotation.start_index : annotation.end_index] == MARKER


async def test_file_search_streams_and_unknown_markers_are_not_cited(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    store_id, _ = await store_with_fact(client)
    upstream.script(
        model,
        ToolCalls([("file_search", '{"query": "cats"}')]),
        Reply(f"Seventeen{MARKER}, not this one【9:9†nowhere.txt】."),
    )
    assistant = await client.beta.assistants.create(
        model=model,
        tools=[{"type": "file_search"}],
        tool_resources={"file_search": {"vector_store_ids": [store_id]}},
    )
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "cats?"}])
    events = []
    async with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as stream:
        async for event in stream:
            events.append(event)
        messages = await stream.get_final_messages()
        steps = await stream.get_final_run_steps()
    deltas = [e for e in events if e.event == "thread.run.step.delta"]
    assert deltas[0].data.delta.step_details.tool_calls[0].type == "file_search"  # type: ignore[union-attr]
    assert steps[0].step_details.tool_calls[0].type == "file_search"  # type: ignore[union-attr]
    annotations = messages[0].content[0].text.annotations  # type: ignore[union-attr]
    assert [a.text for a in annotations] == [MARKER]


class _TextDeltas(openai.AsyncAssistantEventHandler):
    """Each text delta's annotations with the streamed text's length then, and the text snapshot
    before the completed message replaces it."""

    def __init__(self) -> None:
        super().__init__()
        self.annotations: list[tuple[int, int, Annotation]] = []  # (length before, length after, ...)
        self.snapshot: Text | None = None

    async def on_text_delta(self, delta: TextDelta, snapshot: Text) -> None:
        after = len(snapshot.value)
        for annotation in delta.annotations or []:
            self.annotations.append((after - len(delta.value or ""), after, annotation))
        self.snapshot = snapshot.model_copy(deep=True)


async def test_file_search_citations_stream_in_the_deltas(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    """As the hosted API did: each citation arrives in the delta whose text closes its marker,
    numbered by its place in the message, so the SDK's snapshot is the completed message."""
    store_id, fact_id = await store_with_fact(client)
    second = "【0:1†second】"
    answer = f"Seventeen{MARKER} cats, fed daily{second}, not【9:9†nowhere.txt】 this{MARKER}."
    # Markers split across pieces, and pieces closing several at once.
    chunks = [
        "Seven",
        "teen【0",
        ":0†isl",
        "and.md】 cats, fed daily【0:1",
        f"†second】, not【9:9†nowhere.txt】 this{MARKER}.",
    ]
    assert "".join(chunks) == answer
    upstream.script(model, ToolCalls([("file_search", '{"query": "cats"}')]), Reply(answer, chunks=chunks))
    assistant = await client.beta.assistants.create(
        model=model,
        tools=[{"type": "file_search"}],
        tool_resources={"file_search": {"vector_store_ids": [store_id]}},
    )
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "cats?"}])
    handler = _TextDeltas()
    async with client.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=assistant.id, event_handler=handler
    ) as stream:
        await stream.until_done()
        [final] = await stream.get_final_messages()
        run = await stream.get_final_run()
    steps = await client.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc")
    results = steps.data[0].step_details.tool_calls[0].file_search.results  # type: ignore[union-attr]
    assert results is not None and len(results) >= 2
    stored = await client.beta.threads.messages.retrieve(final.id, thread_id=thread.id)
    text = stored.content[0].text  # type: ignore[union-attr]
    assert text.value == answer
    expected = [a.model_dump(exclude_none=True) for a in text.annotations]
    assert [(a["text"], a["file_citation"]["file_id"]) for a in expected] == [
        (MARKER, fact_id),
        (second, results[1].file_id),
        (MARKER, fact_id),
    ]

    streamed = handler.annotations
    assert [a.index for _, _, a in streamed] == [0, 1, 2]
    for before, after, annotation in streamed:
        # Sent once, in the delta whose text closed the marker.
        assert annotation.end_index is not None and before < annotation.end_index <= after
    assert [a.model_dump(exclude={"index"}, exclude_none=True) for _, _, a in streamed] == expected
    # The SDK's accumulated snapshot is the completed message, without duplicates.
    assert handler.snapshot is not None and handler.snapshot.value == answer
    assert [
        a.model_dump(exclude={"index"}, exclude_none=True) for a in handler.snapshot.annotations
    ] == expected
    assert [a.model_dump(exclude_none=True) for a in final.content[0].text.annotations] == expected  # type: ignore[union-attr]


async def test_file_search_without_stores_tells_the_model(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, ToolCalls([("file_search", '{"query": "anything"}')]), Reply("Nothing found."))
    assistant = await client.beta.assistants.create(model=model, tools=[{"type": "file_search"}])
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "search"}])
    run = await client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed"
    assert upstream.requests(model)[1]["messages"][-1]["content"] == "No files are available to search."


async def test_attachments_create_the_threads_vector_store(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    fact = await client.files.create(file=("island.md", FACT.encode()), purpose="assistants")
    upstream.script(model, ToolCalls([("file_search", '{"query": "lighthouse cats"}')]), Reply(f"17{MARKER}"))
    assistant = await client.beta.assistants.create(model=model, tools=[{"type": "file_search"}])
    thread = await client.beta.threads.create()
    await client.beta.threads.messages.create(
        thread.id,
        role="user",
        content="How many cats?",
        attachments=[{"file_id": fact.id, "tools": [{"type": "file_search"}]}],
    )
    thread = await client.beta.threads.retrieve(thread.id)
    assert thread.tool_resources is not None and thread.tool_resources.file_search is not None
    [store_id] = thread.tool_resources.file_search.vector_store_ids or []
    store = await client.vector_stores.retrieve(store_id)
    assert store.expires_after is not None and store.expires_after.days == 7

    # The run waits for the attachment to be ingested, so the search sees it.
    run = await client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed"
    annotations = (
        (await client.beta.threads.messages.list(thread.id, limit=1)).data[0].content[0].text.annotations
    )  # type: ignore[union-attr]
    assert [a.file_citation.file_id for a in annotations] == [fact.id]  # type: ignore[union-attr]


async def test_vector_stores_helper_on_assistant_create(client: openai.AsyncOpenAI) -> None:
    fact = await client.files.create(file=("island.md", FACT.encode()), purpose="assistants")
    assistant = await client.beta.assistants.create(
        model="gpt-4o",
        tools=[{"type": "file_search"}],
        tool_resources={"file_search": {"vector_stores": [{"file_ids": [fact.id], "metadata": {"m": "1"}}]}},
    )
    assert assistant.tool_resources is not None and assistant.tool_resources.file_search is not None
    [store_id] = assistant.tool_resources.file_search.vector_store_ids or []
    vs_file = await client.vector_stores.files.poll(fact.id, vector_store_id=store_id)
    assert vs_file.status == "completed"
    assert (await client.vector_stores.retrieve(store_id)).metadata == {"m": "1"}
