"""Creating a run on PostgreSQL in two round trips, the second shared by concurrent creations.

1. One read, outside any transaction: the thread, its active run if it has one, and the assistant;
   creations arriving while one is read are read together by the next, in one statement (as their
   writes are: every creation of a burst once took a pool connection and a round trip of its own).
2. One INSERT of the run (with its reply, when it gets one ahead), outside any transaction too, so it
   commits by itself: no BEGIN, no COMMIT. Runs being created meanwhile go in the same statement
   (group commit, storage/group_commit.py): one round trip and one WAL flush for up to BATCH_MOST.

Nothing is locked between the two. What keeps the rules:
- one active run per thread: the partial unique index ``ux_runs_thread_active`` (migration 0010),
  whatever interleaves; a run created on the thread since the read makes the insert fail, and the
  caller gets the same 400 as when the read saw it;
- messages.create's "no active run" check (it holds the thread's row lock FOR UPDATE across its check
  and insert): the run's foreign key to its thread takes that row's KEY SHARE lock, which waits for
  the message's transaction, and which a message's FOR UPDATE waits for. A message and a run on one
  thread therefore commit one after the other, as they did under the thread's lock;
- a thread deleted since the read: the foreign key fails, and the caller gets the thread's 404.

Only for a run this process's executor will start (``Executor.offer_claim``): its first events are
published once it is stored and before the executor is given it, so none can precede them. A run
left for any executor keeps the transaction publishing its events (``run_actions.create_run``).
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Insert, Table, and_, bindparam, func, insert, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError

from openassistants import run_events
from openassistants.errors import InvalidRequest, not_found
from openassistants.services.runs import active_run_id, active_runs_of
from openassistants.services.runtime import Runtime
from openassistants.storage import tables
from openassistants.storage.db import Database, is_connectivity_error
from openassistants.storage.group_commit import GroupCommit
from openassistants.storage.prepared import Prepared, Row

A, T = tables.assistants, tables.threads
_ASSISTANT_KEYS = [column.key for column in A.columns]

#: Runs written by one statement, at most.
BATCH_MOST = 128
#: SQLSTATEs: a unique index refused the row; a foreign key found no thread.
_UNIQUE_VIOLATION, _FOREIGN_KEY_VIOLATION = "23505", "23503"


def _starts() -> Prepared:
    """For each (thread, tenant, assistant) of the parameters' arrays, ``o`` its place in them: the
    thread (if the tenant's), its active run (if any) and the assistant (if the tenant's), in one
    row; no row for a thread that is not the tenant's. One statement for every creation waiting."""
    wanted = (
        func.unnest(
            bindparam("thread_ids", type_=ARRAY(T.c.id.type)),
            bindparam("tenant_ids", type_=ARRAY(T.c.tenant_id.type)),
            bindparam("assistant_ids", type_=ARRAY(A.c.id.type)),
        )
        .table_valued("thread_id", "tenant_id", "assistant_id", with_ordinality="o")
        .render_derived(name="wanted")
    )
    return Prepared(
        select(
            wanted.c.o,
            T.c.id.label("found_thread_id"),
            active_runs_of(T.c.id).limit(1).scalar_subquery().label("active_run_id"),
            *A.c,
        ).select_from(
            wanted.join(T, and_(T.c.id == wanted.c.thread_id, T.c.tenant_id == wanted.c.tenant_id)).outerjoin(
                A, and_(A.c.id == wanted.c.assistant_id, A.c.tenant_id == wanted.c.tenant_id)
            )
        )
    )


_STARTS = _starts()
#: (tenant, thread id, assistant id) of a run to create.
Start = tuple[str, str, str]


async def _read_starts(db: Database, starts: list[Start]) -> list[Row | None]:
    """``GroupCommit``'s batch for reads: each creation's row (``_starts``), in one round trip."""
    values = {
        "tenant_ids": [tenant for tenant, _, _ in starts],
        "thread_ids": [thread_id for _, thread_id, _ in starts],
        "assistant_ids": [assistant_id for _, _, assistant_id in starts],
    }
    async with db.reader() as reader:
        rows = await reader.rows(_STARTS, values)
    found = {row["o"]: row for row in rows}
    return [found.get(n) for n in range(1, len(starts) + 1)]


#: Reads arriving while one is out wait for the next, which reads them all (as creations are written).
_READS: GroupCommit[Database, Start, Row | None] = GroupCommit(_read_starts, most=BATCH_MOST)


async def load_for_run(db: Database, tenant: str, thread_id: str, assistant_id: str) -> Row:
    """The assistant a run on the thread starts from; raises as ``create_run``'s checks do, in their
    order: the thread's 404, the thread's active run (400), the assistant's 404."""
    row = await _READS.submit(db, (tenant, thread_id, assistant_id))
    if row is None:
        raise not_found("thread", thread_id)
    if row["active_run_id"] is not None:
        raise _already_active(thread_id, row["active_run_id"])
    if row["id"] is None:
        raise not_found("assistant", assistant_id)
    return Row((key, row[key]) for key in _ASSISTANT_KEYS)


#: One run's rows: its own first, then what is stored with it (``Reply.rows``).
Rows = list[tuple[Table, dict[str, Any]]]


async def store_run(rt: Runtime, wire: dict[str, Any], rows: Rows) -> None:
    """Stores a run (``rows``: its row, claimed by this process's executor, then what is stored with
    it), then publishes its first events, of ``wire`` (the run as queued, as the client sees it);
    raises the 404 or 400 the insert met. Should the caller be cancelled meanwhile, a run stored all
    the same is never adopted: its lease lapses, and it is settled as a stopped worker's."""
    outcome = await _BATCHES.submit(rt.db, rows)
    if outcome is not None:
        raise outcome
    for event in run_events.run_created(wire):
        rt.bus.publish(wire["id"], event)


async def _write(db: Database, batch: list[Rows]) -> list[Exception | None]:
    """``GroupCommit``'s write: every run of the batch in one statement. If that fails on anything
    but the database's reach (a thread's second active run, a deleted thread, a value the table
    refuses), each on its own, so that only those fail: a batch holds other clients' runs, other
    tenants' too, and one run's value out of a column's range once failed them all (500s)."""
    try:
        await _insert(db, [row for rows in batch for row in rows])
        return [None] * len(batch)
    except DBAPIError as exc:
        if is_connectivity_error(exc):
            raise
    return [await _alone(db, rows) for rows in batch]


async def _alone(db: Database, rows: Rows) -> Exception | None:
    """Inserts one run's rows; returns what refused them instead of raising it: the API's 404 or
    400 for a broken rule, the database's own error (this run's 500) for anything else."""
    run = rows[0][1]
    while True:
        try:
            await _insert(db, rows)
            return None
        except DBAPIError as exc:
            if is_connectivity_error(exc):
                raise
            state = getattr(exc.orig, "sqlstate", None)
            if state == _FOREIGN_KEY_VIOLATION:
                return not_found("thread", run["thread_id"])
            if state != _UNIQUE_VIOLATION:
                return exc
        async with db.reader() as reader:
            active = await active_run_id(reader, run["thread_id"])
        if active is not None:
            return _already_active(run["thread_id"], active)
        # The run that refused this one ended meanwhile: try again.


_BATCHES: GroupCommit[Database, Rows, Exception | None] = GroupCommit(_write, most=BATCH_MOST)


def _already_active(thread_id: str, run_id: str) -> InvalidRequest:
    return InvalidRequest(f"Thread {thread_id} already has an active run {run_id}.")


async def _insert(db: Database, rows: Rows) -> None:
    by_table: dict[tuple[Table, tuple[str, ...]], list[dict[str, Any]]] = {}
    for table, values in rows:
        by_table.setdefault((table, tuple(values)), []).append(values)
    parameters = {
        f"t{t}_{key}": [values[key] for values in group]
        for t, ((_, keys), group) in enumerate(by_table.items())
        for key in keys
    }
    # Outside a transaction (``reader``'s connection begins none): the one statement commits itself.
    async with db.reader() as runner:
        await runner.execute(_inserts(tuple(by_table)), parameters)


@functools.cache
def _inserts(shape: tuple[tuple[Table, tuple[str, ...]], ...]) -> Prepared:
    """One statement inserting rows of ``keys`` into each ``table``, as many as its parameters' arrays
    hold (``unnest``: one statement, compiled and prepared once, whatever the batch's size): the first
    table's as the statement, the others' as its data-modifying CTEs (foreign keys between them hold
    at the statement's end)."""

    def insert_of(t: int, table: Table, keys: tuple[str, ...]) -> Insert:
        arrays = (bindparam(f"t{t}_{key}", type_=ARRAY(table.c[key].type, dimensions=1)) for key in keys)
        rows = func.unnest(*arrays).table_valued(*keys).render_derived(name=f"v{t}")
        return insert(table).from_select(keys, select(*rows.c))

    (first, keys), *rest = shape
    statement = insert_of(0, first, keys)
    for t, (table, keys) in enumerate(rest, start=1):
        statement = statement.add_cte(insert_of(t, table, keys).cte(f"t{t}"))
    return Prepared(statement)
