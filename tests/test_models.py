"""Models made obvious: GET /v1/models over two upstreams, wildcard routes, and runs whose model cannot
be reached (the message names the URL and the setting; the server logs it), through the official SDK."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Iterator

import httpx
import openai
import pytest

from openassistants.config import Settings
from openassistants.upstream.routes import Routes
from tests.conftest import ServerFactory, checked_sdk_client, sdk_client
from tests.servers import free_port
from tests.spec import SpecChecker
from tests.upstream import Reply, ScriptedUpstream, scripted_upstream

SECOND_KEY = "sk-second-upstream-0123456789"


def new_name(prefix: str = "script") -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


@pytest.fixture
def second() -> Iterator[ScriptedUpstream]:
    with scripted_upstream(api_key=SECOND_KEY) as scripted:
        yield scripted


async def _run(client: openai.AsyncOpenAI, model: str) -> openai.types.beta.threads.Run:
    assistant = await client.beta.assistants.create(model=model)
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "hello"}])
    return await client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)


async def _reply(client: openai.AsyncOpenAI, run: openai.types.beta.threads.Run) -> str:
    messages = await client.beta.threads.messages.list(run.thread_id, run_id=run.id)
    return "".join(part.text.value for part in messages.data[0].content if part.type == "text")


async def _logged(caplog: pytest.LogCaptureFixture, logger: str, *words: str) -> logging.LogRecord:
    """The first record of ``logger`` holding every word; waits for it (start-up logs in the background)."""
    deadline = time.monotonic() + 15
    while True:
        for record in caplog.records:
            if record.name == logger and all(word in record.getMessage() for word in words):
                return record
        assert time.monotonic() < deadline, f"no {logger} record with {words}"
        await asyncio.sleep(0.05)


# --- GET /v1/models


async def test_models_lists_both_upstreams_and_the_routed_names(
    server_factory: ServerFactory,
    upstream: ScriptedUpstream,
    second: ScriptedUpstream,
    spec_checker: SpecChecker,
    model: str,
) -> None:
    served, unlisted = new_name(), new_name()
    upstream.script(model, Reply("first"))  # what each scripted server lists: the names it was given
    second.script(served, Reply("second"))
    dead = f"http://127.0.0.1:{free_port()}/v1"
    routes = {
        "gpt-4o": {"base_url": second.url, "api_key": SECOND_KEY, "model": served},
        "gpt-4*": {"base_url": second.url, "api_key": SECOND_KEY, "model": served},
        "org/alias-x": {"base_url": second.url, "api_key": SECOND_KEY, "model": unlisted},
        "on-a-dead-server": {"base_url": dead},
    }
    with server_factory(llm_routes=json.dumps(routes)) as server:
        async with checked_sdk_client(server, spec_checker) as client:
            listed = [m async for m in client.models.list()]
            alias = await client.models.retrieve("gpt-4o")
            slashed = await client.models.retrieve("org/alias-x")
            own = await client.models.retrieve(model)
            with pytest.raises(openai.NotFoundError) as unknown:
                await client.models.retrieve("no-such-model")
            with pytest.raises(openai.NotFoundError):
                await client.models.retrieve("gpt-4*")  # a pattern names no model
        async with httpx.AsyncClient(base_url=server.base_url) as anonymous:
            refused = await anonymous.get("/models")

    ids = [m.id for m in listed]
    assert ids == sorted(ids) and len(ids) == len(set(ids))
    # Both upstreams' models, the exact route names (a dead upstream's too), no pattern.
    assert {model, served, "gpt-4o", "org/alias-x", "on-a-dead-server"} <= set(ids)
    assert "gpt-4*" not in ids
    assert all(m.object == "model" and isinstance(m.created, int) for m in listed)
    # A routed name shows the model it is sent as, where its upstream lists that one.
    assert (alias.id, alias.object, alias.owned_by) == ("gpt-4o", "model", "scripted")
    assert (slashed.id, slashed.owned_by) == ("org/alias-x", "openassistants")
    assert (own.id, own.owned_by) == (model, "scripted")
    assert unknown.value.code == "model_not_found" and unknown.value.param == "model"
    assert unknown.value.body == {
        "message": "The model 'no-such-model' does not exist",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }
    assert refused.status_code == 401


async def test_a_dead_default_upstream_still_lists_the_routes(
    server_factory: ServerFactory, second: ScriptedUpstream
) -> None:
    served = new_name()
    second.script(served, Reply("x"))
    routes = {"gpt-4o": {"base_url": second.url, "api_key": SECOND_KEY, "model": served}}
    dead = f"http://127.0.0.1:{free_port()}/v1"
    with server_factory(llm_base_url=dead, llm_routes=json.dumps(routes)) as server:
        async with sdk_client(server) as client:
            ids = [m.id async for m in client.models.list()]
    assert ids == sorted([served, "gpt-4o"])  # the second upstream's one model, and the route


# --- routes


def test_the_route_rule_exact_then_longest_pattern_then_default() -> None:
    routes = {
        "gpt-4o": {"base_url": "http://exact/v1", "model": "exact-model"},
        "gpt-4*": {"base_url": "http://short/v1", "model": "short-model"},
        "gpt-4o-mini*": {"base_url": "http://long/v1"},
        "b?t-*": {"base_url": "http://b/v1"},
        "a?t-*": {"base_url": "http://a/v1"},
    }
    table = Routes.from_settings("http://default/v1", None, json.dumps(routes))

    def where(model: str) -> tuple[str, str, str | None]:
        resolved = table.resolve(model)
        return resolved.upstream.base_url, resolved.model, resolved.route

    assert where("gpt-4o") == ("http://exact/v1", "exact-model", "gpt-4o")
    assert where("gpt-4-turbo") == ("http://short/v1", "short-model", "gpt-4*")
    assert where("gpt-4o-mini-2024") == ("http://long/v1", "gpt-4o-mini-2024", "gpt-4o-mini*")
    # Equally long patterns: the first in alphabetical order, whatever the JSON's order.
    assert where("ant-bat-x") == ("http://a/v1", "ant-bat-x", "a?t-*")
    assert where("GPT-4o") == ("http://default/v1", "GPT-4o", None)  # case-sensitive
    assert where("llama3") == ("http://default/v1", "llama3", None)
    everything = Routes.from_settings(
        "http://default/v1", None, json.dumps({"*": {"base_url": "http://all/v1"}})
    )
    assert everything.resolve("anything").upstream.base_url == "http://all/v1"
    assert [u.base_url for u in everything.upstreams] == ["http://all/v1"]  # the default is not asked


async def test_runs_reach_the_upstream_their_route_names_under_the_mapped_model(
    server_factory: ServerFactory, upstream: ScriptedUpstream, second: ScriptedUpstream
) -> None:
    short, long, exact, anything = new_name(), new_name(), new_name(), new_name("other")
    second.script(short, Reply("from gpt-4*"))
    second.script(long, Reply("from gpt-4o-mini*"))
    second.script(exact, Reply("from gpt-4o"))
    upstream.script(anything, Reply("from *"))
    on_second = {"base_url": second.url, "api_key": SECOND_KEY}
    routes = {
        "gpt-4*": {**on_second, "model": short},
        "gpt-4o-mini*": {**on_second, "model": long},
        "gpt-4o": {**on_second, "model": exact},
        "*": {"base_url": upstream.url},
    }
    dead = f"http://127.0.0.1:{free_port()}/v1"  # replaced by "*": nothing goes there
    with server_factory(llm_base_url=dead, llm_routes=json.dumps(routes)) as server:
        async with sdk_client(server) as client:
            runs = {
                name: await _run(client, name)
                for name in ("gpt-4-turbo", "gpt-4o-mini-2024", "gpt-4o", anything)
            }
            replies = {name: await _reply(client, run) for name, run in runs.items()}

    assert {name: run.status for name, run in runs.items()} == dict.fromkeys(runs, "completed")
    assert replies == {
        "gpt-4-turbo": "from gpt-4*",
        "gpt-4o-mini-2024": "from gpt-4o-mini*",
        "gpt-4o": "from gpt-4o",
        anything: "from *",
    }
    assert runs["gpt-4-turbo"].model == "gpt-4-turbo"  # the run keeps the name it was asked for
    for served in (short, long, exact):
        assert [body["model"] for body in second.requests(served)] == [served]
    assert [body["model"] for body in upstream.requests(anything)] == [anything]


# --- a model that cannot be reached


async def test_a_run_whose_model_is_unreachable_names_the_url_and_setting_and_is_logged(
    server_factory: ServerFactory, caplog: pytest.LogCaptureFixture, model: str
) -> None:
    caplog.set_level(logging.INFO, logger="openassistants")
    dead = f"http://127.0.0.1:{free_port()}/v1"
    with server_factory(llm_base_url=dead, llm_max_retries=0) as server:
        async with sdk_client(server) as client:
            run = await _run(client, model)
        startup = await _logged(caplog, "openassistants.services.models", dead)

    assert run.status == "failed" and run.last_error is not None
    assert run.last_error.code == "server_error"
    assert run.last_error.message == (
        f"Sorry, something went wrong. The model upstream at {dead} (OPENASSISTANTS_LLM_BASE_URL) "
        "refused the connection (is a model server running there?)."
    )
    failure = await _logged(caplog, "openassistants.services.run_turn", run.id)
    assert failure.levelno == logging.WARNING
    assert all(word in failure.getMessage() for word in (repr(model), dead, "refused the connection"))
    assert startup.levelno == logging.WARNING
    assert startup.getMessage().startswith(f"model upstream {dead} (OPENASSISTANTS_LLM_BASE_URL) refused")


async def test_an_unreachable_route_is_named_in_the_run_error(
    server_factory: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="openassistants")
    dead = f"http://127.0.0.1:{free_port()}/v1"
    routes = {"gpt-4*": {"base_url": dead, "api_key": SECOND_KEY, "model": "llama3.1:8b"}}
    with server_factory(llm_routes=json.dumps(routes), llm_max_retries=0) as server:
        async with sdk_client(server) as client:
            run = await _run(client, "gpt-4o")
        await _logged(caplog, "openassistants.services.run_turn", run.id)
    assert run.last_error is not None
    assert run.last_error.message == (
        f"Sorry, something went wrong. The model upstream at {dead} (the route 'gpt-4*' in "
        "OPENASSISTANTS_LLM_ROUTES) refused the connection (is a model server running there?)."
    )
    assert not any(SECOND_KEY in record.getMessage() for record in caplog.records)


async def test_start_up_logs_each_upstream_and_whether_it_answered(
    server_factory: ServerFactory,
    upstream: ScriptedUpstream,
    second: ScriptedUpstream,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="openassistants")
    routes = {"gpt-4o": {"base_url": second.url, "api_key": SECOND_KEY, "model": "m"}}
    with server_factory(llm_routes=json.dumps(routes), embeddings_base_url=second.url):
        default = await _logged(caplog, "openassistants.services.models", f"model upstream {upstream.url} ")
        routed = await _logged(caplog, "openassistants.services.models", f"model upstream {second.url} ")
        embeddings = await _logged(caplog, "openassistants.services.models", "embeddings upstream")
    assert default.levelno == logging.INFO
    assert "(OPENASSISTANTS_LLM_BASE_URL) answered:" in default.getMessage()
    assert "(the route 'gpt-4o' in OPENASSISTANTS_LLM_ROUTES) answered:" in routed.getMessage()
    # The scripted server wants a key on chat completions only; its model list is open.
    assert f"{second.url} (OPENASSISTANTS_EMBEDDINGS_BASE_URL) answered" in embeddings.getMessage()
    assert not any(SECOND_KEY in record.getMessage() for record in caplog.records)


def test_bad_routes_are_one_line_naming_what_is_wrong() -> None:
    cases = {
        '{"gpt-4*": {"base_url": "ftp://h/v1"}}': "route 'gpt-4*': base_url 'ftp://h/v1' is not an http(s)",
        '{"m": {"base_url": "http://h/v1", "apikey": "sk-x"}}': "m.apikey: Extra inputs are not permitted",
        '{"m": {"model": "x"}}': "m.base_url: Field required",
        "{not json": "Invalid JSON",
    }
    for value, words in cases.items():
        with pytest.raises(ValueError, match="llm_routes") as caught:
            Settings(llm_routes=value)
        assert words in str(caught.value)
