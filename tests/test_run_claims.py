"""storage/run_claims.py on both backends: an executor looks for waiting runs with a read before it
claims (a write), and the read sees exactly the runs a claim would take."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from openassistants.ids import new_id
from openassistants.storage import run_claims, tables
from openassistants.storage.db import Database
from tests.servers import temporary_postgres_database

TENANT = "t_claims"


@pytest.fixture
async def db(backend: str, tmp_path: Path) -> AsyncIterator[Database]:
    # A database of its own: the session's servers would claim the runs this test queues.
    with ExitStack() as stack:
        if backend == "postgres":
            url = stack.enter_context(temporary_postgres_database())
        else:
            url = f"sqlite+aiosqlite:///{tmp_path / 'claims.db'}"
        database = Database(url)
        await database.migrate()
        yield database
        await database.close()


async def add_run(
    db: Database, *, status: str = "queued", expires_in: int = 600, worker: str | None = None
) -> str:
    thread_id, run_id = new_id("thread"), new_id("run")
    now = int(time.time())
    async with db.write() as conn:
        await conn.execute(
            tables.threads.insert().values(
                id=thread_id, tenant_id=TENANT, created_at=now, tool_resources={}, metadata={}
            )
        )
        await conn.execute(
            tables.runs.insert().values(
                id=run_id,
                tenant_id=TENANT,
                thread_id=thread_id,
                assistant_id="asst_claims",
                created_at=now,
                status=status,
                model="m",
                instructions="",
                tools=[],
                metadata={},
                truncation_strategy={"type": "auto", "last_messages": None},
                parallel_tool_calls=True,
                expires_at=now + expires_in,
                worker_id=worker,
            )
        )
    return run_id


async def waiting(db: Database) -> bool:
    async with db.reader() as reader:
        return await run_claims.any_waiting(reader)


async def test_only_a_queued_unclaimed_unexpired_run_is_waiting(db: Database) -> None:
    await add_run(db, status="in_progress", worker="w_other")
    await add_run(db, status="requires_action")
    await add_run(db, expires_in=-1)  # the expiry sweep's, not a claim's
    await add_run(db, worker="w_other")  # claimed, not started yet
    assert not await waiting(db)

    run_id = await add_run(db)
    assert await waiting(db)
    async with db.write() as conn:
        claimed = await run_claims.claim_runs(conn, "w_test", 10, 15.0)
    assert [row["id"] for row in claimed] == [run_id]
    assert not await waiting(db)


async def test_leases_are_renewed_while_every_pooled_connection_is_busy(backend: str, tmp_path: Path) -> None:
    """A burst holds (and queues for) every connection of the shared pool; a heartbeat queued behind
    it renewed its leases after they had lapsed, and another process settled live runs as failed.
    Renewals have a connection of their own (PostgreSQL); on SQLite they are inline writes."""
    with ExitStack() as stack:
        if backend == "postgres":
            url = stack.enter_context(temporary_postgres_database())
        else:
            url = f"sqlite+aiosqlite:///{tmp_path / 'leases.db'}"
        database = Database(url, pool_size=2)
        await database.migrate()
        try:
            run_id = await add_run(database, status="in_progress", worker="w_here")
            async with database.write() as conn:
                await conn.execute(
                    tables.runs.update().where(tables.runs.c.id == run_id).values(lease_expires_at=1)
                )
            held = []
            if backend == "postgres":  # the whole shared pool, each in a transaction
                for _ in range(2):
                    conn = await database.engine.connect()
                    await conn.begin()
                    held.append(conn)
            try:
                async with asyncio.timeout(10):
                    async with database.lease_write() as conn:
                        await run_claims.renew_leases(conn, "w_here", [run_id], 30)
            finally:
                for conn in held:
                    await conn.close()
            async with database.read() as conn:
                expires = (
                    await conn.execute(
                        tables.runs.select()
                        .with_only_columns(tables.runs.c.lease_expires_at)
                        .where(tables.runs.c.id == run_id)
                    )
                ).scalar_one()
            assert expires > (time.time() + 20) * 1000  # milliseconds
        finally:
            await database.close()
