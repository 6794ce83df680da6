"""Issue 4: a bounded mixed load on the scale-out topology, and its verdict.

Simulated users (asyncio, the official SDK with ``max_retries=0`` plus raw httpx for resumed streams)
each repeatedly create a thread, add messages, run it, and read the messages back, spreading their
requests over every API process. A run is one of: ``runs.stream``; ``create_and_poll``; or created on
one API process (plain, or streamed and cut after a few events) and then followed, or resumed with
``Last-Event-ID``, through ``GET …/runs/{id}/events`` on the *other* one.

The verdict, checked while running and by reading everything back at the end:

- no 5xx, no unexpected 4xx, no request without an answer (every status is counted);
- no lost or duplicated message: each thread lists exactly the messages acknowledged to it, in order
  (a thread with a failed write need only hold its acknowledged ones, once each, in order);
- every completed run has exactly one assistant message, with the scripted text; every stream carries
  that text and the run's events in the spec's order (created, queued, in_progress, the message's
  events, completed), ending only after the run's final event; event ids only increase, and a resumed
  stream misses and repeats nothing of the run's whole log;
- no run stuck: at the end every run is terminal or ``requires_action`` (and none ends other than
  ``completed``, since the scripted model never fails).

    python -m bench.load_mixed --duration 180 --users 50 [--apis 2 --workers 1]

starts a fresh PostgreSQL database, the scripted model (its own process), the API processes and the
workers, runs the load from this process, prints a summary, and exits 1 on any violation.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import signal
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import openai

from bench.topology import (
    API_KEY,
    MODEL,
    ReplySpec,
    Topology,
    connect,
    cpu_snapshot,
    cpu_used,
    export_source,
    log_problems,
    topology,
)

#: One HTTP exchange (a whole stream included) must end within this.
REQUEST_TIMEOUT_S = 60.0
#: A run must reach a status its waiter stops at within this.
RUN_TIMEOUT_S = 90.0
#: After the load, how long runs not yet terminal get before they count as stuck.
STUCK_WAIT_S = 45.0
#: The load phase ends this long after ``duration`` at the latest (users finish their current step).
FINISH_GRACE_S = 120.0
#: Concurrency of the final read-back.
VERIFY_CONCURRENCY = 16
#: Violations kept verbatim per kind (all are counted).
KEEP_VIOLATIONS = 5

TERMINAL = frozenset({"completed", "failed", "cancelled", "expired", "incomplete"})
SETTLED = TERMINAL | {"requires_action"}
#: The run events of a one-turn run's stream, in this order.
COMPLETED_RUN_EVENTS = [
    "thread.run.created",
    "thread.run.queued",
    "thread.run.in_progress",
    "thread.run.completed",
]
#: Share of each run mode in the mix.
DEFAULT_MIX = {"stream": 0.4, "poll": 0.3, "resume": 0.3}


# --- measuring --------------------------------------------------------------------------------------


@dataclass
class Target:
    """Where the load goes: the API processes' ``…/v1`` URLs, what the model answers, the database."""

    apis: list[str]
    reply: ReplySpec
    dsn: str | None = None

    @classmethod
    def of(cls, topo: Topology) -> Target:
        return cls([api.base_url for api in topo.apis], topo.reply, topo.dsn)


@dataclass
class LoadConfig:
    users: int = 10
    duration_s: float = 30.0
    seed: int = 0
    mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    #: Read everything back and check it afterwards (off for warm-ups).
    verify: bool = True


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary_ms(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "p50": round(percentile(ms, 50), 1),
        "p99": round(percentile(ms, 99), 1),
        "max": round(max(ms), 1) if ms else float("nan"),
    }


class Recorder:
    """Everything measured: statuses, latencies per operation, runs, and violations by kind."""

    def __init__(self) -> None:
        self.phase = "load"
        self.statuses: dict[str, Counter[int]] = defaultdict(Counter)
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.run_modes: Counter[str] = Counter()
        self.run_outcomes: Counter[str] = Counter()
        self.violations: dict[str, list[str]] = defaultdict(list)
        self.violation_counts: Counter[str] = Counter()
        self.transport_errors: Counter[str] = Counter()

    async def on_response(self, response: httpx.Response) -> None:
        self.statuses[self.phase][response.status_code] += 1
        status = response.status_code
        if status >= 500:
            self.violate("5xx", f"{response.request.method} {response.request.url.path} -> {status}")

    def violate(self, kind: str, detail: str) -> None:
        self.violation_counts[kind] += 1
        if len(self.violations[kind]) < KEEP_VIOLATIONS:
            self.violations[kind].append(detail[:500])

    def failed(self, what: str, exc: BaseException) -> None:
        """A step that raised: a status error (already counted), a transport error, or a timeout."""
        if isinstance(exc, openai.APIStatusError | UnexpectedStatus):
            if exc.status_code < 500:  # 5xx were recorded by on_response
                self.violate("unexpected 4xx", f"{what}: {exc.status_code} {exc}")
        elif isinstance(exc, TimeoutError | openai.APITimeoutError | httpx.TimeoutException):
            self.transport_errors["timeout"] += 1
            self.violate("timeout", f"{what}: {type(exc).__name__} {exc}")
        elif isinstance(exc, openai.APIConnectionError | httpx.TransportError):
            self.transport_errors[type(exc).__name__] += 1
            self.violate("no answer", f"{what}: {type(exc).__name__} {exc} (cause: {exc.__cause__!r})")
        else:
            self.violate("check failed", f"{what}: {type(exc).__name__}: {exc}")

    def time(self, op: str, started: float) -> None:
        self.latencies[op].append(time.perf_counter() - started)


class UnexpectedStatus(Exception):
    """A plain-httpx request answered other than 200."""

    def __init__(self, what: str, status_code: int, body: str) -> None:
        super().__init__(f"{what}: {status_code} {body[:200]}")
        self.status_code = status_code


async def _ensure_ok(response: httpx.Response, what: str) -> None:
    if response.status_code != 200:
        await response.aread()
        raise UnexpectedStatus(what, response.status_code, response.text)


class CheckFailed(Exception):
    """An answer that was well-formed HTTP but wrong (recorded as a violation of its own kind)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


@dataclass
class ThreadLedger:
    """What one thread must hold: acknowledged message ids in order, and its runs."""

    thread_id: str
    messages: list[str] = field(default_factory=list)
    #: run id -> its assistant message id (None until read back)
    runs: dict[str, str | None] = field(default_factory=dict)
    #: A write whose outcome is unknown (it failed): the thread may hold more than acknowledged.
    uncertain: bool = False


@dataclass
class SseEvent:
    id: int | None
    name: str
    data: str


async def read_sse(response: httpx.Response) -> AsyncIterator[SseEvent]:
    event_id: int | None = None
    name = data = ""
    async for line in response.aiter_lines():
        if line.startswith("id: "):
            event_id = int(line[4:])
        elif line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif line == "" and name:
            yield SseEvent(event_id, name, data)
            event_id, name, data = None, "", ""


def _delta_text(data: str) -> str:
    parts = json.loads(data)["delta"].get("content", [])
    return "".join(p.get("text", {}).get("value", "") for p in parts)


def _message_text(message: Any) -> str:
    return "".join(part.text.value for part in message.content if part.type == "text")


class Load:
    """One load: shared clients, the assistant, the recorder and every thread's ledger."""

    def __init__(self, target: Target, config: LoadConfig) -> None:
        self.target = target
        self.config = config
        self.rec = Recorder()
        self.ledgers: list[ThreadLedger] = []
        #: Peak PostgreSQL connections during the load: this topology's database's, and all.
        self.connections = {"database": 0, "all": 0, "max_connections": 0}
        self.assistant_id = ""
        hooks = {"response": [self.rec.on_response]}
        limits = httpx.Limits(max_connections=2000, max_keepalive_connections=500)
        self.sdks = [
            openai.AsyncOpenAI(
                base_url=url,
                api_key=API_KEY,
                max_retries=0,
                timeout=REQUEST_TIMEOUT_S,
                # The SDK's own httpx (httpx2): its default pool (1000 connections) is enough.
                http_client=openai.DefaultAsyncHttpxClient(verify=False, event_hooks=hooks),
            )
            for url in target.apis
        ]
        headers = {"Authorization": f"Bearer {API_KEY}", "OpenAI-Beta": "assistants=v2"}
        self.https = [
            httpx.AsyncClient(
                base_url=url,
                headers=headers,
                timeout=REQUEST_TIMEOUT_S,
                limits=limits,
                event_hooks=hooks,
                verify=False,
            )
            for url in target.apis
        ]

    async def aclose(self) -> None:
        for sdk in self.sdks:
            await sdk.close()
        for http in self.https:
            await http.aclose()

    # --- one user ------------------------------------------------------------------------------

    async def user(self, number: int, deadline: float) -> None:
        rng = random.Random(self.config.seed * 100_003 + number)
        modes = list(self.config.mix)
        weights = [self.config.mix[m] for m in modes]
        while time.monotonic() < deadline:
            try:
                await self.one_thread(rng, number, modes, weights, deadline)
            except Exception as exc:  # a check of this module that broke: counted, and the user goes on
                where = traceback.extract_tb(exc.__traceback__)[-1]
                self.rec.violate("check failed", f"{exc!r} at line {where.lineno}: {where.line}")

    async def one_thread(
        self, rng: random.Random, user: int, modes: list[str], weights: list[float], deadline: float
    ) -> None:
        rec = self.rec
        sdk = rng.choice(self.sdks)
        started = time.perf_counter()
        try:
            thread = await sdk.beta.threads.create(metadata={"user": str(user)})
        except (openai.OpenAIError, httpx.HTTPError) as exc:
            rec.failed("threads.create", exc)
            return
        rec.time("thread.create", started)
        ledger = ThreadLedger(thread.id)
        self.ledgers.append(ledger)
        for turn in range(rng.randint(1, 3)):
            if turn and time.monotonic() >= deadline:
                return
            try:
                await self.one_turn(rng, ledger, user, turn, rng.choices(modes, weights)[0])
            except CheckFailed as exc:
                ledger.uncertain = True  # what the thread holds now is unknown; checked separately
                rec.violate(exc.kind, f"thread {ledger.thread_id}: {exc}")
                return
            except (openai.OpenAIError, httpx.HTTPError, UnexpectedStatus, TimeoutError) as exc:
                ledger.uncertain = True
                rec.failed(f"thread {ledger.thread_id} turn {turn}", exc)
                return

    async def one_turn(
        self, rng: random.Random, ledger: ThreadLedger, user: int, turn: int, mode: str
    ) -> None:
        rec = self.rec
        for n in range(rng.randint(1, 3)):
            sdk = rng.choice(self.sdks)
            started = time.perf_counter()
            message = await sdk.beta.threads.messages.create(
                ledger.thread_id, role="user", content=f"user {user} turn {turn} message {n}"
            )
            rec.time("message.create", started)
            ledger.messages.append(message.id)
        a, b = rng.sample(range(len(self.sdks)), 2) if len(self.sdks) > 1 else (0, 0)
        rec.run_modes[mode] += 1
        started = time.perf_counter()
        async with asyncio.timeout(RUN_TIMEOUT_S):
            if mode == "stream":
                run_id, status = await self.run_streamed(a, ledger.thread_id)
            elif mode == "poll":
                run_id, status = await self.run_polled(a, ledger.thread_id)
            else:
                run_id, status = await self.run_resumed(rng, a, b, ledger.thread_id)
        rec.time(f"run.{mode}", started)
        ledger.runs[run_id] = None
        rec.run_outcomes[status] += 1
        if status != "completed":
            raise CheckFailed("run not completed", f"run {run_id} ({mode}) ended {status}")
        # Read back: the newest message is this run's answer.
        sdk = rng.choice(self.sdks)
        started = time.perf_counter()
        page = await sdk.beta.threads.messages.list(ledger.thread_id, limit=2, order="desc")
        rec.time("message.list", started)
        newest = page.data[0] if page.data else None
        if newest is None or newest.run_id != run_id or newest.role != "assistant":
            raise CheckFailed("lost message", f"run {run_id}: newest message is not its answer: {newest}")
        if _message_text(newest) != self.target.reply.text or newest.status != "completed":
            raise CheckFailed(
                "wrong answer", f"run {run_id}: answer {_message_text(newest)!r} {newest.status}"
            )
        ledger.runs[run_id] = newest.id
        ledger.messages.append(newest.id)

    async def run_streamed(self, api: int, thread_id: str) -> tuple[str, str]:
        started = time.perf_counter()
        text: list[str] = []
        names: list[str] = []
        async with self.sdks[api].beta.threads.runs.stream(
            thread_id=thread_id, assistant_id=self.assistant_id
        ) as stream:
            async for event in stream:
                names.append(event.event)
                if event.event == "thread.message.delta":
                    if not text:
                        self.rec.time("ttft.stream", started)
                    for part in event.data.delta.content or []:
                        if part.type == "text" and part.text is not None:
                            text.append(part.text.value or "")
        run = stream.current_run
        if run is None:
            raise CheckFailed("bad stream", f"stream on thread {thread_id} had no run: {names}")
        self._check_stream(run.id, names, "".join(text))
        return run.id, run.status

    async def run_polled(self, api: int, thread_id: str) -> tuple[str, str]:
        run = await self.sdks[api].beta.threads.runs.create_and_poll(
            thread_id=thread_id, assistant_id=self.assistant_id
        )
        return run.id, run.status

    async def run_resumed(self, rng: random.Random, a: int, b: int, thread_id: str) -> tuple[str, str]:
        """Created on process ``a``; followed (or resumed) on ``b`` through the events endpoint."""
        http_a, http_b = self.https[a], self.https[b]
        first: list[SseEvent] = []
        path = f"/threads/{thread_id}/runs"
        body: dict[str, Any] = {"assistant_id": self.assistant_id}
        if rng.random() < 0.4:
            started = time.perf_counter()
            response = await http_a.post(path, json=body)
            await _ensure_ok(response, "create run")
            self.rec.time("run.create", started)
            run_id = response.json()["id"]
        else:
            cut = rng.randint(1, 14)
            async with http_a.stream("POST", path, json={**body, "stream": True}) as response:
                await _ensure_ok(response, "stream run")
                async for event in read_sse(response):
                    first.append(event)
                    if len(first) >= cut or event.name == "done":
                        break  # the connection drops here
            if not first or first[0].name != "thread.run.created":
                raise CheckFailed("event order", f"stream began {[(e.id, e.name) for e in first]}")
            run_id = json.loads(first[0].data)["id"]
        first = [e for e in first if e.name != "done"]
        headers = {"Last-Event-ID": str(first[-1].id)} if first else {}
        async with http_b.stream("GET", f"{path}/{run_id}/events", headers=headers) as response:
            await _ensure_ok(response, "events")
            rest = [event async for event in read_sse(response)]
        combined = first + rest
        if not combined or combined[-1].name != "done":
            raise CheckFailed("stream ended early", f"run {run_id}: resumed stream did not end with done")
        events = combined[:-1]
        names = [e.name for e in events]
        ids = [e.id for e in events]
        if None in ids or ids != sorted(set(ids)):  # type: ignore[type-var]
            raise CheckFailed("bad stream", f"run {run_id}: event ids repeated or out of order: {ids}")
        text = "".join(_delta_text(e.data) for e in events if e.name == "thread.message.delta")
        status = self._check_stream(run_id, names, text)
        # Nothing missed: the whole log, replayed from any process, is what the two halves showed.
        async with rng.choice(self.https).stream("GET", f"{path}/{run_id}/events") as response:
            await _ensure_ok(response, "events replay")
            replay = [e.id async for e in read_sse(response) if e.name != "done"]
        if replay != ids:
            raise CheckFailed("bad stream", f"run {run_id}: resumed ids {ids} != full log {replay}")
        return run_id, status

    def _check_stream(self, run_id: str, names: list[str], text: str) -> str:
        """The events of one run's stream, in order, and its text; returns the status it ended in."""
        run_events = [
            n for n in names if n.startswith("thread.run.") and not n.startswith("thread.run.step.")
        ]
        final = run_events[-1].removeprefix("thread.run.") if run_events else "none"
        if final not in SETTLED:
            raise CheckFailed(
                "stream ended early", f"run {run_id}: done after {names[-3:]}, no final run event"
            )
        if final != "completed":
            return final
        if run_events != COMPLETED_RUN_EVENTS:
            raise CheckFailed("event order", f"run {run_id}: run events {run_events}")
        deltas = [i for i, name in enumerate(names) if name == "thread.message.delta"]
        opened = names.index("thread.message.created") if "thread.message.created" in names else len(names)
        if (
            names[-1] != "thread.run.completed"
            or names.count("thread.message.created") != 1
            or names.count("thread.message.completed") != 1
            or not deltas
            or not opened < deltas[0] <= deltas[-1] < names.index("thread.message.completed")
        ):
            raise CheckFailed("event order", f"run {run_id}: events {names}")
        if text != self.target.reply.text:
            raise CheckFailed("wrong answer", f"run {run_id}: streamed {text!r}")
        return final

    # --- the verdict ---------------------------------------------------------------------------

    async def verify(self) -> dict[str, Any]:
        """Read every thread back from the API processes and every run's status; then the database."""
        self.rec.phase = "verify"
        gate = asyncio.Semaphore(VERIFY_CONCURRENCY)
        counts: dict[str, Any] = {"threads": len(self.ledgers), "messages": 0, "runs": 0}

        async def one(n: int, ledger: ThreadLedger) -> None:
            sdk = self.sdks[n % len(self.sdks)]
            async with gate:
                try:
                    await self.verify_thread(sdk, ledger, counts)
                except (openai.OpenAIError, httpx.HTTPError, TimeoutError) as exc:
                    self.rec.failed(f"verify {ledger.thread_id}", exc)

        async with asyncio.timeout(STUCK_WAIT_S + FINISH_GRACE_S):
            await asyncio.gather(*(one(n, ledger) for n, ledger in enumerate(self.ledgers)))
        if self.target.dsn is not None:
            try:
                counts["database"] = await self.verify_database()
            except (OSError, asyncpg.PostgresError) as exc:  # e.g. every connection slot taken
                counts["database"] = f"not checked: {exc}"
        return counts

    async def verify_thread(
        self, sdk: openai.AsyncOpenAI, ledger: ThreadLedger, counts: dict[str, Any]
    ) -> None:
        rec = self.rec
        listed = [m async for m in sdk.beta.threads.messages.list(ledger.thread_id, order="asc", limit=100)]
        counts["messages"] += len(listed)
        ids = [m.id for m in listed]
        if len(ids) != len(set(ids)):
            rec.violate("duplicated message", f"thread {ledger.thread_id}: {ids}")
        known = set(ledger.messages)
        seen = [i for i in ids if i in known]
        if seen != ledger.messages:
            missing = [i for i in ledger.messages if i not in ids]
            kind = "lost message" if missing else "message order"
            rec.violate(kind, f"thread {ledger.thread_id}: acknowledged {ledger.messages}, listed {ids}")
        elif not ledger.uncertain and ids != ledger.messages:
            rec.violate("unacknowledged message", f"thread {ledger.thread_id}: {ledger.messages} vs {ids}")
        by_run: dict[str, list[Any]] = defaultdict(list)
        for message in listed:
            if message.run_id is not None:
                by_run[message.run_id].append(message)
        runs = [r async for r in sdk.beta.threads.runs.list(ledger.thread_id, limit=100)]
        counts["runs"] += len(runs)
        listed_runs = {r.id for r in runs}
        if not ledger.runs.keys() <= listed_runs:
            rec.violate(
                "lost run", f"thread {ledger.thread_id}: {sorted(ledger.runs)} vs {sorted(listed_runs)}"
            )
        if not ledger.uncertain and listed_runs != ledger.runs.keys():
            rec.violate("unacknowledged run", f"thread {ledger.thread_id}: {sorted(listed_runs)}")
        for run in runs:
            status: str = run.status
            if status not in SETTLED:
                status = await self.wait_settled(sdk, ledger.thread_id, run.id)
            if status not in SETTLED:
                rec.violate("stuck run", f"run {run.id} still {status} {STUCK_WAIT_S:g} s after the load")
                continue
            if run.id in ledger.runs and status != "completed":
                rec.violate("run not completed", f"run {run.id} ended {status}")
            answers = by_run.get(run.id, [])
            if status == "completed":
                if len(answers) != 1:
                    rec.violate("assistant messages", f"run {run.id}: {len(answers)} assistant messages")
                elif _message_text(answers[0]) != self.target.reply.text or answers[0].role != "assistant":
                    rec.violate("wrong answer", f"run {run.id}: {_message_text(answers[0])!r}")
                elif ledger.runs.get(run.id) not in (None, answers[0].id):
                    rec.violate("assistant messages", f"run {run.id}: answer changed id")

    async def wait_settled(self, sdk: openai.AsyncOpenAI, thread_id: str, run_id: str) -> str:
        deadline = time.monotonic() + STUCK_WAIT_S
        status = "unknown"
        while time.monotonic() < deadline:
            status = (await sdk.beta.threads.runs.retrieve(run_id, thread_id=thread_id)).status
            if status in SETTLED:
                return status
            await asyncio.sleep(0.5)
        return status

    async def verify_database(self) -> dict[str, int]:
        assert self.target.dsn is not None
        conn = await connect(self.target.dsn)
        try:
            rows = await conn.fetch("SELECT status, count(*) AS n FROM runs GROUP BY status")
            held = await conn.fetchval("SELECT count(*) FROM runs WHERE worker_id IS NOT NULL")
        finally:
            await conn.close()
        statuses = {r["status"]: r["n"] for r in rows}
        for status, n in statuses.items():
            if status not in SETTLED:
                self.rec.violate("stuck run", f"database: {n} runs {status}")
        if held:
            self.rec.violate("stuck run", f"database: {held} runs still held by a worker")
        return statuses


async def sample_connections(dsn: str | None, database: str | None, peaks: dict[str, int]) -> None:
    """Once a second until cancelled: PostgreSQL connections to ``database`` and to the whole server."""
    if dsn is None:
        return
    try:
        conn = await connect(dsn, within=0)
    except (OSError, asyncpg.PostgresError):
        return  # no figure rather than no load
    try:
        peaks["max_connections"] = int(await conn.fetchval("SHOW max_connections"))
        while True:
            row = await conn.fetchrow(
                "SELECT count(*) FILTER (WHERE datname = $1) AS mine, count(*) AS total "
                "FROM pg_stat_activity WHERE backend_type = 'client backend'",
                database,
            )
            peaks["database"] = max(peaks["database"], row["mine"])
            peaks["all"] = max(peaks["all"], row["total"])
            await asyncio.sleep(1.0)
    finally:
        await conn.close()


async def run_mixed_load(
    target: Target, config: LoadConfig, pids: dict[str, int] | None = None
) -> dict[str, Any]:
    """Runs ``config`` against ``target``; returns the figures and the verdict (``violations``)."""
    load = Load(target, config)
    try:
        assistant = await load.sdks[0].beta.assistants.create(model=MODEL, name="load")
        load.assistant_id = assistant.id
        database = target.dsn.rsplit("/", 1)[1] if target.dsn else None
        cpu_before = cpu_snapshot(pids or {}, database)
        started = time.monotonic()
        deadline = started + config.duration_s
        users = [asyncio.create_task(load.user(n, deadline)) for n in range(config.users)]
        sampler = asyncio.create_task(sample_connections(target.dsn, database, load.connections))
        done, pending = await asyncio.wait(users, timeout=config.duration_s + FINISH_GRACE_S)
        sampler.cancel()
        await asyncio.gather(sampler, return_exceptions=True)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if pending:
            load.rec.violate(
                "stuck user", f"{len(pending)} users still busy {FINISH_GRACE_S:g} s after the end"
            )
        for task in done:
            if task.exception() is not None:
                load.rec.violate("check failed", f"user crashed: {task.exception()!r}")
        elapsed = time.monotonic() - started
        cpu_after = cpu_snapshot(pids or {}, database)
        verified = await load.verify() if config.verify else {}
    finally:
        await load.aclose()
    return report(load, config, elapsed, verified, cpu_before, cpu_after)


def report(
    load: Load,
    config: LoadConfig,
    elapsed: float,
    verified: dict[str, Any],
    cpu_before: dict[str, float],
    cpu_after: dict[str, float],
) -> dict[str, Any]:
    rec = load.rec
    lat = rec.latencies
    request_ops = ["thread.create", "message.create", "message.list", "run.create"]
    run_ops = ["run.stream", "run.poll", "run.resume"]
    requests = sum(rec.statuses["load"].values())
    completed = rec.run_outcomes["completed"]
    return {
        "users": config.users,
        "duration_s": config.duration_s,
        "elapsed_s": round(elapsed, 1),
        "requests": requests,
        "requests_per_s": round(requests / elapsed, 1),
        "runs": sum(rec.run_modes.values()),
        "runs_completed": completed,
        "runs_per_s": round(completed / elapsed, 2),
        "run_modes": dict(rec.run_modes),
        "run_outcomes": dict(rec.run_outcomes),
        "statuses": {phase: dict(sorted(c.items())) for phase, c in rec.statuses.items()},
        "transport_errors": dict(rec.transport_errors),
        "request_latency_ms": summary_ms([v for op in request_ops for v in lat[op]]),
        "run_latency_ms": summary_ms([v for op in run_ops for v in lat[op]]),
        "ttft_stream_ms": summary_ms(lat["ttft.stream"]),
        "latency_ms": {op: summary_ms(values) for op, values in sorted(lat.items())},
        "cpu_seconds": cpu_used(cpu_before, cpu_after),
        "postgres_connections_peak": load.connections,
        "verified": verified,
        "violations": {kind: rec.violation_counts[kind] for kind in sorted(rec.violation_counts)},
        "violation_samples": dict(rec.violations),
        "ok": not rec.violation_counts,
    }


def render(result: dict[str, Any]) -> str:
    lines = [
        f"users {result['users']}, {result['elapsed_s']} s: {result['requests']} requests "
        f"({result['requests_per_s']}/s), {result['runs_completed']}/{result['runs']} runs completed "
        f"({result['runs_per_s']}/s), modes {result['run_modes']}",
        f"statuses: {result['statuses']}; transport errors: {result['transport_errors'] or 'none'}",
        f"request latency ms: {result['request_latency_ms']}",
        f"run latency ms:     {result['run_latency_ms']}",
        f"stream TTFT ms:     {result['ttft_stream_ms']}",
        f"CPU seconds: {result['cpu_seconds']}",
        f"PostgreSQL connections, peak: {result['postgres_connections_peak']}",
        f"read back: {result['verified']}",
    ]
    if result["ok"]:
        lines.append("VERDICT: OK (no 5xx, nothing lost or duplicated, no run stuck)")
    else:
        lines.append(f"VERDICT: VIOLATIONS {result['violations']}")
        for kind, samples in result["violation_samples"].items():
            for sample in samples:
                lines.append(f"  [{kind}] {sample}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of load")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--apis", type=int, default=2, help="API processes")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--git-ref", help="serve src as of this commit (e.g. HEAD), not the working tree")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    # The SDK marks the Assistants API deprecated; this load exists to use it.
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop the topology on SIGTERM too
    log_dir = Path(tempfile.mkdtemp(prefix="oa-load-"))
    source = export_source(args.git_ref, log_dir)[1] if args.git_ref else None
    config = LoadConfig(users=args.users, duration_s=args.duration, seed=args.seed)
    shape = f"{args.apis} API + {args.workers} worker(s), {args.users} users for {args.duration:g} s"
    print(f"{shape}; logs in {log_dir}", flush=True)
    with topology(args.apis, args.workers, source=source, log_dir=log_dir) as topo:
        result = asyncio.run(run_mixed_load(Target.of(topo), config, topo.pids()))
    result["server_log_problems"] = log_problems(topo)
    print(render(result))
    if result["server_log_problems"]:
        print(f"server logs: {len(result['server_log_problems'])} lines besides requests, e.g.")
        print("\n".join(f"  {line}" for line in result["server_log_problems"][:10]))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    if result["ok"]:
        shutil.rmtree(log_dir, ignore_errors=True)
    else:
        print(f"logs kept in {log_dir}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
