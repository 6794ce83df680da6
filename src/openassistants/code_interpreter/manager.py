"""Kernels per session (the integrator's f"{tenant}:{thread_id}"): a warm pool, idle expiry, transparent
restarts, input files in and changed files out. ``KernelManager`` is all the code_interpreter tool uses.

A session keeps its kernel, and so its variables, across calls until it is idle for
``code_interpreter_idle_seconds`` (then the kernel and its files are gone, as in the hosted tool) or its
kernel dies (timeout, memory, crash): the next call then starts a new kernel, which gets the old one's
/mnt/data files but none of its variables, and says so with ``CellResult.restarted``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path

from openassistants.code_interpreter import workdir
from openassistants.code_interpreter.kernel import CellReply, Kernel, KernelError
from openassistants.code_interpreter.launcher import Launcher, remove_kernel_directory
from openassistants.code_interpreter.ownership import Ownership, claim_if_abandoned
from openassistants.code_interpreter.probe import detect_sandbox
from openassistants.code_interpreter.sandbox import (
    MAX_FILE_BYTES,
    SANDBOX_DATA_DIR,
)
from openassistants.config import Settings

logger = logging.getLogger("openassistants.code_interpreter")

#: Sessions remembered after expiry, so that their next call reports ``restarted``.
MAX_RETIRED_SESSIONS = 10_000


class SandboxUnavailable(RuntimeError):
    """No sandbox here (bubblewrap missing or unusable) and unsafe mode not enabled: no code runs."""


@dataclass(frozen=True)
class OutputFile:
    """A file a cell produced: written under /mnt/data (``name`` relative to it), or a matplotlib figure
    it left open (``is_image``, shown as an image like the hosted tool's ``image_file`` outputs).
    ``path`` is the server's own copy; it stays until the session's next call, reset or expiry."""

    name: str
    path: Path
    size: int
    is_image: bool


@dataclass(frozen=True)
class CellResult:
    """What the model sees: ``logs`` (stdout and stderr, then the traceback or the kernel's fate, cut to
    code_interpreter_max_output_bytes with a note), ``error`` (one line) and the files produced.
    ``restarted``: this call ran in a new kernel, so variables from earlier calls are gone."""

    logs: str
    error: str | None
    files: list[OutputFile]
    restarted: bool


@dataclass
class _Session:
    number: int
    kernel: Kernel | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    last_used: float = field(default_factory=time.monotonic)
    expired: bool = False


class _AtCapacity(Exception):
    pass


class KernelManager:
    """Sessions of sandboxed Python kernels; see the module docstring."""

    def __init__(self, settings: Settings, work_root: Path) -> None:
        self._settings = settings
        self._sandbox = detect_sandbox(settings)
        #: Why /mnt/data has no quota here (None: each kernel's is a tmpfs); known once started.
        self._launcher = Launcher(settings, self._sandbox)
        self._work_root = work_root
        # Several processes (API, workers) may share one work root: each keeps its own directory.
        self._root = work_root / f"{os.getpid()}-{secrets.token_hex(4)}"
        self._ownership: Ownership | None = None
        self._sessions: dict[str, _Session] = {}
        self._retired: OrderedDict[str, None] = OrderedDict()
        self._pool: list[Kernel] = []
        self._starting = 0
        self._kernel_numbers = count(1)
        self._session_numbers = count(1)
        self._refill: asyncio.Task[None] | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def available(self) -> bool:
        return self._sandbox.mode != "unavailable"

    @property
    def unavailable_reason(self) -> str | None:
        return self._sandbox.reason if self._sandbox.mode == "unavailable" else None

    @property
    def sandboxed(self) -> bool:
        """Whether kernels run in bubblewrap (False in unsafe mode and when unavailable)."""
        return self._sandbox.mode == "bwrap"

    async def start(self) -> None:
        """Log whether the sandbox is available, start the idle reaper, and fill the warm pool (returns
        once it is full: a few seconds, as each pool kernel imports numpy, pandas and matplotlib)."""
        if self._sandbox.mode == "unavailable":
            logger.warning("code interpreter unavailable: %s", self._sandbox.reason)
            return
        if self._sandbox.mode == "unsafe":
            logger.warning(
                "code interpreter in UNSAFE MODE (code_interpreter_unsafe_no_sandbox): %s; model code "
                "runs WITHOUT a sandbox (resource limits only), with this server's filesystem and network",
                self._sandbox.reason,
            )
        else:
            logger.info("code interpreter sandbox available: bubblewrap (%s)", self._sandbox.bwrap)
        self._ensure_root()
        await self._launcher.prepare(self._root)
        self._reaper = asyncio.create_task(self._reap_idle())
        if self._settings.code_interpreter_pool_size > 0:
            self._refill = asyncio.create_task(self._fill_pool())
            await asyncio.shield(self._refill)

    async def execute(
        self,
        session: str,
        code: str,
        *,
        input_files: Sequence[tuple[str, Path]] = (),
        timeout: float | None = None,
    ) -> CellResult:
        """Run ``code`` in the session's kernel, after copying ``input_files`` ((original name, host
        path) pairs) into its /mnt/data. Failures of the code, the kernel or capacity come back as a
        CellResult with ``error`` set. Raises SandboxUnavailable when no code can run here."""
        if not self.available:
            raise SandboxUnavailable(self._sandbox.reason)
        if self._closed:
            raise RuntimeError("the kernel manager is closed")
        limit = timeout if timeout is not None else self._settings.code_interpreter_timeout_seconds
        if limit <= 0:
            raise ValueError("timeout must be positive")
        while True:
            state = self._sessions.get(session)
            if state is None:
                state = self._sessions[session] = _Session(next(self._session_numbers))
            async with state.lock:
                if state.expired:
                    continue
                try:
                    return await self._execute(session, state, code, input_files, limit)
                finally:
                    state.last_used = time.monotonic()

    def has_session(self, session: str) -> bool:
        """Whether the session has a live kernel here (its variables are still in memory)."""
        state = self._sessions.get(session)
        return state is not None and state.kernel is not None and state.kernel.is_alive

    async def reset(self, session: str) -> None:
        """End the session: its kernel, variables and files are gone; its next call starts afresh."""
        state = self._sessions.get(session)
        if state is not None:
            async with state.lock:
                await self._expire(session, state, remember=False)

    async def close(self) -> None:
        """Stop every kernel and remove this manager's files."""
        self._closed = True
        for task in (self._reaper, self._refill):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        kernels = [s.kernel for s in self._sessions.values() if s.kernel] + self._pool
        self._sessions.clear()
        self._pool.clear()
        await asyncio.gather(*(kernel.kill() for kernel in kernels))
        await asyncio.to_thread(workdir.unmount_under, self._root)
        await asyncio.to_thread(shutil.rmtree, self._root, True)
        if self._ownership is not None:
            self._ownership.release()

    async def _execute(
        self, key: str, state: _Session, code: str, input_files: Sequence[tuple[str, Path]], timeout: float
    ) -> CellResult:
        restarted = False
        kernel = state.kernel
        if kernel is None or not kernel.is_alive:
            restarted = kernel is not None or key in self._retired
            try:
                fresh = await self._acquire()
            except (_AtCapacity, KernelError) as exc:
                message = (
                    f"Too many code interpreter sessions are running (at most "
                    f"{self._settings.code_interpreter_max_kernels}); try again later."
                    if isinstance(exc, _AtCapacity)
                    else f"The code interpreter could not start: {exc}"
                )
                return CellResult(logs=message, error=message, files=[], restarted=False)
            self._retired.pop(key, None)
            if kernel is not None:
                await asyncio.to_thread(_adopt, kernel, fresh)
            state.kernel = kernel = fresh
        outbox = self._root / "outbox" / str(state.number)
        await asyncio.to_thread(shutil.rmtree, outbox, True)
        try:
            await asyncio.to_thread(_place_inputs, kernel, input_files)
        except OSError as exc:
            message = f"Could not place an input file in {SANDBOX_DATA_DIR}: {exc.strerror or exc}"
            return CellResult(logs=message, error=message, files=[], restarted=restarted)
        before = await asyncio.to_thread(workdir.snapshot, kernel.data_dir)
        reply: CellReply | None = None
        try:
            reply = await kernel.execute(code, timeout)
            fate = None
        except KernelError as exc:
            fate = str(exc)
            logger.info("code interpreter: kernel %d stopped: %s", kernel.number, fate)
        # Nothing a cell started outlives it: its subprocesses and daemons go with its reply.
        stopped = await kernel.end_strays()
        if stopped is None:
            fate = (
                "The processes the code started kept multiplying, so the kernel was stopped; its "
                "variables are lost (files in /mnt/data are kept)."
            )
        elif stopped:
            fate = (
                f"[{stopped} processes the code left running were stopped: nothing outlives a call here, "
                f"so keep subprocesses and pools within one call]"
            )
        files, skipped = await asyncio.to_thread(_collect, kernel, before, reply, outbox, self._caps())
        return self._result(reply, fate, files, skipped, restarted)

    def _caps(self) -> tuple[int, int]:
        settings = self._settings
        return settings.code_interpreter_max_output_files, settings.code_interpreter_max_output_mb << 20

    def _result(
        self,
        reply: CellReply | None,
        fate: str | None,
        files: list[OutputFile],
        skipped: int,
        restarted: bool,
    ) -> CellResult:
        parts = [reply.logs] if reply else []
        error = reply.error if reply else fate
        if fate:
            parts.append(fate)
        if skipped:
            parts.append(
                f"[{skipped} more changed files in {SANDBOX_DATA_DIR} were not returned: past this "
                f"server's limit of {self._settings.code_interpreter_max_output_files} files and "
                f"{self._settings.code_interpreter_max_output_mb} MiB per call]"
            )
        logs = "\n".join(part.rstrip("\n") for part in parts if part)
        logs = truncate(logs, self._settings.code_interpreter_max_output_bytes)
        return CellResult(logs=logs, error=error, files=files, restarted=restarted)

    async def _acquire(self) -> Kernel:
        """A kernel for a session: from the warm pool, else started now (cold), evicting the least
        recently used idle session when at code_interpreter_max_kernels."""
        while self._pool:
            kernel = self._pool.pop(0)
            self._schedule_refill()
            if kernel.is_alive:
                return kernel
            await self._discard(kernel)
        if self._live_kernels() >= self._settings.code_interpreter_max_kernels:
            idle = [
                (s.last_used, key, s) for key, s in self._sessions.items() if s.kernel and not s.lock.locked()
            ]
            if not idle:
                raise _AtCapacity
            _, key, victim = min(idle, key=lambda entry: entry[0])
            async with victim.lock:
                await self._expire(key, victim, remember=True)
        kernel = await self._start_kernel(preload=False)
        self._schedule_refill()
        return kernel

    def _live_kernels(self) -> int:
        in_sessions = sum(1 for s in self._sessions.values() if s.kernel is not None and s.kernel.is_alive)
        return in_sessions + len(self._pool) + self._starting

    async def _start_kernel(self, *, preload: bool) -> Kernel:
        self._ensure_root()
        self._starting += 1
        try:
            return await self._launcher.start(self._root, next(self._kernel_numbers), preload=preload)
        finally:
            self._starting -= 1

    def _schedule_refill(self) -> None:
        if self._closed or self._settings.code_interpreter_pool_size <= 0:
            return
        if self._refill is None or self._refill.done():
            self._refill = asyncio.create_task(self._fill_pool())

    async def _fill_pool(self) -> None:
        """Start pool kernels one at a time (each imports PRELOAD_MODULES) until the pool is full."""
        settings = self._settings
        while (
            not self._closed
            and len(self._pool) < settings.code_interpreter_pool_size
            and self._live_kernels() < settings.code_interpreter_max_kernels
        ):
            try:
                kernel = await self._start_kernel(preload=True)
            except KernelError as exc:
                logger.error("code interpreter: a warm pool kernel failed to start: %s", exc)
                return
            if self._closed:
                await kernel.kill()
                return
            self._pool.append(kernel)

    async def _reap_idle(self) -> None:
        """End sessions idle for code_interpreter_idle_seconds; replace pool kernels that died."""
        idle_seconds = self._settings.code_interpreter_idle_seconds
        interval = min(max(idle_seconds / 4, 0.05), 30.0)
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for key, state in list(self._sessions.items()):
                if not state.lock.locked() and now - state.last_used > idle_seconds:
                    async with state.lock:
                        await self._expire(key, state, remember=True)
            for kernel in [k for k in self._pool if not k.is_alive]:
                self._pool.remove(kernel)
                await self._discard(kernel)
                self._schedule_refill()

    async def _expire(self, key: str, state: _Session, *, remember: bool) -> None:
        """Forget a session (its lock held): kill its kernel, delete its files and its outbox."""
        if state.expired:
            return
        state.expired = True
        if self._sessions.get(key) is state:
            del self._sessions[key]
        if remember and state.kernel is not None:
            self._retired[key] = None
            while len(self._retired) > MAX_RETIRED_SESSIONS:
                self._retired.popitem(last=False)
        if state.kernel is not None:
            await self._discard(state.kernel)
        await asyncio.to_thread(shutil.rmtree, self._root / "outbox" / str(state.number), True)

    async def _discard(self, kernel: Kernel) -> None:
        await kernel.kill()
        await asyncio.to_thread(remove_kernel_directory, kernel.directory)

    def _ensure_root(self) -> None:
        """Create this manager's directory, owned until ``close``; remove those of managers gone."""
        if self._ownership is not None and self._root.exists():
            return
        self._work_root.mkdir(parents=True, exist_ok=True)
        for entry in self._work_root.iterdir():
            with claim_if_abandoned(entry) as abandoned:
                if abandoned:
                    workdir.unmount_under(entry)
                    shutil.rmtree(entry, ignore_errors=True)
        if self._ownership is not None:  # its directory was removed from outside: make it again
            self._ownership.release()
        self._ownership = Ownership(self._root)


def truncate(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` UTF-8 bytes: its beginning and its end, with a note between."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    tail = limit // 4
    head = max(limit - tail - 80, 0)
    omitted = len(data) - head - tail
    return (
        data[:head].decode("utf-8", errors="ignore")
        + f"\n[... output truncated: {omitted} bytes omitted ...]\n"
        + data[len(data) - tail :].decode("utf-8", errors="ignore")
    )


def _adopt(dead: Kernel, fresh: Kernel) -> None:
    workdir.adopt(dead.data_dir, fresh.data_dir, fresh.uid)
    remove_kernel_directory(dead.directory)


def _place_inputs(kernel: Kernel, input_files: Sequence[tuple[str, Path]]) -> None:
    for name, source in input_files:
        workdir.place_file(kernel.data_dir, workdir.safe_name(name), source, kernel.uid)


def _collect(
    kernel: Kernel, before: workdir.Snapshot, reply: CellReply | None, outbox: Path, caps: tuple[int, int]
) -> tuple[list[OutputFile], int]:
    """Copy the cell's figures and changed files into the session's outbox, at most ``caps`` (files,
    bytes) of the latter; (files, how many changed files were left out)."""
    max_files, max_bytes = caps
    files = []
    for number, png in enumerate(reply.figures if reply else [], start=1):
        path = outbox / "figures" / f"figure-{number}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)
        files.append(OutputFile(name=path.name, path=path, size=len(png), is_image=True))
    after = workdir.snapshot(kernel.data_dir)
    changed = workdir.changed_files(before, after)
    returned, room = 0, max_bytes
    for index, name in enumerate(changed):
        if returned >= max_files or after[name][1] > room:
            continue
        path = outbox / "files" / str(index) / name.rsplit("/", 1)[-1]
        size = workdir.copy_out(kernel.data_dir, name, path, min(room, MAX_FILE_BYTES))
        if size is not None:
            files.append(OutputFile(name=name, path=path, size=size, is_image=False))
            returned, room = returned + 1, room - size
    return files, len(changed) - returned
