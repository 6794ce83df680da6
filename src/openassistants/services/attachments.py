"""What a message's attachments and a tool_resources ``vector_stores`` helper set up: files given for
file_search go into a vector store (the thread's own, made on first need, as the hosted API does),
where they wait to be ingested (the service that created them then wakes the ingestors)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from openassistants.schemas.common import ToolResources, ToolResourcesCreate
from openassistants.schemas.messages import ImageFilePart, MessageCreate
from openassistants.schemas.vector_stores import ExpiresAfter
from openassistants.services.lookup import load_file
from openassistants.services.resources import check_tool_resources, tool_resources_to_stored
from openassistants.services.vector_store_files import attach_files
from openassistants.services.vector_stores import insert_vector_store
from openassistants.storage import tables
from openassistants.tools.registry import TOOLS

#: Vector stores made for a thread's attachments expire a week after the thread last used them.
THREAD_STORE_EXPIRY = ExpiresAfter(anchor="last_active_at", days=7)


async def create_tool_resources(
    conn: AsyncConnection, tenant: str, value: ToolResources | ToolResourcesCreate | None
) -> dict[str, Any]:
    """The stored tool_resources, creating the vector store a ``vector_stores`` helper describes."""
    file_search = value.file_search if value is not None else None
    helpers = getattr(file_search, "vector_stores", None)
    if value is None or file_search is None or not helpers:
        stored = tool_resources_to_stored(value)
        await check_tool_resources(conn, tenant, stored)
        return stored
    ids = list(file_search.vector_store_ids or [])
    for helper in helpers:
        store = await insert_vector_store(conn, tenant, name=None, metadata=helper.metadata)
        await attach_files(
            conn, tenant, store["id"], [(f, helper.chunking_strategy, None) for f in helper.file_ids]
        )
        ids.append(store["id"])
    # The helper is done: what is stored is the plain form, with the new store's id.
    created = file_search.model_copy(update={"vector_stores": None, "vector_store_ids": ids})
    stored = tool_resources_to_stored(value.model_copy(update={"file_search": created}))
    await check_tool_resources(conn, tenant, stored)
    return stored


async def index_attachments(
    conn: AsyncConnection, tenant: str, thread_id: str, messages: list[MessageCreate]
) -> None:
    """Checks that every file the messages name is the tenant's (NotFound otherwise), then puts files
    attached for a tool that searches vector stores (file_search) into the thread's vector store
    for it (creating it if needed)."""
    await check_message_files(conn, tenant, messages)
    for kind, key in _store_tools():
        file_ids = [
            a.file_id for m in messages for a in m.attachments or [] if any(t.type == kind for t in a.tools)
        ]
        if file_ids:
            store_id = await _thread_store(conn, tenant, thread_id, kind, key)
            await attach_files(conn, tenant, store_id, [(f, None, None) for f in dict.fromkeys(file_ids)])


def _store_tools() -> list[tuple[str, str]]:
    """The tool types whose tool_resources are vector stores, and their key."""
    return [
        (kind, resource.key) for kind, resource in TOOLS.with_resources() if resource.kind == "vector_store"
    ]


async def _thread_store(conn: AsyncConnection, tenant: str, thread_id: str, kind: str, key: str) -> str:
    """The thread's vector store for the tool ``kind``: its first, or a new one (expiring a week
    after the thread last used it)."""
    threads = tables.threads
    resources = dict(
        (await conn.execute(select(threads.c.tool_resources).where(threads.c.id == thread_id))).scalar() or {}
    )
    store_ids = list((resources.get(kind) or {}).get(key) or [])
    if store_ids:
        return str(store_ids[0])
    store = await insert_vector_store(conn, tenant, name=None, expires_after=THREAD_STORE_EXPIRY)
    resources[kind] = {key: [store["id"]]}
    await conn.execute(update(threads).where(threads.c.id == thread_id).values(tool_resources=resources))
    return str(store["id"])


async def check_message_files(conn: AsyncConnection, tenant: str, messages: list[MessageCreate]) -> None:
    """Every file the messages name, attached for either tool or shown as an ``image_file`` part, is
    one of the tenant's: an unknown or another tenant's id is a 404, as for file_search attachments,
    rather than a reference stored to dangle (staging files for a run filters by tenant anyway)."""
    await check_files(conn, tenant, named_files(messages))


async def check_files(conn: AsyncConnection, tenant: str, file_ids: list[str]) -> None:
    """Each of ``file_ids`` (once, however often named) is one of the tenant's files, else a 404."""
    for file_id in dict.fromkeys(file_ids):
        await load_file(conn, tenant, file_id)


def named_files(messages: list[MessageCreate]) -> list[str]:
    """The ids of the files the messages name: attached, or shown as ``image_file`` parts."""
    named = [a.file_id for m in messages for a in m.attachments or []]
    for m in messages:
        if not isinstance(m.content, str):
            named.extend(p.image_file.file_id for p in m.content if isinstance(p, ImageFilePart))
    return named


def queues_ingestion(
    tool_resources: ToolResources | ToolResourcesCreate | None = None,
    messages: list[MessageCreate] | None = None,
) -> bool:
    """Whether a request with these parts leaves files waiting for the ingestor."""
    file_search = tool_resources.file_search if tool_resources is not None else None
    if file_search is not None and getattr(file_search, "vector_stores", None):
        return True
    attachments = [a for m in messages or [] for a in m.attachments or []]
    if not attachments:
        return False
    kinds = {kind for kind, _ in _store_tools()}
    return any(t.type in kinds for a in attachments for t in a.tools)
