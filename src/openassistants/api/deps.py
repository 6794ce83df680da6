"""Annotated dependencies: the only ``Depends()`` calls in the API layer."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, Query, Request

from openassistants.schemas.common import LIST_CURSOR_MAX_LENGTH, LIST_LIMIT_MAX, ListParams
from openassistants.schemas.responses import ItemListParams
from openassistants.services.runtime import Runtime
from openassistants.storage.blobs import BlobStore
from openassistants.storage.db import Database

# The dependencies are ``async def`` although they never await: FastAPI runs a plain ``def`` dependency
# in the thread pool, a thread hop per dependency per request.


async def _tenant(request: Request) -> str:
    # Set by AuthMiddleware for every /v1 request before routing.
    tenant: str = request.scope["state"]["tenant"]
    return tenant


async def _db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def _blobs(request: Request) -> BlobStore:
    runtime: Runtime = request.app.state.runtime
    return runtime.blobs


async def _list_params(
    limit: Annotated[int, Query(ge=1, le=LIST_LIMIT_MAX)] = 20,
    order: Annotated[Literal["asc", "desc"], Query()] = "desc",
    after: Annotated[str | None, Query(max_length=LIST_CURSOR_MAX_LENGTH)] = None,
    before: Annotated[str | None, Query(max_length=LIST_CURSOR_MAX_LENGTH)] = None,
) -> ListParams:
    # FastAPI has validated each value already.
    return ListParams.model_construct(limit=limit, order=order, after=after, before=before)


async def _item_page(
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: Annotated[Literal["asc", "desc"], Query()] = "desc",
    after: Annotated[str | None, Query(max_length=128)] = None,
) -> ItemListParams:
    """A page of Responses items (a response's input items, a conversation's items)."""
    return ItemListParams(limit=limit, order=order, after=after)


TenantDep = Annotated[str, Depends(_tenant)]
DbDep = Annotated[Database, Depends(_db)]
ListParamsDep = Annotated[ListParams, Depends(_list_params)]
RuntimeDep = Annotated[Runtime, Depends(_runtime)]
BlobsDep = Annotated[BlobStore, Depends(_blobs)]
ItemPageDep = Annotated[ItemListParams, Depends(_item_page)]
#: The Responses API's ``include[]`` query values.
IncludeQuery = Annotated[list[str] | None, Query(alias="include[]")]
