"""The database side of export and import (portability/): rows out of one snapshot, rows in by unit.

An export reads every table inside one read transaction (SQLite: ``BEGIN`` on a read connection, a
WAL snapshot that writers never disturb; PostgreSQL: ``REPEATABLE READ READ ONLY``), so that the
archive is one moment of the deployment even while it serves. An import writes one object graph (a
thread with its messages, runs and steps; a vector store with its files and chunks) per transaction.

Rows cross this boundary as plain dicts of column values, without the columns that only make sense in
one database: ``seq`` (list order is kept by inserting in order), the executors' claims (``worker_id``,
``lease_expires_at``) and the search cache key ``chunks_version``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import JSON, BigInteger, Table, func, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from openassistants.statuses import EXECUTING
from openassistants.storage import tables
from openassistants.storage.db import Database

#: The tables an archive carries, in the order an import writes them (parents before children).
TABLES: dict[str, Table] = {
    str(t.name): t
    for t in (
        tables.files,
        tables.vector_stores,
        tables.vector_store_files,
        tables.file_batches,
        tables.chunks,
        tables.assistants,
        tables.threads,
        tables.messages,
        tables.runs,
        tables.run_steps,
    )
}
#: Columns that belong to one database, never to an archive.
LOCAL_COLUMNS = frozenset({"seq", "worker_id", "lease_expires_at", "chunks_version"})
#: How each table's rows are grouped under their object graph's root (threads, vector stores), so that
#: an archive lists them parent by parent, in the parents' own order.
PARENT: dict[str, tuple[str, str]] = {
    "messages": ("threads", "thread_id"),
    "runs": ("threads", "thread_id"),
    "run_steps": ("threads", "thread_id"),
    "vector_store_files": ("vector_stores", "vector_store_id"),
    "file_batches": ("vector_stores", "vector_store_id"),
    "chunks": ("vector_stores", "vector_store_id"),
}
#: Who holds, here, a run that was executing where it was exported: no one alive (a lease lapsed long
#: ago), so that this deployment settles it as a dead executor's, on either database, instead of
#: leaving it active (and its thread closed to new runs) for ever.
EXPORTED_WORKER = "exported"
#: Rows fetched per round trip when looking up ids.
LOOKUP_BATCH = 500
#: Rows read per fetch while exporting (PostgreSQL streams them with a server-side cursor).
STREAM_BATCH = 1000


class DatabaseUnreachable(Exception):
    """The configured database could not be opened or brought to the current schema."""


class IdCollision(Exception):
    """An insert met a row that already holds one of the unit's ids (written since it was planned)."""


def archived_columns(table: Table) -> list[str]:
    """The columns an archive carries for ``table``, in the table's order."""
    # Plain str: a column's name is a str subclass, which JSON encoders refuse as a key.
    names = [str(c.name) for c in table.columns if c.name not in LOCAL_COLUMNS]
    # A chunk's id is its row number here; its identity is (store, file, chunk_index).
    return [n for n in names if not (table.name == "chunks" and n == "id")]


def _order(table: Table, tenant: str | None) -> Any:
    """Rows of ``table`` (of one tenant, if given), grouped by parent in the parent's order."""
    columns = [table.c[n] for n in archived_columns(table)]
    key = "id" if table.name == "chunks" else "seq"
    stmt = select(*columns)
    if table.name in PARENT:
        parent_name, fk = PARENT[table.name]
        parent = TABLES[parent_name]
        stmt = stmt.join(parent, parent.c.id == table.c[fk]).order_by(parent.c.seq, table.c[key])
    else:
        stmt = stmt.order_by(table.c[key])
    if tenant is not None:
        stmt = stmt.where(table.c.tenant_id == tenant)
    return stmt


async def prepare(db: Database) -> None:
    """Brings the schema to the current revision, as ``serve`` does at start-up."""
    try:
        await db.migrate()
    except (OperationalError, DBAPIError, OSError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise DatabaseUnreachable(
            f"cannot use the database (OPENASSISTANTS_DATABASE_URL / OPENASSISTANTS_DATA_DIR): {reason}"
        ) from exc


@asynccontextmanager
async def snapshot(db: Database) -> AsyncIterator[AsyncConnection]:
    """One read-only transaction that sees a single moment of the database."""
    engine = db.read_engine if db.is_sqlite else db.engine
    async with engine.connect() as conn:
        if db.is_sqlite:
            # sqlite3 opens no transaction for SELECTs; an explicit one pins the WAL snapshot.
            await conn.exec_driver_sql("BEGIN")
        else:
            await conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            await conn.begin()
        try:
            yield conn
        finally:
            await conn.rollback()


async def stream_rows(
    conn: AsyncConnection, table: Table, tenant: str | None
) -> AsyncIterator[list[dict[str, Any]]]:
    """Every archived row of ``table`` in archive order, as column values, STREAM_BATCH at a time
    (one hop into SQLAlchemy's greenlet per batch, not per row)."""
    result = await conn.stream(_order(table, tenant).execution_options(yield_per=STREAM_BATCH))
    names = archived_columns(table)
    async for rows in result.partitions(STREAM_BATCH):
        yield [dict(zip(names, row, strict=True)) for row in rows]


async def tenants(conn: AsyncConnection) -> list[str]:
    """Every tenant that owns at least one object, sorted."""
    found: set[str] = set()
    for table in TABLES.values():
        found.update((await conn.execute(select(table.c.tenant_id).distinct())).scalars())
    return sorted(found)


async def existing_ids(db: Database, table: Table, ids: Iterable[str]) -> set[str]:
    """Which of ``ids`` ``table`` already holds."""
    wanted = list(ids)
    found: set[str] = set()
    async with db.read() as conn:
        for start in range(0, len(wanted), LOOKUP_BATCH):
            batch = wanted[start : start + LOOKUP_BATCH]
            found.update((await conn.execute(select(table.c.id).where(table.c.id.in_(batch)))).scalars())
    return found


async def _rows(conn: AsyncConnection, table: Table, condition: Any) -> list[dict[str, Any]]:
    names = archived_columns(table)
    stmt = select(*[table.c[n] for n in names]).where(condition).order_by(table.c.seq)
    return [dict(zip(names, row, strict=True)) for row in await conn.execute(stmt)]


async def stored_unit(
    db: Database, root: str, root_id: str, members: Iterable[str]
) -> dict[str, list[dict[str, Any]]]:
    """The stored rows of the object graph whose root is ``root_id`` in table ``root``: the root row
    and each member table's rows of it, in list order (chunks are not compared, only counted)."""
    async with db.read() as conn:
        unit = {root: await _rows(conn, TABLES[root], TABLES[root].c.id == root_id)}
        for name in members:
            fk = TABLES[name].c[PARENT[name][1]]
            if name == "chunks":
                count = (await conn.execute(select(func.count()).where(fk == root_id))).scalar_one()
                unit[name] = [{"count": count}]
            else:
                unit[name] = await _rows(conn, TABLES[name], fk == root_id)
    return unit


async def insert_units(db: Database, units: Sequence[Mapping[str, list[dict[str, Any]]]]) -> None:
    """Writes object graphs in one transaction: all of them, or (raising) none of them. One insert
    per table for them all, in their order, which is then their list order."""
    try:
        async with db.write() as conn:
            for name, table in TABLES.items():
                rows = [row for unit in units for row in unit.get(name, ())]
                if rows:
                    await conn.execute(table.insert(), rows)
            active = [r["id"] for unit in units for r in unit.get("runs", ()) if r["status"] in EXECUTING]
            if active:
                runs = tables.runs
                lapsed = {"worker_id": EXPORTED_WORKER, "lease_expires_at": 0}
                await conn.execute(update(runs).where(runs.c.id.in_(active)).values(lapsed))
    except IntegrityError as exc:
        raise IdCollision(str(exc.orig)) from exc


def column_kinds(table: Table) -> dict[str, tuple[str, bool]]:
    """For checking an archive's rows before anything is written: each archived column's kind of
    value (int, int32, float, str, bool, bytes or json) and whether it must be present and not null.
    ``int32``: an ``Integer`` column, 32 bits on PostgreSQL (``BigInteger`` ones are 64 everywhere)."""
    kinds: dict[str, tuple[str, bool]] = {}
    for name in archived_columns(table):
        column = table.c[name]
        python = column.type.python_type if not isinstance(column.type, JSON) else dict
        kind = {int: "int", float: "float", str: "str", bool: "bool", bytes: "bytes"}.get(python, "json")
        if kind == "int" and not isinstance(column.type, BigInteger):
            kind = "int32"
        kinds[name] = (kind, not column.nullable and column.server_default is None)
    return kinds
