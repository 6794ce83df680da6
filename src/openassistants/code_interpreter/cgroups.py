"""Limits on each kernel as a whole, in a cgroup v2 of its own, where the operator delegated one.

Without it the limits are per process (driver.py's rlimits): RLIMIT_AS per process, so a kernel's
processes together may hold up to code_interpreter_memory_mb times their number (at most
MAX_PROCESSES); RLIMIT_NPROC per uid, which identity.py makes per kernel; RLIMIT_CPU per process, and
a nice level below the server. With ``code_interpreter_cgroup`` naming a cgroup v2 directory the
server may write (systemd ``Delegate=yes``, or made by the operator) with memory and pids enabled in
its cgroup.subtree_control, each kernel also gets a child cgroup there: memory.max for all its
processes together (its /mnt/data tmpfs included, so code_interpreter_memory_mb + code_interpreter_data_mb),
pids.max, and a cpu.weight below the default, so busy kernels share the CPU and yield to the server.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from openassistants.code_interpreter.sandbox import KERNEL_CPU_WEIGHT, MAX_PROCESSES
from openassistants.config import Settings

REQUIRED_CONTROLLERS = ("memory", "pids")
#: How long remove() waits for a killed kernel's cgroup to empty, in steps of 10 ms.
REMOVE_WAIT_STEPS = 300


@dataclass(frozen=True)
class CgroupRoot:
    """The delegated directory kernels' cgroups are made in, and the controllers it hands down."""

    path: Path
    controllers: frozenset[str]

    def create(self, name: str, memory_bytes: int) -> KernelCgroup:
        """A kernel's cgroup, limits set, no process in it yet. Raises OSError."""
        path = self.path / name
        path.mkdir()
        try:
            _write(path / "memory.max", str(memory_bytes))
            if (path / "memory.swap.max").exists():
                _write(path / "memory.swap.max", "0")
            _write(path / "pids.max", str(MAX_PROCESSES))
            if "cpu" in self.controllers:
                _write(path / "cpu.weight", str(KERNEL_CPU_WEIGHT))
        except OSError:
            path.rmdir()
            raise
        return KernelCgroup(path)


@dataclass(frozen=True)
class KernelCgroup:
    path: Path

    def add(self, pids: list[int]) -> None:
        """Move the kernel's processes in (before it runs any code, so all it starts is inside)."""
        for pid in pids:
            _write(self.path / "cgroup.procs", str(pid))

    def remove(self) -> None:
        """Kill whatever is still inside, then remove the cgroup."""
        kill = self.path / "cgroup.kill"
        with contextlib.suppress(OSError):
            if kill.exists():
                _write(kill, "1")
        for _ in range(REMOVE_WAIT_STEPS):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:  # EBUSY until the killed processes are gone
                time.sleep(0.01)


def find_root(settings: Settings) -> tuple[CgroupRoot | None, str]:
    """The delegated cgroup for kernels, or None and why the limits stay per process."""
    if not settings.code_interpreter_cgroup:
        return None, "code_interpreter_cgroup is not set"
    path = Path(settings.code_interpreter_cgroup)
    try:
        enabled = frozenset((path / "cgroup.subtree_control").read_text().split())
    except OSError as exc:
        return None, f"code_interpreter_cgroup: {path} is not a cgroup v2 directory ({exc.strerror})"
    missing = [name for name in REQUIRED_CONTROLLERS if name not in enabled]
    if missing:
        return None, (
            f"code_interpreter_cgroup: {path}/cgroup.subtree_control does not enable {' and '.join(missing)}"
        )
    if not os.access(path, os.W_OK):
        return None, f"code_interpreter_cgroup: {path} is not writable by this server"
    return CgroupRoot(path, enabled), ""


def _write(path: Path, value: str) -> None:
    with open(path, "w") as file:
        file.write(value)
