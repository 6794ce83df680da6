"""The busiest operations served straight from ASGI, without FastAPI's per-request machinery.

``GET /v1/assistants/{assistant_id}`` and ``GET``/``POST /v1/threads/{thread_id}/messages`` are what a
client polls and writes most, and ``POST /v1/threads/{thread_id}/runs`` starts every run. FastAPI's
request object, dependency solving and per-parameter validation cost more than the database work
behind them (for a run, about as much CPU as creating it), so this layer parses these requests itself
and calls the same functions as the routes in ``assistants.py``, ``messages.py`` and ``runs.py``.
Those routes stay: they describe the operations in the OpenAPI document, and they serve every request
this layer declines, which is any that is not plainly valid (a query parameter out of range or
repeated, a body that is not a JSON ``MessageCreate`` or ``RunCreate``, a HEAD…), so that an invalid
request gets exactly the error it got before.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qsl

import orjson
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openassistants.api.errors import error_response
from openassistants.api.runs import respond_to_new_run
from openassistants.errors import APIError
from openassistants.schemas.common import LIST_CURSOR_MAX_LENGTH, LIST_LIMIT_MAX, ListParams
from openassistants.schemas.messages import MessageCreate
from openassistants.schemas.runs import RunCreate
from openassistants.services import assistants, messages
from openassistants.services.runtime import Runtime

_ASSISTANT = re.compile(r"/v1/assistants/([^/]+)")
_MESSAGES = re.compile(r"/v1/threads/([^/]+)/messages")
_RUNS = re.compile(r"/v1/threads/([^/]+)/runs")
Body = TypeVar("Body", bound=BaseModel)

#: The route templates (as in the OpenAPI document) that ``scope["route_template"]`` names for metrics.
ASSISTANT_ROUTE = "/v1/assistants/{assistant_id}"
MESSAGES_ROUTE = "/v1/threads/{thread_id}/messages"
RUNS_ROUTE = "/v1/threads/{thread_id}/runs"

_ORDERS = frozenset({"asc", "desc"})


class HotRoutes:
    """Serves the operations above when a request is plainly valid; passes everything else on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            method = scope["method"]
            if method == "GET":
                if match := _ASSISTANT.fullmatch(scope["path"]):
                    scope["route_template"] = ASSISTANT_ROUTE
                    await _respond(scope, receive, send, _retrieve_assistant(scope, match[1]))
                    return
                if (match := _MESSAGES.fullmatch(scope["path"])) and (
                    params := _list_params(scope["query_string"])
                ):
                    scope["route_template"] = MESSAGES_ROUTE
                    await _respond(scope, receive, send, _list_messages(scope, match[1], *params))
                    return
            elif method == "POST":
                if match := _MESSAGES.fullmatch(scope["path"]):
                    await self._create_message(scope, receive, send, match[1])
                    return
                # With a query string (``include[]``) the route validates it.
                if not scope["query_string"] and (match := _RUNS.fullmatch(scope["path"])):
                    await self._create_run(scope, receive, send, match[1])
                    return
        await self.app(scope, receive, send)

    async def _create_message(self, scope: Scope, receive: Receive, send: Send, thread_id: str) -> None:
        body = await self._valid_body(scope, receive, send, MessageCreate)
        if body is not None:
            scope["route_template"] = MESSAGES_ROUTE
            await _respond(scope, receive, send, _create(scope, thread_id, body))

    async def _create_run(self, scope: Scope, receive: Receive, send: Send, thread_id: str) -> None:
        body = await self._valid_body(scope, receive, send, RunCreate)
        if body is None:
            return
        scope["route_template"] = RUNS_ROUTE
        try:
            response = await respond_to_new_run(_runtime(scope), scope["state"]["tenant"], thread_id, body)
        except APIError as exc:
            response = error_response(exc)
        await response(scope, receive, send)

    async def _valid_body(self, scope: Scope, receive: Receive, send: Send, model: type[Body]) -> Body | None:
        """The request body as ``model``; None when this layer has answered (the body was over the size
        limit, or the client left) or has passed the request on (the body was not plainly valid)."""
        try:
            raw = await _read_body(receive)
        except APIError as exc:  # the body is over the size limit
            await error_response(exc)(scope, receive, send)
            return None
        if raw is None:  # the client left
            return None
        body = _parse_body(scope, raw, model)
        if body is None:
            await self.app(scope, _replay(raw, receive), send)
        return body


async def _respond(scope: Scope, receive: Receive, send: Send, outcome: Awaitable[dict[str, Any]]) -> None:
    """Awaits the operation and sends its JSON, or the error it raised, as the FastAPI route would."""
    try:
        content = await outcome
    except APIError as exc:
        await error_response(exc)(scope, receive, send)
        return
    body = orjson.dumps(content)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _runtime(scope: Scope) -> Runtime:
    runtime: Runtime = scope["app"].state.runtime
    return runtime


async def _retrieve_assistant(scope: Scope, assistant_id: str) -> dict[str, Any]:
    return await assistants.get_assistant(_runtime(scope).db, scope["state"]["tenant"], assistant_id)


async def _list_messages(
    scope: Scope, thread_id: str, params: ListParams, run_id: str | None
) -> dict[str, Any]:
    return await messages.list_messages(
        _runtime(scope).db, scope["state"]["tenant"], thread_id, params, run_id
    )


async def _create(scope: Scope, thread_id: str, body: MessageCreate) -> dict[str, Any]:
    runtime = _runtime(scope)
    return await messages.create_message(
        runtime.db, scope["state"]["tenant"], thread_id, body, ingestion=runtime.ingestor
    )


def _list_params(query_string: bytes) -> tuple[ListParams, str | None] | None:
    """The list's parameters, or None unless each is given at most once and plainly valid."""
    if not query_string:
        return ListParams.model_construct(limit=20, order="desc", after=None, before=None), None
    values: dict[str, str] = {}
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if name in values:
            return None
        values[name] = value
    limit = values.get("limit", "20")
    if not (
        limit.isascii()
        and limit.isdigit()
        and len(limit) <= len(str(LIST_LIMIT_MAX))
        and 1 <= int(limit) <= LIST_LIMIT_MAX
    ):
        return None
    if values.get("order", "desc") not in _ORDERS:
        return None
    order: Literal["asc", "desc"] = "asc" if values.get("order") == "asc" else "desc"
    ids = [values.get(name) for name in ("after", "before", "run_id")]
    if any(i is not None and not 0 < len(i) <= LIST_CURSOR_MAX_LENGTH for i in ids):
        return None
    after, before, run_id = ids
    return ListParams.model_construct(limit=int(limit), order=order, after=after, before=before), run_id


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _parse_body(scope: Scope, raw: bytes, model: type[Body]) -> Body | None:
    """The request body as ``model``, or None unless it is JSON, declared so, and valid."""
    content_type = next((value for name, value in scope["headers"] if name == b"content-type"), None)
    if content_type is None or content_type.partition(b";")[0].strip() != b"application/json":
        return None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    try:
        return model.model_validate(data)
    except ValidationError:
        return None


def _replay(raw: bytes, receive: Receive) -> Receive:
    """``receive`` for the next app, which reads again the body this layer has already read."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": raw, "more_body": False}

    return replay
