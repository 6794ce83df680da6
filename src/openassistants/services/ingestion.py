"""Background ingestion of files into vector stores: parse → chunk → embed → index.

Files waiting to be ingested are claimed from the ``vector_store_files`` table
(storage/ingest_claims.py) when a NOTIFY (or, in one process, a direct call) says there is new
work, and every ``queue_poll_seconds`` in case a wake-up was lost. A few files are ingested at a
time; parsing and chunking run in threads, embedding through the embedder boundary. Writing the
chunks is idempotent (a file's old chunks are replaced) and conditional on the file still being
``in_progress`` and claimed by this process, so a file removed or a batch cancelled meanwhile is
left alone, and a file retried after a crash does no harm.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import Any

import numpy as np
from sqlalchemy import delete, select, update

from openassistants.config import Settings
from openassistants.errors import NotFound
from openassistants.retrieval.chunking import chunk_text
from openassistants.retrieval.parsing import ParseError, parse_document
from openassistants.services.files import read_file_bytes
from openassistants.statuses import FileStatus
from openassistants.storage import ingest_claims, tables
from openassistants.storage.blobs import BlobStore
from openassistants.storage.db import Database
from openassistants.storage.ingest_claims import IngestJob
from openassistants.storage.notify import INGEST_QUEUED, Notifier
from openassistants.storage.search import bump_chunks_version
from openassistants.upstream.embeddings import Embedder, EmbeddingError

logger = logging.getLogger("openassistants.ingestion")

VF = tables.vector_store_files
C = tables.chunks
F = tables.files

#: Files ingested at the same time by one process.
CONCURRENT_INGESTIONS = 4
#: Chunks embedded per call.
EMBED_BATCH = 64


class Ingestor:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        blobs: BlobStore,
        embedder: Embedder,
        notifier: Notifier,
        worker_id: str,
    ) -> None:
        self.settings = settings
        self.db = db
        self.blobs = blobs
        self.embedder = embedder
        self.notifier = notifier
        self.worker_id = worker_id
        self._running: dict[IngestJob, asyncio.Task[None]] = {}
        self._wakeup = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        notifier.listen(INGEST_QUEUED, lambda _payload: self._wakeup.set())
        notifier.on_reconnect(self._on_reconnect)

    async def _on_reconnect(self) -> None:
        self._wakeup.set()

    async def start(self) -> None:
        if self.db.is_sqlite:
            # One process: files a previous one was ingesting are simply taken again.
            async with self.db.write() as conn:
                await ingest_claims.release_lapsed_files(conn, only_lapsed=False)
        self._loops = [
            asyncio.create_task(self._dispatch(), name="ingest-dispatch"),
            asyncio.create_task(self._maintain(), name="ingest-maintenance"),
        ]

    async def stop(self) -> None:
        for task in [*self._loops, *self._running.values()]:
            task.cancel()
        await asyncio.gather(*self._loops, *self._running.values(), return_exceptions=True)

    async def wake(self) -> None:
        """Tell ingestors (here or elsewhere) that files wait to be ingested."""
        await self.notifier.notify(INGEST_QUEUED, "")

    async def _dispatch(self) -> None:
        while True:
            self._wakeup.clear()
            free = CONCURRENT_INGESTIONS - len(self._running)
            try:
                async with self.db.write() as conn:
                    jobs = await ingest_claims.claim_files(
                        conn, self.worker_id, free, self.settings.run_lease_seconds
                    )
            except Exception:
                logger.warning("could not claim files to ingest", exc_info=True)
                jobs = []
            for job in jobs:
                task = asyncio.create_task(self._ingest(job), name=f"ingest-{job[2]}")
                self._running[job] = task
                task.add_done_callback(functools.partial(self._finished, job))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self.settings.queue_poll_seconds)

    def _finished(self, job: IngestJob, _task: asyncio.Task[None]) -> None:
        self._running.pop(job, None)
        self._wakeup.set()

    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(self.settings.run_lease_seconds / 3)
            try:
                async with self.db.write() as conn:
                    if self._running:
                        await ingest_claims.renew_file_leases(
                            conn, self.worker_id, list(self._running), self.settings.run_lease_seconds
                        )
                    released = await ingest_claims.release_lapsed_files(conn)
                if released:
                    await self.wake()
            except Exception:
                logger.warning("ingestion maintenance failed", exc_info=True)

    async def _ingest(self, job: IngestJob) -> None:
        tenant, store_id, file_id = job
        try:
            await self._run(tenant, store_id, file_id)
        except ParseError as exc:
            await self._fail(store_id, file_id, exc.code, exc.message)
        except EmbeddingError as exc:
            await self._fail(store_id, file_id, "server_error", f"Embedding failed: {exc.message}")
        except NotFound:
            await self._fail(
                store_id, file_id, "invalid_file", "The file was deleted before it was processed."
            )
        except Exception:
            logger.exception("ingesting %s into %s failed", file_id, store_id)
            await self._fail(store_id, file_id, "server_error", "The file could not be processed.")

    def _mine(self, store_id: str, file_id: str) -> Any:
        return (
            (VF.c.vector_store_id == store_id)
            & (VF.c.id == file_id)
            & (VF.c.status == FileStatus.in_progress.value)
            & (VF.c.worker_id == self.worker_id)
        )

    async def _run(self, tenant: str, store_id: str, file_id: str) -> None:
        async with self.db.read() as conn:
            row = (await conn.execute(select(VF).where(self._mine(store_id, file_id)))).mappings().first()
            name = (await conn.execute(select(F.c.filename).where(F.c.id == file_id))).scalar()
        if row is None:
            return
        if name is None:
            raise ParseError("invalid_file", "The file was deleted before it could be processed.")
        data = await read_file_bytes(self.blobs, tenant, file_id)
        text = await asyncio.to_thread(parse_document, data, name)
        static = row["chunking_strategy"]["static"]
        pieces = await asyncio.to_thread(
            chunk_text, text, static["max_chunk_size_tokens"], static["chunk_overlap_tokens"]
        )
        vectors: list[np.ndarray[Any, Any]] = []
        for start in range(0, len(pieces), EMBED_BATCH):
            batch = [p.text for p in pieces[start : start + EMBED_BATCH]]
            vectors.append(await self.embedder.embed(batch, kind="passage"))
        matrix = np.vstack(vectors).astype(np.float32) if vectors else np.zeros((0, 0), np.float32)
        rows = [
            {
                "tenant_id": tenant,
                "vector_store_id": store_id,
                "file_id": file_id,
                "chunk_index": piece.index,
                "text": piece.text,
                "tokens": piece.tokens,
                "embedding": matrix[i].tobytes(),
            }
            for i, piece in enumerate(pieces)
        ]
        usage = sum(len(p.text.encode()) for p in pieces)
        async with self.db.write() as conn:
            mine = (await conn.execute(select(VF.c.seq).where(self._mine(store_id, file_id)))).first()
            if mine is None:
                return
            await conn.execute(delete(C).where(C.c.vector_store_id == store_id, C.c.file_id == file_id))
            if rows:
                await conn.execute(C.insert(), rows)
            await conn.execute(
                update(VF)
                .where(self._mine(store_id, file_id))
                .values(
                    status=FileStatus.completed.value,
                    usage_bytes=usage,
                    worker_id=None,
                    lease_expires_at=None,
                )
            )
            await bump_chunks_version(conn, [store_id])
        logger.info("ingested %s into %s: %d chunks", file_id, store_id, len(rows))

    async def _fail(self, store_id: str, file_id: str, code: str, message: str) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                update(VF)
                .where(self._mine(store_id, file_id))
                .values(
                    status=FileStatus.failed.value,
                    last_error={"code": code, "message": message},
                    worker_id=None,
                    lease_expires_at=None,
                )
            )
