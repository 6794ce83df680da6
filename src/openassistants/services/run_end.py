"""A run's end on PostgreSQL in one statement, when its executor finishes it.

Ending a run in a transaction took five round trips (BEGIN, the reply's message and step, the run's
compare-and-set, its events, COMMIT): 14-25 % of a PostgreSQL burst's samples (docs/benchmarks.md).
Here they are one statement, outside any transaction, so it commits by itself: the compare-and-set
as a data-modifying CTE, the closing's row changes (``records.RowChanges``) and the events'
insert with its NOTIFYs (``postgres_sql.write_new_after``) each in a CTE gated on it. Either all of
it is written or none of it.

The run's event carries the run as it ended, which the transaction read back from the UPDATE; here it
is known ahead: the row its executor claimed (nothing else changes a run it executes but a status
change, which the compare-and-set refuses), with the end's columns. Its metadata alone can change
meanwhile (``runs.update``): the gate also requires the stored metadata to be what the executor
holds. When the gate is shut (a cancel, an expiry or a failure came first, the metadata changed,
the run went with its thread), nothing was written, and ``RunStatusWriter.end`` ends the run in its
transaction instead, as it always has: the closing first, then whatever the run's status says.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Table, Text, bindparam, cast, exists, select

from openassistants import run_events
from openassistants.bus.base import EventBus
from openassistants.bus.postgres import PostgresEventBus
from openassistants.bus.postgres_sql import ID_BLOCK, write_new_after
from openassistants.services.run_records import RowChanges
from openassistants.services.runs import run_to_wire, transition_update, transition_values
from openassistants.statuses import RunStatus
from openassistants.storage import tables
from openassistants.storage.db import Database
from openassistants.storage.prepared import Prepared
from openassistants.storage.queries import update_of, update_parameters

R = tables.runs


async def end_at_once(
    db: Database,
    bus: EventBus,
    run: Mapping[str, Any],
    sources: set[RunStatus],
    target: RunStatus,
    closing: object,
    fields: dict[str, Any],
) -> bool:
    """Moves ``run`` (its row as its executor claimed it) from ``sources`` to ``target``, a status
    that closes nothing (completed, incomplete), with ``fields``, and makes ``closing`` (a ``Closing``,
    or None), all in one statement on PostgreSQL; True when done. False, with nothing written, when
    it cannot be done so (SQLite, a closing that is not ``RowChanges``) or its gate was shut."""
    if not isinstance(bus, PostgresEventBus) or not isinstance(closing, RowChanges | None):
        return False
    changes = closing if closing is not None else RowChanges()
    values = transition_values(run["id"], sources, target, dict(fields))
    keys = tuple(values)[1:]
    ended = {**run, **{key: values[key] for key in keys}}
    events = [*changes.events, run_events.run_moved(target, run_to_wire(ended))]
    if len(events) >= ID_BLOCK:
        return False
    shape = tuple((table, tuple(row_changes)) for table, _, row_changes in changes.updates)
    statement = _statement(frozenset(s.value for s in sources), keys, shape)
    parameters = {
        "transition_run_id": run["id"],
        "end_metadata": run["metadata"],
        **{f"end_{key}": values[key] for key in keys},
        **update_parameters(changes.updates),
    }
    async with db.reader() as runner:
        return await bus.publish_with(runner, run["id"], events, statement, parameters)


@functools.cache
def _statement(
    sources: frozenset[str], keys: tuple[str, ...], shape: tuple[tuple[Table, tuple[str, ...]], ...]
) -> Prepared:
    """The compare-and-set (setting ``keys``, each from parameter ``end_<key>``) as the gate of the
    row changes of ``shape`` (``queries.update_of``'s) and of the events' insert; built and prepared
    once per shape."""
    unchanged = cast(R.c.metadata, Text) == cast(bindparam("end_metadata", type_=R.c.metadata.type), Text)
    ended = (
        transition_update(sources)
        .where(unchanged)
        .values({key: bindparam(f"end_{key}", type_=R.c[key].type) for key in keys})
        .returning(R.c.id)
        .cte("ended")
    )
    gate = exists(select(ended.c.id))
    updates = [
        update_of(n, table, row_keys).where(gate).cte(f"update_{n}")
        for n, (table, row_keys) in enumerate(shape)
    ]
    return Prepared(write_new_after(ended, *updates, gate="ended"))
