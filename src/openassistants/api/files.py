"""/v1/files"""

from __future__ import annotations

import mimetypes
import re
from typing import Annotated, Any, Literal, get_args
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from pydantic import ValidationError
from starlette.responses import StreamingResponse

from openassistants.api.deps import BlobsDep, DbDep, TenantDep
from openassistants.api.errors import translate_validation_error
from openassistants.api.responses import JSONResponse
from openassistants.api.uploads import FILE_FIELD, receive_upload
from openassistants.config import Settings
from openassistants.errors import InvalidRequest
from openassistants.schemas.common import LIST_CURSOR_MAX_LENGTH
from openassistants.schemas.files import FileCreate, FilePurpose
from openassistants.services import files as service

router = APIRouter(prefix="/files", tags=["files"])

# The route reads its body itself (api/uploads.py), so FastAPI cannot describe it; this does.
_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "purpose"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "purpose": {"type": "string", "enum": list(get_args(FilePurpose))},
                        "expires_after[anchor]": {"type": "string", "enum": ["created_at"]},
                        "expires_after[seconds]": {"type": "integer", "minimum": 3600, "maximum": 2592000},
                    },
                }
            }
        },
    }
}


@router.post("", openapi_extra=_UPLOAD_BODY)
async def create_file(request: Request, db: DbDep, blobs: BlobsDep, tenant: TenantDep) -> JSONResponse:
    settings: Settings = request.app.state.settings
    async with blobs.stage() as staged:
        upload = await receive_upload(request, staged, max_file_bytes=settings.max_upload_bytes)
        body = _file_create(upload.fields)
        if not upload.has_file:
            raise InvalidRequest(
                f"Missing required parameter: '{FILE_FIELD}'.",
                param=FILE_FIELD,
                code="missing_required_parameter",
            )
        return JSONResponse(await service.create_file(db, blobs, tenant, body, upload.filename, staged))


@router.get("")
async def list_files(
    db: DbDep,
    tenant: TenantDep,
    purpose: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 10_000,
    order: Annotated[Literal["asc", "desc"], Query()] = "desc",
    after: Annotated[str | None, Query(max_length=LIST_CURSOR_MAX_LENGTH)] = None,
) -> JSONResponse:
    page = await service.list_files(db, tenant, purpose=purpose, limit=limit, order=order, after=after)
    return JSONResponse(page)


@router.get("/{file_id}")
async def retrieve_file(file_id: str, db: DbDep, blobs: BlobsDep, tenant: TenantDep) -> JSONResponse:
    return JSONResponse(await service.get_file(db, blobs, tenant, file_id))


@router.delete("/{file_id}")
async def delete_file(file_id: str, db: DbDep, blobs: BlobsDep, tenant: TenantDep) -> JSONResponse:
    return JSONResponse(await service.delete_file(db, blobs, tenant, file_id))


@router.get("/{file_id}/content")
async def download_file(file_id: str, db: DbDep, blobs: BlobsDep, tenant: TenantDep) -> StreamingResponse:
    content = await service.open_file_content(db, blobs, tenant, file_id)
    media_type = mimetypes.guess_type(content.filename)[0] or "application/octet-stream"
    headers = {
        # Set here rather than as media_type, which would add "; charset=utf-8" to text/* types.
        "content-type": media_type,
        "content-length": str(content.size),
        "content-disposition": _attachment(content.filename),
    }
    return StreamingResponse(content.chunks, headers=headers)


_NAME_FIELD = re.compile(r"^(\w+)\[(\w+)\]$")


def _file_create(fields: dict[str, str]) -> FileCreate:
    """The form's text fields as the request model; ``expires_after[seconds]`` nests as in JSON."""
    data: dict[str, Any] = {}
    for name, value in fields.items():
        nested = _NAME_FIELD.match(name)
        if nested and isinstance(data.setdefault(nested[1], {}), dict):
            data[nested[1]][nested[2]] = value
        else:
            data[name] = value
    try:
        # Lax: every form value is text, so "3600" must be read as the integer it means.
        return FileCreate.model_validate(data, strict=False)
    except ValidationError as exc:
        raise translate_validation_error([dict(e) for e in exc.errors()], data) from None


def _attachment(filename: str) -> str:
    """``Content-Disposition`` for a stored (already sanitized) filename: an ASCII fallback plus the
    exact name in RFC 5987 form."""
    fallback = "".join(ch if ch.isascii() and ch not in '"\\' else "_" for ch in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
