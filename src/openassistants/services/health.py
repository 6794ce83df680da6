"""What the operations endpoints ask the database: whether it answers, and how many runs are in each
status. Both are cheap: ``SELECT 1``, and one ``GROUP BY`` over the ``(status, worker_id)`` index."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy import case, func, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from openassistants.errors import ServiceUnavailable
from openassistants.statuses import RunStatus
from openassistants.storage import tables
from openassistants.storage.db import Database

R = tables.runs


@dataclass(frozen=True)
class RunCounts:
    #: Every status, with 0 for those no run is in.
    by_status: dict[RunStatus, int]
    #: Queued runs no executor has claimed yet.
    queue_depth: int


async def ping_database(db: Database) -> None:
    """``SELECT 1``. Raises ServiceUnavailable when the database does not answer it."""
    async with _reading(db) as conn:
        await conn.execute(text("SELECT 1"))


async def count_runs(db: Database) -> RunCounts:
    """Runs per status, across all tenants. Raises ServiceUnavailable when the database does not answer."""
    unclaimed = func.sum(case((R.c.worker_id.is_(None), 1), else_=0))
    async with _reading(db) as conn:
        rows = (await conn.execute(select(R.c.status, func.count(), unclaimed).group_by(R.c.status))).all()
    by_status = dict.fromkeys(RunStatus, 0)
    queue_depth = 0
    for status, count, unclaimed_count in rows:
        by_status[RunStatus(status)] = int(count)
        if status == RunStatus.queued:
            queue_depth = int(unclaimed_count or 0)
    return RunCounts(by_status=by_status, queue_depth=queue_depth)


@asynccontextmanager
async def _reading(db: Database) -> AsyncIterator[AsyncConnection]:
    try:
        async with db.read() as conn:
            yield conn
    except SQLAlchemyError as exc:
        # db.read() already says so for lost connections; this covers the rest (e.g. refused logins).
        cause = getattr(exc, "orig", None) or type(exc).__name__  # the driver's words, not the SQL
        raise ServiceUnavailable(f"The database did not answer: {str(cause)[:200]}") from exc
