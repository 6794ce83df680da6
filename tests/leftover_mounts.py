"""Unmounting what killed servers leave behind in pytest's temporary folders.

As root, each code-interpreter kernel's ``/mnt/data`` is a size-limited tmpfs that its server mounts
inside the data dir (code_interpreter/); a server killed with SIGKILL, as the scale-out tests do on
purpose, never unmounts it. pytest then cannot remove those folders (EBUSY) when it clears old
temporary folders, and its warning, an error under ``filterwarnings = error``, fails the run. The
suite unmounts them when it starts and when it ends.

Only a dead server's mounts: pytest sessions run side by side on one host (all of them under the same
temporary root), and a live server's kernel keeps writing to its tmpfs after the server's own view of
it is unmounted, so that the server would find none of the files the kernel writes from then on.
"""

from __future__ import annotations

import getpass
import os
import subprocess
import tempfile
from pathlib import Path

from openassistants.code_interpreter.ownership import is_abandoned


def pytest_temp_root() -> Path:
    return Path(tempfile.gettempdir()) / f"pytest-of-{getpass.getuser()}"


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below ``root``, deepest first."""
    prefix = str(root) + os.sep
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return []
    points = []
    for line in lines:
        fields = line.split()
        if len(fields) > 1:
            # /proc/self/mounts escapes spaces and other bytes in octal.
            point = fields[1].encode().decode("unicode_escape")
            if point.startswith(prefix):
                points.append(point)
    return sorted(points, key=len, reverse=True)


def unmount_leftovers(root: Path | None = None) -> None:
    """Lazily unmount the kernel mounts under pytest's temporary root whose server process is gone
    (only root may, and only root mounts)."""
    if os.geteuid() != 0:
        return
    for point in mounts_under(root or pytest_temp_root()):
        if _left_by_dead_server(Path(point)):
            subprocess.run(["umount", "--lazy", point], check=False, capture_output=True)


def _left_by_dead_server(point: Path) -> bool:
    """Whether the mount point is in a kernel work root (``<data dir>/kernels/<pid>-<suffix>/``) of a
    server process that is gone."""
    return any(directory.parent.name == "kernels" and is_abandoned(directory) for directory in point.parents)
