"""The long-lived parts behind runs, built once per process (API server or worker) and closed with it:
database, model client, cross-process notifier, event bus and executor."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from openassistants.bus.base import EventBus
from openassistants.bus.memory import InProcessEventBus
from openassistants.bus.notify import InProcessNotifier, Notifier, PostgresNotifier
from openassistants.bus.postgres import PostgresEventBus
from openassistants.code_interpreter.manager import KernelManager
from openassistants.config import Settings
from openassistants.services.executor import Executor
from openassistants.services.ingestion import Ingestor
from openassistants.services.models import ModelCatalog
from openassistants.services.search import Searcher
from openassistants.storage.blobs import BlobStore, LocalBlobStore
from openassistants.storage.db import Database
from openassistants.upstream.chat import ChatClient
from openassistants.upstream.embeddings import Embedder, create_embedder
from openassistants.upstream.models import ModelLister


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    db: Database
    bus: EventBus
    notifier: Notifier
    executor: Executor
    blobs: BlobStore
    embedder: Embedder
    searcher: Searcher
    ingestor: Ingestor
    models: ModelCatalog


@asynccontextmanager
async def open_runtime(settings: Settings, *, execute: bool) -> AsyncIterator[Runtime]:
    """Migrate the database and start everything; on exit, stop in reverse order.

    SQLite is one process: notifications and events stay in memory. PostgreSQL may be shared by
    many API processes and workers: LISTEN/NOTIFY and the run_events table connect them.
    """
    db = Database(
        settings.effective_database_url,
        pool_size=settings.database_pool_size,
        read_pool_size=settings.database_read_pool_size,
    )
    await db.migrate()
    blobs = LocalBlobStore(settings.data_dir / "files")
    notifier: Notifier
    bus: InProcessEventBus | PostgresEventBus
    if db.is_sqlite:
        notifier = InProcessNotifier()
        bus = InProcessEventBus(settings.event_retention_seconds, settings.event_memory_mb << 20)
    else:
        pg_notifier = PostgresNotifier(db.asyncpg_dsn)
        notifier = pg_notifier
        bus = PostgresEventBus(pg_notifier, settings.event_retention_seconds)
    chat = ChatClient(settings)
    lister = ModelLister()
    models = ModelCatalog(chat.routes, lister)
    # Which model servers this process uses, and whether they answer: logged once they do (or not).
    upstreams_logged = asyncio.create_task(models.log_upstreams(settings))
    embedder = create_embedder(settings)
    searcher = Searcher(db, embedder)
    # Model code runs only where runs execute; the kernels' warm pool fills in the background.
    kernels = KernelManager(settings, (settings.data_dir / "kernels").resolve()) if execute else None
    executor = Executor(
        settings, db, bus, chat, notifier, searcher, execute=execute, blobs=blobs, kernels=kernels
    )
    ingestor = Ingestor(settings, db, blobs, embedder, notifier, executor.worker_id)
    await notifier.start()
    await bus.start()
    await executor.start()
    await ingestor.start()
    kernels_starting = asyncio.create_task(kernels.start()) if kernels is not None else None
    try:
        yield Runtime(
            settings=settings,
            db=db,
            bus=bus,
            notifier=notifier,
            executor=executor,
            blobs=blobs,
            embedder=embedder,
            searcher=searcher,
            ingestor=ingestor,
            models=models,
        )
    finally:
        upstreams_logged.cancel()
        await asyncio.gather(upstreams_logged, return_exceptions=True)
        if kernels is not None and kernels_starting is not None:
            kernels_starting.cancel()
            await asyncio.gather(kernels_starting, return_exceptions=True)
            await kernels.close()
        # Together: each waits out its own shutdown grace for the work it is doing.
        await asyncio.gather(ingestor.stop(), executor.stop())
        await bus.aclose()
        await notifier.close()
        await chat.aclose()
        await lister.aclose()
        await embedder.aclose()
        await db.close()
