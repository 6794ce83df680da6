"""The run queue is the ``runs`` table itself: a queued run with no ``worker_id`` is waiting; an
executor claims it by writing its ``worker_id`` and a lease (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, so concurrent claimers never wait on or take the same run; SQLite's single writer
serializes claims anyway). Heartbeats push leases forward; a lease in the past marks a dead worker.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import ColumnElement, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from openassistants.statuses import EXECUTING, HELD, RunStatus, check_moves
from openassistants.storage import claims, tables
from openassistants.storage.prepared import Prepared, Runner

R = tables.runs

#: Statuses in which a run is held by an executor (and so carries a lease), as SQL parameters.
HELD_STATUSES = tuple(sorted(status.value for status in HELD))
EXECUTING_STATUSES = tuple(sorted(status.value for status in EXECUTING))
#: The status a claim gives a run: claiming starts it (the state machine's first move, checked
#: against its table once, here, rather than per claim).
CLAIMED = check_moves({RunStatus.queued}, RunStatus.in_progress).value


def _waiting(now: Any) -> tuple[ColumnElement[bool], ...]:
    """What makes a run claimable: queued, held by nobody, and not past its ``expires_at`` (those are
    the expiry sweep's). One definition for the claim and the look before it: were they to differ, a
    run the look missed would never be claimed."""
    return (R.c.status == RunStatus.queued.value, R.c.worker_id.is_(None), R.c.expires_at > now)


_WAITING = Prepared(select(R.c.id).where(*_waiting(bindparam("now"))).limit(1))


async def any_waiting(reader: Runner) -> bool:
    """Whether some run waits to be claimed: one indexed read, so that an executor with nothing to
    claim takes no write transaction (on SQLite, the writer's slot) to find that out."""
    return await reader.scalar(_WAITING, {"now": int(time.time())}) is not None


async def claim_runs(
    conn: AsyncConnection, worker_id: str, limit: int, lease_seconds: float
) -> list[dict[str, Any]]:
    """Claims and starts up to ``limit`` waiting runs, oldest first (``queued`` → ``in_progress``, the
    state machine's first move, made here so that starting a run costs no transaction of its own);
    returns their rows as updated, in one statement. Runs already past ``expires_at`` are left to the
    expiry sweep."""
    if limit <= 0:
        return []
    now = int(time.time())
    waiting = (
        select(R.c.id).where(*_waiting(now)).order_by(R.c.seq).limit(limit).with_for_update(skip_locked=True)
    )
    claimed = await conn.execute(
        update(R)
        .where(
            R.c.id.in_(waiting.scalar_subquery()),
            R.c.worker_id.is_(None),
            R.c.status == RunStatus.queued.value,
        )
        .values(
            status=CLAIMED,
            started_at=now,
            worker_id=worker_id,
            lease_expires_at=claims.lease_until(lease_seconds),
        )
        .returning(*R.c)
    )
    return sorted((dict(row) for row in claimed.mappings()), key=lambda row: row["seq"])


async def renew_leases(
    conn: AsyncConnection, worker_id: str, run_ids: list[str], lease_seconds: float
) -> None:
    """Renews the leases of the runs this worker is executing right now."""
    await claims.renew(conn, R, worker_id, run_ids, lease_seconds, R.c.status.in_(HELD_STATUSES))


async def lapsed_runs(conn: AsyncConnection) -> list[tuple[str, str, str]]:
    """(run id, status, worker id) of runs whose executor stopped renewing its lease."""
    rows = await conn.execute(select(R.c.id, R.c.status, R.c.worker_id).where(claims.lapsed(R)))
    return [(r[0], r[1], r[2]) for r in rows]


async def held_runs(conn: AsyncConnection) -> list[tuple[str, str, str | None]]:
    """(run id, status, worker id) of every run some executor holds or was executing."""
    rows = await conn.execute(
        select(R.c.id, R.c.status, R.c.worker_id).where(
            (R.c.worker_id.is_not(None)) | (R.c.status.in_(EXECUTING_STATUSES))
        )
    )
    return [(r[0], r[1], r[2]) for r in rows]


async def release_lapsed(
    conn: AsyncConnection, run_id: str, worker_id: str, *, require_lapsed: bool = True
) -> bool:
    """Frees a dead worker's claim, if it is still that worker's (and, unless ``require_lapsed`` is
    False, still unrenewed); True when this caller freed it."""
    condition = [R.c.id == run_id, R.c.worker_id == worker_id]
    if require_lapsed:
        condition.append(claims.lapsed(R))
    return await claims.release(conn, R, *condition) == 1


async def owner(conn: AsyncConnection, run_id: str) -> str | None:
    return (await conn.execute(select(R.c.worker_id).where(R.c.id == run_id))).scalar()
