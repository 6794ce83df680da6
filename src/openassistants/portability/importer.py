"""``openassistants import``: any source's units into the configured database, keeping every id.

Three steps. The source is checked whole while it is opened (sources.py). Then the plan: which units
already exist here, and for those, whether what is stored is the same (unchanged: skipped, which makes
a second import a no-op) or not (a conflict). With ``--on-conflict fail`` any conflict refuses the
import before anything is written. Last, the units are written, several small ones to a transaction
but never part of one, files' bytes before their rows (as an upload does), so a failure leaves no half
thread and no file without bytes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from openassistants.config import Settings
from openassistants.portability.foreign import UNOWNED
from openassistants.portability.progress import Progress
from openassistants.portability.records import MEMBERS, BadInput, Unit
from openassistants.portability.tenancy import deployment_tenants, embedder_identity, key_tenant
from openassistants.storage import portable
from openassistants.storage.blobs import LocalBlobStore
from openassistants.storage.db import Database
from openassistants.tenants import OPEN_TENANT
from openassistants.upstream.embeddings import Embedder, create_embedder

OnConflict = Literal["skip", "fail"]
#: Conflicts listed in a refusal; the rest are counted.
MAX_LISTED = 20
#: Objects written per transaction (whole object graphs, so often more): each graph is whole or
#: absent either way, and a commit per small graph (on SQLite also a hand-off to the writer's thread)
#: cost more than its rows (docs/benchmarks.md, issue 16).
BATCH_OBJECTS = 2000
#: Chunks embedded per call when the archive's vectors came from another embedder.
EMBED_BATCH = 256


class Source(Protocol):
    @property
    def description(self) -> str: ...

    notes: list[str]
    #: What made the vectors of its chunks (None: unknown, so they are made again here).
    embedder: str | None
    ids: dict[str, list[str]]
    tenants: set[str]
    total_objects: int
    has_chunks: bool

    def units(self) -> Iterator[Unit]: ...


@dataclass
class ImportReport:
    imported_objects: int = 0
    imported_units: dict[str, int] = field(default_factory=dict)
    unchanged_units: int = 0
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    bytes: int = 0
    seconds: float = 0.0


def tenant_map(settings: Settings, source: Source, key: str | None) -> dict[str, str]:
    """Where each of the source's tenants goes; raises BadInput when that is not clear."""
    target = key_tenant(settings, key)
    if target is None and not settings.api_keys:
        target = OPEN_TENANT
    if target is not None:
        if len(source.tenants) > 1:
            raise BadInput(
                f"the input holds {len(source.tenants)} tenants' objects; import it without --key into a "
                "deployment with the same OPENASSISTANTS_API_KEYS, or export one tenant with --key"
            )
        return {t: target for t in source.tenants}
    if UNOWNED in source.tenants:
        raise BadInput("--key KEY is needed: say which of OPENASSISTANTS_API_KEYS should own these objects")
    strangers = sorted(source.tenants - deployment_tenants(settings))
    if strangers:
        raise BadInput(
            f"the input's tenant {strangers[0]} is none of this deployment's keys' tenants; import with "
            "--key KEY to give its objects to that key"
        )
    return {t: t for t in source.tenants}


async def import_source(
    settings: Settings, source: Source, key: str | None, on_conflict: OnConflict
) -> ImportReport:
    started = time.monotonic()
    tenants = tenant_map(settings, source, key)
    report = ImportReport(notes=list(source.notes))
    db = Database(settings.effective_database_url)
    embedder: Embedder | None = None
    try:
        await portable.prepare(db)
        decisions = await _plan(db, source, tenants)
        conflicts = [why for why in decisions.values() if why != "unchanged"]
        if conflicts and on_conflict == "fail":
            listed = "\n  ".join(conflicts[:MAX_LISTED])
            more = f"\n  …and {len(conflicts) - MAX_LISTED} more" if len(conflicts) > MAX_LISTED else ""
            raise BadInput(
                f"{len(conflicts)} object(s) conflict with different ones stored under the same id; nothing "
                f"was imported (--on-conflict skip imports the rest):\n  {listed}{more}"
            )
        here = embedder_identity(settings)
        if source.has_chunks and source.embedder != here:
            embedder = create_embedder(settings)
            report.notes.append(
                f"chunks were embedded by {source.embedder or 'an unnamed embedder'}, this deployment uses "
                f"{here}: embedded again"
            )
        await _write(db, settings, source, (tenants, decisions), embedder, on_conflict, report)
    finally:
        if embedder is not None:
            await embedder.aclose()
        await db.close()
    report.seconds = time.monotonic() - started
    return report


def _assign(unit: Unit, tenants: dict[str, str]) -> None:
    tenant = tenants[unit.tenant]
    for rows in unit.rows.values():
        for row in rows:
            row["tenant_id"] = tenant


async def _plan(db: Database, source: Source, tenants: dict[str, str]) -> dict[tuple[str, str], str]:
    """For each unit that touches an existing id: "unchanged", or why it conflicts."""
    existing = {t: await portable.existing_ids(db, portable.TABLES[t], ids) for t, ids in source.ids.items()}
    decisions: dict[tuple[str, str], str] = {}
    if not any(existing.values()):
        return decisions
    for unit in source.units():
        touched = [
            (t, r["id"])
            for t, rows in unit.rows.items()
            if t != "vector_store_files"
            for r in rows
            if r.get("id") in existing.get(t, ())
        ]
        if not touched:
            continue
        name = f"{unit.root[:-1]} {unit.root_id}"
        if (unit.root, unit.root_id) not in touched:
            table, object_id = touched[0]
            decisions[unit.root, unit.root_id] = (
                f"{name}: its {table[:-1]} {object_id} exists here in another place"
            )
            continue
        _assign(unit, tenants)
        stored = await portable.stored_unit(db, unit.root, unit.root_id, MEMBERS[unit.root])
        same = _contains(stored, unit)
        decisions[unit.root, unit.root_id] = "unchanged" if same else f"{name}: a different one exists here"
    return decisions


#: Columns that change by use alone (a search touches its store), never compared.
_VOLATILE = {"vector_stores": ("last_active_at", "expires_at")}


def _contains(stored: dict[str, list[dict[str, Any]]], unit: Unit) -> bool:
    """Whether what is stored is the unit, or the unit grown since (a thread continued here): the
    same root, and each of the unit's member rows stored unchanged under its id."""

    def steady(table: str, row: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in row.items() if k not in _VOLATILE.get(table, ())}

    if [steady(unit.root, r) for r in stored[unit.root]] != [
        steady(unit.root, r) for r in unit.rows[unit.root]
    ]:
        return False
    for table, rows in stored.items():
        if table == unit.root:
            continue
        if table == "chunks":
            if rows != [{"count": len(unit.rows.get("chunks", []))}]:
                return False
            continue
        by_id = {(r["id"], r.get("vector_store_id")): r for r in rows}
        if any(by_id.get((r["id"], r.get("vector_store_id"))) != r for r in unit.rows.get(table, [])):
            return False
    return True


async def _write(
    db: Database,
    settings: Settings,
    source: Source,
    plan: tuple[dict[str, str], dict[tuple[str, str], str]],
    embedder: Embedder | None,
    on_conflict: OnConflict,
    report: ImportReport,
) -> None:
    tenants, decisions = plan
    blobs = LocalBlobStore(settings.data_dir / "files")
    progress = Progress("import", total=source.total_objects)
    batch: list[Unit] = []
    try:
        for unit in source.units():
            decision = decisions.get((unit.root, unit.root_id))
            progress.advance(unit.objects)
            if decision == "unchanged":
                report.unchanged_units += 1
                continue
            if decision is not None:
                report.skipped.append(decision)
                continue
            _assign(unit, tenants)
            if embedder is not None and unit.rows.get("chunks"):
                await _embed(embedder, unit.rows["chunks"])
            batch.append(unit)
            if sum(u.objects for u in batch) >= BATCH_OBJECTS:
                await _flush(db, blobs, batch, on_conflict, report)
                batch = []
        await _flush(db, blobs, batch, on_conflict, report)
    finally:
        progress.finish()


async def _flush(
    db: Database, blobs: LocalBlobStore, batch: list[Unit], on_conflict: OnConflict, report: ImportReport
) -> None:
    """Writes the batch's units in one transaction, their files' bytes first; if one of them meets
    an id taken since the plan, each is written on its own, so that only that one is left out."""
    if not batch:
        return
    written: list[str] = []
    try:
        for unit in batch:
            if unit.blob is not None:
                written.append(await _put_blob(blobs, unit))
        await portable.insert_units(db, [u.rows for u in batch])
    except portable.IdCollision as exc:
        for key in written:
            await blobs.delete(key)
        if len(batch) > 1:
            for unit in batch:
                await _flush(db, blobs, [unit], on_conflict, report)
            return
        why = f"{batch[0].root[:-1]} {batch[0].root_id}: one of its ids was taken meanwhile ({exc})"
        if on_conflict == "fail":
            raise BadInput(
                f"{why}; the objects imported before it are complete, nothing of it was written"
            ) from exc
        report.skipped.append(why)
        return
    except BaseException:
        for key in written:
            await blobs.delete(key)
        raise
    for unit in batch:
        report.imported_objects += unit.objects
        report.imported_units[unit.root] = report.imported_units.get(unit.root, 0) + 1
        report.bytes += unit.blob_bytes


async def _put_blob(blobs: LocalBlobStore, unit: Unit) -> str:
    """Stores a file unit's bytes under its key, which must be free; returns the key."""
    assert unit.blob is not None
    key = f"{unit.tenant}/{unit.root_id}"
    if blobs.path(key).exists():
        # Another file holds this id here (created since the plan): never overwrite its bytes.
        raise portable.IdCollision(f"file {unit.root_id} exists")
    async with blobs.stage() as staged:
        try:
            with unit.blob.open("rb") as handle:
                while block := handle.read(1024 * 1024):
                    await staged.write(block)
        except FileNotFoundError:
            raise BadInput(f"file {unit.root_id}: its bytes ({unit.blob}) are missing") from None
        await staged.commit(key)
    return key


async def _embed(embedder: Embedder, chunks: list[dict[str, Any]]) -> None:
    for start in range(0, len(chunks), EMBED_BATCH):
        batch = chunks[start : start + EMBED_BATCH]
        vectors = await embedder.embed([c["text"] for c in batch], kind="passage")
        for chunk, vector in zip(batch, vectors, strict=True):
            chunk["embedding"] = np.asarray(vector, dtype="<f4").tobytes()
