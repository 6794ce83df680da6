"""Does building a long thread's prompt stall other requests? (issue 14, finding 11)

One server (SQLite, its own process, as ``openassistants serve`` runs) and the scripted model
(bench/runs_stream.py's, its own process). Through the API: an assistant, a small thread of 20
messages, and a big thread, which then gets ``--messages`` messages in bulk (rows copied from one the
API made, straight into the database: 50,000 API calls would take longer than the measurement).

Two phases of ``--seconds`` each, one client listing the small thread's messages back to back:
``baseline``, nothing else going on; ``during``, while another client starts runs on the big thread
one after another (each builds the prompt from the big thread, then streams the model's reply).
Reported: the list's p50 / p99 / max in each phase and their ratios. With ``--before REF`` the same
is measured first for the package as of REF (the old prompt building), in the same invocation.

    python -m bench.prompt_stall [--messages 50000] [--seconds 20] [--before REF]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench import harness
from bench.harness import free_port, machine, openassistants_command, running, save_results, server_env
from bench.runs_stream import export_source, percentile

SMALL_THREAD_MESSAGES = 20
LIST_PATH = "/v1/threads/{thread}/messages?limit=20"


def _bulk_messages(db_path: Path, thread_id: str, count: int) -> None:
    """``count`` copies of the thread's one message, each with its own id and text."""
    connection = sqlite3.connect(db_path, timeout=60)
    try:
        connection.row_factory = sqlite3.Row
        template = dict(
            connection.execute("SELECT * FROM messages WHERE thread_id = ?", (thread_id,)).fetchone()
        )
        del template["seq"]
        columns = list(template)
        rows = []
        for n in range(count):
            text = f"message {n}: the quick brown fox jumps over the lazy dog, then rests a while."
            content = [{"type": "text", "text": {"value": text, "annotations": []}}]
            row = {**template, "id": f"msg_bulk{uuid.uuid4().hex[:20]}", "content": json.dumps(content)}
            rows.append(tuple(row[c] for c in columns))
        placeholders = ", ".join("?" for _ in columns)
        with connection:
            connection.executemany(
                f"INSERT INTO messages ({', '.join(columns)}) VALUES ({placeholders})", rows
            )
    finally:
        connection.close()


async def _list_latencies(http: httpx.AsyncClient, path: str, seconds: float) -> list[float]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        response = await http.get(path)
        latencies.append(time.perf_counter() - started)
        response.raise_for_status()
    return latencies


async def _runs(http: httpx.AsyncClient, thread: str, assistant: str, stop: asyncio.Event) -> int:
    """Runs on the big thread, one after another, until ``stop``; returns how many completed."""
    completed = 0
    while not stop.is_set():
        run = (await http.post(f"/v1/threads/{thread}/runs", json={"assistant_id": assistant})).json()
        while run["status"] in ("queued", "in_progress"):
            await asyncio.sleep(0.05)  # the SDK's poll helper, without the SDK
            run = (await http.get(f"/v1/threads/{thread}/runs/{run['id']}")).json()
        if run["status"] != "completed":
            raise RuntimeError(f"run ended {run['status']}: {run.get('last_error')}")
        completed += 1
    return completed


def _summary(latencies: list[float]) -> dict[str, float]:
    return {
        "requests": len(latencies),
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": max(latencies) * 1000,
    }


async def _measure(url: str, data_dir: Path, messages: int, seconds: float) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        assistant = (await http.post("/v1/assistants", json={"model": "bench"})).json()["id"]
        small = (
            await http.post(
                "/v1/threads",
                json={
                    "messages": [{"role": "user", "content": f"m{n}"} for n in range(SMALL_THREAD_MESSAGES)]
                },
            )
        ).json()["id"]
        big = (await http.post("/v1/threads", json={"messages": [{"role": "user", "content": "hi"}]})).json()[
            "id"
        ]
        bulk_started = time.perf_counter()
        _bulk_messages(data_dir / "openassistants.db", big, messages)
        bulk_seconds = time.perf_counter() - bulk_started
        path = LIST_PATH.format(thread=small)
        await _list_latencies(http, path, 1.0)  # warm-up
        baseline = await _list_latencies(http, path, seconds)
        stop = asyncio.Event()
        runner = asyncio.create_task(_runs(http, big, assistant, stop))
        during = await _list_latencies(http, path, seconds)
        stop.set()
        runs = await runner
    result = {
        "baseline": _summary(baseline),
        "during": _summary(during),
        "runs": runs,
        "bulk_s": bulk_seconds,
    }
    for key in ("p50_ms", "p99_ms", "max_ms"):
        result[f"{key}_ratio"] = result["during"][key] / result["baseline"][key]
    return result


def _measure_version(
    source: Path | None, upstream_url: str, work: Path, opts: argparse.Namespace
) -> dict[str, Any]:
    data_dir = work / f"data-{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = server_env(llm_base_url=f"{upstream_url}/v1", access_log="false", log_level="warning")
    if source is not None:
        env["PYTHONPATH"] = str(source)  # ahead of the venv's editable install
    with running(
        openassistants_command(port, data_dir), env, port, work / f"serve-{port}.log", "/readyz"
    ) as server:
        return asyncio.run(_measure(server.url, data_dir, opts.messages, opts.seconds))


def render(results: dict[str, Any]) -> str:
    lines = [
        "| version | phase | list requests | p50 | p99 | max | runs completed |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, r in results["versions"].items():
        for phase in ("baseline", "during"):
            s = r[phase]
            runs = str(r["runs"]) if phase == "during" else "-"
            lines.append(
                f"| {label} | {phase} | {s['requests']} | {s['p50_ms']:.1f} ms | {s['p99_ms']:.1f} ms | "
                f"{s['max_ms']:.0f} ms | {runs} |"
            )
        lines.append(
            f"| {label} | during / baseline | | {r['p50_ms_ratio']:.2f}x | {r['p99_ms_ratio']:.2f}x | "
            f"{r['max_ms_ratio']:.2f}x | |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--before", help="also measure the package as of this git ref, first")
    opts = parser.parse_args(argv)
    # A busy machine (this one's load is often 10+ on 2 cores) takes longer than usual to start a server.
    harness.STARTUP_DEADLINE_S = max(harness.STARTUP_DEADLINE_S, 120.0)
    results: dict[str, Any] = {"machine": machine(), "load_before": os.getloadavg(), "options": vars(opts)}
    with tempfile.TemporaryDirectory(prefix="bench-prompt-stall-") as tmp:
        work = Path(tmp)
        upstream_port = free_port()
        upstream_command = [sys.executable, "-m", "bench.runs_stream", "--serve-upstream", str(upstream_port)]
        with running(
            upstream_command, server_env(), upstream_port, work / "upstream.log", "/v1/models"
        ) as up:
            versions: list[tuple[str, Path | None]] = []
            if opts.before:
                commit, source = export_source(opts.before, work)
                subprocess.run(
                    [sys.executable, "-m", "compileall", "-q", str(source)], check=True, timeout=300
                )
                versions.append((f"before ({commit[:7]})", source))
            versions.append(("after (working tree)", None))
            results["versions"] = {
                label: _measure_version(src, up.url, work, opts) for label, src in versions
            }
    results["load_after"] = os.getloadavg()
    print(render(results))
    print(f"load average before / after: {results['load_before']} / {results['load_after']}")
    print(f"saved to {save_results('prompt_stall', results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
