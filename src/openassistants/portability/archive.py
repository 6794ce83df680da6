"""The archive format (``openassistants-archive``, version 1; docs/data.md): writing one, and reading one
back as units after checking all of it.

    ARCHIVE/manifest.json       format, version, tenants, embedder, and every file's rows, bytes, sha256
    ARCHIVE/<table>.jsonl       one row per line; a member table's rows grouped by their root, in the
                                root table's order (messages by thread, chunks by vector store...)
    ARCHIVE/blobs/<file id>     each file's bytes

A writer fills a hidden directory beside the destination and renames it into place at the end, so an
interrupted export leaves no archive rather than part of one. A reader checks the manifest, every
checksum and every line before it yields anything, so that bad input is refused before a write.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from openassistants.portability.records import MEMBERS, ROOTS, SAFE_ID, BadInput, Unit, from_record, to_record
from openassistants.storage.portable import PARENT, TABLES

FORMAT = "openassistants-archive"
VERSION = 1
MANIFEST = "manifest.json"
BLOBS = "blobs"
_READ_BYTES = 1024 * 1024


class ArchiveWriter:
    """Writes an archive at ``path`` (which must not exist); ``commit`` makes it appear."""

    def __init__(self, path: Path) -> None:
        if path.exists():
            raise BadInput(f"{path} already exists; export to a new path")
        self.path = path
        self.staging = path.parent / f".{path.name}.partial-{os.getpid()}"
        shutil.rmtree(self.staging, ignore_errors=True)
        (self.staging / BLOBS).mkdir(parents=True)
        self._files: dict[str, tuple[IO[bytes], Any, list[int]]] = {}
        self.entries: dict[str, dict[str, Any]] = {}
        self.counts: dict[str, int] = {}
        self.bytes_written = 0

    def write(self, table: str, row: dict[str, Any]) -> None:
        if table not in self._files:
            name = f"{table}.jsonl"
            self._files[table] = ((self.staging / name).open("wb"), hashlib.sha256(), [0, 0])
        handle, digest, tally = self._files[table]
        line = orjson.dumps(to_record(table, row)) + b"\n"
        handle.write(line)
        digest.update(line)
        tally[0] += 1
        tally[1] += len(line)

    def copy_blob(self, file_id: str, source: Path) -> None:
        """Copies a file's bytes in; raises FileNotFoundError if ``source`` is gone."""
        digest = hashlib.sha256()
        size = 0
        with source.open("rb") as src, (self.staging / BLOBS / file_id).open("wb") as dst:
            while block := src.read(_READ_BYTES):
                digest.update(block)
                dst.write(block)
                size += len(block)
        self.entries[f"{BLOBS}/{file_id}"] = {"bytes": size, "sha256": digest.hexdigest()}
        self.bytes_written += size

    def commit(self, manifest: dict[str, Any]) -> None:
        for table, (handle, digest, (rows, size)) in self._files.items():
            handle.close()
            self.entries[f"{table}.jsonl"] = {"rows": rows, "bytes": size, "sha256": digest.hexdigest()}
            self.counts[table] = rows
            self.bytes_written += size
        body = {
            "format": FORMAT,
            "version": VERSION,
            **manifest,
            "counts": self.counts,
            "files": self.entries,
        }
        (self.staging / MANIFEST).write_bytes(orjson.dumps(body, option=orjson.OPT_INDENT_2))
        self.staging.rename(self.path)

    def discard(self) -> None:
        for handle, _, _ in self._files.values():
            handle.close()
        shutil.rmtree(self.staging, ignore_errors=True)


def is_archive(path: Path) -> bool:
    if not (path / MANIFEST).is_file():
        return False
    try:
        manifest = orjson.loads((path / MANIFEST).read_bytes())
    except orjson.JSONDecodeError:
        return True  # ours by name; read_archive reports the damage
    return isinstance(manifest, dict) and manifest.get("format") == FORMAT


class ArchiveSource:
    """A checked archive, yielding its units in import order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.manifest = _manifest(path)
        self.notes: list[str] = list(self.manifest.get("notes") or [])
        self.embedder: str | None = (self.manifest.get("embedder") or {}).get("identity")
        self.ids: dict[str, list[str]] = {}
        self.tenants: set[str] = set()
        self.total_objects = 0
        self.has_chunks = "chunks.jsonl" in self.manifest["files"]
        self._check()

    @property
    def description(self) -> str:
        return f"{FORMAT} v{VERSION} at {self.path}"

    def _lines(self, table: str, *, check: bool = True) -> Iterator[tuple[str, dict[str, Any]]]:
        entry = self.manifest["files"].get(f"{table}.jsonl")
        if entry is None:
            return
        with (self.path / f"{table}.jsonl").open("rb") as handle:
            for number, line in enumerate(handle, 1):
                where = f"{table}.jsonl line {number}"
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError:
                    raise BadInput(f"{where}: not valid JSON (a corrupt or truncated archive)") from None
                if not isinstance(record, dict):
                    raise BadInput(f"{where}: not a JSON object")
                yield where, from_record(table, record, where, check=check)

    def _check(self) -> None:
        """Checksums, then every line: ids, kinds, and that member rows follow their roots' order."""
        for name, entry in self.manifest["files"].items():
            _verify(self.path, name, entry)
        order: dict[str, dict[str, int]] = {}
        for table in TABLES:
            if table in PARENT:
                parent, fk = PARENT[table]
                last = -1
                for where, row in self._lines(table):
                    position = order[parent].get(row[fk])
                    if position is None:
                        raise BadInput(f"{where}: {fk} {row[fk]} is not in {parent}.jsonl")
                    if position < last:
                        raise BadInput(f"{where}: rows must be grouped by {fk} in {parent}.jsonl's order")
                    last = position
                    self._take(table, row)
            else:
                order[table] = {}
                for where, row in self._lines(table):
                    if row["id"] in order[table]:
                        raise BadInput(f"{where}: {table} id {row['id']} appears twice")
                    order[table][row["id"]] = len(order[table])
                    self._take(table, row)
                    if table == "files":
                        self._check_blob(where, row)

    def _check_blob(self, where: str, row: dict[str, Any]) -> None:
        blob = self.manifest["files"].get(f"{BLOBS}/{row['id']}")
        if blob is None:
            raise BadInput(f"{where}: file {row['id']}'s bytes ({BLOBS}/{row['id']}) are missing")
        if blob.get("bytes") != row["bytes"]:
            raise BadInput(
                f"{where}: file {row['id']} has {row['bytes']} bytes, "
                f"but {BLOBS}/{row['id']} has {blob.get('bytes')}"
            )

    def _take(self, table: str, row: dict[str, Any]) -> None:
        self.total_objects += 1
        self.tenants.add(row["tenant_id"])
        if "id" in row and table != "vector_store_files":
            self.ids.setdefault(table, []).append(row["id"])

    def units(self) -> Iterator[Unit]:
        for root in ROOTS:
            # Checked whole when opened: the files are only read again here.
            members = {name: _Peekable(self._lines(name, check=False)) for name in MEMBERS[root]}
            for _, row in self._lines(root, check=False):
                rows: dict[str, list[dict[str, Any]]] = {root: [row]}
                for name, lines in members.items():
                    rows[name] = lines.take_while(PARENT[name][1], row["id"])
                unit = Unit(root, row["id"], rows)
                if root == "files":
                    unit.blob = self.path / BLOBS / row["id"]
                    unit.blob_bytes = int(self.manifest["files"][f"{BLOBS}/{row['id']}"]["bytes"])
                yield unit


class _Peekable:
    def __init__(self, lines: Iterator[tuple[str, dict[str, Any]]]) -> None:
        self._lines = lines
        self._next = next(lines, None)

    def take_while(self, fk: str, value: str) -> list[dict[str, Any]]:
        taken = []
        while self._next is not None and self._next[1][fk] == value:
            taken.append(self._next[1])
            self._next = next(self._lines, None)
        return taken


def _manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = orjson.loads((path / MANIFEST).read_bytes())
    except orjson.JSONDecodeError:
        raise BadInput(f"{path / MANIFEST}: not valid JSON (a corrupt or truncated archive)") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BadInput(f"{path / MANIFEST}: not an {FORMAT} manifest")
    version = manifest.get("version")
    if version != VERSION:
        raise BadInput(
            f"{path}: archive format version {version!r} is not one this openassistants reads ({VERSION})"
        )
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise BadInput(f"{path / MANIFEST}: 'files' must be an object")
    for name in files:
        table = name.removesuffix(".jsonl")
        blob = name.removeprefix(f"{BLOBS}/")
        if not (table in TABLES and name.endswith(".jsonl")) and not (
            blob != name and SAFE_ID.fullmatch(blob)
        ):
            raise BadInput(f"{path / MANIFEST}: unexpected entry {name[:80]!r} in 'files'")
    return manifest


def _verify(root: Path, name: str, entry: Any) -> None:
    if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
        raise BadInput(f"{root / MANIFEST}: entry {name} lacks its sha256")
    path = root / name
    if path.is_symlink():
        # A link could make an import read any file of this machine into a tenant's files.
        raise BadInput(f"{path}: a symbolic link; an archive holds regular files only")
    if not path.is_file():
        raise BadInput(f"{path}: listed in the manifest but missing")
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_READ_BYTES):
            digest.update(block)
    if digest.hexdigest() != entry["sha256"] or path.stat().st_size != entry.get("bytes"):
        raise BadInput(f"{path}: checksum mismatch (a corrupt or truncated archive)")
