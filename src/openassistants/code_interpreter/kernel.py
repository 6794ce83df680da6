"""One kernel: a sandboxed Python process running driver.py, spoken to in frames on its stdin/stdout.

A kernel knows nothing of sessions or files (manager.py does). Everything it sends back is treated as
untrusted: model code runs in the same process as the driver and can write anything to the pipe.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openassistants.code_interpreter.cgroups import KernelCgroup
from openassistants.code_interpreter.identity import UidLease
from openassistants.code_interpreter.sandbox import DriverConfig, Sandbox

FRAME_HEADER = struct.Struct(">I")
#: Largest reply accepted from a kernel (its output is capped, but figures come in the same frame).
MAX_REPLY_BYTES = 64 * 1024 * 1024
#: How much of a kernel's stderr (bwrap's and Python's own complaints) is kept for error messages.
STDERR_TAIL_BYTES = 2048
#: How long kill() waits for a killed sandbox's processes to be gone, in steps of 10 ms.
KILL_WAIT_STEPS = 300
#: Sweeps end_strays() makes before it gives up and kills the whole kernel instead.
STRAY_SWEEPS = 100


class KernelError(Exception):
    """The kernel is gone; ``str(exc)`` says why, in words fit for the model."""


class KernelTimeout(KernelError):
    pass


class KernelDied(KernelError):
    pass


class _PipeClosed(Exception):
    """The kernel's stdout ended: it exited or was killed."""


@dataclass(frozen=True)
class CellReply:
    #: stdout and stderr, then the traceback, within the output limit
    logs: str
    #: the exception's last line, e.g. "KeyError: 'a'"
    error: str | None
    figures: list[bytes]


class Kernel:
    """A running driver in its sandbox. Start with ``Kernel.start``; one request at a time."""

    def __init__(
        self,
        number: int,
        directory: Path,
        config: DriverConfig,
        process: asyncio.subprocess.Process,
        lease: UidLease | None,
    ) -> None:
        self.number = number
        #: Its uid, held until kill() has seen every process of the kernel gone.
        self._lease = lease
        self.directory = directory
        self.uid = config.uid
        self.pid = process.pid
        self._cpu_seconds = config.limits.cpu_seconds
        self._process = process
        self._stderr = bytearray()
        self._stderr_task = asyncio.create_task(self._drain_stderr())
        #: Its cgroup (cgroups.py), if the host has them: removed, and so emptied, by kill().
        self.cgroup: KernelCgroup | None = None
        #: Whether end_strays() left the driver stopped (SIGSTOP); the next request continues it.
        self._stopped = False
        #: In bubblewrap: the kernel's pid namespace (its init is bwrap's child) and the driver in it.
        self._namespace: tuple[str, int, int] | None = None

    @property
    def data_dir(self) -> Path:
        """The host directory the kernel sees as /mnt/data."""
        return self.directory / "data"

    @property
    def is_alive(self) -> bool:
        return self._process.returncode is None

    @classmethod
    async def start(
        cls,
        sandbox: Sandbox,
        number: int,
        directory: Path,
        config: DriverConfig,
        timeout: float,
        lease: UidLease | None = None,
    ) -> Kernel:
        """Launch a kernel and wait until its driver is ready. Raises KernelDied if it is not. The
        kernel owns ``lease`` (its uid's) from then on, even when it fails to start."""
        launch = sandbox.launch(directory, config)
        try:
            process = await asyncio.create_subprocess_exec(
                *launch.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=launch.env,
                cwd=launch.cwd,
                start_new_session=True,
                pass_fds=launch.pass_fds,
            )
        finally:
            launch.close()
        kernel = cls(number, directory, config, process, lease)
        try:
            await asyncio.wait_for(kernel._receive(), timeout)
        except TimeoutError:
            await kernel.kill()
            raise KernelDied(f"the kernel did not start within {timeout:g} s") from None
        except (KernelDied, _PipeClosed):
            _, cause = await kernel._exit_cause()
            with contextlib.suppress(TimeoutError):  # bwrap's or Python's last words
                await asyncio.wait_for(asyncio.shield(kernel._stderr_task), 1.0)
            message = f"the kernel failed to start ({cause}): {kernel.stderr_tail()}"
            await kernel.kill()
            raise KernelDied(message) from None
        except BaseException:  # cancelled (e.g. the manager closing): leave no process behind
            await kernel.kill()
            raise
        if sandbox.mode == "bwrap":
            kernel._namespace = _namespace_of(process.pid)
            if kernel._namespace is None:
                await kernel.kill()
                raise KernelDied("the kernel's sandbox could not be inspected")
        return kernel

    @property
    def pids(self) -> list[int]:
        """The host pids of the sandbox's own processes: bwrap, its init, the driver (or the driver)."""
        if self._namespace is None:
            return [self.pid]
        _, init, driver = self._namespace
        return [self.pid, init, driver]

    async def end_strays(self) -> int | None:
        """After a cell: stop the driver until the next request (its threads too, so nothing of the
        model's runs between calls), and kill every process the cells started (subprocesses, daemons,
        fork bombs, whatever their session or process group): all of the kernel's pid namespace but
        its init and driver. How many were killed; None if they kept coming, and the whole kernel was
        killed instead."""
        if self._namespace is None or not self.is_alive:
            return 0
        self._stopped = True  # from the first SIGSTOP on, even if this call is cancelled midway
        killed = await asyncio.to_thread(_sweep, *self._namespace)
        if killed is None:
            await self.kill()
        return killed

    async def execute(self, code: str, timeout: float) -> CellReply:
        """Run one cell. On timeout the kernel is killed (KernelTimeout); if it dies, KernelDied."""
        reply = await self._request({"op": "exec", "code": code}, timeout)
        try:
            return _parse_cell_reply(reply)
        except (KeyError, TypeError, ValueError):
            await self.kill()
            raise KernelDied("kernel died (it sent a malformed reply)") from None

    async def preload(self, modules: list[str], timeout: float) -> None:
        """Import modules ahead of the first cell (a warm pool kernel's start-up)."""
        await self._request({"op": "preload", "modules": modules}, timeout)

    async def kill(self) -> None:
        """SIGKILL the sandbox and wait until all its processes are gone."""
        children = _children(self.pid)  # bwrap's child is its pid namespace's init
        if self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
        for child in children:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(child, signal.SIGKILL)
        await self._process.wait()
        # A pid namespace's init ends (becomes a zombie) only after every other process in it has.
        for _ in range(KILL_WAIT_STEPS):
            if not any(_is_running(child) for child in children):
                break
            await asyncio.sleep(0.01)
        if self._process.stdin is not None:
            self._process.stdin.close()
        self._stderr_task.cancel()
        if self.cgroup is not None:
            await asyncio.to_thread(self.cgroup.remove)
        if self._lease is not None:
            self._lease.release()

    def stderr_tail(self) -> str:
        return self._stderr.decode("utf-8", errors="replace").strip()

    async def _request(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        if not self.is_alive:
            raise KernelDied(await self._death_reason())
        stdin = self._process.stdin
        assert stdin is not None
        if self._stopped and self._namespace is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._namespace[2], signal.SIGCONT)
            self._stopped = False
        data = json.dumps(message).encode("utf-8")
        try:
            stdin.write(FRAME_HEADER.pack(len(data)) + data)
            await stdin.drain()
            return await asyncio.wait_for(self._receive(), timeout)
        except TimeoutError:
            await self.kill()
            raise KernelTimeout(
                f"Execution timed out after {timeout:g} seconds; the kernel was stopped, so its variables "
                f"are lost (files in /mnt/data are kept)."
            ) from None
        except (ConnectionError, _PipeClosed):
            raise KernelDied(await self._death_reason()) from None
        except BaseException:
            # Cancelled mid-request: its reply would be read as the next request's, so the kernel goes.
            await asyncio.shield(self.kill())
            raise

    async def _receive(self) -> dict[str, Any]:
        stdout = self._process.stdout
        assert stdout is not None
        try:
            (size,) = FRAME_HEADER.unpack(await stdout.readexactly(FRAME_HEADER.size))
            if size > MAX_REPLY_BYTES:
                await self.kill()
                raise KernelDied("kernel died (its reply was too large)")
            message = json.loads(await stdout.readexactly(size))
        except asyncio.IncompleteReadError:
            raise _PipeClosed from None
        except ValueError:
            message = None
        if not isinstance(message, dict):
            await self.kill()
            raise KernelDied("kernel died (it sent a malformed reply)")
        return message

    async def _death_reason(self) -> str:
        signum, cause = await self._exit_cause()
        if signum == signal.SIGXCPU:
            what = f"kernel died (CPU time limit of {self._cpu_seconds} s exceeded)"
        else:
            what = f"kernel died (likely out of memory; {cause})"
        return f"{what}; it will be restarted on the next call, so its variables are lost."

    async def _exit_cause(self) -> tuple[int, str]:
        """(signal number or 0, "signal SIGKILL" / "exit status 1") once the process has ended."""
        try:
            code = await asyncio.wait_for(self._process.wait(), 5.0)
        except TimeoutError:
            await self.kill()
            code = self._process.returncode or -signal.SIGKILL
        # bwrap exits 128 + n when its command was killed by signal n; a plain process reports -n.
        signum = -code if code < 0 else code - 128 if code > 128 else 0
        if signum in _SIGNALS:
            return signum, f"signal {signal.Signals(signum).name}"
        return 0, f"exit status {code}"

    async def _drain_stderr(self) -> None:
        stderr = self._process.stderr
        assert stderr is not None
        while chunk := await stderr.read(4096):
            self._stderr += chunk
            del self._stderr[:-STDERR_TAIL_BYTES]


_SIGNALS = {s.value for s in signal.Signals}


def _namespace_of(bwrap: int) -> tuple[str, int, int] | None:
    """(pid namespace, init, driver) of a started bwrap: its child is the namespace's init, whose only
    child, until a cell runs, is the driver."""
    inits = _children(bwrap)
    drivers = _children(inits[0]) if len(inits) == 1 else []
    if len(drivers) != 1:
        return None
    try:
        return os.readlink(f"/proc/{inits[0]}/ns/pid"), inits[0], drivers[0]
    except OSError:
        return None


def _sweep(namespace: str, init: int, driver: int) -> int | None:
    """Stop ``driver`` (SIGSTOP: its threads can start no more processes) and SIGKILL every live
    process of ``namespace`` but ``init`` and ``driver``, again and again until none is left and the
    driver is still stopped (a process killed mid-fork makes no child; one forked before the kill,
    or a SIGCONT sent to the driver, is found by the next sweep); how many were killed. None if
    some were still there after STRAY_SWEEPS sweeps."""
    killed: set[int] = set()
    for sweep in range(STRAY_SWEEPS):
        with contextlib.suppress(ProcessLookupError):
            os.kill(driver, signal.SIGSTOP)
        _wait_stopped(driver)
        strays = [pid for pid in _pids_in(namespace) if pid not in (init, driver) and _is_running(pid)]
        if not strays and _state(driver) in ("T", None):
            return len(killed)
        for pid in strays:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        killed.update(strays)
        if sweep:  # the killed need a moment to become zombies, which the init then reaps
            time.sleep(0.01)
    return None


def _pids_in(namespace: str) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if os.readlink(f"/proc/{entry.name}/ns/pid") == namespace:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _children(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


def _is_running(pid: int) -> bool:
    """Whether the process exists and is not a zombie."""
    return _state(pid) not in ("Z", None)


def _state(pid: int) -> str | None:
    """The process's state letter (R, S, D, T stopped, Z zombie...); None if it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _wait_stopped(pid: int) -> None:
    """Wait (at most KILL_WAIT_STEPS ms) for a SIGSTOP to take effect: the signal is asynchronous."""
    for _ in range(KILL_WAIT_STEPS):
        if _state(pid) in ("T", "Z", None):
            return
        time.sleep(0.001)


def _parse_cell_reply(reply: dict[str, Any]) -> CellReply:
    logs, error, figures = reply["logs"], reply["error"], reply["figures"]
    if not isinstance(logs, str) or not isinstance(figures, list):
        raise TypeError("malformed reply")
    if error is not None and not isinstance(error["summary"], str):
        raise TypeError("malformed reply")
    return CellReply(
        logs=_clean(logs),
        error=None if error is None else _clean(error["summary"]),
        figures=[base64.b64decode(figure, validate=True) for figure in figures],
    )


def _clean(text: str) -> str:
    """Text from the kernel as valid UTF-8 (a cell can print lone surrogates)."""
    return text.encode("utf-8", errors="replace").decode("utf-8")
