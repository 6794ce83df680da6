"""The statements of the PostgreSQL event bus (``bus/postgres.py``) on the ``run_events`` table."""

from __future__ import annotations

import time

from sqlalchemy import CTE, TextualSelect, column, text

from openassistants.bus.notify import RUN_EVENTS
from openassistants.events import Event

#: NOTIFY payloads must stay under 8000 bytes; an event too large to travel is fetched by id.
NOTIFY_PAYLOAD_BYTES = 7500
#: Ids in a block: a run's events between two of its status changes rarely need more than one.
ID_BLOCK = 1024

#: ``run_events.id``'s sequence (a ``bigserial``'s), counting blocks. Block n is ids n x ID_BLOCK and
#: up: above every id the sequence gave itself before (an older version's, whose ids were its values),
#: and out of reach of one such process still running during an upgrade (its next ids are about the
#: sequence's value, the blocks' about ID_BLOCK times it).
_NEXT_BLOCK = f"nextval('run_events_id_seq') * {ID_BLOCK}"


def _written(rows: str) -> str:
    """The INSERT of ``rows`` (id, run_id, name, data, created_at), returning what a notification carries."""
    return f"""INSERT INTO run_events (id, run_id, name, data, created_at)
    {rows}
    RETURNING id, run_id, name, data"""


#: Each written event's notification line: its head (id, run id, name), and its data.
_LINES = "SELECT id, id || E'\\t' || run_id || E'\\t' || name || E'\\t' AS head, data FROM written"
#: The notifications of ``lines``, in id order.
_NOTIFY_LINES = f"""SELECT id, pg_notify(
    '{RUN_EVENTS}',
    CASE WHEN octet_length(head) + octet_length(data) > {NOTIFY_PAYLOAD_BYTES} THEN head ELSE head || data END
)
FROM lines ORDER BY id"""


def _writing(rows: str) -> str:
    """A statement writing ``rows`` (id, run_id, name, data) and notifying each, in one round trip: a
    notification is delivered when its transaction commits, so exactly when its event is visible. An
    event too large to travel in a NOTIFY goes without its data, which the receiver fetches by id.
    Volatile output expressions are evaluated after the sort, so notifications go out in id order."""
    return f"""
WITH written AS (
    {_written(rows)}
), lines AS (
    {_LINES}
)
{_NOTIFY_LINES}
"""


def _new_rows(run_id: str, names: str, data: str, now: str, *, gate: str = "") -> str:
    """One run's events (``names`` and ``data``, two arrays), numbered from a fresh block; with
    ``gate``, the name of a CTE, only when that returns a row."""
    source = f"{gate}, " if gate else ""
    return (
        f"SELECT b.base + t.o - 1, {run_id}, t.n, t.d, {now} "
        f"FROM {source}(SELECT {_NEXT_BLOCK} AS base) AS b, "
        f"unnest({names}, {data}) WITH ORDINALITY AS t(n, d, o) ORDER BY t.o"
    )


#: The flusher's batch, numbered already: ids, run ids, names, data, time, and the notifications
#: carrying them (``write_parameters``): a few events each rather than one NOTIFY per event, which every
#: listening process (this one included, for its echoes) received and handled one at a time.
WRITE = f"""
WITH written AS (
    INSERT INTO run_events (id, run_id, name, data, created_at)
    SELECT *, $5::bigint FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[])
)
SELECT pg_notify('{RUN_EVENTS}', t.payload)
FROM unnest($6::text[]) WITH ORDINALITY AS t(payload, o) ORDER BY t.o
"""
#: ``publish_in``'s events of one run, numbered from a fresh block: run id, names, data, time.
WRITE_NEW = _writing(_new_rows("$1::text", "$2::text[]", "$3::text[]", "$4::bigint"))


def write_new_after(*ctes: CTE, gate: str) -> TextualSelect:
    """``WRITE_NEW`` as the end of a statement whose data-modifying ``ctes`` come first (one round
    trip and, outside a transaction, one transaction for all): the events are written, and notified,
    only if the CTE named ``gate`` (one of ``ctes``, say a compare-and-set's) returns a row. It
    returns the events' ids, none when the gate was shut. Its parameters: ``event_run_id``,
    ``event_names``, ``event_data`` (arrays) and ``event_time``."""
    rows = _new_rows(
        "CAST(:event_run_id AS text)",
        "CAST(:event_names AS text[])",
        "CAST(:event_data AS text[])",
        "CAST(:event_time AS bigint)",
        gate=gate,
    )
    written = text(_written(rows)).columns(column("id"), column("run_id"), column("name"), column("data"))
    lines = text(_LINES).columns(column("id"), column("head"), column("data"))
    notify = text(_NOTIFY_LINES).columns(column("id"), column("pg_notify"))
    return notify.add_cte(*ctes, written.cte("written"), lines.cte("lines"))


#: Fresh blocks, in increasing order.
NEXT_BLOCKS = f"SELECT {_NEXT_BLOCK} FROM generate_series(1, $1::int)"

#: Several runs' logs after given ids, in one query: ``o`` is the request's place in the arrays.
REPLAY = """
SELECT r.o, e.id, e.name, e.data
FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS r(run_id, after, o)
JOIN run_events e ON e.run_id = r.run_id AND e.id > r.after
ORDER BY r.o, e.id
"""


def write_parameters(
    batch: list[tuple[int, str, Event]],
) -> tuple[list[int], list[str], list[str], list[str], int, list[str]]:
    """``WRITE``'s parameters for a batch of (id, run id, event)."""
    return (
        [event_id for event_id, _, _ in batch],
        [run_id for _, run_id, _ in batch],
        [event.name for _, _, event in batch],
        [event.data.decode() for _, _, event in batch],
        int(time.time()),
        notify_payloads(batch),
    )


def notify_payloads(batch: list[tuple[int, str, Event]]) -> list[str]:
    """The batch's events as NOTIFY payloads, in order: a line each (as ``_writing`` makes them in
    SQL, for ids numbered there: without the data of an event too large to travel), lines joined by
    newlines (JSON has none) up to NOTIFY_PAYLOAD_BYTES a payload."""
    payloads: list[str] = []
    lines: list[bytes] = []
    size = 0
    for event_id, run_id, event in batch:
        head = f"{event_id}\t{run_id}\t{event.name}\t".encode()
        line = head if len(head) + len(event.data) > NOTIFY_PAYLOAD_BYTES else head + event.data
        if lines and size + 1 + len(line) > NOTIFY_PAYLOAD_BYTES:
            payloads.append(b"\n".join(lines).decode())
            lines, size = [], -1
        lines.append(line)
        size += 1 + len(line)
    if lines:
        payloads.append(b"\n".join(lines).decode())
    return payloads
