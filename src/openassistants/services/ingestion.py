"""Background ingestion of files into vector stores: parse → chunk → index, then embed.

A file is ``completed`` as soon as its chunks are written: from then on search finds it through the
full-text index. A small file's vectors are written with its chunks (``INLINE_VECTOR_TOKENS``); a
larger file's chunks' vectors follow in the background (``_Vectorizer``), and search's dense
ranking uses each chunk once its vector is stored (``embedding`` empty means pending). The local model
embeds about a chunk a second at best, a 100-page PDF in minutes, where parsing and indexing take
seconds; so a file is searchable at once, and ranked by both rankings when its vectors arrive. Chunks
still pending when a process stops are found again when one starts (``files_pending_vectors``).

Files waiting to be ingested are claimed from the ``vector_store_files`` table
(storage/ingest_claims.py) by a claim loop (services/claim_loop.py: wake-ups, polling, leases of
``ingest_lease_seconds``, ``ingest_shutdown_grace_seconds``). A few files are ingested at a time;
parsing and chunking run in threads, embedding through the embedder boundary. Writing the chunks is
idempotent (a file's old chunks are replaced) and conditional on the file still being ``in_progress``
and claimed by this process, so a file removed or a batch cancelled meanwhile is
left alone, and a file retried after a crash does no harm.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from typing import Any

import numpy as np
from sqlalchemy import delete, select, update

from openassistants.bus.notify import INGEST_QUEUED, Notifier
from openassistants.config import Settings
from openassistants.errors import NotFound
from openassistants.retrieval.chunking import chunk_text
from openassistants.retrieval.parsing import ParseError, parse_document
from openassistants.services.claim_loop import ClaimLoop, ClaimSettings
from openassistants.services.files import read_file_bytes
from openassistants.statuses import FileStatus
from openassistants.storage import ingest_claims, tables
from openassistants.storage.blobs import BlobStore
from openassistants.storage.db import Database
from openassistants.storage.ingest_claims import IngestJob
from openassistants.storage.search import (
    bump_chunks_version,
    chunks_pending_vectors,
    files_pending_vectors,
    set_vectors,
)
from openassistants.upstream.embeddings import Embedder, EmbeddingError, Vectors

logger = logging.getLogger("openassistants.ingestion")

VF = tables.vector_store_files
C = tables.chunks
F = tables.files

#: Files ingested at the same time by one process.
CONCURRENT_INGESTIONS = 4
#: While a file's vectors arrive, searches start using them at most this often (each time, every
#: process reloads the store's matrix).
PUBLISH_VECTORS_SECONDS = 10.0
#: A file of at most this many tokens (over its chunks) gets its vectors before it is completed: a
#: few seconds of the local model at most, so a small file is ranked by both rankings from the start.
INLINE_VECTOR_TOKENS = 2000
#: A file whose vectors failed (the embedder's own retries exhausted) is tried again after this long.
RETRY_VECTORS_SECONDS = 30.0


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
        self.claims: ClaimLoop[IngestJob, IngestJob] = ClaimLoop(
            "ingest",
            logger,
            notifier,
            INGEST_QUEUED,
            ClaimSettings(
                lease_seconds=settings.ingest_lease_seconds,
                shutdown_grace_seconds=settings.ingest_shutdown_grace_seconds,
                poll_seconds=settings.queue_poll_seconds,
                capacity=CONCURRENT_INGESTIONS,
            ),
            self,
        )
        self._vectors: asyncio.Task[None] | None = None
        self._vectorizer = _Vectorizer(db, embedder, RETRY_VECTORS_SECONDS)

    async def start(self) -> None:
        if self.db.is_sqlite:
            # One process: files a previous one was ingesting are simply taken again.
            async with self.db.write() as conn:
                await ingest_claims.release_lapsed_files(conn, only_lapsed=False)
        self.claims.start(dispatch=True)
        self._vectors = asyncio.create_task(self._vectorizer.run(), name="ingest-vectors")

    async def stop(self) -> None:
        """Stop claiming; files being ingested get ``ingest_shutdown_grace_seconds`` to finish, then
        their claims are given up (``_ingest``), for another process to take at once."""
        await self.claims.stop()
        if self._vectors is not None:
            self._vectors.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._vectors

    async def wake(self) -> None:
        """Tell ingestors (here or elsewhere) that files wait to be ingested (never raises)."""
        await self.claims.wake()

    # --- the claim loop's work (services/claim_loop.ClaimWork) ------------------------------

    def run_job(self, job: IngestJob) -> Coroutine[Any, Any, None]:
        return self._ingest(job)

    @staticmethod
    def job_key(job: IngestJob) -> IngestJob:
        return job

    async def claim_jobs(self, free: int) -> list[IngestJob]:
        async with self.db.write() as conn:
            return await ingest_claims.claim_files(
                conn, self.worker_id, free, self.settings.ingest_lease_seconds
            )

    async def renew_leases(self, jobs: list[IngestJob]) -> None:
        async with self.db.lease_write() as conn:
            await ingest_claims.renew_file_leases(
                conn, self.worker_id, jobs, self.settings.ingest_lease_seconds
            )

    async def sweep_lapsed(self) -> None:
        async with self.db.write() as conn:
            released = await ingest_claims.release_lapsed_files(conn)
        if released:
            await self.wake()

    async def _ingest(self, job: IngestJob) -> None:
        tenant, store_id, file_id = job
        try:
            await self._run(tenant, store_id, file_id)
        except asyncio.CancelledError:
            # Stopping past the grace: give the file up now rather than when its lease lapses.
            with contextlib.suppress(Exception):
                await asyncio.shield(self._give_up(job))
            raise
        except ParseError as exc:
            await self._fail(store_id, file_id, exc.code, exc.message)
        except NotFound:
            await self._fail(
                store_id, file_id, "invalid_file", "The file was deleted before it was processed."
            )
        except Exception:
            logger.exception("ingesting %s into %s failed", file_id, store_id)
            await self._fail(store_id, file_id, "server_error", "The file could not be processed.")

    async def _give_up(self, job: IngestJob) -> None:
        async with self.db.write() as conn:
            released = await ingest_claims.release_file(conn, self.worker_id, job)
        if released:
            await self.wake()

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
        vectors = await self._inline_vectors([p.text for p in pieces], sum(p.tokens for p in pieces))
        rows = [
            {
                "tenant_id": tenant,
                "vector_store_id": store_id,
                "file_id": file_id,
                "chunk_index": piece.index,
                "text": piece.text,
                "tokens": piece.tokens,
                # Empty: pending, the vectorizer fills it in.
                "embedding": vectors[i].astype(np.float32).tobytes() if vectors is not None else b"",
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
        logger.info(
            "indexed %s in %s: %d chunks, vectors %s",
            file_id,
            store_id,
            len(rows),
            "to follow" if vectors is None else "too",
        )
        if rows and vectors is None:
            self._vectorizer.add(store_id, file_id)

    async def _inline_vectors(self, texts: list[str], tokens: int) -> Vectors | None:
        """A small file's vectors, computed before it is completed; None for a larger file (or when
        embedding fails), whose vectors then follow in the background."""
        if not texts or tokens > INLINE_VECTOR_TOKENS:
            return None
        try:
            return await self.embedder.embed(texts, kind="passage")
        except EmbeddingError as exc:
            logger.warning("embedding failed, the vectors will follow: %s", exc.message)
            return None

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


class _Vectorizer:
    """Embeds the chunks of completed files that wait for their vectors, one file at a time, first
    come first served (the local model already uses every core).

    Vectors are stored batch by batch, and published (the store's ``chunks_version`` bumped) at most
    every ``PUBLISH_VECTORS_SECONDS`` and when the file is done. An embedding failure is retried after
    ``retry_seconds``; the file stays searchable meanwhile. Several processes may find the same pending
    file after a restart: they compute the same vectors, and only the first write of each is kept.
    """

    def __init__(self, db: Database, embedder: Embedder, retry_seconds: float) -> None:
        self.db = db
        self.embedder = embedder
        self.retry_seconds = retry_seconds
        self._queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._queued: set[tuple[str, str]] = set()

    def add(self, store_id: str, file_id: str) -> None:
        if (store_id, file_id) not in self._queued:
            self._queued.add((store_id, file_id))
            self._queue.put_nowait((store_id, file_id))

    async def run(self) -> None:
        try:
            async with self.db.read() as conn:
                for store_id, file_id in await files_pending_vectors(conn):
                    self.add(store_id, file_id)
        except Exception:
            logger.warning("could not look for chunks without vectors", exc_info=True)
        while True:
            job = await self._queue.get()
            try:
                await self._embed_file(*job)
            except EmbeddingError as exc:
                logger.warning("embedding %s failed, retrying in %.0f s: %s", job[1], self.retry_seconds, exc)
                asyncio.get_running_loop().call_later(self.retry_seconds, self._queue.put_nowait, job)
                continue
            except Exception:
                logger.exception("embedding %s in %s failed", job[1], job[0])
            self._queued.discard(job)

    async def _embed_file(self, store_id: str, file_id: str) -> None:
        async with self.db.read() as conn:
            pending = await chunks_pending_vectors(conn, store_id, file_id)
        published = time.monotonic()
        step = self.embedder.batch_size
        for start in range(0, len(pending), step):
            batch = pending[start : start + step]
            vectors = await self.embedder.embed([text for _, text in batch], kind="passage")
            publish = time.monotonic() - published >= PUBLISH_VECTORS_SECONDS or start + step >= len(pending)
            async with self.db.write() as conn:
                await set_vectors(
                    conn,
                    {
                        chunk_id: vectors[i].astype(np.float32).tobytes()
                        for i, (chunk_id, _) in enumerate(batch)
                    },
                )
                if publish:
                    await bump_chunks_version(conn, [store_id])
            if publish:
                published = time.monotonic()
        logger.info("embedded %d chunks of %s in %s", len(pending), file_id, store_id)
