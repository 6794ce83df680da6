"""WebSocket mode of /v1/responses: one persistent connection over which the client sends
``response.create`` events (the body of ``POST /v1/responses``, streamed implicitly) and receives
each response's events as JSON text messages, the same events as the HTTP stream.

Responses on one connection are answered one after another, in the order asked; a ``stream_id``
names a lane of its own, answered alongside the others, and is echoed on every event of its
responses. A turn continues the last with ``previous_response_id``, on this connection or, for
stored responses, on a new one after a reconnect (``store: false`` ones are kept until the
connection closes, as hosted: services/responses/connection_local.py). A bad event gets an
``error`` event shaped as the HTTP error (``status``, ``error.param``) and the connection goes on.

Each ``response.create`` takes a token of the key's rate limit, as an HTTP request does, and one
connection holds at most ``MAX_IN_FLIGHT`` responses queued or streaming: beyond, a 429 ``error``
event. A lane whose responses are all answered is dropped, so stream ids cost nothing once done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
import pydantic
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from openassistants.api.errors import translate_validation_error
from openassistants.api.ratelimit import RateLimits
from openassistants.errors import APIError, InvalidRequest, RateLimited
from openassistants.schemas.responses import ResponseCreate
from openassistants.services.responses import connection_local, read
from openassistants.services.responses.create import create_response
from openassistants.services.runtime import Runtime

router = APIRouter(tags=["responses"])
logger = logging.getLogger("openassistants.streaming")

#: The lane of responses created without a ``stream_id``.
_DEFAULT_LANE = ""

#: Responses one connection may have queued or streaming at once, over all its lanes: each is a run
#: and a task, so without a bound one client could queue work without end over one connection.
MAX_IN_FLIGHT = 64


@router.websocket("/responses")
async def connect(websocket: WebSocket) -> None:
    # Authenticated by AuthMiddleware before the handshake, as any /v1 request.
    tenant: str = websocket.scope["state"]["tenant"]
    runtime: Runtime = websocket.app.state.runtime
    await websocket.accept()
    await _Session(websocket, runtime, tenant).serve()


class _Session:
    def __init__(self, websocket: WebSocket, rt: Runtime, tenant: str) -> None:
        self.websocket, self.rt, self.tenant = websocket, rt, tenant
        self.lanes: dict[str, asyncio.Queue[tuple[ResponseCreate, str | None]]] = {}
        self.workers: set[asyncio.Task[None]] = set()
        self.in_flight = 0
        #: This connection's ``store: false`` responses (services/responses/connection_local.py).
        self.unstored: list[str] = []
        # Frames of concurrent lanes must not interleave mid-send.
        self.sending = asyncio.Lock()

    async def serve(self) -> None:
        try:
            while True:
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                # Text frames as the SDKs send them; a binary frame holding JSON is read alike.
                await self._receive(message.get("text") or message.get("bytes") or b"")
        except WebSocketDisconnect:
            pass
        finally:
            # The responses go on (as after an HTTP stream's client leaves); only relaying stops.
            workers = list(self.workers)
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            await connection_local.forget(self.rt, self.tenant, self.unstored)

    async def _receive(self, text: str | bytes) -> None:
        stream_id: str | None = None
        try:
            event = orjson.loads(text)
            if not isinstance(event, dict):
                raise InvalidRequest("A client event must be a JSON object.", param=None)
            raw_stream_id = event.get("stream_id")
            stream_id = raw_stream_id if isinstance(raw_stream_id, str) else None
            body = _create_body(event)
        except orjson.JSONDecodeError:
            await self._error(InvalidRequest("The client event is not valid JSON.", param=None), None)
            return
        except APIError as error:
            await self._error(error, stream_id)
            return
        refused = self._refusal()
        if refused is not None:
            await self._error(refused, stream_id)
            return
        lane = stream_id if stream_id is not None else _DEFAULT_LANE
        queue = self.lanes.get(lane)
        if queue is None:
            queue = self.lanes[lane] = asyncio.Queue()
            worker = asyncio.create_task(self._lane(lane, queue))
            self.workers.add(worker)
            worker.add_done_callback(self.workers.discard)
        self.in_flight += 1
        queue.put_nowait((body, stream_id))

    def _refusal(self) -> RateLimited | None:
        if self.in_flight >= MAX_IN_FLIGHT:
            return RateLimited(
                f"Too many responses in progress on this connection: at most {MAX_IN_FLIGHT} may be "
                "queued or streaming at once. Wait for one to finish, or open another connection.",
                code="rate_limit_exceeded",
            )
        limits: RateLimits | None = self.websocket.app.state.rate_limits
        return limits.refused(self.tenant) if limits is not None else None

    async def _lane(self, lane: str, queue: asyncio.Queue[tuple[ResponseCreate, str | None]]) -> None:
        # Ends once its queue is empty: nothing is put in between (no await), and the next event
        # naming this lane starts it again.
        while not queue.empty():
            body, stream_id = queue.get_nowait()
            try:
                await self._answer(body, stream_id)
            finally:
                self.in_flight -= 1
        del self.lanes[lane]

    async def _answer(self, body: ResponseCreate, stream_id: str | None) -> None:
        sequence = 0
        try:
            read.check_include(body.include)
            unstored = body.store is False
            if unstored:
                body = body.model_copy(update={"store": True})
            created = await create_response(self.rt, self.tenant, body)
            if unstored:
                self.unstored.append(created["id"])
            async for _, payload in read.stream_of(self.rt, self.tenant, created):
                sequence = payload["sequence_number"] + 1
                if unstored and "response" in payload:
                    payload = {**payload, "response": {**payload["response"], "store": False}}
                await self._send(payload, stream_id)
        except APIError as error:
            await self._error(error, stream_id)
        except Exception:
            # Said on the connection, which goes on: the lane's next responses are still answered.
            logger.exception("a response over WebSocket failed")
            failure = {
                "type": "error",
                "status": 500,
                "sequence_number": sequence,
                "error": {
                    "type": "server_error",
                    "code": "server_error",
                    "message": "The server had an error while processing your request.",
                    "param": None,
                },
            }
            await self._send(failure, stream_id)

    async def _error(self, error: APIError, stream_id: str | None) -> None:
        await self._send({"type": "error", "status": error.status_code, **error.to_body()}, stream_id)

    async def _send(self, event: dict[str, Any], stream_id: str | None) -> None:
        if stream_id is not None:
            event = {**event, "stream_id": stream_id}
        async with self.sending:
            with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):  # the client is gone
                await self.websocket.send_text(orjson.dumps(event).decode())


def _create_body(event: dict[str, Any]) -> ResponseCreate:
    """The ``response.create`` event's request, validated as ``POST /v1/responses`` validates it."""
    kind = event.get("type")
    if kind == "response.steer":
        raise InvalidRequest("Steering a response is not available on this server.", param="type")
    if kind != "response.create":
        raise InvalidRequest(
            f"Invalid value: {orjson.dumps(kind).decode()}. Supported values are: 'response.create'.",
            param="type",
            code="invalid_value",
        )
    fields = {k: v for k, v in event.items() if k not in ("type", "stream_id")}
    if fields.get("background"):
        raise InvalidRequest(
            "Background responses are not supported over WebSocket: create them with POST /v1/responses.",
            param="background",
        )
    if fields.get("stream") is False:
        raise InvalidRequest("Responses over WebSocket are always streamed.", param="stream")
    fields["stream"] = True
    try:
        return ResponseCreate.model_validate(fields)
    except pydantic.ValidationError as error:
        raise translate_validation_error([dict(e) for e in error.errors()], fields) from None
