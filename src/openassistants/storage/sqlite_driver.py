"""A stand-in for aiosqlite's connection, which SQLAlchemy's aiosqlite adapter drives unchanged.

aiosqlite runs every call on the connection's own thread: four or five hand-offs a statement, and on
a busy machine each hand-off is a wait for the GIL. ``SQLiteConnection`` takes one hand-off per
statement (the writer, on its own thread) or none (reads, run where they are made, on the event
loop's thread). The pragmas each kind of connection opens with are here too.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

T = TypeVar("T")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def sqlite_writer_pragmas(dbapi_connection: Any, record: Any) -> None:
    _sqlite_pragmas(dbapi_connection, record)
    cursor = dbapi_connection.cursor()
    # A commit never checkpoints (it may run on the loop's thread): Database.write does, on the thread.
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()


def sqlite_read_pragmas(dbapi_connection: Any, record: Any) -> None:
    _sqlite_pragmas(dbapi_connection, record)
    cursor = dbapi_connection.cursor()
    # A write here would bypass the single writer (and could wait on the loop's thread): refuse it.
    cursor.execute("PRAGMA query_only=ON")
    cursor.close()


_Outcome = tuple[Any, int, int | None, list[Any]]


def _execute(connection: sqlite3.Connection, sql: str, parameters: Any, many: bool) -> _Outcome:
    """Run one statement and fetch all its rows (SQLAlchemy's adapter buffers them all anyway)."""
    cursor = connection.executemany(sql, parameters) if many else connection.execute(sql, parameters)
    try:
        rows = cursor.fetchall() if cursor.description else []
        return cursor.description, cursor.rowcount, cursor.lastrowid, rows
    finally:
        cursor.close()


def checkpoint(connection: sqlite3.Connection) -> None:
    # PASSIVE: copies what it can without waiting for readers; never blocks anyone.
    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").close()


class SQLiteCursor:
    """aiosqlite's cursor interface; each ``execute`` is one call on the connection's thread."""

    arraysize = 1

    def __init__(self, connection: SQLiteConnection) -> None:
        self._connection = connection
        self._rows: list[Any] = []
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None

    async def __aenter__(self) -> SQLiteCursor:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def execute(self, sql: str, parameters: Any = ()) -> SQLiteCursor:
        return self._took(await self._connection.run(_execute, sql, parameters, False))

    async def executemany(self, sql: str, parameters: Sequence[Any]) -> SQLiteCursor:
        return self._took(await self._connection.run(_execute, sql, parameters, True))

    def _took(self, outcome: _Outcome) -> SQLiteCursor:
        self.description, self.rowcount, self.lastrowid, self._rows = outcome
        return self

    async def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        count = self.arraysize if size is None else size
        rows, self._rows = self._rows[:count], self._rows[count:]
        return rows

    async def fetchall(self) -> list[Any]:
        rows, self._rows = self._rows, []
        return rows

    async def close(self) -> None:
        self._rows = []


class SQLiteConnection:
    """aiosqlite's connection interface over sqlite3, run on one given thread or on the caller's.

    ``thread`` None: every call runs (and completes) where it is made; used for reads on the event
    loop's thread. Otherwise every call is one hand-off to that single thread.
    """

    def __init__(self, connection: sqlite3.Connection, thread: ThreadPoolExecutor | None) -> None:
        self._connection: sqlite3.Connection | None = connection
        self._thread = thread
        #: Run calls where they are made even though the connection has a thread (``Database.write``).
        self.inline = False

    @classmethod
    async def open(cls, path: str, *, own_thread: bool) -> SQLiteConnection:
        if not own_thread:
            return cls(sqlite3.connect(path), None)
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        # Used from the loop's thread too, for inline writes; the write lock keeps uses one at a time.
        connect = partial(sqlite3.connect, path, check_same_thread=False)
        connection = await asyncio.get_running_loop().run_in_executor(thread, connect)
        return cls(connection, thread)

    @property
    def total_changes(self) -> int:
        return self._connection.total_changes if self._connection is not None else 0

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._connection is None:
            raise ValueError("no active connection")
        if self._thread is None or self.inline:
            return fn(self._connection, *args)
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, self._connection, *args)

    async def on_thread(self, fn: Callable[[], T]) -> T:
        """``fn()`` on the connection's thread, without the connection (which may be in use inline)."""
        if self._thread is None:
            return fn()
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn)

    @property
    def isolation_level(self) -> str | None:
        return self._connection.isolation_level if self._connection is not None else None

    def cursor(self) -> SQLiteCursor:
        return SQLiteCursor(self)

    # sqlite3 itself skips COMMIT and ROLLBACK outside a transaction; skipping them here also saves the
    # hand-off, e.g. for the pool's rollback-on-return after every committed write.
    async def commit(self) -> None:
        if self._connection is not None and self._connection.in_transaction:
            await self.run(sqlite3.Connection.commit)

    async def rollback(self) -> None:
        if self._connection is not None and self._connection.in_transaction:
            await self.run(sqlite3.Connection.rollback)

    async def create_function(self, name: str, num_params: int, func: Callable[..., Any], **kw: Any) -> None:
        def create(connection: sqlite3.Connection) -> None:
            connection.create_function(name, num_params, func, **kw)

        await self.run(create)

    async def close(self) -> None:
        if self._connection is not None:
            await self.run(sqlite3.Connection.close)
        self.stop()

    def stop(self) -> None:
        """Close without waiting (SQLAlchemy's terminate)."""
        connection, self._connection = self._connection, None
        if self._thread is None:
            if connection is not None:
                connection.close()
            return
        if connection is not None:
            self._thread.submit(connection.close)
        self._thread.shutdown(wait=False)
