"""The suite's clean-up of kernel mounts (leftover_mounts.py) leaves live servers' mounts alone.

pytest sessions run side by side on one host, each unmounting leftovers when it starts and ends. When
that unmounted a live server's /mnt/data tmpfs, its kernel kept writing to the tmpfs while the server
listed the empty directory beneath it: the files the code wrote from then on were never returned.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from openassistants.code_interpreter import workdir
from tests.conftest import ServerFactory, sdk_client
from tests.leftover_mounts import mounts_under, unmount_leftovers
from tests.test_kernel_ownership import dead_pid, owned_elsewhere
from tests.upstream import Reply, ScriptedUpstream, ToolCalls

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="kernel mounts (a tmpfs per kernel) need root")


def test_only_the_mounts_of_gone_servers_are_unmounted(tmp_path: Path) -> None:
    dead = tmp_path / "data" / "kernels" / f"{dead_pid()}-0a1b2c3d" / "kernel-1" / "data"
    live = tmp_path / "data" / "kernels" / f"{os.getpid()}-0a1b2c3d" / "kernel-1" / "data"
    for data_dir in (dead, live):
        data_dir.parent.mkdir(parents=True)
        workdir.make_data_dir(data_dir, None, 4096)
    try:
        unmount_leftovers(tmp_path)
        assert mounts_under(tmp_path) == [str(live)]
    finally:
        workdir.unmount_under(tmp_path)


def test_a_live_servers_mounts_are_kept_though_its_pid_is_not_visible(tmp_path: Path) -> None:
    # Another container's server: its pid runs nowhere here, but it holds its directory's lock.
    elsewhere = tmp_path / "data" / "kernels" / f"{dead_pid()}-0a1b2c3d"
    data_dir = elsewhere / "kernel-1" / "data"
    elsewhere.parent.mkdir(parents=True)
    try:
        with owned_elsewhere(elsewhere):
            workdir.make_data_dir(data_dir, None, 4096)
            unmount_leftovers(tmp_path)
            assert mounts_under(tmp_path) == [str(data_dir)]
        unmount_leftovers(tmp_path)
        assert mounts_under(tmp_path) == []
    finally:
        workdir.unmount_under(tmp_path)


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed")
async def test_a_live_kernel_keeps_its_files_through_another_sessions_clean_up(
    server_factory: ServerFactory, upstream: ScriptedUpstream, model: str, tmp_path: Path
) -> None:
    def write(name: str) -> ToolCalls:
        return ToolCalls(
            [("code_interpreter", json.dumps({"code": f"open('/mnt/data/{name}', 'w').write('{name}')"}))]
        )

    upstream.script(model, write("first.txt"), Reply("one"), write("second.txt"), Reply("two"))
    with server_factory() as server:
        async with sdk_client(server) as client:
            assistant = await client.beta.assistants.create(model=model, tools=[{"type": "code_interpreter"}])
            thread = await client.beta.threads.create()
            for name in ("first.txt", "second.txt"):
                run = await client.beta.threads.runs.create_and_poll(
                    thread_id=thread.id, assistant_id=assistant.id
                )
                assert run.status == "completed"
                message = (await client.beta.threads.messages.list(thread.id, limit=1)).data[0]
                [attachment] = message.attachments or []
                assert (await client.files.content(attachment.file_id or "")).read() == name.encode()
                # What another pytest session does as it starts or ends, while this kernel lives on.
                unmount_leftovers(tmp_path)
