"""Issue 17: what a response adds on top of the model, beside what a run adds, measured in one run.

The processes and the scripted model are bench/runs_stream.py's (every reply REPLY_CHUNKS chunks,
CHUNK_DELAY_S apart); so are the measures of the runs and of the model called directly. On each
backend, interleaved on ``Options.lanes`` lanes (the order rotated each cycle):

1. time to first token: ``client.responses.stream`` (first ``response.output_text.delta``), against
   ``client.beta.threads.runs.stream`` (first ``thread.message.delta``) and
   ``client.chat.completions.create(stream=True)`` on the upstream itself (first content chunk);
2. a background response's wall time, ``responses.create(background=True)`` then ``retrieve`` every
   POLL_INTERVAL_S until it is done, against the same reply not streamed from the upstream.

    python -m bench.responses_stream [--quick] [--backends sqlite,postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Awaitable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import openai

from bench import harness
from bench.harness import free_port, openassistants_command, save_results, server_env
from bench.runs_stream import (
    API_KEY,
    BACKEND_NAMES,
    MODEL,
    REPLY,
    SAMPLE_TIMEOUT_S,
    USER_TEXT,
    Clients,
    CpuMeter,
    Sample,
    create_threads,
    database,
    in_lanes,
    open_clients,
    running,
    sdk_direct,
    sdk_through,
    summary_ms,
    wait_until_quiet,
)

#: The background response is polled as often as an SDK user would: ``retrieve`` every 50 ms.
POLL_INTERVAL_S = 0.05
TERMINAL = {"completed", "failed", "incomplete", "cancelled"}


@dataclass
class Options:
    #: Phase 1: cycles of (responses.stream, runs.stream, direct).
    cycles: int = 40
    #: Phase 2: cycles of (background + poll, direct not streamed).
    poll_cycles: int = 20
    lanes: int = 2
    backends: list[str] = field(default_factory=lambda: ["sqlite", "postgres"])


QUICK = Options(cycles=10, poll_cycles=6)


async def responses_stream(client: openai.AsyncOpenAI) -> Sample:
    """``responses.stream`` as an SDK user writes it: first_token at the first text delta."""
    sample = Sample()
    started = time.perf_counter()
    async with asyncio.timeout(SAMPLE_TIMEOUT_S):
        async with client.responses.stream(model=MODEL, input=USER_TEXT) as stream:
            async for event in stream:
                if event.type == "response.output_text.delta" and "first_token" not in sample.marks:
                    sample.marks["first_token"] = time.perf_counter() - started
            final = await stream.get_final_response()
    sample.marks["end"] = time.perf_counter() - started
    if final.status != "completed" or final.output_text != "".join(REPLY):
        sample.error = f"response {final.status}"
    return sample


async def background_polled(client: openai.AsyncOpenAI) -> Sample:
    sample = Sample()
    started = time.perf_counter()
    async with asyncio.timeout(SAMPLE_TIMEOUT_S):
        response = await client.responses.create(model=MODEL, input=USER_TEXT, background=True)
        sample.marks["created"] = time.perf_counter() - started
        while response.status not in TERMINAL:
            await asyncio.sleep(POLL_INTERVAL_S)
            response = await client.responses.retrieve(response.id)
    sample.marks["end"] = time.perf_counter() - started
    if response.status != "completed" or response.output_text != "".join(REPLY):
        sample.error = f"response {response.status}"
    return sample


def _summaries(samples: dict[str, list[Sample]], marks: list[str]) -> dict[str, Any]:
    return {
        kind: {
            "errors": sum(1 for s in taken if s.error),
            **{m: summary_ms([s.marks[m] for s in taken if not s.error and m in s.marks]) for m in marks},
        }
        for kind, taken in samples.items()
    }


async def measure_server(c: Clients, opts: Options) -> dict[str, Any]:
    # Warm-up, not counted: the tokenizer, the pools, the first of each path.
    warm = await create_threads(c.http, 2)
    for thread_id in warm:
        await sdk_through(c.server, c.raw.assistant_id, thread_id)
        await responses_stream(c.server)
        await background_polled(c.server)
    threads = await create_threads(c.http, opts.cycles)

    def ttft(kind: str, cycle: int) -> Awaitable[Sample]:
        if kind == "responses_stream":
            return responses_stream(c.server)
        if kind == "runs_stream":
            return sdk_through(c.server, c.raw.assistant_id, threads[cycle])
        return sdk_direct(c.direct)

    def polled(kind: str, cycle: int) -> Awaitable[Sample]:
        if kind == "background":
            return background_polled(c.server)
        return sdk_direct(c.direct, stream=False)

    first = await in_lanes(["responses_stream", "runs_stream", "direct"], opts.cycles, opts.lanes, ttft)
    second = await in_lanes(["background", "direct_whole"], opts.poll_cycles, opts.lanes, polled)
    return {"ttft": _summaries(first, ["first_token", "end"]), "poll": _summaries(second, ["end"])}


def run_backend(backend: str, opts: Options, upstream: Any, work: Path) -> dict[str, Any]:
    port = free_port()
    with database(backend) as database_url:
        settings = {"api_keys": API_KEY, "llm_base_url": f"{upstream.url}/v1"}
        if database_url is not None:
            settings["database_url"] = database_url
        log = work / f"server-{backend}.log"
        command = openassistants_command(port, work / f"data-{backend}")
        with running(command, server_env(**settings), port, log, "/healthz") as server:
            own = [os.getpid(), upstream.process.pid, server.process.pid]
            name = database_url.rsplit("/", 1)[1] if database_url else None
            others_before = wait_until_quiet(own, name)
            meter = CpuMeter(own, name)

            async def measure() -> dict[str, Any]:
                clients = await open_clients(server, upstream)
                try:
                    return await measure_server(clients, opts)
                finally:
                    await clients.aclose()

            result = asyncio.run(measure())
            result["cpu"] = meter.read() | {"others_share_before": others_before}
            result["load_average"] = os.getloadavg()
    return result


def render(results: dict[str, Any]) -> str:
    lines: list[str] = []
    for backend, r in results["backends"].items():
        t, p = r["ttft"], r["poll"]
        direct = t["direct"]["first_token"]
        lines += [
            f"**{BACKEND_NAMES[backend]}**",
            "",
            "| measurement | n | p50 | p99 | added p50 / p99 (minus direct) |",
            "|---|---:|---:|---:|---|",
        ]
        for kind, label in [
            ("direct", "TTFT direct, SDK `chat.completions.create(stream=True)`, ms"),
            ("responses_stream", "TTFT through, SDK `responses.stream`, ms"),
            ("runs_stream", "TTFT through, SDK `beta.threads.runs.stream`, ms"),
        ]:
            s = t[kind]["first_token"]
            added = (
                "" if kind == "direct" else f"{s['p50'] - direct['p50']:.1f} / {s['p99'] - direct['p99']:.1f}"
            )
            lines.append(f"| {label} | {s['n']} | {s['p50']:.1f} | {s['p99']:.1f} | {added} |")
        whole, bg = p["direct_whole"]["end"], p["background"]["end"]
        ratio = f"÷ direct: {bg['p50'] / whole['p50']:.3f} / {bg['p99'] / whole['p99']:.3f}"
        lines += [
            f"| wall, direct not streamed, ms | {whole['n']} | {whole['p50']:.0f} | {whole['p99']:.0f} | |",
            f"| wall, background create → poll (every {POLL_INTERVAL_S * 1000:.0f} ms) → done, ms "
            f"| {bg['n']} | {bg['p50']:.0f} | {bg['p99']:.0f} | {ratio} |",
            "",
        ]
        errors = sum(s["errors"] for phase in (t, p) for s in phase.values())
        cpu = r["cpu"]
        share = cpu["other_cpu_s"] / (cpu["seconds"] * (os.cpu_count() or 1))
        lines.append(
            f"Errors: {errors}. Other processes used {cpu['other_cpu_s']:.0f} CPU-s in these "
            f"{cpu['seconds']:.0f} s ({share:.0%} of the cores; load average "
            f"{r['load_average'][0]:.1f} at the end), the benchmark's own {cpu['own_cpu_s']:.0f} CPU-s."
        )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    parser.add_argument("--backends", default="sqlite,postgres")
    args = parser.parse_args(argv)
    opts = QUICK if args.quick else Options()
    opts.backends = [b for b in args.backends.split(",") if b]
    # The SDK marks the Assistants API deprecated; the runs are measured beside the responses.
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    started = time.time()
    machine = harness.machine()
    if "postgres" in opts.backends and machine["postgres"] is None:
        opts.backends = [b for b in opts.backends if b != "postgres"]
    with tempfile.TemporaryDirectory(prefix="oa-bench-responses-") as tmp:
        work = Path(tmp)
        port = free_port()
        command = [sys.executable, "-m", "bench.runs_stream", "--serve-upstream", str(port)]
        with running(command, server_env(), port, work / "upstream.log", "/v1/models") as up:
            backends = {b: run_backend(b, opts, up, work) for b in opts.backends}
    results = {
        "benchmark": "responses_stream",
        "date": time.strftime("%Y-%m-%d %H:%M %Z", time.localtime(started)),
        "seconds": round(time.time() - started, 1),
        "machine": machine,
        "options": asdict(opts),
        "backends": backends,
    }
    path = save_results("responses_stream", results)
    print(render(results))
    print(f"\nMachine: {json.dumps(machine)}\nRaw results: {path} ({results['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
