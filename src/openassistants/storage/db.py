"""The database: engines, short transactions, migrations at start-up.

SQLite allows one writer at a time. Rather than meet that as ``database is locked`` under load, every
write transaction in this process takes the writer's slot (``WriteSlot``) first and runs on the one
writer connection, on its own thread (datasette's single-writer rule), so a write that waits (on the
disk, or on another process's lock) never stalls the event loop; small ones run inline instead. Reads
run on WAL snapshots, which never wait for a writer, directly on the event loop's thread. On
PostgreSQL one asyncpg engine serves both, and there is no slot.

Both SQLite engines run on ``SQLiteConnection`` rather than on aiosqlite's connection: SQLAlchemy's
aiosqlite adapter drives it unchanged, but a statement costs one thread hand-off (writer) or none
(reads) where aiosqlite takes four or five, and on a busy machine each hand-off is a wait for the GIL.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import orjson
from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from openassistants import jsonbytes
from openassistants.errors import APIError, ServiceUnavailable
from openassistants.storage.prepared import Runner

logger = logging.getLogger("openassistants.db")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
#: How long start-up waits for an unreachable PostgreSQL before giving up.
MIGRATE_WAIT_SECONDS = 60.0
#: Advisory lock id serializing migrations between processes sharing one PostgreSQL database.
MIGRATION_LOCK_KEY = 0x0A551574
#: Read connections kept open. Each read holds one only while it runs, but a read may await something
#: else in its block; an overflow connection is closed on return, and a new connection rereads the
#: schema on its first statement.
SQLITE_READ_POOL_SIZE = 8

#: Rows written between two WAL checkpoints (SQLite). SQLite's own default is every 1,000 pages; a
#: message insert writes about five.
CHECKPOINT_EVERY_CHANGES = 200

T = TypeVar("T")


def _loads_json(text: str) -> Any:
    """JSON columns, read with orjson: several times faster than ``json.loads`` on a page of messages.

    ``json.dumps`` (the writer before ``jsonbytes``, and its fallback) may have stored NaN or
    Infinity, which orjson refuses.
    """
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _dumps_json(value: Any) -> str:
    """JSON columns (a run's row has a dozen), with orjson (``jsonbytes``)."""
    return jsonbytes.dumps(value).decode()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _sqlite_writer_pragmas(dbapi_connection: Any, record: Any) -> None:
    _sqlite_pragmas(dbapi_connection, record)
    cursor = dbapi_connection.cursor()
    # A commit never checkpoints (it may run on the loop's thread): Database.write does, on the thread.
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()


def _sqlite_read_pragmas(dbapi_connection: Any, record: Any) -> None:
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


def _checkpoint(connection: sqlite3.Connection) -> None:
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


class WriteSlot:
    """Mutual exclusion for the one SQLite writer connection, taken at once whenever it is free.

    ``asyncio.Lock`` is fair: once anyone waits, every newcomer queues too, and a release hands the
    lock to one waiter, which runs on a later turn of the event loop. Under a burst of runs that is a
    convoy of one transaction per loop turn (each turn hundreds of streams long), although almost
    every transaction is an inline one that never suspends (``Database.write``). Here a newcomer
    takes a free slot at once, and a release wakes every waiter: in one turn each takes the slot in
    its turn, and an inline transaction is over before the next one runs. Whoever finds the slot
    taken again (its holder suspended) waits for the next release.
    """

    def __init__(self) -> None:
        self._held = False
        self._released: asyncio.Future[None] | None = None

    async def __aenter__(self) -> None:
        while self._held:
            if self._released is None:
                self._released = asyncio.get_running_loop().create_future()
            # Shielded: one waiter's cancellation must not cancel the others' wake-up.
            await asyncio.shield(self._released)
        self._held = True

    async def __aexit__(self, *_: object) -> None:
        self._held = False
        released, self._released = self._released, None
        if released is not None:
            released.set_result(None)


class Database:
    """Owns the engines; hands out read connections and write transactions."""

    def __init__(self, url: str, *, pool_size: int = 5) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            path = url.split("///", 1)[1]
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            # One connection is all the write lock lets through.
            self.engine: AsyncEngine = create_async_engine(
                url,
                json_deserializer=_loads_json,
                json_serializer=_dumps_json,
                async_creator=self._open_writer,
                pool_size=1,
                max_overflow=0,
            )
            event.listen(self.engine.sync_engine, "connect", _sqlite_writer_pragmas)
            self.read_engine = create_async_engine(
                url,
                json_deserializer=_loads_json,
                json_serializer=_dumps_json,
                async_creator=partial(SQLiteConnection.open, path, own_thread=False),
                pool_size=SQLITE_READ_POOL_SIZE,
                max_overflow=SQLITE_READ_POOL_SIZE,
            )
            event.listen(self.read_engine.sync_engine, "connect", _sqlite_read_pragmas)
        else:
            # PostgreSQL allows 100 connections by default, shared by every process of a deployment.
            self.engine = create_async_engine(
                url,
                json_deserializer=_loads_json,
                json_serializer=_dumps_json,
                pool_size=pool_size,
                max_overflow=pool_size,
                # No pool_pre_ping: it costs a round trip on every checkout. A connection a database
                # restart broke fails its next statement instead, as a disconnect, which invalidates
                # the whole pool (the request answers 503, the next ones reconnect).
                # Under a burst, runs queue for a connection rather than fail after the default 30 s.
                pool_timeout=120,
            )
            # Reads outside a transaction: under READ COMMITTED each statement of one sees its own
            # snapshot anyway, and BEGIN and the ROLLBACK on return are two round trips per read.
            self.read_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._write_slot = WriteSlot() if self.is_sqlite else None
        # Raw read connections for ``reader`` (SQLite): sqlite3 connections used on the loop's thread.
        self._sqlite_path = url.split("///", 1)[1] if self.is_sqlite else ""
        self._raw_reads: list[sqlite3.Connection] = []
        self._writer: SQLiteConnection | None = None
        self._writer_conn: AsyncConnection | None = None
        self._changes_at_checkpoint = 0
        self._checkpointer: sqlite3.Connection | None = None

    @property
    def asyncpg_dsn(self) -> str:
        """The same PostgreSQL database as a plain asyncpg DSN (for LISTEN/NOTIFY)."""
        return self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)

    async def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision. A database that is briefly unreachable
        (restarting, refusing connections) is waited for, up to MIGRATE_WAIT_SECONDS, rather than
        ending the process at start-up."""
        deadline = asyncio.get_running_loop().time() + MIGRATE_WAIT_SECONDS
        delay = 0.25
        while True:
            try:
                # SQLite: on the writer connection, which ``write`` keeps checked out.
                async with self.write() if self.is_sqlite else self.engine.begin() as conn:
                    if not self.is_sqlite:
                        # Processes starting together take turns; later ones find the schema at head.
                        await conn.execute(
                            text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                        )
                    await conn.run_sync(_upgrade_to_head)
                return
            except (OperationalError, DBAPIError, OSError) as exc:
                if self.is_sqlite or asyncio.get_running_loop().time() + delay > deadline:
                    raise
                logger.warning("database not ready (%s); retrying in %.2f s", exc.__class__.__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        try:
            if self.is_sqlite:
                # SQLAlchemy's ``async with`` shields the close in a new task, a loop turn per read, so
                # that cancellation cannot cut it short; an inline read's close never suspends anyway.
                conn = await self.read_engine.connect().start()
                try:
                    yield conn
                finally:
                    await conn.close()
            else:
                async with self.read_engine.connect() as conn:
                    yield conn
        except Exception as exc:
            # Not only DBAPIError: asyncpg's connect lets a refused socket's OSError through as is.
            if not isinstance(exc, APIError) and is_connectivity_error(exc):
                raise ServiceUnavailable("The database is unavailable; retry shortly.") from exc
            raise

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[Runner]:
        """A ``Runner`` for prepared reads (storage/prepared.py): on SQLite a raw connection used on
        the loop's thread, like ``read``'s, without SQLAlchemy's checkout and per-statement work."""
        if not self.is_sqlite:
            async with self.read() as conn:
                yield Runner.sqlalchemy(conn)
            return
        connection = self._raw_reads.pop() if self._raw_reads else self._open_raw_read()

        async def call(fn: Callable[..., T], *args: Any) -> T:
            return fn(connection, *args)

        try:
            yield Runner.sqlite(self.engine.dialect, call, _loads_json)
        except sqlite3.OperationalError as exc:
            raise ServiceUnavailable("The database is unavailable; retry shortly.") from exc
        finally:
            if len(self._raw_reads) < SQLITE_READ_POOL_SIZE:
                self._raw_reads.append(connection)
            else:
                connection.close()

    def _open_raw_read(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self._sqlite_path)
        _sqlite_read_pragmas(connection, None)
        return connection

    async def _open_writer(self) -> SQLiteConnection:
        self._writer = await SQLiteConnection.open(self._sqlite_path, own_thread=True)
        return self._writer

    @asynccontextmanager
    async def write(self, *, inline: bool = False) -> AsyncIterator[AsyncConnection]:
        """One transaction: committed when the block ends, rolled back on an exception.

        ``inline`` (SQLite): run its statements on the loop's thread rather than the writer's, for a
        transaction of a few small statements, where the hand-offs to the thread would cost several
        times the work (and wait for the GIL each). Never for one that writes much: the loop does
        nothing else meanwhile. Commits never checkpoint; after every CHECKPOINT_EVERY_CHANGES rows
        written, a write checkpoints the WAL on the writer's thread, with a connection of its own,
        once it has left the writer's slot (``WriteSlot``).
        """
        try:
            if self._write_slot is None:
                async with self.engine.begin() as conn:
                    yield conn
                return
            async with self._write_slot:
                conn = await self._writer_connection()
                writer = self._writer
                try:
                    if inline and writer is not None:
                        # The transaction is sqlite3's own (it begins at the first write) and ends
                        # here, without SQLAlchemy's bookkeeping, unless a statement went through
                        # SQLAlchemy, which then began one of its own to end.
                        writer.inline = True
                        try:
                            yield conn
                        except BaseException:
                            await (conn.rollback() if conn.in_transaction() else writer.rollback())
                            raise
                        await (conn.commit() if conn.in_transaction() else writer.commit())
                    else:
                        async with conn.begin():
                            yield conn
                except BaseException:
                    if conn.invalidated:  # broken: the next write connects afresh
                        self._writer_conn = None
                        await conn.close()
                    raise
                finally:
                    if writer is not None:
                        writer.inline = False
            # After the slot is free: other writes go on while the log is copied.
            await self._checkpoint_when_due()
        except Exception as exc:
            # Not only DBAPIError: asyncpg's connect lets a refused socket's OSError through as is.
            if not isinstance(exc, APIError) and is_connectivity_error(exc):
                raise ServiceUnavailable("The database is unavailable; retry shortly.") from exc
            raise

    async def _writer_connection(self) -> AsyncConnection:
        """The one writer connection, kept checked out between transactions (SQLite): every write
        takes the lock and this connection anyway, and a checkout and return per write cost more
        than a small transaction's statements."""
        if self._writer_conn is None:
            self._writer_conn = await self.engine.connect().start()
        return self._writer_conn

    async def _checkpoint_when_due(self) -> None:
        writer = self._writer
        if writer is None or writer.total_changes - self._changes_at_checkpoint < CHECKPOINT_EVERY_CHANGES:
            return
        self._changes_at_checkpoint = writer.total_changes
        await writer.on_thread(self._checkpoint_wal)

    def _checkpoint_wal(self) -> None:
        """On the writer's thread, with a connection of its own: the writer connection may be in a
        transaction on the loop's thread meanwhile (a PASSIVE checkpoint never waits for it)."""
        if self._checkpointer is None:
            self._checkpointer = sqlite3.connect(self._sqlite_path, check_same_thread=False)
        _checkpoint(self._checkpointer)

    async def close(self) -> None:
        if self._writer_conn is not None:
            await self._writer_conn.close()
            self._writer_conn = None
        while self._raw_reads:
            self._raw_reads.pop().close()
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None
        if self.is_sqlite:
            await self.read_engine.dispose()
        await self.engine.dispose()


async def runner_for(conn: AsyncConnection) -> Runner:
    """A ``Runner`` on ``conn``'s own connection and transaction: on SQLite its sqlite3 connection,
    used where ``conn`` uses it (the writer's thread, or inline for reads)."""
    if conn.dialect.name != "sqlite":
        return Runner.sqlalchemy(conn)
    # Kept with the DBAPI connection (``info`` lives as long as it does): finding the driver's
    # connection costs more than a small statement.
    runner: Runner | None = conn.info.get(_RUNNER)
    if runner is None:
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert isinstance(driver, SQLiteConnection)
        runner = conn.info[_RUNNER] = Runner.sqlite(conn.dialect, driver.run, _loads_json)
    return runner


_RUNNER = "openassistants.runner"


#: asyncpg's errors that say the server cannot be reached or is going away (not a query's failure;
#: their parent OperatorInterventionError also holds a statement timeout's QueryCanceledError).
_ASYNCPG_CONNECTIVITY: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.CannotConnectNowError,  # "the database system is starting up"
    asyncpg.exceptions.AdminShutdownError,  # "terminating connection due to administrator command"
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.PostgresConnectionError,  # SQLSTATE class 08
    asyncpg.exceptions.TooManyConnectionsError,
)
#: How drivers word the same thing where the exception's class does not say it.
_CONNECTIVITY_WORDS = (
    "too many clients",
    "cannot connect now",
    "connection refused",
    "connect call failed",
    "the database system is",  # … starting up / shutting down / in recovery mode
    "shutting down",
    "connection is closed",
    "connection was closed",
    "terminating connection",
)


def is_connectivity_error(exc: BaseException) -> bool:
    """True when ``exc``, or any exception behind it, says the database could not be reached: a
    refused or lost connection, a server starting up or shutting down, no connection slot free.
    However the driver words it, the client should hear 503 and retry, never 500."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionError | socket.gaierror | SQLAlchemyTimeoutError):
            return True
        if isinstance(current, DBAPIError) and (
            current.connection_invalidated or isinstance(current, OperationalError)
        ):
            return True
        if isinstance(current, _ASYNCPG_CONNECTIVITY):
            return True
        if isinstance(current, DBAPIError | OSError | asyncpg.PostgresError | asyncpg.InterfaceError):
            text_ = str(current).lower()
            if any(words in text_ for words in _CONNECTIVITY_WORDS):
                return True
        current = current.__cause__ or current.__context__
    return False


def _upgrade_to_head(connection: Connection) -> None:
    applied, heads = _applied_revisions(connection), _head_revisions()
    if applied == heads != set():
        # Already at head: skip importing Alembic, which on SQLite is about a seventh of the start-up.
        return
    if (
        not applied
        and heads
        and connection.dialect.name == "sqlite"
        and not inspect(connection).get_table_names()
    ):
        _create_at_head(connection, heads)
        return
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


#: What the migrations create by hand on SQLite, beyond storage/tables.py (0004: the chunks' full-text
#: index). tests/test_migrations.py checks that a database made by ``_create_at_head`` is the one the
#: migrations make.
SQLITE_EXTRA_DDL = (
    "CREATE VIRTUAL TABLE chunks_fts USING fts5("
    "text, content='chunks', content_rowid='id', tokenize='porter unicode61')",
    "CREATE TRIGGER chunks_fts_insert AFTER INSERT ON chunks BEGIN "
    "INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text); END",
    "CREATE TRIGGER chunks_fts_delete AFTER DELETE ON chunks BEGIN "
    "INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text); END",
    "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
    "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))",
)


def _create_at_head(connection: Connection, heads: set[str]) -> None:
    """A new, empty SQLite database: the schema at head made directly, and stamped so, rather than by
    replaying every migration (importing Alembic and running them was most of a first start's work)."""
    from openassistants.storage.tables import metadata

    metadata.create_all(connection)
    for statement in SQLITE_EXTRA_DDL:
        connection.exec_driver_sql(statement)
    for head in sorted(heads):
        connection.execute(text("INSERT INTO alembic_version (version_num) VALUES (:head)"), {"head": head})


_REVISION = re.compile(r"^revision\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", re.MULTILINE)
_DOWN_REVISION = re.compile(r"^down_revision\s*(?::[^=]*)?=(.*)$", re.MULTILINE)


def _head_revisions() -> set[str]:
    """The revisions no other migration builds on, read from the files as Alembic reads them.

    Empty when a file does not read as expected: the caller then lets Alembic decide.
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        if path.name == "__init__.py":
            continue
        source = path.read_text()
        revision, down = _REVISION.search(source), _DOWN_REVISION.search(source)
        if revision is None or down is None:
            return set()
        revisions.add(revision.group(1))
        parents.update(re.findall(r"['\"]([^'\"]+)['\"]", down.group(1)))
    return revisions - parents


def _applied_revisions(connection: Connection) -> set[str]:
    if not inspect(connection).has_table("alembic_version"):
        return set()
    return set(connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalars())
