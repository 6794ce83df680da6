"""Real servers for tests: our app under uvicorn in a background thread, on a free loopback port."""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import asyncpg
import uvicorn

from openassistants.app import create_app
from openassistants.config import Settings

T = TypeVar("T")

POSTGRES_ADMIN_DSN = "postgresql://127.0.0.1:5432/test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ThreadedServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the test process owns its signals
        pass


@contextmanager
def serve_in_thread(app: object, port: int) -> Iterator[str]:
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        loop="asyncio",
        timeout_graceful_shutdown=2,
    )
    server = ThreadedServer(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _run_coroutine(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Runs a coroutine to completion from sync code, even while the test's own loop is running."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


def postgres_available() -> bool:
    async def probe() -> bool:
        try:
            conn = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=3)
        except (OSError, asyncpg.PostgresError):
            return False
        await conn.close()
        return True

    return _run_coroutine(probe)


@contextmanager
def temporary_postgres_database() -> Iterator[str]:
    """A fresh database for one test session, dropped afterwards; yields its SQLAlchemy URL."""
    name = f"oa_test_{uuid.uuid4().hex[:12]}"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(POSTGRES_ADMIN_DSN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    _run_coroutine(lambda: run(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+asyncpg://127.0.0.1:5432/{name}"
    finally:
        _run_coroutine(lambda: run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def make_settings(data_dir: str, database_url: str | None, **overrides: object) -> Settings:
    """Test settings: two tenants' keys, no access log; ``overrides`` win (``access_log=True`` too)."""
    defaults: dict[str, object] = {"api_keys": ["sk-test-tenant-a", "sk-test-tenant-b"], "access_log": False}
    return Settings(
        data_dir=data_dir,  # type: ignore[arg-type]
        database_url=database_url,
        **{**defaults, **overrides},  # type: ignore[arg-type]
    )


@contextmanager
def running_server(settings: Settings) -> Iterator[str]:
    with serve_in_thread(create_app(settings), free_port()) as url:
        yield url
