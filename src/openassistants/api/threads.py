"""/v1/threads"""

from __future__ import annotations

from fastapi import APIRouter, Body

from openassistants.api.deps import DbDep, RuntimeDep, TenantDep
from openassistants.api.responses import JSONResponse
from openassistants.schemas.threads import ThreadCreate, ThreadUpdate
from openassistants.services import threads as service

router = APIRouter(prefix="/threads", tags=["threads"])


@router.post("")
async def create_thread(
    rt: RuntimeDep, tenant: TenantDep, body: ThreadCreate | None = Body(None)
) -> JSONResponse:
    body = body or ThreadCreate.model_validate({})
    thread = await service.create_thread(rt.db, tenant, body, ingestion=rt.ingestor)
    return JSONResponse(thread)


@router.get("/{thread_id}")
async def retrieve_thread(thread_id: str, db: DbDep, tenant: TenantDep) -> JSONResponse:
    return JSONResponse(await service.get_thread(db, tenant, thread_id))


@router.post("/{thread_id}")
async def modify_thread(thread_id: str, body: ThreadUpdate, db: DbDep, tenant: TenantDep) -> JSONResponse:
    return JSONResponse(await service.update_thread(db, tenant, thread_id, body))


@router.delete("/{thread_id}")
async def delete_thread(thread_id: str, rt: RuntimeDep, tenant: TenantDep) -> JSONResponse:
    return JSONResponse(await service.delete_thread(rt, tenant, thread_id))
