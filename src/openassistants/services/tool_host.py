"""What the tools get from the process executing a run (``tools/base.ToolHost``): its database,
settings, searcher, kernels and blob store, and the few service functions a tool needs (reading a
File, storing one it made, which vector stores are usable). Tools never import services: they are
lent these here."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncConnection

from openassistants.code_interpreter.manager import KernelManager
from openassistants.config import Settings
from openassistants.ids import new_id
from openassistants.services.files import blob_key, read_file_bytes
from openassistants.services.turn_host import TurnHost
from openassistants.services.vector_stores import usable_store_ids
from openassistants.statuses import UploadStatus
from openassistants.storage import tables
from openassistants.storage.blobs import BlobStore
from openassistants.storage.db import Database
from openassistants.storage.queries import take_turns_creating
from openassistants.tools.base import Searcher


@dataclass
class ServicesToolHost:
    db: Database
    settings: Settings
    searcher: Searcher | None
    blobs: BlobStore | None
    kernels: KernelManager | None

    @classmethod
    def of(cls, host: TurnHost) -> ServicesToolHost:
        return cls(host.db, host.settings, host.searcher, host.blobs, host.kernels)

    def _blobs(self) -> BlobStore:
        assert self.blobs is not None, "an executing runtime always has a blob store"
        return self.blobs

    async def read_file(self, tenant: str, file_id: str) -> bytes:
        return await read_file_bytes(self._blobs(), tenant, file_id)

    async def create_output_file(self, tenant: str, path: Path, name: str) -> str:
        """Copies a produced file into the blob store as a File with purpose ``assistants_output``."""
        file_id = new_id("file")
        async with self._blobs().stage() as staged:
            with path.open("rb") as handle:
                while chunk := handle.read(1 << 20):
                    await staged.write(chunk)
            size = staged.size
            await staged.commit(blob_key(tenant, file_id))
        async with self.db.write() as conn:
            await take_turns_creating(conn, tables.files, tenant)
            await conn.execute(
                tables.files.insert().values(
                    id=file_id,
                    tenant_id=tenant,
                    created_at=int(time.time()),
                    bytes=size,
                    filename=Path(name).name,
                    purpose="assistants_output",
                    status=UploadStatus.processed.value,
                    status_details=None,
                    expires_at=None,
                )
            )
        return file_id

    async def usable_store_ids(self, conn: AsyncConnection, tenant: str, ids: list[str]) -> list[str]:
        return await usable_store_ids(conn, tenant, ids)
