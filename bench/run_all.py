"""``make bench``: every benchmark, each in its own process, one after the other.

To add a benchmark, add its module to BENCHMARKS; it must run with no arguments and exit non-zero only
when it could not measure (a target missed is reported, not an error).
"""

from __future__ import annotations

import subprocess
import sys
import time

BENCHMARKS = [
    "bench.api_crud",
    "bench.scale_out",
    "bench.runs_stream",
    "bench.relay_floor",
    "bench.code_interpreter",
    "bench.vector_search",
    "bench.backup",
    "bench.ingest_searchable",
]


def main() -> int:
    failed: list[str] = []
    for module in BENCHMARKS:
        print(f"\n=== {module}", flush=True)
        started = time.monotonic()
        code = subprocess.run([sys.executable, "-m", module], check=False).returncode
        print(f"=== {module}: exit {code} after {time.monotonic() - started:.0f} s", flush=True)
        if code != 0:
            failed.append(module)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
