"""What a leased claim on a row is, for every queue kept in a table (runs: storage/run_claims.py;
files to ingest: storage/ingest_claims.py): the claimer's ``worker_id`` and a ``lease_expires_at`` in
epoch milliseconds, pushed forward while the claimer works, and in the past once it stopped."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, update
from sqlalchemy.ext.asyncio import AsyncConnection


def now_ms() -> int:
    return int(time.time() * 1000)


def lease_until(lease_seconds: float) -> int:
    """A new or renewed lease's ``lease_expires_at``."""
    return now_ms() + int(lease_seconds * 1000)


def lapsed(table: Table) -> ColumnElement[bool]:
    """A claim whose holder stopped renewing it."""
    return and_(table.c.worker_id.is_not(None), table.c.lease_expires_at < now_ms())


async def renew(
    conn: AsyncConnection, table: Table, worker_id: str, ids: list[Any], lease_seconds: float, *held: Any
) -> None:
    """Renews this worker's leases on the rows ``ids`` (by ``id``) it is working on right now, while they
    are still ``held`` (and only those: a row whose task ended without finishing it must lapse, so
    that another process takes it over)."""
    await conn.execute(
        update(table)
        .where(table.c.worker_id == worker_id, table.c.id.in_(ids), *held)
        .values(lease_expires_at=lease_until(lease_seconds))
    )


async def release(conn: AsyncConnection, table: Table, *condition: Any) -> int:
    """Frees the claims on the rows matching ``condition``; how many it freed."""
    result = await conn.execute(update(table).where(*condition).values(worker_id=None, lease_expires_at=None))
    return int(result.rowcount)
