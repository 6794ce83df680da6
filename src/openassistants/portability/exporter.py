"""``openassistants export``: one tenant's or every tenant's objects, from one snapshot, to an archive."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openassistants import __version__
from openassistants.config import Settings
from openassistants.portability.archive import ArchiveWriter
from openassistants.portability.progress import Progress
from openassistants.portability.tenancy import embedder_identity
from openassistants.storage import portable
from openassistants.storage.blobs import LocalBlobStore
from openassistants.storage.db import Database


@dataclass
class ExportReport:
    counts: dict[str, int]
    bytes: int
    seconds: float
    notes: list[str]


async def export_archive(settings: Settings, path: Path, tenant: str | None) -> ExportReport:
    """Writes the archive at ``path``; nothing appears there unless all of it was written."""
    started = time.monotonic()
    db = Database(settings.effective_database_url)
    blobs = LocalBlobStore(settings.data_dir / "files")
    writer = ArchiveWriter(path)
    notes: list[str] = []
    progress = Progress("export", total=None)
    try:
        await portable.prepare(db)
        async with portable.snapshot(db) as conn:
            tenants = [tenant] if tenant is not None else await portable.tenants(conn)
            for name, table in portable.TABLES.items():
                files: list[dict[str, Any]] = []
                async for rows in portable.stream_rows(conn, table, tenant):
                    if name == "files":
                        files.extend(rows)  # written once their bytes are safely copied
                    else:
                        for row in rows:
                            writer.write(name, row)
                    progress.advance(len(rows))
                for row in files:
                    try:
                        writer.copy_blob(row["id"], blobs.path(f"{row['tenant_id']}/{row['id']}"))
                    except FileNotFoundError:
                        # Its row is in the snapshot but its bytes are gone: deleted since it began.
                        notes.append(f"file {row['id']} was deleted during the export; left out")
                        continue
                    writer.write(name, row)
        writer.commit(
            {
                "software": f"openassistants {__version__}",
                "exported_at": int(time.time()),
                "database": "sqlite" if db.is_sqlite else "postgresql",
                "tenants": tenants,
                "embedder": {"identity": embedder_identity(settings)},
                "notes": notes,
            }
        )
    except BaseException:
        writer.discard()
        raise
    finally:
        progress.finish()
        await db.close()
    return ExportReport(writer.counts, writer.bytes_written, time.monotonic() - started, notes)
