"""Annotated dependencies: the only ``Depends()`` calls in the API layer."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from openassistants.schemas.common import ListParams
from openassistants.schemas.messages import MessageListParams
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


TenantDep = Annotated[str, Depends(_tenant)]
DbDep = Annotated[Database, Depends(_db)]
# Query models: each field is a query parameter, validated (and documented) as the model says.
ListParamsDep = Annotated[ListParams, Query()]
MessageListParamsDep = Annotated[MessageListParams, Query()]
RuntimeDep = Annotated[Runtime, Depends(_runtime)]
BlobsDep = Annotated[BlobStore, Depends(_blobs)]
#: A page of Responses items (a response's input items, a conversation's items).
ItemPageDep = Annotated[ItemListParams, Query()]
#: The Responses API's ``include[]`` query values.
IncludeQuery = Annotated[list[str] | None, Query(alias="include[]")]
