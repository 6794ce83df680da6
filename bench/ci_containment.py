"""Issue 14: what one tenant's hostile cell costs another tenant's computation (kernel containment).

Tenant B's fixed computation (pure Python, one core) is timed in its kernel alone, then again after
tenant A's cell has returned, a cell that left behind detached CPU burners (new sessions, SIGTERM
ignored, a double-forked daemon) and a fork bomb's worth of sleeping processes. The ratio
"B after / B alone" is what A's leftovers cost B; A's next cell counts the processes still in its
sandbox. Run it on the code before the fix (e.g. ``PYTHONPATH=<main checkout>/src``) and after.

    python -m bench.ci_containment [--repeats 5] [--burners 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from openassistants.code_interpreter import KernelManager
from openassistants.config import Settings

WORK = (
    "import time\n"
    "started = time.perf_counter()\n"
    "total = sum(i * i for i in range(3_000_000))\n"
    "print(time.perf_counter() - started)"
)
HOSTILE = (
    "import os, signal, subprocess, sys\n"
    "burn = 'import signal\\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\\nwhile True: pass'\n"
    "for _ in range({burners}):\n"
    "    subprocess.Popen([sys.executable, '-c', burn], start_new_session=True)\n"
    "if os.fork() == 0:\n"
    "    os.setsid()\n"
    "    if os.fork() == 0:\n"
    "        os.execvp(sys.executable, [sys.executable, '-c', burn])\n"
    "    os._exit(0)\n"
    "os.wait()\n"
    "sleepers = 0\n"
    "try:\n"
    "    for _ in range(40):\n"
    "        subprocess.Popen(['sleep', '3600'], start_new_session=True)\n"
    "        sleepers += 1\n"
    "except OSError:\n"
    "    pass\n"
    "print('left behind', {burners} + 1 + sleepers)"
)
SURVEY = (
    "import os\n"
    "print(len([p for p in os.listdir('/proc') if p.isdigit() and int(p) not in (1, os.getpid())]))"
)


async def timed(manager: KernelManager, session: str, repeats: int) -> list[float]:
    seconds = []
    for _ in range(repeats):
        result = await manager.execute(session, WORK)
        assert result.error is None, result.logs
        seconds.append(float(result.logs.strip()))
    return seconds


async def measure(repeats: int, burners: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="oa-bench-ci-") as scratch:
        settings = Settings(code_interpreter_pool_size=0, code_interpreter_timeout_seconds=120)
        manager = KernelManager(settings, Path(scratch))
        await manager.start()
        try:
            await timed(manager, "tenant-b:thread", 1)  # warm-up: the kernel starts
            alone = await timed(manager, "tenant-b:thread", repeats)
            hostile = await manager.execute("tenant-a:thread", HOSTILE.format(burners=burners))
            after = await timed(manager, "tenant-b:thread", repeats)
            left = await manager.execute("tenant-a:thread", SURVEY)
        finally:
            await manager.close()
    alone_s, after_s = statistics.median(alone), statistics.median(after)
    return {
        "code": str(Path(sys.modules["openassistants"].__file__ or "").parent),
        "load_average_1m": os.getloadavg()[0],
        "cores": os.cpu_count(),
        "hostile_cell": hostile.logs.strip().splitlines(),
        "processes_left_in_a_sandbox": left.logs.strip(),
        "b_alone_median_s": round(alone_s, 3),
        "b_after_median_s": round(after_s, 3),
        "ratio_after_over_alone": round(after_s / alone_s, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--burners", type=int, default=4)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.repeats, args.burners)), indent=2))


if __name__ == "__main__":
    main()
