"""Migrations: the schema brought to the newest Alembic revision when a process starts.

Alembic is imported only when there is something to do; a new, empty SQLite database is made at head
directly (``create_at_head``) rather than by replaying every migration.
"""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
#: How long start-up waits for an unreachable PostgreSQL before giving up.
MIGRATE_WAIT_SECONDS = 60.0
#: Advisory lock id serializing migrations between processes sharing one PostgreSQL database.
MIGRATION_LOCK_KEY = 0x0A551574


def upgrade_to_head(connection: Connection) -> None:
    applied, heads = applied_revisions(connection), head_revisions()
    if applied == heads != set():
        # Already at head: skip importing Alembic, which on SQLite is about a seventh of the start-up.
        return
    if (
        not applied
        and heads
        and connection.dialect.name == "sqlite"
        and not inspect(connection).get_table_names()
    ):
        create_at_head(connection, heads)
        return
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


#: What the migrations create by hand on SQLite, beyond storage/tables.py (0004: the chunks' full-text
#: index). tests/test_migrations.py checks that a database made by ``create_at_head`` is the one the
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


def create_at_head(connection: Connection, heads: set[str]) -> None:
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


def head_revisions() -> set[str]:
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


def applied_revisions(connection: Connection) -> set[str]:
    if not inspect(connection).has_table("alembic_version"):
        return set()
    return set(connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalars())
