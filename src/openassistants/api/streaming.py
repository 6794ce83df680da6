"""Server-sent event responses for runs: replay the run's log after a given event id, then follow
it live until the run stops or needs action, then ``done``.

The client leaving only ends this response (Starlette cancels the generator); the run goes on.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from starlette.responses import StreamingResponse

from openassistants.events import DONE, Event, EventBus, encode_sse, error_event
from openassistants.metrics import count_stream

logger = logging.getLogger("openassistants.streaming")

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def run_event_stream(bus: EventBus, run_id: str, after: int) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        try:
            async for batch in bus.subscribe(run_id, after):
                yield b"".join([encode_sse(event, event_id) for event_id, event in batch])
        except Exception:
            # After the first byte an HTTP error is no longer possible: say it in the stream.
            logger.exception("stream of run %s failed", run_id)
            yield encode_sse(error_event("server_error", "The event stream failed."), None)
        yield DONE

    return _sse_response(body())


def replayed_event_stream(events: list[tuple[int, Event]]) -> StreamingResponse:
    """A stream of events already logged (the run has stopped), then ``done``."""

    async def body() -> AsyncIterator[bytes]:
        yield b"".join([encode_sse(event, event_id) for event_id, event in events]) + DONE

    return _sse_response(body())


def _sse_response(body: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(count_stream(body), media_type="text/event-stream", headers=SSE_HEADERS)
