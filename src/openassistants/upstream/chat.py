"""The model boundary: one streamed chat completion from an OpenAI-compatible upstream, as ChatEvents.

How the request is built and sent, and retried, is here; how its reply is read is in ``chat_reply.py``;
how it fails (and which failures are retried) in ``chat_errors.py``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import SecretStr

from openassistants import jsonbytes
from openassistants.config import Settings
from openassistants.upstream.chat_errors import (
    RetryableFailure,
    UpstreamError,
    UpstreamErrorCode,
    capitalized,
    status_failure,
)
from openassistants.upstream.chat_reply import (
    ChatEvent,
    Finish,
    FinishReason,
    TextDelta,
    ToolCallDelta,
    Usage,
    UsageReport,
    completion_events,
    stream_events,
)
from openassistants.upstream.routes import Routes, Upstream, check_base_url
from openassistants.upstream.transport import AiohttpTransport, failure_words

# What a stream yields and raises, importable with the client that streams it.
__all__ = [
    "ChatClient",
    "ChatEvent",
    "ChatRequest",
    "Finish",
    "FinishReason",
    "TextDelta",
    "ToolCallDelta",
    "UpstreamError",
    "UpstreamErrorCode",
    "Usage",
    "UsageReport",
]

logger = logging.getLogger(__name__)

#: One pool for every route. Each streaming run holds a connection for its whole reply, and we must carry
#: hundreds at once (benchmarks run 500); idle ones stay pooled so the next burst does not reconnect.
POOL_LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=1000)
#: Longest retry-after we obey; a longer one means "not soon", so our own backoff applies instead.
MAX_RETRY_AFTER_SECONDS = 30.0


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

        Raises UpstreamError (see chat_errors.py). Close the iterator (``contextlib.aclosing``)
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
            except RetryableFailure as failure:
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
                    raise status_failure(response, target.upstream)
                if response.headers.get("content-type", "").startswith("application/json"):
                    # Asked to stream, some servers answer one chat.completion anyway.
                    await response.aread()
                    yield completion_events(response.text)
                else:
                    async for batch in stream_events(response.aiter_bytes()):
                        yield batch
        except httpx.TransportError as exc:
            message = f"{capitalized(target.upstream.where)} {failure_words(exc)}."
            raise RetryableFailure(UpstreamError("server_error", message)) from exc
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
