"""Start-up check of the database a process is configured for: reach it once, within a deadline, or
say why not in one line (the database's own words).

A server that starts against a missing database, a wrong password or a closed port should stop at
once, not retry for a minute and then print a traceback. Only a refusal that a database starting up
gives (connection refused, "the database system is starting up") is retried, until the deadline, so
that a server started together with its database still comes up. Once running, a process retries
on its own (``Database``: 503s meanwhile, and reconnects).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import asyncpg
from sqlalchemy.engine import URL, make_url

#: How long start-up waits for a database that refuses connections (e.g. still starting).
STARTUP_WAIT_SECONDS = 6.0
#: One connection attempt's limit: a host that drops packets answers nothing at all.
CONNECT_TIMEOUT_SECONDS = 3.0


class DatabaseUnavailable(Exception):
    """The database cannot be used; the message is the database's (or the OS's) own, on one line."""


def check_database(url: str) -> None:
    """Raises DatabaseUnavailable unless a connection to ``url`` opens and answers ``SELECT 1``."""
    if url.startswith("sqlite"):
        _check_sqlite(Path(url.split("///", 1)[1]))
    else:
        asyncio.run(_check_postgres(make_url(url).set(drivername="postgresql")))


def _check_sqlite(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(path, timeout=CONNECT_TIMEOUT_SECONDS)
        try:
            connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            connection.close()
    except (OSError, sqlite3.Error) as exc:
        raise DatabaseUnavailable(f"{path}: {_one_line(exc)}") from None


async def _check_postgres(url: URL) -> None:
    dsn = url.render_as_string(hide_password=False)
    deadline = time.monotonic() + STARTUP_WAIT_SECONDS
    while True:
        try:
            left = deadline - time.monotonic()
            connection = await asyncpg.connect(dsn, timeout=max(0.1, min(CONNECT_TIMEOUT_SECONDS, left)))
        except (TimeoutError, OSError, asyncpg.CannotConnectNowError) as exc:
            # Nothing listening yet, or a server still starting: worth waiting for, briefly.
            if time.monotonic() + 0.5 >= deadline:
                raise DatabaseUnavailable(_one_line(exc) or "timed out connecting") from None
            await asyncio.sleep(0.5)
            continue
        except (asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
            raise DatabaseUnavailable(_one_line(exc)) from None
        try:
            await connection.fetchval("SELECT 1")
        finally:
            await connection.close()
        return


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
