"""Real server and worker processes (``python -m openassistants …``), for tests that kill, restart
or multiply them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.servers import free_port


def process_env(**settings: str) -> dict[str, str]:
    """This environment without any OPENASSISTANTS_* leaking in, plus the given settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENASSISTANTS_")}
    env.update({f"OPENASSISTANTS_{k.upper()}": v for k, v in settings.items()})
    return env


class Process:
    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args, self.env, self.log = args, env, log
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "openassistants", *self.args],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def kill(self) -> None:
        """kill -9: no goodbye, no cleanup."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait()

    def stop(self, timeout: float = 20) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()


class ServerProcess(Process):
    def __init__(self, data_dir: Path, env: dict[str, str], port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        data_dir.mkdir(parents=True, exist_ok=True)
        args = ["serve", "--port", str(self.port), "--data-dir", str(data_dir)]
        super().__init__(args, env, data_dir / f"serve-{self.port}.log")

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def start(self) -> None:
        super().start()
        self.wait_healthy()

    def wait_healthy(self, within: float = 30) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            assert self.popen is not None
            if self.popen.poll() is not None:
                raise RuntimeError(f"server exited; see {self.log}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("server did not become healthy")


class WorkerProcess(Process):
    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        super().__init__(["worker"], env, data_dir / f"worker-{time.monotonic_ns()}.log")

    def start(self) -> None:
        super().start()
        self.wait_ready()

    def wait_ready(self, within: float = 60) -> None:
        """A worker serves no HTTP: it is ready once it logs that it executes runs."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            assert self.popen is not None
            if self.popen.poll() is not None:
                raise RuntimeError(f"worker exited; see {self.log}:\n{self.log.read_text()[-3000:]}")
            if self.log.exists() and "executing runs" in self.log.read_text(errors="replace"):
                return
            time.sleep(0.05)
        raise RuntimeError("worker did not become ready")


@contextmanager
def running(*processes: Process) -> Iterator[None]:
    try:
        for process in processes:
            process.start()
        yield
    finally:
        for process in processes:
            process.stop()
