"""Which kernel work directories a manager removes when it starts: those whose owner is gone.

Containers sharing one data volume (compose's API and worker containers) each have their own pid
namespace, so a live manager's pid may not exist in another container, and a restarted container's
process may carry a dead one's pid. Ownership is the flock each manager holds on a lock file in its
directory; these tests hold one in a separate process under a name whose pid is not running here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from openassistants.code_interpreter import KernelManager
from openassistants.code_interpreter.ownership import LOCK_FILE, is_abandoned
from openassistants.config import Settings

SETTINGS: dict[str, Any] = {"code_interpreter_pool_size": 0, "code_interpreter_unsafe_no_sandbox": True}

#: Another process's manager directory, made by the real code path and owned until stdin closes.
HOLDER = """
import sys
from pathlib import Path
from openassistants.code_interpreter.ownership import Ownership
ownership = Ownership(Path(sys.argv[1]))
(Path(sys.argv[1]) / "kernel-1").mkdir()
(Path(sys.argv[1]) / "kernel-1" / "work.txt").write_text("in use")
print("owned", flush=True)
sys.stdin.read()
"""


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@contextmanager
def owned_elsewhere(directory: Path) -> Iterator[subprocess.Popen[str]]:
    """``directory`` made and owned by another live process until the block ends (it then exits)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(directory)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdin is not None
    try:
        assert holder.stdout.readline() == "owned\n"
        yield holder
    finally:
        holder.stdin.close()
        holder.stdout.close()
        assert holder.wait(timeout=30) == 0


async def start_and_close_manager(work_root: Path) -> list[str]:
    """Start a manager on ``work_root`` (its clean-up runs), and list the directories it left alone."""
    before = set(work_root.iterdir()) if work_root.exists() else set()
    manager = KernelManager(Settings(**SETTINGS), work_root)
    await manager.start()
    try:
        [own] = set(work_root.iterdir()) - before
        # Its own directory, seen from its own process through a second open of the lock file.
        assert not is_abandoned(own)
        return sorted(entry.name for entry in work_root.iterdir() if entry != own)
    finally:
        await manager.close()


async def test_a_live_owner_whose_pid_is_not_visible_keeps_its_directory_until_it_exits(
    tmp_path: Path,
) -> None:
    work_root = tmp_path / "kernels"
    work_root.mkdir()
    # The pid in the name runs nowhere here, as another container's manager would look.
    elsewhere = work_root / f"{dead_pid()}-0a1b2c3d"
    with owned_elsewhere(elsewhere):
        assert (elsewhere / LOCK_FILE).exists() and not is_abandoned(elsewhere)
        assert await start_and_close_manager(work_root) == [elsewhere.name]
        assert (elsewhere / "kernel-1" / "work.txt").read_text() == "in use"
    assert is_abandoned(elsewhere)
    assert await start_and_close_manager(work_root) == []
    assert list(work_root.iterdir()) == []


async def test_a_gone_owner_whose_pid_is_running_again_is_cleaned_up(tmp_path: Path) -> None:
    work_root = tmp_path / "kernels"
    work_root.mkdir()
    # A restarted container's process may carry the pid of the one that made this directory.
    recycled = work_root / f"{os.getpid()}-0a1b2c3d"
    with owned_elsewhere(recycled):
        pass
    assert await start_and_close_manager(work_root) == []


async def test_directories_without_a_lock_file_are_judged_by_their_pid(tmp_path: Path) -> None:
    work_root = tmp_path / "kernels"
    # Made by versions before the lock file: a running pid keeps its directory, a gone one does not.
    live, gone = work_root / f"{os.getpid()}-0a1b2c3d", work_root / f"{dead_pid()}-0a1b2c3d"
    unrelated = work_root / "notes"
    for directory in (live, gone, unrelated):
        (directory / "kernel-1").mkdir(parents=True)
    assert await start_and_close_manager(work_root) == [live.name, unrelated.name]
