"""``openassistants worker``: an executor process with no API, stopped cleanly by SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal

from openassistants.config import Settings
from openassistants.services.runtime import open_runtime

logger = logging.getLogger("openassistants.worker")


async def run_worker(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with open_runtime(settings, execute=True) as runtime:
        logger.info("worker %s executing runs", runtime.executor.worker_id)
        await stop.wait()
        logger.info("worker %s stopping: no new runs, finishing running ones", runtime.executor.worker_id)
