"""The models clients can ask for (``GET /v1/models``), and the start-up report of the model upstreams.

The list is the union of what the upstreams list (``GET {base_url}/models``, each cached for
``CACHE_SECONDS``; one that fails is left out and asked again after ``FAILED_CACHE_SECONDS``) and the
exact names of ``llm_routes`` (its patterns name no model). A routed name takes ``created`` and
``owned_by`` from the model it is sent as, where its upstream lists that one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from typing import Any

from openassistants.config import Settings
from openassistants.errors import NotFound
from openassistants.upstream.models import Listing, ModelLister, UpstreamModel
from openassistants.upstream.routes import Routes, Upstream

logger = logging.getLogger(__name__)

CACHE_SECONDS = 60.0
FAILED_CACHE_SECONDS = 5.0
#: ``owned_by`` of a routed name whose target its upstream does not list.
ROUTED_OWNER = "openassistants"
#: Model names quoted in the start-up log, at most.
LOGGED_NAMES = 5
EMBEDDINGS_SETTING = "OPENASSISTANTS_EMBEDDINGS_BASE_URL"


class ModelCatalog:
    def __init__(self, routes: Routes, lister: ModelLister) -> None:
        self._routes = routes
        self._lister = lister
        self._cache: dict[Upstream, tuple[float, Listing]] = {}
        # One listing at a time per upstream: a burst of GET /v1/models sends one request upstream.
        self._locks: defaultdict[Upstream, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def list_models(self) -> dict[str, Any]:
        """OpenAI's list of Model objects, sorted by id."""
        listings = await asyncio.gather(*(self._listing(u) for u in self._routes.upstreams))
        found: dict[tuple[Upstream, str], UpstreamModel] = {}
        models: dict[str, dict[str, Any]] = {}
        for listing in listings:
            for model in listing.models:
                found[(listing.upstream, model.id)] = model
                models.setdefault(model.id, _wire(model.id, model.created, model.owned_by))
        for name, resolved in self._routes.named.items():
            target = found.get((self._routes.server_of(resolved.upstream), resolved.model))
            models[name] = _wire(
                name, target.created if target else 0, target.owned_by if target else ROUTED_OWNER
            )
        return {"object": "list", "data": [models[name] for name in sorted(models)]}

    async def get_model(self, model_id: str) -> dict[str, Any]:
        """One Model object; NotFound (code model_not_found) for a name the list does not hold."""
        models: list[dict[str, Any]] = (await self.list_models())["data"]
        for model in models:
            if model["id"] == model_id:
                return model
        raise NotFound(f"The model '{model_id}' does not exist", param="model", code="model_not_found")

    async def log_upstreams(self, settings: Settings) -> None:
        """One line per model upstream (and the embeddings'): its URL, never a key, and whether it
        answered. Runs in the background at start-up: a dead upstream delays nothing."""
        embeddings = embeddings_upstream(settings)
        listings = await asyncio.gather(
            *(self._listing(u) for u in self._routes.upstreams),
            *([self._lister.list(embeddings)] if embeddings else []),
        )
        for listing in listings:
            upstream = listing.upstream
            kind = "embeddings upstream" if upstream is embeddings else "model upstream"
            if listing.problem is None:
                names = ", ".join(m.id for m in listing.models[:LOGGED_NAMES])
                more = "…" if len(listing.models) > LOGGED_NAMES else ""
                logger.info(
                    "%s %s (%s) answered: %d models (%s%s)",
                    kind,
                    upstream.display_url,
                    upstream.setting,
                    len(listing.models),
                    names,
                    more,
                )
            else:
                logger.warning(
                    "%s %s (%s) %s; runs that need it fail until it answers (check: openassistants doctor)",
                    kind,
                    upstream.display_url,
                    upstream.setting,
                    listing.problem,
                )
        if embeddings is None:
            logger.info("embeddings: the local model, in-process (%s unset)", EMBEDDINGS_SETTING)

    async def _listing(self, upstream: Upstream) -> Listing:
        async with self._locks[upstream]:
            cached = self._cache.get(upstream)
            if cached is not None and time.monotonic() < cached[0]:
                return cached[1]
            listing = await self._lister.list(upstream)
            keep = CACHE_SECONDS if listing.problem is None else FAILED_CACHE_SECONDS
            self._cache[upstream] = (time.monotonic() + keep, listing)
            return listing


def embeddings_upstream(settings: Settings) -> Upstream | None:
    """The embeddings upstream, when one is set (else the local model embeds)."""
    if not settings.embeddings_base_url:
        return None
    return Upstream(settings.embeddings_base_url, settings.embeddings_api_key, EMBEDDINGS_SETTING)


def _wire(model_id: str, created: int, owned_by: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": owned_by}
