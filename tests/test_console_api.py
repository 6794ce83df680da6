"""The server side of the web console: ``GET /v1/threads`` (an extension: the hosted API cannot list
threads), the page and its static files, and the files shipped as package data.

The thread list is read as an SDK user would read any list: with the SDK's own cursor pages
(``get_api_list``), and with the raw client for what the SDK cannot send.
"""

from __future__ import annotations

import fnmatch
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import openai
import pytest
from openai._base_client import AsyncPaginator
from openai.pagination import AsyncCursorPage
from openai.types.beta import Thread

from tests.conftest import TENANT_B_KEY, Server, checked_sdk_client
from tests.spec import SpecChecker, assert_api_error, assert_conforms

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
async def isolated_sdk(
    isolated_server: Server, isolated_key: str, spec_checker: SpecChecker
) -> AsyncIterator[openai.AsyncOpenAI]:
    """An SDK client in a tenant nobody else writes to, so whole lists can be counted."""
    async with checked_sdk_client(isolated_server, spec_checker, isolated_key) as client:
        yield client


def list_threads(
    client: openai.AsyncOpenAI, **params: object
) -> AsyncPaginator[Thread, AsyncCursorPage[Thread]]:
    return client.get_api_list(
        "/threads", page=AsyncCursorPage[Thread], model=Thread, options={"params": params}
    )


async def test_threads_are_listed_newest_first_with_cursors(isolated_sdk: openai.AsyncOpenAI) -> None:
    created = [(await isolated_sdk.beta.threads.create(metadata={"n": str(n)})).id for n in range(5)]

    first = await list_threads(isolated_sdk, limit=2)
    assert [t.id for t in first.data] == created[::-1][:2]
    assert first.has_more
    assert first.data[0].metadata == {"n": "4"}
    walked = [t.id async for t in list_threads(isolated_sdk, limit=2)]
    assert walked == created[::-1]  # the SDK's auto-pagination follows our cursors to the end

    ascending = await list_threads(isolated_sdk, order="asc", after=created[1], limit=10)
    assert [t.id for t in ascending.data] == created[2:]
    assert not ascending.has_more
    before = await list_threads(isolated_sdk, order="asc", before=created[3], limit=2)
    assert [t.id for t in before.data] == created[1:3]

    await isolated_sdk.beta.threads.delete(created[0])
    remaining = [t.id async for t in list_threads(isolated_sdk, order="asc")]
    assert remaining == created[1:]
    # A deleted thread's id still works as a cursor, as for every other list.
    await isolated_sdk.beta.threads.delete(created[2])
    after_deleted = await list_threads(isolated_sdk, order="asc", after=created[2])
    assert [t.id for t in after_deleted.data] == created[3:]


async def test_thread_list_shape_and_tenant_scope(
    raw: httpx.AsyncClient, server: Server, spec_checker: SpecChecker
) -> None:
    thread = (await raw.post("/threads", json={"metadata": {"k": "v"}})).json()
    response = await raw.get("/threads", params={"limit": 100})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"object", "data", "first_id", "last_id", "has_more"}
    assert body["object"] == "list"
    assert body["first_id"] == body["data"][0]["id"] and body["last_id"] == body["data"][-1]["id"]
    for item in body["data"]:
        assert_conforms("ThreadObject", item)
    assert thread["id"] in [t["id"] for t in body["data"]]

    async with checked_sdk_client(server, spec_checker, TENANT_B_KEY) as other:
        theirs = [t.id async for t in list_threads(other, limit=100)]
    assert thread["id"] not in theirs


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"order": "up"}, "order"),
        ({"after": "thread_x"}, "after"),
    ],
)
async def test_bad_thread_list_parameters_are_400(
    raw: httpx.AsyncClient, params: dict[str, str | int], param: str
) -> None:
    response = await raw.get("/threads", params=params)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_thread_list_needs_a_key(server: Server) -> None:
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-wrong", max_retries=0) as client:
        with pytest.raises(openai.AuthenticationError) as raised:
            await list_threads(client)
    assert_api_error(raised.value, 401, code="invalid_api_key")


async def test_the_page_and_its_assets_are_served_without_a_key(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        page = await http.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["x-content-type-options"] == "nosniff"
        assert '<script type="module" src="/console/js/app.js">' in page.text

        script = await http.get("/console/js/app.js")
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
        again = await http.get("/console/js/app.js", headers={"if-none-match": script.headers["etag"]})
        assert again.status_code in (200, 304)

        for path in ("/console/../config.py", "/console/js/nothing.js", "/console/%2e%2e/app.py"):
            missing = await http.get(path)
            assert missing.status_code == 404, path
            assert missing.json()["error"]["type"] == "invalid_request_error"


def test_every_console_file_is_package_data() -> None:
    """pyproject's package-data globs cover every file of the console, so wheels ship the whole of it."""
    package = ROOT / "src" / "openassistants"
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    files = [p.relative_to(package).as_posix() for p in (package / "console").rglob("*") if p.is_file()]
    assert "console/index.html" in files and "console/js/app.js" in files
    for name in files:
        assert any(
            fnmatch.fnmatch(name, glob) and name.count("/") == glob.count("/")
            for glob in globs["openassistants"]
        ), f"{name} is not package data"
