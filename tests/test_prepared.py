"""storage/prepared.py: prepared statements read and write exactly what SQLAlchemy does, on both
backends; inline SQLite writes still checkpoint the WAL."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from openassistants.errors import InvalidRequest
from openassistants.ids import new_id
from openassistants.services.run_records import Reply
from openassistants.storage import tables
from openassistants.storage.db import CHECKPOINT_EVERY_CHANGES, Database, runner_for
from openassistants.storage.prepared import Prepared
from openassistants.storage.queries import find_row, insert_rows, page

T = tables.messages
INSERT = Prepared(T.insert(), column_keys=[c.key for c in T.columns if c.key != "seq"])


async def migrated(url: str) -> AsyncIterator[Database]:
    database = Database(url)
    await database.migrate()
    yield database
    await database.close()


@pytest.fixture
async def db(database_url: str | None, tmp_path: Path) -> AsyncIterator[Database]:
    async for database in migrated(database_url or f"sqlite+aiosqlite:///{tmp_path / 'prepared.db'}"):
        yield database


async def new_thread(db: Database) -> str:
    thread_id = new_id("thread")
    async with db.write() as conn:
        await conn.execute(
            tables.threads.insert().values(
                id=thread_id, tenant_id="t_prepared", created_at=1_700_000_000, tool_resources={}, metadata={}
            )
        )
    return thread_id


def message(thread_id: str, n: int, **fields: object) -> dict[str, object]:
    values: dict[str, object] = {
        "id": new_id("message"),
        "tenant_id": "t_prepared",
        "thread_id": thread_id,
        "created_at": 1_700_000_000 + n,
        "role": "user",
        "status": "completed",
        "content": [{"type": "text", "text": {"value": f"é {n}", "annotations": []}}],
        "attachments": [],
        "metadata": {"n": str(n)},
        "assistant_id": None,
        "run_id": None,
        "completed_at": 1_700_000_000 + n,
        "incomplete_at": None,
        "incomplete_details": None,
    }
    return {**values, **fields}


async def test_rows_read_as_sqlalchemy_reads_them(db: Database) -> None:
    thread_id = await new_thread(db)
    written = [message(thread_id, n) for n in range(5)]
    written[2]["incomplete_details"] = {"reason": "max_tokens", "ratio": math.pi}
    async with db.write(inline=True) as conn:
        runner = await runner_for(conn)
        for values in written:
            assert await runner.execute(INSERT, values) == 1
    async with db.read() as conn:
        # In the page's order: a SELECT without ORDER BY returns PostgreSQL's heap order, which is not
        # always insertion order.
        query = select(T).where(T.c.thread_id == thread_id).order_by(T.c.created_at, T.c.seq)
        expected = [dict(r) for r in (await conn.execute(query)).mappings()]
    async with db.reader() as reader:
        found = await find_row(reader, T, "t_prepared", str(written[2]["id"]), thread_id=thread_id)
        rows, has_more = await page(
            reader, T, {"thread_id": thread_id}, limit=10, order="asc", after=None, before=None
        )
        missing = await find_row(reader, T, "t_other_tenant", str(written[2]["id"]))
    assert [dict(r) for r in rows] == expected
    assert found is not None and dict(found) == expected[2]
    assert found["incomplete_details"] == {"reason": "max_tokens", "ratio": math.pi}
    assert expected[0]["incomplete_details"] is None
    assert has_more is False
    assert missing is None


async def test_pages_follow_openai_cursors(db: Database) -> None:
    thread_id = await new_thread(db)
    written = [message(thread_id, n) for n in range(7)]
    async with db.write() as conn:
        runner = await runner_for(conn)
        for values in written:
            await runner.execute(INSERT, values)
    ids = [str(v["id"]) for v in written]
    # (parameters, the page's ids, has_more); ``before`` takes the nearest items, in the list's order.
    cases = [
        ({"limit": 3, "order": "desc", "after": None, "before": None}, [6, 5, 4], True),
        ({"limit": 3, "order": "asc", "after": ids[1], "before": None}, [2, 3, 4], True),
        ({"limit": 2, "order": "desc", "after": None, "before": ids[2]}, [4, 3], True),
        ({"limit": 2, "order": "asc", "after": ids[0], "before": ids[5]}, [3, 4], True),
        ({"limit": 20, "order": "asc", "after": ids[6], "before": None}, [], False),
        ({"limit": 20, "order": "desc", "after": ids[2], "before": None}, [1, 0], False),
    ]
    for params, expected, expected_more in cases:
        async with db.reader() as reader:
            rows, more = await page(reader, T, {"thread_id": thread_id}, **params)  # type: ignore[arg-type]
        # The same through a connection of SQLAlchemy's (as the services that hold one list).
        async with db.read() as conn:
            conn_rows, conn_more = await page(conn, T, {"thread_id": thread_id}, **params)  # type: ignore[arg-type]
        assert [r["id"] for r in rows] == [ids[n] for n in expected], params
        assert [r["id"] for r in conn_rows] == [ids[n] for n in expected], params
        assert more is conn_more is expected_more, params
    async with db.reader() as reader:
        with pytest.raises(InvalidRequest) as refused:
            await page(
                reader, T, {"thread_id": thread_id}, limit=2, order="asc", after="msg_none", before=None
            )
    assert refused.value.param == "after"


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[Database]:
    """SQLite whichever backend the run is for: the write-ahead log is SQLite's alone."""
    async for database in migrated(f"sqlite+aiosqlite:///{tmp_path / 'prepared.db'}"):
        yield database


async def test_inline_writes_checkpoint_the_wal(sqlite_db: Database, tmp_path: Path) -> None:
    db = sqlite_db
    thread_id = await new_thread(db)
    count = 10 * CHECKPOINT_EVERY_CHANGES
    for n in range(count):
        async with db.write(inline=True) as conn:
            await (await runner_for(conn)).execute(INSERT, message(thread_id, n))
    wal = tmp_path / "prepared.db-wal"
    # Without checkpoints the log would hold every page each insert touched: at least two (the table's
    # and the thread index's), so 20 x CHECKPOINT_EVERY_CHANGES frames of a 4 KiB page and a header.
    assert wal.stat().st_size < 10 * CHECKPOINT_EVERY_CHANGES * (4096 + 24)
    async with db.reader() as reader:
        rows, _ = await page(
            reader, T, {"thread_id": thread_id}, limit=1, order="desc", after=None, before=None
        )
    assert rows[0]["created_at"] == 1_700_000_000 + count - 1


@pytest.mark.parametrize("inline", [True, False])
async def test_a_write_commits_all_or_nothing(db: Database, inline: bool) -> None:
    thread_id = await new_thread(db)
    kept, dropped, also_dropped = message(thread_id, 1), message(thread_id, 2), message(thread_id, 3)
    async with db.write(inline=inline) as conn:
        await (await runner_for(conn)).execute(INSERT, kept)
        # Statements through SQLAlchemy and prepared ones share one transaction.
        await conn.execute(T.update().where(T.c.id == kept["id"]).values(metadata={"through": "sqlalchemy"}))
    with pytest.raises(RuntimeError):
        async with db.write(inline=inline) as conn:
            await (await runner_for(conn)).execute(INSERT, dropped)
            await conn.execute(T.update().where(T.c.id == kept["id"]).values(metadata={"lost": "yes"}))
            raise RuntimeError("the block failed")
    with pytest.raises(RuntimeError):
        async with db.write(inline=inline) as conn:
            await (await runner_for(conn)).execute(INSERT, also_dropped)
            raise RuntimeError("the block failed")
    async with db.reader() as reader:
        rows, _ = await page(
            reader, T, {"thread_id": thread_id}, limit=10, order="asc", after=None, before=None
        )
    assert [(r["id"], r["metadata"]) for r in rows] == [(kept["id"], {"through": "sqlalchemy"})]


async def test_rows_inserted_together_read_back_as_written(db: Database) -> None:
    # On PostgreSQL one statement (the step and message as CTEs of the run's INSERT), their foreign
    # keys to the run checked when it ends; on SQLite one by one.
    thread_id = await new_thread(db)
    run = {
        "id": new_id("run"),
        "tenant_id": "t_prepared",
        "thread_id": thread_id,
        "assistant_id": "asst_prepared",
        "created_at": 1_700_000_000,
        "status": "in_progress",
        "model": "m",
        "instructions": "é",
        "tools": [],
        "metadata": {"k": "v"},
        "truncation_strategy": {"type": "auto", "last_messages": None},
        "parallel_tool_calls": True,
        "temperature": 0.5,
    }
    reply = Reply.new(run)
    async with db.write(inline=True) as conn:
        await insert_rows(conn, [(tables.runs, run), *reply.rows()])
    async with db.read() as conn:
        for table, values in [(tables.runs, run), *reply.rows()]:
            row = (await conn.execute(select(table).where(table.c.id == values["id"]))).mappings().one()
            assert {key: row[key] for key in values} == values
