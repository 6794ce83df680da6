"""Server-sent events of a response: ``event: <type>`` and its JSON, one chunk each, as they come.

The Responses API ends a stream with its last event (``response.completed`` …), without ``[DONE]``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson

from openassistants.api.streaming import EventStreamResponse
from openassistants.metrics import count_stream

logger = logging.getLogger("openassistants.streaming")


def encode(name: str, payload: dict[str, Any]) -> bytes:
    return b"".join((b"event: ", name.encode(), b"\ndata: ", orjson.dumps(payload), b"\n\n"))


def response_event_stream(events: AsyncIterator[tuple[str, dict[str, Any]]]) -> EventStreamResponse:
    async def body() -> AsyncIterator[bytes]:
        sequence = 0
        try:
            async for name, payload in events:
                sequence = payload["sequence_number"] + 1
                yield encode(name, payload)
        except Exception:
            # After the first byte an HTTP error is no longer possible: say it in the stream.
            logger.exception("a response stream failed")
            error = {
                "type": "error",
                "sequence_number": sequence,
                "code": "server_error",
                "message": "The event stream failed.",
                "param": None,
            }
            yield encode("error", error)

    return EventStreamResponse(count_stream(body()))
