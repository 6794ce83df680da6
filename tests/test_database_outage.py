"""A PostgreSQL outage is a 503 with ``retry-after`` on every endpoint, and ``/readyz`` a 503 with its
checks: never a 500, whether the database is stopped (connections refused), shutting down (sessions
ended by an administrator command) or starting up again after a crash (``CannotConnectNowError``).

The database is a private PostgreSQL server (tests/private_postgres.py), stopped and restarted while
clients keep asking, so the machine's shared one is never touched."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from openassistants.storage.db import is_connectivity_error
from tests import private_postgres
from tests.conftest import TENANT_A_KEY
from tests.servers import make_settings, running_server
from tests.upstream import ScriptedUpstream

#: Answers each kind of request must have had while the database was down, before it comes back.
ANSWERS_WHILE_DOWN = 3
CLIENTS = 4


@pytest.fixture
def private_pg() -> Iterator[private_postgres.PrivatePostgres]:
    if not private_postgres.available():
        if os.environ.get("OPENASSISTANTS_TEST_REQUIRE_POSTGRES"):
            pytest.fail("PostgreSQL's binaries (initdb, pg_ctl) are required in CI but were not found")
        pytest.skip("PostgreSQL's binaries (initdb, pg_ctl) are not installed")
    with private_postgres.private_postgres() as server:
        yield server


def _requests(ids: dict[str, str]) -> list[tuple[str, str, Any]]:
    thread, assistant = ids["thread"], ids["assistant"]
    return [
        ("GET", "/readyz", None),
        ("GET", "/v1/assistants", None),
        ("POST", "/v1/assistants", {"model": "m"}),
        ("GET", f"/v1/assistants/{assistant}", None),
        ("POST", "/v1/threads", {"messages": [{"role": "user", "content": "hi"}]}),
        ("GET", f"/v1/threads/{thread}", None),
        ("POST", f"/v1/threads/{thread}/messages", {"role": "user", "content": "hi"}),
        ("GET", f"/v1/threads/{thread}/messages", None),
        ("POST", "/v1/threads/runs", {"assistant_id": assistant, "thread": {}}),
        ("GET", "/v1/vector_stores", None),
        ("POST", "/v1/vector_stores", {"name": "x"}),
        ("GET", "/v1/files", None),
    ]


Answer = tuple[str, str, int]


def _violation(method: str, path: str, response: httpx.Response) -> str | None:
    """What is wrong with an answer given during an outage, if anything."""
    status, body = response.status_code, response.json()
    where = f"{method} {path} -> {status}: {body}"
    if status < 300:
        return None
    if status != 503:
        return where
    if path == "/readyz":
        # The database, or the LISTEN connection that reconnects after it, is down.
        checks = body.get("checks", {}).values()
        return None if any(c.startswith("down: ") for c in checks) else where
    if response.headers.get("retry-after") != "1":
        return f"no retry-after: {where}"
    error = body.get("error", {})
    if set(error) != {"message", "type", "param", "code"} or error["type"] != "server_error":
        return where
    return None


class Observer:
    """Every answer, checked as it arrives, and a way to wait until those seen since a mark satisfy a
    condition (failing at the first wrong answer rather than waiting on)."""

    def __init__(self) -> None:
        self.answers: list[Answer] = []
        self.wrong: list[str] = []
        self.changed = asyncio.Event()

    def record(self, method: str, path: str, response: httpx.Response) -> None:
        self.answers.append((method, path, response.status_code))
        if (problem := _violation(method, path, response)) is not None:
            self.wrong.append(problem)
        self.changed.set()

    async def until(self, condition: Callable[[list[Answer]], bool]) -> None:
        """Waits until ``condition`` holds for the answers from now on."""
        mark = len(self.answers)
        while not condition(self.answers[mark:]):
            assert not self.wrong, self.wrong[0]
            self.changed.clear()
            await self.changed.wait()
        assert not self.wrong, self.wrong[0]


def _each_request_answered(
    requests: list[tuple[str, str, Any]], times: int, status: Callable[[int], bool]
) -> Callable[[list[Answer]], bool]:
    def holds(answers: list[Answer]) -> bool:
        return all(
            sum(1 for a in answers if a[:2] == (method, path) and status(a[2])) >= times
            for method, path, _ in requests
        )

    return holds


async def test_every_answer_during_a_postgres_restart_is_a_503_with_retry_after_or_a_success(
    private_pg: private_postgres.PrivatePostgres, tmp_path: Path, upstream: ScriptedUpstream
) -> None:
    settings = make_settings(str(tmp_path), private_pg.url, llm_base_url=upstream.url)
    observer = Observer()
    with running_server(settings) as url:
        headers = {"Authorization": f"Bearer {TENANT_A_KEY}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
            ids = {
                "assistant": (await http.post("/v1/assistants", json={"model": "m"})).json()["id"],
                "thread": (await http.post("/v1/threads", json={})).json()["id"],
            }
            requests = _requests(ids)
            done = asyncio.Event()

            async def client(offset: int) -> None:
                position = offset
                while not done.is_set():
                    method, path, body = requests[position % len(requests)]
                    position += 1
                    observer.record(method, path, await http.request(method, path, json=body))

            clients = [asyncio.create_task(client(n * 3)) for n in range(CLIENTS)]
            try:
                await observer.until(_each_request_answered(requests, 1, lambda s: s < 300))
                # Sessions ended by an administrator command, then connections refused.
                await asyncio.to_thread(private_pg.stop, "fast")
                await observer.until(_each_request_answered(requests, ANSWERS_WHILE_DOWN, lambda s: s == 503))
                await asyncio.to_thread(private_pg.start)
                await observer.until(_each_request_answered(requests, 1, lambda s: s < 300))
                # A crash: the next start recovers first ("the database system is starting up").
                await asyncio.to_thread(private_pg.stop, "immediate")
                await observer.until(_each_request_answered(requests, ANSWERS_WHILE_DOWN, lambda s: s == 503))
                await asyncio.to_thread(private_pg.start)
                await observer.until(_each_request_answered(requests, 1, lambda s: s < 300))
            finally:
                done.set()
                await asyncio.gather(*clients, return_exceptions=True)

    assert not observer.wrong, observer.wrong
    assert any(status == 503 for _, _, status in observer.answers)


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.CannotConnectNowError("the database system is shutting down"),
        asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
        ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)"),
        OSError("Multiple exceptions: [Errno 111] Connect call failed ('127.0.0.1', 5432)"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_the_drivers_words_for_an_unreachable_database_are_connectivity_errors(exc: BaseException) -> None:
    assert is_connectivity_error(exc)
    wrapped = RuntimeError("while reading")
    wrapped.__cause__ = exc
    assert is_connectivity_error(wrapped), "found behind the exception that carries it"


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.exceptions.QueryCanceledError("canceling statement due to statement timeout"),
        asyncpg.exceptions.UniqueViolationError("duplicate key value violates unique constraint"),
        FileNotFoundError(2, "No such file or directory"),
        ValueError("connection refused"),  # the words alone, from no driver
    ],
    ids=lambda e: type(e).__name__,
)
def test_other_failures_are_not_connectivity_errors(exc: BaseException) -> None:
    assert not is_connectivity_error(exc)
