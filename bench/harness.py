"""What every benchmark needs: servers in their own processes, the load generator, a scratch database.

Everything binds and connects to 127.0.0.1 only; every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

import asyncpg
import httpx

from bench.loadgen import LoadResult, LoadSpec

HOST = "127.0.0.1"
POSTGRES_ADMIN_DSN = f"postgresql://{HOST}:5432/test"
RESULTS_DIR = Path(__file__).parent / "results"
STARTUP_DEADLINE_S = 30.0
SHUTDOWN_DEADLINE_S = 15.0
# The generator's own deadline (loadgen.STALL_TIMEOUT_S) fires first; this one only catches a hang.
LOADGEN_GRACE_S = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def openassistants_command(port: int, data_dir: Path) -> list[str]:
    """The real CLI from this venv, as an operator would start it."""
    script = Path(sys.executable).parent / "openassistants"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "openassistants"]
    return [*command, "serve", "--host", HOST, "--port", str(port), "--data-dir", str(data_dir)]


def server_env(**settings: str) -> dict[str, str]:
    """This process's environment without any OPENASSISTANTS_* setting, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENASSISTANTS_")}
    env.update({f"OPENASSISTANTS_{k.upper()}": v for k, v in settings.items()})
    return env


class Server:
    """A server process we started; stopped (SIGINT, then SIGKILL) by its own pid only."""

    def __init__(self, command: list[str], env: Mapping[str, str], port: int, log: IO[bytes]) -> None:
        self.log_path = Path(log.name)
        self.port = port
        self.url = f"http://{HOST}:{port}"
        self.started_at = time.perf_counter()
        self.process = subprocess.Popen(
            command, env=dict(env), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )

    def wait_healthy(self, path: str) -> float:
        """Poll ``path`` until it answers 200; returns seconds since the process was spawned."""
        deadline = self.started_at + STARTUP_DEADLINE_S
        with httpx.Client(timeout=2.0) as client:
            while time.perf_counter() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"server exited with {self.process.returncode} before answering:\n{self.log_tail()}"
                    )
                try:
                    if client.get(self.url + path).status_code == 200:
                        return time.perf_counter() - self.started_at
                except httpx.TransportError:
                    pass
                time.sleep(0.005)
        raise RuntimeError(f"server did not answer {path} within {STARTUP_DEADLINE_S} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=SHUTDOWN_DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=SHUTDOWN_DEADLINE_S)


@contextmanager
def running(
    command: list[str], env: Mapping[str, str], port: int, log_path: Path, health: str
) -> Iterator[Server]:
    with log_path.open("ab") as log:
        server = Server(command, env, port, log)
        try:
            server.wait_healthy(health)
            yield server
        finally:
            server.stop()


def run_load(spec: LoadSpec) -> LoadResult:
    """Run ``spec`` in a fresh generator process and return what it measured."""
    limit = LOADGEN_GRACE_S + (spec.warmup_s + spec.duration_s if spec.count is None else 600.0)
    done = subprocess.run(
        [sys.executable, "-m", "bench.loadgen"],
        input=json.dumps(asdict(spec)),
        capture_output=True,
        text=True,
        timeout=limit,
        check=False,
        cwd=Path(__file__).parent.parent,
    )
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{done.stderr[-3000:]}")
    return LoadResult(**json.loads(done.stdout))


async def _admin(sql: str) -> Any:
    conn = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=5)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


def postgres_version() -> str | None:
    """The server's version string, or None (saying why on stderr) when PostgreSQL does not answer."""
    try:
        return str(asyncio.run(_admin("SHOW server_version")))
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"PostgreSQL at {POSTGRES_ADMIN_DSN}: {exc!r}", file=sys.stderr)
        return None


def postgres_analyze(url: str) -> None:
    """Gather the planner's statistics now, as autovacuum would within a minute of a bulk insert."""

    async def run() -> None:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"), timeout=5)
        try:
            await conn.execute("ANALYZE")
        finally:
            await conn.close()

    asyncio.run(run())


@contextmanager
def postgres_database() -> Iterator[str]:
    """A scratch database, dropped afterwards; yields its SQLAlchemy URL."""
    name = f"oa_bench_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+asyncpg://{HOST}:5432/{name}"
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "sqlite": sqlite3.sqlite_version,
        "postgres": postgres_version(),
    }


def save_results(name: str, results: Mapping[str, Any]) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2))
    return path
