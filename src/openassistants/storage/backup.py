"""Backup and restore of the embedded deployment: the SQLite database and every file blob it names.

A backup is one directory (docs/operations.md)::

    manifest.json        format, time, schema revision, and each blob's key, size and SHA-256
    openassistants.db    a consistent snapshot of the database
    files/<tenant>/<file id>

The snapshot is taken with SQLite's online backup API in a single step, that is inside one read
transaction: in WAL mode a reader never blocks the server's writer nor is blocked by it, so the server
keeps taking writes and the snapshot is the database as of one instant. Blobs are written once and
never change, so copying one early is as good as copying it late. They are copied *before* the
snapshot (a blob is committed before its file row, and deleted after it), then the snapshot decides:
blobs it does not name are dropped from the backup, blobs it names that appeared meanwhile are copied.
The backup is built under a temporary name beside PATH and renamed to PATH once complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DB_NAME = "openassistants.db"
FILES_DIR = "files"
MANIFEST = "manifest.json"
FORMAT = 1
_CHUNK = 1024 * 1024
#: Leftovers of a running server that belong to the database file (never copied on their own).
_DB_COMPANIONS = (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm")


class BackupError(Exception):
    """Why a backup or restore was refused or failed, as one line for the operator."""


@dataclass(frozen=True)
class Summary:
    path: Path
    files: int
    bytes: int


def backup(data_dir: Path, target: Path) -> Summary:
    """Writes a backup of ``data_dir`` (which a server may be using) to the new directory ``target``."""
    source = data_dir / DB_NAME
    if not source.is_file():
        raise BackupError(f"no database at {source}: is {data_dir} the server's data directory?")
    if target.exists():
        raise BackupError(f"{target} already exists: name a new path")
    if not target.parent.is_dir():
        raise BackupError(f"{target.parent} is not a directory")
    # Private (0700) like the data itself; beside the target, so the final rename stays on one disk.
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        blobs = data_dir / FILES_DIR
        copied = {}
        for key in _blob_keys(blobs):
            # A blob deleted since it was listed: its row was deleted first, so no snapshot names it.
            with contextlib.suppress(FileNotFoundError):
                copied[key] = _copy(blobs / key, staging / FILES_DIR / key)
        _snapshot(source, staging / DB_NAME)
        named = _named_blobs(staging / DB_NAME)
        for key in named - copied.keys():
            try:
                copied[key] = _copy(blobs / key, staging / FILES_DIR / key)
            except FileNotFoundError:
                raise BackupError(
                    f"file {key} was deleted while the backup ran; run the backup again"
                ) from None
        for key in copied.keys() - named:
            (staging / FILES_DIR / key).unlink()
            del copied[key]
        manifest = {
            "format": FORMAT,
            "created_at": int(time.time()),
            "schema": sorted(_revisions(staging / DB_NAME)),
            "files": {
                key: {"bytes": size, "sha256": digest} for key, (size, digest) in sorted(copied.items())
            },
        }
        _write_synced(staging / MANIFEST, json.dumps(manifest, indent=1).encode())
        _sync_directory(staging)
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _sync_directory(target.parent)
    return Summary(target, len(copied), sum(size for size, _ in copied.values()))


def restore(source: Path, data_dir: Path, *, force: bool = False) -> Summary:
    """Checks the backup ``source`` whole, then makes it the database and files of ``data_dir``.

    ``data_dir`` must be new or empty; ``force`` replaces the database and files of a used one (whose
    server must be stopped). Nothing in ``data_dir`` changes unless the backup checks out.
    """
    manifest = _check(source)
    present = [p.name for p in data_dir.iterdir()] if data_dir.is_dir() else []
    if present and not force:
        raise BackupError(
            f"{data_dir} is not empty: restore into a new directory, or pass --force to replace its "
            "database and files (stop its server first)"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".restore-", dir=data_dir))
    try:
        _copy(source / DB_NAME, staging / DB_NAME)
        for key in manifest["files"]:
            _copy(source / FILES_DIR / key, staging / FILES_DIR / key)
        _sync_directory(staging)
        (staging / FILES_DIR).mkdir(exist_ok=True)
        _remove_current(data_dir)
        os.replace(staging / DB_NAME, data_dir / DB_NAME)
        os.replace(staging / FILES_DIR, data_dir / FILES_DIR)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _sync_directory(data_dir)
    files: list[dict[str, Any]] = list(manifest["files"].values())
    return Summary(data_dir, len(files), sum(int(entry["bytes"]) for entry in files))


def _check(source: Path) -> dict[str, Any]:
    """The backup's manifest, once the database passes ``PRAGMA integrity_check`` and every blob it
    names is present with its recorded size and digest."""
    try:
        manifest: dict[str, Any] = json.loads((source / MANIFEST).read_text())
    except (OSError, ValueError):
        raise BackupError(f"{source} is not a backup made by `openassistants backup`") from None
    if manifest.get("format") != FORMAT:
        raise BackupError(
            f"{source} has backup format {manifest.get('format')!r}; this version reads {FORMAT}"
        )
    database = source / DB_NAME
    if not database.is_file():
        raise BackupError(f"{database} is missing")
    connection = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)
    try:
        verdict = [row[0] for row in connection.execute("PRAGMA integrity_check")]
        named = {f"{tenant}/{file_id}" for tenant, file_id in connection.execute(_FILES_QUERY)}
    except sqlite3.Error as exc:
        raise BackupError(f"{database} is not a readable database: {exc}") from None
    finally:
        connection.close()
    if verdict != ["ok"]:
        raise BackupError(f"{database} fails its integrity check: {'; '.join(verdict[:3])}")
    files: dict[str, dict[str, Any]] = manifest["files"]
    unheld = sorted(named - files.keys())
    if unheld:
        raise BackupError(f"the backup's database names file {unheld[0]}, which the backup does not hold")
    for key, entry in files.items():
        path = source / FILES_DIR / key
        try:
            size, digest = _digest(path)
        except FileNotFoundError:
            raise BackupError(f"{path} is missing from the backup") from None
        if (size, digest) != (entry["bytes"], entry["sha256"]):
            raise BackupError(f"{path} is damaged: its size or SHA-256 differs from the manifest's")
    return manifest


_FILES_QUERY = "SELECT tenant_id, id FROM files"


def _snapshot(source: Path, target: Path) -> None:
    reader = sqlite3.connect(source, timeout=30)
    try:
        reader.execute("PRAGMA query_only=ON")
        writer = sqlite3.connect(target)
        try:
            # pages=-1: every page in one step, i.e. one read transaction (a stepped copy restarts
            # whenever the server writes in between).
            reader.backup(writer, pages=-1)
        finally:
            writer.close()
    except sqlite3.Error as exc:
        raise BackupError(f"{source}: {exc}") from None
    finally:
        reader.close()
    with target.open("rb") as handle:
        os.fsync(handle.fileno())


def _named_blobs(database: Path) -> set[str]:
    connection = sqlite3.connect(database)
    try:
        return {f"{tenant}/{file_id}" for tenant, file_id in connection.execute(_FILES_QUERY)}
    finally:
        connection.close()


def _revisions(database: Path) -> set[str]:
    connection = sqlite3.connect(database)
    try:
        return {row[0] for row in connection.execute("SELECT version_num FROM alembic_version")}
    except sqlite3.OperationalError:  # a database created before migrations were tracked
        return set()
    finally:
        connection.close()


def _blob_keys(root: Path) -> list[str]:
    """Keys of the blobs in a store (``<tenant>/<file id>``); staged uploads (hidden) are not blobs."""
    if not root.is_dir():
        return []
    return [
        f"{tenant.name}/{blob.name}"
        for tenant in root.iterdir()
        if tenant.is_dir() and not tenant.name.startswith(".")
        for blob in tenant.iterdir()
        if not blob.name.startswith(".")
    ]


def _copy(source: Path, target: Path) -> tuple[int, str]:
    """Copies one blob (private, synced) and returns its size and SHA-256."""
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    with source.open("rb") as reader:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as writer:
            while chunk := reader.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
                writer.write(chunk)
            writer.flush()
            os.fsync(writer.fileno())
    return size, digest.hexdigest()


def _digest(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as reader:
        while chunk := reader.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _write_synced(path: Path, data: bytes) -> None:
    with path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _sync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_current(data_dir: Path) -> None:
    """The database (with its WAL) and blobs a forced restore replaces."""
    for name in _DB_COMPANIONS:
        with contextlib.suppress(FileNotFoundError):
            (data_dir / name).unlink()
    shutil.rmtree(data_dir / FILES_DIR, ignore_errors=True)
