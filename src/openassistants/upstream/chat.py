"""The model boundary: one streamed chat completion from an OpenAI-compatible upstream, as ChatEvents.

Every failure reaches the caller as ``UpstreamError``; its ``code`` is what a run's ``last_error.code``
says. No httpx exception gets past this module:

    what happened                                       retried*   UpstreamError.code
    ──────────────────────────────────────────────────  ─────────  ───────────────────
    connect error, timeout, connection dropped          yes        server_error
    HTTP 408 or 5xx                                     yes        server_error
    HTTP 429                                            yes        rate_limit_exceeded
    HTTP 401, 403, 3xx (our key or route is wrong)      no         server_error
    other HTTP 4xx (400, 404 unknown model, 422 …)      no         invalid_prompt
    error object, bad JSON or early end in a stream     no         server_error
    other httpx errors (e.g. a body it cannot decode)   no         server_error
    any failure once an event has been yielded          no         server_error

    * only while nothing has been yielded, up to llm_max_retries times, waiting
      llm_retry_backoff_seconds * 2**n, or the upstream's retry-after when that is at most 30 s.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import orjson
from pydantic import SecretStr

from openassistants import jsonbytes
from openassistants.config import Settings
from openassistants.upstream.routes import Routes, Upstream, check_base_url
from openassistants.upstream.transport import AiohttpTransport, failure_words

logger = logging.getLogger(__name__)

#: One pool for every route. Each streaming run holds a connection for its whole reply, and we must carry
#: hundreds at once (benchmarks run 500); idle ones stay pooled so the next burst does not reconnect.
POOL_LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=1000)
#: Longest retry-after we obey; a longer one means "not soon", so our own backoff applies instead.
MAX_RETRY_AFTER_SECONDS = 30.0
#: Most of a non-JSON error body quoted in UpstreamError.message.
MAX_ERROR_BODY_CHARS = 500

UpstreamErrorCode = Literal["server_error", "rate_limit_exceeded", "invalid_prompt"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion to stream. ``messages`` and ``tools`` go to the upstream as they are."""

    model: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None
    #: Sent only together with tools (some servers reject a tool_choice without tools).
    tool_choice: str | dict[str, Any] | None = None
    #: Sent only together with tools.
    parallel_tool_calls: bool | None = None
    temperature: float | None = None
    top_p: float | None = None
    response_format: dict[str, Any] | None = None
    #: Sent as the older ``max_tokens``: vLLM, Ollama, llama.cpp and OpenAI's non-reasoning models all
    #: honour it, while several local servers ignore ``max_completion_tokens``.
    max_completion_tokens: int | None = None


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


@dataclass(frozen=True)
class TextDelta:
    """A piece of the reply's text."""

    text: str


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of tool call ``index``: ``id`` and ``name`` come once per index (the first time they are
    known), ``arguments`` fragments exactly as streamed; concatenated, they are the arguments JSON."""

    index: int
    id: str | None
    name: str | None
    arguments: str


@dataclass(frozen=True)
class Finish:
    """The reply is complete; comes once, after every delta."""

    reason: FinishReason


@dataclass(frozen=True)
class UsageReport:
    """Token usage, when the upstream reports it; at most once, last (after ``Finish``)."""

    usage: Usage


ChatEvent = TextDelta | ToolCallDelta | Finish | UsageReport


class UpstreamError(Exception):
    """The model upstream failed; ``code`` and ``message`` are fit for a run's ``last_error``."""

    def __init__(self, code: UpstreamErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: UpstreamErrorCode = code
        self.message = message


class _Retryable(Exception):
    """An attempt failed in a way that another attempt may fix, if nothing was yielded yet."""

    def __init__(self, error: UpstreamError, retry_after: float | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry_after = retry_after


@dataclass(frozen=True)
class _Target:
    url: httpx.URL
    model: str
    headers: httpx.Headers = field(repr=False)  # holds the api key
    upstream: Upstream


class ChatClient:
    """Streams chat completions from the upstream that serves each model. One per process."""

    def __init__(self, settings: Settings) -> None:
        """Raises ValueError if ``llm_base_url`` or ``llm_routes`` is unusable."""
        self.routes = Routes.from_settings(settings.llm_base_url, settings.llm_api_key, settings.llm_routes)
        # Each upstream's URL parsed (and so checked at start-up, not on the first run) and its headers
        # built once.
        self._sends = {
            upstream: (_chat_url(upstream), _request_headers(upstream.api_key))
            for upstream in self.routes.configured
        }
        self._max_retries = settings.llm_max_retries
        self._backoff = settings.llm_retry_backoff_seconds
        self._timeout = httpx.Timeout(
            connect=settings.llm_connect_timeout_seconds,
            # Applied to each socket read: the longest silence between two chunks.
            read=settings.llm_read_timeout_seconds,
            write=settings.llm_connect_timeout_seconds,
            pool=settings.llm_connect_timeout_seconds,
        ).as_dict()
        # Requests go straight to the transport (aiohttp underneath: at hundreds of concurrent streams,
        # a fraction of httpcore's CPU) as httpx.Requests: httpx's client adds nothing a model request
        # needs (no redirects, auth flows or cookies) and cost ~0.1 ms a request in building, merging
        # and cookie handling. No proxies or certificates from the environment: Settings is the one
        # source of configuration.
        self._transport = AiohttpTransport(POOL_LIMITS)

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def stream(self, request: ChatRequest) -> AsyncGenerator[ChatEvent]:
        """Stream one reply as events, ending with ``Finish`` (then ``UsageReport`` if reported).

        Raises UpstreamError (see the module docstring). Close the iterator (``contextlib.aclosing``)
        when stopping early, so that its connection goes back to the pool at once.
        """
        async with aclosing(self.stream_batches(request)) as batches:
            async for batch in batches:
                for event in batch:
                    yield event

    async def stream_batches(self, request: ChatRequest) -> AsyncGenerator[list[ChatEvent]]:
        """``stream``, as the events of each read from the network: a busy server gets several of
        the reply's chunks at once, and handles them with one pass through the generators."""
        target = self._target(request.model)
        body = _request_body(request, target.model)
        for attempt in range(self._max_retries + 1):
            yielded = False
            try:
                async with aclosing(self._attempt(target, body)) as batches:
                    async for batch in batches:
                        yielded = True
                        yield batch
                return
            except _Retryable as failure:
                if yielded or attempt == self._max_retries:
                    raise failure.error from failure.__cause__
                delay = self._retry_delay(attempt, failure.retry_after)
                logger.warning(
                    "model upstream failed for %r (attempt %d of %d): %s; retrying in %.2f s",
                    request.model,
                    attempt + 1,
                    self._max_retries + 1,
                    failure.error.message,
                    delay,
                )
                await asyncio.sleep(delay)

    async def _attempt(self, target: _Target, body: dict[str, Any]) -> AsyncGenerator[list[ChatEvent]]:
        try:
            async with self._send(target, body) as response:
                if not response.is_success:
                    await response.aread()
                    raise _status_failure(response, target.upstream)
                if response.headers.get("content-type", "").startswith("application/json"):
                    # Asked to stream, some servers answer one chat.completion anyway.
                    await response.aread()
                    yield _completion_events(response.text)
                else:
                    async for batch in _stream_events(response.aiter_bytes()):
                        yield batch
        except httpx.TransportError as exc:
            message = f"{_capitalized(target.upstream.where)} {failure_words(exc)}."
            raise _Retryable(UpstreamError("server_error", message)) from exc
        except httpx.HTTPError as exc:
            where = target.upstream.where
            raise UpstreamError("server_error", f"The answer of {where} was unusable: {exc}") from exc

    @asynccontextmanager
    async def _send(self, target: _Target, body: dict[str, Any]) -> AsyncIterator[httpx.Response]:
        request = httpx.Request(
            "POST",
            target.url,
            content=jsonbytes.dumps(body),
            headers=target.headers,
            extensions={"timeout": self._timeout},
        )
        response = await self._transport.handle_async_request(request)
        try:
            yield response
        finally:
            await response.aclose()

    def _target(self, model: str) -> _Target:
        resolved = self.routes.resolve(model)
        url, headers = self._sends[resolved.upstream]
        return _Target(url=url, model=resolved.model, headers=headers, upstream=resolved.upstream)

    def _retry_delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None and 0 <= retry_after <= MAX_RETRY_AFTER_SECONDS:
            return retry_after
        return float(self._backoff * 2**attempt)


def _request_headers(api_key: SecretStr | None) -> httpx.Headers:
    """What httpx's client would send (its default headers), for a JSON body and a streamed answer."""
    headers = {
        "Accept": "text/event-stream",
        "Accept-Encoding": "gzip, deflate",
        "Connection": "keep-alive",
        "User-Agent": f"python-httpx/{httpx.__version__}",
        "Content-Type": "application/json",
    }
    if api_key is not None:
        headers["Authorization"] = f"Bearer {api_key.get_secret_value()}"
    return httpx.Headers(headers)


def _chat_url(upstream: Upstream) -> httpx.URL:
    url = check_base_url(upstream.base_url, upstream.setting)
    return url.copy_with(path=url.path.rstrip("/") + "/chat/completions")


def _request_body(request: ChatRequest, model: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "messages": request.messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    optional: dict[str, Any] = {
        "temperature": request.temperature,
        "top_p": request.top_p,
        "response_format": request.response_format,
        "max_tokens": request.max_completion_tokens,
    }
    if request.tools:
        optional |= {
            "tools": request.tools,
            "tool_choice": request.tool_choice,
            "parallel_tool_calls": request.parallel_tool_calls,
        }
    body.update({name: value for name, value in optional.items() if value is not None})
    return body


def _status_failure(response: httpx.Response, upstream: Upstream) -> _Retryable | UpstreamError:
    status = response.status_code
    said = f"{upstream.where} answered {status}: {_error_message(response)}"
    if status == 429:
        error = UpstreamError("rate_limit_exceeded", f"Rate limit reached: {said}")
        return _Retryable(error, _retry_after(response))
    message = _capitalized(said)
    if status == 408 or status >= 500:
        return _Retryable(UpstreamError("server_error", message), _retry_after(response))
    if 400 <= status < 500 and status not in (401, 403):
        return UpstreamError("invalid_prompt", message)
    return UpstreamError("server_error", message)


def _capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]


def _error_message(response: httpx.Response) -> str:
    """The upstream's own words: OpenAI's ``{"error": {"message"}}``, or what other servers send instead."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        for candidate in (
            error.get("message") if isinstance(error, dict) else error,
            body.get("detail"),  # FastAPI-based servers
            body.get("message"),
        ):
            if isinstance(candidate, str) and candidate:
                return candidate
    return response.text.strip()[:MAX_ERROR_BODY_CHARS] or response.reason_phrase


def _retry_after(response: httpx.Response) -> float | None:
    """retry-after in seconds; the HTTP-date form is ignored (our own backoff applies)."""
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None


async def _stream_events(chunks: AsyncIterator[bytes]) -> AsyncIterator[list[ChatEvent]]:
    decoder = _ChunkDecoder()
    events = _SSEParser()
    done = False
    async for chunk in chunks:
        batch: list[ChatEvent] = []
        try:
            for data in events.feed(chunk):
                if data.strip() == b"[DONE]":
                    done = True
                    break
                batch += decoder.decode(data)
        except UpstreamError:
            if batch:
                yield batch  # what came before the failure, as if read apart
            raise
        if batch:
            yield batch
        if done:
            break
    else:
        for data in events.end():
            if data.strip() != b"[DONE]":
                yield decoder.decode(data)
        # Some servers omit [DONE]; a stream that stops before finish_reason was cut short.
        if not decoder.finished:
            raise UpstreamError("server_error", "The model upstream's stream ended before the reply did.")
    if tail := list(decoder.end()):
        yield tail


class _SSEParser:
    """The data of each server-sent event, from the stream's bytes as they come; comments,
    ``event:`` and ``id:`` lines carry nothing we use. Parsed on bytes, with no per-line decoding:
    it runs for every chunk of every reply.

    https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        buffer = self._buffer + chunk
        if b"\r" in buffer:
            # A \r at the very end may be the first half of a \r\n: keep it for the next chunk.
            held = buffer.endswith(b"\r")
            buffer = buffer[:-1] if held else buffer
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n") + (b"\r" if held else b"")
        *lines, self._buffer = buffer.split(b"\n")
        return self._lines(lines)

    def end(self) -> list[bytes]:
        lines = [self._buffer.rstrip(b"\r")] if self._buffer else []
        self._buffer = b""
        found = self._lines(lines)
        if self._data:
            found.append(b"\n".join(self._data))
            self._data = []
        return found

    def _lines(self, lines: list[bytes]) -> list[bytes]:
        found: list[bytes] = []
        for line in lines:
            if not line:
                if self._data:
                    found.append(b"\n".join(self._data))
                    self._data = []
            elif line.startswith(b"data:"):
                value = line[5:]
                self._data.append(value[1:] if value.startswith(b" ") else value)
        return found


def _completion_events(text: str) -> list[ChatEvent]:
    """A whole (non-streamed) chat.completion, as the events its stream would have given."""
    decoder = _ChunkDecoder()
    try:
        completion = json.loads(text)
        choice = completion["choices"][0]
        message = choice["message"]
        chunk = {
            "choices": [
                {
                    "delta": {"content": message.get("content"), "tool_calls": message.get("tool_calls")},
                    "finish_reason": choice.get("finish_reason"),
                }
            ],
            "usage": completion.get("usage"),
        }
    except (ValueError, LookupError, TypeError, AttributeError) as exc:
        raise _malformed() from exc
    return [*decoder.decode_chunk(chunk), *decoder.end()]


_FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
    "function_call": "tool_calls",  # the pre-tools name
}


class _ChunkDecoder:
    """Turns ``chat.completion.chunk`` objects into events, smoothing over the dialects of upstreams."""

    def __init__(self) -> None:
        self.finished = False
        self._usage: Usage | None = None
        self._has_tool_calls = False
        self._ids_sent: set[int] = set()
        self._names_sent: set[int] = set()

    def decode(self, data: bytes) -> list[ChatEvent]:
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            try:  # what orjson refuses and Python's json reads (NaN, Infinity)
                chunk = json.loads(data)
            except ValueError as exc:
                raise _malformed() from exc
        return self.decode_chunk(chunk)

    def decode_chunk(self, chunk: Any) -> list[ChatEvent]:
        if isinstance(chunk, dict) and chunk.get("error"):  # vLLM and proxies report late failures so
            error = chunk["error"]
            message = error.get("message") if isinstance(error, dict) else error
            raise UpstreamError("server_error", f"The model upstream failed mid-reply: {message}")
        try:
            return list(self._events(chunk))
        except (LookupError, TypeError, AttributeError, ValueError) as exc:
            raise _malformed() from exc

    def end(self) -> Iterator[ChatEvent]:
        if not self.finished:  # [DONE] without a finish_reason
            yield self._finish(None)
        if self._usage is not None:
            yield UsageReport(self._usage)

    def _events(self, chunk: dict[str, Any]) -> Iterator[ChatEvent]:
        if chunk.get("usage"):
            # Kept for the end: some servers repeat (growing) usage on several chunks.
            self._usage = _usage(chunk["usage"])
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            # Only ``content`` is the reply: ``reasoning_content``/``reasoning`` never reach the text.
            if content := delta.get("content"):
                yield TextDelta(str(content))
            for position, call in enumerate(delta.get("tool_calls") or ()):
                if (event := self._tool_call(position, call)) is not None:
                    yield event
            # finish_reason may ride on a chunk that also carries content: handled after it.
            if choice.get("finish_reason") and not self.finished:
                yield self._finish(choice["finish_reason"])

    def _tool_call(self, position: int, call: dict[str, Any]) -> ToolCallDelta | None:
        index = call.get("index", position)  # servers sending whole calls may leave out the index
        if not isinstance(index, int):
            raise TypeError(f"tool call index {index!r}")
        function = call.get("function") or {}
        arguments = function.get("arguments") or ""
        if not isinstance(arguments, str):  # a few servers send an object instead of JSON text
            arguments = json.dumps(arguments)
        # OpenAI sends id and name in a call's first fragment only; some servers repeat them in each.
        call_id = call.get("id") if index not in self._ids_sent else None
        name = function.get("name") if index not in self._names_sent else None
        if call_id:
            self._ids_sent.add(index)
        if name:
            self._names_sent.add(index)
        if not (call_id or name or arguments):
            return None
        self._has_tool_calls = True
        return ToolCallDelta(index=index, id=call_id or None, name=name or None, arguments=arguments)

    def _finish(self, reason: object) -> Finish:
        self.finished = True
        normalized = _FINISH_REASONS.get(reason, "stop") if isinstance(reason, str) else "stop"
        if normalized == "stop" and self._has_tool_calls:
            normalized = "tool_calls"  # some servers say "stop" after streaming tool calls
        return Finish(normalized)


def _usage(raw: dict[str, Any]) -> Usage:
    prompt = int(raw.get("prompt_tokens") or 0)
    completion = int(raw.get("completion_tokens") or 0)
    return Usage(prompt, completion, int(raw.get("total_tokens") or prompt + completion))


def _malformed() -> UpstreamError:
    return UpstreamError("server_error", "The model upstream sent a malformed reply.")
