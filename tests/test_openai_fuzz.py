"""Property tests driven by OpenAI's own OpenAPI document (spec/openai/openapi.yaml), not ours: for
every Assistants-API operation the server implements (assistants, threads, messages, runs, run steps,
files, vector stores and their files and batches), whatever schemathesis generates from OpenAI's
description, valid or not, with a valid API key or without one, is never answered 5xx, and every
error is OpenAI's envelope (``ErrorResponse``). (Response bodies are checked against the spec by the
SDK-driven tests, through ``tests/spec.py``.)

Path ids are real objects of an empty tenant of the ``isolated_server`` (an unknown id is a plain 404,
tested elsewhere). Bounded: a few examples per operation and mode, so that both backends take about
a minute. schemathesis's pytest plugin does not run on pytest 9 (see tests/test_schemathesis.py), so
each operation's case strategy drives a Hypothesis test directly.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.schemas import BaseSchema

from tests.conftest import Server, take_isolated_key
from tests.spec import SPEC_PATH, schema_errors
from tests.upstream import Reply, ScriptedUpstream

#: OpenAI's paths (without /v1) of the resources this server implements.
IMPLEMENTED = r"^/(assistants|threads|files|vector_stores)(/|$)"
#: Examples per operation, mode and key: enough to reach each operation's branches, within minutes.
EXAMPLES = 5
#: The model the real run uses (scripted, so that it completes).
MODEL = "fuzz-model"


@pytest.fixture(scope="module")
def openai_schema() -> BaseSchema:
    return schemathesis.openapi.from_path(SPEC_PATH).include(path_regex=IMPLEMENTED)


def _operations(schema: BaseSchema) -> set[tuple[str, str]]:
    return {(op.ok().method.upper(), op.ok().path) for op in schema.get_all_operations()}


#: Every operation of those resources in OpenAI's document, deletions last (they remove the real ids
#: the others use).
OPERATIONS = [
    ("GET", "/assistants"),
    ("POST", "/assistants"),
    ("GET", "/assistants/{assistant_id}"),
    ("POST", "/assistants/{assistant_id}"),
    ("GET", "/files"),
    ("POST", "/files"),
    ("GET", "/files/{file_id}"),
    ("GET", "/files/{file_id}/content"),
    ("POST", "/threads"),
    ("POST", "/threads/runs"),
    ("GET", "/threads/{thread_id}"),
    ("POST", "/threads/{thread_id}"),
    ("GET", "/threads/{thread_id}/messages"),
    ("POST", "/threads/{thread_id}/messages"),
    ("GET", "/threads/{thread_id}/messages/{message_id}"),
    ("POST", "/threads/{thread_id}/messages/{message_id}"),
    ("GET", "/threads/{thread_id}/runs"),
    ("POST", "/threads/{thread_id}/runs"),
    ("GET", "/threads/{thread_id}/runs/{run_id}"),
    ("POST", "/threads/{thread_id}/runs/{run_id}"),
    ("POST", "/threads/{thread_id}/runs/{run_id}/cancel"),
    ("GET", "/threads/{thread_id}/runs/{run_id}/steps"),
    ("GET", "/threads/{thread_id}/runs/{run_id}/steps/{step_id}"),
    ("POST", "/threads/{thread_id}/runs/{run_id}/submit_tool_outputs"),
    ("GET", "/vector_stores"),
    ("POST", "/vector_stores"),
    ("GET", "/vector_stores/{vector_store_id}"),
    ("POST", "/vector_stores/{vector_store_id}"),
    ("POST", "/vector_stores/{vector_store_id}/file_batches"),
    ("GET", "/vector_stores/{vector_store_id}/file_batches/{batch_id}"),
    ("POST", "/vector_stores/{vector_store_id}/file_batches/{batch_id}/cancel"),
    ("GET", "/vector_stores/{vector_store_id}/file_batches/{batch_id}/files"),
    ("GET", "/vector_stores/{vector_store_id}/files"),
    ("POST", "/vector_stores/{vector_store_id}/files"),
    ("GET", "/vector_stores/{vector_store_id}/files/{file_id}"),
    ("POST", "/vector_stores/{vector_store_id}/files/{file_id}"),
    ("GET", "/vector_stores/{vector_store_id}/files/{file_id}/content"),
    ("POST", "/vector_stores/{vector_store_id}/search"),
    ("DELETE", "/threads/{thread_id}/messages/{message_id}"),
    ("DELETE", "/vector_stores/{vector_store_id}/files/{file_id}"),
    ("DELETE", "/vector_stores/{vector_store_id}"),
    ("DELETE", "/threads/{thread_id}"),
    ("DELETE", "/files/{file_id}"),
    ("DELETE", "/assistants/{assistant_id}"),
]


@pytest.fixture(scope="module")
def api_key(isolated_server: Server) -> str:
    return take_isolated_key()


@pytest.fixture(scope="module")
def real_ids(isolated_server: Server, api_key: str, upstream: ScriptedUpstream) -> dict[str, str]:
    """One object of each kind the paths name, the run completed with a step."""
    upstream.script(MODEL, *[Reply("ok")] * 50)
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=isolated_server.base_url, headers=headers, timeout=60) as http:
        file_id = http.post("files", files={"file": ("a.txt", b"alpha beta")}, data={"purpose": "assistants"})
        file_id.raise_for_status()
        ids = {"file_id": file_id.json()["id"]}
        ids["assistant_id"] = http.post("assistants", json={"model": MODEL}).json()["id"]
        thread = http.post("threads", json={"messages": [{"role": "user", "content": "hi"}]}).json()["id"]
        ids["thread_id"] = thread
        ids["message_id"] = http.get(f"threads/{thread}/messages").json()["data"][0]["id"]
        run = http.post(f"threads/{thread}/runs", json={"assistant_id": ids["assistant_id"]}).json()
        while run["status"] in ("queued", "in_progress"):
            run = http.get(f"threads/{thread}/runs/{run['id']}", params={"wait": 5}).json()
        ids["run_id"] = run["id"]
        ids["step_id"] = http.get(f"threads/{thread}/runs/{run['id']}/steps").json()["data"][0]["id"]
        store = http.post("vector_stores", json={"file_ids": [ids["file_id"]]}).json()["id"]
        ids["vector_store_id"] = store
        batch = http.post(f"vector_stores/{store}/file_batches", json={"file_ids": [ids["file_id"]]}).json()
        ids["batch_id"] = batch["id"]
    return ids


def test_every_operation_of_the_implemented_resources_is_fuzzed(openai_schema: BaseSchema) -> None:
    assert _operations(openai_schema) == set(OPERATIONS)


def _check(response: Any) -> None:
    """No 5xx; an error is OpenAI's envelope, as JSON."""
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code < 400:
        return
    assert "json" in response.headers.get("content-type", [""])[0], response.headers
    body = response.json()
    assert not schema_errors("ErrorResponse", body), (response.status_code, body)
    assert set(body["error"]) == {"message", "type", "param", "code"}, body


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_openai_described_requests_get_no_5xx_and_openai_shaped_errors(
    isolated_server: Server,
    openai_schema: BaseSchema,
    real_ids: dict[str, str],
    api_key: str,
    method: str,
    path: str,
) -> None:
    operation = openai_schema[path][method]
    path_parameters = {k: v for k, v in real_ids.items() if "{" + k + "}" in path}
    keys = {"with a key": {"Authorization": f"Bearer {api_key}"}, "without a key": {}}

    # A negative case needs a body or a query to break (the path's ids are fixed, real ones).
    breakable = method == "POST" or len(operation.query) > 0
    for mode in (
        (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if breakable else (GenerationMode.POSITIVE,)
    ):
        strategy = operation.as_strategy(mode, path_parameters=path_parameters)

        @given(case=strategy)
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            # Health checks judge schemathesis's generators (slow on a loaded machine), not us.
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:
            for label, headers in keys.items():
                response = case.call(base_url=isolated_server.base_url, headers=headers, timeout=60)
                if label == "without a key":  # refused: 401, or 400 for what no key could make valid
                    assert response.status_code in (400, 401), (response.status_code, response.text[:300])
                _check(response)

        check()
