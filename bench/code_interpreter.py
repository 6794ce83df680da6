"""Issue 6: the code interpreter's sandboxed kernels, as a library (no server, no model).

- first-output latency of ``print(1)`` in a new session: cold (no warm pool: bubblewrap and Python
  start for the call) and warm (a pool kernel with numpy, pandas and matplotlib imported is handed
  out), and on a session's later calls; p50 and p99 over ``--runs`` sessions each;
- ``--sessions`` sessions at once, each running a short numpy computation: first calls (kernels
  started for them, pool of 2) and then second calls (kernels live): calls/s, and the peak memory
  of this process plus every kernel process (sum of RSS, sampled every 20 ms).

    python -m bench.code_interpreter [--runs 20] [--sessions 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from openassistants.code_interpreter import CellResult, KernelManager
from openassistants.config import Settings

RESULTS_DIR = Path(__file__).parent / "results"
WARM_P50_TARGET_MS = 50.0
COLD_P50_TARGET_MS = 500.0
COMPUTATION = (
    "import numpy as np\n"
    "rng = np.random.default_rng({seed})\n"
    "matrix = rng.random((200, 200))\n"
    "print(round(float(np.linalg.svd(matrix, compute_uv=False)[0]), 3))"
)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summary(latencies_s: list[float]) -> dict[str, float]:
    ms = [value * 1000 for value in latencies_s]
    return {"p50_ms": round(statistics.median(ms), 1), "p99_ms": round(percentile(ms, 0.99), 1)}


def tree_rss_bytes(root_pid: int) -> int:
    """RSS of a process and all its descendants (kernels: bwrap, its init, the driver and children)."""
    total, pending = 0, [root_pid]
    while pending:
        pid = pending.pop()
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
            for task in Path(f"/proc/{pid}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total


async def timed(call: Awaitable[CellResult]) -> float:
    """Seconds until ``call`` (a coroutine not yet started) returns; a failed call is an error."""
    started = time.perf_counter()
    result = await call
    if result.error:
        raise RuntimeError(f"the call failed: {result.logs}")
    return time.perf_counter() - started


async def first_output_latency(work: Path, runs: int) -> dict[str, Any]:
    cold = KernelManager(Settings(code_interpreter_pool_size=0), work / "cold")
    await cold.start()
    try:
        cold_s = [await timed(cold.execute(f"bench:cold-{i}", "print(1)")) for i in range(runs)]
    finally:
        await cold.close()
    # A pool as large as the runs, and no room for refills: every first call finds a warm kernel, and
    # no pool kernel is being started (importing numpy, pandas, matplotlib) while one is measured.
    warm = KernelManager(
        Settings(code_interpreter_pool_size=runs, code_interpreter_max_kernels=runs),
        work / "warm",
    )
    started = time.perf_counter()
    await warm.start()
    pool_fill_s = time.perf_counter() - started
    try:
        warm_s = [await timed(warm.execute(f"bench:warm-{i}", "print(1)")) for i in range(runs)]
        again_s = [await timed(warm.execute("bench:warm-0", "print(1)")) for _ in range(runs)]
    finally:
        await warm.close()
    return {
        "cold_first_call": summary(cold_s),
        "warm_first_call": summary(warm_s),
        "later_call": summary(again_s),
        "pool_fill_s": round(pool_fill_s, 1),
        "pool_kernels": runs,
    }


async def concurrent_sessions(work: Path, sessions: int) -> dict[str, Any]:
    manager = KernelManager(Settings(code_interpreter_pool_size=2), work / "concurrent")
    await manager.start()
    peak = tree_rss_bytes(os.getpid())
    sampling = True

    async def sample() -> None:
        nonlocal peak
        while sampling:
            peak = max(peak, tree_rss_bytes(os.getpid()))
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())
    rounds = {}
    try:
        for label in ("first_calls", "second_calls"):
            started = time.perf_counter()
            latencies = await asyncio.gather(
                *(
                    timed(manager.execute(f"bench:concurrent-{i}", COMPUTATION.format(seed=i)))
                    for i in range(sessions)
                )
            )
            wall = time.perf_counter() - started
            rounds[label] = {
                "wall_s": round(wall, 2),
                "calls_per_s": round(sessions / wall, 1),
                **summary(list(latencies)),
            }
    finally:
        sampling = False
        await sampler
        await manager.close()
    return {"sessions": sessions, **rounds, "peak_rss_mb": round(peak / 2**20)}


async def run(runs: int, sessions: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="oa-bench-ci-") as scratch:
        probe = KernelManager(Settings(), Path(scratch) / "probe")
        if not probe.sandboxed:
            raise SystemExit(f"no sandbox here: {probe.unavailable_reason}")
        latency = await first_output_latency(Path(scratch), runs)
        concurrency = await concurrent_sessions(Path(scratch), sessions)
    return {"latency": latency, "concurrency": concurrency}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--sessions", type=int, default=20)
    options = parser.parse_args()
    results = asyncio.run(run(options.runs, options.sessions))
    results["machine"] = {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_1m": round(os.getloadavg()[0], 1),
    }
    latency = results["latency"]
    results["verdict"] = {
        "warm_p50_within_50ms": latency["warm_first_call"]["p50_ms"] <= WARM_P50_TARGET_MS,
        "cold_p50_within_500ms": latency["cold_first_call"]["p50_ms"] <= COLD_P50_TARGET_MS,
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"code_interpreter-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    print(f"results: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
