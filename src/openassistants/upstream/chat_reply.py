"""Reading a chat completion's reply: its server-sent events (or, from servers that answer one, a whole
``chat.completion``) as ChatEvents, smoothing over the dialects of OpenAI-compatible servers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from openassistants.upstream.chat_errors import UpstreamError, malformed_reply

FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]


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


async def stream_events(chunks: AsyncIterator[bytes]) -> AsyncIterator[list[ChatEvent]]:
    """The events of each chunk read from a streamed reply; raises UpstreamError on an error object,
    bad JSON, or a stream that ends before its reply does."""
    decoder = _ChunkDecoder()
    events = SSEParser()
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


class SSEParser:
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


def completion_events(text: str) -> list[ChatEvent]:
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
        raise malformed_reply() from exc
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
                raise malformed_reply() from exc
        return self.decode_chunk(chunk)

    def decode_chunk(self, chunk: Any) -> list[ChatEvent]:
        if isinstance(chunk, dict) and chunk.get("error"):  # vLLM and proxies report late failures so
            error = chunk["error"]
            message = error.get("message") if isinstance(error, dict) else error
            raise UpstreamError("server_error", f"The model upstream failed mid-reply: {message}")
        try:
            return list(self._events(chunk))
        except (LookupError, TypeError, AttributeError, ValueError) as exc:
            raise malformed_reply() from exc

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
