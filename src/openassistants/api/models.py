"""/v1/models: the models runs can use (services/models.py)."""

from __future__ import annotations

from fastapi import APIRouter

from openassistants.api.deps import RuntimeDep
from openassistants.api.responses import JSONResponse

router = APIRouter(prefix="/models", tags=["models"])


@router.get("")
async def list_models(runtime: RuntimeDep) -> JSONResponse:
    return JSONResponse(await runtime.models.list_models())


# ``:path``: served names such as "meta-llama/Llama-3.1-8B-Instruct" hold slashes.
@router.get("/{model:path}")
async def retrieve_model(model: str, runtime: RuntimeDep) -> JSONResponse:
    return JSONResponse(await runtime.models.get_model(model))
