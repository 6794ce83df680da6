"""/v1/assistants"""

from __future__ import annotations

from fastapi import APIRouter

from openassistants.api.deps import DbDep, ListParamsDep, RuntimeDep, TenantDep
from openassistants.api.responses import JSONResponse
from openassistants.schemas.assistants import AssistantCreate, AssistantUpdate
from openassistants.services import assistants as service

router = APIRouter(prefix="/assistants", tags=["assistants"])


@router.post("")
async def create_assistant(body: AssistantCreate, rt: RuntimeDep, tenant: TenantDep) -> JSONResponse:
    assistant = await service.create_assistant(rt.db, tenant, body, ingestion=rt.ingestor)
    return JSONResponse(assistant)


@router.get("")
async def list_assistants(params: ListParamsDep, db: DbDep, tenant: TenantDep) -> JSONResponse:
    return JSONResponse(await service.list_assistants(db, tenant, params))


@router.get("/{assistant_id}")
async def retrieve_assistant(assistant_id: str, db: DbDep, tenant: TenantDep) -> JSONResponse:
    return JSONResponse(await service.get_assistant(db, tenant, assistant_id))


@router.post("/{assistant_id}")
async def modify_assistant(
    assistant_id: str, body: AssistantUpdate, db: DbDep, tenant: TenantDep
) -> JSONResponse:
    return JSONResponse(await service.update_assistant(db, tenant, assistant_id, body))


@router.delete("/{assistant_id}")
async def delete_assistant(assistant_id: str, db: DbDep, tenant: TenantDep) -> JSONResponse:
    return JSONResponse(await service.delete_assistant(db, tenant, assistant_id))
