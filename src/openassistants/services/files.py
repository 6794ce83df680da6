"""Files: upload, retrieve, list, delete and download, with their bytes in the blob store.

Other services reach a file through ``lookup.load_file`` (its row, inside their transaction) and
``read_file_bytes`` (its content). A file past its ``expires_at`` is gone: every lookup answers 404,
and the file's own endpoints delete what is left of it when they meet it.
"""

from __future__ import annotations

import os
import time
import unicodedata
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, or_

from openassistants.errors import InvalidRequest
from openassistants.ids import new_id
from openassistants.schemas.files import FileCreate
from openassistants.services.lookup import file_not_found, is_expired
from openassistants.services.wire_object import wire_object
from openassistants.statuses import UploadStatus
from openassistants.storage import tables
from openassistants.storage.blobs import BlobStore, StagedBlob
from openassistants.storage.db import Database
from openassistants.storage.prepared import Row
from openassistants.storage.queries import (
    delete_remembering_cursors,
    find_row,
    list_body,
    page,
    take_turns_creating,
)
from openassistants.storage.search import bump_chunks_version

T = tables.files
#: Files listed: those not expired at ``now``.
_UNEXPIRED = or_(T.c.expires_at.is_(None), T.c.expires_at > bindparam("now"))

#: The longest stored filename, in characters (most filesystems' limit for one name).
MAX_FILENAME_CHARS = 255
#: What a file is called when its upload named it nothing usable (``""``, ``..``).
FALLBACK_FILENAME = "file"
#: A longer "extension" is not kept whole when a long name is cut to MAX_FILENAME_CHARS.
_MAX_EXTENSION_CHARS = 16


_FILE_COLUMNS = ("bytes", "created_at", "expires_at", "filename", "purpose", "status", "status_details")


def file_to_wire(row: Mapping[str, Any]) -> dict[str, Any]:
    """The ``file`` object exactly as the hosted API returned it."""
    return wire_object("file", row, _FILE_COLUMNS)


def sanitize_filename(raw: str | None) -> str:
    """The name to store for an uploaded file: its last path component, without control characters,
    at most MAX_FILENAME_CHARS long (keeping a short extension)."""
    text = "".join(ch for ch in raw or "" if unicodedata.category(ch) != "Cc")
    name = text.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if name in ("", ".", ".."):
        return FALLBACK_FILENAME
    if len(name) > MAX_FILENAME_CHARS:
        stem, extension = os.path.splitext(name)
        if len(extension) > _MAX_EXTENSION_CHARS:
            stem, extension = name, ""
        name = stem[: MAX_FILENAME_CHARS - len(extension)] + extension
    return name


async def create_file(
    db: Database, blobs: BlobStore, tenant: str, body: FileCreate, filename: str | None, staged: StagedBlob
) -> dict[str, Any]:
    """Stores an upload whose bytes are already in ``staged``; raises InvalidRequest for an empty one."""
    if staged.size == 0:
        raise InvalidRequest("File is empty.", param="file")
    file_id = new_id("file")
    values: dict[str, Any] = {
        "id": file_id,
        "tenant_id": tenant,
        "bytes": staged.size,
        "filename": sanitize_filename(filename),
        "purpose": body.purpose,
        "status": UploadStatus.processed.value,
        "status_details": None,
    }
    # Blob first, then the row: a crash in between leaves an orphan blob, never a file without bytes.
    key = blob_key(tenant, file_id)
    await staged.commit(key)
    try:
        async with db.write() as conn:
            await take_turns_creating(conn, T, tenant)
            values["created_at"] = int(time.time())
            expires_after = body.expires_after
            values["expires_at"] = values["created_at"] + expires_after.seconds if expires_after else None
            await conn.execute(T.insert().values(values))
    except BaseException:
        await blobs.delete(key)
        raise
    return file_to_wire(values)


async def get_file(db: Database, blobs: BlobStore, tenant: str, file_id: str) -> dict[str, Any]:
    """Raises NotFound for an unknown, another tenant's or an expired file."""
    return file_to_wire(await _load_live_file(db, blobs, tenant, file_id))


async def list_files(
    db: Database, tenant: str, *, purpose: str | None, limit: int, order: str, after: str | None
) -> dict[str, Any]:
    scope = {"tenant_id": tenant} if purpose is None else {"tenant_id": tenant, "purpose": purpose}
    async with db.read() as conn:
        rows, has_more = await page(
            conn,
            T,
            scope,
            limit=limit,
            order=order,
            after=after,
            before=None,
            where=_UNEXPIRED,
            where_values={"now": int(time.time())},
        )
    return list_body([file_to_wire(r) for r in rows], has_more)


async def delete_file(db: Database, blobs: BlobStore, tenant: str, file_id: str) -> dict[str, Any]:
    """Deletes the file, its bytes, and its place in every vector store; raises NotFound."""
    row = await _remove_file(db, blobs, tenant, file_id)
    if row is None or is_expired(row, int(time.time())):
        raise file_not_found(file_id)
    return {"id": file_id, "object": "file", "deleted": True}


@dataclass(frozen=True)
class FileContent:
    filename: str
    size: int
    chunks: AsyncIterator[bytes]


async def open_file_content(db: Database, blobs: BlobStore, tenant: str, file_id: str) -> FileContent:
    """The file's bytes, streamed; raises NotFound."""
    row = await _load_live_file(db, blobs, tenant, file_id)
    try:
        chunks = await blobs.open(blob_key(tenant, file_id))
    except FileNotFoundError:
        raise file_not_found(file_id) from None  # deleted since the row was read
    return FileContent(filename=row["filename"], size=row["bytes"], chunks=chunks)


async def read_file_bytes(blobs: BlobStore, tenant: str, file_id: str) -> bytes:
    """The whole content of the tenant's file (for ingestion); raises NotFound once it is deleted.

    It does not check ``expires_at``: callers found the file with ``load_file`` first.
    """
    try:
        return await blobs.read(blob_key(tenant, file_id))
    except FileNotFoundError:
        raise file_not_found(file_id) from None


async def _load_live_file(db: Database, blobs: BlobStore, tenant: str, file_id: str) -> Row:
    """The file's row; an expired one is deleted (with its bytes) and raises NotFound."""
    async with db.reader() as reader:
        row = await find_row(reader, T, tenant, file_id)
    if row is None:
        raise file_not_found(file_id)
    if is_expired(row, int(time.time())):
        await _remove_file(db, blobs, tenant, file_id)
        raise file_not_found(file_id)
    return row


async def _remove_file(db: Database, blobs: BlobStore, tenant: str, file_id: str) -> Row | None:
    """Deletes the file's row and its vector-store rows in one transaction, then its blob."""
    vector_store_files, chunks = tables.vector_store_files, tables.chunks
    async with db.write() as conn:
        row = await find_row(conn, T, tenant, file_id)
        # Of two deletes racing on PostgreSQL, only the one that removed the row goes on.
        if row is None or not await delete_remembering_cursors(
            conn, T, T.c.id == file_id, T.c.tenant_id == tenant
        ):
            return None
        stores = await conn.execute(
            delete(vector_store_files)
            .where(vector_store_files.c.id == file_id, vector_store_files.c.tenant_id == tenant)
            .returning(vector_store_files.c.vector_store_id)
        )
        store_ids = list(stores.scalars())
        await conn.execute(delete(chunks).where(chunks.c.file_id == file_id, chunks.c.tenant_id == tenant))
        await bump_chunks_version(conn, store_ids)
    # After the commit: a crash in between leaves an orphan blob, never a file without bytes.
    await blobs.delete(blob_key(tenant, file_id))
    return row


def blob_key(tenant: str, file_id: str) -> str:
    """Where a file's bytes are in the blob store: under its tenant, so a key never crosses tenants."""
    return f"{tenant}/{file_id}"
