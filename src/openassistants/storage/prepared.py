"""Statements built once, and on SQLite run straight on the sqlite3 connection.

SQLAlchemy Core costs about 50 µs per statement, even with its statement cache warm, and as much again
per connection checkout: more than SQLite itself takes to answer the busiest requests. A ``Prepared``
wraps a Core statement whose every value is a bind parameter. On SQLite it is compiled once, to SQL
text with its parameters in order and the column types' own bind and result processors (so values
are stored and read back exactly as SQLAlchemy would), and a ``Runner`` executes it on the raw
connection. On PostgreSQL a ``Runner`` hands the same statement to SQLAlchemy. Schema, migrations
and every other statement stay plain SQLAlchemy.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import types as sqltypes
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.selectable import Select


class Row(dict[str, Any]):
    """A row read through a ``Runner``, by column name (a type of its own, so that a dict of values
    written is not taken for a row read back)."""


_Processor = Callable[[Any], Any] | None
#: What a Prepared may hold: a SELECT, or an INSERT, UPDATE or DELETE.
Statement = Select[Any] | UpdateBase


class Prepared:
    """A Core statement with bind parameters for every value; compiled for SQLite on first use."""

    __slots__ = ("_sqlite", "column_keys", "statement")

    def __init__(self, statement: Statement, *, column_keys: Sequence[str] | None = None) -> None:
        """``column_keys``: for an INSERT or UPDATE, the columns every call gives values for."""
        self.statement = statement
        self.column_keys = list(column_keys) if column_keys is not None else None
        self._sqlite: SQLiteStatement | None = None

    def for_sqlite(self, dialect: Dialect, json_loads: Callable[[str], Any]) -> SQLiteStatement:
        if self._sqlite is None:
            self._sqlite = SQLiteStatement(self.statement, dialect, self.column_keys, json_loads)
        return self._sqlite


class SQLiteStatement:
    """SQL text plus what turns values into its positional parameters and its rows into mappings."""

    def __init__(
        self,
        statement: Statement,
        dialect: Dialect,
        column_keys: list[str] | None,
        json_loads: Callable[[str], Any],
    ) -> None:
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
        # The columns whose values need converting, and how: JSON text straight to ``json_loads``
        # (the engine's deserializer; what SQLAlchemy's JSON processor ends in, a few calls later),
        # anything else by its type's processor. NULL stays None.
        self.processed: list[tuple[str, Callable[[Any], Any]]] = []
        for key, column in zip(self.keys, columns, strict=True):
            if isinstance(column.type, sqltypes.JSON):
                self.processed.append((key, json_loads))
            elif (processor := column.type.dialect_impl(dialect).result_processor(dialect, None)) is not None:
                self.processed.append((key, processor))

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
            keys = self.keys
            rows = [Row(zip(keys, row, strict=True)) for row in cursor.fetchall()]
            for key, processor in self.processed:
                for row in rows:
                    value = row[key]
                    if value is not None:
                        row[key] = processor(value)
            return rows, cursor.rowcount
        finally:
            cursor.close()


class Runner:
    """Runs ``Prepared`` statements on one connection: raw sqlite3 on SQLite, SQLAlchemy otherwise.

    Build one with ``Runner.sqlite`` (a sqlite3 connection, or a function running a call on the
    connection's thread) or ``Runner.sqlalchemy``; ``Database.reader`` and ``runner_for`` do.
    """

    def __init__(
        self,
        *,
        dialect: Dialect | None = None,
        call: Callable[..., Awaitable[Any]] | None = None,
        connection: AsyncConnection | None = None,
        json_loads: Callable[[str], Any] = json.loads,
    ) -> None:
        self._json_loads = json_loads
        self._dialect = dialect
        self._call = call
        self._connection = connection

    @classmethod
    def sqlalchemy(cls, connection: AsyncConnection) -> Runner:
        return cls(connection=connection)

    @classmethod
    def sqlite(
        cls, dialect: Dialect, call: Callable[..., Awaitable[Any]], json_loads: Callable[[str], Any]
    ) -> Runner:
        """``call(fn, *args)`` runs ``fn(sqlite3_connection, *args)`` where the connection lives;
        ``json_loads`` reads JSON columns (the engine's ``json_deserializer``)."""
        return cls(dialect=dialect, call=call, json_loads=json_loads)

    async def _run(self, prepared: Prepared, values: Mapping[str, Any]) -> tuple[Sequence[Row], int]:
        if self._call is not None:
            assert self._dialect is not None
            statement = prepared.for_sqlite(self._dialect, self._json_loads)
            rows, count = await self._call(statement.run, values)
            return rows, count
        assert self._connection is not None
        result = await self._connection.execute(prepared.statement, dict(values))
        if not result.returns_rows:
            return [], result.rowcount
        return [Row(mapping) for mapping in result.mappings()], result.rowcount

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
