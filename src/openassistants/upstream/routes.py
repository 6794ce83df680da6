"""Which upstream serves a model: ``llm_routes``, with exact names, wildcard patterns and a default.

``llm_routes`` maps model names to upstreams, as inline JSON (it starts with ``{``) or a JSON file's path:

    {"gpt-4o":  {"base_url": "http://vllm:8000/v1", "model": "meta-llama/Llama-3.1-8B-Instruct"},
     "gpt-4*":  {"base_url": "http://127.0.0.1:11434/v1", "model": "llama3.1:8b"},
     "*":       {"base_url": "http://127.0.0.1:11434/v1", "model": "llama3.1:8b"}}

A key with ``*``, ``?`` or ``[`` is a pattern, matched as ``fnmatch.fnmatchcase`` matches (case-sensitive,
``*`` matches ``/`` too). The rule, deterministic whatever the order of the JSON:

1. a key equal to the model name wins;
2. else the longest matching pattern (most characters), and among equally long ones the first in
   alphabetical order;
3. else the default upstream, ``llm_base_url`` with ``llm_api_key``. ``"*"`` is a catch-all that
   replaces it.

A route's ``model`` is the name sent to its upstream; omitted, the requested name is sent unchanged.
A route without ``api_key`` sends none: the default upstream's key never goes to another server.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

import httpx
from pydantic import BaseModel, ConfigDict, SecretStr, TypeAdapter, ValidationError

#: The settings, as operators write them (environment variables).
BASE_URL_SETTING = "OPENASSISTANTS_LLM_BASE_URL"
ROUTES_SETTING = "OPENASSISTANTS_LLM_ROUTES"


class Route(BaseModel):
    """Where one model is served: an entry of ``llm_routes``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str
    #: No key when omitted: the default upstream's key is never sent to another server.
    api_key: SecretStr | None = None
    #: The name the upstream knows the model by; default: the requested model name.
    model: str | None = None


_ROUTES = TypeAdapter(dict[str, Route])


@dataclass(frozen=True)
class Upstream:
    """One model server as configured: a route's, or the default's."""

    base_url: str
    api_key: SecretStr | None
    #: Which setting names it, for messages: the default's variable, or the route's key in the routes'.
    setting: str

    @property
    def display_url(self) -> str:
        """``base_url`` fit for logs and errors: without credentials or query (either may hold a key)."""
        return display_url(self.base_url)

    @property
    def where(self) -> str:
        """``the model upstream at URL (SETTING)``, for messages."""
        return f"the model upstream at {self.display_url} ({self.setting})"


@dataclass(frozen=True)
class Resolved:
    """A model name resolved: its upstream, the name sent there, and the route key that matched."""

    upstream: Upstream
    model: str
    route: str | None


class Routes:
    """``llm_routes`` parsed, with the default upstream; resolves model names by the module's rule."""

    def __init__(self, default: Upstream, routes: dict[str, Route]) -> None:
        self.default = default
        self._routes = routes
        self._exact = {name: route for name, route in routes.items() if not is_pattern(name)}
        # Longest first, then alphabetical: the first match is the one the rule picks.
        self._patterns = sorted(
            ((name, route) for name, route in routes.items() if is_pattern(name)),
            key=lambda item: (-len(item[0]), item[0]),
        )
        self._upstreams = {name: _upstream_of(name, route) for name, route in routes.items()}

    @classmethod
    def from_settings(cls, base_url: str, api_key: SecretStr | None, routes: str | None) -> Routes:
        """Raises ValueError if ``routes`` is unusable."""
        key = api_key if api_key is not None and api_key.get_secret_value() else None  # empty: none
        return cls(Upstream(base_url, key, BASE_URL_SETTING), parse_routes(routes))

    def resolve(self, model: str) -> Resolved:
        name: str | None = model if model in self._exact else None
        if name is None:
            name = next((p for p, _ in self._patterns if fnmatch.fnmatchcase(model, p)), None)
        if name is None:
            return Resolved(self.default, model, None)
        return Resolved(self._upstreams[name], self._routes[name].model or model, name)

    @property
    def configured(self) -> list[Upstream]:
        """The default upstream, then each route's (in the JSON's order)."""
        return [self.default, *self._upstreams.values()]

    @property
    def upstreams(self) -> list[Upstream]:
        """The model servers to ask (for lists and probes): each once per (base URL, key), the default
        only when no ``"*"`` route takes its place."""
        used = self.configured[1:] if "*" in self._routes else self.configured
        return [u for i, u in enumerate(used) if not any(_same_server(u, v) for v in used[:i])]

    def server_of(self, upstream: Upstream) -> Upstream:
        """The upstream of ``upstreams`` with the same base URL and key as ``upstream``."""
        return next((u for u in self.upstreams if _same_server(u, upstream)), upstream)

    @property
    def targets(self) -> dict[str, Resolved]:
        """Each route whose model name upstream is fixed (an exact name, or a pattern with ``model``)."""
        return {
            name: Resolved(self._upstreams[name], route.model or name, name)
            for name, route in self._routes.items()
            if route.model or not is_pattern(name)
        }

    @property
    def named(self) -> dict[str, Resolved]:
        """The routes' exact names (not patterns), each resolved."""
        return {name: self.resolve(name) for name in self._exact}


def is_pattern(name: str) -> bool:
    return any(char in name for char in "*?[")


def parse_routes(value: str | None) -> dict[str, Route]:
    """``llm_routes``: inline JSON (it starts with ``{``), or the path of a JSON file. Raises ValueError
    with one line that says what is wrong (never a key)."""
    if not value or not value.strip():
        return {}
    try:
        text = value if value.lstrip().startswith("{") else Path(value).read_text()
    except OSError as exc:
        raise ValueError(f"cannot read the routes file {value!r}: {exc.strerror or exc}") from exc
    try:
        routes = _ROUTES.validate_json(text)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        place = "".join(f"{part}: " for part in [".".join(map(str, first["loc"]))] if part)
        raise ValueError(
            f'{place}{first["msg"]} (expected {{"model name or pattern": {{"base_url": "http://…/v1", '
            f'"api_key": "…", "model": "served name"}}}})'
        ) from None
    for name, route in routes.items():
        check_base_url(route.base_url, f"route {name!r}")
    return routes


def check_base_url(base_url: str, what: str) -> httpx.URL:
    """``base_url`` parsed; ValueError unless it is an http(s) URL with a host."""
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"{what}: invalid base_url {display_url(base_url)!r}: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"{what}: base_url {display_url(base_url)!r} is not an http(s) URL")
    return url


def display_url(base_url: str) -> str:
    """A URL without its user, password and query; unparsable text is shown up to its first '@'/'?'."""
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL:
        return base_url.split("?")[0].rsplit("@", 1)[-1]
    return str(url.copy_with(username=None, password=None, query=None, fragment=None))


def _same_server(a: Upstream, b: Upstream) -> bool:
    return a.base_url.rstrip("/") == b.base_url.rstrip("/") and a.api_key == b.api_key


def _upstream_of(name: str, route: Route) -> Upstream:
    return Upstream(route.base_url, route.api_key, f"the route {name!r} in {ROUTES_SETTING}")
