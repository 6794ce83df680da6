"""Issue 14 (finding 5): does a server's memory stay flat under a steady mixed load?

One ``openassistants serve`` process per backend (SQLite, then PostgreSQL), each on a fresh database,
with the scripted model (tests/upstream.py) serving in this process. ``--users`` simulated users, each
with the official SDK, repeat one cycle for ``--minutes``:

- create an assistant with a function tool and a thread with a message; add a message;
- a streamed run (``runs.stream``) answered in text;
- a run calling the function: ``create_and_poll`` to ``requires_action``, then
  ``submit_tool_outputs_and_poll`` to ``completed``;
- every third cycle, a streamed run whose thread is deleted after its first delta (mid-stream); every
  third cycle (shifted), a run whose thread is deleted while it waits in ``requires_action``;
- delete the thread and the assistant.

The server's RSS (``/proc/<pid>/status``) is sampled every ``--sample-seconds``. Growth is measured
from the end of the warm-up (``--warmup-minutes``) to the end, so the tokenizer's tables, the
kernels' pool and the caches that fill once are not counted.

    python -m bench.soak --minutes 10 [--git-ref main] [--backends sqlite,postgres]

With ``--git-ref``, the server runs that commit's ``src`` (exported, bench/topology.py) instead of
the working tree's, so a baseline can be measured on the same machine the same hour.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
import uuid
import warnings
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai

from bench.harness import machine, save_results
from bench.topology import API_KEY, ApiProcess, export_source, postgres_database, process_env
from tests.upstream import Reply, ScriptedUpstream, ToolCalls, scripted_upstream

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
#: The text reply: 24 chunks, 5 ms apart, a few hundred bytes of events per run.
ANSWER = Reply(" ".join(f"word{n}" for n in range(24)), chunks=[f"word{n} " for n in range(24)], delay=0.005)
#: A reply slow enough that the thread is deleted while it streams.
SLOW = Reply("slow " * 200, chunks=["slow "] * 200, delay=0.02)
#: One request must answer within this (a stream: end within it).
REQUEST_TIMEOUT_S = 60.0


@dataclass
class Soak:
    backend: str
    source: str
    minutes: float
    users: int
    samples: list[tuple[float, float]] = field(default_factory=list)
    cycles: int = 0
    runs: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    tracebacks: int = 0

    def error(self, what: str, exc: BaseException) -> None:
        key = f"{what}: {type(exc).__name__}"
        self.errors[key] = self.errors.get(key, 0) + 1

    def summary(self, warmup_s: float) -> dict[str, Any]:
        after = [mb for t, mb in self.samples if t >= warmup_s]
        start = after[0] if after else float("nan")
        return {
            "backend": self.backend,
            "source": self.source,
            "rss_start_mb": round(self.samples[0][1], 1) if self.samples else None,
            "rss_after_warmup_mb": round(start, 1),
            "rss_end_mb": round(after[-1], 1) if after else None,
            "rss_max_mb": round(max(mb for _, mb in self.samples), 1) if self.samples else None,
            "growth_after_warmup_mb": round(after[-1] - start, 1) if after else None,
            "cycles": self.cycles,
            "runs": self.runs,
            "errors": self.errors,
            "tracebacks_logged": self.tracebacks,
        }


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


async def user(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, soak: Soak, number: int, deadline: float
) -> None:
    cycle = 0
    while time.monotonic() < deadline:
        cycle += 1
        model = f"soak-{number}-{uuid.uuid4().hex[:8]}"
        try:
            await one_cycle(client, upstream, soak, model, cycle + number)
            soak.cycles += 1
        except (openai.OpenAIError, TimeoutError) as exc:
            soak.error("cycle", exc)
            await asyncio.sleep(0.5)


async def one_cycle(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, soak: Soak, model: str, cycle: int
) -> None:
    assistant = await client.beta.assistants.create(model=model, tools=[WEATHER_TOOL])  # type: ignore[list-item]
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "hello " * 20}])
    await client.beta.threads.messages.create(thread.id, role="user", content="and the weather?")
    upstream.script(model, ANSWER)
    async with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as stream:
        await stream.until_done()
    soak.runs += 1
    upstream.script(model, ToolCalls([("get_weather", '{"city": "Paris"}')]), ANSWER)
    run = await client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    if run.required_action is not None:
        calls = run.required_action.submit_tool_outputs.tool_calls
        await client.beta.threads.runs.submit_tool_outputs_and_poll(
            run_id=run.id,
            thread_id=thread.id,
            tool_outputs=[{"tool_call_id": c.id, "output": "sunny"} for c in calls],
        )
    soak.runs += 1
    if cycle % 3 == 0:
        upstream.script(model, SLOW)
        async with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as stream:
            async for event in stream:
                if event.event == "thread.message.delta":
                    await client.beta.threads.delete(thread.id)
                    break
        soak.runs += 1
    elif cycle % 3 == 1:
        upstream.script(model, ToolCalls([("get_weather", '{"city": "Oslo"}')]))
        await client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
        await client.beta.threads.delete(thread.id)
        soak.runs += 1
    else:
        await client.beta.threads.delete(thread.id)
    await client.beta.assistants.delete(assistant.id)


async def sample(pid: int, soak: Soak, every: float, deadline: float) -> None:
    started = time.monotonic()
    while time.monotonic() < deadline:
        soak.samples.append((time.monotonic() - started, rss_mb(pid)))
        await asyncio.sleep(every)
    soak.samples.append((time.monotonic() - started, rss_mb(pid)))


async def drive(server: ApiProcess, upstream: ScriptedUpstream, soak: Soak, sample_s: float) -> None:
    deadline = time.monotonic() + soak.minutes * 60
    client = openai.AsyncOpenAI(
        base_url=server.base_url, api_key=API_KEY, max_retries=0, timeout=REQUEST_TIMEOUT_S
    )
    async with client:
        await asyncio.gather(
            sample(server.pid, soak, sample_s, deadline),
            *(user(client, upstream, soak, n, deadline) for n in range(soak.users)),
        )


def soak_one(backend: str, source: Path | None, label: str, args: argparse.Namespace) -> dict[str, Any]:
    soak = Soak(backend, label, args.minutes, args.users)
    with ExitStack() as stack, scripted_upstream() as upstream:
        upstream.default = ANSWER
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="oa-soak-")))
        settings = {"api_keys": API_KEY, "llm_base_url": upstream.url}
        if backend == "postgres":
            settings["database_url"] = stack.enter_context(postgres_database())
        server = ApiProcess(f"soak-{backend}", process_env(source, **settings), data_dir)
        server.start()
        stack.callback(server.stop)
        server.wait_ready()
        asyncio.run(drive(server, upstream, soak, args.sample_seconds))
        server.stop()
        log = server.log.read_text(errors="replace")
        soak.tracebacks = log.count("Traceback (most recent call last)")
    return soak.summary(args.warmup_minutes * 60) | {"samples": soak.samples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="load per backend and source")
    parser.add_argument("--warmup-minutes", type=float, default=1.0)
    parser.add_argument("--users", type=int, default=6)
    parser.add_argument("--sample-seconds", type=float, default=5.0)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--git-ref", help="measure this commit's server (e.g. main), not the working tree")
    args = parser.parse_args()
    warnings.simplefilter("ignore", DeprecationWarning)  # the SDK's, on every Assistants call
    scratch = Path(tempfile.mkdtemp(prefix="oa-soak-src-"))
    sources: list[tuple[Path | None, str]] = [(None, "working tree")]
    if args.git_ref:
        commit, path = export_source(args.git_ref, scratch)
        sources = [(path, f"{args.git_ref} ({commit[:10]})")]
    results: dict[str, Any] = {"machine": machine(), "args": vars(args), "soaks": []}
    try:
        for source, label in sources:
            for backend in args.backends.split(","):
                result = soak_one(backend, source, label, args)
                results["soaks"].append(result)
                print(json.dumps({k: v for k, v in result.items() if k != "samples"}), flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"saved {save_results('soak', results)}")


if __name__ == "__main__":
    main()
