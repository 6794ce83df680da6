"""The web console: its static files at ``/`` and ``/console/…``, ``GET /v1/threads``, the thread list
it browses (an extension: the hosted API cannot list threads), and ``POST /v1/console/markdown``, which
turns model-written Markdown into sanitized HTML for the page.

The console is plain HTML, CSS and JavaScript modules shipped in the package (``openassistants/console``),
with no build step. The page itself needs no key; every data call it makes goes through ``/v1`` with the
user's key, like any other client.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi import APIRouter
from starlette.responses import FileResponse

from openassistants.api.deps import DbDep, ListParamsDep, TenantDep
from openassistants.api.responses import JSONResponse
from openassistants.errors import InvalidRequest, NotFound
from openassistants.markdown import render_markdown
from openassistants.schemas.console import MARKDOWN_MAX_CHARS, MarkdownRender
from openassistants.services import threads as service

CONSOLE_DIR = Path(__file__).resolve().parent.parent / "console"

#: The console loads nothing from elsewhere (it must work offline) and runs no inline script; images are
#: files fetched with the key and shown as blob: URLs.
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'; form-action 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    # Revalidate on every load (the ETag makes that a 304), so an upgraded server never runs old JS.
    "cache-control": "no-cache",
}

MEDIA_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}

router = APIRouter()


def _assets() -> dict[str, Path]:
    """Every servable file by its path under the console directory, fixed at import: no request path
    ever reaches the file system."""
    return {
        path.relative_to(CONSOLE_DIR).as_posix(): path
        for path in CONSOLE_DIR.rglob("*")
        if path.is_file() and path.suffix in MEDIA_TYPES
    }


ASSETS = _assets()


def _file(name: str) -> FileResponse:
    path = ASSETS.get(name)
    if path is None:
        raise NotFound(f"No console file named '{name}'.")
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=SECURITY_HEADERS)


@router.get("/", include_in_schema=False)
async def console_page() -> FileResponse:
    return _file("index.html")


@router.get("/console/{name:path}", include_in_schema=False)
async def console_asset(name: str) -> FileResponse:
    return _file(name)


@router.get("/v1/threads", tags=["threads"])
async def list_threads(params: ListParamsDep, db: DbDep, tenant: TenantDep) -> JSONResponse:
    """List the key's threads (an OpenAssistants extension), with the same cursors as other lists."""
    return JSONResponse(await service.list_threads(db, tenant, params))


@router.post("/v1/console/markdown", tags=["console"])
async def render_markdown_texts(body: MarkdownRender, tenant: TenantDep) -> JSONResponse:
    """Render each text as sanitized HTML (the console's Markdown); behind the key like any /v1 call."""
    for index, text in enumerate(body.texts):
        if len(text) > MARKDOWN_MAX_CHARS:
            raise InvalidRequest(
                f"Text {index} is {len(text)} characters; at most {MARKDOWN_MAX_CHARS} are rendered.",
                param=f"texts[{index}]",
            )
    # Off the event loop: a long text takes milliseconds to render.
    html = await asyncio.to_thread(lambda: [render_markdown(text) for text in body.texts])
    return JSONResponse({"object": "list", "data": html})
