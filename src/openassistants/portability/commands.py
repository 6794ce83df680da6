"""The ``export`` and ``import`` commands' bodies: run, report on stdout, and turn every refusal into
one ``error:`` line on stderr and a non-zero exit code."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import cast

from openassistants.config import Settings
from openassistants.portability.exporter import export_archive
from openassistants.portability.importer import OnConflict, import_source
from openassistants.portability.records import BadInput
from openassistants.portability.sources import open_source
from openassistants.portability.tenancy import key_tenant
from openassistants.storage.portable import DatabaseUnreachable
from openassistants.upstream.embeddings import EmbeddingError

#: Exit codes: refused input or options; a database or file system that failed.
EXIT_REFUSED = 1
EXIT_UNAVAILABLE = 3


def _fail(message: str, code: int = EXIT_REFUSED) -> int:
    sys.stderr.write(f"error: {message}\n")
    return code


def run_export(settings: Settings, path: Path, key: str | None) -> int:
    try:
        report = asyncio.run(export_archive(settings, path, key_tenant(settings, key)))
    except BadInput as exc:
        return _fail(str(exc))
    except DatabaseUnreachable as exc:
        return _fail(str(exc), EXIT_UNAVAILABLE)
    except OSError as exc:
        return _fail(f"{path}: {exc.strerror or exc}", EXIT_UNAVAILABLE)
    total = sum(report.counts.values())
    rate = total / report.seconds if report.seconds else 0.0
    counts = ", ".join(f"{n} {t}" for t, n in report.counts.items() if n)
    print(
        f"exported {total} objects ({counts or 'none'}), {report.bytes / 1e6:.1f} MB "
        f"in {report.seconds:.1f} s ({rate:,.0f} objects/s) to {path}"
    )
    for note in report.notes:
        print(f"note: {note}")
    return 0


def run_import(settings: Settings, path: Path, key: str | None, on_conflict: str) -> int:
    if on_conflict not in ("skip", "fail"):
        return _fail(f"--on-conflict must be skip or fail, not {on_conflict!r}")
    try:
        source = open_source(path)
        report = asyncio.run(import_source(settings, source, key, cast(OnConflict, on_conflict)))
    except BadInput as exc:
        return _fail(str(exc))
    except DatabaseUnreachable as exc:
        return _fail(str(exc), EXIT_UNAVAILABLE)
    except EmbeddingError as exc:
        return _fail(
            f"embedding chunks again failed (the graphs before them are imported): {exc}", EXIT_UNAVAILABLE
        )
    except OSError as exc:
        return _fail(f"{exc.strerror or exc}", EXIT_UNAVAILABLE)
    for note in report.notes:
        print(f"note: {note}")
    for skipped in report.skipped:
        print(f"skipped: {skipped}")
    if not report.imported_objects:
        print(
            f"nothing to import: {report.unchanged_units} object graph(s) from {source.description} "
            "are already here, unchanged"
        )
        return 0
    units = ", ".join(f"{n} {t}" for t, n in report.imported_units.items())
    rate = report.imported_objects / report.seconds if report.seconds else 0.0
    print(
        f"imported {report.imported_objects} objects ({units}; {report.unchanged_units} already here) from "
        f"{source.description}, {report.bytes / 1e6:.1f} MB of files, "
        f"in {report.seconds:.1f} s ({rate:,.0f} objects/s)"
    )
    return 0
