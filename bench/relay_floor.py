"""The floor under issue 3's figure (3): what the thinnest possible Python relay adds to a burst.

Figure (3) of ``bench.runs_stream`` starts 500 streaming runs at once on one server process and
compares their time to first token with the same burst sent straight to the scripted model. Whatever
the server does, on one process it must at least serve each stream (as the model's own server does)
and be a client of the model for it. This measures exactly that and nothing else: a bare ASGI app on
the same stack as ``openassistants serve`` (uvicorn, uvloop, httptools, garbage collection settled
the same way), no framework, no database, no validation, no events, no access log, that forwards
each request to the scripted model with aiohttp (one session, unlimited pool) and relays every chunk
as it comes, under the SSE event names ``bench.runs_stream`` looks for. Its added time to first
token is a lower bound for any server that relays a model in one Python process on this machine.

Three processes as in ``bench.runs_stream``: the scripted model, the relay, this client. Rounds of
(burst straight to the model, then the same burst through the relay), alternating:

    python -m bench.relay_floor [--concurrent 500] [--rounds 3]

Issue 18's target is stated against this floor, measured in the same run: ``--beside BACKENDS`` also
starts ``openassistants serve`` (``--workers N`` processes) on each backend, and alternates bursts to
the relay and to the server (the order flipping every round), each against its own burst straight to
the model just before it. Reported per backend: p99 added TTFT of each (median of the rounds) and
their ratio, the server's CPU per run and peak RSS (summed over its processes), and the whole
machine's throughput (streams per second of each burst, the load average before and after):

    python -m bench.relay_floor --beside sqlite,postgres [--workers 2] [--concurrent 500] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from bench.harness import free_port, machine, openassistants_command, save_results, server_env
from bench.runs_stream import (
    API_KEY,
    BACKEND_NAMES,
    BURST_STREAM_TIMEOUT_S,
    CONCURRENT_P99_TARGET_MS,
    DIRECT_BODY,
    RUN_MARKERS,
    Options,
    RawTarget,
    Server,
    burst,
    database,
    http_request,
    measure_one_burst,
    open_clients,
    proc_cpu_seconds,
    raw_stream,
    running,
    serve_settled,
    summarize_burst,
    wait_until_quiet,
    warm_up,
)

DELTA = b"event: thread.message.delta\ndata: "
END = b"event: thread.run.completed\ndata: {}\n\nevent: done\ndata: [DONE]\n\n"


def relay_app(upstream: str) -> Any:
    """The bare relay: POST anything → the scripted model's chat completions, streamed back."""
    import aiohttp

    session: aiohttp.ClientSession | None = None
    body = json.dumps(DIRECT_BODY).encode()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal session
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            if session is not None:
                await session.close()
            await send({"type": "lifespan.shutdown.complete"})
            return
        while (await receive()).get("more_body"):
            pass
        if session is None:
            session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        async with session.post(
            f"{upstream}/v1/chat/completions", data=body, headers={"content-type": "application/json"}
        ) as response:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")],
                }
            )
            async for chunk in response.content.iter_any():
                await send({"type": "http.response.body", "body": DELTA + chunk, "more_body": True})
        await send({"type": "http.response.body", "body": END, "more_body": False})

    return app


async def relay_burst(target: RawTarget, relay_port: int, relay_pid: int, count: int) -> dict[str, Any]:
    """One burst straight to the model, then the same through the relay."""
    through_request = http_request(relay_port, "/relay", {}, {})

    def through(_: int) -> Any:
        expected = {"first_token", "run_completed", "done"}
        return raw_stream(relay_port, through_request, RUN_MARKERS, expected, BURST_STREAM_TIMEOUT_S)

    direct, _ = await burst(lambda _: target.direct(BURST_STREAM_TIMEOUT_S), count)
    await asyncio.sleep(1.0)
    cpu = proc_cpu_seconds(relay_pid)
    relayed, seconds = await burst(through, count)
    cpu = proc_cpu_seconds(relay_pid) - cpu
    direct_s, relayed_s = summarize_burst(direct), summarize_burst(relayed)
    return {
        "direct": direct_s,
        "relayed": relayed_s,
        "seconds": seconds,
        "completed": relayed_s["completed"],
        "relay_cpu_ms_per_stream": cpu / count * 1000,
        "added_p50_ms": relayed_s["first_token"]["p50"] - direct_s["first_token"]["p50"],
        "added_p99_ms": relayed_s["first_token"]["p99"] - direct_s["first_token"]["p99"],
    }


async def measure(
    upstream_port: int, relay_port: int, relay_pid: int, count: int, rounds: int
) -> dict[str, Any]:
    target = RawTarget(relay_port, upstream_port, "")
    await target.direct()
    await raw_stream(relay_port, http_request(relay_port, "/relay", {}, {}), RUN_MARKERS, set())
    out: list[dict[str, Any]] = []
    for _ in range(rounds):
        out.append(await relay_burst(target, relay_port, relay_pid, count))
        await asyncio.sleep(1.5)
    return {"rounds": out}


async def alternate(
    server: Server, relay: Server, upstream: Server, count: int, rounds: int
) -> list[dict[str, Any]]:
    """``rounds`` pairs of bursts, relay and server, the order flipping every round."""
    clients = await open_clients(server, upstream)
    opts = Options(concurrent=count)
    out = []
    try:
        await warm_up(clients)
        for number in range(rounds):
            pair: dict[str, Any] = {"load_before": os.getloadavg()}
            for side in ("relay", "server") if number % 2 == 0 else ("server", "relay"):
                if side == "relay":
                    pair["relay"] = await relay_burst(clients.raw, relay.port, relay.process.pid, count)
                else:
                    pair["server"] = await measure_one_burst(clients, opts, server.process.pid)
                await asyncio.sleep(2.0)
            pair["load_after"] = os.getloadavg()
            out.append(pair)
    finally:
        await clients.aclose()
    return out


def beside(
    backends: list[str], workers: int, count: int, rounds: int, work: Path, up: Server
) -> dict[str, Any]:
    """The relay and ``openassistants serve`` on each backend, measured in alternating bursts."""
    relay_port = free_port()
    relay_cmd = [sys.executable, "-m", "bench.relay_floor", "--serve-relay", str(relay_port), up.url]
    out: dict[str, Any] = {}
    with running(relay_cmd, server_env(), relay_port, work / "relay.log", "/") as relay:
        for backend in backends:
            with database(backend) as url:
                settings = {"api_keys": API_KEY, "llm_base_url": f"{up.url}/v1"}
                if url is not None:
                    settings["database_url"] = url
                port = free_port()
                command = [*openassistants_command(port, work / f"data-{backend}"), "--workers", str(workers)]
                log = work / f"server-{backend}.log"
                with running(command, server_env(**settings), port, log, "/healthz") as server:
                    wait_until_quiet([os.getpid(), up.process.pid, relay.process.pid, server.process.pid])
                    out[backend] = asyncio.run(alternate(server, relay, up, count, rounds))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--concurrent", "--streams", type=int, default=500, help="streams per burst")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--beside", help="also serve openassistants on these backends (sqlite,postgres)")
    parser.add_argument("--workers", type=int, default=1, help="with --beside: serve --workers N")
    parser.add_argument("--serve-relay", nargs=2, metavar=("PORT", "UPSTREAM"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_relay:
        serve_settled(relay_app(args.serve_relay[1]), int(args.serve_relay[0]))
        return 0
    if args.beside:
        return main_beside(args)
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="oa-bench-relay-") as tmp:
        work = Path(tmp)
        up_port, relay_port = free_port(), free_port()
        upstream_cmd = [sys.executable, "-m", "bench.runs_stream", "--serve-upstream", str(up_port)]
        with running(upstream_cmd, server_env(), up_port, work / "upstream.log", "/v1/models") as up:
            relay_cmd = [sys.executable, "-m", "bench.relay_floor", "--serve-relay", str(relay_port), up.url]
            # The relay answers any path; a GET of it is a (short) relayed stream, so it is its health.
            with running(relay_cmd, server_env(), relay_port, work / "relay.log", "/") as relay:
                wait_until_quiet([os.getpid(), up.process.pid, relay.process.pid])
                result = asyncio.run(
                    measure(up.port, relay.port, relay.process.pid, args.concurrent, args.rounds)
                )
    results = {
        "benchmark": "relay_floor",
        "date": time.strftime("%Y-%m-%d %H:%M %Z", time.localtime(started)),
        "machine": machine(),
        "concurrent": args.concurrent,
        **result,
    }
    path = save_results("relay_floor", results)
    print(
        f"| round | direct first token p50 / p99, ms | relayed p50 / p99, ms | added p50 / p99, ms "
        f"(target for the server: p99 ≤ {CONCURRENT_P99_TARGET_MS:g}) | relay CPU per stream, ms |"
    )
    print("|---|---|---|---|---|")
    for number, r in enumerate(result["rounds"], 1):
        d, t = r["direct"]["first_token"], r["relayed"]["first_token"]
        print(
            f"| {number} | {d['p50']:.0f} / {d['p99']:.0f} | {t['p50']:.0f} / {t['p99']:.0f} | "
            f"{r['added_p50_ms']:.0f} / {r['added_p99_ms']:.0f} | {r['relay_cpu_ms_per_stream']:.2f} |"
        )
    print(f"\nRaw results: {path}")
    return 0


def main_beside(args: argparse.Namespace) -> int:
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # the SDK marks the API deprecated
    started = time.time()
    info = machine()
    backends = [b for b in args.beside.split(",") if b and (b != "postgres" or info["postgres"])]
    with tempfile.TemporaryDirectory(prefix="oa-bench-relay-") as tmp:
        work = Path(tmp)
        up_port = free_port()
        upstream_cmd = [sys.executable, "-m", "bench.runs_stream", "--serve-upstream", str(up_port)]
        with running(upstream_cmd, server_env(), up_port, work / "upstream.log", "/v1/models") as up:
            result = beside(backends, args.workers, args.concurrent, args.rounds, work, up)
    results = {
        "benchmark": "relay_floor_beside",
        "date": time.strftime("%Y-%m-%d %H:%M %Z", time.localtime(started)),
        "machine": info,
        "concurrent": args.concurrent,
        "workers": args.workers,
        "backends": result,
    }
    path = save_results("relay_floor_beside", results)
    print("\n".join(render_beside(result, args.workers, args.concurrent)))
    print(f"\nRaw results: {path} ({time.time() - started:.0f} s)")
    return 0


def render_beside(result: dict[str, Any], workers: int, count: int) -> list[str]:
    lines = [
        f"{count} streams a burst, `serve --workers {workers}`, relay and server alternating",
        "",
        "| backend | relay p99 added, median (each), ms | server p99 added, median (each), ms "
        "| server ÷ relay (target ≤ 2) | server CPU per run, ms | streams/s, relay / server "
        "| server completed | server peak RSS, MiB | load before → after |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for backend, pairs in result.items():
        relay = [p["relay"]["added_p99_ms"] for p in pairs]
        server = [p["server"]["added_p99"] for p in pairs]
        r, s = statistics.median(relay), statistics.median(server)
        cpu = statistics.median(p["server"]["cpu_ms_per_run"] for p in pairs)
        relay_rate = statistics.median(count / p["relay"]["seconds"] for p in pairs)
        server_rate = statistics.median(count / p["server"]["seconds"] for p in pairs)
        done = sum(p["server"]["completed"] for p in pairs)
        rss = max(p["server"]["peak_rss_mib"] for p in pairs)
        load = f"{pairs[0]['load_before'][0]:.1f} → {pairs[-1]['load_after'][0]:.1f}"
        ratio = f"{s / r:.1f}" if r > 0 else "n/a (relay ≤ 0)"
        lines.append(
            f"| {BACKEND_NAMES[backend]} | {r:.0f} ({', '.join(f'{v:.0f}' for v in relay)}) "
            f"| {s:.0f} ({', '.join(f'{v:.0f}' for v in server)}) | {ratio} "
            f"| {cpu:.2f} | {relay_rate:.0f} / {server_rate:.0f} | {done} / {count * len(pairs)} "
            f"| {rss:.0f} | {load} |"
        )
    return lines


if __name__ == "__main__":
    sys.exit(main())
