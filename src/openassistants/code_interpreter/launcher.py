"""Starting one kernel with everything that confines it: its own uid (identity.py), its /mnt/data
(a tmpfs of code_interpreter_data_mb where the server can mount one), its cgroup where the host
delegates one (cgroups.py), and the sandbox itself (sandbox.py, kernel.py).

What is in force here is found once, at start-up, and logged: an operator reads there whether
/mnt/data has a quota and whether a kernel is limited as a whole or per process.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

from openassistants.code_interpreter import identity, workdir
from openassistants.code_interpreter.cgroups import find_root
from openassistants.code_interpreter.kernel import Kernel, KernelDied
from openassistants.code_interpreter.sandbox import (
    MAX_FILE_BYTES,
    MAX_PROCESSES,
    SANDBOX_DATA_DIR,
    DriverConfig,
    Limits,
    Sandbox,
)
from openassistants.config import Settings

logger = logging.getLogger("openassistants.code_interpreter")

#: Imported by warm pool kernels before they are handed out, so the usual first imports are instant.
PRELOAD_MODULES = ["numpy", "pandas", "matplotlib.pyplot"]
KERNEL_START_TIMEOUT_SECONDS = 30.0
PRELOAD_TIMEOUT_SECONDS = 120.0


class Launcher:
    """Starts kernels in directories ``root/kernel-<n>``; call ``prepare`` once first."""

    def __init__(self, settings: Settings, sandbox: Sandbox) -> None:
        self._settings = settings
        self._sandbox = sandbox
        #: Why /mnt/data has no quota here; None: each kernel's is a tmpfs.
        self._no_quota: str | None = "not prepared"
        self._cgroups, self._no_cgroups = find_root(settings)

    async def prepare(self, root: Path) -> None:
        """Find out whether a tmpfs can be mounted here, and log the limits kernels will have."""
        self._no_quota = await asyncio.to_thread(workdir.can_mount_quota, root / "probe")
        if self._no_quota is None:
            logger.info(
                "code interpreter /mnt/data: a %d MiB tmpfs per kernel",
                self._settings.code_interpreter_data_mb,
            )
        else:
            logger.warning(
                "code interpreter /mnt/data has no quota (%s); only each file is limited (%d MiB)",
                self._no_quota,
                MAX_FILE_BYTES // (1024 * 1024),
            )
        memory_mb = self._settings.code_interpreter_memory_mb
        if self._cgroups is not None:
            logger.info(
                "code interpreter limits: per kernel, in cgroups under %s (memory.max %d MiB with its "
                "/mnt/data, pids.max %d), and per process (RLIMIT_AS %d MiB)",
                self._cgroups.path,
                memory_mb + (0 if self._no_quota else self._settings.code_interpreter_data_mb),
                MAX_PROCESSES,
                memory_mb,
            )
            return
        log = logger.warning if self._settings.code_interpreter_cgroup else logger.info
        log(
            "code interpreter limits: per process (%s): each kernel process may use %d MiB (RLIMIT_AS) "
            "and a kernel %d processes (RLIMIT_NPROC on its own uid); its processes together are not "
            "limited as a whole",
            self._no_cgroups,
            memory_mb,
            MAX_PROCESSES,
        )

    async def start(self, root: Path, number: int, *, preload: bool) -> Kernel:
        """Kernel ``number``, ready for cells (``preload``: PRELOAD_MODULES imported). Raises KernelError."""
        settings = self._settings
        try:
            lease = await asyncio.to_thread(identity.lease_uid) if self._sandbox.own_uids else None
        except OSError as exc:
            raise KernelDied(f"no uid could be leased for it ({exc})") from None
        uid = lease.uid if lease is not None else None
        directory = root / f"kernel-{number}"
        quota = None if self._no_quota else settings.code_interpreter_data_mb << 20
        config = DriverConfig(
            limits=Limits.from_settings(settings),
            data_dir=SANDBOX_DATA_DIR if self._sandbox.mode == "bwrap" else str(directory / "data"),
            max_output_bytes=settings.code_interpreter_max_output_bytes,
            uid=uid,
        )
        try:
            try:
                directory.mkdir(mode=0o700)
                await asyncio.to_thread(workdir.make_data_dir, directory / "data", uid, quota)
            except OSError as exc:
                raise KernelDied(f"its /mnt/data could not be made ({exc})") from None
            kernel = await Kernel.start(
                self._sandbox, number, directory, config, KERNEL_START_TIMEOUT_SECONDS, lease
            )
            try:
                if self._cgroups is not None:
                    memory = config.limits.memory_bytes + (quota or 0)
                    try:
                        kernel.cgroup = await asyncio.to_thread(
                            self._cgroups.create, f"{root.name}-{number}", memory
                        )
                        await asyncio.to_thread(kernel.cgroup.add, kernel.pids)
                    except OSError as exc:
                        raise KernelDied(f"the kernel's cgroup could not be set up ({exc})") from None
                if preload:
                    await kernel.preload(PRELOAD_MODULES, PRELOAD_TIMEOUT_SECONDS)
            except BaseException:
                await kernel.kill()
                raise
        except BaseException:
            await asyncio.to_thread(remove_kernel_directory, directory)
            if lease is not None:
                lease.release()
            raise
        return kernel


def remove_kernel_directory(directory: Path) -> None:
    """Unmount a kernel's /mnt/data (if it is a tmpfs) and delete its directory."""
    workdir.unmount(directory / "data")
    shutil.rmtree(directory, ignore_errors=True)
