"""The statements of the PostgreSQL event bus (``bus/postgres.py``) on the ``run_events`` table."""

from __future__ import annotations

import time

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


def _writing(rows: str) -> str:
    """A statement writing ``rows`` (id, run_id, name, data) and notifying each, in one round trip: a
    notification is delivered when its transaction commits, so exactly when its event is visible. An
    event too large to travel in a NOTIFY goes without its data, which the receiver fetches by id.
    Volatile output expressions are evaluated after the sort, so notifications go out in id order."""
    return f"""
WITH written AS (
    INSERT INTO run_events (id, run_id, name, data, created_at)
    {rows}
    RETURNING id, run_id, name, data
), lines AS (
    SELECT id, id || E'\\t' || run_id || E'\\t' || name || E'\\t' AS head, data FROM written
)
SELECT id, pg_notify(
    '{RUN_EVENTS}',
    CASE WHEN octet_length(head) + octet_length(data) > {NOTIFY_PAYLOAD_BYTES} THEN head ELSE head || data END
)
FROM lines ORDER BY id
"""


#: The flusher's batch, numbered already: ids, run ids, names, data, time.
WRITE = _writing("SELECT *, $5::bigint FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[])")
#: ``publish_in``'s events of one run, numbered from a fresh block: run id, names, data, time.
WRITE_NEW = _writing(
    f"SELECT b.base + t.o - 1, $1::text, t.n, t.d, $4::bigint FROM (SELECT {_NEXT_BLOCK} AS base) AS b, "
    "unnest($2::text[], $3::text[]) WITH ORDINALITY AS t(n, d, o) ORDER BY t.o"
)
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
) -> tuple[list[int], list[str], list[str], list[str], int]:
    """``WRITE``'s parameters for a batch of (id, run id, event)."""
    return (
        [event_id for event_id, _, _ in batch],
        [run_id for _, run_id, _ in batch],
        [event.name for _, _, event in batch],
        [event.data.decode() for _, _, event in batch],
        int(time.time()),
    )
