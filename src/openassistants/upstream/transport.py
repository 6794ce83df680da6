"""An httpx transport that sends with aiohttp: the model client keeps httpx's API (requests, responses,
timeouts, errors), while the bytes travel through aiohttp's C HTTP parser and connection pool.

Why: a server holds one model stream per running run, hundreds at once. httpx's own transport
(httpcore on anyio) costs about 11 ms of CPU per 50-chunk stream at 300 concurrent streams (its pool
is scanned per request, each read passes anyio's cancel scopes and h11's pure-Python parser); through
aiohttp the same stream costs about 1.4 ms (measured in one run, ``docs/benchmarks.md``, issue 3).
The official ``openai`` SDK offers the same swap for the same reason (its ``aiohttp`` extra).

As httpx's transports do, this one turns every error of the library underneath into httpx's own,
the most specific first, keeping the original as ``__cause__``: no aiohttp exception gets past it.

    aiohttp                                           httpx
    ────────────────────────────────────────────────  ──────────────────────
    ConnectionTimeoutError (no connection in time)    ConnectTimeout
    SocketTimeoutError, other timeouts                ReadTimeout
    ClientConnectorError (refused, DNS, TLS)          ConnectError
    ServerDisconnectedError, ClientPayloadError,      ReadError
    other connection errors
    ClientResponseError (a malformed response)        RemoteProtocolError
    any other ClientError                             TransportError
"""

from __future__ import annotations

import errno
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from socket import gaierror

import aiohttp
import httpx
from yarl import URL

#: Seconds an idle pooled connection is kept when ``Limits.keepalive_expiry`` is unset (httpx's default).
DEFAULT_KEEPALIVE_SECONDS = 5.0

_ERRORS: list[tuple[type[BaseException], type[httpx.TransportError]]] = [
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (TimeoutError, httpx.ReadTimeout),  # SocketTimeoutError and the rest of ServerTimeoutError
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.ClientConnectionError, httpx.ReadError),
    (aiohttp.ClientPayloadError, httpx.ReadError),
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),
    (aiohttp.ClientError, httpx.TransportError),
]


@contextmanager
def _httpx_errors(request: httpx.Request) -> Iterator[None]:
    try:
        yield
    except (aiohttp.ClientError, TimeoutError) as exc:
        for source, target in _ERRORS:
            if isinstance(exc, source):
                raise target(str(exc) or type(exc).__name__, request=request) from exc
        raise  # unreachable: ClientError is the last entry


class _ResponseStream(httpx.AsyncByteStream):
    """The response body as aiohttp reads it: each piece as soon as it arrives."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors(self._request):
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        # A body read to its end leaves the connection reusable; one left unread closes it.
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Plain HTTP/1.1 with a connection pool of ``limits.max_connections``; no proxies or certificates
    from the environment (the caller's settings are the one source of configuration)."""

    def __init__(self, limits: httpx.Limits) -> None:
        self._limits = limits
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Made on first use: an aiohttp session belongs to the event loop it was made on.
        if self._session is None:
            keepalive = self._limits.keepalive_expiry
            connector = aiohttp.TCPConnector(
                limit=self._limits.max_connections or 0,
                keepalive_timeout=DEFAULT_KEEPALIVE_SECONDS if keepalive is None else keepalive,
                # Certificates checked as httpx's own transport checks them (certifi's authorities).
                ssl=httpx.create_ssl_context(trust_env=False),
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                # httpx decodes the body (and reports a body it cannot decode as its DecodingError).
                auto_decompress=False,
                # Every header is httpx's: aiohttp adds none of its own.
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
                trust_env=False,
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        with _httpx_errors(request):
            response = await self._client().request(
                request.method,
                URL(str(request.url), encoded=True),
                headers=list(request.headers.multi_items()),
                data=await request.aread() or None,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    # Waiting for a pooled connection plus connecting: httpx's pool timeout.
                    connect=timeouts.get("pool"),
                    sock_connect=timeouts.get("connect"),
                    # The longest silence between two reads, as httpx's read timeout.
                    sock_read=timeouts.get("read"),
                ),
            )
        return httpx.Response(
            status_code=response.status,
            headers=list(response.raw_headers),
            stream=_ResponseStream(response, request),
            request=request,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": (response.reason or "").encode()},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def failure_words(exc: httpx.TransportError) -> str:
    """What went wrong, as words that follow the server's name: "refused the connection", "timed out
    waiting for the reply"… Built from the error's type and cause, so it never quotes a header or key."""
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        return "did not accept the connection in time"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out waiting for the reply"
    cause: BaseException | None = exc
    while cause is not None:
        # asyncio reports a refusal as a plain OSError with its errno; aiohttp wraps it (os_error).
        if isinstance(cause, ConnectionRefusedError) or getattr(cause, "errno", None) == errno.ECONNREFUSED:
            return "refused the connection (is a model server running there?)"
        if isinstance(cause, gaierror):
            return "could not be found (its host name did not resolve)"
        cause = getattr(cause, "os_error", None) or cause.__cause__
    if isinstance(exc, httpx.ReadError):
        return "dropped the connection"
    return f"could not be reached ({exc})"  # aiohttp's words: host, port and the system's reason
