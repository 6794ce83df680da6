"""A closed-loop HTTP/1.1 load generator, run in its own process so it never shares the server's loop.

Each of N keep-alive connections sends one request, waits for the whole response, and sends the next,
for a warm-up period and then a measured one (or for a fixed number of requests). The client is a bare
asyncio protocol on a pre-built request so that it costs far less CPU per request than the servers it
measures: on a 2-core machine the generator and the server each get about one core.

    echo '{"port": 8000, "path": "/hello", "duration_s": 5}' | python -m bench.loadgen
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, cast

DEFAULT_CONNECTIONS = 16
# A request's whole exchange must finish within this; a stalled server fails the run, never hangs it.
STALL_TIMEOUT_S = 30.0


@dataclass
class LoadSpec:
    """One load: a single request repeated on ``connections`` connections."""

    port: int
    path: str
    method: str = "GET"
    host: str = "127.0.0.1"
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    connections: int = DEFAULT_CONNECTIONS
    warmup_s: float = 0.0
    duration_s: float = 5.0
    #: When set, send exactly this many requests (no warm-up, no duration) and time them all.
    count: int | None = None


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    error_sample: str | None = None


def build_request(spec: LoadSpec) -> bytes:
    lines = [f"{spec.method} {spec.path} HTTP/1.1", f"host: {spec.host}:{spec.port}"]
    lines += [f"{name}: {value}" for name, value in spec.headers.items()]
    body = spec.body.encode() if spec.body is not None else b""
    if spec.body is not None:
        lines += ["content-type: application/json", f"content-length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class _Load:
    """Shared state of one load: when to stop, and what was measured."""

    def __init__(self, spec: LoadSpec, loop: asyncio.AbstractEventLoop) -> None:
        self.spec = spec
        self.request = build_request(spec)
        self.done: asyncio.Future[None] = loop.create_future()
        self.latencies: list[float] = []
        self.errors = 0
        self.error_sample: str | None = None
        self.sent = 0
        self.busy = 0
        self.measure_from = 0.0
        self.measure_until = 0.0
        self.first_start = 0.0
        self.last_end = 0.0

    def start(self, connections: list[_Connection]) -> None:
        now = time.perf_counter()
        self.first_start = now
        self.measure_from = now + self.spec.warmup_s
        self.measure_until = self.measure_from + self.spec.duration_s
        for conn in connections:
            if not self._send(conn):
                break

    def _send(self, conn: _Connection) -> bool:
        if self.spec.count is not None and self.sent >= self.spec.count:
            return False
        self.sent += 1
        self.busy += 1
        conn.send(self.request)
        return True

    def completed(self, conn: _Connection, status: int, body: bytes, started: float, ended: float) -> None:
        self.busy -= 1
        counted = self.spec.count is not None or self.measure_from <= ended <= self.measure_until
        if counted:
            self.latencies.append(ended - started)
            self.last_end = ended
            if status >= 400:
                self.errors += 1
                if self.error_sample is None:
                    self.error_sample = f"{status} {body[:500].decode(errors='replace')}"
        keep_going = self.spec.count is not None or ended < self.measure_until
        if not (keep_going and self._send(conn)) and self.busy == 0 and not self.done.done():
            self.done.set_result(None)

    def failed(self, exc: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(exc)

    def result(self) -> LoadResult:
        seconds = self.last_end - self.first_start if self.spec.count is not None else self.spec.duration_s
        ordered = sorted(self.latencies)
        n = len(ordered)

        def ms(q: float) -> float:
            return round(ordered[min(n - 1, int(q * n))] * 1000, 3) if n else 0.0

        return LoadResult(
            requests=n,
            errors=self.errors,
            seconds=round(seconds, 3),
            rps=round(n / seconds, 1) if seconds > 0 else 0.0,
            p50_ms=ms(0.50),
            p99_ms=ms(0.99),
            mean_ms=round(sum(ordered) / n * 1000, 3) if n else 0.0,
            max_ms=round(ordered[-1] * 1000, 3) if n else 0.0,
            error_sample=self.error_sample,
        )


class _Connection(asyncio.Protocol):
    """One keep-alive connection; parses responses framed by Content-Length (all our endpoints)."""

    def __init__(self, load: _Load) -> None:
        self.load = load
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.expected = -1
        self.body_from = 0
        self.started = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def send(self, request: bytes) -> None:
        assert self.transport is not None
        self.buffer.clear()
        self.expected = -1
        self.started = time.perf_counter()
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.expected < 0:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            marker = head.find(b"\r\ncontent-length:")
            if marker < 0:
                self.load.failed(RuntimeError(f"response without content-length: {head[:300]!r}"))
                return
            value_end = head.find(b"\r\n", marker + 2)
            length = int(head[marker + 17 : value_end if value_end >= 0 else None])
            self.body_from = end + 4
            self.expected = self.body_from + length
        if len(self.buffer) < self.expected:
            return
        ended = time.perf_counter()
        status = int(self.buffer[9:12])
        body = bytes(self.buffer[self.body_from : self.expected]) if status >= 400 else b""
        self.load.completed(self, status, body, self.started, ended)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.load.done.done():
            self.load.failed(ConnectionError(f"server closed a connection: {exc!r}"))


async def run_load(spec: LoadSpec) -> LoadResult:
    loop = asyncio.get_running_loop()
    load = _Load(spec, loop)
    connections: list[_Connection] = []
    for _ in range(spec.connections):
        _, protocol = await loop.create_connection(lambda: _Connection(load), spec.host, spec.port)
        connections.append(protocol)
    limit = STALL_TIMEOUT_S + (spec.warmup_s + spec.duration_s if spec.count is None else 600.0)
    load.start(connections)
    try:
        await asyncio.wait_for(asyncio.shield(load.done), timeout=limit)
    finally:
        for conn in connections:
            if conn.transport is not None:
                conn.transport.close()
    return load.result()


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings uvloop
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def main() -> None:
    raw: dict[str, Any] = json.loads(sys.stdin.read())
    spec = LoadSpec(**raw)
    with asyncio.Runner(loop_factory=_new_loop) as runner:
        result = runner.run(run_load(spec))
    json.dump(asdict(result), sys.stdout)


if __name__ == "__main__":
    main()
