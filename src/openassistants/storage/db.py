"""The database: engines, read connections and short write transactions.

SQLite allows one writer at a time. Rather than meet that as ``database is locked`` under load, every
write transaction in this process takes the writer's slot (``WriteSlot``) first and runs on the one
writer connection, on its own thread (datasette's single-writer rule), so a write that waits (on the
disk, or on another process's lock) never stalls the event loop; small ones run inline instead. Reads
run on WAL snapshots, which never wait for a writer, directly on the event loop's thread. On
PostgreSQL one asyncpg engine serves both, and there is no slot.

Both SQLite engines run on ``SQLiteConnection`` (storage/sqlite_driver.py) rather than on aiosqlite's
connection. The schema is brought to head at start-up by ``migrate`` (storage/migrate.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import orjson
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from openassistants import jsonbytes
from openassistants.errors import APIError, ServiceUnavailable
from openassistants.storage.migrate import MIGRATE_WAIT_SECONDS, MIGRATION_LOCK_KEY, upgrade_to_head
from openassistants.storage.pg_reads import HeldReads
from openassistants.storage.prepared import Runner
from openassistants.storage.sqlite_driver import (
    SQLiteConnection,
    checkpoint,
    sqlite_read_pragmas,
    sqlite_writer_pragmas,
)

logger = logging.getLogger("openassistants.db")

#: Read connections kept open. Each read holds one only while it runs, but a read may await something
#: else in its block; an overflow connection is closed on return, and a new connection rereads the
#: schema on its first statement.
SQLITE_READ_POOL_SIZE = 8

#: How long a PostgreSQL read or transaction waits for a connection before the request answers 503.
POOL_TIMEOUT_SECONDS = 120

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

    def __init__(self, url: str, *, pool_size: int = 10, read_pool_size: int = 8) -> None:
        """``pool_size`` (PostgreSQL): connections for transactions and SQLAlchemy reads;
        ``read_pool_size`` more for ``reader``'s prepared reads (storage/pg_reads.py)."""
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
            event.listen(self.engine.sync_engine, "connect", sqlite_writer_pragmas)
            self.read_engine = create_async_engine(
                url,
                json_deserializer=_loads_json,
                json_serializer=_dumps_json,
                async_creator=partial(SQLiteConnection.open, path, own_thread=False),
                pool_size=SQLITE_READ_POOL_SIZE,
                max_overflow=SQLITE_READ_POOL_SIZE,
            )
            event.listen(self.read_engine.sync_engine, "connect", sqlite_read_pragmas)
        else:
            # PostgreSQL allows 100 connections by default, shared by every process of a deployment.
            self.engine = create_async_engine(
                url,
                json_deserializer=_loads_json,
                json_serializer=_dumps_json,
                # No overflow: a connection beyond pool_size is closed as soon as it is returned, so
                # a steady load above it paid a new connection (a PostgreSQL backend forked, TLS
                # tried, authentication) on most checkouts: 16 concurrent retrieves ran at 40 % of
                # the rate they reach with every connection kept (docs/benchmarks.md).
                pool_size=pool_size,
                max_overflow=0,
                # No pool_pre_ping: it costs a round trip on every checkout. A connection a database
                # restart broke fails its next statement instead, as a disconnect, which invalidates
                # the whole pool (the request answers 503, the next ones reconnect).
                # Under a burst, runs queue for a connection rather than fail after the default 30 s.
                pool_timeout=POOL_TIMEOUT_SECONDS,
            )
            # Reads outside a transaction: under READ COMMITTED each statement of one sees its own
            # snapshot anyway, and BEGIN and the ROLLBACK on return are two round trips per read.
            self.read_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        # Lease renewals' own connection (PostgreSQL): see ``lease_write``.
        self._lease_engine: AsyncEngine | None = (
            None
            if self.is_sqlite
            else create_async_engine(url, pool_size=1, max_overflow=0, pool_timeout=POOL_TIMEOUT_SECONDS)
        )
        # ``reader``'s connections (PostgreSQL), kept checked out: see storage/pg_reads.py.
        self._held_reads: HeldReads | None = (
            None
            if self.is_sqlite
            else HeldReads(
                create_async_engine(
                    url,
                    json_deserializer=_loads_json,
                    json_serializer=_dumps_json,
                    pool_size=read_pool_size,
                    max_overflow=0,
                    pool_timeout=POOL_TIMEOUT_SECONDS,
                ),
                read_pool_size,
                POOL_TIMEOUT_SECONDS,
            )
        )
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
                    await conn.run_sync(upgrade_to_head)
                return
            except (OperationalError, DBAPIError, OSError) as exc:
                if self.is_sqlite or asyncio.get_running_loop().time() + delay > deadline:
                    raise
                logger.warning("database not ready (%s); retrying in %.2f s", exc.__class__.__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        with _unavailable_on_outage():
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

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[Runner]:
        """A ``Runner`` for prepared reads (storage/prepared.py), without SQLAlchemy's checkout and
        per-statement work: on SQLite a raw connection used on the loop's thread, like ``read``'s; on
        PostgreSQL a connection kept checked out (storage/pg_reads.py), its statements outside any
        transaction (each its own snapshot, as ``read``'s under autocommit)."""
        if self._held_reads is not None:
            with _unavailable_on_outage():
                held = await self._held_reads.acquire()
                try:
                    yield held.runner
                finally:
                    self._held_reads.release(held)
            return
        connection = self._raw_reads.pop() if self._raw_reads else self._open_raw_read()

        async def call(fn: Callable[..., T], *args: Any) -> T:
            return fn(connection, *args)

        try:
            yield Runner.sqlite(self.engine.dialect, call, _loads_json)
        except sqlite3.OperationalError as exc:
            raise ServiceUnavailable(UNAVAILABLE) from exc
        finally:
            if len(self._raw_reads) < SQLITE_READ_POOL_SIZE:
                self._raw_reads.append(connection)
            else:
                connection.close()

    def _open_raw_read(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self._sqlite_path)
        sqlite_read_pragmas(connection, None)
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
        with _unavailable_on_outage():
            if self._write_slot is None:
                committed: list[Callable[[], None]] = []
                async with self.engine.begin() as conn:
                    _ON_COMMIT[conn] = committed
                    try:
                        yield conn
                    finally:
                        del _ON_COMMIT[conn]
                for callback in committed:
                    callback()
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

    @asynccontextmanager
    async def lease_write(self) -> AsyncIterator[AsyncConnection]:
        """A small transaction renewing leases. On PostgreSQL it has a connection of its own: under a
        burst hundreds of runs queue for the shared pool, and a heartbeat queued behind them renewed
        its leases after they had lapsed, so that another process settled live runs as stopped
        (``failed``). On SQLite (one process, nobody else judges its leases) an inline write: one UPDATE,
        which on the writer's thread would hold the writer's slot across hand-offs that, on a busy
        loop, take far longer than the statement."""
        if self._lease_engine is None:
            async with self.write(inline=True) as conn:
                yield conn
            return
        with _unavailable_on_outage():
            async with self._lease_engine.begin() as conn:
                yield conn

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
        checkpoint(self._checkpointer)

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
        if self._lease_engine is not None:
            await self._lease_engine.dispose()
        if self._held_reads is not None:
            await self._held_reads.close()
        await self.engine.dispose()


async def runner_for(conn: AsyncConnection, *, begin: bool = True) -> Runner:
    """A ``Runner`` on ``conn``'s own connection and transaction: on SQLite its sqlite3 connection,
    used where ``conn`` uses it (the writer's thread, or inline for reads); on PostgreSQL its asyncpg
    connection, through SQLAlchemy's adapter (``begin`` False: each statement outside a transaction)."""
    if conn.dialect.name != "sqlite":
        adapter = conn.info.get(_ADAPTER)
        if adapter is None:
            adapter = conn.info[_ADAPTER] = (await conn.get_raw_connection()).dbapi_connection
        return Runner.asyncpg(conn, adapter, begin=begin)
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
_ADAPTER = "openassistants.adapter"
#: The callbacks of each PostgreSQL ``Database.write`` transaction open now.
_ON_COMMIT: dict[object, list[Callable[[], None]]] = {}


def on_commit(conn: object, callback: Callable[[], None]) -> bool:
    """Call ``callback`` once ``conn``'s transaction has committed (never if it rolls back). False,
    and nothing registered, unless ``conn`` is a PostgreSQL ``Database.write`` transaction."""
    callbacks = _ON_COMMIT.get(conn)
    if callbacks is None:
        return False
    callbacks.append(callback)
    return True


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


#: What a request that could not reach the database answers (503).
UNAVAILABLE = "The database is unavailable; retry shortly."


@contextmanager
def _unavailable_on_outage() -> Iterator[None]:
    """Raises what the block raises, as a 503 (``ServiceUnavailable``) when it says the database could
    not be reached: any exception, not only a DBAPIError (asyncpg's connect lets a refused socket's
    OSError through as is), but never an API error the block meant to answer with."""
    try:
        yield
    except Exception as exc:
        if not isinstance(exc, APIError) and is_connectivity_error(exc):
            raise ServiceUnavailable(UNAVAILABLE) from exc
        raise


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
