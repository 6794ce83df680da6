"""Vector stores through the SDK: ingestion with the helpers' polling, file counts, batches, search,
removal, and the limits and errors around them."""

from __future__ import annotations

import socket

import openai
import pytest

from tests.conftest import ServerFactory, sdk_client

FACT = "The lighthouse keeper of Skarvholm island feeds exactly seventeen cats every morning."
FILLER = [
    "Quarterly revenue grew because the sales team expanded into new regions.",
    "The recipe calls for two cups of flour, one egg and a pinch of salt.",
    "Mountain trails close in winter when snow makes the passes dangerous.",
    "The orchestra rehearsed the symphony for three weeks before the premiere.",
]


async def _upload(client: openai.AsyncOpenAI, name: str, text: str) -> str:
    file = await client.files.create(file=(name, text.encode()), purpose="assistants")
    return file.id


async def test_create_with_files_and_search_finds_the_planted_fact(client: openai.AsyncOpenAI) -> None:
    ids = [await _upload(client, f"filler{n}.txt", text) for n, text in enumerate(FILLER)]
    fact_id = await _upload(client, "island.md", "# Island notes\n\n" + FACT)
    store = await client.vector_stores.create(name="notes", file_ids=[*ids, fact_id], metadata={"k": "v"})
    assert store.id.startswith("vs_") and store.name == "notes" and store.metadata == {"k": "v"}
    assert store.file_counts.total == 5
    files = [f async for f in client.vector_stores.files.list(store.id)]
    for f in files:
        done = await client.vector_stores.files.poll(f.id, vector_store_id=store.id)
        assert done.status == "completed", done.last_error
    store = await client.vector_stores.retrieve(store.id)
    assert store.status == "completed"
    assert store.file_counts.completed == 5 and store.file_counts.in_progress == 0
    assert store.usage_bytes > 0

    page = await client.vector_stores.search(store.id, query="How many cats does the lighthouse keeper feed?")
    results = page.data
    assert results[0].file_id == fact_id and results[0].filename == "island.md"
    assert "seventeen cats" in results[0].content[0].text
    assert all(0 <= r.score <= 1 for r in results)
    assert results == sorted(results, key=lambda r: -r.score)


async def test_upload_and_poll_and_batches(client: openai.AsyncOpenAI) -> None:
    store = await client.vector_stores.create(name="batches")
    done = await client.vector_stores.files.upload_and_poll(
        vector_store_id=store.id, file=("one.txt", b"first document about apples")
    )
    assert done.status == "completed" and done.vector_store_id == store.id
    assert done.chunking_strategy is not None and done.chunking_strategy.type == "static"

    ids = [await _upload(client, f"b{n}.txt", text) for n, text in enumerate(FILLER)]
    batch = await client.vector_stores.file_batches.create_and_poll(vector_store_id=store.id, file_ids=ids)
    assert batch.id.startswith("vsfb_") and batch.object == "vector_store.files_batch"
    assert batch.status == "completed"
    assert batch.file_counts.completed == len(ids) and batch.file_counts.in_progress == 0
    in_batch = [
        f.id async for f in client.vector_stores.file_batches.list_files(batch.id, vector_store_id=store.id)
    ]
    assert sorted(in_batch) == sorted(ids)
    completed = [f.id async for f in client.vector_stores.files.list(store.id, filter="completed")]
    assert len(completed) == len(ids) + 1
    assert [f async for f in client.vector_stores.files.list(store.id, filter="failed")] == []


async def test_static_chunking_attributes_and_content(client: openai.AsyncOpenAI) -> None:
    text = " ".join(f"sentence number {n} talks about topic {n % 7}." for n in range(400))
    file_id = await _upload(client, "long.txt", text)
    store = await client.vector_stores.create(name="chunks")
    vs_file = await client.vector_stores.files.create_and_poll(
        vector_store_id=store.id,
        file_id=file_id,
        chunking_strategy={
            "type": "static",
            "static": {"max_chunk_size_tokens": 200, "chunk_overlap_tokens": 50},
        },
        attributes={"team": "red", "year": 2024, "public": True},
    )
    assert vs_file.status == "completed"
    assert vs_file.chunking_strategy.static.max_chunk_size_tokens == 200  # type: ignore[union-attr]
    assert vs_file.attributes == {"team": "red", "year": 2024, "public": True}
    pages = [p async for p in client.vector_stores.files.content(file_id, vector_store_id=store.id)]
    assert len(pages) > 3 and "sentence number 0" in pages[0].text
    updated = await client.vector_stores.files.update(
        file_id, vector_store_id=store.id, attributes={"team": "blue"}
    )
    assert updated.attributes == {"team": "blue"}
    matching = await client.vector_stores.search(
        store.id, query="topic 3", filters={"type": "eq", "key": "team", "value": "blue"}
    )
    assert matching.data
    none = await client.vector_stores.search(
        store.id, query="topic 3", filters={"type": "eq", "key": "team", "value": "red"}
    )
    assert none.data == []


async def test_removing_a_file_removes_its_results_at_once(client: openai.AsyncOpenAI) -> None:
    fact_id = await _upload(client, "fact.txt", FACT)
    other = await _upload(client, "other.txt", FILLER[0])
    store = await client.vector_stores.create(name="removal")
    for file_id in (fact_id, other):
        await client.vector_stores.files.create_and_poll(vector_store_id=store.id, file_id=file_id)
    query = "lighthouse keeper cats"
    assert (await client.vector_stores.search(store.id, query=query)).data[0].file_id == fact_id

    deleted = await client.vector_stores.files.delete(fact_id, vector_store_id=store.id)
    assert deleted.deleted and deleted.object == "vector_store.file.deleted"
    assert fact_id not in [r.file_id for r in (await client.vector_stores.search(store.id, query=query)).data]
    assert (await client.files.retrieve(fact_id)).id == fact_id  # the File itself stays

    await client.files.delete(other)  # deleting the File removes it from the store too
    assert (await client.vector_stores.search(store.id, query="revenue sales")).data == []
    assert (await client.vector_stores.retrieve(store.id)).file_counts.total == 0


async def test_failed_ingestion_reports_last_error(client: openai.AsyncOpenAI) -> None:
    bad_pdf = await client.files.create(
        file=("broken.pdf", b"%PDF-1.7 this is not a pdf"), purpose="assistants"
    )
    binary = await client.files.create(file=("blob.bin", bytes(range(256)) * 50), purpose="assistants")
    store = await client.vector_stores.create(name="bad")
    for file_id, code in ((bad_pdf.id, "invalid_file"), (binary.id, "unsupported_file")):
        vs_file = await client.vector_stores.files.create_and_poll(vector_store_id=store.id, file_id=file_id)
        assert vs_file.status == "failed"
        assert vs_file.last_error is not None and vs_file.last_error.code == code
    store = await client.vector_stores.retrieve(store.id)
    assert store.file_counts.failed == 2 and store.status == "completed"


async def test_update_list_delete_and_errors(
    client: openai.AsyncOpenAI, other_tenant: openai.AsyncOpenAI
) -> None:
    store = await client.vector_stores.create(name="a", expires_after={"anchor": "last_active_at", "days": 3})
    assert store.expires_after is not None and store.expires_after.days == 3
    assert store.expires_at == store.last_active_at + 3 * 86400  # type: ignore[operator]
    updated = await client.vector_stores.update(store.id, name="b", metadata={"x": "1"})
    assert updated.name == "b" and updated.metadata == {"x": "1"}
    listed = [s.id async for s in client.vector_stores.list(limit=100)]
    assert store.id in listed

    with pytest.raises(openai.NotFoundError):
        await other_tenant.vector_stores.retrieve(store.id)
    with pytest.raises(openai.NotFoundError):
        await other_tenant.vector_stores.search(store.id, query="x")
    assert store.id not in [s.id async for s in other_tenant.vector_stores.list(limit=100)]
    foreign = await _upload(other_tenant, "theirs.txt", "not yours")
    with pytest.raises(openai.NotFoundError):
        await client.vector_stores.files.create(vector_store_id=store.id, file_id=foreign)
    with pytest.raises(openai.BadRequestError):
        await client.vector_stores.create(expires_after={"anchor": "last_active_at", "days": 400})
    with pytest.raises(openai.BadRequestError):
        await client.vector_stores.files.create(
            vector_store_id=store.id,
            file_id=foreign,
            chunking_strategy={
                "type": "static",
                "static": {"max_chunk_size_tokens": 50, "chunk_overlap_tokens": 0},
            },
        )
    with pytest.raises(openai.BadRequestError):
        await client.vector_stores.search(store.id, query="x", max_num_results=51)
    with pytest.raises(openai.BadRequestError):
        await client.vector_stores.file_batches.create(vector_store_id=store.id, file_ids=[])

    deleted = await client.vector_stores.delete(store.id)
    assert deleted.deleted and deleted.object == "vector_store.deleted"
    with pytest.raises(openai.NotFoundError):
        await client.vector_stores.retrieve(store.id)


async def test_search_sees_a_file_that_replaces_the_last_one(client: openai.AsyncOpenAI) -> None:
    # Remove the store's newest file and add another of as many chunks: on SQLite its chunks reuse
    # the removed ones' ids, so only the store's chunks version can tell the cached matrix is stale.
    store = await client.vector_stores.create(name="replace")
    first = await _upload(client, "first.txt", FILLER[1])
    await client.vector_stores.files.create_and_poll(vector_store_id=store.id, file_id=first)
    assert (await client.vector_stores.search(store.id, query="flour egg recipe")).data[0].file_id == first
    await client.vector_stores.files.delete(first, vector_store_id=store.id)
    second = await _upload(client, "second.txt", FACT)
    await client.vector_stores.files.create_and_poll(vector_store_id=store.id, file_id=second)
    results = (await client.vector_stores.search(store.id, query="lighthouse keeper cats")).data
    assert [r.file_id for r in results] == [second]
    assert "seventeen cats" in results[0].content[0].text


async def test_search_with_the_embedder_unreachable_is_a_503(server_factory: ServerFactory) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with server_factory(embeddings_base_url=f"http://127.0.0.1:{port}/v1") as server:
        client = sdk_client(server)
        store = await client.vector_stores.create(name="no embedder")
        with pytest.raises(openai.InternalServerError) as raised:
            await client.vector_stores.search(store.id, query="anything")
        assert raised.value.status_code == 503
        assert raised.value.body["type"] == "server_error"  # type: ignore[index]
        assert "could not be embedded" in raised.value.message
        await client.close()


async def test_search_queries_of_any_shape_are_answered(client: openai.AsyncOpenAI) -> None:
    fact = await _upload(client, "fact.txt", FACT)
    store = await client.vector_stores.create(name="shapes", file_ids=[fact])
    await client.vector_stores.files.poll(fact, vector_store_id=store.id)
    odd = ['"', "_", "?!", "a & b | !c:* (d)", "\\' OR 1=1 --", "NEAR(x y) AND NOT z", "the of and", "ß 漢字"]
    for query in [*odd, "keeper " * 300, ["lighthouse", "*", "cats"]]:
        page = await client.vector_stores.search(store.id, query=query)
        assert all(0 <= r.score <= 1 for r in page.data)
    hits = await client.vector_stores.search(store.id, query=["_", "lighthouse keeper's cats?"])
    assert hits.data[0].file_id == fact
