"""What every source yields: object graphs ("units") of database rows, checked before anything is written.

A unit is what one import transaction writes: a file (with its bytes), a vector store (with its files,
batches and chunks), an assistant, or a thread (with its messages, runs and run steps).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openassistants.storage.portable import PARENT, TABLES, column_kinds

#: Ids and tenants become blob paths and database keys: our own alphabet only, never a path.
SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: The table of each unit's root, in the order an import writes units.
ROOTS = ("files", "vector_stores", "assistants", "threads")
#: Each root's member tables.
MEMBERS: dict[str, tuple[str, ...]] = {
    root: tuple(name for name, (parent, _) in PARENT.items() if parent == root) for root in ROOTS
}
_KINDS = {name: column_kinds(table) for name, table in TABLES.items()}
_PYTHON: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "int32": (int,),
    "float": (int, float),
    "str": (str,),
    "bool": (bool,),
    "bytes": (bytes,),
}
_NUMBERS = ("int", "int32", "float")
#: The bits an integer column holds besides its sign: a larger value once failed the import's insert
#: with a traceback instead of this refusal.
_INT_BITS = {"int": 63, "int32": 31}


class BadInput(Exception):
    """The input or the options cannot be used as they are; the message says where and why."""


@dataclass
class Unit:
    """One object graph: its root's table and id, and its rows by table (root first)."""

    root: str
    root_id: str
    rows: dict[str, list[dict[str, Any]]]
    #: A file unit's bytes: where they are.
    blob: Path | None = None
    blob_bytes: int = 0

    @property
    def objects(self) -> int:
        return sum(len(r) for r in self.rows.values())

    @property
    def tenant(self) -> str:
        tenant: str = self.rows[self.root][0]["tenant_id"]
        return tenant


def check_row(table: str, row: dict[str, Any], where: str) -> None:
    """Raises BadInput unless ``row`` has every column ``table`` needs, each of the right kind."""
    kinds = _KINDS[table]
    unknown = set(row) - set(kinds)
    if unknown:
        raise BadInput(f"{where}: unknown field(s) {', '.join(sorted(unknown))} for {table}")
    for name, (kind, required) in kinds.items():
        value = row.get(name)
        if value is None:
            if required:
                raise BadInput(f"{where}: {table} row lacks {name!r}")
            continue
        if kind == "json":
            continue
        if not isinstance(value, _PYTHON[kind]) or (kind in _NUMBERS and isinstance(value, bool)):
            raise BadInput(f"{where}: {table}.{name} must be {kind}, not {type(value).__name__}")
        if kind in _INT_BITS and not -(2 ** _INT_BITS[kind]) <= value < 2 ** _INT_BITS[kind]:
            raise BadInput(f"{where}: {table}.{name} {value} is out of range for its column")
    for name in ("id", "tenant_id", "thread_id", "run_id", "vector_store_id", "file_id"):
        value = row.get(name)
        if name in kinds and value is not None and not SAFE_ID.fullmatch(value):
            raise BadInput(f"{where}: {table}.{name} {str(value)[:80]!r} is not a valid id")


def to_record(table: str, row: dict[str, Any]) -> dict[str, Any]:
    """A row as an archive line's object (a chunk's vector as base64 of little-endian float32)."""
    if table == "chunks":
        return {**row, "embedding": base64.b64encode(row["embedding"]).decode()}
    return row


def from_record(table: str, record: dict[str, Any], where: str, *, check: bool = True) -> dict[str, Any]:
    """An archive line's object as a row, checked unless it was already (a second reading)."""
    if table == "chunks" and isinstance(record.get("embedding"), str):
        try:
            record = {**record, "embedding": base64.b64decode(record["embedding"], validate=True)}
        except ValueError:
            raise BadInput(f"{where}: chunks.embedding is not base64") from None
    if check:
        check_row(table, record, where)
    # A writer may leave out null fields; stored rows have every column, and are compared whole.
    return {name: record.get(name) for name in _KINDS[table]}
