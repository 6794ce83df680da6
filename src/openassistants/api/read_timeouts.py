"""Read timeouts for slow clients, at the HTTP protocol (uvicorn's httptools), below ASGI.

uvicorn times out only an idle keep-alive connection: a client that sends a request's headers a byte
at a time ("slowloris"), or stops half-way through a body, holds its connection, and its buffers, for
as long as it likes; a few hundred such clients exhaust the process's sockets. Here a request's headers
must be complete within ``header_timeout`` of its first byte (of the connection, for its first request),
and a body may pause at most ``body_timeout`` between chunks, while the server is reading it (not while
the app has paused reading because it has not consumed what came). Past either, the connection is
closed: with a 408 when no response has begun.

Protocol-level because ASGI only sees a request once its headers are complete. For the same reason a
request the HTTP parser refuses (bytes no request line or header may hold) is answered here, with
OpenAI's error envelope, as the app answers every other bad request, not uvicorn's plain text.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from openassistants.errors import InvalidRequest

_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s"
)
_TIMEOUT_BODY = orjson.dumps(
    InvalidRequest("The request was not received in time.", code="request_timeout").to_body()
)
_UNPARSABLE_RESPONSE = (
    b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s"
)


def protocol_with_read_timeouts(header_timeout: float, body_timeout: float) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with these timeouts, for ``uvicorn.run(http=...)``."""

    class ReadTimeoutProtocol(_ReadTimeouts):
        header_timeout_seconds = header_timeout
        body_timeout_seconds = body_timeout

    return ReadTimeoutProtocol


class _ReadTimeouts(HttpToolsProtocol):
    header_timeout_seconds: float
    body_timeout_seconds: float

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_timer: asyncio.TimerHandle | None = None
        self._reading_headers = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._expect_headers()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request its parser refuses, as OpenAI's 400 envelope."""
        body = orjson.dumps(InvalidRequest(msg, param=None).to_body())
        self.transport.write(_UNPARSABLE_RESPONSE % (len(body), body))
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._reading_headers:  # a keep-alive connection's next request
            self._expect_headers()

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._reading_headers = False
        self._arm(self.body_timeout_seconds)  # until the body is complete (at once, for none)

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._arm(self.body_timeout_seconds)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._stop_timer()

    def _expect_headers(self) -> None:
        self._reading_headers = True
        self._arm(self.header_timeout_seconds)

    def _arm(self, seconds: float) -> None:
        self._stop_timer()
        self._read_timer = self.loop.call_later(seconds, self._expired, seconds)

    def _stop_timer(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _expired(self, seconds: float) -> None:
        self._read_timer = None
        if self.transport.is_closing():
            return
        if not self._reading_headers and self.flow.read_paused:
            # The app has not consumed the body that came: the wait is ours, not the client's.
            self._arm(seconds)
            return
        cycle = self.cycle  # the request being read, or the one before it on this connection
        if cycle is None or cycle.response_complete or not cycle.response_started:
            self.transport.write(_TIMEOUT_RESPONSE % (len(_TIMEOUT_BODY), _TIMEOUT_BODY))
        self.transport.close()
