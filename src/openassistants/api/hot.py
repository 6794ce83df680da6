"""The busiest operations served straight from ASGI, without FastAPI's per-request machinery.

``GET /v1/assistants/{assistant_id}`` and ``GET``/``POST /v1/threads/{thread_id}/messages`` are what a
client polls and writes most, and ``POST /v1/threads/{thread_id}/runs`` starts every run. FastAPI's
request object, dependency solving and per-parameter validation cost more than the database work
behind them (for a run, about as much CPU as creating it), so this layer reads these requests itself,
then calls the very route functions of ``assistants.py``, ``messages.py`` and ``runs.py`` with what it
read: what an operation does, and how its answer and its errors are rendered, is written once, there.

A query is read into the route's own parameter model (``ListParams``) and refused, if it must be, with
the words FastAPI's validation of that model gets (``api/errors.py``). A body that is not plainly valid
(not a JSON ``MessageCreate`` or ``RunCreate``) is passed on to the routes, as is every other request
(a HEAD, a run created with ``include[]``…), so that it gets exactly the error FastAPI gives it.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.datastructures import QueryParams
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openassistants.api import assistants, messages, runs
from openassistants.api.errors import error_response, query_error
from openassistants.errors import APIError
from openassistants.schemas.messages import MessageCreate, MessageListParams
from openassistants.schemas.runs import RunCreate
from openassistants.services.runtime import Runtime

_ASSISTANT = re.compile(r"/v1/assistants/([^/]+)")
_MESSAGES = re.compile(r"/v1/threads/([^/]+)/messages")
_RUNS = re.compile(r"/v1/threads/([^/]+)/runs")
Body = TypeVar("Body", bound=BaseModel)
Params = TypeVar("Params", bound=BaseModel)

#: The route templates (as in the OpenAPI document) that ``scope["route_template"]`` names for metrics.
ASSISTANT_ROUTE = "/v1/assistants/{assistant_id}"
MESSAGES_ROUTE = "/v1/threads/{thread_id}/messages"
RUNS_ROUTE = "/v1/threads/{thread_id}/runs"


class HotRoutes:
    """Serves the operations above; passes on what it leaves to FastAPI (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            method = scope["method"]
            if method == "GET":
                if match := _ASSISTANT.fullmatch(scope["path"]):
                    await _answer(scope, receive, send, ASSISTANT_ROUTE, _retrieve_assistant(scope, match[1]))
                    return
                if match := _MESSAGES.fullmatch(scope["path"]):
                    await _answer(scope, receive, send, MESSAGES_ROUTE, _list_messages(scope, match[1]))
                    return
            elif method == "POST":
                if match := _MESSAGES.fullmatch(scope["path"]):
                    await self._create(
                        scope, receive, send, MESSAGES_ROUTE, match[1], MessageCreate, messages.create_message
                    )
                    return
                # With a query string (``include[]``) the route validates it.
                if not scope["query_string"] and (match := _RUNS.fullmatch(scope["path"])):
                    await self._create(scope, receive, send, RUNS_ROUTE, match[1], RunCreate, runs.create_run)
                    return
        await self.app(scope, receive, send)

    async def _create(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        template: str,
        thread_id: str,
        model: type[Body],
        route: Callable[[str, Body, Runtime, str], Awaitable[Response]],
    ) -> None:
        """Calls ``route`` (a message's or a run's creation) with a plainly valid ``model``; otherwise
        answers as FastAPI would (a body over the size limit) or passes the request on."""
        try:
            raw = await _read_body(receive)
        except APIError as exc:  # the body is over the size limit
            await error_response(exc)(scope, receive, send)
            return
        if raw is None:  # the client left
            return
        body = _parse_body(scope, raw, model)
        if body is None:
            await self.app(scope, _replay(raw, receive), send)
            return
        rt, tenant = _caller(scope)
        await _answer(scope, receive, send, template, route(thread_id, body, rt, tenant))


async def _answer(
    scope: Scope, receive: Receive, send: Send, template: str, outcome: Awaitable[Response]
) -> None:
    """Sends the route's response, or the error it raised, as FastAPI would."""
    scope["route_template"] = template
    try:
        response = await outcome
    except APIError as exc:
        response = error_response(exc)
    await response(scope, receive, send)


def _caller(scope: Scope) -> tuple[Runtime, str]:
    """The process's runtime, and the tenant AuthMiddleware found for this request."""
    runtime: Runtime = scope["app"].state.runtime
    return runtime, scope["state"]["tenant"]


async def _retrieve_assistant(scope: Scope, assistant_id: str) -> Response:
    rt, tenant = _caller(scope)
    return await assistants.retrieve_assistant(assistant_id, rt.db, tenant)


async def _list_messages(scope: Scope, thread_id: str) -> Response:
    params = _query(scope["query_string"], MessageListParams)
    rt, tenant = _caller(scope)
    return await messages.list_messages(thread_id, params, rt.db, tenant)


def _query(query_string: bytes, model: type[Params]) -> Params:
    """The query read into ``model`` as FastAPI reads a route's query model: the last of a repeated
    parameter counts, unknown ones are ignored, and an invalid value gets FastAPI's 400."""
    if not query_string:
        return model()
    try:
        return model.model_validate(dict(QueryParams(query_string).items()))
    except ValidationError as exc:
        raise query_error(exc) from None


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
