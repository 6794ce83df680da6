"""``openassistants worker``: an executor process with no API, stopped cleanly by SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import start_http_server

from openassistants.config import Settings
from openassistants.metrics import REGISTRY
from openassistants.services.runtime import open_runtime

logger = logging.getLogger("openassistants.worker")


async def run_worker(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with open_runtime(settings, execute=True) as runtime:
        with _metrics_server(settings):
            logger.info("worker %s executing runs", runtime.executor.worker_id)
            await stop.wait()
            logger.info(
                "worker %s stopping: no new work, finishing what is running", runtime.executor.worker_id
            )


@contextmanager
def _metrics_server(settings: Settings) -> Iterator[None]:
    """A worker has no API, so its metrics (the model upstream's latency and errors happen here) get
    prometheus_client's own small HTTP server, on a thread, when a port is configured."""
    if settings.worker_metrics_port is None:
        yield
        return
    server, thread = start_http_server(
        settings.worker_metrics_port, addr=settings.worker_metrics_host, registry=REGISTRY
    )
    logger.info(
        "worker metrics at http://%s:%d/metrics", settings.worker_metrics_host, settings.worker_metrics_port
    )
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
