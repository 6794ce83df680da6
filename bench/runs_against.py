"""Issue 3's (3) for two versions at once: bursts of 500 streams alternate between two servers.

One server serves the package as of ``REF``, the other the working tree (or ``--git-ref``), both on one
scripted model (``bench.runs_stream``'s). Bursts go to one server, then the other, then back (the order
flips every round), each against its own burst straight to the model just before it, as in
``bench.runs_stream``. Why: consecutive runs of ``bench.runs_stream`` differ by 10-70 % on these
machines (docs/benchmarks.md, issue 3, third round), by more than most changes gain; alternating
bursts meet the same machine. Both servers stay up throughout, so each burst reads somewhat slower
than with one server alone: compare the two columns, not against other runs.

    python -m bench.runs_against REF [--git-ref REF2] [--backends sqlite,postgres] [--rounds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from bench import harness
from bench.harness import free_port, openassistants_command, save_results, server_env
from bench.runs_stream import (
    API_KEY,
    BACKEND_NAMES,
    Options,
    Server,
    database,
    export_source,
    measure_one_burst,
    open_clients,
    running,
    warm_up,
)

#: Between bursts: the last streams' aftermath (writes, closing connections), as in bench.runs_stream.
SETTLE_S = 2.0


@contextmanager
def serving(
    backend: str, sources: dict[str, Path | None], upstream: Server, work: Path
) -> Iterator[dict[str, Server]]:
    """A server per label, each with a database of its own, serving the package at its source (None:
    the working tree)."""
    with ExitStack() as stack:
        servers = {}
        for label, source in sources.items():
            settings = {"api_keys": API_KEY, "llm_base_url": f"{upstream.url}/v1"}
            url = stack.enter_context(database(backend))
            if url is not None:
                settings["database_url"] = url
            env = server_env(**settings)
            if source is not None:
                env["PYTHONPATH"] = str(source)
            port = free_port()
            command = openassistants_command(port, work / f"data-{backend}-{label}")
            log = work / f"server-{backend}-{label}.log"
            servers[label] = stack.enter_context(running(command, env, port, log, "/healthz"))
        yield servers


async def alternate(
    servers: dict[str, Server], upstream: Server, opts: Options
) -> dict[str, list[dict[str, Any]]]:
    clients = {label: await open_clients(server, upstream) for label, server in servers.items()}
    bursts: dict[str, list[dict[str, Any]]] = {label: [] for label in servers}
    try:
        for client in clients.values():
            await warm_up(client)
        for number in range(opts.concurrent_rounds):
            labels = list(servers) if number % 2 == 0 else list(reversed(servers))
            for label in labels:
                burst = await measure_one_burst(clients[label], opts, servers[label].process.pid)
                bursts[label].append(
                    {
                        key: burst[key]
                        for key in ("added_p50", "added_p99", "through_p99", "direct_p99", "cpu_ms_per_run")
                    }
                    | {"completed": burst["completed"], "streams": burst["streams"]}
                )
                await asyncio.sleep(SETTLE_S)
    finally:
        for client in clients.values():
            await client.aclose()
    return bursts


def render(backend: str, bursts: dict[str, list[dict[str, Any]]], names: dict[str, str]) -> list[str]:
    lines = [
        f"**{BACKEND_NAMES[backend]}**, {len(next(iter(bursts.values())))} bursts each, alternating",
        "",
        "| served | p50 added TTFT, median (each burst), ms | p99 added TTFT, median (each burst), ms "
        "| server CPU per run, median (each), ms | completed |",
        "|---|---|---|---|---|",
    ]
    for label, runs in bursts.items():
        added50 = ", ".join(f"{b['added_p50']:.0f}" for b in runs)
        added = ", ".join(f"{b['added_p99']:.0f}" for b in runs)
        cpu = ", ".join(f"{b['cpu_ms_per_run']:.2f}" for b in runs)
        done = sum(b["completed"] for b in runs)
        lines.append(
            f"| {names[label]} | {statistics.median(b['added_p50'] for b in runs):.0f} ({added50}) "
            f"| {statistics.median(b['added_p99'] for b in runs):.0f} ({added}) "
            f"| {statistics.median(b['cpu_ms_per_run'] for b in runs):.2f} ({cpu}) "
            f"| {done} / {sum(b['streams'] for b in runs)} |"
        )
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("ref", help="the version to compare against (a commit, e.g. HEAD~3)")
    parser.add_argument("--git-ref", help="the version measured (default: the working tree)")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--rounds", type=int, default=4, help="bursts for each server")
    parser.add_argument("--concurrent", type=int, default=Options.concurrent, help="streams per burst")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # the SDK marks the API deprecated
    opts = Options(concurrent=args.concurrent, concurrent_rounds=args.rounds)
    machine = harness.machine()
    backends = [b for b in args.backends.split(",") if b and (b != "postgres" or machine["postgres"])]
    started = time.time()
    results: dict[str, Any] = {"benchmark": "runs_against", "machine": machine, "backends": {}}
    with tempfile.TemporaryDirectory(prefix="oa-bench-against-") as tmp:
        work = Path(tmp)
        against_commit, against = export_source(args.ref, work)
        measured_commit, measured = (
            export_source(args.git_ref, work) if args.git_ref else ("working tree", None)
        )
        names = {"against": f"`{against_commit[:7]}` ({args.ref})", "measured": measured_commit[:12]}
        if args.git_ref:
            names["measured"] = f"`{measured_commit[:7]}` ({args.git_ref})"
        results["served"] = {"against": against_commit, "measured": measured_commit}
        port = free_port()
        upstream_command = [sys.executable, "-m", "bench.runs_stream", "--serve-upstream", str(port)]
        with running(upstream_command, server_env(), port, work / "upstream.log", "/v1/models") as upstream:
            report: list[str] = []
            for backend in backends:
                with serving(backend, {"against": against, "measured": measured}, upstream, work) as servers:
                    bursts = asyncio.run(alternate(servers, upstream, opts))
                results["backends"][backend] = bursts
                report += render(backend, bursts, names)
    results["seconds"] = round(time.time() - started, 1)
    path = save_results("runs_against", results)
    print("\n".join(report))
    print(f"Raw results: {path} ({results['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
