"""The ingestion queue is the ``vector_store_files`` table: a file ``in_progress`` with no
``worker_id`` waits to be ingested; a process claims it with a lease, exactly as runs are claimed
(storage/run_claims.py), so any API process or worker can ingest and a dead one's files are retried."""

from __future__ import annotations

from sqlalchemy import and_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from openassistants.statuses import FileStatus
from openassistants.storage import tables
from openassistants.storage.run_claims import now_ms

VF = tables.vector_store_files

#: (tenant, vector store id, file id)
IngestJob = tuple[str, str, str]


async def claim_files(
    conn: AsyncConnection, worker_id: str, limit: int, lease_seconds: float
) -> list[IngestJob]:
    if limit <= 0:
        return []
    waiting = (
        select(VF.c.seq, VF.c.tenant_id, VF.c.vector_store_id, VF.c.id)
        .where(VF.c.status == FileStatus.in_progress.value, VF.c.worker_id.is_(None))
        .order_by(VF.c.seq)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = (await conn.execute(waiting)).all()
    if not rows:
        return []
    await conn.execute(
        update(VF)
        .where(VF.c.seq.in_([r[0] for r in rows]), VF.c.worker_id.is_(None))
        .values(worker_id=worker_id, lease_expires_at=now_ms() + int(lease_seconds * 1000))
    )
    return [(r[1], r[2], r[3]) for r in rows]


async def renew_file_leases(
    conn: AsyncConnection, worker_id: str, jobs: list[IngestJob], lease_seconds: float
) -> None:
    for _tenant, store_id, file_id in jobs:
        await conn.execute(
            update(VF)
            .where(VF.c.worker_id == worker_id, VF.c.vector_store_id == store_id, VF.c.id == file_id)
            .values(lease_expires_at=now_ms() + int(lease_seconds * 1000))
        )


async def release_lapsed_files(conn: AsyncConnection, *, only_lapsed: bool = True) -> int:
    """Frees the claims of processes that stopped renewing them; their files are ingested again."""
    condition = and_(VF.c.worker_id.is_not(None), VF.c.status == FileStatus.in_progress.value)
    if only_lapsed:
        condition = and_(condition, VF.c.lease_expires_at < now_ms())
    result = await conn.execute(update(VF).where(condition).values(worker_id=None, lease_expires_at=None))
    return int(result.rowcount)
