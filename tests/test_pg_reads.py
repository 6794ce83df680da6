"""storage/pg_reads.py: ``Database.reader``'s kept PostgreSQL connections behave as the pool did: at
most their number open, a read waits for one (and a read that gives up waiting loses none), and a
disconnect retires every connection opened before it, so one read answers 503 and the next reconnect.
``SharedFinds``' reads sharing statements each get what a statement of their own would have found."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from sqlalchemy.ext.asyncio import create_async_engine

from openassistants.errors import ServiceUnavailable
from openassistants.storage import tables
from openassistants.storage.db import Database
from openassistants.storage.pg_reads import HeldReads
from openassistants.storage.queries import find_row
from openassistants.storage.shared_finds import SharedFinds
from tests.servers import POSTGRES_ADMIN_DSN

SIZE = 3


@pytest.fixture
async def db(pg_url: str) -> AsyncIterator[Database]:
    database = Database(pg_url, pool_size=2, read_pool_size=SIZE)
    await database.migrate()
    yield database
    await database.close()


async def _read(db: Database) -> None:
    async with db.reader() as reader:
        await find_row(reader, tables.threads, "t_reads", "thread_none")


async def _backends(pg_url: str) -> list[int]:
    """The server processes of this database's connections."""
    conn = await asyncpg.connect(POSTGRES_ADMIN_DSN)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            pg_url.rsplit("/", 1)[1],
        )
    finally:
        await conn.close()
    return [row["pid"] for row in rows]


async def _terminate(pids: list[int]) -> None:
    conn = await asyncpg.connect(POSTGRES_ADMIN_DSN)
    try:
        for pid in pids:
            await conn.execute("SELECT pg_terminate_backend($1, 5000)", pid)
    finally:
        await conn.close()


async def test_reads_share_at_most_their_number_of_connections(db: Database, pg_url: str) -> None:
    inside = 0
    most = 0

    async def slow_read() -> None:
        nonlocal inside, most
        async with db.reader() as reader:
            inside += 1
            most = max(most, inside)
            await find_row(reader, tables.threads, "t_reads", "thread_none")
            await asyncio.sleep(0.02)
            inside -= 1

    await asyncio.gather(*(slow_read() for _ in range(4 * SIZE)))
    assert most == SIZE
    # The reads' connections, and none of the transactions' pool (nothing wrote since migrating).
    assert len(await _backends(pg_url)) <= SIZE + 1


async def _disconnect_every_read_connection(db: Database, pg_url: str) -> None:
    """Opens every read connection, then ends their sessions as a database restart would."""

    async def held_read() -> None:
        async with db.reader() as reader:
            await find_row(reader, tables.threads, "t_reads", "thread_none")
            await asyncio.sleep(0.05)

    await asyncio.gather(*(held_read() for _ in range(SIZE)))
    await _terminate(await _backends(pg_url))


async def test_after_a_disconnect_one_read_fails_and_the_next_reconnects(db: Database, pg_url: str) -> None:
    await _disconnect_every_read_connection(db, pg_url)

    with pytest.raises(ServiceUnavailable):
        await _read(db)
    # The connections opened before the disconnect were retired with it, not lent out one by one.
    for _ in range(2 * SIZE):
        await _read(db)


async def test_a_read_that_stops_waiting_loses_no_connection(pg_url: str) -> None:
    engine = create_async_engine(pg_url, pool_size=1, max_overflow=0)
    reads = HeldReads(engine, 1, timeout=0.2)
    try:
        held = await reads.acquire()
        waiting = asyncio.create_task(reads.acquire())
        await asyncio.sleep(0.01)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        with pytest.raises(SQLAlchemyTimeoutError):
            await reads.acquire()  # the one connection is still lent out
        # Handed over and cancelled in the same turn: the connection goes on to the next read.
        handed = asyncio.create_task(reads.acquire())
        await asyncio.sleep(0.01)
        reads.release(held)
        handed.cancel()
        with pytest.raises(asyncio.CancelledError):
            await handed
        again = await asyncio.wait_for(reads.acquire(), 1)
        assert again is held
        reads.release(again)
    finally:
        await reads.close()


async def _add_assistant(db: Database, tenant: str, assistant_id: str) -> None:
    async with db.write() as conn:
        await conn.execute(
            tables.assistants.insert().values(
                id=assistant_id,
                tenant_id=tenant,
                created_at=1,
                model="gpt-4o",
                name=assistant_id,
                tools=[],
                tool_resources={},
                metadata={"of": tenant},
            )
        )


async def test_shared_finds_answer_each_read_as_its_own_statement_would(db: Database) -> None:
    await _add_assistant(db, "t_a", "asst_a1")
    await _add_assistant(db, "t_a", "asst_a2")
    await _add_assistant(db, "t_b", "asst_b1")
    finds = SharedFinds(tables.assistants)
    asked = [
        ("t_a", "asst_a1"),
        ("t_a", "asst_a2"),
        ("t_b", "asst_a1"),  # another tenant's
        ("t_b", "asst_b1"),
        ("t_a", "asst_none"),
        *[("t_a", "asst_a1")] * 5,  # the same id, several times
    ] * 3
    # Together (one runs, the others wait for it and share statements), then one at a time.
    together = await asyncio.gather(*(finds.find(db, tenant, object_id) for tenant, object_id in asked))
    alone = [await finds.find(db, tenant, object_id) for tenant, object_id in asked]
    for rows in (together, alone):
        for (tenant, object_id), row in zip(asked, rows, strict=True):
            async with db.reader() as reader:
                expected = await find_row(reader, tables.assistants, tenant, object_id)
            assert row == expected
            if row is not None:
                assert row["metadata"] == {"of": tenant}
    assert sum(row is not None for row in together) == 3 * (1 + 1 + 1 + 5)


async def test_shared_finds_survive_a_cancelled_read_and_fail_alike(db: Database, pg_url: str) -> None:
    await _add_assistant(db, "t_a", "asst_a1")
    finds = SharedFinds(tables.assistants)
    # The first read is cancelled while out: those waiting for it are read all the same.
    first = asyncio.create_task(finds.find(db, "t_a", "asst_a1"))
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(finds.find(db, "t_a", "asst_a1")) for _ in range(4)]
    await asyncio.sleep(0)
    first.cancel()
    rows = await asyncio.gather(*waiting)
    assert [row["id"] for row in rows if row is not None] == ["asst_a1"] * 4
    with pytest.raises(asyncio.CancelledError):
        await first

    # A disconnect: each read of the statement that meets it answers 503; the next ones reconnect.
    await _disconnect_every_read_connection(db, pg_url)
    outcomes = await asyncio.gather(
        *(finds.find(db, "t_a", "asst_a1") for _ in range(5)), return_exceptions=True
    )
    assert any(isinstance(outcome, ServiceUnavailable) for outcome in outcomes)
    assert all(
        isinstance(outcome, ServiceUnavailable) or (outcome is not None and outcome["id"] == "asst_a1")
        for outcome in outcomes
    )
    again = await asyncio.gather(*(finds.find(db, "t_a", "asst_a1") for _ in range(5)))
    assert all(row is not None and row["id"] == "asst_a1" for row in again)
