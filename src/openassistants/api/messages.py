"""/v1/threads/{thread_id}/messages"""

from __future__ import annotations

from fastapi import APIRouter

from openassistants.api.deps import DbDep, MessageListParamsDep, RuntimeDep, TenantDep
from openassistants.api.responses import JSONResponse
from openassistants.schemas.messages import MessageCreate, MessageUpdate
from openassistants.services import messages as service

router = APIRouter(prefix="/threads/{thread_id}/messages", tags=["messages"])


@router.post("")
async def create_message(
    thread_id: str, body: MessageCreate, rt: RuntimeDep, tenant: TenantDep
) -> JSONResponse:
    message = await service.create_message(rt.db, tenant, thread_id, body, ingestion=rt.ingestor)
    return JSONResponse(message)


@router.get("")
async def list_messages(
    thread_id: str, params: MessageListParamsDep, db: DbDep, tenant: TenantDep
) -> JSONResponse:
    return JSONResponse(await service.list_messages(db, tenant, thread_id, params, params.run_id))


@router.get("/{message_id}")
async def retrieve_message(thread_id: str, message_id: str, db: DbDep, tenant: TenantDep) -> JSONResponse:
    return JSONResponse(await service.get_message(db, tenant, thread_id, message_id))


@router.post("/{message_id}")
async def modify_message(
    thread_id: str, message_id: str, body: MessageUpdate, db: DbDep, tenant: TenantDep
) -> JSONResponse:
    return JSONResponse(await service.update_message(db, tenant, thread_id, message_id, body))


@router.delete("/{message_id}")
async def delete_message(thread_id: str, message_id: str, db: DbDep, tenant: TenantDep) -> JSONResponse:
    return JSONResponse(await service.delete_message(db, tenant, thread_id, message_id))
