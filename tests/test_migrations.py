"""The Alembic migrations build exactly the schema that storage/tables.py declares."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from openassistants.storage.db import Database
from openassistants.storage.tables import metadata


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
