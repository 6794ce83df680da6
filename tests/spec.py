"""Response bodies checked against OpenAI's OpenAPI document (``spec/openai/openapi.yaml``).

``SpecChecker`` is an httpx response hook: it validates every JSON body against the schema the spec
names for that method and path (``ErrorResponse`` for every 4xx), and records any 5xx or missing
``x-request-id``. The fixtures in ``conftest.py`` assert that nothing was recorded.

The yaml is 3 MB. What we need from it (path templates with their response schema names, and
``components.schemas`` rewritten for JSON Schema 2020-12) is cached as JSON under ``.pytest_cache``,
keyed by the yaml's hash, and loaded once per process.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import jsonschema
import openai
import referencing
import referencing.jsonschema
import yaml

ROOT = Path(__file__).resolve().parent.parent
# Vendored in the repository (spec/openai/README.md says where from): the suite reads nothing outside it.
SPEC_PATH = ROOT / "spec" / "openai" / "openapi.yaml"
CACHE_DIR = ROOT / ".pytest_cache" / "openassistants-spec"
SPEC_URI = "urn:openai-openapi"
API_PREFIX = "/v1"

# Where the spec and the SDK (openai 3.x, which we must satisfy) disagree, we follow the SDK.
# Each entry: (schema name, property) made nullable, and why.
SDK_EXCEPTIONS: tuple[tuple[str, str, str], ...] = (
    # The spec types first_id/last_id as required non-null strings, but an empty list has neither;
    # the hosted API returned null there, and the SDK's AsyncCursorPage never reads either field.
    ("ListAssistantsResponse", "first_id", "null on an empty list"),
    ("ListAssistantsResponse", "last_id", "null on an empty list"),
    ("ListMessagesResponse", "first_id", "null on an empty list"),
    ("ListMessagesResponse", "last_id", "null on an empty list"),
    ("ListFilesResponse", "first_id", "null on an empty list"),
    ("ListFilesResponse", "last_id", "null on an empty list"),
    # The hosted API sent both as null when unset, and the SDK's FileObject types them Optional.
    ("OpenAIFile", "expires_at", "null unless the upload set expires_after"),
    ("OpenAIFile", "status_details", "deprecated; always null"),
    # Unset, the spec leaves it out; we send null, as for expires_at (the SDKs type both Optional).
    ("VectorStoreObject", "expires_after", "null unless the store was given expires_after"),
)


def _denullable(node: Any) -> Any:
    """OpenAPI 3.0's ``nullable: true`` (used 111 times in this 3.1 document) as a JSON-Schema null union."""
    if isinstance(node, list):
        return [_denullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _denullable(value) for key, value in node.items()}
    if not node.pop("nullable", False):
        return node
    if "type" in node:
        types = node["type"] if isinstance(node["type"], list) else [node["type"]]
        node["type"] = [*types, "null"] if "null" not in types else types
        if "enum" in node and None not in node["enum"]:
            node["enum"] = [*node["enum"], None]
        return node
    if any(key in node for key in ("$ref", "anyOf", "oneOf", "allOf")):
        return {"anyOf": [node, {"type": "null"}]}
    return node  # no type at all: it already accepts null


def _make_nullable(schema: dict[str, Any], prop: str) -> None:
    properties = schema["properties"]
    properties[prop] = {"anyOf": [properties[prop], {"type": "null"}]}


def _build(spec: dict[str, Any]) -> dict[str, Any]:
    schemas = _denullable(spec["components"]["schemas"])
    for name, prop, _why in SDK_EXCEPTIONS:
        _make_nullable(schemas[name], prop)
    operations: dict[str, dict[str, str]] = {}
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            ok = operation["responses"].get("200", {})
            ref = ok.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")
            if ref:
                operations.setdefault(path, {})[method.upper()] = ref.rsplit("/", 1)[-1]
    return {"operations": operations, "schemas": schemas}


@functools.cache
def _spec() -> dict[str, Any]:
    raw = SPEC_PATH.read_bytes()
    # Keyed by the exceptions too: they are applied before caching.
    key = hashlib.sha256(raw + repr(SDK_EXCEPTIONS).encode()).hexdigest()[:16]
    cached = CACHE_DIR / f"{key}.json"
    if cached.exists():
        data: dict[str, Any] = json.loads(cached.read_text())
        return data
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    data = _build(yaml.load(raw, Loader=loader))
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, default=str))  # yaml reads some examples as dates
    tmp.replace(cached)
    return data


@functools.cache
def _templates() -> list[tuple[re.Pattern[str], str]]:
    """Each spec path as a regex; literal paths first so ``/threads/runs`` beats ``/threads/{id}``."""
    paths = sorted(_spec()["operations"], key=lambda p: (p.count("{"), -len(p)))
    return [(re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(p)) + "$"), p) for p in paths]


@functools.cache
def _validator(name: str) -> jsonschema.protocols.Validator:
    resource = referencing.Resource.from_contents(
        {"components": {"schemas": _spec()["schemas"]}},
        default_specification=referencing.jsonschema.DRAFT202012,
    )
    registry: referencing.Registry[Any] = referencing.Registry().with_resource(SPEC_URI, resource)
    schema = {"$ref": f"{SPEC_URI}#/components/schemas/{name}"}
    return jsonschema.Draft202012Validator(schema, registry=registry)


def response_schema(method: str, path: str) -> str | None:
    """The component the spec names for a 200 to ``method path`` (a /v1 path), or None."""
    path = path.removeprefix(API_PREFIX)
    for pattern, template in _templates():
        if pattern.match(path):
            name: str | None = _spec()["operations"][template].get(method.upper())
            return name
    return None


def schema_errors(name: str, body: Any) -> list[str]:
    """Every way ``body`` breaks the named component schema; empty when it conforms."""
    errors = sorted(_validator(name).iter_errors(body), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors]


def assert_conforms(name: str, body: Any) -> None:
    problems = schema_errors(name, body)
    assert not problems, f"{name} does not conform:\n" + "\n".join(problems)


class _Request(Protocol):
    method: str

    @property
    def url(self) -> Any: ...


class _Response(Protocol):
    """What httpx and httpx2 responses both offer."""

    status_code: int

    @property
    def request(self) -> _Request: ...

    @property
    def headers(self) -> Any: ...

    async def aread(self) -> bytes: ...


@dataclass
class SpecChecker:
    """An httpx/httpx2 ``response`` event hook that records every way a response breaks the contract."""

    failures: list[str] = field(default_factory=list)
    checked: int = 0

    async def __call__(self, response: _Response) -> None:
        method, path = response.request.method, response.request.url.path
        where = f"{method} {path} -> {response.status_code}"
        if response.status_code >= 500:
            self.failures.append(f"{where}: server error")
        if not response.headers.get("x-request-id"):
            self.failures.append(f"{where}: no x-request-id header")
        if "json" not in response.headers.get("content-type", ""):
            if response.status_code >= 400:
                self.failures.append(f"{where}: error without a JSON body")
            return
        if response.status_code >= 400:
            name: str | None = "ErrorResponse"
        else:
            name = response_schema(method, path)
        if name is None:
            return
        body = json.loads(await response.aread())
        self.checked += 1
        self.failures.extend(f"{where}: {name}: {problem}" for problem in schema_errors(name, body))
        if name == "ErrorResponse" and isinstance(body.get("error"), dict):
            # The envelope is exactly these four keys, as the SDK's APIError reads them.
            keys = set(body["error"])
            if keys != {"message", "type", "param", "code"}:
                self.failures.append(f"{where}: error keys {sorted(keys)}")

    def assert_clean(self) -> None:
        assert not self.failures, "responses broke the contract:\n" + "\n".join(self.failures)


# "Do not check this one", for assert_api_error's optional expectations.
ANY: Any = object()

# §6 of the conformance reference: the SDK exception each status becomes.
SDK_ERRORS: dict[int, type[openai.APIStatusError]] = {
    400: openai.BadRequestError,
    401: openai.AuthenticationError,
    404: openai.NotFoundError,
    413: openai.APIStatusError,
}


def assert_api_error(
    exc: BaseException,
    status: int,
    *,
    param: str | None = ANY,
    code: str | None = ANY,
    message: str = "",
) -> openai.APIStatusError:
    """``exc`` is the SDK's exception for ``status`` carrying OpenAI's envelope; checks what is given.

    ``message`` must occur in the error's message; ``param`` and ``code`` must match exactly.
    """
    assert isinstance(exc, SDK_ERRORS[status]), f"{type(exc).__name__}: {exc}"
    assert exc.status_code == status
    body = exc.body
    assert isinstance(body, dict), body
    assert set(body) == {"message", "type", "param", "code"}, body
    assert isinstance(body["message"], str) and body["message"], body
    assert body["type"] == "invalid_request_error", body
    assert message in body["message"], body
    if param is not ANY:
        assert body["param"] == param, body
    if code is not ANY:
        assert body["code"] == code, body
    assert exc.request_id and exc.request_id.startswith("req_"), exc.request_id
    return exc
