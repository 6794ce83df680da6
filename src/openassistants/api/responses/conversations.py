"""/v1/conversations and their items."""

from __future__ import annotations

from fastapi import APIRouter

from openassistants.api.deps import DbDep, IncludeQuery, ItemPageDep, RuntimeDep, TenantDep
from openassistants.api.responses import JSONResponse
from openassistants.schemas.responses import (
    ConversationCreate,
    ConversationUpdate,
    ItemsCreate,
)
from openassistants.services.responses import conversations as service
from openassistants.services.responses.read import check_include

router = APIRouter(tags=["conversations"])


@router.post("/conversations")
async def create(body: ConversationCreate, db: DbDep, tenant: TenantDep) -> JSONResponse:
    return JSONResponse(await service.create_conversation(db, tenant, body))


@router.get("/conversations/{conversation_id}")
async def retrieve(conversation_id: str, db: DbDep, tenant: TenantDep) -> JSONResponse:
    return JSONResponse(await service.get_conversation(db, tenant, conversation_id))


@router.post("/conversations/{conversation_id}")
async def update(
    conversation_id: str, body: ConversationUpdate, db: DbDep, tenant: TenantDep
) -> JSONResponse:
    return JSONResponse(await service.update_conversation(db, tenant, conversation_id, body))


@router.delete("/conversations/{conversation_id}")
async def delete(conversation_id: str, rt: RuntimeDep, tenant: TenantDep) -> JSONResponse:
    return JSONResponse(await service.delete_conversation(rt, tenant, conversation_id))


@router.post("/conversations/{conversation_id}/items")
async def create_items(
    conversation_id: str, body: ItemsCreate, db: DbDep, tenant: TenantDep, include: IncludeQuery = None
) -> JSONResponse:
    check_include(include)
    return JSONResponse(await service.add_items(db, tenant, conversation_id, body.items))


@router.get("/conversations/{conversation_id}/items")
async def list_items(
    conversation_id: str,
    db: DbDep,
    tenant: TenantDep,
    page: ItemPageDep,
    include: IncludeQuery = None,
) -> JSONResponse:
    results = check_include(include)
    return JSONResponse(await service.list_items(db, tenant, conversation_id, page, results))


@router.get("/conversations/{conversation_id}/items/{item_id}")
async def retrieve_item(
    conversation_id: str, item_id: str, db: DbDep, tenant: TenantDep, include: IncludeQuery = None
) -> JSONResponse:
    results = check_include(include)
    return JSONResponse(await service.get_item(db, tenant, conversation_id, item_id, results))


@router.delete("/conversations/{conversation_id}/items/{item_id}")
async def delete_item(conversation_id: str, item_id: str, db: DbDep, tenant: TenantDep) -> JSONResponse:
    return JSONResponse(await service.delete_item(db, tenant, conversation_id, item_id))
