"""schemathesis against the OpenAPI document the server serves (/openapi.json): whatever it generates for
the assistants, threads and messages operations, valid or not, the server never answers 5xx, and every
JSON body it answers conforms to OpenAI's spec (tests/spec.py).

It runs as an empty tenant of the ``isolated_server``, so its objects never meet other tests'. Path ids
are real objects of that tenant (an unknown id is a plain 404, tested elsewhere), or generated ones.

schemathesis's own pytest integration (``schemathesis.pytest.from_fixture``) does not run on pytest 9
(it sets ``Function._nodeid``), so each operation's case strategy drives a Hypothesis test directly.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.schemas import BaseSchema

from tests.conftest import Server, take_isolated_key
from tests.spec import response_schema, schema_errors

# The core resources only; runs and steps have their own tests.
CORE_PATHS = r"^/v1/(assistants(/\{assistant_id\})?|threads(/\{thread_id\}(/messages(/\{message_id\})?)?)?)$"
OPERATIONS = [
    ("POST", "/v1/assistants"),
    ("GET", "/v1/assistants"),
    ("GET", "/v1/assistants/{assistant_id}"),
    ("POST", "/v1/assistants/{assistant_id}"),
    ("DELETE", "/v1/assistants/{assistant_id}"),
    ("POST", "/v1/threads"),
    ("GET", "/v1/threads"),  # an extension of ours (the console's thread list)
    ("GET", "/v1/threads/{thread_id}"),
    ("POST", "/v1/threads/{thread_id}"),
    ("DELETE", "/v1/threads/{thread_id}"),
    ("POST", "/v1/threads/{thread_id}/messages"),
    ("GET", "/v1/threads/{thread_id}/messages"),
    ("GET", "/v1/threads/{thread_id}/messages/{message_id}"),
    ("POST", "/v1/threads/{thread_id}/messages/{message_id}"),
    ("DELETE", "/v1/threads/{thread_id}/messages/{message_id}"),
]
LISTS = {"/v1/assistants", "/v1/threads", "/v1/threads/{thread_id}/messages"}


def _variants() -> list[tuple[str, str, str, str]]:
    """(method, path, generation mode, path ids) worth running: a negative case needs a body or a query
    to break, and generated ids need a path that has some."""
    variants = []
    for method, path in OPERATIONS:
        has_ids = "{" in path
        has_input = method == "POST" or (method == "GET" and path in LISTS)
        variants.append((method, path, "positive", "real ids"))
        if has_input:
            variants.append((method, path, "negative", "real ids"))
        if has_ids:  # any string is a valid id, so generated ids can only be "positive"
            variants.append((method, path, "positive", "generated ids"))
    return variants


VARIANTS = _variants()


@pytest.fixture(scope="module")
def api_key(isolated_server: Server) -> str:
    return take_isolated_key()


@pytest.fixture(scope="module")
def core_schema(isolated_server: Server, api_key: str) -> BaseSchema:
    config = schemathesis.Config.from_dict({"headers": {"Authorization": f"Bearer {api_key}"}})
    served = schemathesis.openapi.from_url(f"{isolated_server.url}/openapi.json", config=config)
    return served.include(path_regex=CORE_PATHS)


@pytest.fixture
def real_ids(isolated_server: Server, api_key: str) -> dict[str, str]:
    """One assistant, and a thread with one message, for the generated requests to hit."""
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=isolated_server.base_url, headers=headers) as http:
        assistant = http.post("assistants", json={"model": "gpt-4o"}).json()["id"]
        thread = http.post("threads", json={"messages": [{"role": "user", "content": "hi"}]}).json()["id"]
        message = http.get(f"threads/{thread}/messages").json()["data"][0]["id"]
    return {"assistant_id": assistant, "thread_id": thread, "message_id": message}


def test_the_served_document_has_exactly_the_core_operations(core_schema: BaseSchema) -> None:
    served = {(op.ok().method.upper(), op.ok().path) for op in core_schema.get_all_operations()}
    assert served == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path", "mode", "ids"), VARIANTS, ids=[" ".join(v) for v in VARIANTS])
def test_no_server_errors(
    core_schema: BaseSchema, real_ids: dict[str, str], method: str, path: str, mode: str, ids: str
) -> None:
    path_parameters = (
        {k: v for k, v in real_ids.items() if "{" + k + "}" in path} if ids == "real ids" else None
    )
    strategy = core_schema[path][method].as_strategy(GenerationMode(mode), path_parameters=path_parameters)

    @given(case=strategy)
    @settings(
        max_examples=8,
        deadline=None,
        database=None,
        # Health checks judge schemathesis's generators (slow or large on a loaded machine), not us.
        suppress_health_check=list(HealthCheck),
    )
    def check(case: schemathesis.Case) -> None:
        response = case.call_and_validate(checks=[not_a_server_error])
        if "json" not in response.headers.get("content-type", [""])[0]:
            return
        body: Any = response.json()
        name = (
            "ErrorResponse" if response.status_code >= 400 else response_schema(method, case.formatted_path)
        )
        if name is not None:
            assert not schema_errors(name, body), (name, schema_errors(name, body))

    check()
