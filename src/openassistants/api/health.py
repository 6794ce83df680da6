"""Liveness and readiness probes; neither needs an API key.

``/healthz``: the process is up and serving (never touches the database), so an orchestrator restarts
it only when it is wedged. ``/readyz``: it can do useful work now, since the database answers and, on
PostgreSQL, the LISTEN connection that carries wake-ups, cancels and stream events is up; a load balancer
sends it traffic only then.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from openassistants.api.deps import RuntimeDep
from openassistants.api.responses import JSONResponse
from openassistants.errors import ServiceUnavailable
from openassistants.services.health import ping_database

#: Longest wait for ``SELECT 1``; a probe that is slower than this already says "not ready".
DATABASE_CHECK_TIMEOUT_SECONDS = 2.0

router = APIRouter(include_in_schema=False)


@router.get("/healthz")
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@router.get("/readyz")
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        async with asyncio.timeout(DATABASE_CHECK_TIMEOUT_SECONDS):
            await ping_database(runtime.db)
    except TimeoutError:
        checks["database"] = f"down: no answer to SELECT 1 within {DATABASE_CHECK_TIMEOUT_SECONDS:g} s"
    except ServiceUnavailable as exc:
        checks["database"] = f"down: {exc.message}"
    except Exception as exc:  # a probe reports what it saw; it never answers 500
        checks["database"] = f"down: {type(exc).__name__}: {str(exc)[:200]}"
    else:
        checks["database"] = "ok"
    if not runtime.db.is_sqlite:
        checks["listen"] = "ok" if runtime.notifier.connected else "down: the LISTEN connection is closed"
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks}, status_code=200 if ready else 503
    )
