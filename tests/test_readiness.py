"""Liveness (/healthz: the process answers) against readiness (/readyz: the database answers and, on
PostgreSQL, the LISTEN connection is up). Neither needs an API key."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg
import httpx

from tests.conftest import Server
from tests.servers import POSTGRES_ADMIN_DSN, make_settings, running_server

#: How long a recovered database may take to be seen: the LISTEN connection retries with backoff.
RECOVERY_DEADLINE_SECONDS = 30.0


async def test_ready_and_live_without_an_api_key(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        live = await http.get("/healthz")
        ready = await http.get("/readyz")
    assert live.status_code == 200 and live.json() == {"status": "ok"}
    assert ready.status_code == 200
    expected = {"database": "ok"} if server.backend == "sqlite" else {"database": "ok", "listen": "ok"}
    assert ready.json() == {"status": "ok", "checks": expected}


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(POSTGRES_ADMIN_DSN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def test_not_ready_while_postgres_refuses_connections_then_ready_again(
    pg_url: str, tmp_path: Path
) -> None:
    # The server must start with its database (it migrates first); the outage comes afterwards.
    # (SQLite has no such outage: the database is a file the process already has open.)
    name = pg_url.rsplit("/", 1)[1]
    with running_server(make_settings(str(tmp_path), pg_url)) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            assert (await http.get("/readyz")).status_code == 200
            await _admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            try:
                # The timeout makes each call wait until that backend has exited.
                await _admin(
                    "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                    f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
                )
                down = await http.get("/readyz")
                live = await http.get("/healthz")
                scraped = await http.get("/metrics")
            finally:
                await _admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')

            assert live.status_code == 200, "liveness does not depend on the database"
            assert down.status_code == 503
            body = down.json()
            assert body["status"] == "unavailable"
            assert body["checks"]["database"].startswith("down: ")
            assert body["checks"]["listen"] == "down: the LISTEN connection is closed"
            # A scrape still answers, with the process's own metrics and without the database's.
            assert scraped.status_code == 200
            assert "openassistants_http_request_duration_seconds_count" in scraped.text
            assert "openassistants_runs" not in scraped.text

            # Connections allowed again: ready as soon as the LISTEN connection is back.
            deadline = time.monotonic() + RECOVERY_DEADLINE_SECONDS
            while (ready := await http.get("/readyz")).status_code != 200:
                assert time.monotonic() < deadline, ready.json()
                await asyncio.sleep(0.05)  # probing interval, as an orchestrator's
            assert ready.json() == {"status": "ok", "checks": {"database": "ok", "listen": "ok"}}
