"""What users already have: ``assistants-thread-export/v1`` exports and folders of SDK JSON dumps.

Both hold the hosted API's objects as it returned them. They become rows column for column (our
columns are the wire fields), with the defaults the API implies where a field is absent; what cannot
come across (file bytes the hosted API never gave out, hosted vector stores' chunks, objects whose
parent is missing) is reported in ``notes``, never dropped silently.

``assistants-thread-export/v1`` (github.com/redwoodworksco/assistants-api-export)::

    EXPORT/manifest.json          "export_schema": "assistants-export-manifest/v1"
    EXPORT/assistants.json        a list of assistant objects
    EXPORT/threads/<id>.json      {"export_schema": "assistants-thread-export/v1", "thread": {...},
                                   "messages": [...ascending], "runs": [{..., "steps": [...]}],
                                   "files": {"file-…": file object (metadata only)}, "errors": [...]}

An SDK dump folder: any ``*.json`` files, anywhere below it, each holding one object
(``model_dump()``), a list of them, or a list page (``{"object": "list", "data": [...]}``); kinds
are told by their ``object`` field. A file's bytes sit beside its JSON, named by its id (``file-…``,
with or without an extension). docs/data.md has the details.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from openassistants.portability.records import MEMBERS, SAFE_ID, BadInput, Unit, check_row
from openassistants.statuses import FileStatus, UploadStatus
from openassistants.storage.portable import TABLES, archived_columns

THREAD_EXPORT = "assistants-thread-export/v1"
THREAD_EXPORT_MANIFEST = "assistants-export-manifest/v1"
#: Stands for "whoever imports this": the importer maps it to the tenant of the key given.
UNOWNED = "_unowned"
_TABLE_OF = {
    "assistant": "assistants",
    "thread": "threads",
    "thread.message": "messages",
    "thread.run": "runs",
    "thread.run.step": "run_steps",
    "file": "files",
    "vector_store": "vector_stores",
    "vector_store.file": "vector_store_files",
}
#: What a column holds when the hosted object leaves its field out or null, where we need a value.
_DEFAULTS: dict[str, Any] = {
    "tools": [],
    "tool_resources": {},
    "metadata": {},
    "instructions": "",
    "truncation_strategy": {"type": "auto", "last_messages": None},
    "parallel_tool_calls": True,
    "chunking_strategy": {"type": "other"},
    "usage_bytes": 0,
    "status": UploadStatus.processed.value,
}


def _row(table: str, obj: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"tenant_id": UNOWNED}
    for name in archived_columns(TABLES[table]):
        if name != "tenant_id":
            row[name] = obj.get(name)
        if (
            row.get(name) is None
            and name in _DEFAULTS
            and not (table == "assistants" and name == "instructions")
        ):
            row[name] = _DEFAULTS[name]
    if table == "vector_stores" and row.get("name") == "":
        row["name"] = None
    return row


def _created_at(obj: dict[str, Any]) -> int:
    """Sort key; a malformed created_at sorts first here and is refused by the row's check."""
    value = obj.get("created_at")
    return value if isinstance(value, int) else 0


class WireSource:
    """Hosted-API objects gathered from somewhere, then checked and grouped into units."""

    embedder: str | None = None
    #: The hosted API gives no chunks; vector store files are ingested again instead.
    has_chunks = False

    def __init__(self, description: str) -> None:
        self.description = description
        self.notes: list[str] = []
        self.objects: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in _TABLE_OF.values()}
        self.blobs: dict[str, Path] = {}
        self._units: list[Unit] = []
        self.ids: dict[str, list[str]] = {}
        self.tenants = {UNOWNED}
        self.total_objects = 0

    def add(self, obj: Any, where: str) -> None:
        if isinstance(obj, list):
            for item in obj:
                self.add(item, where)
            return
        if not isinstance(obj, dict):
            raise BadInput(f"{where}: expected a JSON object or a list of them")
        if obj.get("object") == "list" and isinstance(obj.get("data"), list):
            self.add(obj["data"], where)
            return
        table = _TABLE_OF.get(str(obj.get("object")))
        if table is None:
            self.notes.append(f"{where}: an object of type {str(obj.get('object'))[:40]!r} was not imported")
            return
        key = (
            str(obj.get("vector_store_id", "")) + ":" + str(obj.get("id"))
            if table == "vector_store_files"
            else str(obj.get("id"))
        )
        self.objects[table].setdefault(key, obj)

    def finish(self) -> WireSource:
        """Checks every object and groups them into units; raises BadInput on the first bad one."""
        by_parent: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for table, fk in (
            ("messages", "thread_id"),
            ("runs", "thread_id"),
            ("run_steps", "thread_id"),
            ("vector_store_files", "vector_store_id"),
        ):
            by_parent[table] = {}
            for obj in sorted(self.objects[table].values(), key=_created_at):
                row = _row(table, obj)
                check_row(table, row, f"{table[:-1]} {str(obj.get('id'))[:64]}")
                by_parent[table].setdefault(row[fk], []).append(row)
        for file_id, obj in self.objects["files"].items():
            if file_id not in self.blobs:
                self.notes.append(
                    f"file {file_id} ({obj.get('filename')}): no bytes beside its JSON; not imported"
                )
                continue
            unit = self._unit("files", obj, {})
            unit.blob = self.blobs[file_id]
            unit.blob_bytes = unit.blob.stat().st_size
            unit.rows["files"][0]["bytes"] = unit.blob_bytes
        for obj in self.objects["vector_stores"].values():
            self._vector_store(obj, by_parent["vector_store_files"].pop(str(obj.get("id")), []))
        for obj in self.objects["assistants"].values():
            self._unit("assistants", obj, {})
        for obj in self.objects["threads"].values():
            thread_id = str(obj.get("id"))
            self._unit("threads", obj, {t: by_parent[t].pop(thread_id, []) for t in MEMBERS["threads"]})
        for table, orphans in by_parent.items():
            for parent_id, rows in orphans.items():
                self.notes.append(
                    f"{len(rows)} {table} of {parent_id}, which is not in the input: not imported"
                )
        self._note_dangling_references()
        return self

    def _unit(self, root: str, obj: dict[str, Any], members: dict[str, list[dict[str, Any]]]) -> Unit:
        row = _row(root, obj)
        check_row(root, row, f"{root[:-1]} {str(obj.get('id'))[:64]}")
        unit = Unit(root, row["id"], {root: [row], **members})
        self._units.append(unit)
        self.total_objects += unit.objects
        for table, rows in unit.rows.items():
            if table != "vector_store_files":
                self.ids.setdefault(table, []).extend(r["id"] for r in rows)
        return unit

    def _vector_store(self, obj: dict[str, Any], files: list[dict[str, Any]]) -> None:
        kept = []
        for row in files:
            if row["id"] not in self.blobs:
                self.notes.append(
                    f"vector store {obj.get('id')}: file {row['id']} has no bytes here; left out"
                )
                continue
            # Hosted chunks cannot be exported: the file is chunked and embedded again here.
            kept.append({**row, "status": FileStatus.in_progress.value, "last_error": None})
        if kept:
            self.notes.append(
                f"vector store {obj.get('id')}: {len(kept)} file(s) will be chunked and embedded here"
            )
        self._unit("vector_stores", obj, {"vector_store_files": kept})

    def _note_dangling_references(self) -> None:
        stores = set(self.objects["vector_stores"])
        for unit in self._units:
            resources = unit.rows[unit.root][0].get("tool_resources") or {}
            file_search = resources.get("file_search") or {}
            ids = file_search.get("vector_store_ids") or []
            missing = [i for i in ids if i not in stores]
            if missing:
                # Runs would search stores that do not exist here; the reference is dropped instead.
                file_search["vector_store_ids"] = [i for i in ids if i in stores]
                self.notes.append(
                    f"{unit.root[:-1]} {unit.root_id}: vector store(s) {', '.join(missing)} "
                    "not in the input; reference dropped"
                )

    def units(self) -> Iterator[Unit]:
        order = {root: n for n, root in enumerate(("files", "vector_stores", "assistants", "threads"))}
        yield from sorted(self._units, key=lambda u: order[u.root])


def _load(path: Path) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError:
        raise BadInput(f"{path}: not valid JSON") from None


def is_thread_export(path: Path) -> bool:
    if path.is_file():
        return path.suffix == ".json" and THREAD_EXPORT.encode() in path.read_bytes()[:4096]
    manifest = path / "manifest.json"
    return (manifest.is_file() and THREAD_EXPORT_MANIFEST.encode() in manifest.read_bytes()) or (
        (path / "threads").is_dir() and (path / "assistants.json").is_file()
    )


def _objects(value: Any, where: str) -> list[dict[str, Any]]:
    """``value`` as a list of JSON objects (absent: none); raises BadInput for any other shape."""
    if value is None:
        return []
    if isinstance(value, dict):
        value = list(value.values())
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise BadInput(f"{where}: expected a list of JSON objects")
    return value


def read_thread_export(path: Path) -> WireSource:
    source = WireSource(f"{THREAD_EXPORT} at {path}")
    records = [path] if path.is_file() else sorted((path / "threads").glob("*.json"))
    if path.is_dir() and (path / "assistants.json").is_file():
        source.add(_load(path / "assistants.json"), "assistants.json")
    if path.is_dir() and (path / "manifest.json").is_file():
        manifest = _load(path / "manifest.json")
        if not isinstance(manifest, dict):
            raise BadInput(f"{path / 'manifest.json'}: not a JSON object")
        for failed in _objects(manifest.get("threads_failed"), "manifest.json threads_failed"):
            source.notes.append(
                f"thread {failed.get('thread_id')}: the export could not fetch it ({failed.get('error')})"
            )
    for record_path in records:
        record = _load(record_path)
        if not isinstance(record, dict) or record.get("export_schema") != THREAD_EXPORT:
            raise BadInput(f"{record_path}: not an {THREAD_EXPORT} thread record (no matching export_schema)")
        where = record_path.name
        for error in _objects(record.get("errors"), f"{where} errors"):
            source.notes.append(
                f"{where}: the export recorded {error.get('object')} {error.get('id')}: {error.get('error')}"
            )
        if record.get("thread") is None:
            continue
        source.add(record["thread"], where)
        source.add(_objects(record.get("messages"), f"{where} messages"), where)
        for run in _objects(record.get("runs"), f"{where} runs"):
            source.add({k: v for k, v in run.items() if k != "steps"}, where)
            source.add(_objects(run.get("steps"), f"{where} steps"), where)
        source.add(_objects(record.get("files"), f"{where} files"), where)
    return source.finish()


def read_sdk_dumps(path: Path) -> WireSource:
    source = WireSource(f"SDK JSON dumps at {path}")
    contents: dict[str, Path] = {}
    for item in sorted(path.rglob("*")):
        if item.is_symlink():
            # A link could make an import read any file of this machine into a tenant's files.
            raise BadInput(f"{item}: a symbolic link; give the dump's files themselves")
        if not item.is_file():
            continue
        if item.suffix == ".json":
            source.add(_load(item), str(item.relative_to(path)))
        elif item.name.startswith("file-"):
            contents.setdefault(item.name.split(".", 1)[0], item)
    for file_id in source.objects["files"]:
        if file_id in contents and SAFE_ID.fullmatch(file_id):
            source.blobs[file_id] = contents[file_id]
    if not any(source.objects.values()):
        raise BadInput(f"{path}: no openassistants archive, {THREAD_EXPORT} export or SDK JSON objects found")
    return source.finish()
