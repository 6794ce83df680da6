"""Alembic environment: migrations run on the connection handed over by ``Database.migrate``."""

from alembic import context

from openassistants.storage.tables import metadata

connection = context.config.attributes["connection"]


def include_object(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    # The full-text index (FTS5 tables on SQLite) is created by migration 0004 by hand.
    return not (type_ == "table" and reflected and (name or "").startswith("chunks_fts"))


context.configure(
    connection=connection,
    target_metadata=metadata,
    include_object=include_object,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
