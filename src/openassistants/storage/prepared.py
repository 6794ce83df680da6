"""Statements built once, and run straight on the driver's connection.

SQLAlchemy Core costs about 50 µs per statement, even with its statement cache warm, and as much again
per connection checkout: more than SQLite itself takes to answer the busiest requests. A ``Prepared``
wraps a Core statement whose every value is a bind parameter. It is compiled once per dialect, to SQL
text with its parameters in order and the column types' own bind and result processors (so values
are stored and read back exactly as SQLAlchemy would), and a ``Runner`` executes it on the raw
connection: sqlite3's, or on PostgreSQL asyncpg's through SQLAlchemy's adapter (its prepared-statement
cache, transaction and error translation), without the greenlet hop and result machinery of a Core
execution. Schema, migrations and every other statement stay plain SQLAlchemy.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Any

from sqlalchemy import types as sqltypes
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.selectable import Select, TextualSelect


class Row(dict[str, Any]):
    """A row read through a ``Runner``, by column name (a type of its own, so that a dict of values
    written is not taken for a row read back)."""


_Processor = Callable[[Any], Any] | None
#: The row count in a command's status ("SELECT 3", "UPDATE 1", "INSERT 0 1"), as SQLAlchemy reads it.
_COUNT = re.compile(r"(?:SELECT|UPDATE|DELETE|INSERT \d+) (\d+)")
#: What a Prepared may hold: a SELECT (maybe a textual one: bus/postgres_sql.py), or an INSERT, UPDATE
#: or DELETE.
Statement = Select[Any] | TextualSelect | UpdateBase


class Prepared:
    """A Core statement with bind parameters for every value; compiled for SQLite on first use."""

    __slots__ = ("_compiled", "column_keys", "statement")

    def __init__(self, statement: Statement, *, column_keys: Sequence[str] | None = None) -> None:
        """``column_keys``: for an INSERT or UPDATE, the columns every call gives values for."""
        self.statement = statement
        self.column_keys = list(column_keys) if column_keys is not None else None
        #: By dialect name (a process uses one database, so in practice one entry).
        self._compiled: dict[str, CompiledStatement] = {}

    def compiled(self, dialect: Dialect, json_loads: Callable[[str], Any] | None) -> CompiledStatement:
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            compiled = CompiledStatement(self.statement, dialect, self.column_keys, json_loads)
            self._compiled[dialect.name] = compiled
        return compiled


class CompiledStatement:
    """SQL text plus what turns values into its positional parameters and its rows into mappings."""

    def __init__(
        self,
        statement: Statement,
        dialect: Dialect,
        column_keys: list[str] | None,
        json_loads: Callable[[str], Any] | None,
    ) -> None:
        """``json_loads``: what reads JSON columns' text (SQLite); None where the driver decodes them."""
        compiled = statement.compile(dialect=dialect, column_keys=column_keys)
        self.sql = compiled.string
        # (name to take from the caller's values, or None for a literal the statement holds, the literal,
        # the type's bind processor)
        self.binds: list[tuple[str | None, Any, _Processor]] = []
        for name in compiled.positiontup or ():
            bind = compiled.binds[name]
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            given = bind.required or (bind.value is None and bind.callable is None)
            self.binds.append((name if given else None, bind.value, processor))
        # What it returns: a SELECT's columns, or an INSERT's or UPDATE's RETURNING ones (else none).
        columns = list(
            statement.selected_columns if isinstance(statement, Select) else statement.exported_columns
        )
        self.keys = [str(column.key) for column in columns]
        self._columns, self._dialect, self._json_loads = columns, dialect, json_loads
        #: The columns whose values need converting, and how. On PostgreSQL a processor may depend on
        #: the column's type as the server reports it (``result_types``), so it is known at first run.
        self.processed: list[tuple[str, Callable[[Any], Any]]] | None = None
        if dialect.name == "sqlite":
            self.result_types([None] * len(columns))

    def result_types(self, types: Sequence[Any]) -> None:
        """Sets ``processed`` for the columns' types as the driver reports them (their type codes):
        JSON text straight to ``json_loads`` (the engine's deserializer; what SQLAlchemy's JSON
        processor ends in, a few calls later), anything else by its type's processor. NULL stays None.
        """
        dialect, processed = self._dialect, []
        for key, column, type_code in zip(self.keys, self._columns, types, strict=True):
            if self._json_loads is not None and isinstance(column.type, sqltypes.JSON):
                processed.append((key, self._json_loads))
            elif (
                processor := column.type.dialect_impl(dialect).result_processor(dialect, type_code)
            ) is not None:
                processed.append((key, processor))
        self.processed = processed

    def parameters(self, values: Mapping[str, Any]) -> list[Any]:
        out = []
        for name, literal, processor in self.binds:
            value = values[name] if name is not None else literal
            out.append(processor(value) if processor is not None else value)
        return out

    def run(self, connection: sqlite3.Connection, values: Mapping[str, Any]) -> tuple[list[Row], int]:
        """Executes on ``connection``; returns the rows (if it selects) and the row count."""
        cursor = connection.execute(self.sql, self.parameters(values))
        try:
            if cursor.description is None:
                return [], cursor.rowcount
            return self.rows(cursor.fetchall()), cursor.rowcount
        finally:
            cursor.close()

    def rows(self, records: Iterable[Sequence[Any]]) -> list[Row]:
        """The driver's rows (tuples, asyncpg records) as ``Row``s of converted values."""
        keys = self.keys
        rows = [Row(zip(keys, record, strict=True)) for record in records]
        assert self.processed is not None
        for key, processor in self.processed:
            for row in rows:
                value = row[key]
                if value is not None:
                    row[key] = processor(value)
        return rows


@dataclass(eq=False, slots=True)
class Runner:
    """Runs ``Prepared`` statements on one connection: raw sqlite3 on SQLite, asyncpg on PostgreSQL.

    Build one with ``Runner.sqlite`` (a sqlite3 connection, or a function running a call on the
    connection's thread) or ``Runner.asyncpg``; ``Database.reader`` and ``runner_for`` do.
    """

    dialect: Dialect
    _: KW_ONLY
    call: Callable[..., Awaitable[Any]] | None = None
    connection: AsyncConnection | None = None
    adapter: Any = None
    begin: bool = True
    json_loads: Callable[[str], Any] | None = None

    @classmethod
    def asyncpg(cls, connection: AsyncConnection, adapter: Any, *, begin: bool = True) -> Runner:
        """On ``connection``, whose DBAPI connection is SQLAlchemy's asyncpg adapter ``adapter``.
        ``begin``: the first statement begins the connection's transaction, as SQLAlchemy's would;
        False for reads, each a transaction of its own (``Database.reader``)."""
        return cls(connection.dialect, connection=connection, adapter=adapter, begin=begin)

    @classmethod
    def sqlite(
        cls, dialect: Dialect, call: Callable[..., Awaitable[Any]], json_loads: Callable[[str], Any]
    ) -> Runner:
        """``call(fn, *args)`` runs ``fn(sqlite3_connection, *args)`` where the connection lives;
        ``json_loads`` reads JSON columns (the engine's ``json_deserializer``)."""
        return cls(dialect, call=call, json_loads=json_loads)

    async def _run(self, prepared: Prepared, values: Mapping[str, Any]) -> tuple[Sequence[Row], int]:
        statement = prepared.compiled(self.dialect, self.json_loads)
        if self.call is not None:
            rows, count = await self.call(statement.run, values)
            return rows, count
        return await self._run_asyncpg(statement, statement.parameters(values))

    async def _run_asyncpg(
        self, statement: CompiledStatement, parameters: list[Any]
    ) -> tuple[list[Row], int]:
        def described(attributes: Sequence[Any]) -> None:
            if statement.processed is None and statement.keys:
                statement.result_types([attribute.type.oid for attribute in attributes])

        records, status_message = await self._fetch_asyncpg(statement.sql, parameters, described)
        status = _COUNT.match(status_message or "")
        # An INSERT without RETURNING of its own returns its primary key (SQLAlchemy's implicit
        # RETURNING, compiled in), which no caller reads.
        rows = statement.rows(records) if statement.keys else []
        return rows, int(status[1]) if status else -1

    async def _fetch_asyncpg(
        self, sql: str, parameters: Sequence[Any], described: Callable[[Sequence[Any]], None] | None = None
    ) -> tuple[list[Any], str | None]:
        """What SQLAlchemy's asyncpg cursor does for one statement (begin the connection's transaction
        unless it is in autocommit, prepare through the adapter's cache, fetch), and what its
        ``Connection`` does with an error: raise it as SQLAlchemy's exception, and after a disconnect
        invalidate the connection and every older one in the pool. Returns the driver's records and
        its status message; ``described`` is given the result's column attributes before the fetch."""
        adapter, dialect = self.adapter, self.dialect
        try:
            async with adapter._execute_mutex:
                if self.begin and adapter._transaction is None:
                    await adapter._start_transaction()
                try:
                    driver_statement, attributes = await adapter._prepare(
                        sql,
                        dialect._invalidate_schema_cache_asof,  # type: ignore[attr-defined]
                    )
                    if described is not None:
                        described(attributes)
                    records = await driver_statement.fetch(*parameters)
                except Exception as error:
                    adapter._handle_exception(error)  # raises it as the DBAPI's exception
        except dialect.loaded_dbapi.Error as exc:
            assert self.connection is not None
            disconnected = dialect.is_disconnect(exc, adapter, None)
            if disconnected:
                fairy = await self.connection.get_raw_connection()
                self.connection.sync_engine.pool._invalidate(fairy, exc, _checkin=False)
                await self.connection.invalidate(exc)
            raise DBAPIError.instance(
                sql,
                parameters,
                exc,
                dialect.loaded_dbapi.Error,
                connection_invalidated=disconnected,
                dialect=dialect,
            ) from exc
        return records, driver_statement.get_statusmsg()

    async def fetch_sql(self, sql: str, parameters: Sequence[Any]) -> list[Any]:
        """PostgreSQL only: a statement of PostgreSQL's own text (``$1``… parameters, values as
        asyncpg takes them), prepared and run as a ``Prepared`` one is; its rows as asyncpg's records.
        For statements Core cannot express (``bus/postgres_sql.py``'s), without a Core execution."""
        assert self.adapter is not None, "fetch_sql runs on PostgreSQL only"
        return (await self._fetch_asyncpg(sql, parameters))[0]

    async def rows(self, prepared: Prepared, values: Mapping[str, Any]) -> Sequence[Row]:
        return (await self._run(prepared, values))[0]

    async def first(self, prepared: Prepared, values: Mapping[str, Any]) -> Row | None:
        rows = (await self._run(prepared, values))[0]
        return rows[0] if rows else None

    async def scalar(self, prepared: Prepared, values: Mapping[str, Any]) -> Any:
        row = await self.first(prepared, values)
        return next(iter(row.values())) if row is not None else None

    async def execute(self, prepared: Prepared, values: Mapping[str, Any]) -> int:
        """Runs a statement that returns no rows; returns its row count."""
        return (await self._run(prepared, values))[1]
