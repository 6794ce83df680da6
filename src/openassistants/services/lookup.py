"""Loading a tenant's object inside an open transaction or read, or raising the API's 404."""

from __future__ import annotations

from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from openassistants.errors import not_found
from openassistants.storage import tables
from openassistants.storage.db import runner_for
from openassistants.storage.prepared import Row, Runner
from openassistants.storage.queries import find_row, get_row, select_by_id


async def load_thread(
    conn: AsyncConnection | Runner, tenant: str, thread_id: str, *, lock: bool = False
) -> Row:
    """The tenant's thread; raises NotFound otherwise.

    ``lock`` takes the thread's row lock (PostgreSQL; SQLite's single writer already serializes) so
    that "no active run" checks and the run or message they guard commit as one.
    """
    runner = conn if isinstance(conn, Runner) else await runner_for(conn)
    row = await runner.first(select_by_id(tables.threads, lock=lock), {"id": thread_id, "tenant_id": tenant})
    if row is None:
        raise not_found("thread", thread_id)
    return row


async def load_assistant(conn: AsyncConnection | Runner, tenant: str, assistant_id: str) -> Row:
    """The tenant's assistant; raises NotFound otherwise."""
    runner = conn if isinstance(conn, Runner) else await runner_for(conn)
    row = await find_row(runner, tables.assistants, tenant, assistant_id)
    if row is None:
        raise not_found("assistant", assistant_id)
    return row


async def load_vector_store(conn: AsyncConnection, tenant: str, vector_store_id: str) -> RowMapping:
    """The tenant's vector store; raises NotFound otherwise."""
    row = await get_row(conn, tables.vector_stores, tenant, vector_store_id)
    if row is None:
        raise not_found("vector store", vector_store_id)
    return row
