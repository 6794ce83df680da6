"""Files in vector stores, and file batches: attach (queueing ingestion), list, retrieve, update
attributes, remove, read back as chunks; batch create, retrieve, cancel, list files."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from openassistants.ids import new_id
from openassistants.schemas.common import ListParams
from openassistants.schemas.vector_stores import (
    FileBatchCreate,
    VectorStoreFileCreate,
    VectorStoreFileUpdate,
    chunking_to_stored,
)
from openassistants.services.lookup import (
    load_file,
    load_file_batch,
    load_vector_store,
    load_vector_store_file,
)
from openassistants.services.wire_object import wire_object
from openassistants.statuses import BatchStatus, FileStatus
from openassistants.storage import tables
from openassistants.storage.db import Database
from openassistants.storage.prepared import Row
from openassistants.storage.queries import delete_remembering_cursors, list_body, page
from openassistants.storage.search import bump_chunks_version

if TYPE_CHECKING:
    from openassistants.services.claim_loop import Wakeable

VF = tables.vector_store_files
B = tables.file_batches
C = tables.chunks
FILE_STATUSES = tuple(status.value for status in FileStatus)


def empty_counts() -> dict[str, int]:
    return {**dict.fromkeys(FILE_STATUSES, 0), "total": 0}


async def file_stats(
    conn: AsyncConnection, column: Any, keys: Iterable[str]
) -> dict[str, tuple[dict[str, int], int]]:
    """(file_counts, usage_bytes) per vector store (or batch), from one GROUP BY."""
    keys = list(keys)
    stats: dict[str, tuple[dict[str, int], int]] = {k: (empty_counts(), 0) for k in keys}
    if not keys:
        return stats
    rows = await conn.execute(
        select(column, VF.c.status, func.count(), func.coalesce(func.sum(VF.c.usage_bytes), 0))
        .where(column.in_(keys))
        .group_by(column, VF.c.status)
    )
    for key, status, count, usage in rows:
        counts, total_usage = stats[key]
        counts[status] = int(count)
        counts["total"] += int(count)
        stats[key] = (counts, total_usage + int(usage))
    return stats


_FILE_COLUMNS = (
    "usage_bytes",
    "created_at",
    "vector_store_id",
    "status",
    "last_error",
    "chunking_strategy",
    "attributes",
)


def vector_store_file_to_wire(row: Mapping[str, Any]) -> dict[str, Any]:
    body = wire_object("vector_store.file", row, _FILE_COLUMNS)
    body["attributes"] = row["attributes"] or {}
    return body


def batch_to_wire(row: Mapping[str, Any], counts: dict[str, int]) -> dict[str, Any]:
    if row["cancelled"]:
        status = BatchStatus.cancelled.value
    elif counts[FileStatus.in_progress]:
        status = BatchStatus.in_progress.value
    elif counts["total"] and counts[FileStatus.failed] == counts["total"]:
        status = BatchStatus.failed.value
    else:
        status = BatchStatus.completed.value
    return {
        "id": row["id"],
        "object": "vector_store.files_batch",
        "created_at": row["created_at"],
        "vector_store_id": row["vector_store_id"],
        "status": status,
        "file_counts": counts,
    }


async def _load_store_file(conn: AsyncConnection, tenant: str, vector_store_id: str, file_id: str) -> Row:
    """The store's file; NotFound names the store when the store itself is unknown."""
    await load_vector_store(conn, tenant, vector_store_id)
    return await load_vector_store_file(conn, tenant, vector_store_id, file_id)


async def attach_files(
    conn: AsyncConnection,
    tenant: str,
    vector_store_id: str,
    entries: list[tuple[str, Any, dict[str, Any] | None]],
    *,
    batch_id: str | None = None,
) -> int:
    """Adds files (file id, chunking strategy, attributes) to a store, waiting for ingestion;
    returns how many were added. Raises NotFound for a file the tenant does not have. A file
    already in the store stays as it is."""
    added = 0
    now = int(time.time())
    for file_id, strategy, attributes in entries:
        await load_file(conn, tenant, file_id)
        existing = await conn.execute(
            select(VF.c.id).where(VF.c.vector_store_id == vector_store_id, VF.c.id == file_id)
        )
        if existing.first() is not None:
            continue
        await conn.execute(
            VF.insert().values(
                id=file_id,
                tenant_id=tenant,
                vector_store_id=vector_store_id,
                batch_id=batch_id,
                created_at=now,
                status=FileStatus.in_progress.value,
                last_error=None,
                chunking_strategy=chunking_to_stored(strategy),
                attributes=attributes,
                usage_bytes=0,
            )
        )
        added += 1
    return added


async def create_vector_store_file(
    db: Database, tenant: str, vector_store_id: str, body: VectorStoreFileCreate, *, ingestion: Wakeable
) -> dict[str, Any]:
    async with db.write() as conn:
        await load_vector_store(conn, tenant, vector_store_id)
        await attach_files(
            conn, tenant, vector_store_id, [(body.file_id, body.chunking_strategy, body.attributes)]
        )
        row = await load_vector_store_file(conn, tenant, vector_store_id, body.file_id)
    await ingestion.wake()
    return vector_store_file_to_wire(row)


async def get_vector_store_file(
    db: Database, tenant: str, vector_store_id: str, file_id: str
) -> dict[str, Any]:
    async with db.read() as conn:
        return vector_store_file_to_wire(await _load_store_file(conn, tenant, vector_store_id, file_id))


async def update_vector_store_file(
    db: Database, tenant: str, vector_store_id: str, file_id: str, body: VectorStoreFileUpdate
) -> dict[str, Any]:
    async with db.write() as conn:
        await _load_store_file(conn, tenant, vector_store_id, file_id)
        await conn.execute(
            update(VF)
            .where(VF.c.vector_store_id == vector_store_id, VF.c.id == file_id)
            .values(attributes=body.attributes)
        )
        return vector_store_file_to_wire(await load_vector_store_file(conn, tenant, vector_store_id, file_id))


async def delete_vector_store_file(
    db: Database, tenant: str, vector_store_id: str, file_id: str
) -> dict[str, Any]:
    """Removes the file from the store (the File itself is kept); its chunks leave results at once."""
    async with db.write() as conn:
        await _load_store_file(conn, tenant, vector_store_id, file_id)
        await conn.execute(delete(C).where(C.c.vector_store_id == vector_store_id, C.c.file_id == file_id))
        await delete_remembering_cursors(
            conn, VF, VF.c.vector_store_id == vector_store_id, VF.c.id == file_id
        )
        await bump_chunks_version(conn, [vector_store_id])
    return {"id": file_id, "object": "vector_store.file.deleted", "deleted": True}


async def list_vector_store_files(
    db: Database,
    tenant: str,
    vector_store_id: str,
    params: ListParams,
    status: str | None,
    batch_id: str | None = None,
) -> dict[str, Any]:
    scope: dict[str, Any] = {"vector_store_id": vector_store_id, "tenant_id": tenant}
    if status is not None:
        scope["status"] = status
    async with db.read() as conn:
        await load_vector_store(conn, tenant, vector_store_id)
        if batch_id is not None:
            await load_file_batch(conn, tenant, vector_store_id, batch_id)
            scope["batch_id"] = batch_id
        rows, has_more = await page(conn, VF, scope, **params.model_dump())
    return list_body([vector_store_file_to_wire(r) for r in rows], has_more)


async def vector_store_file_content(
    db: Database, tenant: str, vector_store_id: str, file_id: str
) -> dict[str, Any]:
    """The parsed text of the file as it was chunked (chunks without their overlap repeated)."""
    async with db.read() as conn:
        await _load_store_file(conn, tenant, vector_store_id, file_id)
        rows = await conn.execute(
            select(C.c.text)
            .where(C.c.vector_store_id == vector_store_id, C.c.file_id == file_id)
            .order_by(C.c.chunk_index)
        )
        texts = [r[0] for r in rows]
    return {
        "object": "vector_store.file_content.page",
        "data": [{"type": "text", "text": t} for t in texts],
        "has_more": False,
        "next_page": None,
    }


# --- batches ----------------------------------------------------------------------------------


async def _batch_wire(conn: AsyncConnection, row: Mapping[str, Any]) -> dict[str, Any]:
    counts, _ = (await file_stats(conn, VF.c.batch_id, [row["id"]]))[row["id"]]
    return batch_to_wire(row, counts)


async def create_file_batch(
    db: Database, tenant: str, vector_store_id: str, body: FileBatchCreate, *, ingestion: Wakeable
) -> dict[str, Any]:
    batch_id = new_id("file_batch")
    async with db.write() as conn:
        await load_vector_store(conn, tenant, vector_store_id)
        await conn.execute(
            B.insert().values(
                id=batch_id,
                tenant_id=tenant,
                vector_store_id=vector_store_id,
                created_at=int(time.time()),
                cancelled=False,
            )
        )
        entries = [(e.file_id, e.chunking_strategy, e.attributes) for e in body.entries()]
        await attach_files(conn, tenant, vector_store_id, entries, batch_id=batch_id)
        wire = await _batch_wire(conn, await load_file_batch(conn, tenant, vector_store_id, batch_id))
    await ingestion.wake()
    return wire


async def get_file_batch(db: Database, tenant: str, vector_store_id: str, batch_id: str) -> dict[str, Any]:
    async with db.read() as conn:
        return await _batch_wire(conn, await load_file_batch(conn, tenant, vector_store_id, batch_id))


async def cancel_file_batch(db: Database, tenant: str, vector_store_id: str, batch_id: str) -> dict[str, Any]:
    """Files of the batch not yet ingested become ``cancelled``; finished ones stay."""
    async with db.write() as conn:
        await load_file_batch(conn, tenant, vector_store_id, batch_id)
        await conn.execute(update(B).where(B.c.id == batch_id).values(cancelled=True))
        await conn.execute(
            update(VF)
            .where(VF.c.batch_id == batch_id, VF.c.status == FileStatus.in_progress.value)
            .values(status=FileStatus.cancelled.value)
        )
        return await _batch_wire(conn, await load_file_batch(conn, tenant, vector_store_id, batch_id))
