"""/v1/vector_stores, their files, file batches and search."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from openassistants.api.deps import ListParamsDep, RuntimeDep, TenantDep
from openassistants.api.responses import JSONResponse
from openassistants.schemas.vector_stores import (
    FileBatchCreate,
    SearchRequest,
    VectorStoreCreate,
    VectorStoreFileCreate,
    VectorStoreFileUpdate,
    VectorStoreUpdate,
)
from openassistants.services import vector_store_files as files
from openassistants.services import vector_stores as stores
from openassistants.services.vector_store_search import search_vector_store

router = APIRouter(prefix="/vector_stores", tags=["vector_stores"])

#: ``openai-poll-after-ms`` for the SDK's file and batch poll helpers: ingestion takes a moment.
POLL_AFTER = {"openai-poll-after-ms": "100"}

FileStatusFilter = Annotated[
    Literal["in_progress", "completed", "failed", "cancelled"] | None, Query(alias="filter")
]


@router.post("")
async def create_vector_store(body: VectorStoreCreate, rt: RuntimeDep, tenant: TenantDep) -> JSONResponse:
    return JSONResponse(await stores.create_vector_store(rt.db, tenant, body, ingestion=rt.ingestor))


@router.get("")
async def list_vector_stores(params: ListParamsDep, rt: RuntimeDep, tenant: TenantDep) -> JSONResponse:
    return JSONResponse(await stores.list_vector_stores(rt.db, tenant, params))


@router.get("/{vector_store_id}")
async def retrieve_vector_store(vector_store_id: str, rt: RuntimeDep, tenant: TenantDep) -> JSONResponse:
    return JSONResponse(await stores.get_vector_store(rt.db, tenant, vector_store_id))


@router.post("/{vector_store_id}")
async def modify_vector_store(
    vector_store_id: str, body: VectorStoreUpdate, rt: RuntimeDep, tenant: TenantDep
) -> JSONResponse:
    return JSONResponse(await stores.update_vector_store(rt.db, tenant, vector_store_id, body))


@router.delete("/{vector_store_id}")
async def delete_vector_store(vector_store_id: str, rt: RuntimeDep, tenant: TenantDep) -> JSONResponse:
    return JSONResponse(await stores.delete_vector_store(rt.db, tenant, vector_store_id))


@router.post("/{vector_store_id}/search")
async def search(
    vector_store_id: str, body: SearchRequest, rt: RuntimeDep, tenant: TenantDep
) -> JSONResponse:
    return JSONResponse(await search_vector_store(rt, tenant, vector_store_id, body))


@router.post("/{vector_store_id}/files")
async def create_vector_store_file(
    vector_store_id: str, body: VectorStoreFileCreate, rt: RuntimeDep, tenant: TenantDep
) -> JSONResponse:
    vs_file = await files.create_vector_store_file(
        rt.db, tenant, vector_store_id, body, ingestion=rt.ingestor
    )
    return JSONResponse(vs_file, headers=POLL_AFTER)


@router.get("/{vector_store_id}/files")
async def list_vector_store_files(
    vector_store_id: str,
    params: ListParamsDep,
    rt: RuntimeDep,
    tenant: TenantDep,
    status: FileStatusFilter = None,
) -> JSONResponse:
    return JSONResponse(await files.list_vector_store_files(rt.db, tenant, vector_store_id, params, status))


@router.get("/{vector_store_id}/files/{file_id}")
async def retrieve_vector_store_file(
    vector_store_id: str, file_id: str, rt: RuntimeDep, tenant: TenantDep
) -> JSONResponse:
    return JSONResponse(
        await files.get_vector_store_file(rt.db, tenant, vector_store_id, file_id), headers=POLL_AFTER
    )


@router.post("/{vector_store_id}/files/{file_id}")
async def update_vector_store_file(
    vector_store_id: str, file_id: str, body: VectorStoreFileUpdate, rt: RuntimeDep, tenant: TenantDep
) -> JSONResponse:
    return JSONResponse(await files.update_vector_store_file(rt.db, tenant, vector_store_id, file_id, body))


@router.delete("/{vector_store_id}/files/{file_id}")
async def delete_vector_store_file(
    vector_store_id: str, file_id: str, rt: RuntimeDep, tenant: TenantDep
) -> JSONResponse:
    return JSONResponse(await files.delete_vector_store_file(rt.db, tenant, vector_store_id, file_id))


@router.get("/{vector_store_id}/files/{file_id}/content")
async def vector_store_file_content(
    vector_store_id: str, file_id: str, rt: RuntimeDep, tenant: TenantDep
) -> JSONResponse:
    return JSONResponse(await files.vector_store_file_content(rt.db, tenant, vector_store_id, file_id))


@router.post("/{vector_store_id}/file_batches")
async def create_file_batch(
    vector_store_id: str, body: FileBatchCreate, rt: RuntimeDep, tenant: TenantDep
) -> JSONResponse:
    batch = await files.create_file_batch(rt.db, tenant, vector_store_id, body, ingestion=rt.ingestor)
    return JSONResponse(batch, headers=POLL_AFTER)


@router.get("/{vector_store_id}/file_batches/{batch_id}")
async def retrieve_file_batch(
    vector_store_id: str, batch_id: str, rt: RuntimeDep, tenant: TenantDep
) -> JSONResponse:
    return JSONResponse(
        await files.get_file_batch(rt.db, tenant, vector_store_id, batch_id), headers=POLL_AFTER
    )


@router.post("/{vector_store_id}/file_batches/{batch_id}/cancel")
async def cancel_file_batch(
    vector_store_id: str, batch_id: str, rt: RuntimeDep, tenant: TenantDep
) -> JSONResponse:
    return JSONResponse(await files.cancel_file_batch(rt.db, tenant, vector_store_id, batch_id))


@router.get("/{vector_store_id}/file_batches/{batch_id}/files")
async def list_file_batch_files(
    vector_store_id: str,
    batch_id: str,
    params: ListParamsDep,
    rt: RuntimeDep,
    tenant: TenantDep,
    status: FileStatusFilter = None,
) -> JSONResponse:
    return JSONResponse(
        await files.list_vector_store_files(rt.db, tenant, vector_store_id, params, status, batch_id)
    )
