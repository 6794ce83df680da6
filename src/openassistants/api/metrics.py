"""``GET /metrics`` (Prometheus text format) and the timing of every request.

The process's metrics live in ``openassistants.metrics``; the run counts are read from the database at
scrape time, so every API process reports the same database-wide figures (aggregate them with ``max``).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator

from fastapi import APIRouter
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.responses import Response
from starlette.routing import compile_path
from starlette.types import Scope

from openassistants.api.deps import DbDep
from openassistants.errors import ServiceUnavailable
from openassistants.metrics import HTTP_REQUEST_SECONDS, REGISTRY
from openassistants.services.health import RunCounts, count_runs

logger = logging.getLogger("openassistants.metrics")

#: A scrape must not hang on a stuck database: past this, it answers without the run counts.
RUN_COUNTS_TIMEOUT_SECONDS = 2.0
#: Methods get their own label value; anything else is "other", so clients cannot add series.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: The route label of requests that match no route (404s): raw paths would make unbounded series.
UNMATCHED_ROUTE = "unmatched"

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics(db: DbDep) -> Response:
    body = generate_latest(REGISTRY)
    try:
        async with asyncio.timeout(RUN_COUNTS_TIMEOUT_SECONDS):
            counts = await count_runs(db)
    except (ServiceUnavailable, TimeoutError):
        logger.warning("/metrics: the database did not answer; run counts left out of this scrape")
    else:
        body += generate_latest(_RunCountsCollector(counts))
    return Response(body, media_type=CONTENT_TYPE_LATEST)


class _RunCountsCollector(Collector):
    def __init__(self, counts: RunCounts) -> None:
        self.counts = counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        runs = GaugeMetricFamily(
            "openassistants_runs", "Runs in the database, by status (all tenants).", labels=["status"]
        )
        for status, count in self.counts.by_status.items():
            runs.add_metric([status.value], count)
        yield runs
        yield GaugeMetricFamily(
            "openassistants_run_queue_depth",
            "Queued runs that no executor has claimed yet.",
            value=self.counts.queue_depth,
        )


class RequestTimer:
    """Times every HTTP request into ``openassistants_http_request_duration_seconds``, labelled by the
    route template it was for (``RequestContextMiddleware`` calls ``observe`` once per request, so that
    requests refused before routing, 401, 413 and 429, are counted too)."""

    def __init__(self, routers: list[tuple[str, APIRouter]]) -> None:
        self.routes = RouteTemplates(routers)
        # One child per label set, found without prometheus_client's lock and key building each time.
        self._children: dict[tuple[str, str, str], Histogram] = {}

    def observe(self, scope: Scope, status: int, seconds: float) -> None:
        method = scope["method"] if scope["method"] in KNOWN_METHODS else "other"
        route = (
            scope.get("route_template")
            or self.routes.find(method, scope["path"])
            or _openapi_route(scope)
            or UNMATCHED_ROUTE
        )
        key = (method, route, f"{status // 100}xx")
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = HTTP_REQUEST_SECONDS.labels(*key)
        child.observe(seconds)


class RouteTemplates:
    """The path pattern (``/v1/threads/{thread_id}``) a request is for, found as the router finds it:
    the first route matching path and method, else the first matching the path (a 405)."""

    def __init__(self, routers: list[tuple[str, APIRouter]]) -> None:
        self.routes: list[tuple[re.Pattern[str], set[str], str]] = []
        for prefix, router in routers:
            for route in router.routes:
                if isinstance(route, APIRoute):
                    template = prefix + route.path
                    self.routes.append((compile_path(template)[0], set(route.methods or ()), template))

    def find(self, method: str, path: str) -> str | None:
        path_only: str | None = None
        for pattern, methods, template in self.routes:
            if pattern.match(path):
                if method in methods:
                    return template
                path_only = path_only or template
        return path_only


def _openapi_route(scope: Scope) -> str | None:
    """The one route FastAPI adds to the app itself, outside our routers."""
    openapi_url = getattr(scope["app"], "openapi_url", None)
    return openapi_url if scope["path"] == openapi_url else None
