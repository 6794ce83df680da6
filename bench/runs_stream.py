"""Issue 3: what a run adds on top of the model: ``runs.stream`` time to first token, ``create_and_poll``
wall time, and 500 concurrent streaming runs on one server process.

Three processes: the scripted model (``tests/upstream.py``), which streams every reply the same way
(REPLY_CHUNKS chunks, CHUNK_DELAY_S apart, the first CHUNK_DELAY_S after the role chunk); the server, as
``openassistants serve`` with API keys and its default access log; and this one, the client. On each
backend (SQLite, then PostgreSQL when reachable):

1. time to first token (TTFT): ``client.beta.threads.runs.stream`` (first ``thread.message.delta``)
   against ``client.chat.completions.create(stream=True)`` on the upstream itself (first content
   chunk), interleaved, on ``Options.lanes`` concurrent lanes. The same pair is also measured as raw
   SSE (``RawStream``: bytes off the socket, no parsing), which leaves out the SDK's own work.
2. wall time of ``create_and_poll`` (a thread with one user message) against the same reply streamed
   directly, and not streamed, interleaved.
3. ``Options.concurrent`` (500) streaming runs started together, read as raw SSE (with 500 streams
   the SDK's per-event parsing, or httpx's, on the client's one core would dominate what we measure):
   completions, errors, TTFT, and the server's peak RSS (VmHWM). Its baseline is the same burst
   straight to the upstream, measured just before (added TTFT = through percentile - the direct
   burst's same percentile); the old baseline (the unloaded direct p50 of 1.) is reported too.
   Repeated ``Options.concurrent_rounds`` times (one burst varies by 15-30 % on these machines):
   the burst with the median added p99 is reported, with every burst's figures.

Other processes on a 2-core machine show in every figure: each backend waits for a quiet moment
first, and its report says how much CPU others used meanwhile.

    python -m bench.runs_stream [--quick] [--backends sqlite,postgres] [--git-ref HEAD]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import openai

from bench import harness
from bench.harness import (
    HOST,
    POSTGRES_ADMIN_DSN,
    SHUTDOWN_DEADLINE_S,
    STARTUP_DEADLINE_S,
    free_port,
    openassistants_command,
    postgres_database,
    save_results,
    server_env,
)

API_KEY = "sk-bench-runs"
MODEL = "bench-model"
USER_TEXT = "Write one short paragraph about rivers."
REPLY_CHUNKS = 50
CHUNK_DELAY_S = 0.020
FIRST_DELAY_S = 0.0
REPLY = [f"w{i:02d} " for i in range(REPLY_CHUNKS)]

#: Issue 3's targets.
TTFT_P50_TARGET_MS = 15.0
TTFT_P99_TARGET_MS = 50.0
POLL_RATIO_TARGET = 1.1
CONCURRENT_P99_TARGET_MS = 250.0
RSS_TARGET_MIB = 1024.0

#: Deadlines: one stream or request, and one whole phase. A stalled server fails the run, never hangs it.
SAMPLE_TIMEOUT_S = 60.0
#: A stream of the burst may take this long: slow is measured, only a stall is an error.
BURST_STREAM_TIMEOUT_S = 150.0
PHASE_TIMEOUT_S = 240.0
#: Before each backend, wait (at most QUIET_WAIT_S) until other processes use less than this share of
#: the machine's CPU: on a 2-core machine anything else running shows in every figure.
QUIET_BUSY = 0.10
QUIET_WAIT_S = 20.0
#: PostgreSQL connections one server may open with the default database_pool_size of 10: SQLAlchemy's
#: pool (10), the lease heartbeat's (1), the event log's asyncpg pool (4) and its LISTEN connection.
PG_CONNECTIONS_NEEDED = 16
#: Concurrency used to create the threads a phase needs (not measured).
SETUP_CONCURRENCY = 16
REPO = Path(__file__).resolve().parent.parent
AUTH = {"authorization": f"Bearer {API_KEY}", "openai-beta": "assistants=v2"}


@dataclass
class Options:
    #: Phase 1: cycles of (SDK through, SDK direct, raw through, raw direct), spread over ``lanes``.
    cycles: int = 70
    #: Few enough that the server runs ~2 runs at a time: the overhead of one run, not of a load.
    lanes: int = 4
    #: Phase 2: cycles of (create_and_poll, direct streamed, direct not streamed).
    poll_cycles: int = 30
    concurrent: int = 500
    #: Phase 3 is repeated (each burst against its own direct burst just before it); the report shows
    #: the burst with the median added p99, and every burst's figures: one burst varies by 15-30 %.
    concurrent_rounds: int = 3
    #: Phase 3 alone (``--only-concurrent``): a quick loop while working on it.
    only_concurrent: bool = False
    backends: list[str] = field(default_factory=lambda: ["sqlite", "postgres"])


QUICK = Options(cycles=16, poll_cycles=8, concurrent=100, concurrent_rounds=1)


# --- processes (started with the repository as their working directory) -------------------------


@dataclass
class Server:
    """A process we started and that answers HTTP on ``port``."""

    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


@contextmanager
def running(command: list[str], env: dict[str, str], port: int, log: Path, health: str) -> Iterator[Server]:
    """Start ``command``, wait until GET ``health`` answers 200, and stop it (SIGINT, then SIGKILL)."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO
        )
    server = Server(process, port)
    try:
        deadline = time.monotonic() + STARTUP_DEADLINE_S
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"{command[:4]} exited with {process.returncode}; see {log}")
                with contextlib.suppress(httpx.TransportError):
                    if client.get(server.url + health).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{command[:4]} did not answer {health} in {STARTUP_DEADLINE_S:g} s")
                time.sleep(0.02)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=SHUTDOWN_DEADLINE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=SHUTDOWN_DEADLINE_S)


async def _free_connections() -> int:
    conn = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=5)
    try:
        limit = int(await conn.fetchval("SHOW max_connections"))
        reserved = int(await conn.fetchval("SHOW superuser_reserved_connections"))
        return limit - reserved - int(await conn.fetchval("SELECT count(*) FROM pg_stat_activity"))
    finally:
        await conn.close()


def wait_for_connections() -> int:
    """Waits (at most QUIET_WAIT_S) until PostgreSQL has PG_CONNECTIONS_NEEDED connections free for
    our server; returns how many were free. Others' test suites may hold most of them."""
    deadline = time.monotonic() + QUIET_WAIT_S
    while True:
        free = asyncio.run(_free_connections())
        if free >= PG_CONNECTIONS_NEEDED or time.monotonic() > deadline:
            return free
        time.sleep(2.0)


# --- the scripted model, in its own process ------------------------------------------------------


def serve_upstream(port: int) -> None:
    from tests.upstream import Reply, ScriptedUpstream

    upstream = ScriptedUpstream()
    upstream.default = Reply(
        "".join(REPLY), chunks=REPLY, delay=CHUNK_DELAY_S, first_delay=FIRST_DELAY_S, usage=None
    )
    serve_settled(upstream.app, port)


def serve_settled(app: Any, port: int) -> None:
    """Serve ``app`` on uvicorn as ``openassistants serve`` serves the API (uvloop, httptools), its
    garbage collection settled as serve's (``openassistants.cli.settle_gc``): the stand-ins' own
    collections are not what these benchmarks measure. Left alone, the scripted model's full
    collections made one burst of 500 streams to it take p99 435-530 ms, then 1,986 ms, and each
    burst's end came later than the last (1.7 -> 3.1 s over five bursts); settled, 197-387 ms and
    no drift."""
    import uvicorn

    from openassistants.cli import settle_gc

    settle_gc()
    uvicorn.run(
        app,
        host=HOST,
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        backlog=4096,
    )


# --- statistics and process figures --------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary_ms(values: list[float]) -> dict[str, float]:
    """p50/p99/mean/max of seconds, in milliseconds."""
    ms = [v * 1000 for v in values]
    return {
        "n": len(ms),
        "p50": percentile(ms, 50),
        "p99": percentile(ms, 99),
        "mean": sum(ms) / len(ms) if ms else float("nan"),
        "max": max(ms) if ms else float("nan"),
    }


def proc_status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_pids(pid: int) -> list[int]:
    """The server's processes: ``pid`` and, under ``serve --workers N``, the server processes it forked
    (children with its command line; the code interpreter's kernels, also its children, are not)."""
    pids = [pid]
    with contextlib.suppress(OSError):
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{child}/cmdline").read_bytes() == command:
                    pids.append(int(child))
    return pids


def servers_cpu_seconds(pid: int) -> float:
    return sum(proc_cpu_seconds(p) for p in server_pids(pid))


def servers_kib(pid: int, key: str) -> int:
    """``key`` of /proc/PID/status summed over the server's processes (VmHWM: each one's own peak)."""
    return sum(proc_status_kib(p, key) for p in server_pids(pid))


def machine_cpu_seconds() -> float:
    """CPU time every process on the machine has used since boot (all cores, idle excluded)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    user, nice, system, _idle, _iowait, irq, softirq = fields
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU used by the machine, and by our own processes (``pids``, plus the PostgreSQL backends
    serving database ``database``), since it was made; the rest is other people's work, which
    shares the cores with what we measure."""

    def __init__(self, pids: list[int], database: str | None = None) -> None:
        self.pids = pids
        self.database = database
        self.started = time.perf_counter()
        self.machine = machine_cpu_seconds()
        self.own = self._own()

    def _own(self) -> dict[int, float]:
        pids = list(self.pids)
        if self.database:
            for entry in Path("/proc").iterdir():
                try:
                    if entry.name.isdigit() and self.database.encode() in (entry / "cmdline").read_bytes():
                        pids.append(int(entry.name))
                except OSError:
                    pass
        cpu = {}
        for pid in pids:
            with contextlib.suppress(OSError):  # it ended meanwhile
                cpu[pid] = proc_cpu_seconds(pid)
        return cpu

    def read(self) -> dict[str, float]:
        seconds = time.perf_counter() - self.started
        machine = machine_cpu_seconds() - self.machine
        own = sum(cpu - self.own.get(pid, 0.0) for pid, cpu in self._own().items())
        return {"seconds": seconds, "machine_cpu_s": machine, "own_cpu_s": own, "other_cpu_s": machine - own}


def wait_until_quiet(own_pids: list[int], database: str | None = None) -> float:
    """Waits until other processes use less than QUIET_BUSY of the machine (or QUIET_WAIT_S passed);
    returns the share they used in the last second."""
    deadline = time.monotonic() + QUIET_WAIT_S
    while True:
        meter = CpuMeter(own_pids, database)
        time.sleep(1.0)
        share = meter.read()["other_cpu_s"] / (os.cpu_count() or 1)
        if share < QUIET_BUSY or time.monotonic() > deadline:
            return share


# --- one measured request ------------------------------------------------------------------------


@dataclass
class Sample:
    """Seconds from sending the request to each mark; ``error`` when it did not end as it should."""

    marks: dict[str, float] = field(default_factory=dict)
    error: str | None = None


class RawStream(asyncio.Protocol):
    """One request on its own connection (``connection: close``), its response read as raw bytes until
    the server closes it, noting when each marker first appears. A pre-built request and no parsing:
    far cheaper per stream and per event than httpx or the SDK, so 500 streams at once measure the
    servers rather than this client."""

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
            self.marks["headers"] = now
            data, self._head = self._head, b""
        data = self._carry + data
        for marker, name in self.markers.items():
            if name not in self.marks and marker in data:
                self.marks[name] = now
        self._carry = data[-self._keep :]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ended.done():
            self.ended.set_result(None)


def http_request(port: int, path: str, body: dict[str, Any], headers: dict[str, str]) -> bytes:
    payload = json.dumps(body).encode()
    lines = [f"POST {path} HTTP/1.1", f"host: {HOST}:{port}", "connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines += ["content-type: application/json", f"content-length: {len(payload)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


async def raw_stream(
    port: int,
    request: bytes,
    markers: dict[bytes, str],
    expected: set[str],
    timeout: float = SAMPLE_TIMEOUT_S,
) -> Sample:
    """Send ``request`` and read its stream to the end; an error unless every ``expected`` mark was seen."""
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    sample = Sample()
    stream = RawStream(markers, started)
    transport: asyncio.Transport | None = None
    try:
        async with asyncio.timeout(timeout):
            transport, _ = await loop.create_connection(lambda: stream, HOST, port)
            transport.write(request)
            await stream.ended
    except TimeoutError:
        sample.error = f"no end within {timeout:g} s (saw {sorted(stream.marks)})"
    except OSError as exc:
        sample.error = f"{type(exc).__name__}: {exc}"
    finally:
        if transport is not None:
            transport.close()
    sample.marks = dict(stream.marks, end=time.perf_counter() - started)
    if sample.error is None and (
        stream.status != 200 or "failed" in stream.marks or expected - stream.marks.keys()
    ):
        sample.error = f"HTTP {stream.status}, saw {sorted(stream.marks)}"
    return sample


RUN_MARKERS = {
    b"event: thread.run.in_progress": "in_progress",
    b"event: thread.message.delta": "first_token",
    b"event: thread.run.completed": "run_completed",
    b"event: thread.run.failed": "failed",
    b"event: thread.run.incomplete": "failed",
    b"event: error": "failed",
    b"event: done": "done",
}
DIRECT_MARKERS = {b'"delta":{"content":"': "first_token", b"data: [DONE]": "done"}


@dataclass(frozen=True)
class RawTarget:
    """Where raw streams go: the server's run creation, or the upstream's chat completions."""

    server_port: int
    upstream_port: int
    assistant_id: str

    def through(self, thread_id: str, timeout: float = SAMPLE_TIMEOUT_S) -> Awaitable[Sample]:
        body = {"assistant_id": self.assistant_id, "stream": True}
        request = http_request(self.server_port, f"/v1/threads/{thread_id}/runs", body, AUTH)
        expected = {"first_token", "run_completed", "done"}
        return raw_stream(self.server_port, request, RUN_MARKERS, expected, timeout)

    def direct(self, timeout: float = SAMPLE_TIMEOUT_S) -> Awaitable[Sample]:
        request = http_request(self.upstream_port, "/v1/chat/completions", DIRECT_BODY, {})
        return raw_stream(self.upstream_port, request, DIRECT_MARKERS, {"first_token", "done"}, timeout)


DIRECT_BODY = {
    "model": MODEL,
    "messages": [{"role": "user", "content": USER_TEXT}],
    "stream": True,
    "stream_options": {"include_usage": True},
}


async def sdk_through(client: openai.AsyncOpenAI, assistant_id: str, thread_id: str) -> Sample:
    """``runs.stream`` as an SDK user writes it: first_token at the first thread.message.delta."""
    sample = Sample()
    started = time.perf_counter()
    last = None
    async with asyncio.timeout(SAMPLE_TIMEOUT_S):
        async with client.beta.threads.runs.stream(thread_id=thread_id, assistant_id=assistant_id) as stream:
            async for event in stream:
                if event.event == "thread.message.delta" and "first_token" not in sample.marks:
                    sample.marks["first_token"] = time.perf_counter() - started
                last = event.event
    sample.marks["end"] = time.perf_counter() - started
    if last != "thread.run.completed" or "first_token" not in sample.marks:
        sample.error = f"last event {last}"
    return sample


async def sdk_direct(direct: openai.AsyncOpenAI, *, stream: bool = True) -> Sample:
    """``chat.completions.create`` on the upstream; first_token at the first content chunk."""
    sample = Sample()
    messages: Any = [{"role": "user", "content": USER_TEXT}]
    started = time.perf_counter()
    async with asyncio.timeout(SAMPLE_TIMEOUT_S):
        if not stream:
            completion = await direct.chat.completions.create(model=MODEL, messages=messages)
            sample.marks["end"] = time.perf_counter() - started
            if completion.choices[0].message.content != "".join(REPLY):
                sample.error = "wrong reply"
            return sample
        chunks = await direct.chat.completions.create(
            model=MODEL, messages=messages, stream=True, stream_options={"include_usage": True}
        )
        text = []
        async for chunk in chunks:
            if chunk.choices and chunk.choices[0].delta.content:
                if "first_token" not in sample.marks:
                    sample.marks["first_token"] = time.perf_counter() - started
                text.append(chunk.choices[0].delta.content)
    sample.marks["end"] = time.perf_counter() - started
    if "".join(text) != "".join(REPLY):
        sample.error = "wrong reply"
    return sample


async def sdk_create_and_poll(client: openai.AsyncOpenAI, assistant_id: str, thread_id: str) -> Sample:
    sample = Sample()
    started = time.perf_counter()
    async with asyncio.timeout(SAMPLE_TIMEOUT_S):
        run = await client.beta.threads.runs.create_and_poll(thread_id=thread_id, assistant_id=assistant_id)
    sample.marks["end"] = time.perf_counter() - started
    if run.status != "completed":
        sample.error = f"run {run.status}"
    return sample


async def guarded(measure: Awaitable[Sample]) -> Sample:
    """A sample that failed in a way its measure did not expect still counts, as an error."""
    try:
        return await measure
    except (TimeoutError, openai.OpenAIError, httpx.HTTPError) as exc:
        return Sample(error=f"{type(exc).__name__}: {exc}"[:300])


# --- a measured server ---------------------------------------------------------------------------


@dataclass
class Clients:
    server: openai.AsyncOpenAI
    direct: openai.AsyncOpenAI
    #: For setup only (creating threads); measured raw streams use RawTarget.
    http: httpx.AsyncClient
    raw: RawTarget

    async def aclose(self) -> None:
        await self.server.close()
        await self.direct.close()
        await self.http.aclose()


async def open_clients(server: Server, upstream: Server) -> Clients:
    """SDK clients for the server and the upstream, and an assistant on the server to run."""
    client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0)
    assistant = await client.beta.assistants.create(model=MODEL, instructions="Be brief.")
    return Clients(
        server=client,
        direct=openai.AsyncOpenAI(base_url=f"{upstream.url}/v1", api_key="unused", max_retries=0),
        http=httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=SAMPLE_TIMEOUT_S, trust_env=False),
        raw=RawTarget(server.port, upstream.port, assistant.id),
    )


async def create_threads(http: httpx.AsyncClient, count: int) -> list[str]:
    """``count`` threads with one user message each, made through the API before a phase starts."""
    gate = asyncio.Semaphore(SETUP_CONCURRENCY)

    async def one() -> str:
        async with gate:
            response = await http.post(
                "/v1/threads", json={"messages": [{"role": "user", "content": USER_TEXT}]}
            )
            response.raise_for_status()
            return str(response.json()["id"])

    async with asyncio.timeout(PHASE_TIMEOUT_S):
        return list(await asyncio.gather(*(one() for _ in range(count))))


async def in_lanes(
    kinds: list[str], cycles: int, lanes: int, measure: Callable[[str, int], Awaitable[Sample]]
) -> dict[str, list[Sample]]:
    """Run ``cycles`` cycles of every kind (order rotated each cycle, so none always goes first) on
    ``lanes`` concurrent lanes, each started a little after the previous one."""
    results: dict[str, list[Sample]] = {kind: [] for kind in kinds}
    pending = iter(range(cycles))

    async def lane(number: int) -> None:
        await asyncio.sleep(number * CHUNK_DELAY_S * REPLY_CHUNKS / lanes)
        for cycle in pending:
            order = kinds[cycle % len(kinds) :] + kinds[: cycle % len(kinds)]
            for kind in order:
                results[kind].append(await guarded(measure(kind, cycle)))

    async with asyncio.timeout(PHASE_TIMEOUT_S):
        await asyncio.gather(*(lane(n) for n in range(lanes)))
    return results


async def warm_up(c: Clients) -> None:
    """First runs load the tokenizer and open the pools; none of them is counted."""
    threads = await create_threads(c.http, 6)
    for thread_id in threads[:3]:
        await guarded(sdk_through(c.server, c.raw.assistant_id, thread_id))
        await guarded(sdk_direct(c.direct))
    await asyncio.gather(*(c.raw.through(t) for t in threads[3:]), c.raw.direct())


async def measure_ttft(c: Clients, opts: Options) -> dict[str, list[Sample]]:
    threads = await create_threads(c.http, 2 * opts.cycles)

    def measure(kind: str, cycle: int) -> Awaitable[Sample]:
        if kind == "sdk_through":
            return sdk_through(c.server, c.raw.assistant_id, threads[2 * cycle])
        if kind == "raw_through":
            return c.raw.through(threads[2 * cycle + 1])
        if kind == "sdk_direct":
            return sdk_direct(c.direct)
        return c.raw.direct()

    kinds = ["sdk_through", "sdk_direct", "raw_through", "raw_direct"]
    return await in_lanes(kinds, opts.cycles, opts.lanes, measure)


async def measure_poll(c: Clients, opts: Options) -> dict[str, list[Sample]]:
    threads = await create_threads(c.http, opts.poll_cycles)

    def measure(kind: str, cycle: int) -> Awaitable[Sample]:
        if kind == "create_and_poll":
            return sdk_create_and_poll(c.server, c.raw.assistant_id, threads[cycle])
        return sdk_direct(c.direct, stream=kind == "direct_stream")

    kinds = ["create_and_poll", "direct_stream", "direct_whole"]
    return await in_lanes(kinds, opts.poll_cycles, opts.lanes, measure)


async def burst(start: Callable[[int], Awaitable[Sample]], count: int) -> tuple[list[Sample], float]:
    """``count`` streams started together; returns them and the seconds until the last one ended."""
    started = time.perf_counter()
    async with asyncio.timeout(PHASE_TIMEOUT_S):
        samples = await asyncio.gather(*(guarded(start(i)) for i in range(count)))
    return list(samples), time.perf_counter() - started


async def measure_concurrent(c: Clients, opts: Options, server_pid: int) -> dict[str, Any]:
    """``opts.concurrent_rounds`` bursts; the one with the median added p99, with every burst's figures."""
    bursts = []
    for _ in range(opts.concurrent_rounds):
        bursts.append(await measure_one_burst(c, opts, server_pid))
        await asyncio.sleep(2.0)  # the last streams' aftermath (writes, closing connections)
    ranked = sorted(bursts, key=lambda b: b["added_p99"])
    median = ranked[(len(ranked) - 1) // 2]
    median["rounds"] = [
        {key: b[key] for key in ("added_p99", "through_p99", "direct_p99", "cpu_ms_per_run")} for b in bursts
    ]
    return median


async def measure_one_burst(c: Clients, opts: Options, server_pid: int) -> dict[str, Any]:
    threads = await create_threads(c.http, opts.concurrent)
    # The baseline, just before: the same burst straight to the upstream, under the same machine load.
    direct, direct_seconds = await burst(lambda _: c.raw.direct(BURST_STREAM_TIMEOUT_S), opts.concurrent)
    await asyncio.sleep(1.0)  # let the thread creations' and the direct burst's aftermath settle
    rss_before = servers_kib(server_pid, "VmRSS")
    cpu_before = servers_cpu_seconds(server_pid)
    client_cpu_before = time.process_time()
    samples, seconds = await burst(
        lambda i: c.raw.through(threads[i], BURST_STREAM_TIMEOUT_S), opts.concurrent
    )
    server_cpu = servers_cpu_seconds(server_pid) - cpu_before
    through = summarize_burst(samples)
    direct_summary = summarize_burst(direct)
    through_p99 = through.get("first_token", NAN)["p99"]
    direct_p99 = direct_summary.get("first_token", NAN)["p99"]
    through_p50 = through.get("first_token", NAN)["p50"]
    direct_p50 = direct_summary.get("first_token", NAN)["p50"]
    return through | {
        "direct_burst": direct_summary | {"seconds": direct_seconds},
        "seconds": seconds,
        "server_cpu_s": server_cpu,
        "client_cpu_s": time.process_time() - client_cpu_before,
        "rss_before_mib": rss_before / 1024,
        "rss_after_mib": servers_kib(server_pid, "VmRSS") / 1024,
        "peak_rss_mib": servers_kib(server_pid, "VmHWM") / 1024,
        "through_p99": through_p99,
        "direct_p99": direct_p99,
        # NaN (no stream completed) ranks last, as the worst burst.
        "added_p99": through_p99 - direct_p99 if through_p99 == through_p99 else float("inf"),
        "added_p50": through_p50 - direct_p50 if through_p50 == through_p50 else float("inf"),
        "cpu_ms_per_run": server_cpu / opts.concurrent * 1000,
    }


async def measure_server(server: Server, upstream: Server, opts: Options) -> dict[str, Any]:
    c = await open_clients(server, upstream)
    server_pid = server.process.pid
    results: dict[str, Any] = {}
    try:
        await warm_up(c)
        if not opts.only_concurrent:
            phase_started = time.perf_counter()
            results["ttft"] = summarize_samples(await measure_ttft(c, opts))
            results["ttft_seconds"] = time.perf_counter() - phase_started
            phase_started = time.perf_counter()
            results["poll"] = summarize_samples(await measure_poll(c, opts))
            results["poll_seconds"] = time.perf_counter() - phase_started
        results["concurrent"] = await measure_concurrent(c, opts, server_pid)
    finally:
        await c.aclose()
    return results


async def measure_direct_burst(upstream: Server, count: int) -> dict[str, Any]:
    """The burst without the server: what the upstream and this client alone add under that load."""
    raw = RawTarget(0, upstream.port, "")
    await raw.direct()
    samples, seconds = await burst(lambda _: raw.direct(BURST_STREAM_TIMEOUT_S), count)
    return summarize_burst(samples) | {"seconds": seconds}


# --- summaries -----------------------------------------------------------------------------------


def _errors(samples: list[Sample]) -> list[str]:
    return [s.error for s in samples if s.error is not None]


def summarize_samples(results: dict[str, list[Sample]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind, samples in results.items():
        good = [s for s in samples if s.error is None]
        marks = {mark for s in good for mark in s.marks}
        out[kind] = {mark: summary_ms([s.marks[mark] for s in good if mark in s.marks]) for mark in marks}
        errors = _errors(samples)
        out[kind]["errors"] = len(errors)
        out[kind]["error_sample"] = errors[:3]
    return out


def summarize_burst(samples: list[Sample]) -> dict[str, Any]:
    completed = [s for s in samples if s.error is None]
    marks = {mark for s in completed for mark in s.marks}
    errors = _errors(samples)
    return {
        "streams": len(samples),
        "completed": len(completed),
        "errors": len(errors),
        "error_sample": sorted(set(errors))[:5],
        **{mark: summary_ms([s.marks[mark] for s in completed if mark in s.marks]) for mark in marks},
    }


# --- the run -------------------------------------------------------------------------------------


@contextmanager
def database(backend: str) -> Iterator[str | None]:
    if backend == "sqlite":
        yield None
    else:
        with postgres_database() as url:
            yield url


def export_source(ref: str, work: Path) -> tuple[str, Path]:
    """The package as of git ``ref``, unpacked under ``work``: its commit and its ``src`` directory."""
    commit = _git("rev-parse", "--verify", f"{ref}^{{commit}}").strip()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", commit, "src"], capture_output=True, check=True, timeout=60
    ).stdout
    target = work / f"src-{commit[:12]}"
    target.mkdir()
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True, timeout=60)
    return commit, target / "src"


def _git(*args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True, timeout=30
    )
    return done.stdout


def run_backend(
    backend: str, opts: Options, upstream: Server, work: Path, source: Path | None
) -> dict[str, Any]:
    port = free_port()
    free_connections = wait_for_connections() if backend == "postgres" else None
    with database(backend) as database_url:
        settings = {"api_keys": API_KEY, "llm_base_url": f"{upstream.url}/v1"}
        if database_url is not None:
            settings["database_url"] = database_url
        env = server_env(**settings)
        if source is not None:
            # Ahead of the venv's editable install (a .pth entry, which comes after PYTHONPATH).
            env["PYTHONPATH"] = str(source)
        command = openassistants_command(port, work / f"data-{backend}")
        log = work / f"server-{backend}.log"
        result: dict[str, Any]
        try:
            with running(command, env, port, log, "/healthz") as server:
                own = [os.getpid(), upstream.process.pid, server.process.pid]
                name = database_url.rsplit("/", 1)[1] if database_url else None
                others_before = wait_until_quiet(own, name)
                meter = CpuMeter(own, name)
                result = asyncio.run(measure_server(server, upstream, opts))
                result["cpu"] = meter.read() | {"others_share_before": others_before}
        except (RuntimeError, TimeoutError, OSError, httpx.HTTPError, openai.OpenAIError) as exc:
            # Measuring the other backend is still worth it; the report says what went wrong here.
            result = {"error": f"{type(exc).__name__}: {exc}"}
        result["server_log_tail"] = _log_problems(log)
    if free_connections is not None:
        result["postgres_free_connections"] = free_connections
    return result


def _log_problems(log: Path) -> list[str]:
    """The server's log without access-log lines and start/stop chatter: tracebacks, warnings."""
    routine = ("INFO:", "Running upgrade", "Context impl", "Will assume", "setup plugin")
    problems = []
    for line in log.read_text(errors="replace").splitlines():
        if (line.startswith("{") and '"status"' in line) or line.startswith(routine):
            continue
        problems.append(line)
    return problems[-40:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer samples, 100 concurrent streams")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--cycles", type=int, help="phase 1 cycles (4 samples each)")
    parser.add_argument("--concurrent", type=int, help="streams started together in phase 3")
    parser.add_argument("--rounds", type=int, help="phase 3 bursts (the median is reported)")
    parser.add_argument("--only-concurrent", action="store_true", help="phase 3 alone")
    parser.add_argument(
        "--git-ref",
        help="serve the package as of this commit (e.g. HEAD) instead of the working tree",
    )
    parser.add_argument("--serve-upstream", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_upstream:
        serve_upstream(args.serve_upstream)
        return 0
    opts = QUICK if args.quick else Options()
    opts.backends = [b for b in args.backends.split(",") if b]
    opts.cycles = args.cycles or opts.cycles
    opts.concurrent = args.concurrent or opts.concurrent
    opts.concurrent_rounds = args.rounds or opts.concurrent_rounds
    opts.only_concurrent = args.only_concurrent
    # The SDK marks the Assistants API deprecated; this benchmark exists to use it.
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    started = time.time()
    machine = harness.machine()
    if "postgres" in opts.backends and machine["postgres"] is None:
        print("PostgreSQL at 127.0.0.1:5432 is not reachable; measuring SQLite only.", file=sys.stderr)
        opts.backends = [b for b in opts.backends if b != "postgres"]
    with tempfile.TemporaryDirectory(prefix="oa-bench-runs-") as tmp:
        work = Path(tmp)
        if args.git_ref:
            commit, source = export_source(args.git_ref, work)
            served = {"commit": commit, "working_tree_changes": False}
        else:
            source = None
            changed = _git("status", "--porcelain", "--untracked-files=no", "src").strip()
            served = {"commit": _git("rev-parse", "HEAD").strip(), "working_tree_changes": bool(changed)}
        port = free_port()
        command = [sys.executable, "-m", "bench.runs_stream", "--serve-upstream", str(port)]
        # The scripted model is the working tree's whatever ``--git-ref`` serves: the same stand-in
        # (and the same garbage-collection settings) for every commit compared.
        with running(command, server_env(), port, work / "upstream.log", "/v1/models") as up:
            wait_until_quiet([os.getpid(), up.process.pid])
            meter = CpuMeter([os.getpid(), up.process.pid])
            direct_burst = asyncio.run(measure_direct_burst(up, opts.concurrent))
            direct_burst["cpu"] = meter.read()
            backends = {b: run_backend(b, opts, up, work, source) for b in opts.backends}
    results: dict[str, Any] = {
        "benchmark": "runs_stream",
        "date": time.strftime("%Y-%m-%d %H:%M %Z", time.localtime(started)),
        "seconds": round(time.time() - started, 1),
        "machine": machine,
        "served": served,
        "options": asdict(opts),
        "reply": {"chunks": REPLY_CHUNKS, "delay_s": CHUNK_DELAY_S, "first_delay_s": FIRST_DELAY_S},
        "direct_burst": direct_burst,
        "backends": backends,
    }
    path = save_results("runs_stream", results)
    report = render(results)
    print(report)
    print(f"\nMachine: {json.dumps(machine)}\nRaw results: {path} ({results['seconds']} s)")
    # A target missed is a finding, reported above; only a backend that could not be measured fails.
    return 1 if any("error" in r for r in backends.values()) else 0


# --- the Markdown for docs/benchmarks.md ---------------------------------------------------------

BACKEND_NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
NAN = {"n": 0, "p50": float("nan"), "p99": float("nan")}


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _row(label: str, stats: dict[str, float], digits: int = 1, target: str = "", result: str = "") -> str:
    n = int(stats["n"]) if stats.get("n") else ""
    return f"| {label} | {n} | {stats['p50']:.{digits}f} | {stats['p99']:.{digits}f} | {target} | {result} |"


def render_backend(backend: str, r: dict[str, Any], direct_burst: dict[str, Any]) -> list[str]:
    cc = r["concurrent"]
    lines = ["| measurement | n | p50 | p99 | target | result |", "|---|---:|---:|---:|---|---|"]
    baseline = None
    if "ttft" in r:
        lines += _ttft_and_poll_rows(r["ttft"], r["poll"])
        baseline = r["ttft"]["raw_direct"]["first_token"]["p50"]
    lines += _concurrent_rows(cc, direct_burst, baseline)
    lines += [
        "",
        f"Server RSS {cc['rss_before_mib']:.0f} MiB before the burst, {cc['rss_after_mib']:.0f} MiB after; "
        f"CPU during the burst: server {cc['server_cpu_s']:.1f} s "
        f"({cc['server_cpu_s'] / cc['streams'] * 1000:.0f} ms per run), client {cc['client_cpu_s']:.1f} s, "
        f"in {cc['seconds']:.1f} s from the first request to the last stream's end.",
        "",
        *_rounds_note(cc),
        _noise(r["cpu"], backend == "postgres"),
    ]
    if "ttft" in r:
        errors = sum(s["errors"] for phase in (r["ttft"], r["poll"]) for s in phase.values())
        if errors:
            lines += ["", f"{errors} samples of (1)/(2) failed; the figures are not valid."]
    return lines


def _ttft_and_poll_rows(t: dict[str, Any], p: dict[str, Any]) -> list[str]:
    direct, through = t["sdk_direct"]["first_token"], t["sdk_through"]["first_token"]
    raw_direct, raw_through = t["raw_direct"]["first_token"], t["raw_through"]["first_token"]
    added = {"p50": through["p50"] - direct["p50"], "p99": through["p99"] - direct["p99"]}
    raw_added = {"p50": raw_through["p50"] - raw_direct["p50"], "p99": raw_through["p99"] - raw_direct["p99"]}
    cap, streamed, whole = p["create_and_poll"]["end"], p["direct_stream"]["end"], p["direct_whole"]["end"]
    ratio = {"p50": cap["p50"] / streamed["p50"], "p99": cap["p99"] / streamed["p99"]}
    ttft_ok = (
        f"{_verdict(added['p50'] <= TTFT_P50_TARGET_MS)} / {_verdict(added['p99'] <= TTFT_P99_TARGET_MS)}"
    )
    return [
        _row("(1) TTFT direct, SDK `chat.completions.create(stream=True)`, ms", direct),
        _row("(1) TTFT through, SDK `runs.stream`, ms", through),
        _row(
            "(1) **added TTFT, SDK** (through p - direct p), ms",
            added,
            target=f"p50 ≤ {TTFT_P50_TARGET_MS:g}, p99 ≤ {TTFT_P99_TARGET_MS:g}",
            result=ttft_ok,
        ),
        _row("(1) TTFT direct, raw SSE, ms", raw_direct),
        _row("(1) TTFT through, raw SSE, ms", raw_through),
        _row("(1) added TTFT, raw SSE (the server without the SDK), ms", raw_added),
        _row("(2) wall, direct streamed, ms", streamed, 0),
        _row("(2) wall, direct not streamed, ms", whole, 0),
        _row("(2) wall, `create_and_poll`, ms", cap, 0),
        _row(
            "(2) **`create_and_poll` ÷ direct streamed** (p ÷ p)",
            ratio,
            3,
            f"≤ {POLL_RATIO_TARGET:g}",
            _verdict(ratio["p50"] <= POLL_RATIO_TARGET),
        ),
    ]


def _concurrent_rows(cc: dict[str, Any], direct_burst: dict[str, Any], baseline: float | None) -> list[str]:
    """(3)'s rows; ``baseline`` (the unloaded raw direct p50 of (1)), when measured, for the old
    definition of added TTFT."""
    loaded = cc.get("first_token", NAN)
    # The same burst straight to the upstream, measured in the same run: what the upstream and this
    # client take for it by themselves. (3)'s target is judged on this definition.
    burst_direct = cc.get("direct_burst", direct_burst).get("first_token", NAN)
    burst_added = {"p50": loaded["p50"] - burst_direct["p50"], "p99": loaded["p99"] - burst_direct["p99"]}
    rows = [
        f"| (3) {cc['streams']} concurrent streams: completed, errors | | {cc['completed']} | {cc['errors']} "
        f"| all complete | {_verdict(cc['completed'] == cc['streams'])} |",
        _row("(3) time to response headers (run created), ms", cc.get("headers", NAN), 0),
        _row("(3) time to `thread.run.in_progress`, ms", cc.get("in_progress", NAN), 0),
        _row("(3) TTFT through, raw SSE, ms", loaded, 0),
        _row("(3) TTFT of the same burst straight to the upstream, raw SSE, ms", burst_direct, 0),
        _row(
            "(3) **added TTFT** (through p - the direct burst's p), ms",
            burst_added,
            0,
            f"p99 ≤ {CONCURRENT_P99_TARGET_MS:g}",
            _verdict(burst_added["p99"] <= CONCURRENT_P99_TARGET_MS),
        ),
    ]
    if baseline is not None:
        old = {"p50": loaded["p50"] - baseline, "p99": loaded["p99"] - baseline}
        rows.append(
            _row(
                f"(3) added TTFT, old definition (minus the unloaded raw direct p50, {baseline:.1f}), ms",
                old,
                0,
            )
        )
    return [
        *rows,
        _row("(3) stream end (`done`), ms", cc.get("end", NAN), 0),
        f"| (3) server peak RSS (VmHWM), MiB | | | {cc['peak_rss_mib']:.0f} | < {RSS_TARGET_MIB:g} "
        f"| {_verdict(cc['peak_rss_mib'] < RSS_TARGET_MIB)} |",
    ]


def _rounds_note(cc: dict[str, Any]) -> list[str]:
    rounds = cc.get("rounds", [])
    if len(rounds) < 2:
        return []

    def each(key: str, digits: int = 0) -> str:
        return ", ".join(f"{r[key]:.{digits}f}" for r in rounds)

    return [
        f"(3) is the median of {len(rounds)} bursts, each against its own direct burst just before it "
        f"(in order: added p99 {each('added_p99')} ms; through p99 {each('through_p99')} ms; direct "
        f"p99 {each('direct_p99')} ms; server CPU per run {each('cpu_ms_per_run', 1)} ms).",
        "",
    ]


def _noise(cpu: dict[str, float], postgres: bool) -> str:
    share = cpu["other_cpu_s"] / (cpu["seconds"] * (os.cpu_count() or 1))
    return (
        f"Other processes on the machine used {cpu['other_cpu_s']:.0f} CPU-s in these "
        f"{cpu['seconds']:.0f} s ({share:.0%} of its cores), against {cpu['own_cpu_s']:.0f} CPU-s for "
        f"the benchmark's own (client, upstream, server{', its PostgreSQL backends' if postgres else ''})."
    )


def render(results: dict[str, Any]) -> str:
    lines: list[str] = []
    for backend, r in results["backends"].items():
        lines += [f"**{BACKEND_NAMES[backend]}**", ""]
        free = r.get("postgres_free_connections")
        if free is not None and free < PG_CONNECTIONS_NEEDED:
            lines += [
                f"PostgreSQL had only {free} connections free when this started (others held the rest).",
                "",
            ]
        if "error" in r:
            lines += [f"Not measured: {r['error']}", "", "```", *r["server_log_tail"], "```", ""]
            continue
        lines += [*render_backend(backend, r, results["direct_burst"]), ""]
    burst = results["direct_burst"]
    ttft = burst.get("first_token", NAN)
    lines.append(
        f"Reference: the same burst of {burst['streams']} streams straight to the upstream (no server): "
        f"{burst['completed']} completed, TTFT p50 {ttft['p50']:.0f} ms, p99 {ttft['p99']:.0f} ms, "
        f"last stream ended after {burst['seconds'] * 1000:.0f} ms."
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
