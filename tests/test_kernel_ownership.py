"""Which kernel work directories a manager removes when it starts: those whose owner is gone.

Containers sharing one data volume (compose's API and worker containers) each have their own pid
namespace, so a live manager's pid may not exist in another container, and a restarted container's
process may carry a dead one's pid. Ownership is the flock each manager holds on a lock file in its
directory; these tests hold one in a separate process under a name whose pid is not running here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from openassistants.code_interpreter import KernelManager
from openassistants.code_interpreter.ownership import LOCK_FILE, is_abandoned
from openassistants.config import Settings
from tests.conftest import ServerFactory, sdk_client
from tests.upstream import Reply, ScriptedUpstream, ToolCalls

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


#: A server starting on the same work root, as another container's would: its clean-up runs.
STARTING_ELSEWHERE = """
import asyncio, sys
from pathlib import Path
from openassistants.code_interpreter import KernelManager
from openassistants.config import Settings

async def main() -> None:
    manager = KernelManager(Settings(code_interpreter_pool_size=0), Path(sys.argv[1]))
    await manager.start()
    await manager.close()

asyncio.run(main())
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


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("bwrap") is None,
    reason="a pid namespace of its own (unshare) needs root; kernels need bubblewrap",
)
async def test_a_server_in_another_pid_namespace_leaves_a_live_servers_kernels_alone(
    server_factory: ServerFactory, upstream: ScriptedUpstream, model: str, tmp_path: Path
) -> None:
    def run_code(code: str) -> ToolCalls:
        return ToolCalls([("code_interpreter", json.dumps({"code": code}))])

    upstream.script(
        model,
        run_code("open('/mnt/data/first.txt', 'w').write('first')"),
        Reply("one"),
        run_code("open('/mnt/data/second.txt', 'w').write(open('/mnt/data/first.txt').read() + ' second')"),
        Reply("two"),
    )
    with server_factory() as server:
        async with sdk_client(server) as client:
            assistant = await client.beta.assistants.create(model=model, tools=[{"type": "code_interpreter"}])
            thread = await client.beta.threads.create()
            for expected in (b"first", b"first second"):
                run = await client.beta.threads.runs.create_and_poll(
                    thread_id=thread.id, assistant_id=assistant.id
                )
                assert run.status == "completed"
                message = (await client.beta.threads.messages.list(thread.id, limit=1)).data[0]
                [attachment] = message.attachments or []
                assert (await client.files.content(attachment.file_id or "")).read() == expected
                # Another container's server starts on the same volume; this server's pid is not
                # visible in its pid namespace.
                [work_root] = tmp_path.glob("data-*/kernels")
                subprocess.run(
                    ["unshare", "--pid", "--fork", sys.executable, "-c", STARTING_ELSEWHERE, str(work_root)],
                    check=True,
                    timeout=120,
                )
