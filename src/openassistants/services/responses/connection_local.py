"""``store: false`` responses over one WebSocket connection: continued there, as hosted.

The hosted WebSocket mode keeps a connection's unstored responses in memory, so that the next turn
sends only its new input with ``previous_response_id``. Here a chain's history is its responses'
threads, so such a response is created stored and forgotten when the connection closes (after its
run has stopped): removed as any unstored response is, or, on a conversation, hidden (its messages
stay in the conversation). Until then it is retrievable, by id, like a stored one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy import update

from openassistants.errors import NotFound
from openassistants.services.responses import read
from openassistants.services.responses.ids import run_id_of
from openassistants.services.runtime import Runtime
from openassistants.storage import tables

logger = logging.getLogger("openassistants.streaming")

#: How long a closing connection waits for one of its unstored responses to stop before forgetting
#: it; one still running after that is left stored (and logged).
STOP_WAIT_SECONDS = 600.0


async def forget(rt: Runtime, tenant: str, response_ids: list[str]) -> None:
    for response_id in response_ids:
        try:
            async with asyncio.timeout(STOP_WAIT_SECONDS):
                await read.wait_until_done(rt, run_id_of(response_id))
        except TimeoutError:
            logger.warning("response %s still runs; its connection closed, it stays stored", response_id)
            continue
        with contextlib.suppress(NotFound):  # deleted meanwhile
            async with rt.db.read() as conn:
                _, stored = await read.load(conn, tenant, response_id, unstored=True)
            if stored["conversation"]:
                async with rt.db.write(inline=True) as conn:
                    R = tables.responses
                    await conn.execute(update(R).where(R.c.run_id == stored["run_id"]).values(store=False))
            else:
                await read.forget_unstored(rt, {**stored, "store": False})
