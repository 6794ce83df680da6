"""Issue 18: ``bench.api_crud``'s operations on two versions at once, in alternating bursts.

Two servers on one backend (PostgreSQL by default), each with a database of its own: one serves the
package as of ``REF``, the other the working tree. For each operation, rounds of hello, ``REF``, the
working tree, hello (the order of the two flips every round); each burst is divided by the mean of
the hello bursts around its round, so both versions meet the same machine (this one is shared and
its load swings by more than most changes gain). Prints each ratio's median and range.

    python -m bench.api_crud_against REF [--backend postgres] [--rounds 3] [--duration 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from bench import harness
from bench.api_crud import MESSAGE_TEXT, Options, database, load, oa_env, seed
from bench.runs_stream import export_source


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("ref")
    parser.add_argument("--backend", default="postgres", choices=["sqlite", "postgres"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args(argv)
    opts = Options(args.connections, args.warmup, args.duration, 0, [args.backend])
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="oa-bench-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        commit, source = export_source(args.ref, work)
        hello_port = harness.free_port()
        hello_command = [sys.executable, "-m", "bench.hello_server", "--port", str(hello_port)]
        stack.enter_context(
            harness.running(hello_command, harness.server_env(), hello_port, work / "hello.log", "/hello")
        )
        hello = load(opts, hello_port, "/hello", headers={})
        specs: dict[str, dict[str, object]] = {}
        for label, src in ((args.ref, source), ("this tree", None)):
            url = stack.enter_context(database(args.backend))
            env = oa_env(url)
            if src is not None:
                env["PYTHONPATH"] = str(src)
            port = harness.free_port()
            command = harness.openassistants_command(port, work / f"data-{len(specs)}")
            server = stack.enter_context(
                harness.running(command, env, port, work / f"server-{len(specs)}.log", "/healthz")
            )
            assistant_id, thread_id, _ = seed(server.url, opts, port)
            if url is not None:
                harness.postgres_analyze(url)
            messages = f"/v1/threads/{thread_id}/messages"
            specs[label] = {
                "assistants.retrieve": load(opts, port, f"/v1/assistants/{assistant_id}"),
                "messages.list": load(opts, port, messages + "?limit=20"),
                "messages.create": load(
                    opts,
                    port,
                    messages,
                    method="POST",
                    body=json.dumps({"role": "user", "content": MESSAGE_TEXT}),
                ),
            }
        labels = list(specs)
        ratios: dict[str, dict[str, list[float]]] = {
            op: {label: [] for label in labels} for op in specs[labels[0]]
        }
        for op in ratios:
            for n in range(args.rounds):
                order = labels if n % 2 == 0 else labels[::-1]
                before = harness.run_load(hello).rps
                rps = {label: harness.run_load(specs[label][op]).rps for label in order}  # type: ignore[arg-type]
                after = harness.run_load(hello).rps
                for label in labels:
                    ratios[op][label].append(rps[label] / ((before + after) / 2))
    print(f"{args.backend}, {args.rounds} rounds, {args.duration:g} s each; REF {args.ref} = {commit[:12]}")
    print(f"load average before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f}")
    print("| operation | " + " | ".join(labels) + " |")
    print("|---|" + "---:|" * len(labels))
    for op, by_label in ratios.items():
        cells = [f"{statistics.median(v):.1%} ({min(v):.1%} to {max(v):.1%})" for v in by_label.values()]
        print(f"| {op} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
