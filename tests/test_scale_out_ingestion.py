"""Files ingested by several processes on one PostgreSQL: a file's claim has a lease of its own
(``ingest_lease_seconds``), so a process killed mid-ingestion leaves the file to another once that
lease lapses (the runs' lease is long here, and plays no part); a process stopped with SIGTERM gives
its files ``ingest_shutdown_grace_seconds`` to finish, then gives them up at once.

Each file is held mid-ingestion by its embedder: a real HTTP embeddings server whose first answer
comes late (the embedding of a small file is computed before the file is completed)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import openai
import pytest

from tests.conftest import TENANT_A_KEY
from tests.processes import ServerProcess, process_env, running
from tests.test_embeddings import EmbeddingsStub, Failure

INGEST_LEASE_SECONDS = 2
#: Long: were files leased for as long as runs, no test here would see its file taken over in time.
RUN_LEASE_SECONDS = 120
#: The first embedding's delay, which holds its file mid-ingestion (under the embedder's timeout).
STALL_SECONDS = 40.0


@pytest.fixture
def embeddings() -> Iterator[EmbeddingsStub]:
    stub = EmbeddingsStub()
    yield stub
    stub.close()


def _replicas(
    pg_url: str, stub: EmbeddingsStub, data: Path, **settings: str
) -> tuple[ServerProcess, ServerProcess]:
    """Two API processes on one database and one data folder: both ingest files (and execute no runs,
    so a killed one leaves no code-interpreter kernels behind)."""
    env = process_env(
        data_dir=str(data),
        database_url=pg_url,
        api_keys=TENANT_A_KEY,
        embeddings_base_url=stub.url,
        access_log="false",
        run_lease_seconds=str(RUN_LEASE_SECONDS),
        execute_runs="false",
        **settings,
    )
    return ServerProcess(data, env), ServerProcess(data, env)


async def _ingesting(
    pg_url: str, replicas: tuple[ServerProcess, ServerProcess], stub: EmbeddingsStub
) -> tuple[ServerProcess, ServerProcess, str, str]:
    """Adds a file to a new store and waits until one replica is embedding it: (the one holding the
    file, the other, the store's id, the file's id)."""
    async with openai.AsyncOpenAI(
        base_url=replicas[0].base_url, api_key=TENANT_A_KEY, max_retries=0
    ) as client:
        file = await client.files.create(
            file=("note.txt", b"The keeper feeds seventeen cats."), purpose="assistants"
        )
        store = await client.vector_stores.create(name="held", file_ids=[file.id])
    deadline = time.monotonic() + 30
    while not stub.requests:
        assert time.monotonic() < deadline, "no replica started embedding the file"
        await asyncio.sleep(0.05)
    conn = await asyncpg.connect(pg_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        holder = await conn.fetchval(
            "SELECT worker_id FROM vector_store_files WHERE vector_store_id = $1 AND id = $2",
            store.id,
            file.id,
        )
    finally:
        await conn.close()
    assert holder is not None
    holding = next(r for r in replicas if f"-{r.pid}-" in holder)
    other = next(r for r in replicas if r is not holding)
    return holding, other, store.id, file.id


async def _wait_completed(
    server: ServerProcess, store_id: str, file_id: str, stub: EmbeddingsStub
) -> tuple[float, int]:
    """Polls the file through ``server`` until it is done, and searches it: (the seconds the file
    took, how many times it was embedded)."""
    started = time.monotonic()
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key=TENANT_A_KEY, max_retries=0) as client:
        done = await client.vector_stores.files.poll(file_id, vector_store_id=store_id)
        took, embedded = time.monotonic() - started, len(stub.requests)
        assert done.status == "completed", done.last_error
        hits = await client.vector_stores.search(store_id, query="how many cats")
    assert [hit.file_id for hit in hits.data] == [file_id]
    return took, embedded


async def test_a_file_of_a_killed_process_is_ingested_by_another_once_its_lease_lapses(
    pg_url: str, embeddings: EmbeddingsStub, tmp_path: Path
) -> None:
    embeddings.failures = [Failure(200, delay=STALL_SECONDS)]
    replicas = _replicas(
        pg_url, embeddings, tmp_path / "data", ingest_lease_seconds=str(INGEST_LEASE_SECONDS)
    )
    with running(*replicas):
        holding, other, store_id, file_id = await _ingesting(pg_url, replicas, embeddings)
        holding.kill()
        took, embedded = await _wait_completed(other, store_id, file_id, embeddings)
        assert took < INGEST_LEASE_SECONDS * 4 + 5, f"took {took:.1f}s to be taken over"
        assert embedded == 2  # by the dead process, then by the survivor


async def test_a_stopped_process_gives_its_file_up_after_the_grace(
    pg_url: str, embeddings: EmbeddingsStub, tmp_path: Path
) -> None:
    embeddings.failures = [Failure(200, delay=STALL_SECONDS)]
    replicas = _replicas(
        pg_url,
        embeddings,
        tmp_path / "data",
        ingest_lease_seconds=str(RUN_LEASE_SECONDS),
        ingest_shutdown_grace_seconds="0.5",
    )
    with running(*replicas):
        holding, other, store_id, file_id = await _ingesting(pg_url, replicas, embeddings)
        holding.stop()
        took, embedded = await _wait_completed(other, store_id, file_id, embeddings)
        # Long before its lease would have lapsed: the stopping process gave its claim up.
        assert took < RUN_LEASE_SECONDS / 4, f"took {took:.1f}s to be taken over"
        assert embedded == 2


async def test_a_stopped_process_finishes_its_file_within_the_grace(
    pg_url: str, embeddings: EmbeddingsStub, tmp_path: Path
) -> None:
    embeddings.failures = [Failure(200, delay=2.0)]
    replicas = _replicas(
        pg_url,
        embeddings,
        tmp_path / "data",
        ingest_lease_seconds=str(RUN_LEASE_SECONDS),
        ingest_shutdown_grace_seconds="30",
    )
    with running(*replicas):
        holding, other, store_id, file_id = await _ingesting(pg_url, replicas, embeddings)
        holding.stop()
        _took, embedded = await _wait_completed(other, store_id, file_id, embeddings)
        assert embedded == 1  # the stopping process finished it: nobody ingested it again
