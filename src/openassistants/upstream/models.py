"""What a model server lists: ``GET {base_url}/models``, the one request besides chat completions that
we send to model upstreams (for ``GET /v1/models``, the start-up log and ``openassistants doctor``).

Every failure comes back as words in ``Listing.problem`` (never an exception, never a key): a dead
upstream must not break a listing of the others, nor start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from openassistants.upstream.routes import Upstream
from openassistants.upstream.transport import AiohttpTransport, failure_words

#: How long one listing may take: it runs at start-up and on a client's GET /v1/models.
LIST_TIMEOUT = httpx.Timeout(5.0, connect=3.0)


@dataclass(frozen=True)
class UpstreamModel:
    id: str
    created: int
    owned_by: str


@dataclass(frozen=True)
class Listing:
    upstream: Upstream
    #: What it listed, in its order; empty when it failed.
    models: list[UpstreamModel]
    #: Why it could not be listed; None when it was.
    problem: str | None = None


class ModelLister:
    """Lists the models of upstreams; one per process, closed with it."""

    def __init__(self) -> None:
        self._transport = AiohttpTransport(httpx.Limits(max_connections=20))

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def list(self, upstream: Upstream) -> Listing:
        url = upstream.base_url.rstrip("/") + "/models"
        headers = {"Accept": "application/json"}
        if upstream.api_key is not None:
            headers["Authorization"] = f"Bearer {upstream.api_key.get_secret_value()}"
        request = httpx.Request("GET", url, headers=headers, extensions={"timeout": LIST_TIMEOUT.as_dict()})
        try:
            response = await self._transport.handle_async_request(request)
            try:
                await response.aread()
            finally:
                await response.aclose()
        except httpx.TransportError as exc:
            return Listing(upstream, [], failure_words(exc))
        except httpx.HTTPError as exc:  # e.g. a body it cannot decode
            return Listing(upstream, [], f"sent an unusable answer to GET /models ({exc})")
        if not response.is_success:
            return Listing(upstream, [], f"answered {response.status_code} to GET /models")
        try:
            return Listing(upstream, _models(response.json()))
        except (ValueError, LookupError, TypeError, AttributeError):
            return Listing(upstream, [], "answered GET /models with something other than a model list")


def _models(body: Any) -> list[UpstreamModel]:
    """OpenAI's ``{"object": "list", "data": [{"id", "created", "owned_by"}]}``; servers that leave out
    ``created`` or ``owned_by`` (llama.cpp, LM Studio) get 0 and "upstream"."""
    models = []
    for entry in body["data"]:
        created = entry.get("created")
        owned_by = entry.get("owned_by")
        models.append(
            UpstreamModel(
                id=str(entry["id"]),
                created=created if isinstance(created, int) and not isinstance(created, bool) else 0,
                owned_by=owned_by if isinstance(owned_by, str) and owned_by else "upstream",
            )
        )
    return models
