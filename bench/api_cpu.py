"""Issue 2, the quiet measure: CPU time per request with the app called directly as an ASGI app.

No HTTP and no second process: requests are handed to ``create_app(settings)`` (and to the bare
``bench.hello_server`` app, the baseline) as ASGI calls, 16 in flight, and the process's CPU time
(every thread, so the SQLite writer's too) is divided by the number of requests. The machine's
background load barely moves this figure, unlike requests/s over HTTP; each figure is the minimum
over rounds. The server is configured as the HTTP benchmark runs it: API keys and its JSON access log
(to a file).

    python -m bench.api_cpu [--rounds 5] [--requests 2000] [--data DIR] [--ops retrieve,list,create]
                            [--database-url postgresql+asyncpg://...]

The database (an assistant and a thread of 10,000 messages) is kept in DIR between runs on SQLite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvloop

from bench.api_crud import API_KEY, INITIAL_MESSAGES, MESSAGE_TEXT, THREAD_MESSAGES
from openassistants.app import create_app
from openassistants.config import Settings

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
IN_FLIGHT = 16
HEADERS = [
    (b"host", b"127.0.0.1"),
    (b"authorization", f"Bearer {API_KEY}".encode()),
    (b"openai-beta", b"assistants=v2"),
    (b"user-agent", b"bench"),
    (b"accept", b"application/json"),
]


async def call(app: ASGIApp, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    """One request through the ASGI app; returns the status and the whole body."""
    raw_path, _, query = path.partition("?")
    headers = list(HEADERS)
    if body:
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": raw_path,
        "raw_path": raw_path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
        "app": app,
    }
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()  # a disconnect never comes
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    status = 0
    chunks: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


async def checked_call(app: ASGIApp, method: str, path: str, body: bytes = b"") -> bytes:
    status, answer = await call(app, method, path, body)
    if status != 200:
        raise RuntimeError(f"{method} {path}: {status} {answer[:300]!r}")
    return answer


async def cpu_per_request(app: ASGIApp, method: str, path: str, body: bytes, count: int) -> float:
    """Microseconds of process CPU time per request, ``count`` requests with IN_FLIGHT in flight."""
    remaining = count

    async def client() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await checked_call(app, method, path, body)

    started = time.process_time()
    await asyncio.gather(*(client() for _ in range(IN_FLIGHT)))
    return (time.process_time() - started) / count * 1e6


async def seed(app: ASGIApp, state_file: Path) -> dict[str, str]:
    if state_file.exists():
        return dict(json.loads(state_file.read_text()))
    answer = await checked_call(
        app,
        "POST",
        "/v1/assistants",
        json.dumps(
            {
                "model": "gpt-4o",
                "name": "Finance helper",
                "instructions": "You answer questions about the attached reports. " * 8,
                "tools": [{"type": "code_interpreter"}, {"type": "file_search"}],
                "metadata": {"team": "finance", "env": "bench"},
            }
        ).encode(),
    )
    assistant_id = json.loads(answer)["id"]
    first = [{"role": "user", "content": MESSAGE_TEXT}] * INITIAL_MESSAGES
    answer = await checked_call(app, "POST", "/v1/threads", json.dumps({"messages": first}).encode())
    thread_id = json.loads(answer)["id"]
    body = json.dumps({"role": "user", "content": MESSAGE_TEXT}).encode()
    await cpu_per_request(
        app, "POST", f"/v1/threads/{thread_id}/messages", body, THREAD_MESSAGES - INITIAL_MESSAGES
    )
    ids = {"assistant_id": assistant_id, "thread_id": thread_id}
    state_file.write_text(json.dumps(ids))
    return ids


async def measure(args: argparse.Namespace) -> dict[str, float]:
    from bench.hello_server import app as hello_app

    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(data / "access.log")
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    overrides: dict[str, Any] = {"data_dir": data, "api_keys": API_KEY, "execute_runs": False}
    if args.database_url:
        overrides["database_url"] = args.database_url
    settings = Settings(**overrides)
    app = create_app(settings)
    results: dict[str, list[float]] = {}
    async with app.router.lifespan_context(app):
        suffix = "pg" if args.database_url else "sqlite"
        ids = await seed(app, data / f"seed-{suffix}.json")
        messages = f"/v1/threads/{ids['thread_id']}/messages"
        create_body = json.dumps({"role": "user", "content": MESSAGE_TEXT}).encode()
        ops: dict[str, tuple[ASGIApp, str, str, bytes]] = {
            "hello": (hello_app, "GET", "/hello", b""),
            "healthz": (app, "GET", "/healthz", b""),
            "retrieve": (app, "GET", f"/v1/assistants/{ids['assistant_id']}", b""),
            "list": (app, "GET", messages + "?limit=20", b""),
            "create": (app, "POST", messages, create_body),
        }
        chosen = [o for o in ops if o in args.ops.split(",") or o in ("hello", "healthz")]
        for _ in range(args.rounds):
            for name in chosen:
                target, method, path, body = ops[name]
                count = args.requests if name != "create" else max(1, args.requests // 4)
                await cpu_per_request(target, method, path, body, count // 10)  # warm up
                results.setdefault(name, []).append(await cpu_per_request(target, method, path, body, count))
    return {name: min(values) for name, values in results.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--data", default="/tmp/oa-api-cpu")
    parser.add_argument("--ops", default="retrieve,list,create")
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args(argv)
    figures = uvloop.run(measure(args))
    for name, micros in figures.items():
        print(f"{name:10s} {micros:8.1f} µs CPU/request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
