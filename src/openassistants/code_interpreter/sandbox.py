"""The sandbox boundary: how a kernel process is started, and whether it can be started safely here.

Inside bubblewrap a kernel has its own pid, network (no network at all), ipc, uts and mount
namespaces, a read-only view of the system and of the Python installation, a fresh /tmp and
/dev/shm, one writable directory of its own at /mnt/data, a seccomp filter (seccomp.py), and either
its own uid (server as root) or a user namespace. The driver (driver.py) applies the resource limits
before any model code runs. Without bubblewrap nothing runs, unless the operator chose unsafe mode.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from openassistants.code_interpreter.seccomp import filter_program
from openassistants.config import Settings

#: Where the kernel's writable work directory appears inside the sandbox, as in the hosted tool.
SANDBOX_DATA_DIR = "/mnt/data"
DRIVER_SOURCE = Path(__file__).with_name("driver.py")
DRIVER_INSIDE = "/opt/openassistants/driver.py"

#: Processes and threads one kernel may have at once (RLIMIT_NPROC); stops fork bombs.
MAX_PROCESSES = 64
#: Largest file a kernel may write (RLIMIT_FSIZE), in /mnt/data or /tmp.
MAX_FILE_BYTES = 512 * 1024 * 1024
MAX_OPEN_FILES = 1024
#: Size of the kernel's private /tmp (a tmpfs: it is memory, and RLIMIT_AS does not count it).
TMP_BYTES = 256 * 1024 * 1024
SHM_BYTES = 64 * 1024 * 1024
#: Kernels run at a lower priority than the server, so a busy kernel never starves the API.
KERNEL_NICENESS = 10
#: A kernel's cgroup cpu.weight (cgroups.py), where there is one: half the default of 100.
KERNEL_CPU_WEIGHT = 50

#: The whole environment of a kernel: nothing of the server's (no OPENASSISTANTS_*, no keys).
SANDBOX_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/tmp",
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "USER": "sandbox",
    "LOGNAME": "sandbox",
    "TERM": "dumb",
    "MPLBACKEND": "Agg",
    # One thread per BLAS/OpenMP pool: threads count against MAX_PROCESSES, and the host has few cores.
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
#: System files a Python process reads; each is bound read-only if the host has it.
SYSTEM_FILES = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/fonts",
    "/etc/localtime",
    "/etc/mime.types",
)

Mode = Literal["bwrap", "unsafe", "unavailable"]


@dataclass(frozen=True)
class Limits:
    """Per-process resource limits, set by the driver before any model code runs."""

    memory_bytes: int
    cpu_seconds: int
    processes: int = MAX_PROCESSES
    file_bytes: int = MAX_FILE_BYTES
    open_files: int = MAX_OPEN_FILES

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            memory_bytes=settings.code_interpreter_memory_mb * 1024 * 1024,
            cpu_seconds=settings.code_interpreter_cpu_seconds,
        )


@dataclass(frozen=True)
class DriverConfig:
    """What the driver is told on its command line."""

    limits: Limits
    data_dir: str
    max_output_bytes: int
    uid: int | None = None
    niceness: int = KERNEL_NICENESS

    def to_json(self) -> str:
        return json.dumps(asdict(self))


@dataclass(frozen=True)
class Launch:
    """A kernel's command line, environment, working directory, and the fds it inherits (the seccomp
    filter), which the caller closes once the process is started."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path
    pass_fds: tuple[int, ...] = ()

    def close(self) -> None:
        for fd in self.pass_fds:
            os.close(fd)


@dataclass(frozen=True)
class Sandbox:
    """How kernels start here: in bubblewrap, unsandboxed (the operator's explicit choice), or not at all."""

    mode: Mode
    bwrap: str | None = None
    #: Why bubblewrap cannot be used here; None when it can.
    reason: str | None = None

    @property
    def own_uids(self) -> bool:
        """Whether each kernel runs as a uid of its own (identity.py): bubblewrap, server as root."""
        return self.mode == "bwrap" and os.geteuid() == 0

    def launch(self, kernel_dir: Path, config: DriverConfig) -> Launch:
        """The command that starts one kernel whose /mnt/data is ``kernel_dir / "data"``."""
        data_dir = kernel_dir / "data"
        python = [sys.executable, "-I", "-B"]
        if self.mode == "bwrap":
            assert self.bwrap is not None
            seccomp = seccomp_fd()
            argv = [self.bwrap, *bwrap_args(data_dir, root=config.uid is not None, seccomp=seccomp)]
            fds = () if seccomp is None else (seccomp,)
            return Launch([*argv, "--", *python, DRIVER_INSIDE, config.to_json()], {}, Path("/"), fds)
        if self.mode == "unsafe":
            home = kernel_dir / "home"
            home.mkdir(exist_ok=True)
            env = {**SANDBOX_ENV, "HOME": str(home), "TMPDIR": str(home)}
            return Launch([*python, str(DRIVER_SOURCE), config.to_json()], env, data_dir)
        raise RuntimeError(f"no sandbox: {self.reason}")


def bwrap_args(data_dir: Path, *, root: bool, seccomp: int | None) -> list[str]:
    """bubblewrap's options: namespaces, read-only system and Python, private /tmp and /mnt/data.

    ``root``: bwrap runs as root, so it makes no user namespace (a namespace's root would be the host's
    uid 0, which RLIMIT_NPROC never limits); it keeps only CAP_SETUID/CAP_SETGID, which the driver uses
    to become the kernel's own uid before it reads any code, losing every capability. Otherwise bwrap
    runs unprivileged, in a new user namespace, and nested user namespaces are disabled.
    """
    args = ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if root:
        args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        args += ["--unshare-user", "--disable-userns"]
    if seccomp is not None:
        args += ["--seccomp", str(seccomp)]
    args += ["--die-with-parent", "--new-session", "--hostname", "sandbox", "--clearenv"]
    for name, value in SANDBOX_ENV.items():
        args += ["--setenv", name, value]
    # The private /tmp first: binds made after it (a venv or checkout that lives under /tmp, as CI's
    # may) land on top of it instead of being hidden by it.
    args += ["--perms", "1777", "--size", str(TMP_BYTES), "--tmpfs", "/tmp"]
    mounts = _Mounts()
    mounts.ro_bind("/usr")
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            mounts.args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            mounts.ro_bind(top)
    for path in SYSTEM_FILES:
        if os.path.exists(path):
            mounts.ro_bind(path)
    for prefix in python_roots():
        mounts.ro_bind(prefix)
    mounts.ro_bind(str(DRIVER_SOURCE), DRIVER_INSIDE)
    mounts.bind(str(data_dir), SANDBOX_DATA_DIR)
    args += mounts.args
    args += ["--proc", "/proc", "--dev", "/dev"]
    # POSIX semaphores and shared memory (multiprocessing) live in /dev/shm: a small tmpfs of its own.
    args += ["--perms", "1777", "--size", str(SHM_BYTES), "--tmpfs", "/dev/shm"]
    # No --chdir: as root, bwrap cannot enter the kernel's 0700 /mnt/data; the driver does, as its uid.
    return args


def seccomp_fd() -> int | None:
    """The seccomp filter in an anonymous file, for bwrap's --seccomp; None where there is none."""
    program = filter_program()
    if program is None:
        return None
    fd = os.memfd_create("openassistants-seccomp", os.MFD_CLOEXEC)
    os.write(fd, program)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def python_roots() -> list[str]:
    """The directories that hold this interpreter, its standard library and its site-packages (the
    venv), outside /usr; bound read-only at the same paths so numpy, pandas and matplotlib import."""
    candidates = {
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        sys.base_exec_prefix,
        str(Path(os.path.realpath(sys.executable)).parent.parent),
    }
    roots: list[str] = []
    for path in sorted(os.path.realpath(c) for c in candidates):
        if path == "/" or path.startswith("/usr/") or path == "/usr":
            continue
        if not any(path == r or path.startswith(r + "/") for r in roots):
            roots.append(path)
    return roots


class _Mounts:
    """Bind options, each preceded by its parent directories made 0755 (bwrap would make them 0700)."""

    def __init__(self) -> None:
        self.args: list[str] = []
        self._dirs: set[str] = {"/"}

    def ro_bind(self, source: str, dest: str | None = None) -> None:
        self._add("--ro-bind", source, dest or source)

    def bind(self, source: str, dest: str) -> None:
        self._add("--bind", source, dest)

    def _add(self, option: str, source: str, dest: str) -> None:
        parents = []
        parent = os.path.dirname(dest)
        while parent not in self._dirs:
            parents.append(parent)
            parent = os.path.dirname(parent)
        for directory in reversed(parents):
            self.args += ["--perms", "0755", "--dir", directory]
            self._dirs.add(directory)
        self.args += [option, source, dest]
        self._dirs.add(dest)
