"""Server-sent event responses for runs: replay the run's log after a given event id, then follow
it live until the run stops or needs action, then ``done``.

The client leaving only ends this response (``EventStreamResponse`` cancels it); the run goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from openassistants.bus.base import EventBus
from openassistants.events import DONE, Event, encode_sse, error_event
from openassistants.metrics import count_stream
from openassistants.run_events import ends_stream

logger = logging.getLogger("openassistants.streaming")

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def run_event_stream(bus: EventBus, run_id: str, after: int) -> EventStreamResponse:
    async def body() -> AsyncIterator[bytes]:
        # A run just created here is started by its executor's task, scheduled meanwhile: letting it
        # go first, its ``in_progress`` goes out with the run's first events, in one write of three.
        await asyncio.sleep(0)
        ended = False
        try:
            async for batch in bus.subscribe(run_id, after):
                chunk = b"".join([encode_sse(event, event_id) for event_id, event in batch])
                # The run's last event, ``done`` and the response's end go out in one write.
                ended = ends_stream(batch[-1][1])
                yield chunk + DONE if ended else chunk
        except Exception:
            # After the first byte an HTTP error is no longer possible: say it in the stream.
            logger.exception("stream of run %s failed", run_id)
            ended = False
            yield encode_sse(error_event("server_error", "The event stream failed."), None)
        if not ended:
            yield DONE

    return _sse_response(body())


def replayed_event_stream(events: list[tuple[int, Event]]) -> EventStreamResponse:
    """A stream of events already logged (the run has stopped), then ``done``."""

    async def body() -> AsyncIterator[bytes]:
        yield b"".join([encode_sse(event, event_id) for event_id, event in events]) + DONE

    return _sse_response(body())


def _sse_response(body: AsyncIterator[bytes]) -> EventStreamResponse:
    return EventStreamResponse(count_stream(body), last=DONE)


class EventStreamResponse(Response):
    """``text/event-stream`` of ``body``, sent as it comes; ends early if the client leaves.

    Starlette's ``StreamingResponse`` does the same under an ASGI 2.3 server (uvicorn's version) with
    an anyio task group: a task for the body, cancel scopes, a weak set of tasks; for a burst of runs
    that was several percent of the CPU each spends before its first token. Here one plain task waits
    for ``http.disconnect`` and cancels the sending one, which then ends quietly.
    """

    media_type = "text/event-stream"

    def __init__(self, body: AsyncGenerator[bytes], *, last: bytes | None = None) -> None:
        """``last``: what ends the stream's last chunk (``done``), sent with the response's end."""
        self.stream = body
        self.last = last
        self.status_code = 200
        self.background = None
        self.init_headers(SSE_HEADERS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sender = asyncio.current_task()
        assert sender is not None
        sending = True

        def stop_sending(watch: asyncio.Future[None]) -> None:
            # A callback runs while the sender waits, so the cancel lands in the ``try`` below, unless
            # the sender has since left it (a disconnect as the stream ended): then nothing is done.
            if sending and not watch.cancelled():
                sender.cancel()

        left = asyncio.ensure_future(_client_left(receive))
        left.add_done_callback(stop_sending)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            more, last = True, self.last
            async for chunk in self.stream:
                # The last chunk ends the response in the same write (after it the body only returns).
                more = last is None or not chunk.endswith(last)
                await send({"type": "http.response.body", "body": chunk, "more_body": more})
            if more:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            client_left = left.done() and not left.cancelled()
            if not client_left or sender.uncancel() > 0:
                raise  # cancelled by someone else (shutting down): not ours to swallow
        finally:
            sending = False
            left.cancel()
            await self.stream.aclose()  # its ``finally`` blocks run now, not when it is collected


async def _client_left(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
