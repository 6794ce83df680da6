"""The queries every resource shares, each built once per table and shape (storage/prepared.py):

- ``find_row``: load one of a tenant's objects by id (the loaders of services/lookup.py use it);
- ``page``: one page of a cursor-paginated list, and ``list_body`` its OpenAI envelope;
- ``insert_row``, ``insert_rows``, ``update_row``, ``update_rows``: write rows;
- ``take_turns_creating``: keep a list's ``created_at`` in its ``seq`` order while inserting;
- ``delete_remembering_cursors``: delete rows whose ids stay valid as list cursors.
"""

from __future__ import annotations

import functools
import time
import zlib
from typing import Any

from sqlalchemy import ColumnElement, Insert, Table, Update, bindparam, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from openassistants.errors import InvalidRequest
from openassistants.storage import tables
from openassistants.storage.db import runner_for
from openassistants.storage.prepared import Prepared, Row, Runner


@functools.cache
def _by_id(table: Table, scope: tuple[str, ...], lock: bool) -> Prepared:
    # Built once per table and shape: the values travel as parameters, so neither SQLAlchemy nor the
    # driver rebuilds the statement on each call (storage/prepared.py).
    stmt = select(table).where(
        table.c.id == bindparam("id"),
        table.c.tenant_id == bindparam("tenant_id"),
        *(table.c[name] == bindparam(name) for name in scope),
    )
    return Prepared(stmt.with_for_update() if lock else stmt)


async def find_row(
    conn: AsyncConnection | Runner,
    table: Table,
    tenant_id: str,
    object_id: str,
    *,
    lock: bool = False,
    **scope: Any,
) -> Row | None:
    """The tenant's row with this id (and ``scope``'s column values, e.g. its thread), or None.

    ``lock`` takes the row's lock until the transaction ends (PostgreSQL; SQLite has one writer).
    """
    runner = conn if isinstance(conn, Runner) else await runner_for(conn)
    return await runner.first(
        _by_id(table, tuple(scope), lock), {"id": object_id, "tenant_id": tenant_id, **scope}
    )


async def page(
    conn: AsyncConnection | Runner,
    table: Table,
    scope: dict[str, Any],
    *,
    limit: int,
    order: str,
    after: str | None,
    before: str | None,
    where: ColumnElement[bool] | None = None,
    where_values: dict[str, Any] | None = None,
) -> tuple[list[Row], bool]:
    """One page in ``order`` of the rows with ``scope``'s column values (and matching ``where``, a
    condition built once, whose parameters are ``where_values``), plus whether more rows follow it.

    ``after`` returns the items that come after that id in the chosen order; ``before`` the ones just
    before it (nearest first fetched, then put back in order), as OpenAI's cursors do. A cursor is any
    row with ``scope``'s values, or one deleted since (``delete_remembering_cursors``).
    """
    runner = conn if isinstance(conn, Runner) else await runner_for(conn)
    descending = order == "desc"
    values = dict(scope) | (where_values or {})
    if after is not None:
        values["after_seq"] = await _prepared_cursor_seq(runner, table, scope, after, "after")
    if before is not None:
        values["before_seq"] = await _prepared_cursor_seq(runner, table, scope, before, "before")
    values["limit"] = limit + 1
    stmt = _page_statement(table, tuple(scope), descending, after is not None, before is not None, where)
    rows = list(await runner.rows(stmt, values))
    has_more = len(rows) > limit
    rows = rows[:limit]
    if before is not None:
        rows.reverse()
    return rows, has_more


@functools.cache
def _page_statement(
    table: Table,
    scope: tuple[str, ...],
    descending: bool,
    after: bool,
    before: bool,
    where: ColumnElement[bool] | None,
) -> Prepared:
    seq = table.c.seq
    conditions = [table.c[name] == bindparam(name) for name in scope]
    if where is not None:
        conditions.append(where)
    if after:
        conditions.append(seq < bindparam("after_seq") if descending else seq > bindparam("after_seq"))
    if before:
        conditions.append(seq > bindparam("before_seq") if descending else seq < bindparam("before_seq"))
    # With ``before``, walk away from the cursor to take the nearest items (put back in order later).
    walk_descending = descending != before
    stmt = select(table).where(*conditions).order_by(seq.desc() if walk_descending else seq.asc())
    return Prepared(stmt.limit(bindparam("limit")))


@functools.cache
def _cursor_statements(table: Table, scope: tuple[str, ...]) -> tuple[Prepared, Prepared]:
    gone = tables.deleted_cursors
    live = select(table.c.seq).where(
        table.c.id == bindparam("cursor"), *(table.c[name] == bindparam(name) for name in scope)
    )
    deleted = select(gone.c.seq).where(
        gone.c.table_name == bindparam("table_name"), gone.c.id == bindparam("cursor")
    )
    return Prepared(live), Prepared(deleted)


async def _prepared_cursor_seq(
    runner: Runner, table: Table, scope: dict[str, Any], cursor: str, param: str
) -> Any:
    live, deleted = _cursor_statements(table, tuple(scope))
    value = await runner.scalar(live, {"cursor": cursor, **scope})
    if value is None:
        value = await runner.scalar(deleted, {"table_name": table.name, "cursor": cursor})
    if value is None:
        raise InvalidRequest(f"Invalid '{param}': no object with id '{cursor}' in this list.", param=param)
    return value


def list_body(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    """OpenAI's list envelope."""
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }


@functools.cache
def _insert(table: Table, keys: tuple[str, ...]) -> Prepared:
    return Prepared(table.insert(), column_keys=keys)


async def insert_rows(conn: AsyncConnection, rows: list[tuple[Table, dict[str, Any]]]) -> None:
    """Inserts several rows (a table and its values each) as ``insert_row`` does, in one statement on
    PostgreSQL: the later rows as data-modifying CTEs of the first, so one round trip for all (foreign
    keys between them are checked when the statement ends). Elsewhere one by one: on SQLite there is
    no round trip to save."""
    if conn.dialect.name != "postgresql" or len(rows) < 2:
        for table, values in rows:
            await insert_row(conn, table, values)
        return
    statement = _insert_together(tuple((table, tuple(values)) for table, values in rows))
    parameters = {f"r{n}_{key}": value for n, (_, values) in enumerate(rows) for key, value in values.items()}
    await (await runner_for(conn)).execute(statement, parameters)


@functools.cache
def _insert_together(shape: tuple[tuple[Table, tuple[str, ...]], ...]) -> Prepared:
    def insert_of(n: int, table: Table, keys: tuple[str, ...]) -> Insert:
        return insert(table).values({key: bindparam(f"r{n}_{key}", type_=table.c[key].type) for key in keys})

    (first, first_keys), *rest = shape
    statement = insert_of(0, first, first_keys)
    for n, (table, keys) in enumerate(rest, start=1):
        statement = statement.add_cte(insert_of(n, table, keys).cte(f"insert_{n}"))
    return Prepared(statement)


async def insert_row(conn: AsyncConnection, table: Table, values: dict[str, Any]) -> None:
    """Inserts one row (``values``: column: value) through a statement prepared once per table and
    set of columns (storage/prepared.py): on SQLite straight on sqlite3, elsewhere through SQLAlchemy
    with the values as parameters (never ``.values(...)``, which coerces each value into the statement
    and computes its cache key anew on every call: several times the cost of the write)."""
    await (await runner_for(conn)).execute(_insert(table, tuple(values)), values)


@functools.cache
def _update_by_id(table: Table, keys: tuple[str, ...]) -> Prepared:
    return Prepared(update(table).where(table.c.id == bindparam("update_row_id")), column_keys=keys)


async def update_row(conn: AsyncConnection, table: Table, row_id: str, changes: dict[str, Any]) -> None:
    """Sets ``changes`` (column: value) on the row with this id, as ``insert_row`` writes."""
    statement = _update_by_id(table, tuple(changes))
    await (await runner_for(conn)).execute(statement, {"update_row_id": row_id, **changes})


async def update_rows(conn: AsyncConnection, updates: list[tuple[Table, str, dict[str, Any]]]) -> None:
    """Makes several ``update_row`` changes (a table, a row id and its changes each), in one statement
    on PostgreSQL (the later ones as data-modifying CTEs of the first: one round trip for all), as
    ``insert_rows`` inserts; elsewhere one by one."""
    if conn.dialect.name != "postgresql" or len(updates) < 2:
        for table, row_id, changes in updates:
            await update_row(conn, table, row_id, changes)
        return
    statement = _update_together(tuple((table, tuple(changes)) for table, _, changes in updates))
    await (await runner_for(conn)).execute(statement, update_parameters(updates))


def update_of(n: int, table: Table, keys: tuple[str, ...]) -> Update:
    """The ``n``-th change of several made in one statement (``update_rows``): ``keys`` set on the
    row of ``table`` whose id is parameter ``u{n}_id``; its values are ``update_parameters``'."""
    values = {key: bindparam(f"u{n}_{key}", type_=table.c[key].type) for key in keys}
    return update(table).where(table.c.id == bindparam(f"u{n}_id")).values(values)


def update_parameters(updates: list[tuple[Table, str, dict[str, Any]]]) -> dict[str, Any]:
    """The parameters of ``update_of`` statements 0, 1… for ``updates`` (a table, a row id and its
    changes each)."""
    parameters: dict[str, Any] = {}
    for n, (_, row_id, changes) in enumerate(updates):
        parameters[f"u{n}_id"] = row_id
        parameters.update((f"u{n}_{key}", value) for key, value in changes.items())
    return parameters


@functools.cache
def _update_together(shape: tuple[tuple[Table, tuple[str, ...]], ...]) -> Prepared:
    (first, first_keys), *rest = shape
    statement = update_of(0, first, first_keys)
    for n, (table, keys) in enumerate(rest, start=1):
        statement = statement.add_cte(update_of(n, table, keys).cte(f"update_{n}"))
    return Prepared(statement)


async def take_turns_creating(conn: AsyncConnection, table: Table, tenant_id: str) -> None:
    """Until this transaction ends, the tenant's other inserts into ``table`` wait for this one.

    Lists are ordered by ``seq`` and must also be in ``created_at`` order; that holds only if the
    clock is read (after this call) and the row inserted without another insert in between. SQLite
    writers already take turns (``Database.write``); PostgreSQL ones take an advisory lock.
    """
    if conn.dialect.name == "postgresql":
        key = zlib.crc32(f"{table.name}:{tenant_id}".encode())
        await conn.execute(select(func.pg_advisory_xact_lock(key)))


async def delete_remembering_cursors(
    conn: AsyncConnection, table: Table, *conditions: ColumnElement[bool]
) -> int:
    """Deletes the matching rows and remembers where they stood in their lists; returns the count."""
    deleted = (await conn.execute(delete(table).where(*conditions).returning(table.c.id, table.c.seq))).all()
    if deleted:
        gone = tables.deleted_cursors
        ids = [row[0] for row in deleted]
        await conn.execute(delete(gone).where(gone.c.table_name == table.name, gone.c.id.in_(ids)))
        now = int(time.time())
        await conn.execute(
            gone.insert(),
            [{"table_name": table.name, "id": i, "seq": s, "deleted_at": now} for i, s in deleted],
        )
    return len(deleted)
