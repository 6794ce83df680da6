"""Vector stores: create (with files), retrieve, update, list, delete; their file counts and status,
which are derived from their files' rows rather than kept as counters that could drift."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from openassistants.ids import new_id
from openassistants.schemas.common import ListParams
from openassistants.schemas.vector_stores import ExpiresAfter, VectorStoreCreate, VectorStoreUpdate
from openassistants.services.lookup import load_vector_store
from openassistants.services.vector_store_files import attach_files, file_stats
from openassistants.statuses import FileStatus, VectorStoreStatus
from openassistants.storage import tables
from openassistants.storage.db import Database
from openassistants.storage.queries import delete_remembering_cursors, list_body, page

if TYPE_CHECKING:
    from openassistants.services.claim_loop import Wakeable

V = tables.vector_stores
VF = tables.vector_store_files
DAY = 86_400


def expires_at_for(expires_after: dict[str, Any] | None, last_active_at: int) -> int | None:
    if not expires_after:
        return None
    return last_active_at + int(expires_after["days"]) * DAY


def vector_store_to_wire(
    row: RowMapping | dict[str, Any], counts: dict[str, int], usage: int
) -> dict[str, Any]:
    now = int(time.time())
    if row["expires_at"] is not None and row["expires_at"] <= now:
        status = VectorStoreStatus.expired.value
    elif counts[FileStatus.in_progress]:
        status = VectorStoreStatus.in_progress.value
    else:
        status = VectorStoreStatus.completed.value
    return {
        "id": row["id"],
        "object": "vector_store",
        "created_at": row["created_at"],
        "name": row["name"] or "",
        "usage_bytes": usage,
        "file_counts": counts,
        "status": status,
        "expires_after": row["expires_after"],
        "expires_at": row["expires_at"],
        "last_active_at": row["last_active_at"],
        "metadata": row["metadata"],
    }


async def wire_for(conn: AsyncConnection, row: RowMapping | dict[str, Any]) -> dict[str, Any]:
    counts, usage = (await file_stats(conn, VF.c.vector_store_id, [row["id"]]))[row["id"]]
    return vector_store_to_wire(row, counts, usage)


async def insert_vector_store(
    conn: AsyncConnection,
    tenant: str,
    *,
    name: str | None,
    description: str | None = None,
    expires_after: ExpiresAfter | None = None,
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    now = int(time.time())
    after = expires_after.model_dump() if expires_after is not None else None
    values = {
        "id": new_id("vector_store"),
        "tenant_id": tenant,
        "created_at": now,
        "name": name,
        "description": description,
        "metadata": metadata or {},
        "expires_after": after,
        "expires_at": expires_at_for(after, now),
        "last_active_at": now,
    }
    await conn.execute(V.insert().values(values))
    return values


async def create_vector_store(
    db: Database, tenant: str, body: VectorStoreCreate, *, ingestion: Wakeable
) -> dict[str, Any]:
    """Creates the store with its files waiting for ingestion, and wakes the ingestors."""

    async with db.write() as conn:
        store = await insert_vector_store(
            conn,
            tenant,
            name=body.name,
            description=body.description,
            expires_after=body.expires_after,
            metadata=body.metadata,
        )
        await attach_files(
            conn, tenant, store["id"], [(f, body.chunking_strategy, None) for f in body.file_ids]
        )
        wire = await wire_for(conn, store)
    if body.file_ids:
        await ingestion.wake()
    return wire


async def get_vector_store(db: Database, tenant: str, vector_store_id: str) -> dict[str, Any]:
    async with db.read() as conn:
        return await wire_for(conn, await load_vector_store(conn, tenant, vector_store_id))


async def update_vector_store(
    db: Database, tenant: str, vector_store_id: str, body: VectorStoreUpdate
) -> dict[str, Any]:
    async with db.write() as conn:
        row = await load_vector_store(conn, tenant, vector_store_id)
        changes: dict[str, Any] = {}
        if "name" in body.model_fields_set:
            changes["name"] = body.name
        if "metadata" in body.model_fields_set:
            changes["metadata"] = body.metadata or {}
        if "expires_after" in body.model_fields_set:
            after = body.expires_after.model_dump() if body.expires_after is not None else None
            changes["expires_after"] = after
            changes["expires_at"] = expires_at_for(after, row["last_active_at"] or row["created_at"])
        if changes:
            await conn.execute(update(V).where(V.c.id == vector_store_id).values(changes))
        return await wire_for(conn, await load_vector_store(conn, tenant, vector_store_id))


async def delete_vector_store(db: Database, tenant: str, vector_store_id: str) -> dict[str, Any]:
    async with db.write() as conn:
        await load_vector_store(conn, tenant, vector_store_id)
        await conn.execute(delete(tables.chunks).where(tables.chunks.c.vector_store_id == vector_store_id))
        await conn.execute(delete(VF).where(VF.c.vector_store_id == vector_store_id))
        await conn.execute(
            delete(tables.file_batches).where(tables.file_batches.c.vector_store_id == vector_store_id)
        )
        await delete_remembering_cursors(conn, V, V.c.id == vector_store_id)
    return {"id": vector_store_id, "object": "vector_store.deleted", "deleted": True}


async def list_vector_stores(db: Database, tenant: str, params: ListParams) -> dict[str, Any]:
    async with db.read() as conn:
        rows, has_more = await page(conn, V, {"tenant_id": tenant}, **params.model_dump())
        stats = await file_stats(conn, VF.c.vector_store_id, [r["id"] for r in rows])
    return list_body([vector_store_to_wire(r, *stats[r["id"]]) for r in rows], has_more)


async def touch(conn: AsyncConnection, vector_store_ids: list[str]) -> None:
    """Mark stores active now (search, file_search): their expiry counts from here."""
    now = int(time.time())
    rows = await conn.execute(select(V.c.id, V.c.expires_after).where(V.c.id.in_(vector_store_ids)))
    for store_id, after in rows.all():
        await conn.execute(
            update(V)
            .where(V.c.id == store_id)
            .values(last_active_at=now, expires_at=expires_at_for(after, now))
        )


async def usable_store_ids(conn: AsyncConnection, tenant: str, ids: list[str]) -> list[str]:
    """The ids among ``ids`` that are the tenant's and not expired."""
    if not ids:
        return []
    now = int(time.time())
    rows = await conn.execute(
        select(V.c.id).where(
            V.c.id.in_(ids),
            V.c.tenant_id == tenant,
            (V.c.expires_at.is_(None)) | (V.c.expires_at > now),
        )
    )
    return [r[0] for r in rows]
