"""The ingestion queue is the ``vector_store_files`` table: a file ``in_progress`` with no
``worker_id`` waits to be ingested; a process claims it with a lease (storage/claims.py), as runs are
claimed (storage/run_claims.py), so any API process or worker can ingest and a dead one's files are
retried."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from openassistants.statuses import FileStatus
from openassistants.storage import claims, tables

VF = tables.vector_store_files

#: (tenant, vector store id, file id)
IngestJob = tuple[str, str, str]

_INGESTING = VF.c.status == FileStatus.in_progress.value


async def claim_files(
    conn: AsyncConnection, worker_id: str, limit: int, lease_seconds: float
) -> list[IngestJob]:
    if limit <= 0:
        return []
    waiting = (
        select(VF.c.seq, VF.c.tenant_id, VF.c.vector_store_id, VF.c.id)
        .where(_INGESTING, VF.c.worker_id.is_(None))
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
        .values(worker_id=worker_id, lease_expires_at=claims.lease_until(lease_seconds))
    )
    return [(r[1], r[2], r[3]) for r in rows]


async def renew_file_leases(
    conn: AsyncConnection, worker_id: str, jobs: list[IngestJob], lease_seconds: float
) -> None:
    """Renews the leases of the files this worker is ingesting right now (a file in two stores is
    two rows: both are this worker's only if it claimed both)."""
    file_ids = list({file_id for _tenant, _store, file_id in jobs})
    await claims.renew(conn, VF, worker_id, file_ids, lease_seconds, _INGESTING)


async def release_lapsed_files(conn: AsyncConnection, *, only_lapsed: bool = True) -> int:
    """Frees the claims of processes that stopped renewing them; their files are ingested again."""
    condition = [VF.c.worker_id.is_not(None), _INGESTING]
    if only_lapsed:
        condition.append(claims.lapsed(VF))
    return await claims.release(conn, VF, *condition)


async def release_file(conn: AsyncConnection, worker_id: str, job: IngestJob) -> bool:
    """Gives up this worker's claim on a file it stops before ingesting: another process takes it at
    once rather than when its lease lapses. True when the claim was still this worker's."""
    _tenant, store_id, file_id = job
    mine = (VF.c.worker_id == worker_id, VF.c.vector_store_id == store_id, VF.c.id == file_id)
    return await claims.release(conn, VF, *mine, _INGESTING) == 1
