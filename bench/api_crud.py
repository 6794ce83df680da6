"""Issue 2: what the CRUD API costs per request, next to a bare FastAPI "hello", and time to start.

In one run, on each backend (SQLite, then PostgreSQL when reachable): ``assistants.retrieve``,
``messages.list(limit=20)`` on a thread of 10,000 messages, and ``messages.create`` on it, each as
requests/s and p50/p99 latency, and as a ratio to ``GET /hello`` of a bare FastAPI app under the same
uvicorn settings (``bench.hello_server``), measured by the same generator (``bench.loadgen``, its own
process, 16 keep-alive connections). The real server runs as ``openassistants serve`` with API keys
and its default access log (to a file). Both servers stay up; hello is measured right before every
operation and once more at the end, and each operation is compared with the mean of the two hello
runs around it, so that a change in the machine's background load hits both sides of a ratio alike.
Also: seconds from spawning ``openassistants serve`` to the first 200 from ``/healthz``, on a fresh
and on an existing database.

    python -m bench.api_crud [--duration 6] [--warmup 1.5] [--connections 16] [--backends sqlite,postgres]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

import openassistants
from bench import harness
from bench.loadgen import DEFAULT_CONNECTIONS, LoadResult, LoadSpec

#: Throughput of each operation as a fraction of the hello baseline's (issue 2), enforced on SQLite.
TARGETS = {"assistants.retrieve": 0.50, "messages.list": 0.25, "messages.create": 0.25}
STARTUP_TARGET_S = 1.5
API_KEY = "sk-bench-tenant"
THREAD_MESSAGES = 10_000
# CreateThreadRequest takes at most 1,000 messages; the rest go through messages.create.
INITIAL_MESSAGES = 1_000
MESSAGE_TEXT = (
    "Summarise the attached quarterly report in three bullet points, then list the open questions "
    "you would raise with the finance team before the board meeting next week."
)
AUTH_HEADERS = {"authorization": f"Bearer {API_KEY}", "openai-beta": "assistants=v2"}
BACKEND_NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}


@dataclass
class Options:
    connections: int
    warmup_s: float
    duration_s: float
    startup_runs: int
    backends: list[str]


@dataclass
class Measured:
    """One operation and the hello runs just before and just after it."""

    result: LoadResult
    hello_before: LoadResult
    hello_after: LoadResult

    @property
    def hello_rps(self) -> float:
        return (self.hello_before.rps + self.hello_after.rps) / 2

    @property
    def ratio(self) -> float:
        return self.result.rps / self.hello_rps if self.hello_rps else 0.0


@contextmanager
def database(backend: str) -> Iterator[str | None]:
    """None for SQLite (the default under --data-dir), else a scratch PostgreSQL database's URL."""
    if backend == "sqlite":
        yield None
    else:
        with harness.postgres_database() as url:
            yield url


def oa_env(database_url: str | None) -> dict[str, str]:
    settings = {"api_keys": API_KEY}
    if database_url is not None:
        settings["database_url"] = database_url
    return harness.server_env(**settings)


def load(opts: Options, port: int, path: str, **kw: Any) -> LoadSpec:
    return LoadSpec(
        port=port,
        path=path,
        method=kw.get("method", "GET"),
        body=kw.get("body"),
        headers=kw.get("headers", AUTH_HEADERS),
        connections=opts.connections,
        warmup_s=opts.warmup_s,
        duration_s=opts.duration_s,
    )


def seed(url: str, opts: Options, port: int) -> tuple[str, str, LoadResult]:
    """An assistant, and a thread holding THREAD_MESSAGES messages, all made through the API.

    Also returns the timing of the messages.create calls that filled the thread.
    """
    with httpx.Client(base_url=url + "/v1", headers=AUTH_HEADERS, timeout=60) as client:
        assistant = client.post(
            "/assistants",
            json={
                "model": "gpt-4o",
                "name": "Finance helper",
                "instructions": "You answer questions about the attached reports. " * 8,
                "tools": [{"type": "code_interpreter"}, {"type": "file_search"}],
                "metadata": {"team": "finance", "env": "bench"},
            },
        )
        assistant.raise_for_status()
        first = [{"role": "user", "content": MESSAGE_TEXT}] * INITIAL_MESSAGES
        thread = client.post("/threads", json={"messages": first})
        thread.raise_for_status()
    thread_id: str = thread.json()["id"]
    rest = LoadSpec(
        port=port,
        path=f"/v1/threads/{thread_id}/messages",
        method="POST",
        body=json.dumps({"role": "user", "content": MESSAGE_TEXT}),
        headers=AUTH_HEADERS,
        connections=opts.connections,
        count=THREAD_MESSAGES - INITIAL_MESSAGES,
    )
    seeded = harness.run_load(rest)
    if seeded.errors:
        raise RuntimeError(f"seeding failed: {seeded.error_sample}")
    return assistant.json()["id"], thread_id, seeded


def measure_backend(
    backend: str, opts: Options, work: Path, hello: LoadSpec
) -> tuple[dict[str, Measured], LoadResult]:
    port = harness.free_port()
    with database(backend) as url:
        command = harness.openassistants_command(port, work / f"data-{backend}")
        log = work / f"server-{backend}.log"
        with harness.running(command, oa_env(url), port, log, "/healthz") as server:
            assistant_id, thread_id, seeding = seed(server.url, opts, port)
            if url is not None:
                # A fresh table has no statistics: until autovacuum's next pass (within a minute), the
                # planner sorts the whole thread for each page instead of walking the index backwards.
                harness.postgres_analyze(url)
            messages = f"/v1/threads/{thread_id}/messages"
            body = json.dumps({"role": "user", "content": MESSAGE_TEXT})
            # list before create, so that the listed thread holds exactly THREAD_MESSAGES messages.
            specs = {
                "assistants.retrieve": load(opts, port, f"/v1/assistants/{assistant_id}"),
                "messages.list": load(opts, port, messages + "?limit=20"),
                "messages.create": load(opts, port, messages, method="POST", body=body),
            }
            measured: dict[str, Measured] = {}
            before = harness.run_load(hello)
            for name, spec in specs.items():
                result = harness.run_load(spec)
                after = harness.run_load(hello)
                measured[name] = Measured(result, before, after)
                before = after
            return measured, seeding


def time_to_healthy(work: Path, data_dir: Path, database_url: str | None) -> float:
    port = harness.free_port()
    command = harness.openassistants_command(port, data_dir)
    with (work / "startup.log").open("ab") as log:
        server = harness.Server(command, oa_env(database_url), port, log)
        try:
            return server.wait_healthy("/healthz")
        finally:
            server.stop()


def compile_bytecode() -> None:
    """Writes the package's bytecode, as ``pip install`` does; an editable checkout run with
    PYTHONDONTWRITEBYTECODE (as this machine's shells are) would otherwise compile every module from
    source at every start, about 0.1 s of CPU."""
    compileall.compile_dir(Path(openassistants.__file__).parent, quiet=1)


def measure_startup(backend: str, opts: Options, work: Path) -> dict[str, list[float]]:
    """Seconds from spawn to the first healthy answer: on an empty database, and on a migrated one."""
    compile_bytecode()
    fresh: list[float] = []
    for i in range(opts.startup_runs):
        with database(backend) as url:
            fresh.append(time_to_healthy(work, work / f"startup-{backend}-fresh-{i}", url))
    existing: list[float] = []
    with database(backend) as url:
        data_dir = work / f"startup-{backend}-existing"
        time_to_healthy(work, data_dir, url)  # creates and migrates it; not counted
        for _ in range(opts.startup_runs):
            existing.append(time_to_healthy(work, data_dir, url))
    return {"fresh": fresh, "existing": existing}


def render(results: dict[str, Any]) -> str:
    """The Markdown tables for docs/benchmarks.md."""
    opts = results["options"]
    hello_rps = [h["rps"] for ops in results["backends"].values() for m in ops.values() for h in m["hellos"]]
    hello_p50 = [
        h["p50_ms"] for ops in results["backends"].values() for m in ops.values() for h in m["hellos"]
    ]
    hello_p99 = [
        h["p99_ms"] for ops in results["backends"].values() for m in ops.values() for h in m["hellos"]
    ]
    lines = [
        f"{opts['connections']} connections; each row {opts['warmup_s']:g} s warm-up, then "
        f'{opts["duration_s"]:g} s measured. "vs hello" divides by the mean of the hello runs just '
        "before and just after that row.",
        "",
        "| operation | backend | req/s | p50 ms | p99 ms | vs hello | target | result |",
        "|---|---|---:|---:|---:|---:|---:|---|",
        f"| hello (bare FastAPI), median of {len(hello_rps)} runs | - | "
        f"{statistics.median(hello_rps):,.0f} ({min(hello_rps):,.0f} to {max(hello_rps):,.0f}) | "
        f"{statistics.median(hello_p50):.2f} | {statistics.median(hello_p99):.2f} | 100% | | |",
    ]
    for backend, ops in results["backends"].items():
        for name, target in TARGETS.items():
            m = ops[name]
            r = m["result"]
            enforced = backend == "sqlite"
            verdict = ("PASS" if m["ratio"] >= target else "FAIL") if enforced else "(reported)"
            label = name + ("(limit=20)" if name == "messages.list" else "")
            lines.append(
                f"| {label} | {BACKEND_NAMES[backend]} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | "
                f"{r['p99_ms']:.2f} | {m['ratio']:.1%} | ≥ {target:.0%} | {verdict} |"
            )
    seeding = ", ".join(
        f"{BACKEND_NAMES[b]} {r['rps']:,.0f} req/s (p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms)"
        for b, r in results["seeding"].items()
    )
    lines += [
        "",
        f"Filling the thread (messages.create {THREAD_MESSAGES - INITIAL_MESSAGES:,} times, from "
        f"{INITIAL_MESSAGES:,} to {THREAD_MESSAGES:,} messages, no warm-up): {seeding}.",
        "",
        f"Time from spawning `openassistants serve` to the first 200 from `/healthz` "
        f"({opts['startup_runs']} runs each):",
        "",
        "| backend | database | median s | min s | max s | target | result |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for backend, runs in results["startup"].items():
        for kind, seconds in runs.items():
            if not seconds:  # --startup-runs 0
                continue
            median = statistics.median(seconds)
            lines.append(
                f"| {BACKEND_NAMES[backend]} | {kind} | {median:.2f} | {min(seconds):.2f} "
                f"| {max(seconds):.2f} | < {STARTUP_TARGET_S:g} s | "
                f"{'PASS' if median < STARTUP_TARGET_S else 'FAIL'} |"
            )
    if errors := failed_requests(results):
        lines += ["", f"**{errors} requests failed during measurement; the figures are not valid.**"]
    return "\n".join(lines)


def failed_requests(results: dict[str, Any]) -> int:
    measured = [
        r for ops in results["backends"].values() for m in ops.values() for r in (m["result"], *m["hellos"])
    ]
    return sum(r["errors"] for r in measured)


def parse_options(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--connections", type=int, default=DEFAULT_CONNECTIONS)
    parser.add_argument("--warmup", type=float, default=1.5, help="seconds of warm-up per measurement")
    parser.add_argument("--duration", type=float, default=6.0, help="seconds measured per measurement")
    parser.add_argument("--startup-runs", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgres")
    args = parser.parse_args(argv)
    backends = [b for b in args.backends.split(",") if b]
    if unknown := set(backends) - set(BACKEND_NAMES):
        parser.error(f"unknown backends: {', '.join(sorted(unknown))}")
    return Options(args.connections, args.warmup, args.duration, args.startup_runs, backends)


def main(argv: list[str] | None = None) -> int:
    opts = parse_options(argv)
    started = time.time()
    machine = harness.machine()
    load_before = os.getloadavg()
    if "postgres" in opts.backends and machine["postgres"] is None:
        print("PostgreSQL is not usable; measuring SQLite only.", file=sys.stderr)
        opts.backends = [b for b in opts.backends if b != "postgres"]
    with tempfile.TemporaryDirectory(prefix="oa-bench-") as tmp:
        work = Path(tmp)
        port = harness.free_port()
        command = [sys.executable, "-m", "bench.hello_server", "--port", str(port)]
        with harness.running(command, harness.server_env(), port, work / "hello.log", "/hello"):
            hello = load(opts, port, "/hello", headers={})
            backends = {b: measure_backend(b, opts, work, hello) for b in opts.backends}
        startup = {b: measure_startup(b, opts, work) for b in opts.backends}
    results: dict[str, Any] = {
        "benchmark": "api_crud",
        "date": time.strftime("%Y-%m-%d %H:%M %Z", time.localtime(started)),
        "seconds": round(time.time() - started, 1),
        "machine": {**machine, "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "options": asdict(opts),
        "backends": {
            b: {
                name: {
                    "result": asdict(m.result),
                    "hellos": [asdict(m.hello_before), asdict(m.hello_after)],
                    "ratio": round(m.ratio, 4),
                }
                for name, m in ops.items()
            }
            for b, (ops, _) in backends.items()
        },
        "seeding": {b: asdict(seeding) for b, (_, seeding) in backends.items()},
        "startup": startup,
    }
    path = harness.save_results("api_crud", results)
    print(render(results))
    print(f"\nMachine: {json.dumps(results['machine'])}\nRaw results: {path} ({results['seconds']} s)")
    if max(load_before) > 1.0:
        print(
            f"Warning: the machine was busy before the run (load average {load_before[0]:.1f}); "
            "other processes compete with the servers and the generator for its cores.",
            file=sys.stderr,
        )
    return 1 if failed_requests(results) else 0


if __name__ == "__main__":
    sys.exit(main())
