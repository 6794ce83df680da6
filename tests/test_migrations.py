"""The Alembic migrations build exactly the schema that storage/tables.py declares."""

from __future__ import annotations

import importlib.util
import sqlite3
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from openassistants.storage.db import Database
from openassistants.storage.migrate import MIGRATIONS_DIR
from openassistants.storage.tables import ACTIVE_RUN, metadata


def _declared_only(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    # The full-text index (FTS5 tables on SQLite) is created by the migration by hand, on purpose.
    return not (type_ == "table" and reflected and name is not None and name.startswith("chunks_fts"))


async def test_migrations_match_the_tables(tmp_path: Path) -> None:
    path = tmp_path / "schema.db"
    db = Database(f"sqlite+aiosqlite:///{path}")
    await db.migrate()
    await db.migrate()  # idempotent: a second start changes nothing
    await db.close()
    engine = create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": _declared_only})
        differences = compare_metadata(context, metadata)
    engine.dispose()
    assert differences == []


def _sqlite_schema(path: Path) -> dict[str, object]:
    """Everything a SQLite schema is: each table's columns, indexes and foreign keys, and the exact
    SQL of what only SQL describes (virtual tables, triggers); plus the Alembic revision."""
    conn = sqlite3.connect(path)
    schema: dict[str, object] = {}
    for kind, name, sql in conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name"):
        if kind == "table" and not sql.startswith("CREATE VIRTUAL"):
            indexes = {
                index[1]: (index[2], [c[2] for c in conn.execute(f"PRAGMA index_info('{index[1]}')")])
                for index in conn.execute(f"PRAGMA index_list('{name}')")
                if not index[1].startswith("sqlite_autoindex")
            }
            unique = sorted(
                [c[2] for c in conn.execute(f"PRAGMA index_info('{index[1]}')")]
                for index in conn.execute(f"PRAGMA index_list('{name}')")
                if index[1].startswith("sqlite_autoindex")
            )
            schema[name] = (
                list(conn.execute(f"PRAGMA table_info('{name}')")),
                indexes,
                unique,
                sorted(conn.execute(f"PRAGMA foreign_key_list('{name}')")),
            )
        elif kind == "index" and "WHERE" in (sql or ""):
            schema[name] = " ".join(sql.split())  # a partial index: its predicate too
        elif kind in ("trigger", "view") or (kind == "table" and sql.startswith("CREATE VIRTUAL")):
            schema[name] = sql
    schema["revision"] = sorted(conn.execute("SELECT version_num FROM alembic_version"))
    conn.close()
    return schema


async def test_a_new_sqlite_database_is_made_at_head_as_the_migrations_make_it(tmp_path: Path) -> None:
    direct = tmp_path / "direct.db"
    db = Database(f"sqlite+aiosqlite:///{direct}")
    await db.migrate()
    await db.close()
    migrated = tmp_path / "migrated.db"
    engine = create_engine(f"sqlite:///{migrated}")
    with engine.begin() as conn:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
    engine.dispose()
    assert _sqlite_schema(direct) == _sqlite_schema(migrated)


def test_the_message_lock_function_knows_the_active_statuses() -> None:
    """Migration 0011's function checks for an active run with its own copy of the statuses (a
    migration must not move with the code), the predicate of 0010's index: both must still be the
    code's."""
    path = MIGRATIONS_DIR / "versions" / "0011_lock_thread_for_messages.py"
    spec = importlib.util.spec_from_file_location("migration_0011", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module._ACTIVE == ACTIVE_RUN
