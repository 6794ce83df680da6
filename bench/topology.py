"""The scale-out topology for benchmarks and the load test: a fresh PostgreSQL database, the scripted
model, API processes (``openassistants serve`` with runs not executed there) and ``openassistants
worker`` processes, each its own OS process; plus their CPU time and what they logged.

Nothing here imports the server package: the processes run whatever source they are pointed at (the
working tree, or a commit exported with ``export_source``), and this process stays a light client.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx

T = TypeVar("T")

HOST = "127.0.0.1"
API_KEY = "sk-bench-load"
MODEL = "bench-load-model"
POSTGRES_ADMIN_DSN = f"postgresql://{HOST}:5432/test"
REPO = Path(__file__).resolve().parent.parent
#: Processes must answer (workers: say they execute runs) within this.
STARTUP_DEADLINE_S = 60.0
#: SIGTERM, then SIGKILL after this.
SHUTDOWN_DEADLINE_S = 20.0
#: Lines every start-up logs (alembic's plugin set-up, migrations, the worker's greeting).
STARTUP_CHATTER = ("setup plugin", "Context impl", "Will assume", "Running upgrade", "worker ")


@dataclass(frozen=True)
class ReplySpec:
    """What the scripted model answers every request: ``chunks``, each after ``delay`` seconds, the
    first after ``first_delay`` more. Its own time to the first content chunk is ``first_chunk_s``."""

    chunks: tuple[str, ...] = tuple(f"w{n} " for n in range(8))
    delay: float = 0.01
    first_delay: float = 0.0

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    @property
    def first_chunk_s(self) -> float:
        return self.first_delay + self.delay

    def to_json(self) -> str:
        return json.dumps({"chunks": list(self.chunks), "delay": self.delay, "first_delay": self.first_delay})

    @classmethod
    def from_json(cls, raw: str) -> ReplySpec:
        data = json.loads(raw)
        return cls(tuple(data["chunks"]), data["delay"], data["first_delay"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def process_env(source: Path | None = None, **settings: str) -> dict[str, str]:
    """This environment without any OPENASSISTANTS_* leaking in, plus ``settings``; with ``source``,
    that copy of the package ahead of the venv's editable install (a .pth entry, after PYTHONPATH)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENASSISTANTS_")}
    env.update({f"OPENASSISTANTS_{k.upper()}": v for k, v in settings.items()})
    if source is not None:
        env["PYTHONPATH"] = str(source)
    return env


class Process:
    """A process we started; killed or stopped by its own pid only."""

    def __init__(self, name: str, args: list[str], env: Mapping[str, str], log: Path) -> None:
        self.name, self.args, self.env, self.log = name, args, dict(env), log
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                [sys.executable, *self.args],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=REPO,
            )

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def is_ready(self) -> bool:
        return True

    def wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_DEADLINE_S
        while time.monotonic() < deadline:
            if not self.alive:
                raise RuntimeError(f"{self.name} exited; see {self.log}:\n{self.log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError, OSError):
                if self.is_ready():
                    return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} was not ready within {STARTUP_DEADLINE_S:g} s; see {self.log}")

    def kill(self) -> None:
        """kill -9: no goodbye, no cleanup."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait()

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=SHUTDOWN_DEADLINE_S)
            except subprocess.TimeoutExpired:
                self.kill()


class ApiProcess(Process):
    def __init__(self, name: str, env: Mapping[str, str], data_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        args = ["-m", "openassistants", "serve", "--host", HOST, "--port", str(self.port)]
        super().__init__(name, [*args, "--data-dir", str(data_dir)], env, data_dir / "serve.log")

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def is_ready(self) -> bool:
        return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200


class WorkerProcess(Process):
    def __init__(self, name: str, env: Mapping[str, str], log_dir: Path) -> None:
        super().__init__(name, ["-m", "openassistants", "worker"], env, log_dir / f"{name}.log")

    def is_ready(self) -> bool:
        """A worker has no HTTP endpoint: it is ready once it logs that it executes runs."""
        return "executing runs" in self.log.read_text(errors="replace")


class UpstreamProcess(Process):
    """The scripted model (tests/upstream.py) answering ``reply`` to every request."""

    def __init__(self, env: Mapping[str, str], log_dir: Path, reply: ReplySpec) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}/v1"
        args = ["-m", "bench.topology", str(self.port), reply.to_json()]
        super().__init__("upstream", args, env, log_dir / "upstream.log")

    def is_ready(self) -> bool:
        return httpx.get(f"{self.url}/models", timeout=1).status_code == 200


def serve_upstream(port: int, reply: ReplySpec) -> None:
    import uvicorn

    from tests.upstream import Reply, ScriptedUpstream

    upstream = ScriptedUpstream()
    upstream.default = Reply(
        reply.text, chunks=list(reply.chunks), delay=reply.delay, first_delay=reply.first_delay
    )
    uvicorn.run(
        upstream.app,
        host=HOST,
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        backlog=4096,
    )


# --- a scratch database ---------------------------------------------------------------------------


def _run(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Runs a coroutine to completion from sync code, even while the caller's own loop is running."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


async def _admin(sql: str) -> Any:
    conn = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=10)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


async def connect(dsn: str, within: float = 30.0) -> Any:
    """An asyncpg connection, waiting up to ``within`` seconds for a free slot on a busy server."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await asyncpg.connect(dsn, timeout=10)
        except asyncpg.TooManyConnectionsError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


def postgres_version() -> str | None:
    """The server's version, or None when PostgreSQL is not reachable."""
    try:
        return str(_run(lambda: _admin("SHOW server_version")))
    except (OSError, asyncpg.PostgresError):
        return None


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh database, dropped afterwards; yields its SQLAlchemy URL."""
    name = f"oa_load_{uuid.uuid4().hex[:12]}"
    _run(lambda: _admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+asyncpg://{HOST}:5432/{name}"
    finally:
        _run(lambda: _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def export_source(ref: str, into: Path) -> tuple[str, Path]:
    """``src`` as of git ``ref``, unpacked under ``into``: (its commit, the directory to import from)."""
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--verify", f"{ref}^{{commit}}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", commit, "src"], capture_output=True, check=True, timeout=60
    ).stdout
    target = into / f"src-{commit[:12]}"
    target.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True, timeout=60)
    return commit, target / "src"


# --- the topology ---------------------------------------------------------------------------------


@dataclass
class Topology:
    apis: list[ApiProcess]
    workers: list[WorkerProcess]
    upstream: UpstreamProcess
    database_url: str
    log_dir: Path
    env: dict[str, str]
    reply: ReplySpec

    @property
    def dsn(self) -> str:
        return self.database_url.replace("postgresql+asyncpg://", "postgresql://")

    def add_worker(self) -> WorkerProcess:
        worker = WorkerProcess(f"worker{len(self.workers)}", self.env, self.log_dir)
        self.workers.append(worker)
        worker.start()
        worker.wait_ready()
        return worker

    def pids(self) -> dict[str, int]:
        processes = [*self.apis, *self.workers, self.upstream]
        return {p.name: p.pid for p in processes if p.alive}


@contextmanager
def topology(
    apis: int = 2,
    workers: int = 1,
    reply: ReplySpec | None = None,
    settings: Mapping[str, str] | None = None,
    source: Path | None = None,
    log_dir: Path | None = None,
) -> Iterator[Topology]:
    """A fresh database, the scripted model answering ``reply``, ``apis`` API processes and ``workers``
    workers, with extra ``settings`` (e.g. ``{"run_lease_seconds": "3"}``), running ``source`` (default:
    the installed package); all started at once, all stopped afterwards. Logs go to ``log_dir`` (a
    temporary directory, removed afterwards, when not given)."""
    reply = reply or ReplySpec()
    owned = log_dir is None
    logs = log_dir or Path(tempfile.mkdtemp(prefix="oa-topology-"))
    try:
        with postgres_database() as database_url:
            upstream = UpstreamProcess(process_env(source), logs, reply)
            env = process_env(
                source,
                database_url=database_url,
                api_keys=API_KEY,
                llm_base_url=upstream.url,
                **(settings or {}),
            )
            api_env = {**env, "OPENASSISTANTS_EXECUTE_RUNS": "false"}
            servers = [ApiProcess(f"api{n}", api_env, logs / f"api{n}") for n in range(apis)]
            pool = [WorkerProcess(f"worker{n}", env, logs) for n in range(workers)]
            topo = Topology(servers, pool, upstream, database_url, logs, env, reply)
            try:
                # All at once: migrations are serialized by an advisory lock, the rest is independent.
                for process in [upstream, *servers, *pool]:
                    process.start()
                for process in [upstream, *servers, *pool]:
                    process.wait_ready()
                yield topo
            finally:
                for process in [*topo.apis, *topo.workers, upstream]:
                    process.stop()
    finally:
        if owned:
            shutil.rmtree(logs, ignore_errors=True)


def log_problems(topo: Topology) -> list[str]:
    """What the server processes logged besides access-log lines and start-up chatter: tracebacks (as
    their last line, the exception) and warnings."""
    problems: list[str] = []
    for path in sorted(topo.log_dir.rglob("*.log")):
        if path.name == "upstream.log":
            continue
        in_traceback = False
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("Traceback"):
                in_traceback = True
            elif in_traceback and not line.startswith((" ", "\t")):
                in_traceback = not line.strip() or line.startswith(("During handling", "The above"))
                if not in_traceback:
                    problems.append(f"{path.stem}: {line[:300]}")
            elif not in_traceback and not line.startswith(("{", "INFO", *STARTUP_CHATTER)):
                problems.append(f"{path.stem}: {line[:300]}")
    return problems


# --- CPU time ---------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _backends(database: str) -> dict[str, int]:
    """PostgreSQL's processes serving ``database`` ("postgres: 15/main: user db host(port) ...")."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                words = (entry / "cmdline").read_bytes().decode(errors="replace").split()
                if words[:1] == ["postgres:"] and database in words:
                    found[f"backend {entry.name}"] = int(entry.name)
    return found


def cpu_snapshot(pids: Mapping[str, int], database: str | None = None) -> dict[str, float]:
    """CPU seconds so far of each named process, of this one ("load generator"), and of each
    PostgreSQL backend serving ``database``."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    named = {**pids, **(_backends(database) if database else {})}
    snapshot = {name: cpu_seconds(pid) for name, pid in named.items()}
    snapshot["load generator"] = usage.ru_utime + usage.ru_stime
    return snapshot


def cpu_used(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """CPU seconds between two snapshots; the database's backends summed as "postgres" (a backend
    that exited in between is missing)."""
    used: dict[str, float] = {}
    for name, seconds in after.items():
        key = "postgres" if name.startswith("backend ") else name
        used[key] = used.get(key, 0.0) + seconds - before.get(name, 0.0)
    return {name: round(seconds, 1) for name, seconds in sorted(used.items())}


if __name__ == "__main__":  # the scripted model's process: python -m bench.topology PORT REPLY_JSON
    serve_upstream(int(sys.argv[1]), ReplySpec.from_json(sys.argv[2]))
