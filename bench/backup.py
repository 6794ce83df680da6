"""Backup and restore of the embedded default: time and size for a data directory of 10,000 messages
and 100 files, against a plain ``cp -r`` of the same directory measured in the same run.

The data directory is built through the API (a real server process), which keeps running, idle, while
each copy is taken: ``cp -r`` (the baseline: the bytes moved, with no consistency at all), the
``openassistants backup`` command (Python's start-up included) and ``storage.backup.backup`` called
in-process; then ``openassistants restore`` into a fresh directory. Each is repeated and the median
reported. ``python -m bench.backup`` (about 3 minutes on a loaded 2-core machine).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.harness import free_port, machine, openassistants_command, running, save_results, server_env
from openassistants.storage.backup import backup

THREADS = 100
MESSAGES_PER_THREAD = 100
FILES = 100
FILE_BYTES = 256 * 1024
CONCURRENCY = 16
REPEATS = 3
KEY = "sk-bench-backup"


async def build(base: str) -> None:
    """10,000 messages in 100 threads, and 100 files, through the API."""
    headers = {"Authorization": f"Bearer {KEY}", "OpenAI-Beta": "assistants=v2"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
        gate = asyncio.Semaphore(CONCURRENCY)

        async def post(path: str, **kwargs: Any) -> dict[str, Any]:
            async with gate:
                response = await client.post(path, **kwargs)
                response.raise_for_status()
                return dict(response.json())

        threads = await asyncio.gather(*(post("/threads", json={}) for _ in range(THREADS)))

        async def fill(thread_id: str) -> None:
            for n in range(MESSAGES_PER_THREAD):
                text = f"message {n} of {thread_id}: " + "lorem ipsum dolor sit amet " * 8
                await post(f"/threads/{thread_id}/messages", json={"role": "user", "content": text})

        await asyncio.gather(*(fill(t["id"]) for t in threads))
        await asyncio.gather(
            *(
                post(
                    "/files",
                    data={"purpose": "assistants"},
                    files={"file": (f"f{n}.bin", os.urandom(FILE_BYTES))},
                )
                for n in range(FILES)
            )
        )


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def timed(action: Any) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> int:
    scratch = Path(tempfile.mkdtemp(prefix="bench-backup-"))
    data = scratch / "data"
    script = Path(sys.executable).parent / "openassistants"
    cli = [str(script)] if script.exists() else [sys.executable, "-m", "openassistants"]
    port = free_port()
    # No warm kernels: the data directory then holds only the database and the files (no kernels/).
    env = server_env(api_keys=KEY, access_log="false", code_interpreter_pool_size="0")
    results: dict[str, Any] = {"machine": machine(), "load_before": os.getloadavg()}
    try:
        with running(openassistants_command(port, data), env, port, scratch / "serve.log", "/healthz"):
            results["build_s"] = timed(lambda: asyncio.run(build(f"http://127.0.0.1:{port}/v1")))
            # While the server runs: the WAL is still there (a stopped server checkpoints and removes it).
            results["live_bytes"] = {
                p.name: du(p) if p.is_dir() else p.stat().st_size for p in data.iterdir()
            }
            samples: dict[str, list[float]] = {"cp": [], "backup_command": [], "backup_in_process": []}
            for n in range(REPEATS):
                target = scratch / f"cp-{n}"
                samples["cp"].append(
                    timed(lambda t=target: subprocess.run(["cp", "-r", str(data), str(t)], check=True))
                )
                target = scratch / f"command-{n}"
                samples["backup_command"].append(
                    timed(
                        lambda t=target: subprocess.run(
                            [*cli, "backup", str(t), "--data-dir", str(data)],
                            env=env,
                            check=True,
                            capture_output=True,
                        )
                    )
                )
                target = scratch / f"inproc-{n}"
                samples["backup_in_process"].append(timed(lambda t=target: backup(data, t)))
        restores = []
        for n in range(REPEATS):
            fresh = scratch / f"restored-{n}"
            restores.append(
                timed(
                    lambda f=fresh: subprocess.run(
                        [*cli, "restore", str(scratch / "command-0"), "--data-dir", str(f)],
                        env=env,
                        check=True,
                        capture_output=True,
                    )
                )
            )
        results["seconds"] = {name: statistics.median(values) for name, values in samples.items()}
        results["seconds"]["restore_command"] = statistics.median(restores)
        results["samples"] = {**samples, "restore_command": restores}
        results["bytes"] = {
            "data_dir": du(data),
            "cp": du(scratch / "cp-0"),
            "backup": du(scratch / "command-0"),
            "database_in_data_dir": sum(
                du(p) if p.is_dir() else p.stat().st_size for p in data.glob("openassistants.db*")
            ),
            "database_in_backup": (scratch / "command-0" / "openassistants.db").stat().st_size,
        }
        results["load_after"] = os.getloadavg()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    cp = results["seconds"]["cp"]
    for name, seconds in results["seconds"].items():
        print(f"{name}: {seconds:.2f} s (x{seconds / cp:.2f} of cp -r)")
    for name, size in results["bytes"].items():
        print(f"{name}: {size / 1e6:.1f} MB")
    print(f"built in {results['build_s']:.0f} s; load {results['load_before']} -> {results['load_after']}")
    print(f"results: {save_results('backup', results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
