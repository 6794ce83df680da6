"""Reads of an object by its id that arrive together share one statement, on PostgreSQL.

``SharedFinds`` serves the busiest read, an object by its id (``assistants.retrieve``): while
``SHARED_OUT`` such reads are out, those that arrive wait, and share the next statement (``WHERE id =
ANY($1)``). A round trip (the driver's messages, a write and a read on the socket, a wake-up of the
loop, and the server's own bind and execute) then serves a whole batch: on the benchmark's 16
connections this took about a third of the server's CPU per retrieve off, and most of PostgreSQL's
(docs/benchmarks.md, "Issue 18 — PostgreSQL retrieve, round four"). A read that finds a turn free
runs at once, by itself. The cost: a read that waits may wait up to one round trip longer.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from sqlalchemy import Table, any_, bindparam, select
from sqlalchemy.dialects.postgresql import ARRAY

from openassistants.storage.db import Database
from openassistants.storage.prepared import Prepared, Row

#: Ids one shared read asks for, at most.
SHARED_MOST = 128
#: Statements of shared reads out at once, on one database. Two rather than one: with one, a few
#: clients' reads waited for each other's round trips (at 2 connections about 30 % fewer retrieves
#: a second than before batching); with two, as many as before; at 16, about the same gain as with one.
SHARED_OUT = 2


@dataclass(eq=False, slots=True)
class _Shared:
    """One database's shared reads: how many statements are out, and the reads waiting for a turn."""

    out: int = 0
    waiting: list[tuple[str, asyncio.Future[Row | None]]] = field(default_factory=list)


class SharedFinds:
    """Rows of ``table`` by id, through ``Database.reader``. At most ``SHARED_OUT`` statements are out
    at once; the reads that arrive meanwhile wait, and each statement that comes back makes way for
    the next, which reads all of them (up to ``SHARED_MOST`` ids).

    A read that finds a statement's turn free runs at once, in its caller's task, as it did before
    batching (so a few clients' reads still run side by side); the ones that waited are read in a
    task of their own, so that no caller's cancellation cuts the others' short. Callers waiting on one
    id share its ``Row``: they must not change it.
    """

    def __init__(self, table: Table) -> None:
        # One id (a read alone, or reads waiting for the same object) by ``= $1``: PostgreSQL plans
        # ``= ANY($1)`` afresh at every execution (its generic plan, costed for ten elements, looks
        # dearer than a custom one), which took a read alone from about 50 to 90 µs of its CPU.
        self._by_id = Prepared(select(table).where(table.c.id == bindparam("id")))
        self._by_ids = Prepared(
            select(table).where(table.c.id == any_(bindparam("ids", type_=ARRAY(table.c.id.type))))
        )
        # By database, while it has a statement out.
        self._shared: dict[Database, _Shared] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def find(self, db: Database, tenant: str, object_id: str) -> Row | None:
        """The tenant's row with this id, or None (as ``find_row``'s, whose ``tenant_id`` the statement
        leaves out: ids are unique, so the tenant is checked on the one row it finds)."""
        shared = self._shared.get(db)
        if shared is None:
            shared = self._shared[db] = _Shared()
        if shared.out < SHARED_OUT:  # then nothing waits: a turn is free
            shared.out += 1
            try:
                row = (await self._read(db, [object_id]))[0]
            finally:
                self._back(db, shared)
        else:
            future: asyncio.Future[Row | None] = asyncio.get_running_loop().create_future()
            shared.waiting.append((object_id, future))
            row = await future
        return row if row is not None and row["tenant_id"] == tenant else None

    async def _read(self, db: Database, ids: list[str]) -> list[Row | None]:
        distinct = list(dict.fromkeys(ids))
        async with db.reader() as reader:
            if len(distinct) == 1:
                rows = await reader.rows(self._by_id, {"id": distinct[0]})
            else:
                rows = await reader.rows(self._by_ids, {"ids": distinct})
        by_id = {row["id"]: row for row in rows}
        return [by_id.get(object_id) for object_id in ids]

    def _back(self, db: Database, shared: _Shared) -> None:
        """A statement came back: its turn goes to the reads waiting, if any."""
        shared.out -= 1
        if shared.waiting:
            batch = shared.waiting[:SHARED_MOST]
            del shared.waiting[:SHARED_MOST]
            shared.out += 1
            task = asyncio.get_running_loop().create_task(self._read_batch(db, shared, batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif not shared.out:
            del self._shared[db]

    async def _read_batch(
        self, db: Database, shared: _Shared, batch: list[tuple[str, asyncio.Future[Row | None]]]
    ) -> None:
        try:
            rows = await self._read(db, [object_id for object_id, _ in batch])
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        except BaseException:  # cancelled itself (at shutdown)
            for _, future in batch:
                future.cancel()
            raise
        else:
            for (_, future), row in zip(batch, rows, strict=True):
                if not future.done():
                    future.set_result(row)
        finally:
            self._back(db, shared)
