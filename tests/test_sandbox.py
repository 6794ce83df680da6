"""The code interpreter's kernels in the real sandbox (bubblewrap), as a library: no server.

Without bubblewrap these tests skip locally and fail in CI (OPENASSISTANTS_TEST_REQUIRE_POSTGRES set),
so the sandbox is never silently untested where it ships.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from openassistants.code_interpreter import CellResult, KernelManager, SandboxUnavailable, identity
from openassistants.code_interpreter.probe import sandbox_problem
from openassistants.code_interpreter.sandbox import MAX_PROCESSES, python_roots
from openassistants.code_interpreter.seccomp import filter_program
from openassistants.config import Settings

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: Short limits keep the suite fast: each limit test waits for its limit to strike.
FAST: dict[str, Any] = {
    "code_interpreter_timeout_seconds": 20.0,
    "code_interpreter_memory_mb": 512,
    "code_interpreter_pool_size": 0,
}

ManagerFactory = Callable[..., AbstractAsyncContextManager[KernelManager]]


@pytest.fixture(scope="module")
def require_sandbox() -> None:
    problem = sandbox_problem(Settings())
    if problem is not None:
        if os.environ.get("OPENASSISTANTS_TEST_REQUIRE_POSTGRES"):
            pytest.fail(f"the code interpreter sandbox is required in CI: {problem}")
        pytest.skip(f"no sandbox here: {problem}")


@pytest.fixture
def manager_factory(require_sandbox: None, tmp_path: Path) -> ManagerFactory:
    @asynccontextmanager
    async def factory(**settings: Any) -> AsyncIterator[KernelManager]:
        manager = KernelManager(Settings(**{**FAST, **settings}), tmp_path / "kernels")
        await manager.start()
        try:
            yield manager
        finally:
            await manager.close()

    return factory


@pytest.fixture(scope="module")
async def manager(
    require_sandbox: None, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[KernelManager]:
    """One manager for the tests that need no special limits; each test uses its own sessions."""
    shared = KernelManager(Settings(**FAST), tmp_path_factory.mktemp("kernels"))
    await shared.start()
    yield shared
    await shared.close()


def session_name(request: pytest.FixtureRequest, suffix: str = "") -> str:
    return f"tenant:{request.node.name}{suffix}"


async def test_computation_output_is_in_the_logs(
    manager: KernelManager, request: pytest.FixtureRequest
) -> None:
    result = await manager.execute(
        session_name(request), "import numpy as np\nprint(np.arange(10).sum())\n6 * 7"
    )
    assert result == CellResult(logs="45\n42", error=None, files=[], restarted=False)


async def test_state_is_kept_in_a_session_and_not_shared(
    manager: KernelManager, request: pytest.FixtureRequest
) -> None:
    one, other = session_name(request, "-1"), session_name(request, "-2")
    await manager.execute(one, "secret = 'one'\ndef double(n):\n    return 2 * n")
    assert (await manager.execute(one, "print(secret, double(21))")).logs == "one 42"
    other_result = await manager.execute(other, "print(secret)")
    assert other_result.error == "NameError: name 'secret' is not defined"
    assert "Traceback" in other_result.logs
    listing = await manager.execute(other, "import os; print(os.listdir('/mnt/data'))")
    assert listing.logs == "[]"


async def test_an_exception_comes_back_as_a_traceback_and_the_kernel_goes_on(
    manager: KernelManager, request: pytest.FixtureRequest
) -> None:
    session = session_name(request)
    await manager.execute(session, "kept = 1")
    result = await manager.execute(session, "print('before')\n{}['missing']")
    assert result.error == "KeyError: 'missing'"
    assert result.logs.startswith("before\nTraceback (most recent call last):\n")
    assert 'File "<cell 2>", line 2' in result.logs
    assert "driver.py" not in result.logs
    assert (await manager.execute(session, "kept")).logs == "1"


async def test_input_files_are_readable_under_their_original_names(
    manager: KernelManager, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    upload = tmp_path / "file-abc123"
    upload.write_text("city,population\nParis,2100000\nLyon,520000\n")
    result = await manager.execute(
        session_name(request),
        "import pandas as pd\nprint(pd.read_csv('/mnt/data/cities.csv').population.sum())",
        input_files=[("../../cities.csv", upload)],
    )
    assert (result.error, result.logs, result.files) == (None, "2620000", [])


async def test_a_matplotlib_figure_comes_out_as_a_png_image(
    manager: KernelManager, request: pytest.FixtureRequest
) -> None:
    result = await manager.execute(
        session_name(request),
        "import matplotlib.pyplot as plt\nplt.plot([1, 4, 9])\nplt.title('squares')\nplt.show()",
    )
    assert result.error is None
    [image] = result.files
    assert image.is_image and image.name.endswith(".png")
    assert image.path.read_bytes().startswith(PNG_MAGIC)
    assert image.size == image.path.stat().st_size > 1000
    # The figure was closed: the next cell shows no image.
    assert (await manager.execute(session_name(request), "1")).files == []


async def test_written_files_come_out_with_their_names(
    manager: KernelManager, request: pytest.FixtureRequest
) -> None:
    session = session_name(request)
    code = (
        "import os, pandas as pd\n"
        "pd.DataFrame({'x': [1, 2], 'y': [3, 4]}).to_csv('/mnt/data/table.csv', index=False)\n"
        "os.makedirs('/mnt/data/charts', exist_ok=True)\n"
        "import matplotlib.pyplot as plt\n"
        "plt.bar(['a', 'b'], [1, 2]); plt.savefig('/mnt/data/charts/bars.png'); plt.close()"
    )
    result = await manager.execute(session, code)
    assert result.error is None
    by_name = {f.name: f for f in result.files}
    assert set(by_name) == {"table.csv", "charts/bars.png"}
    assert by_name["table.csv"].path.read_text() == "x,y\n1,3\n2,4\n"
    assert not by_name["charts/bars.png"].is_image  # a written file, not a displayed figure
    assert by_name["charts/bars.png"].path.read_bytes().startswith(PNG_MAGIC)
    # Only what a cell changes comes out.
    again = await manager.execute(session, "open('/mnt/data/table.csv', 'a').write('5,6\\n')")
    assert [(f.name, f.path.read_text()) for f in again.files] == [("table.csv", "x,y\n1,3\n2,4\n5,6\n")]


async def test_the_network_is_unreachable(manager: KernelManager, request: pytest.FixtureRequest) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # reachable from the host
        code = (
            "import socket\n"
            f"for port in ({port}, 5432):\n"
            "    try:\n"
            "        socket.create_connection(('127.0.0.1', port), timeout=3)\n"
            "        print('connected', port)\n"
            "    except OSError as exc:\n"
            "        print('refused', port, exc.errno)\n"
            "try:\n"
            "    socket.create_connection(('10.0.0.1', 80), timeout=3)\n"
            "except OSError as exc:\n"
            "    print('unreachable', exc.errno)\n"
            "print(socket.if_nameindex())"
        )
        result = await manager.execute(session_name(request), code)
    assert result.error is None
    assert "connected" not in result.logs
    assert f"refused {port}" in result.logs and "refused 5432" in result.logs
    assert "unreachable 101" in result.logs  # ENETUNREACH: no route anywhere
    assert result.logs.endswith("[(1, 'lo')]")


async def test_the_server_data_and_environment_are_out_of_reach(
    manager_factory: ManagerFactory,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data_dir = tmp_path / "server-data"
    data_dir.mkdir()
    (data_dir / "openassistants.db").write_text("tenant secrets")
    monkeypatch.setenv("OPENASSISTANTS_API_KEYS", "sk-very-secret")
    monkeypatch.setenv("OPENASSISTANTS_DATA_DIR", str(data_dir))
    code = (
        "import os\n"
        f"for path in ({str(data_dir / 'openassistants.db')!r}, '/proc/self/environ', '/etc/shadow', "
        f"'/proc/{os.getpid()}/environ', {str(Path.cwd() / 'pyproject.toml')!r}):\n"
        "    try:\n"
        "        print(path, open(path, 'rb').read().count(b'secret'))\n"
        "    except OSError as exc:\n"
        "        print(path, type(exc).__name__)\n"
        "print(sorted(k for k in os.environ if 'OPENASSISTANTS' in k or 'KEY' in k))\n"
        "print(sorted(os.listdir('/')))"
    )
    async with manager_factory() as fresh:
        result = await fresh.execute(session_name(request), code)
    assert result.error is None
    lines = result.logs.splitlines()
    assert lines[0].endswith("openassistants.db FileNotFoundError")
    assert lines[1] == "/proc/self/environ 0"
    assert lines[2] == "/etc/shadow FileNotFoundError"
    assert lines[3].endswith("FileNotFoundError")  # the server's pid is in another pid namespace
    assert lines[4].endswith("pyproject.toml FileNotFoundError")
    assert lines[5] == "[]"
    assert "secret" not in result.logs.replace("count(b'secret')", "")
    # Only the system directories and the tops of the interpreter's own trees (the venv, wherever the
    # checkout lives: /work here, /check in CI) are visible; nothing else of the host's root.
    interpreter_tops = {root.split("/")[1] for root in python_roots()}
    system = {
        "bin",
        "dev",
        "etc",
        "lib",
        "lib32",
        "lib64",
        "libx32",
        "mnt",
        "opt",
        "proc",
        "sbin",
        "tmp",
        "usr",
    }
    assert set(eval(lines[6])) <= system | interpreter_tops


async def test_an_infinite_loop_is_stopped_and_the_session_restarts_with_its_files(
    manager: KernelManager, request: pytest.FixtureRequest
) -> None:
    session = session_name(request)
    await manager.execute(session, "x = 1\nopen('/mnt/data/notes.txt', 'w').write('kept')")
    started = time.monotonic()
    result = await manager.execute(session, "while True:\n    pass", timeout=1.0)
    assert time.monotonic() - started < 5
    assert result.error is not None and "timed out after 1 seconds" in result.error
    assert "variables are lost" in result.logs
    after = await manager.execute(session, "print(open('/mnt/data/notes.txt').read())\nx")
    assert after.restarted
    assert after.logs.startswith("kept\nTraceback")
    assert after.error == "NameError: name 'x' is not defined"
    assert (await manager.execute(session, "1 + 1")).restarted is False


async def test_a_fork_bomb_hits_the_process_limit_while_other_sessions_proceed(
    manager: KernelManager, request: pytest.FixtureRequest
) -> None:
    bomb = (
        "import os, time\n"
        "children = 0\n"
        "try:\n"
        "    while True:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(60)\n"
        "            os._exit(0)\n"
        "        children += 1\n"
        "except OSError as exc:\n"
        "    print('stopped after', children, exc.strerror)\n"
        "os.system(':(){ :|:& };:')\n"  # the shell's fork bomb too, against the same limit
        "print('still here')"
    )
    bombing = asyncio.create_task(manager.execute(session_name(request, "-bomb"), bomb, timeout=10))
    await asyncio.sleep(0.2)
    started = time.monotonic()
    neighbour = await manager.execute(session_name(request, "-neighbour"), "sum(range(1000))")
    assert neighbour.logs == "499500"
    assert time.monotonic() - started < 5
    result = await bombing
    assert result.error is None, result.logs
    count, _, reason = result.logs.splitlines()[0].removeprefix("stopped after ").partition(" ")
    assert int(count) < MAX_PROCESSES
    assert reason == "Resource temporarily unavailable"
    still_here, stopped = result.logs.splitlines()[1:]
    assert still_here == "still here"
    assert stopped.endswith(
        "processes the code left running were stopped: nothing outlives a call here, "
        "so keep subprocesses and pools within one call]"
    )
    # Its sleeping children did not outlive the call.
    survey = "import os\n[p for p in os.listdir('/proc') if p.isdigit() and int(p) not in (1, os.getpid())]"
    assert (await manager.execute(session_name(request, "-bomb"), survey)).logs == "[]"


async def test_a_memory_hog_is_stopped_while_other_sessions_proceed(
    manager: KernelManager, request: pytest.FixtureRequest
) -> None:
    session = session_name(request)
    hog = "chunks = []\nwhile True:\n    chunks.append(bytearray(32 * 1024 * 1024))"
    hogging = asyncio.create_task(manager.execute(session, hog, timeout=15))
    neighbour = await manager.execute(session_name(request, "-neighbour"), "'fine'")
    assert neighbour.logs == "'fine'"
    result = await hogging
    assert result.error is not None
    assert "MemoryError" in result.error or "kernel died (likely out of memory" in result.error
    huge = await manager.execute(session, "del chunks\nimport numpy as np\nnp.ones(10**10)")
    assert huge.error is not None and "Unable to allocate" in huge.error
    assert (await manager.execute(session, "print('recovered')")).logs == "recovered"


async def test_a_killed_kernel_is_reported_and_replaced_on_the_next_call(
    manager: KernelManager, request: pytest.FixtureRequest
) -> None:
    session = session_name(request)
    await manager.execute(session, "x = 1")
    result = await manager.execute(session, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    assert result.error is not None
    assert result.error.startswith("kernel died (likely out of memory; signal SIGKILL)")
    assert "variables are lost" in result.logs
    after = await manager.execute(session, "'x' in globals()")
    assert (after.logs, after.restarted) == ("False", True)
    await manager.reset(session)
    fresh = await manager.execute(session, "'x' in globals()")
    assert (fresh.logs, fresh.restarted) == ("False", False)


async def test_forged_protocol_frames_only_end_their_own_kernel(
    manager: KernelManager, request: pytest.FixtureRequest
) -> None:
    forge = (
        "import os, stat\n"
        "for fd in range(3, 64):\n"
        "    try:\n"
        "        if stat.S_ISFIFO(os.fstat(fd).st_mode):\n"
        "            os.write(fd, b'\\x00\\x00\\x00\\x05junk!')\n"
        "    except OSError:\n"
        "        pass"
    )
    result = await manager.execute(session_name(request), forge)
    assert result.error == "kernel died (it sent a malformed reply)"
    assert (await manager.execute(session_name(request), "print('fine')")).logs == "fine"


async def test_a_call_cancelled_midway_ends_its_kernel_and_the_next_call_gets_its_own_reply(
    manager: KernelManager, request: pytest.FixtureRequest
) -> None:
    session = session_name(request)
    await manager.execute(session, "x = 1")
    slow = asyncio.create_task(manager.execute(session, "import time\ntime.sleep(30)\nprint('late')"))
    await asyncio.sleep(0.5)
    slow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slow
    after = await manager.execute(session, "print('next')")
    assert (after.logs, after.restarted) == ("next", True)


async def test_the_cpu_limit_kills_the_kernel(
    manager_factory: ManagerFactory, request: pytest.FixtureRequest
) -> None:
    async with manager_factory(code_interpreter_cpu_seconds=1) as limited:
        result = await limited.execute(session_name(request), "while True:\n    pass", timeout=20)
        assert result.error is not None and "CPU time limit of 1 s exceeded" in result.error
        assert (await limited.execute(session_name(request), "print('back')")).restarted


async def test_long_output_is_cut_with_a_note(
    manager_factory: ManagerFactory, request: pytest.FixtureRequest
) -> None:
    async with manager_factory(code_interpreter_max_output_bytes=2000) as small:
        result = await small.execute(
            session_name(request), "for i in range(10000):\n    print(f'line {i}')\n1/0"
        )
    assert len(result.logs.encode()) <= 2000
    assert result.logs.startswith("line 0\nline 1\n")
    assert "characters of output omitted" in result.logs
    assert result.logs.endswith("ZeroDivisionError: division by zero")


async def test_links_planted_in_mnt_data_are_never_followed(
    manager: KernelManager, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    victim = tmp_path / "host-file.txt"
    victim.write_text("host data")
    upload = tmp_path / "upload"
    upload.write_text("new content")
    session = session_name(request)
    planted = await manager.execute(
        session,
        f"import os\nos.symlink({str(victim)!r}, '/mnt/data/in.txt')\n"
        "os.symlink('/etc/hostname', '/mnt/data/out.txt')",
    )
    assert planted.files == []  # links are not files
    result = await manager.execute(
        session,
        "import os\nprint(os.path.islink('/mnt/data/in.txt'), open('/mnt/data/in.txt').read())",
        input_files=[("in.txt", upload)],
    )
    assert result.logs == "False new content"
    assert victim.read_text() == "host data"


async def test_idle_sessions_expire_and_their_next_call_says_restarted(
    manager_factory: ManagerFactory, request: pytest.FixtureRequest
) -> None:
    async with manager_factory(code_interpreter_idle_seconds=0.3) as quick:
        await quick.execute(session_name(request), "x = 1")
        await asyncio.sleep(1.0)
        result = await quick.execute(session_name(request), "x")
    assert result.restarted
    assert result.error == "NameError: name 'x' is not defined"


async def test_the_warm_pool_hands_out_kernels_with_the_libraries_imported(
    manager_factory: ManagerFactory, request: pytest.FixtureRequest
) -> None:
    async with manager_factory(code_interpreter_pool_size=1) as pooled:
        started = time.monotonic()
        result = await pooled.execute(
            session_name(request),
            "import sys\nsorted(m for m in ('numpy', 'pandas', 'matplotlib.pyplot') if m in sys.modules)",
        )
        assert time.monotonic() - started < 2.0  # importing pandas and matplotlib alone takes longer
        assert result.logs == "['matplotlib.pyplot', 'numpy', 'pandas']"


async def test_at_capacity_the_least_recently_used_idle_session_gives_way(
    manager_factory: ManagerFactory, request: pytest.FixtureRequest
) -> None:
    async with manager_factory(code_interpreter_max_kernels=2) as small:
        for name in ("a", "b", "c"):
            await small.execute(session_name(request, name), f"name = {name!r}")
        assert (await small.execute(session_name(request, "c"), "name")).logs == "'c'"
        assert (await small.execute(session_name(request, "b"), "name")).logs == "'b'"
        evicted = await small.execute(session_name(request, "a"), "name")
        assert evicted.restarted and evicted.error == "NameError: name 'name' is not defined"


async def test_when_every_kernel_is_busy_a_new_session_is_told_to_retry(
    manager_factory: ManagerFactory, request: pytest.FixtureRequest
) -> None:
    async with manager_factory(code_interpreter_max_kernels=1) as single:
        busy = asyncio.create_task(
            single.execute(session_name(request, "busy"), "import time; time.sleep(3)")
        )
        await asyncio.sleep(0.5)
        refused = await single.execute(session_name(request, "new"), "1")
        assert refused.error is not None and refused.error.startswith("Too many code interpreter sessions")
        assert (await busy).error is None


def sandbox_processes(work_root: Path) -> dict[int, list[int]]:
    """Each bwrap process of kernels under ``work_root`` (it names their directories), with its children."""
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and str(work_root) in (entry / "cmdline").read_text():
                children = (entry / "task" / entry.name / "children").read_text().split()
                found[int(entry.name)] = [int(child) for child in children]
        except OSError:
            continue
    return found


async def test_closing_while_the_pool_fills_leaves_no_kernel_behind(
    require_sandbox: None, tmp_path: Path
) -> None:
    manager = KernelManager(Settings(**{**FAST, "code_interpreter_pool_size": 2}), tmp_path)
    starting = asyncio.create_task(manager.start())  # as the server starts it: in the background
    for _ in range(2000):  # until a pool kernel's Python runs, before its driver is ready
        processes = sandbox_processes(tmp_path)
        if any(child not in processes for children in processes.values() for child in children):
            break
        await asyncio.sleep(0.002)
    starting.cancel()
    await asyncio.gather(starting, return_exceptions=True)
    await manager.close()
    for _ in range(200):
        if not sandbox_processes(tmp_path):
            break
        await asyncio.sleep(0.01)
    assert sandbox_processes(tmp_path) == {}
    assert list(tmp_path.iterdir()) == []


async def test_without_bubblewrap_nothing_runs_unless_unsafe_mode_is_chosen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on it
    refusing = KernelManager(Settings(**FAST), tmp_path / "kernels")
    assert not refusing.available
    assert (
        refusing.unavailable_reason is not None
        and "apt-get install bubblewrap" in refusing.unavailable_reason
    )
    with pytest.raises(SandboxUnavailable, match="bubblewrap"):
        await refusing.execute("tenant:thread", "print(1)")
    unsafe = KernelManager(Settings(**FAST, code_interpreter_unsafe_no_sandbox=True), tmp_path / "kernels")
    assert unsafe.available and not unsafe.sandboxed
    await unsafe.start()
    try:
        result = await unsafe.execute(
            "tenant:thread", "import resource\nresource.getrlimit(resource.RLIMIT_AS)"
        )
    finally:
        await unsafe.close()
    assert result.logs == f"({512 * 1024 * 1024}, {512 * 1024 * 1024})"


async def test_kernel_processes_are_confined_yet_threads_subprocesses_and_pools_work(
    manager: KernelManager, request: pytest.FixtureRequest
) -> None:
    code = (
        "import ctypes, os, subprocess, threading\n"
        "status = dict(line.split(':\\t') for line in open('/proc/self/status').read().splitlines())\n"
        "print(status['CapEff'], status['NoNewPrivs'], status['Seccomp'], os.nice(0))\n"
        "print(open('/proc/self/oom_score_adj').read().strip())\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print(libc.unshare(0x10000000), ctypes.get_errno())\n"  # CLONE_NEWUSER
        "print(libc.ptrace(0, 0, 0, 0), ctypes.get_errno())\n"  # PTRACE_TRACEME
        "threading.Thread(target=print, args=('thread',)).start()\n"
        "print(subprocess.run(['echo', 'subprocess'], capture_output=True, text=True).stdout.strip())\n"
        "import multiprocessing\n"
        "with multiprocessing.Pool(2) as pool:\n"
        "    print(pool.map(abs, [-1, -2]))"
    )
    result = await manager.execute(session_name(request), code)
    assert result.logs.splitlines() == [
        "0000000000000000 1 2 10",  # no capabilities, no way to gain any, seccomp filtering, nice 10
        "1000",  # the OOM killer's first choice
        "-1 1",  # unshare(CLONE_NEWUSER): EPERM
        "-1 1",  # ptrace: EPERM
        "thread",
        "subprocess",
        "[1, 2]",  # multiprocessing: fork, pipes and semaphores in /dev/shm
    ]


def test_the_seccomp_filter_exists_for_x86_64_and_aarch64_only() -> None:
    for machine in ("x86_64", "aarch64"):
        program = filter_program(machine)
        assert program is not None and len(program) % 8 == 0
    assert filter_program("riscv64") is None


def test_uid_leases_are_exclusive_on_the_host_and_freed_when_their_holder_dies(tmp_path: Path) -> None:
    first, second = identity.lease_uid(tmp_path), identity.lease_uid(tmp_path)
    assert first.uid != second.uid
    first.release()
    again = identity.lease_uid(tmp_path)
    assert again.uid == first.uid  # the lowest free one, reused
    # Another process holds the next one, then dies without a word: its uid is free again.
    script = (
        "import time\n"
        "from pathlib import Path\n"
        "from openassistants.code_interpreter.identity import lease_uid\n"
        f"print(lease_uid(Path({str(tmp_path)!r})).uid, flush=True)\n"
        "time.sleep(600)"
    )
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) as holder:
        assert holder.stdout is not None
        held = int(holder.stdout.readline())
        assert held not in (again.uid, second.uid)
        holder.kill()
    reclaimed = identity.lease_uid(tmp_path)
    assert reclaimed.uid == held
    for lease in (second, again, reclaimed):
        lease.release()


async def test_the_limits_in_force_are_logged_at_start_up(
    manager_factory: ManagerFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="openassistants.code_interpreter")
    async with manager_factory(code_interpreter_cgroup=str(tmp_path)):
        pass
    [line] = [r for r in caplog.records if "code interpreter limits" in r.getMessage()]
    assert line.levelno == logging.WARNING  # a cgroup was asked for and is not there
    assert (
        f"per process (code_interpreter_cgroup: {tmp_path} is not a cgroup v2 directory" in line.getMessage()
    )
    [quota] = [r.getMessage() for r in caplog.records if "/mnt/data" in r.getMessage()]
    if os.geteuid() == 0:
        assert quota == "code interpreter /mnt/data: a 1024 MiB tmpfs per kernel"


def _delegated_cgroup(name: str) -> Path | None:
    """A fresh cgroup v2 directory with memory and pids enabled for its children, where this host
    (cgroup v2 mounted at /sys/fs/cgroup, run as root) allows one."""
    top = Path("/sys/fs/cgroup")
    try:
        available = (top / "cgroup.subtree_control").read_text().split()
    except OSError:
        return None
    if os.geteuid() != 0 or not {"memory", "pids"} <= set(available):
        return None
    path = top / name
    path.mkdir()
    (path / "cgroup.subtree_control").write_text("+memory +pids")
    return path


async def test_with_a_delegated_cgroup_a_kernels_processes_share_one_memory_limit(
    manager_factory: ManagerFactory, request: pytest.FixtureRequest
) -> None:
    delegated = _delegated_cgroup(f"openassistants-test-{os.getpid()}")
    if delegated is None:
        pytest.skip("this host has no cgroup v2 with memory and pids to delegate (cgroup v1 here)")
    # Four children of 200 MB each: within each process's 512 MiB, but not within the kernel's.
    code = (
        "import subprocess, sys\n"
        "hold = 'x = bytearray(200_000_000)\\nimport time\\ntime.sleep(5)'\n"
        "children = [subprocess.Popen([sys.executable, '-c', hold]) for _ in range(4)]\n"
        "print(sorted(child.wait() for child in children))"
    )
    try:
        async with manager_factory(code_interpreter_cgroup=str(delegated), code_interpreter_data_mb=1) as ci:
            result = await ci.execute(session_name(request), code)
    finally:
        delegated.rmdir()
    assert -9 in eval(result.logs)  # the kernel's memory.max took at least one


async def test_between_calls_a_kernel_is_stopped_so_its_threads_use_no_cpu(
    manager_factory: ManagerFactory, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    spin = "import threading\ncount = 0\ndef spin():\n    global count\n    while True:\n        count += 1\n"
    async with manager_factory() as ci:
        started = await ci.execute(session_name(request), spin + "threading.Thread(target=spin).start()")
        assert started.error is None
        bwraps = sandbox_processes(tmp_path)  # bwrap, and its child, the kernel's init
        [driver] = [child for children in bwraps.values() for child in children if child not in bwraps]
        state = Path(f"/proc/{driver}/stat").read_text().rsplit(")", 1)[1].split()[0]
        assert state == "T"  # stopped: the spinning thread too
        resumed = await ci.execute(session_name(request), "count > 0")
        assert resumed.logs == "True" and not resumed.restarted


def test_the_probe_names_the_problem_in_one_line(tmp_path: Path) -> None:
    missing = sandbox_problem(Settings(code_interpreter_bwrap=str(tmp_path / "bwrap")))
    assert missing == (
        f"bubblewrap ({tmp_path / 'bwrap'}) is not on PATH: install it (apt-get install bubblewrap) or set "
        f"OPENASSISTANTS_CODE_INTERPRETER_BWRAP to its path, or set "
        f"OPENASSISTANTS_CODE_INTERPRETER_UNSAFE_NO_SANDBOX=true where every user is trusted"
    )
    failing = sandbox_problem(Settings(code_interpreter_bwrap="false"))  # runs, and fails
    assert failing is not None and "\n" not in failing
    assert failing.startswith("bubblewrap (") and "cannot create a sandbox here (exit 1" in failing
