"""Slow clients are timed out (api/read_timeouts.py): a server process started as `openassistants serve`
with one-second read timeouts closes, with a 408, connections whose headers or body trickle in (a
"slowloris"), many at once, while a normal request, or a body sent in pieces that each come in time,
is answered as usual."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.conftest import TENANT_A_KEY
from tests.processes import ServerProcess, process_env, running

TIMEOUT_SECONDS = 1.0
#: A slow client keeps dripping for this long at most: far past the timeout, so that a connection
#: still open by then was never timed out.
DRIP_FOR_SECONDS = 20 * TIMEOUT_SECONDS
DRIP_EVERY_SECONDS = 0.2
SLOW_CLIENTS = 60


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = process_env(
        api_keys=TENANT_A_KEY,
        header_read_timeout_seconds=str(TIMEOUT_SECONDS),
        body_read_timeout_seconds=str(TIMEOUT_SECONDS),
        access_log="false",
    )
    process = ServerProcess(tmp_path_factory.mktemp("slow-clients"), env)
    with running(process):
        yield process


async def _drip(server: ServerProcess, first: bytes, drip: bytes) -> tuple[bytes, float]:
    """Sends ``first``, then one byte of ``drip`` every DRIP_EVERY_SECONDS, until the server closes the
    connection; returns what it answered and how long the client dripped."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    started = time.monotonic()
    answer = b""
    try:
        writer.write(first)
        position = 0
        while time.monotonic() - started < DRIP_FOR_SECONDS:
            try:
                chunk = await asyncio.wait_for(reader.read(4096), DRIP_EVERY_SECONDS)
            except TimeoutError:  # nothing yet: the next byte, as a slow client would
                if drip:
                    writer.write(drip[position % len(drip) : position % len(drip) + 1])
                    position += 1
                continue
            if not chunk:
                break  # closed by the server
            answer += chunk
    finally:
        writer.close()
    return answer, time.monotonic() - started


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


async def test_headers_that_trickle_in_are_timed_out_with_a_408(server: ServerProcess) -> None:
    answer, dripped = await _drip(server, b"GET /healthz HTTP/1.1\r\n", b"X-Slow: aaaaaaaaaaaaaaaa\r\n")
    assert dripped < DRIP_FOR_SECONDS, "the connection was never closed"
    assert _status(answer) == 408, answer
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert body["error"]["code"] == "request_timeout" and set(body["error"]) == {
        "message",
        "type",
        "param",
        "code",
    }


async def test_a_connection_that_never_sends_a_request_is_closed(server: ServerProcess) -> None:
    answer, dripped = await _drip(server, b"", b"")
    assert dripped < DRIP_FOR_SECONDS and _status(answer) == 408, answer


async def test_a_body_that_stops_half_way_is_timed_out(server: ServerProcess) -> None:
    body = json.dumps({"model": "m", "name": "x" * 100}).encode()
    head = (
        f"POST /v1/assistants HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TENANT_A_KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    answer, dripped = await _drip(server, head + body[:10], b"")
    assert dripped < DRIP_FOR_SECONDS, "the connection was never closed"
    assert _status(answer) in (408, 0), answer  # 408, or closed without a word once the app began


async def test_many_slow_clients_are_closed_while_normal_requests_are_answered(server: ServerProcess) -> None:
    slow = [
        asyncio.create_task(_drip(server, b"GET /healthz HTTP/1.1\r\n", b"X-Slow: a\r\n"))
        for _ in range(SLOW_CLIENTS)
    ]
    headers = {"Authorization": f"Bearer {TENANT_A_KEY}"}
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=30) as http:
        created = await http.post("/assistants", json={"model": "m"})
        assert created.status_code == 200, created.text
        assert (await http.get(f"/assistants/{created.json()['id']}")).status_code == 200
    for answer, dripped in await asyncio.gather(*slow):
        assert dripped < DRIP_FOR_SECONDS and _status(answer) == 408, answer


async def test_a_body_sent_in_pieces_that_each_come_in_time_is_answered(server: ServerProcess) -> None:
    body = json.dumps({"model": "m", "name": "pieces"}).encode()

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 8):
            yield body[start : start + 8]
            await asyncio.sleep(TIMEOUT_SECONDS / 4)  # a slow but live client

    headers = {"Authorization": f"Bearer {TENANT_A_KEY}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=30) as http:
        response = await http.post("/assistants", content=pieces())
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "pieces"
