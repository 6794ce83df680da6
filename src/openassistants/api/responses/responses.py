"""/v1/responses: create (answered when done, streamed, or in the background), retrieve (or resume
its stream), delete, cancel, input items, input token counts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import Response

from openassistants.api.deps import IncludeQuery, ItemPageDep, RuntimeDep, TenantDep
from openassistants.api.responses import JSONResponse
from openassistants.api.responses.sse import response_event_stream
from openassistants.schemas.responses import InputTokensCount, ResponseCreate
from openassistants.services.responses import read
from openassistants.services.responses.create import create_response
from openassistants.services.responses.tokens import count_input_tokens

router = APIRouter(tags=["responses"])


@router.post("/responses")
async def create(body: ResponseCreate, rt: RuntimeDep, tenant: TenantDep) -> Response:
    read.check_include(body.include)
    created = await create_response(rt, tenant, body)
    if body.stream:
        return response_event_stream(read.stream_of(rt, tenant, created))
    if body.background:
        return JSONResponse(created)
    return JSONResponse(await read.finished_response(rt, tenant, created["id"]))


@router.post("/responses/input_tokens")
async def input_tokens(body: InputTokensCount, rt: RuntimeDep, tenant: TenantDep) -> JSONResponse:
    return JSONResponse(await count_input_tokens(rt, tenant, body))


@router.get("/responses/{response_id}")
async def retrieve(
    response_id: str,
    rt: RuntimeDep,
    tenant: TenantDep,
    include: IncludeQuery = None,
    stream: bool = False,
    starting_after: Annotated[int | None, Query(ge=0)] = None,
) -> Response:
    if stream:
        after = -1 if starting_after is None else starting_after
        return response_event_stream(await read.resumed_stream(rt, tenant, response_id, after))
    return JSONResponse(await read.get_response(rt, tenant, response_id, include))


@router.delete("/responses/{response_id}")
async def delete(response_id: str, rt: RuntimeDep, tenant: TenantDep) -> JSONResponse:
    await read.delete_response(rt, tenant, response_id)
    return JSONResponse({"id": response_id, "object": "response.deleted", "deleted": True})


@router.post("/responses/{response_id}/cancel")
async def cancel(response_id: str, rt: RuntimeDep, tenant: TenantDep) -> JSONResponse:
    return JSONResponse(await read.cancel_response(rt, tenant, response_id))


@router.get("/responses/{response_id}/input_items")
async def input_items(
    response_id: str,
    rt: RuntimeDep,
    tenant: TenantDep,
    page: ItemPageDep,
    include: IncludeQuery = None,
) -> JSONResponse:
    read.check_include(include)
    items = await read.list_input_items(
        rt, tenant, response_id, limit=page.limit, order=page.order, after=page.after
    )
    return JSONResponse(items)
