"""The ``code_interpreter`` tool: the model's code in, run in the thread's sandboxed kernel; its
logs, images and files out — to the run step (``input`` and ``outputs``), to the model as text, and
as Files (``purpose: assistants_output``) that replies show as ``image_file`` parts and
``file_path`` annotations, as the hosted tool did."""

from __future__ import annotations

import json
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from openassistants.code_interpreter.manager import KernelManager, SandboxUnavailable
from openassistants.config import Settings
from openassistants.ids import new_id
from openassistants.services.files import blob_key, read_file_bytes
from openassistants.statuses import StepStatus, UploadStatus
from openassistants.storage import tables
from openassistants.storage.blobs import BlobStore
from openassistants.storage.db import Database
from openassistants.storage.queries import take_turns_creating

#: At most this many earlier cells are run again to rebuild a thread's session elsewhere.
REBUILD_CELLS = 50
SANDBOX_PATH = re.compile(r"sandbox:/mnt/data/([^\s)\]\"'`]+)")
_CODE_START = re.compile(r'"code"\s*:\s*"')
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


class PartialCode:
    """Decodes the ``code`` string of streamed ``{"code": "..."}`` arguments as its fragments arrive,
    so the step's ``input`` streams as the model writes it."""

    def __init__(self) -> None:
        self.raw = ""
        self._position: int | None = None
        self._done = False

    def feed(self, fragment: str) -> str:
        self.raw += fragment
        if self._done:
            return ""
        if self._position is None:
            match = _CODE_START.search(self.raw)
            if match is None:
                return ""
            self._position = match.end()
        out: list[str] = []
        i, raw = self._position, self.raw
        while i < len(raw):
            char = raw[i]
            if char == '"':
                self._done = True
                i += 1
                break
            if char != "\\":
                out.append(char)
                i += 1
                continue
            if i + 1 >= len(raw):
                break  # an escape split across fragments: wait for the rest
            kind = raw[i + 1]
            if kind == "u":
                if i + 6 > len(raw):
                    break
                out.append(chr(int(raw[i + 2 : i + 6], 16)))
                i += 6
            else:
                out.append(_ESCAPES.get(kind, kind))
                i += 2
        self._position = i
        return "".join(out)


def code_of(arguments: str) -> str:
    """The code the model sent: ``{"code": ...}`` as asked, or the raw text from models that skip JSON."""
    try:
        value = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        return arguments
    if isinstance(value, dict) and isinstance(value.get("code"), str):
        return str(value["code"])
    return arguments if not isinstance(value, dict) else ""


@dataclass
class CodeRun:
    """One call's results."""

    outputs: list[dict[str, Any]] = field(default_factory=list)
    text_for_model: str = ""
    #: Files the call produced: sandbox name → file id (for file_path annotations).
    files: dict[str, str] = field(default_factory=dict)
    images: list[str] = field(default_factory=list)


async def run_code(
    kernels: KernelManager | None,
    db: Database,
    blobs: BlobStore,
    run: Any,
    code: str,
    input_file_ids: list[str],
) -> CodeRun:
    result = CodeRun()
    if kernels is None or not kernels.available:
        reason = kernels.unavailable_reason if kernels is not None else "no kernels in this process"
        return _unavailable(result, reason)
    session = f"{run['tenant_id']}:{run['thread_id']}"
    with tempfile.TemporaryDirectory(prefix="oa-ci-in-") as staging:
        inputs = await _stage_inputs(db, blobs, run["tenant_id"], input_file_ids, Path(staging))
        try:
            if not kernels.has_session(session):
                await _rebuild(kernels, db, run, session, inputs)
            cell = await kernels.execute(session, code, input_files=inputs)
        except SandboxUnavailable as exc:
            return _unavailable(result, str(exc))
    lines = [cell.logs] if cell.logs else []
    if cell.restarted:
        lines.insert(0, "(The Python session was restarted: earlier variables are gone.)")
    if cell.logs:
        result.outputs.append({"type": "logs", "logs": cell.logs})
    files_left, bytes_left = (
        await _tenant_room(db, kernels.settings, run["tenant_id"]) if cell.files else (0, 0)
    )
    for produced in cell.files:
        if files_left <= 0 or produced.size > bytes_left:
            lines.append(
                f"[{produced.name} was not returned: this tenant's output files are at the server's limit "
                f"({kernels.settings.code_interpreter_tenant_output_files} files, "
                f"{kernels.settings.code_interpreter_tenant_output_mb} MiB); delete some Files to make room]"
            )
            continue
        files_left, bytes_left = files_left - 1, bytes_left - produced.size
        file_id = await _store_output(db, blobs, run["tenant_id"], produced.path, produced.name)
        result.files[produced.name] = file_id
        if produced.is_image:
            result.images.append(file_id)
            result.outputs.append({"type": "image", "image": {"file_id": file_id}})
            lines.append(f"[image {produced.name} shown to the user]")
        else:
            lines.append(f"[file written: sandbox:/mnt/data/{produced.name}]")
    result.text_for_model = "\n".join(lines) or "(no output)"
    return result


def _unavailable(result: CodeRun, reason: str | None) -> CodeRun:
    result.text_for_model = f"Error: code_interpreter is unavailable on this server: {reason}"
    result.outputs = [{"type": "logs", "logs": result.text_for_model}]
    return result


async def _tenant_room(db: Database, settings: Settings, tenant: str) -> tuple[int, int]:
    """(files, bytes) the tenant may still add as code_interpreter output, by its limits. A soft cap:
    calls running at once may each use it, so it can be passed by one call's worth each."""
    files = tables.files
    async with db.read() as conn:
        count, size = (
            await conn.execute(
                select(func.count(), func.coalesce(func.sum(files.c.bytes), 0)).where(
                    files.c.tenant_id == tenant, files.c.purpose == "assistants_output"
                )
            )
        ).one()
    return (
        settings.code_interpreter_tenant_output_files - int(count),
        (settings.code_interpreter_tenant_output_mb << 20) - int(size),
    )


async def _rebuild(
    kernels: KernelManager, db: Database, run: Any, session: str, inputs: list[tuple[str, Path]]
) -> None:
    """A thread's session lives in the process that ran its code. When a run lands in another
    process (or this one restarted), the session is rebuilt by running the thread's earlier cells
    again, in order and silently, so the model finds its variables and files where it left them."""
    steps = tables.run_steps
    async with db.read() as conn:
        rows = await conn.execute(
            select(steps.c.step_details)
            .where(
                steps.c.thread_id == run["thread_id"],
                steps.c.type == "tool_calls",
                steps.c.status == StepStatus.completed.value,
            )
            .order_by(steps.c.seq)
        )
        cells = [
            call["code_interpreter"]["input"]
            for (details,) in rows
            for call in details.get("tool_calls", [])
            if call.get("type") == "code_interpreter" and call["code_interpreter"].get("input")
        ]
    for cell in cells[-REBUILD_CELLS:]:
        await kernels.execute(session, cell, input_files=inputs)


async def _stage_inputs(
    db: Database, blobs: BlobStore, tenant: str, file_ids: list[str], staging: Path
) -> list[tuple[str, Path]]:
    if not file_ids:
        return []
    files = tables.files
    async with db.read() as conn:
        rows = (
            await conn.execute(
                select(files.c.id, files.c.filename).where(
                    files.c.id.in_(file_ids), files.c.tenant_id == tenant
                )
            )
        ).all()
    staged = []
    for file_id, name in rows:
        target = staging / file_id
        target.write_bytes(await read_file_bytes(blobs, tenant, file_id))
        staged.append((str(name), target))
    return staged


async def _store_output(db: Database, blobs: BlobStore, tenant: str, path: Path, name: str) -> str:
    """Copies a produced file into the blob store as a File with purpose ``assistants_output``."""
    file_id = new_id("file")
    async with blobs.stage() as staged:
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                await staged.write(chunk)
        size = staged.size
        await staged.commit(blob_key(tenant, file_id))
    async with db.write() as conn:
        await take_turns_creating(conn, tables.files, tenant)
        await conn.execute(
            tables.files.insert().values(
                id=file_id,
                tenant_id=tenant,
                created_at=int(time.time()),
                bytes=size,
                filename=Path(name).name,
                purpose="assistants_output",
                status=UploadStatus.processed.value,
                status_details=None,
                expires_at=None,
            )
        )
    return file_id


def file_path_annotations(text: str, files: dict[str, str]) -> list[dict[str, Any]]:
    """``file_path`` annotations for ``sandbox:/mnt/data/<name>`` links to files the run produced."""
    annotations = []
    for match in SANDBOX_PATH.finditer(text):
        file_id = files.get(match.group(1))
        if file_id is not None:
            annotations.append(
                {
                    "type": "file_path",
                    "text": match.group(0),
                    "start_index": match.start(),
                    "end_index": match.end(),
                    "file_path": {"file_id": file_id},
                }
            )
    return annotations
