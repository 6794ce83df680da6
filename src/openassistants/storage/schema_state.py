"""Where a database's schema stands, read without changing anything (``openassistants doctor``):
a SQLite file is opened read-only and never created; nothing is migrated."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import create_async_engine

from openassistants.storage.migrate import applied_revisions, head_revisions


@dataclass(frozen=True)
class SchemaState:
    #: The Alembic revisions applied; empty for a database with no schema yet.
    applied: frozenset[str]
    #: The newest revisions this code knows.
    heads: frozenset[str]

    @property
    def current(self) -> bool:
        return self.applied == self.heads


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL; None for another database."""
    return Path(url.split("///", 1)[1]) if url.startswith("sqlite") else None


async def schema_state(url: str, *, timeout: float) -> SchemaState | None:
    """The schema's state; None when the SQLite file does not exist yet. Raises what connecting raises
    (the driver's own error, a TimeoutError after ``timeout`` seconds, ImportError for a URL whose driver
    is not installed, sqlalchemy's ArgumentError for an unparsable URL)."""
    heads = frozenset(head_revisions())
    path = sqlite_path(url)
    if path is not None:
        if not path.exists():
            return None
        with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=timeout) as conn:
            has_table = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
            ).fetchone()
            rows = conn.execute("SELECT version_num FROM alembic_version").fetchall() if has_table else []
        return SchemaState(frozenset(row[0] for row in rows), heads)
    engine = create_async_engine(url, pool_size=1, max_overflow=0)
    try:
        async with asyncio.timeout(timeout), engine.connect() as conn:
            applied = await conn.run_sync(applied_revisions)
    finally:
        await engine.dispose()
    return SchemaState(frozenset(applied), heads)


def describe_database(url: str) -> str:
    """The database, for people: SQLite's file, or PostgreSQL's host and name, never a password."""
    path = sqlite_path(url)
    if path is not None:
        return f"SQLite at {path}"
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "the database"
    host = f"{parsed.host or 'localhost'}:{parsed.port}" if parsed.port else parsed.host or "localhost"
    backend = {"postgresql": "PostgreSQL"}.get(parsed.get_backend_name(), parsed.get_backend_name())
    return f"{backend} at {host}/{parsed.database}"
