"""Issue 4: the scale-out benchmark on PostgreSQL.

1. Mixed workload (``bench/load_mixed.py``: threads, messages, streamed / polled / resumed runs,
   read-backs) with ``Options.users`` users for ``Options.mixed_s`` on 1 API + 1 worker, 2 API + 1
   worker, 1 API + 2 workers and 2 API + 2 workers, each on a fresh database after a short warm-up:
   requests/s, runs/s, p50/p99 latency, and the ratios against 1 + 1. The verdict of the load
   (no 5xx, nothing lost, no run stuck) is checked in every configuration.
2. Concurrent streaming runs per worker (1 API + 1 worker): for each of ``Options.ramp_levels``, that
   many lanes each keep one streaming run open (the next starts when the last ends); added TTFT is the time
   to the first ``thread.message.delta`` minus the scripted reply's own first-chunk delay. The answer
   is the largest level whose p99 added TTFT is at most TTFT_BUDGET_MS, with no failed stream.
3. Takeover: with OPENASSISTANTS_RUN_LEASE_SECONDS at 15 (the default) and 3, kill -9 the worker
   executing a streaming run while a second worker lives, and time kill -> the run reaches a
   terminal status (``failed``, server_error: the design settles a dead worker's run, it does not
   resume it) and kill -> the open stream receives that event.

Every process runs on its own: the scripted model, each API process, each worker, and this one,
which generates the load. They share the machine's cores (2 where this was first run), so these are
figures of one machine, not of a cluster.

    python -m bench.scale_out [--quick] [--git-ref HEAD]

It exits non-zero only when it could not measure; violations and missed targets are in its report.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.load_mixed import LoadConfig, Target, percentile, run_mixed_load
from bench.topology import (
    API_KEY,
    MODEL,
    ReplySpec,
    Topology,
    connect,
    export_source,
    log_problems,
    postgres_version,
    topology,
)

HOST = "127.0.0.1"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
AUTH = {"authorization": f"Bearer {API_KEY}", "openai-beta": "assistants=v2"}

#: (API processes, workers) of the mixed workload.
CONFIGS = ((1, 1), (2, 1), (1, 2), (2, 2))
TTFT_BUDGET_MS = 250.0
#: A stream (or a thread creation) must end within this; a stalled server fails the level, never hangs it.
STREAM_TIMEOUT_S = 60.0
#: Replies of the streaming ramp: 40 chunks 50 ms apart, the first after 200 ms (+50 ms).
RAMP_REPLY = ReplySpec(tuple(f"t{n:02d} " for n in range(40)), delay=0.05, first_delay=0.2)
#: The takeover's run: long enough to still be streaming when its worker is killed.
TAKEOVER_REPLY = ReplySpec(tuple(f"k{n:03d} " for n in range(400)), delay=0.05)
#: How often the run's status is polled after the kill.
TAKEOVER_POLL_S = 0.05
TAKEOVER_DEADLINE_S = 90.0
#: OPENASSISTANTS_RUN_LEASE_SECONDS when unset.
DEFAULT_LEASE_S = 15.0


@dataclass
class Options:
    #: Few enough that 2 API + 2 workers stay within PostgreSQL's 100 connections on a shared server.
    users: int = 16
    mixed_s: float = 25.0
    warmup_s: float = 3.0
    #: Ascending; the ramp stops after the first level over the budget.
    ramp_levels: tuple[int, ...] = (1, 10, 25, 50, 100, 200, 400, 800)
    ramp_window_s: float = 10.0
    #: lease seconds -> trials
    takeover: dict[float, int] = field(default_factory=lambda: {15.0: 2, 3.0: 3})


QUICK = Options(
    users=12, mixed_s=10.0, warmup_s=2.0, ramp_levels=(25, 50), ramp_window_s=5.0, takeover={3.0: 1}
)


# --- 1. mixed workload ----------------------------------------------------------------------------


def measure_mixed(opts: Options, apis: int, workers: int, source: Path | None) -> dict[str, Any]:
    with topology(apis, workers, source=source) as topo:
        target = Target.of(topo)
        warm = LoadConfig(users=opts.users, duration_s=opts.warmup_s, seed=1, verify=False)
        asyncio.run(run_mixed_load(target, warm))
        load_before = os.getloadavg()[0]
        config = LoadConfig(users=opts.users, duration_s=opts.mixed_s, seed=2)
        result = asyncio.run(run_mixed_load(target, config, topo.pids()))
        result["loadavg_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
        result["server_log_problems"] = log_problems(topo)[:20]
    result["apis"], result["workers"] = apis, workers
    return result


# --- 2. concurrent streams per worker -------------------------------------------------------------


class RawStream(asyncio.Protocol):
    """One request on its own connection (``connection: close``), its response read as bytes until the
    server closes it, noting when each marker first appears: cheap enough per event that hundreds of
    streams measure the servers rather than this client."""

    def __init__(self, markers: dict[bytes, str], started: float) -> None:
        self.markers = markers
        self.started = started
        self.marks: dict[str, float] = {}
        self.status = 0
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._carry = b""
        self._keep = max(len(m) for m in markers)
        self._head = b""

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter() - self.started
        if not self.status:
            self._head += data
            if b"\r\n\r\n" not in self._head:
                return
            self.status = int(self._head.split(b" ", 2)[1])
            data, self._head = self._head, b""
        data = self._carry + data
        for marker, name in self.markers.items():
            if name not in self.marks and marker in data:
                self.marks[name] = now
        self._carry = data[-self._keep :]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ended.done():
            self.ended.set_result(None)


RUN_MARKERS = {
    b"event: thread.run.created": "created",
    b"event: thread.run.in_progress": "in_progress",
    b"event: thread.message.delta": "first_token",
    b"event: thread.run.completed": "completed",
    b"event: thread.run.failed": "failed",
    b"event: error": "failed",
    b"event: done": "done",
}
DIRECT_MARKERS = {b'"delta":{"content":"': "first_token", b"data: [DONE]": "done"}


def post_request(port: int, path: str, body: dict[str, Any], headers: dict[str, str]) -> bytes:
    payload = json.dumps(body).encode()
    lines = [f"POST {path} HTTP/1.1", f"host: {HOST}:{port}", "connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines += ["content-type: application/json", f"content-length: {len(payload)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


async def raw_stream(
    port: int, request: bytes, markers: dict[bytes, str]
) -> tuple[dict[str, float], str | None]:
    """Send ``request``, read its stream to the end: (seconds to each marker, error or None)."""
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    stream = RawStream(markers, started)
    transport: asyncio.BaseTransport | None = None
    error = None
    try:
        async with asyncio.timeout(STREAM_TIMEOUT_S):
            transport, _ = await loop.create_connection(lambda: stream, HOST, port)
            transport.write(request)
            await stream.ended
    except TimeoutError:
        error = f"no end within {STREAM_TIMEOUT_S:g} s (saw {sorted(stream.marks)})"
    except OSError as exc:
        error = f"{type(exc).__name__}: {exc}"
    finally:
        if transport is not None:
            transport.close()
    if error is None and (stream.status != 200 or "failed" in stream.marks or "done" not in stream.marks):
        error = f"HTTP {stream.status}, saw {sorted(stream.marks)}"
    if error is None and "first_token" not in stream.marks:
        error = "no delta"
    return stream.marks, error


async def ramp_level(topo: Topology, assistant_id: str, level: int, window_s: float) -> dict[str, Any]:
    """``level`` lanes, each keeping one streaming run open, for a ramp-in and ``window_s``; TTFT of
    the runs started inside the window."""
    api = topo.apis[0]
    reply = topo.reply
    lifetime = reply.first_delay + reply.delay * len(reply.chunks)
    began = time.monotonic()
    window_start = began + lifetime + 0.5
    window_end = window_start + window_s
    ttfts: list[float] = []
    phases: dict[str, list[float]] = {"created": [], "in_progress": []}
    direct: list[float] = []
    errors: list[str] = []
    runs = 0
    limits = httpx.Limits(max_connections=level + 10, max_keepalive_connections=level + 10)
    async with httpx.AsyncClient(
        base_url=api.base_url, headers=AUTH, timeout=STREAM_TIMEOUT_S, limits=limits
    ) as http:

        async def lane(number: int) -> None:
            nonlocal runs
            await asyncio.sleep(lifetime * number / level)  # spread the starts over one reply
            while time.monotonic() < window_end:
                response = await http.post("/threads", json={"messages": [{"role": "user", "content": "go"}]})
                if response.status_code != 200:
                    errors.append(f"create thread: {response.status_code}")
                    return
                thread_id = response.json()["id"]
                body = {"assistant_id": assistant_id, "stream": True}
                request = post_request(api.port, f"/v1/threads/{thread_id}/runs", body, AUTH)
                measured = time.monotonic() >= window_start
                marks, error = await raw_stream(api.port, request, RUN_MARKERS)
                runs += 1
                if not measured:
                    continue
                if error is not None:
                    errors.append(error)
                else:
                    ttfts.append(marks["first_token"] - reply.first_chunk_s)
                    for phase, values in phases.items():
                        values.append(marks.get(phase, float("nan")))

        async def probe_upstream() -> None:
            """The scripted model alone, now and then: how late it is itself under this load."""
            body = {"model": MODEL, "messages": [{"role": "user", "content": "go"}], "stream": True}
            request = post_request(topo.upstream.port, "/v1/chat/completions", body, {})
            await asyncio.sleep(window_start - time.monotonic())
            while time.monotonic() < window_end - lifetime:
                marks, error = await raw_stream(topo.upstream.port, request, DIRECT_MARKERS)
                if error is None:
                    direct.append(marks["first_token"] - reply.first_chunk_s)
                await asyncio.sleep(0.25)

        try:
            async with asyncio.timeout(window_end - began + STREAM_TIMEOUT_S * 2):
                outcomes = await asyncio.gather(
                    probe_upstream(), *(lane(n) for n in range(level)), return_exceptions=True
                )
        except TimeoutError:
            outcomes = [TimeoutError("level did not finish")]
        errors += [f"{type(o).__name__}: {o}" for o in outcomes if isinstance(o, BaseException)]
    ms = [t * 1000 for t in ttfts]
    direct_ms = [t * 1000 for t in direct]
    p99 = percentile(ms, 99)
    return {
        "level": level,
        "runs": runs,
        "measured": len(ms),
        "errors": len(errors),
        "error_samples": errors[:5],
        "added_ttft_ms": {
            "p50": round(percentile(ms, 50), 1),
            "p99": round(p99, 1),
            "max": round(max(ms), 1) if ms else None,
        },
        # Where the time goes: the run's first event (its creation) and its claim by the worker.
        "to_created_ms": summary(phases["created"]),
        "to_in_progress_ms": summary(phases["in_progress"]),
        "upstream_alone_added_ms": {
            "n": len(direct_ms),
            "p50": round(percentile(direct_ms, 50), 1),
            "p99": round(percentile(direct_ms, 99), 1),
        },
        "passes": bool(ms) and not errors and p99 <= TTFT_BUDGET_MS,
    }


def summary(seconds: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in seconds if v == v]  # without NaN (a mark not seen)
    return {"p50": round(percentile(ms, 50), 1), "p99": round(percentile(ms, 99), 1)}


async def _ramp(topo: Topology, opts: Options) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=topo.apis[0].base_url, headers=AUTH, timeout=30) as http:
        assistant_id = (await http.post("/assistants", json={"model": MODEL})).json()["id"]
    levels = []
    for level in opts.ramp_levels:
        result = await ramp_level(topo, assistant_id, level, opts.ramp_window_s)
        result["loadavg_1min"] = round(os.getloadavg()[0], 2)
        levels.append(result)
        print(f"  {level} streams: {result['added_ttft_ms']} errors {result['errors']}", flush=True)
        if not result["passes"]:
            break  # higher levels only get worse
    return levels


def measure_ramp(opts: Options, source: Path | None) -> dict[str, Any]:
    with topology(1, 1, reply=RAMP_REPLY, source=source) as topo:
        levels = asyncio.run(_ramp(topo, opts))
        problems = log_problems(topo)[:20]
    passing = [r["level"] for r in levels if r["passes"]]
    return {
        "reply": {
            "chunks": len(RAMP_REPLY.chunks),
            "delay_s": RAMP_REPLY.delay,
            "first_delay_s": RAMP_REPLY.first_delay,
        },
        "levels": levels,
        "max_streams_within_budget": max(passing) if passing else 0,
        "server_log_problems": problems,
    }


# --- 3. takeover of a dead worker's run -----------------------------------------------------------


async def one_takeover(topo: Topology, assistant_id: str) -> dict[str, Any]:
    """Start a streaming run, kill -9 the worker executing it, and time how long until it is settled."""
    api = topo.apis[0]
    async with httpx.AsyncClient(base_url=api.base_url, headers=AUTH, timeout=STREAM_TIMEOUT_S) as http:
        thread = (await http.post("/threads", json={"messages": [{"role": "user", "content": "go"}]})).json()
        path = f"/threads/{thread['id']}/runs"
        streaming = asyncio.Event()
        ended: dict[str, Any] = {}

        async def follow() -> None:
            async with http.stream(
                "POST", path, json={"assistant_id": assistant_id, "stream": True}
            ) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data: {") and "run_id" not in ended:
                        ended["run_id"] = json.loads(line[6:])["id"]
                    if line == "event: thread.message.delta":
                        streaming.set()
                    elif line.startswith("event: thread.run.") and line.split(".")[-1] in {
                        "failed",
                        "completed",
                    }:
                        ended["event_at"] = time.monotonic()
                        ended["event"] = line[7:]

        follower = asyncio.create_task(follow())
        async with asyncio.timeout(STREAM_TIMEOUT_S):
            await streaming.wait()
        run_id = ended["run_id"]
        conn = await connect(topo.dsn)
        try:
            holder = await conn.fetchval("SELECT worker_id FROM runs WHERE id = $1", run_id)
        finally:
            await conn.close()
        victim = next(w for w in topo.workers if w.popen is not None and f"-{w.pid}-" in holder)
        victim.kill()
        killed = time.monotonic()
        status, run = "in_progress", {}
        async with asyncio.timeout(TAKEOVER_DEADLINE_S):
            while status not in {"failed", "completed", "cancelled", "expired", "incomplete"}:
                await asyncio.sleep(TAKEOVER_POLL_S)
                run = (await http.get(f"{path}/{run_id}")).json()
                status = run["status"]
        settled = time.monotonic() - killed
        async with asyncio.timeout(STREAM_TIMEOUT_S):
            await follower
    return {
        "run_id": run_id,
        "worker_id": holder,
        "status": status,
        "last_error": run.get("last_error"),
        "settle_s": round(settled, 2),
        "stream_event": ended.get("event"),
        "stream_event_s": round(ended["event_at"] - killed, 2) if "event_at" in ended else None,
    }


async def _takeovers(topo: Topology, trials: int) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=topo.apis[0].base_url, headers=AUTH, timeout=30) as http:
        assistant_id = (await http.post("/assistants", json={"model": MODEL})).json()["id"]
    results = []
    for n in range(trials):
        result = await one_takeover(topo, assistant_id)
        print(f"  trial {n + 1}: {result['status']} after {result['settle_s']} s", flush=True)
        results.append(result)
        await asyncio.to_thread(topo.add_worker)  # two workers again for the next trial
    return results


def measure_takeover(lease: float, trials: int, source: Path | None) -> dict[str, Any]:
    settings = {} if lease == DEFAULT_LEASE_S else {"run_lease_seconds": str(lease)}
    with topology(1, 2, reply=TAKEOVER_REPLY, settings=settings, source=source) as topo:
        results = asyncio.run(_takeovers(topo, trials))
    settle = [r["settle_s"] for r in results]
    return {
        "lease_s": lease,
        "trials": results,
        "settle_s": {"min": min(settle), "mean": round(sum(settle) / len(settle), 2), "max": max(settle)},
        "all_failed_with_server_error": all(
            r["status"] == "failed" and (r["last_error"] or {}).get("code") == "server_error" for r in results
        ),
    }


# --- the whole benchmark --------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "postgres": postgres_version(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], capture_output=True, text=True, check=False, timeout=30)
    return done.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few seconds of each part, to try it out")
    parser.add_argument("--only", default="mixed,ramp,takeover", help="parts to run, comma-separated")
    parser.add_argument("--git-ref", help="serve src as of this commit (e.g. HEAD), not the working tree")
    args = parser.parse_args(argv)
    opts = QUICK if args.quick else Options()
    parts = set(args.only.split(","))
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="oa-scale-out-") as tmp:
        if args.git_ref:
            commit, source = export_source(args.git_ref, Path(tmp))
            served = {"commit": commit[:12], "working_tree_changes": False}
        else:
            source = None
            changed = bool(_git("status", "--porcelain", "--untracked-files=no", "src"))
            served = {"commit": _git("rev-parse", "--short=12", "HEAD"), "working_tree_changes": changed}
        results: dict[str, Any] = {
            "benchmark": "scale_out",
            "date": time.strftime("%Y-%m-%d %H:%M %Z", time.localtime(started)),
            "served": served,
            "machine": machine(),
            "options": asdict(opts),
        }
        if "mixed" in parts:
            results["mixed"] = []
            for apis, workers in CONFIGS:
                shape = f"{apis} API + {workers} worker(s), {opts.users} users, {opts.mixed_s:g} s"
                print(f"mixed workload: {shape}", flush=True)
                results["mixed"].append(measure_mixed(opts, apis, workers, source))
                print("  " + _mixed_line(results["mixed"][-1]), flush=True)
        if "ramp" in parts:
            print("concurrent streaming runs, 1 API + 1 worker", flush=True)
            results["ramp"] = measure_ramp(opts, source)
        if "takeover" in parts:
            results["takeover"] = []
            for lease, trials in opts.takeover.items():
                print(f"takeover, lease {lease:g} s", flush=True)
                results["takeover"].append(measure_takeover(lease, trials, source))
    results["seconds"] = round(time.time() - started, 1)
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"scale_out-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2))
    print()
    print(render(results))
    print(f"\nRaw results: {path} ({results['seconds']} s)")
    # A violation or a missed target is a finding, reported above; only failing to measure is an error.
    return 0


def _mixed_line(r: dict[str, Any]) -> str:
    return (
        f"{r['requests_per_s']} req/s, {r['runs_per_s']} runs/s, request p50/p99 "
        f"{r['request_latency_ms']['p50']}/{r['request_latency_ms']['p99']} ms, "
        f"verdict {'OK' if r['ok'] else r['violations']}"
    )


# --- the Markdown for docs/benchmarks.md ---------------------------------------------------------


def render(results: dict[str, Any]) -> str:
    m, served = results["machine"], results["served"]
    changes = " + working-tree changes" if served["working_tree_changes"] else ""
    lines = [
        f"Machine: {m['nproc']} cores ({m['cpu']}), Python {m['python']}, PostgreSQL {m['postgres']}, "
        f"load average at start {m['loadavg_at_start']}; {results['date']}, served commit "
        f"{served['commit']}{changes}.",
        "",
    ]
    if "mixed" in results:
        lines += render_mixed(results)
    if "ramp" in results:
        lines += render_ramp(results["ramp"])
    if "takeover" in results:
        lines += render_takeover(results["takeover"])
    return "\n".join(lines)


def _row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def render_mixed(results: dict[str, Any]) -> list[str]:
    opts = results["options"]
    base = results["mixed"][0]
    lines = [
        f"Mixed workload, {opts['users']} users, {opts['mixed_s']:g} s per configuration (after a "
        f"{opts['warmup_s']:g} s warm-up), fresh database each:",
        "",
        _row(
            "API + workers",
            "req/s",
            "runs/s",
            "request p50 / p99 ms",
            "run p50 / p99 ms",
            "stream TTFT p50 / p99 ms",
            "req/s vs 1+1",
            "runs/s vs 1+1",
            "PG connections peak: ours / all / max",
            "verdict",
        ),
        "|---" * 10 + "|",
    ]
    for r in results["mixed"]:
        req, run, ttft = r["request_latency_ms"], r["run_latency_ms"], r["ttft_stream_ms"]
        pg = r["postgres_connections_peak"]
        verdict = "OK" if r["ok"] else ", ".join(f"{k} {v}" for k, v in r["violations"].items())
        lines.append(
            _row(
                f"{r['apis']} + {r['workers']}",
                r["requests_per_s"],
                r["runs_per_s"],
                f"{req['p50']} / {req['p99']}",
                f"{run['p50']} / {run['p99']}",
                f"{ttft['p50']} / {ttft['p99']}",
                f"{r['requests_per_s'] / base['requests_per_s']:.2f}",
                f"{r['runs_per_s'] / base['runs_per_s']:.2f}",
                f"{pg['database']} / {pg['all']} / {pg['max_connections']}",
                verdict,
            )
        )
    lines += ["", "CPU seconds used during each measured window:", ""]
    names = sorted({name for r in results["mixed"] for name in r["cpu_seconds"]})
    lines += [_row("API + workers", *names), "|---" * (len(names) + 1) + "|"]
    for r in results["mixed"]:
        lines.append(_row(f"{r['apis']} + {r['workers']}", *(r["cpu_seconds"].get(n, "") for n in names)))
    return [*lines, ""]


def render_ramp(ramp: dict[str, Any]) -> list[str]:
    reply = ramp["reply"]
    first_ms = (reply["first_delay_s"] + reply["delay_s"]) * 1000
    lines = [
        f"Concurrent streaming runs, 1 API + 1 worker; each reply {reply['chunks']} chunks "
        f"{reply['delay_s'] * 1000:g} ms apart, the first {first_ms:g} ms after the request (subtracted: "
        "added TTFT is what the server adds):",
        "",
        _row(
            "concurrent streams",
            "runs measured",
            "added TTFT p50 / p99 / max ms",
            "to thread.run.created p50 / p99 ms",
            "to thread.run.in_progress p50 / p99 ms",
            "model alone, added p50 / p99 ms",
            "errors",
            "p99 ≤ 250 ms",
        ),
        "|---" * 8 + "|",
    ]
    for r in ramp["levels"]:
        t, d = r["added_ttft_ms"], r["upstream_alone_added_ms"]
        lines.append(
            _row(
                r["level"],
                r["measured"],
                f"{t['p50']} / {t['p99']} / {t['max']}",
                f"{r['to_created_ms']['p50']} / {r['to_created_ms']['p99']}",
                f"{r['to_in_progress_ms']['p50']} / {r['to_in_progress_ms']['p99']}",
                f"{d['p50']} / {d['p99']}",
                r["errors"],
                "yes" if r["passes"] else "no",
            )
        )
    return [*lines, "", f"Largest level within the budget: **{ramp['max_streams_within_budget']}**.", ""]


def render_takeover(takeovers: list[dict[str, Any]]) -> list[str]:
    lines = [
        "Time to settle a killed worker's streaming run (kill -9, a second worker alive):",
        "",
        _row(
            "lease s",
            "trials",
            "kill → terminal status s (min / mean / max)",
            "kill → event on the stream s",
            "outcome",
        ),
        "|---" * 5 + "|",
    ]
    for t in takeovers:
        s = t["settle_s"]
        stream = ", ".join(str(r["stream_event_s"]) for r in t["trials"])
        outcome = "failed, server_error" if t["all_failed_with_server_error"] else "UNEXPECTED"
        settle = f"{s['min']} / {s['mean']} / {s['max']}"
        lines.append(_row(f"{t['lease_s']:g}", len(t["trials"]), settle, stream, outcome))
    return [*lines, ""]


if __name__ == "__main__":
    sys.exit(main())
