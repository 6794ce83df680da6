"""Pure ASGI middleware: request ids and access logs, body size limits, API-key auth.

Pure ASGI rather than ``BaseHTTPMiddleware`` because these run on every request and must not buffer
streaming responses.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from dataclasses import KW_ONLY, dataclass

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openassistants.api.errors import as_api_error, error_response
from openassistants.api.metrics import RequestTimer
from openassistants.errors import (
    APIError,
    AuthenticationError,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
)
from openassistants.tenants import OPEN_TENANT, tenant_for_key

_LOGGER_NAME = "openassistants.access"
access_logger = logging.getLogger(_LOGGER_NAME)

#: File uploads may be larger than other bodies: api/uploads.py streams them to disk and holds the file
#: itself to max_upload_bytes; this is room for the multipart framing and form fields around it.
UPLOAD_PATH = "/v1/files"
UPLOAD_OVERHEAD_BYTES = 64 * 1024


@dataclass(eq=False, slots=True)
class RequestContextMiddleware:
    """Gives each request an ``x-request-id``, caps its body size, logs one JSON line and times it.

    Outermost of ours, so that requests refused by the others (401, 413, 429) are logged and timed too.
    """

    app: ASGIApp
    _: KW_ONLY
    max_body_bytes: int
    max_upload_bytes: int
    access_log: bool
    timer: RequestTimer | None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # 128 random bits as 32 hex digits, as a uuid4 gave, for a fifth of its cost (every request).
        request_id = "req_" + secrets.token_hex(16)
        id_header = (b"x-request-id", request_id.encode())
        # Starlette sends a 500 from outside every middleware, so its handler adds the id itself.
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message["headers"] = [*message.get("headers", []), id_header]
            await send(message)

        try:
            limit = self._body_limit(scope)
            declared = _content_length(scope)
            if declared is not None and declared > limit:
                await error_response(_too_large(limit))(scope, receive, send_with_id)
                return
            null_error = _null_in_url(scope)
            if null_error is not None:
                await error_response(null_error)(scope, receive, send_with_id)
                return
            try:
                await self.app(scope, _limited(receive, limit), send_with_id)
            except Exception as exc:
                if response_started:
                    raise  # half a response: only closing the connection tells the client
                # Answered here rather than by Starlette's last-resort handler, which re-raises so
                # that the server closes the connection, under a client's next request on it.
                await error_response(as_api_error(exc))(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            if self.timer is not None:
                self.timer.observe(scope, status, seconds)
            if self.access_log and access_logger.isEnabledFor(logging.INFO):
                line = orjson.dumps(
                    {
                        "request_id": request_id,
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "duration_ms": round(seconds * 1000, 2),
                    }
                ).decode()
                # makeRecord and handle rather than info(): info() also walks the stack to find its
                # caller, which the access log's format never shows.
                access_logger.handle(
                    access_logger.makeRecord(_LOGGER_NAME, logging.INFO, "", 0, line, (), None)
                )

    def _body_limit(self, scope: Scope) -> int:
        if scope["method"] == "POST" and scope["path"] == UPLOAD_PATH:
            return self.max_upload_bytes + UPLOAD_OVERHEAD_BYTES
        return self.max_body_bytes


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _null_in_url(scope: Scope) -> APIError | None:
    """A NUL (``%00``) in the path or query: no id or cursor holds one, and PostgreSQL text cannot."""
    if "\x00" in scope["path"]:
        return NotFound(f"Invalid URL ({scope['method']} {scope['path']})")
    if b"%00" in scope["query_string"]:
        return InvalidRequest("Invalid query string: it contains a null character (%00).")
    return None


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"Request body too large: the limit is {limit} bytes.", param=None)


def _limited(receive: Receive, limit: int) -> Receive:
    """Counts body bytes as they arrive, for bodies sent without a Content-Length."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _too_large(limit)
        return message

    return wrapped


class AuthMiddleware:
    """Resolves the tenant from ``Authorization: Bearer <key>`` for every ``/v1`` request.

    With no keys configured everyone is one tenant (the CLI only allows that on loopback).
    """

    def __init__(self, app: ASGIApp, *, api_keys: list[str]) -> None:
        self.app = app
        self.keys = [(key.encode(), tenant_for_key(key)) for key in api_keys]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not scope["path"].startswith("/v1"):
            await self.app(scope, receive, send)
            return
        tenant = self._tenant(scope)
        if isinstance(tenant, APIError):
            # A refused WebSocket handshake is answered as HTTP too (Starlette sends a response to a
            # handshake as the ASGI extension every server we run on has): the same 401 body.
            await error_response(tenant)(scope, receive, send)
            return
        scope.setdefault("state", {})["tenant"] = tenant
        await self.app(scope, receive, send)

    def _tenant(self, scope: Scope) -> str | APIError:
        if not self.keys:
            return OPEN_TENANT
        presented = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    presented = token.strip()
                break
        if not presented:
            return AuthenticationError(
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                code="invalid_api_key",
            )
        match: str | None = None
        # Compare against every key, in constant time each, so timing reveals neither key nor index.
        for key, tenant in self.keys:
            if hmac.compare_digest(key, presented):
                match = tenant
        if match is None:
            return AuthenticationError(
                f"Incorrect API key provided: {_redact(presented.decode(errors='replace'))}.",
                code="invalid_api_key",
            )
        return match


def _redact(key: str) -> str:
    if len(key) <= 8:
        return "*" * len(key)
    return f"{key[:3]}{'*' * 4}{key[-4:]}"
