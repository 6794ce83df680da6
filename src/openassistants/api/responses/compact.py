"""``POST /v1/responses/compact``: a context summarized into one compaction item
(services/responses/compact.py)."""

from __future__ import annotations

from fastapi import APIRouter

from openassistants.api.deps import RuntimeDep, TenantDep
from openassistants.api.responses import JSONResponse
from openassistants.schemas.compact import ResponseCompact
from openassistants.services.responses.compact import compact as compact_context

router = APIRouter(tags=["responses"])


@router.post("/responses/compact")
async def compact(body: ResponseCompact, rt: RuntimeDep, tenant: TenantDep) -> JSONResponse:
    return JSONResponse(await compact_context(rt, tenant, body))
