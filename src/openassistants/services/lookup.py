"""One loader per resource: the tenant's object, inside an open transaction or read, or the API's 404.

Each takes a connection or a ``Runner`` and returns a ``Row`` (storage/queries.find_row). A child
resource is found under its parent (a message in its thread, a step in its run…): the parent's
existence is the caller's to check first, when the 404 must name the parent.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection

from openassistants.errors import NotFound, not_found
from openassistants.services.responses.ids import conversation_not_found, thread_id_of
from openassistants.storage import tables
from openassistants.storage.db import Database
from openassistants.storage.prepared import Row, Runner
from openassistants.storage.queries import find_row
from openassistants.storage.shared_finds import SharedFinds

Connection = AsyncConnection | Runner


async def _found(
    conn: Connection,
    table: Table,
    kind: str,
    tenant: str,
    object_id: str,
    *,
    lock: bool = False,
    **scope: Any,
) -> Row:
    """The row ``find_row`` finds, or the API's 404 naming it as ``kind``."""
    row = await find_row(conn, table, tenant, object_id, lock=lock, **scope)
    if row is None:
        raise not_found(kind, object_id)
    return row


async def load_assistant(conn: Connection, tenant: str, assistant_id: str) -> Row:
    return await _found(conn, tables.assistants, "assistant", tenant, assistant_id)


_SHARED_ASSISTANTS = SharedFinds(tables.assistants)


async def read_assistant(db: Database, tenant: str, assistant_id: str) -> Row:
    """``load_assistant`` as a read of its own, outside any transaction. On PostgreSQL, reads of
    assistants that arrive while one is out share the next statement (``SharedFinds``); its row is
    shared too, so it must not be changed."""
    if db.is_sqlite:
        async with db.reader() as reader:
            return await load_assistant(reader, tenant, assistant_id)
    row = await _SHARED_ASSISTANTS.find(db, tenant, assistant_id)
    if row is None:
        raise not_found("assistant", assistant_id)
    return row


async def load_thread(conn: Connection, tenant: str, thread_id: str, *, lock: bool = False) -> Row:
    """``lock`` takes the thread's row lock (PostgreSQL; SQLite's single writer already serializes)
    so that "no active run" checks and the run or message they guard commit as one."""
    return await _found(conn, tables.threads, "thread", tenant, thread_id, lock=lock)


async def load_conversation(conn: Connection, tenant: str, conversation: str, *, lock: bool = False) -> Row:
    """The thread a ``conv_`` (or ``thread_``) id names, with the Responses API's 404."""
    try:
        return await load_thread(conn, tenant, thread_id_of(conversation), lock=lock)
    except NotFound:
        raise conversation_not_found(conversation) from None


async def load_message(conn: Connection, tenant: str, thread_id: str, message_id: str) -> Row:
    return await _found(conn, tables.messages, "message", tenant, message_id, thread_id=thread_id)


async def load_run(conn: Connection, tenant: str, thread_id: str, run_id: str) -> Row:
    return await _found(conn, tables.runs, "run", tenant, run_id, thread_id=thread_id)


async def load_step(conn: Connection, tenant: str, run_id: str, step_id: str) -> Row:
    return await _found(conn, tables.run_steps, "run step", tenant, step_id, run_id=run_id)


def file_not_found(file_id: str) -> NotFound:
    """OpenAI's wording for an unknown (or another tenant's, or expired) file."""
    return NotFound(f"No such File object: {file_id}", param="id")


def is_expired(file: Row, now: int) -> bool:
    """A file past its ``expires_at`` is gone, whether or not its row is deleted yet."""
    expires_at = file["expires_at"]
    return expires_at is not None and expires_at <= now


async def load_file(conn: Connection, tenant: str, file_id: str) -> Row:
    """Raises NotFound for an unknown, another tenant's or an expired file."""
    row = await find_row(conn, tables.files, tenant, file_id)
    if row is None or is_expired(row, int(time.time())):
        raise file_not_found(file_id)
    return row


async def load_vector_store(conn: Connection, tenant: str, vector_store_id: str) -> Row:
    return await _found(conn, tables.vector_stores, "vector store", tenant, vector_store_id)


async def load_vector_store_file(conn: Connection, tenant: str, vector_store_id: str, file_id: str) -> Row:
    return await _found(
        conn, tables.vector_store_files, "vector store file", tenant, file_id, vector_store_id=vector_store_id
    )


async def load_file_batch(conn: Connection, tenant: str, vector_store_id: str, batch_id: str) -> Row:
    return await _found(
        conn, tables.file_batches, "file batch", tenant, batch_id, vector_store_id=vector_store_id
    )
