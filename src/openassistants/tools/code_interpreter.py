"""The ``code_interpreter`` tool: the model's code in, run in the thread's sandboxed kernel; its
logs, images and files out — to the run step (``input`` and ``outputs``), to the model as text, and
as Files (``purpose: assistants_output``) that replies show as ``image_file`` parts and
``file_path`` annotations, as the hosted tool did."""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import func, select

from openassistants.code_interpreter.manager import KernelManager, SandboxUnavailable
from openassistants.config import Settings
from openassistants.statuses import StepStatus
from openassistants.storage import tables
from openassistants.storage.db import Database
from openassistants.tools.base import (
    Resource,
    RunToolState,
    ServerTool,
    ToolCall,
    ToolContext,
    ToolHost,
    one_string,
    resource_ids,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

#: At most this many earlier cells are run again to rebuild a thread's session elsewhere.
REBUILD_CELLS = 50
SANDBOX_PATH = re.compile(r"sandbox:/mnt/data/([^\s)\]\"'`]+)")
_CODE_START = re.compile(r'"code"\s*:\s*"')
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


@dataclass
class CodeState:
    """What a run's code_interpreter keeps across its turns."""

    #: Files the code gets: the assistant's, the thread's and attached ones.
    input_file_ids: list[str] = field(default_factory=list)
    #: Files this run's code produced: sandbox name → file id (for file_path annotations).
    files: dict[str, str] = field(default_factory=dict)


class CodeInterpreter(ServerTool):
    type = "code_interpreter"
    annotates = True
    state_type = CodeState
    resource: ClassVar[Resource | None] = Resource(key="file_ids", kind="file")
    description = (
        "Run Python code in a sandbox without network access and return its output (stdout, errors, "
        "images). State is kept between calls in this conversation. Files the user attached and files "
        "you create are under /mnt/data. Use it for calculations, data analysis and making charts or files."
    )
    parameters: ClassVar[dict[str, Any]] = one_string(
        "code", "The Python code to run; the value of the last expression is shown."
    )
    empty_result: ClassVar[dict[str, Any]] = {"input": "", "outputs": []}

    async def prepare(
        self, host: ToolHost, conn: AsyncConnection, run: Mapping[str, Any], state: CodeState
    ) -> None:
        """The assistant's and the thread's code_interpreter files, and files attached for it."""
        ids = await resource_ids(conn, run, self.type, "file_ids")
        m = tables.messages
        rows = await conn.execute(select(m.c.attachments).where(m.c.thread_id == run["thread_id"]))
        for (attachments,) in rows:
            for attachment in attachments or []:
                if any(t.get("type") == self.type for t in attachment.get("tools") or []):
                    ids.append(attachment["file_id"])
        state.input_file_ids = list(dict.fromkeys(ids))

    def replay(self, recorded: Mapping[str, Any], state: CodeState, run_state: RunToolState) -> None:
        files = recorded.get("_files") or {}
        state.files.update(files)
        run_state.pending_attachments += [_attachment(file_id) for file_id in files.values()]
        outputs = recorded["code_interpreter"].get("outputs") or []
        run_state.pending_images += [o["image"]["file_id"] for o in outputs if o["type"] == "image"]

    def announce(self, index: int, call: ToolCall) -> dict[str, Any]:
        # The code streams as the step's input, decoded from the JSON arguments as they come.
        decoder = call.streaming = PartialCode()
        details = {"input": decoder.feed(call.arguments), "outputs": []}
        return {"index": index, "id": call.id, "type": self.type, self.type: details}

    def stream(self, index: int, call: ToolCall, fragment: str, name: str | None) -> dict[str, Any] | None:
        piece = call.streaming.feed(fragment)
        if not piece:
            return None
        return {"index": index, "type": self.type, self.type: {"input": piece}}

    async def execute(self, context: ToolContext, index: int, call: ToolCall) -> None:
        state: CodeState = context.state
        code = code_of(call.arguments)
        outcome = await run_code(context.host, context.run, code, state.input_file_ids)
        call.result = {"input": code, "outputs": outcome.outputs}
        call.output = outcome.text_for_model
        if outcome.files:
            call.private["files"] = outcome.files
        state.files.update(outcome.files)
        context.run_state.pending_images += outcome.images
        context.run_state.pending_attachments += [_attachment(f) for f in outcome.files.values()]
        if outcome.outputs:
            outputs = [{"index": i, **o} for i, o in enumerate(outcome.outputs)]
            context.step_delta([{"index": index, "type": self.type, self.type: {"outputs": outputs}}])

    def annotations(self, state: CodeState, text: str) -> list[dict[str, Any]]:
        return file_path_annotations(text, state.files)

    def streams_annotations(self, state: CodeState, piece: str, text: str) -> bool:
        return bool(state.files) and "sandbox:" in text

    def unsettled_from(self, state: CodeState, text: str) -> int:
        # A link is settled once a character after it ends it.
        for annotation in file_path_annotations(text, state.files):
            if annotation["end_index"] >= len(text):
                return int(annotation["start_index"])
        return len(text)


def _attachment(file_id: str) -> dict[str, Any]:
    """A file the run's code wrote, as an attachment of the message that follows."""
    return {"file_id": file_id, "tools": [{"type": "code_interpreter"}]}


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


async def run_code(host: ToolHost, run: Mapping[str, Any], code: str, input_file_ids: list[str]) -> CodeRun:
    result = CodeRun()
    kernels, db = host.kernels, host.db
    if kernels is None or not kernels.available:
        reason = kernels.unavailable_reason if kernels is not None else "no kernels in this process"
        return _unavailable(result, reason)
    session = f"{run['tenant_id']}:{run['thread_id']}"
    with tempfile.TemporaryDirectory(prefix="oa-ci-in-") as staging:
        inputs = await _stage_inputs(host, run["tenant_id"], input_file_ids, Path(staging))
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
        file_id = await host.create_output_file(run["tenant_id"], produced.path, produced.name)
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
    kernels: KernelManager, db: Database, run: Mapping[str, Any], session: str, inputs: list[tuple[str, Path]]
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
    host: ToolHost, tenant: str, file_ids: list[str], staging: Path
) -> list[tuple[str, Path]]:
    if not file_ids:
        return []
    files = tables.files
    async with host.db.read() as conn:
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
        target.write_bytes(await host.read_file(tenant, file_id))
        staged.append((str(name), target))
    return staged


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
