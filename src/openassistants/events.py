"""A stream event and its encodings: the SSE framing, the ``error`` event, ``Last-Event-ID``.

A run's events (``thread.run.created`` … ``thread.message.delta`` …, each constructed in
``run_events.py``) are appended, in order, to that run's log, where each gets an increasing id; that
id is the SSE ``id:``, so a client can resume after the last event it saw. The logs and their
fan-out are the event bus (``bus/``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

#: The largest event id a client may resume after: ids are PostgreSQL ``bigint``s.
MAX_EVENT_ID = 2**63 - 1


def parse_event_id(value: str) -> int | None:
    """A ``Last-Event-ID`` as an event id; None unless it is 1 to 19 ASCII digits up to MAX_EVENT_ID
    (``str.isdigit`` also takes ``²``, which ``int`` does not)."""
    value = value.strip()
    if not (0 < len(value) <= len(str(MAX_EVENT_ID)) and value.isascii() and value.isdigit()):
        return None
    number = int(value)
    return number if number <= MAX_EVENT_ID else None


@dataclass(frozen=True, slots=True)
class Event:
    """One server-sent event: ``name`` is the SDK's event type, ``data`` its JSON payload."""

    name: str
    data: bytes

    @classmethod
    def of(cls, name: str, payload: Any) -> Event:
        return cls(name, _encode(payload))

    @classmethod
    def each(cls, names: tuple[str, ...], payload: Any) -> list[Event]:
        """One payload under several names (an object ``created``, then ``in_progress``), encoded once."""
        data = _encode(payload)
        return [cls(name, data) for name in names]


def _encode(payload: Any) -> bytes:
    # orjson's bytes keep the buffer they were written in, 4 KiB at least: a log of a run's events
    # (kept for resumes) held 4 KiB per 150-byte delta, 9/10 of a SQLite server's growth under load.
    # An exact copy costs a memcpy of the payload.
    return memoryview(orjson.dumps(payload)).tobytes()


def encode_sse(event: Event, event_id: int | None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return b"".join((head.encode(), b"event: ", event.name.encode(), b"\ndata: ", event.data, b"\n\n"))


DONE = b"event: done\ndata: [DONE]\n\n"


def error_event(code: str, message: str) -> Event:
    """The ``error`` event in the framing every SDK path raises on (spec notes, §5.5)."""
    inner = {"message": message, "type": "server_error", "param": None, "code": code}
    return Event.of("error", {"error": inner, **inner})
