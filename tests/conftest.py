"""Fixtures: a real server per database backend, and official SDK clients pointed at it."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from tests import outside_reads
from tests.leftover_mounts import unmount_leftovers
from tests.servers import (
    make_settings,
    postgres_available,
    running_server,
    temporary_postgres_database,
)
from tests.spec import SpecChecker
from tests.upstream import ScriptedUpstream, scripted_upstream

# Fail any test that reads beside the repository: a fresh clone has nothing there.
outside_reads.install()


def pytest_sessionstart(session: pytest.Session) -> None:
    unmount_leftovers()  # before pytest clears old temporary folders


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    unmount_leftovers()  # killed servers' kernel mounts, before pytest removes this run's folders


TENANT_A_KEY = "sk-test-tenant-a"
TENANT_B_KEY = "sk-test-tenant-b"


@dataclass
class Server:
    url: str
    backend: str

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if name == "postgres" and not postgres_available():
        if os.environ.get("OPENASSISTANTS_TEST_REQUIRE_POSTGRES"):
            pytest.fail("PostgreSQL at 127.0.0.1:5432 is required in CI but is not reachable")
        pytest.skip("PostgreSQL at 127.0.0.1:5432 is not reachable")
    return name


@pytest.fixture(scope="session")
def database_url(backend: str) -> Iterator[str | None]:
    if backend == "postgres":
        with temporary_postgres_database() as url:
            yield url
    else:
        yield None


def _run_settings(upstream: ScriptedUpstream) -> dict[str, object]:
    """Settings every test server shares: the scripted model, and quick retries."""
    return {"llm_base_url": upstream.url, "llm_retry_backoff_seconds": 0.01}


@pytest.fixture(scope="session")
def server(
    backend: str,
    database_url: str | None,
    upstream: ScriptedUpstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp(f"data-{backend}")
    settings = make_settings(str(data_dir), database_url, **_run_settings(upstream))
    with running_server(settings) as url:
        yield Server(url=url, backend=backend)


ServerFactory = Callable[..., AbstractContextManager[Server]]


@pytest.fixture
def server_factory(backend: str, upstream: ScriptedUpstream, tmp_path: Path) -> ServerFactory:
    """Starts an extra server with setting overrides, on a database of its own (same backend)."""

    @contextmanager
    def start(**overrides: object) -> Iterator[Server]:
        with ExitStack() as stack:
            url = None
            if backend == "postgres":
                url = stack.enter_context(temporary_postgres_database())
            data_dir = tmp_path / f"data-{uuid.uuid4().hex[:8]}"
            settings = make_settings(str(data_dir), url, **{**_run_settings(upstream), **overrides})
            base = stack.enter_context(running_server(settings))
            yield Server(url=base, backend=backend)

    return start


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database of its own, for multi-process tests (PostgreSQL only)."""
    if not postgres_available():
        if os.environ.get("OPENASSISTANTS_TEST_REQUIRE_POSTGRES"):
            pytest.fail("PostgreSQL at 127.0.0.1:5432 is required in CI but is not reachable")
        pytest.skip("PostgreSQL at 127.0.0.1:5432 is not reachable")
    with temporary_postgres_database() as url:
        yield url


@pytest.fixture
def model() -> str:
    """A model name of this test's own, for scripting the upstream's turns."""
    return f"script-{uuid.uuid4().hex}"


def sdk_client(server: Server, api_key: str = TENANT_A_KEY) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base_url, api_key=api_key, max_retries=0)


@pytest.fixture
async def client(server: Server) -> AsyncIterator[openai.AsyncOpenAI]:
    async with sdk_client(server) as c:
        yield c


@pytest.fixture
async def other_tenant(server: Server) -> AsyncIterator[openai.AsyncOpenAI]:
    async with sdk_client(server, TENANT_B_KEY) as c:
        yield c


# Clients whose every response is checked against the OpenAPI spec, with no 5xx and an x-request-id
# (tests/spec.py); the check fails the test at teardown.


@pytest.fixture
def spec_checker() -> Iterator[SpecChecker]:
    checker = SpecChecker()
    yield checker
    checker.assert_clean()


def checked_sdk_client(
    server: Server, checker: SpecChecker, api_key: str = TENANT_A_KEY
) -> openai.AsyncOpenAI:
    # verify=False: plain HTTP on loopback, and loading the CA bundle costs ~80 ms per client.
    http_client = openai.DefaultAsyncHttpxClient(verify=False, event_hooks={"response": [checker]})
    return openai.AsyncOpenAI(
        base_url=server.base_url,
        api_key=api_key,
        max_retries=0,
        http_client=http_client,
        # The SDK also checks every field's presence and type against its own models (spec §1).
        _strict_response_validation=True,
    )


@pytest.fixture
async def sdk(server: Server, spec_checker: SpecChecker) -> AsyncIterator[openai.AsyncOpenAI]:
    """Tenant A's SDK client, spec-checked."""
    async with checked_sdk_client(server, spec_checker) as c:
        yield c


@pytest.fixture
async def sdk_b(server: Server, spec_checker: SpecChecker) -> AsyncIterator[openai.AsyncOpenAI]:
    """Tenant B's SDK client, spec-checked."""
    async with checked_sdk_client(server, spec_checker, TENANT_B_KEY) as c:
        yield c


@pytest.fixture
async def raw(server: Server, spec_checker: SpecChecker) -> AsyncIterator[httpx.AsyncClient]:
    """Plain httpx as tenant A, for requests the SDK cannot send (bad JSON, odd headers); spec-checked."""
    headers = {"Authorization": f"Bearer {TENANT_A_KEY}", "OpenAI-Beta": "assistants=v2"}
    async with httpx.AsyncClient(
        base_url=server.base_url, headers=headers, verify=False, event_hooks={"response": [spec_checker]}
    ) as c:
        yield c


# Tenants nobody else writes to, for tests that check whole lists (pagination, property tests): a
# second server that accepts all these keys; each test takes a key no test has used.
ISOLATED_TENANT_KEYS = tuple(f"sk-test-isolated-{i}" for i in range(200))
_unused_isolated_keys = iter(ISOLATED_TENANT_KEYS)


@pytest.fixture(scope="session")
def isolated_server(
    backend: str, upstream: ScriptedUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    # A database of its own: two servers on one PostgreSQL database are one deployment, and this
    # one's executor would take the main server's runs.
    with ExitStack() as stack:
        url = stack.enter_context(temporary_postgres_database()) if backend == "postgres" else None
        data_dir = str(tmp_path_factory.mktemp(f"isolated-{backend}"))
        settings = make_settings(
            data_dir, url, api_keys=list(ISOLATED_TENANT_KEYS), **_run_settings(upstream)
        )
        with running_server(settings) as base:
            yield Server(url=base, backend=backend)


def take_isolated_key() -> str:
    """An API key of ``isolated_server`` that no test has used yet: an empty tenant."""
    key = next(_unused_isolated_keys, None)
    assert key is not None, "every isolated tenant is used: raise len(ISOLATED_TENANT_KEYS)"
    return key


@pytest.fixture
def isolated_key(isolated_server: Server) -> str:
    return take_isolated_key()


# The scripted model server (tests/upstream.py), one per session; each test scripts its own model name.


@pytest.fixture(scope="session")
def upstream() -> Iterator[ScriptedUpstream]:
    with scripted_upstream() as scripted:
        yield scripted
