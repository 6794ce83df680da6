"""create_app(settings): the whole server on one screen: lifespan, middleware, routers, errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.middleware import Middleware

from openassistants import __version__
from openassistants.api import (
    assistants,
    console,
    files,
    health,
    messages,
    metrics,
    models,
    runs,
    threads,
    vector_stores,
)
from openassistants.api.errors import install_error_handlers
from openassistants.api.hot import HotRoutes
from openassistants.api.metrics import RequestTimer
from openassistants.api.middleware import AuthMiddleware, RequestContextMiddleware
from openassistants.api.openapi import install_openapi
from openassistants.api.ratelimit import RateLimitMiddleware, RateLimits
from openassistants.api.read_timeouts import protocol_with_read_timeouts
from openassistants.api.responses import compact, conversations, responses, websocket
from openassistants.config import Settings
from openassistants.services.runtime import open_runtime


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_runtime(settings, execute=settings.execute_runs) as runtime:
            app.state.db = runtime.db
            app.state.runtime = runtime
            yield

    routers = _routers(settings)
    per_minute = settings.rate_limit_per_minute
    limits = RateLimits(per_minute) if per_minute is not None else None
    app = FastAPI(
        title="OpenAssistants",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        # A path with a trailing slash is no operation's: 404 "Invalid URL", as hosted, rather than
        # Starlette's 307 to the path without it, an empty body that also turned an id holding a
        # slash (``/v1/assistants/%2F``) into another operation (``/v1/assistants``).
        redirect_slashes=False,
        middleware=_middleware(settings, routers, limits),
    )
    app.state.settings = settings
    app.state.rate_limits = limits
    install_error_handlers(app)
    install_openapi(app)
    for prefix, router in routers:
        _add_routes(app, prefix, router)
    return app


def _add_routes(app: FastAPI, prefix: str, router: APIRouter) -> None:
    """``include_router`` without its cost: FastAPI 0.165 keeps an included router as one lazy route
    that it walks on every request, where routes of the app's own router are matched directly."""
    if not all(isinstance(route, APIRoute) for route in router.routes):
        app.include_router(router, prefix=prefix)
        return
    for route in router.routes:
        assert isinstance(route, APIRoute)
        app.router.add_api_route(
            prefix + route.path,
            route.endpoint,
            methods=sorted(route.methods or ()),
            name=route.name,
            tags=route.tags,
            summary=route.summary,
            description=route.description,
            status_code=route.status_code,
            responses=route.responses,
            response_class=route.response_class,
            include_in_schema=route.include_in_schema,
            openapi_extra=route.openapi_extra,
        )


def _routers(settings: Settings) -> list[tuple[str, APIRouter]]:
    """(prefix, router) in matching order: runs first, for POST /threads/runs."""
    api = [
        ("/v1", module.router)
        for module in (assistants, runs, threads, messages, files, vector_stores, models)
    ]
    api += [("/v1", responses.router), ("/v1", compact.router), ("/v1", conversations.router)]
    api += [("/v1", websocket.router)]
    operations = [health.router, metrics.router] if settings.metrics_enabled else [health.router]
    return api + [("", router) for router in [*operations, console.router]]


def _middleware(
    settings: Settings, routers: list[tuple[str, APIRouter]], limits: RateLimits | None
) -> list[Middleware]:
    """Outermost first: the request context (id, log, timing) sees every request; the rate limit needs
    the tenant auth found; the hot routes (api/hot.py) are the innermost."""
    stack = [
        Middleware(
            RequestContextMiddleware,
            max_body_bytes=settings.max_body_bytes,
            max_upload_bytes=settings.max_upload_bytes,
            access_log=settings.access_log,
            timer=RequestTimer(routers) if settings.metrics_enabled else None,
        ),
        Middleware(AuthMiddleware, api_keys=[key.get_secret_value() for key in settings.api_keys]),
    ]
    if limits is not None:
        stack.append(Middleware(RateLimitMiddleware, limits=limits))
    stack.append(Middleware(HotRoutes))
    return stack


def http_protocol(settings: Settings) -> type[asyncio.Protocol]:
    """The HTTP protocol ``serve`` runs the app on: uvicorn's, with the header and body read timeouts."""
    return protocol_with_read_timeouts(
        settings.header_read_timeout_seconds, settings.body_read_timeout_seconds
    )
