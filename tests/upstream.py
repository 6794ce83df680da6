"""A scripted OpenAI-compatible model server: the one stand-in of the suite, over real HTTP.

Each test scripts the turns of its own model name (``f"script-{uuid4().hex}"``); every
``POST /v1/chat/completions`` for that model plays the next turn, streamed exactly as OpenAI streams
(or as one ``chat.completion`` when ``stream`` is false). A model with no turn left plays ``default``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from openassistants.upstream import Usage
from tests.servers import free_port, serve_in_thread


class _Computed(Enum):
    #: Usage as a real server would count it: prompt_tokens = characters of the messages' text // 4,
    #: completion_tokens = number of streamed chunks.
    COMPUTED = "computed"


COMPUTED = _Computed.COMPUTED


@dataclass(frozen=True)
class Reply:
    """Answer ``text``, in ``chunks`` (default: 4 characters each), waiting ``delay`` before each chunk and
    ``first_delay`` before the first (after the headers). ``usage=None``: report none, like servers that
    ignore ``stream_options``."""

    text: str
    chunks: list[str] | None = None
    delay: float = 0.0
    finish_reason: str = "stop"
    usage: Usage | dict[str, int] | _Computed | None = COMPUTED
    first_delay: float = 0.0


@dataclass(frozen=True)
class ToolCalls:
    """Call the tools ``calls`` ((name, arguments JSON) each), after ``text`` if any. ``ids`` default to
    ``call_<n>``, n counting from 1 per model; each call's arguments stream in ``arg_chunks`` fragments."""

    calls: list[tuple[str, str]]
    ids: list[str] | None = None
    arg_chunks: int = 3
    delay: float = 0.0
    text: str | None = None


@dataclass(frozen=True)
class Fail:
    """Answer an OpenAI error envelope with ``status``, ``times`` requests in a row."""

    status: int = 500
    message: str = "scripted failure"
    times: int = 1
    retry_after: float | None = None


@dataclass(frozen=True)
class Hang:
    """Send the headers, then nothing for ``seconds``; then end the body, empty."""

    seconds: float


@dataclass(frozen=True)
class Disconnect:
    """Stream the Echo reply's first ``after_chunks`` chunks (the role chunk counts), then drop the
    connection without ``[DONE]``."""

    after_chunks: int


@dataclass(frozen=True)
class Endless:
    """Stream ``chunk`` every ``delay`` seconds until the client leaves, whatever ``max_tokens`` says:
    a model that never stops."""

    chunk: str = "more "
    delay: float = 0.001


@dataclass(frozen=True)
class Echo:
    """Reply ``echo: <last user message text>``, streamed in chunks."""


@dataclass(frozen=True)
class Raw:
    """Answer exactly ``body``: for the dialects of other servers (CRLF, comments, odd chunks…)."""

    body: str
    content_type: str = "text/event-stream"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


Turn = Reply | ToolCalls | Fail | Hang | Disconnect | Echo | Raw | Endless


class ScriptedDisconnect(Exception):
    """Raised inside a response to make uvicorn drop the connection mid-body."""


class _HideScriptedDisconnects(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], ScriptedDisconnect))


logging.getLogger("uvicorn.error").addFilter(_HideScriptedDisconnects())


@dataclass
class _Answer:
    """A turn's reply before it goes on the wire: the deltas after the role chunk, one chunk each."""

    deltas: list[dict[str, Any]]
    finish_reason: str
    usage: dict[str, int] | None
    first_delay: float = 0.0
    delay: float = 0.0


class ScriptedUpstream:
    """The server's state: turns and received requests per model. ``url`` is set once it is serving."""

    def __init__(self, api_key: str | None = None) -> None:
        self.url = ""
        self.default: Turn = Echo()
        self.api_key = api_key
        # Held only to read or change the dicts, never across a wait: hundreds of streams run at once.
        self._lock = threading.Lock()
        self._turns: dict[str, deque[Turn]] = defaultdict(deque)
        self._requests: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._calls_made: dict[str, int] = defaultdict(int)
        self._endless_open: dict[str, int] = defaultdict(int)
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat_completions, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )

    def script(self, model: str, *turns: Turn) -> None:
        """Queue ``turns`` for ``model``: each request for it consumes the next one."""
        with self._lock:
            for turn in turns:
                repeat = turn.times if isinstance(turn, Fail) else 1
                self._turns[model].extend([turn] * repeat)

    def requests(self, model: str) -> list[dict[str, Any]]:
        """The JSON bodies received for ``model``, in order (failed and retried ones included)."""
        with self._lock:
            return list(self._requests[model])

    def endless_open(self, model: str) -> int:
        """How many ``Endless`` replies to ``model`` are still streaming (their client has not left)."""
        with self._lock:
            return self._endless_open[model]

    async def _endless(self, turn: Endless, model: str) -> AsyncIterator[bytes]:
        with self._lock:
            self._endless_open[model] += 1
        try:
            async for chunk in _endless(turn, model):
                yield chunk
        finally:
            with self._lock:
                self._endless_open[model] -= 1

    async def _models(self, request: Request) -> Response:
        with self._lock:
            names = sorted(self._requests.keys() | self._turns.keys())
        models = [{"id": name, "object": "model", "created": 0, "owned_by": "scripted"} for name in names]
        return JSONResponse({"object": "list", "data": models})

    async def _chat_completions(self, request: Request) -> Response:
        if self.api_key and request.headers.get("authorization") != f"Bearer {self.api_key}":
            return _error(401, "Incorrect API key provided.", "invalid_api_key")
        body = await request.json()
        model = str(body.get("model"))
        with self._lock:
            self._requests[model].append(body)
            queue = self._turns[model]
            turn = queue.popleft() if queue else self.default
        streaming = bool(body.get("stream"))
        media_type = "text/event-stream" if streaming else "application/json"
        match turn:
            case Fail():
                retry_after = {} if turn.retry_after is None else {"retry-after": str(turn.retry_after)}
                return _error(turn.status, turn.message, headers=retry_after)
            case Raw():
                return Response(turn.body, turn.status, turn.headers, media_type=turn.content_type)
            case Hang():
                return StreamingResponse(_silence(turn.seconds), media_type=media_type)
            case Endless():
                return StreamingResponse(self._endless(turn, model), media_type=media_type)
            case Disconnect():
                answer = self._answer(Echo(), model, body)
                cut = _sse(answer, model, body)
                return StreamingResponse(_cut_after(cut, turn.after_chunks), media_type=media_type)
        answer = self._answer(turn, model, body)
        if streaming:
            return StreamingResponse(_sse(answer, model, body), media_type=media_type)
        await asyncio.sleep(answer.first_delay + answer.delay * len(answer.deltas))
        return JSONResponse(_completion(answer, model))

    def _answer(self, turn: Reply | ToolCalls | Echo, model: str, body: dict[str, Any]) -> _Answer:
        messages = body.get("messages") or []
        match turn:
            case Echo():
                turn = Reply(f"echo: {_last_user_text(messages)}")
            case ToolCalls():
                return self._tool_calls_answer(turn, model, messages)
        deltas = [{"content": chunk} for chunk in turn.chunks or _split(turn.text, 4)]
        usage = turn.usage
        if usage is COMPUTED:
            usage = _usage(_prompt_tokens(messages), len(deltas))
        elif isinstance(usage, Usage):
            usage = _usage(usage.prompt_tokens, usage.completion_tokens, usage.total_tokens)
        return _Answer(deltas, turn.finish_reason, usage, turn.first_delay, turn.delay)

    def _tool_calls_answer(self, turn: ToolCalls, model: str, messages: list[Any]) -> _Answer:
        with self._lock:
            first = self._calls_made[model] + 1
            self._calls_made[model] += len(turn.calls)
        ids = turn.ids or [f"call_{first + n}" for n in range(len(turn.calls))]
        deltas: list[dict[str, Any]] = [{"content": chunk} for chunk in _split(turn.text or "", 4)]
        for index, ((name, arguments), call_id) in enumerate(zip(turn.calls, ids, strict=True)):
            header = {"index": index, "id": call_id, "type": "function"}
            deltas.append({"tool_calls": [{**header, "function": {"name": name, "arguments": ""}}]})
            size = -(-len(arguments) // max(turn.arg_chunks, 1))
            for fragment in _split(arguments, size):
                deltas.append({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})
        usage = _usage(_prompt_tokens(messages), len(deltas))
        return _Answer(deltas, "tool_calls", usage, delay=turn.delay)


@contextmanager
def scripted_upstream(api_key: str | None = None) -> Iterator[ScriptedUpstream]:
    """A ScriptedUpstream serving on a free loopback port; its ``url`` ends in ``/v1``."""
    upstream = ScriptedUpstream(api_key)
    with serve_in_thread(upstream.app, free_port()) as url:
        upstream.url = f"{url}/v1"
        yield upstream


# --- the wire format: https://platform.openai.com/docs/api-reference/chat/streaming


async def _sse(answer: _Answer, model: str, body: dict[str, Any]) -> AsyncIterator[bytes]:
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())

    def chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> bytes:
        data: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": choices,
        }
        if include_usage:  # OpenAI then puts "usage": null on every chunk but the last
            data["usage"] = usage
        return f"data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()

    def choice(delta: dict[str, Any], finish_reason: str | None = None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]

    await asyncio.sleep(answer.first_delay)
    has_text = any("content" in delta for delta in answer.deltas)
    yield chunk(choice({"role": "assistant", "content": "" if has_text else None, "refusal": None}))
    for delta in answer.deltas:
        await asyncio.sleep(answer.delay)
        yield chunk(choice(delta))
    yield chunk(choice({}, answer.finish_reason))
    if include_usage and answer.usage is not None:
        yield chunk([], answer.usage)
    yield b"data: [DONE]\n\n"


def _completion(answer: _Answer, model: str) -> dict[str, Any]:
    text = "".join(delta.get("content", "") for delta in answer.deltas)
    calls: dict[int, dict[str, Any]] = {}
    for delta in answer.deltas:
        for fragment in delta.get("tool_calls", ()):
            call = calls.setdefault(fragment["index"], {"function": {"arguments": ""}})
            call.update({key: fragment[key] for key in ("id", "type") if key in fragment})
            call["function"]["name"] = fragment["function"].get("name", call["function"].get("name"))
            call["function"]["arguments"] += fragment["function"]["arguments"]
    message: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": None}
    if calls:
        message["tool_calls"] = [calls[index] for index in sorted(calls)]
    completion = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": answer.finish_reason}
        ],
    }
    if answer.usage is not None:
        completion["usage"] = answer.usage
    return completion


def _error(
    status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None
) -> Response:
    kind = "requests" if status == 429 else "invalid_request_error" if status < 500 else "server_error"
    if status == 429:
        code = "rate_limit_exceeded"
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return JSONResponse(body, status, headers)


async def _endless(turn: Endless, model: str) -> AsyncIterator[bytes]:
    head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk", "model": model}
    for delta in ({"role": "assistant", "content": ""}, {"content": turn.chunk}):
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
        chunk = f"data: {json.dumps({**head, 'created': int(time.time()), 'choices': [choice]})}\n\n"
        yield chunk.encode()
    while True:
        await asyncio.sleep(turn.delay)
        yield chunk.encode()


async def _silence(seconds: float) -> AsyncIterator[bytes]:
    await asyncio.sleep(seconds)
    yield b""  # puts nothing on the wire


async def _cut_after(chunks: AsyncIterator[bytes], count: int) -> AsyncIterator[bytes]:
    sent = 0
    async for chunk in chunks:
        if sent == count:
            break
        sent += 1
        yield chunk
    raise ScriptedDisconnect(f"scripted disconnect after {count} chunks")


def _usage(prompt: int, completion: int, total: int | None = None) -> dict[str, int]:
    total = prompt + completion if total is None else total
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = content or []
    return "".join(part.get("text", "") for part in parts if isinstance(part, dict))


def _prompt_tokens(messages: list[Any]) -> int:
    return sum(len(_text(message.get("content"))) for message in messages) // 4


def _last_user_text(messages: list[Any]) -> str:
    users = [message for message in messages if message.get("role") == "user"]
    return _text(users[-1].get("content")) if users else ""


def _split(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), max(size, 1))]
