"""Loading a tenant's object inside an open transaction, or raising the API's 404."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from openassistants.errors import not_found
from openassistants.storage import tables
from openassistants.storage.queries import get_row


async def load_thread(
    conn: AsyncConnection, tenant: str, thread_id: str, *, lock: bool = False
) -> RowMapping:
    """The tenant's thread; raises NotFound otherwise.

    ``lock`` takes the thread's row lock (PostgreSQL; SQLite's single writer already serializes) so
    that "no active run" checks and the run or message they guard commit as one.
    """
    if lock:
        t = tables.threads
        stmt = select(t).where(t.c.id == thread_id, t.c.tenant_id == tenant).with_for_update()
        row = (await conn.execute(stmt)).mappings().first()
    else:
        row = await get_row(conn, tables.threads, tenant, thread_id)
    if row is None:
        raise not_found("thread", thread_id)
    return row


async def load_assistant(conn: AsyncConnection, tenant: str, assistant_id: str) -> RowMapping:
    """The tenant's assistant; raises NotFound otherwise."""
    row = await get_row(conn, tables.assistants, tenant, assistant_id)
    if row is None:
        raise not_found("assistant", assistant_id)
    return row
