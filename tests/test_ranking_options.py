"""ranking_options through the SDK: ``ranker`` (``none`` ranks by embeddings alone), ``hybrid_search``
weights on vector store search and on an assistant's file_search tool, their validation, and a file
searchable (lexically) before its vectors exist."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import openai
import pytest

from tests.conftest import ServerFactory, sdk_client
from tests.test_file_search import store_with_fact
from tests.test_vector_stores import FACT, FILLER

QUESTION = "How many cats does the lighthouse keeper feed?"


async def test_search_ranker_and_hybrid_weights(client: openai.AsyncOpenAI) -> None:
    store, fact = await store_with_fact(client)
    default = await client.vector_stores.search(store, query=QUESTION)
    assert default.data[0].file_id == fact
    for ranker in ("auto", "default-2024-11-15"):
        same = await client.vector_stores.search(store, query=QUESTION, ranking_options={"ranker": ranker})
        assert same.data[0].file_id == fact
    # Text only: one ranking, so its first hit has the full score and files without the words are absent.
    text_only = await client.vector_stores.search(
        store,
        query=QUESTION,
        ranking_options={"hybrid_search": {"embedding_weight": 0, "text_weight": 1}},  # type: ignore[typeddict-unknown-key]
    )
    assert [r.file_id for r in text_only.data] == [fact] and text_only.data[0].score == 1.0
    # No fusion: embedding similarities (those with vectors already), best first, within 0..1.
    dense = await client.vector_stores.search(store, query=QUESTION, ranking_options={"ranker": "none"})
    assert all(0 <= r.score <= 1 for r in dense.data)
    assert [r.score for r in dense.data] == sorted((r.score for r in dense.data), reverse=True)


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"ranker": "bm25"}, "ranking_options.ranker"),
        (
            {"hybrid_search": {"embedding_weight": -1, "text_weight": 1}},
            "ranking_options.hybrid_search.embedding_weight",
        ),
        ({"hybrid_search": {"embedding_weight": 1}}, "ranking_options.hybrid_search.text_weight"),
        (
            {"hybrid_search": {"embedding_weight": "1", "text_weight": 1}},
            "ranking_options.hybrid_search.embedding_weight",
        ),
        ({"hybrid_search": {"embedding_weight": 0, "text_weight": 0}}, "ranking_options.hybrid_search"),
        (
            {"hybrid_search": {"embedding_weight": 1, "text_weight": 1, "k": 60}},
            "ranking_options.hybrid_search.k",
        ),
    ],
)
async def test_bad_ranking_options_are_400_naming_the_param(
    client: openai.AsyncOpenAI, options: dict[str, Any], param: str
) -> None:
    store = await client.vector_stores.create(name="empty")
    with pytest.raises(openai.BadRequestError) as raised:
        await client.vector_stores.search(store.id, query="x", ranking_options=options)  # type: ignore[arg-type]
    assert raised.value.param == param, raised.value.body


async def test_assistant_file_search_takes_hybrid_weights(client: openai.AsyncOpenAI) -> None:
    options = {"score_threshold": 0.0, "hybrid_search": {"embedding_weight": 0.5, "text_weight": 2}}
    assistant = await client.beta.assistants.create(
        model="m",
        tools=[{"type": "file_search", "file_search": {"ranking_options": options}}],  # type: ignore[list-item]
    )
    tool = assistant.tools[0].model_dump()
    assert tool["file_search"]["ranking_options"]["hybrid_search"] == {
        "embedding_weight": 0.5,
        "text_weight": 2,
    }
    bad = {"score_threshold": 0.0, "hybrid_search": {"embedding_weight": -0.5, "text_weight": 2}}
    with pytest.raises(openai.BadRequestError) as raised:
        await client.beta.assistants.create(
            model="m",
            tools=[{"type": "file_search", "file_search": {"ranking_options": bad}}],  # type: ignore[list-item]
        )
    assert raised.value.param == "tools[0].file_search.ranking_options.hybrid_search.embedding_weight"


async def test_a_file_is_searchable_before_its_vectors_exist(server_factory: ServerFactory) -> None:
    # No embedder at all: ingestion still completes, and text-only search finds the file.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with server_factory(embeddings_base_url=f"http://127.0.0.1:{port}/v1") as server:
        async with sdk_client(server) as client:
            store, fact = await store_with_fact(client)
            page = await client.vector_stores.search(
                store,
                query=QUESTION,
                ranking_options={"hybrid_search": {"embedding_weight": 0, "text_weight": 1}},  # type: ignore[typeddict-unknown-key]
            )
            assert page.data[0].file_id == fact and "seventeen cats" in page.data[0].content[0].text


async def test_a_large_files_vectors_follow_and_the_embedding_ranking_finds_it(
    client: openai.AsyncOpenAI,
) -> None:
    # Over INLINE_VECTOR_TOKENS: completed once indexed, its vectors computed afterwards.
    text = "\n".join([*(FILLER * 40), FACT, *(FILLER * 40)])
    large = await client.files.create(file=("large.txt", text.encode()), purpose="assistants")
    store = await client.vector_stores.create(name="large")
    done = await client.vector_stores.files.create_and_poll(
        large.id,
        vector_store_id=store.id,
        chunking_strategy={
            "type": "static",
            "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 0},
        },
    )
    assert done.status == "completed"
    found = await client.vector_stores.search(store.id, query=QUESTION)
    assert "seventeen cats" in found.data[0].content[0].text
    # Ranker none sees only chunks with vectors: the fact's chunk appears there once its vector is
    # stored. Polled as the SDK's own helpers poll a status, with a deadline.
    deadline = asyncio.get_running_loop().time() + 600
    while True:
        page = await client.vector_stores.search(store.id, query=QUESTION, ranking_options={"ranker": "none"})
        if any("seventeen cats" in r.content[0].text for r in page.data):
            break
        assert asyncio.get_running_loop().time() < deadline, "the file's vectors never arrived"
        await asyncio.sleep(0.5)
    assert "seventeen cats" in page.data[0].content[0].text  # the embeddings alone rank it first
