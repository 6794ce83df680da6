"""/v1/threads/{thread_id}/runs, /v1/threads/runs and run steps."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from openassistants.api.deps import IncludeQuery, ListParamsDep, RuntimeDep, TenantDep
from openassistants.api.responses import JSONResponse
from openassistants.api.streaming import replayed_event_stream, run_event_stream
from openassistants.errors import InvalidRequest
from openassistants.events import MAX_EVENT_ID, parse_event_id
from openassistants.schemas.runs import (
    FILE_SEARCH_CONTENT_INCLUDE,
    RunCreate,
    RunUpdate,
    SubmitToolOutputs,
    ThreadAndRunCreate,
)
from openassistants.services import run_actions as service
from openassistants.statuses import STREAM_STOP_STATUSES

router = APIRouter(tags=["runs"])

#: Sent as ``openai-poll-after-ms``; the SDK's poll helpers wait this long between retrieves.
POLL_AFTER_MS = "25"
#: How long a poll-helper retrieve may wait for the run to reach a state the helper stops at.
LONG_POLL_SECONDS = 3.0


def _include_content(include: list[str] | None) -> bool:
    for value in include or []:
        if value != FILE_SEARCH_CONTENT_INCLUDE:
            raise InvalidRequest(
                f"Invalid value: '{value}'. Supported values are: '{FILE_SEARCH_CONTENT_INCLUDE}'.",
                param="include",
                code="invalid_value",
            )
    return bool(include)


def _run_response(run: dict[str, object]) -> JSONResponse:
    return JSONResponse(run, headers={"openai-poll-after-ms": POLL_AFTER_MS})


@router.post("/threads/runs")
async def create_thread_and_run(body: ThreadAndRunCreate, rt: RuntimeDep, tenant: TenantDep) -> Response:
    run, start = await service.create_thread_and_run(rt, tenant, body)
    if body.stream:
        return run_event_stream(rt.bus, run["id"], start)
    return _run_response(run)


@router.post("/threads/{thread_id}/runs")
async def create_run(
    thread_id: str,
    body: RunCreate,
    rt: RuntimeDep,
    tenant: TenantDep,
    include: IncludeQuery = None,
) -> Response:
    """The answer is the run's event stream, or the run. Also called by api/hot.py."""
    _include_content(include)
    run, start = await service.create_run(rt, tenant, thread_id, body)
    if body.stream:
        return run_event_stream(rt.bus, run["id"], start)
    return _run_response(run)


@router.get("/threads/{thread_id}/runs")
async def list_runs(thread_id: str, params: ListParamsDep, rt: RuntimeDep, tenant: TenantDep) -> JSONResponse:
    return JSONResponse(await service.list_runs(rt, tenant, thread_id, params))


@router.get("/threads/{thread_id}/runs/{run_id}")
async def retrieve_run(
    thread_id: str, run_id: str, request: Request, rt: RuntimeDep, tenant: TenantDep
) -> JSONResponse:
    long_poll = (
        request.headers.get("x-stainless-poll-helper") == "true"
        and "x-stainless-custom-poll-interval" not in request.headers
    )
    start = await rt.bus.last_id(run_id) if long_poll else 0
    run = await service.get_run(rt, tenant, thread_id, run_id)
    if long_poll and run["status"] not in STREAM_STOP_STATUSES:
        # The SDK's poll helper would sleep and ask again; answer as soon as there is news instead.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(LONG_POLL_SECONDS):
                async for _ in rt.bus.subscribe(run_id, start):
                    pass
        run = await service.get_run(rt, tenant, thread_id, run_id)
    return _run_response(run)


@router.get("/threads/{thread_id}/runs/{run_id}/events")
async def stream_run_events(
    thread_id: str,
    run_id: str,
    request: Request,
    rt: RuntimeDep,
    tenant: TenantDep,
    after: Annotated[int | None, Query(ge=0, le=MAX_EVENT_ID)] = None,
) -> Response:
    """Resume a run's stream (an OpenAssistants extension): the events after ``Last-Event-ID`` (or
    ``?after=``), from any server process, then live ones until the run stops or needs action."""
    header = request.headers.get("last-event-id")
    if header is not None:
        after = parse_event_id(header)
        if after is None:
            raise InvalidRequest("Invalid 'Last-Event-ID': expected an event id.", param="Last-Event-ID")
    run = await service.get_run(rt, tenant, thread_id, run_id)
    if run["status"] in STREAM_STOP_STATUSES:
        return replayed_event_stream(await rt.bus.replay(run_id, after or 0))
    return run_event_stream(rt.bus, run_id, after or 0)


@router.post("/threads/{thread_id}/runs/{run_id}")
async def modify_run(
    thread_id: str, run_id: str, body: RunUpdate, rt: RuntimeDep, tenant: TenantDep
) -> JSONResponse:
    return _run_response(await service.update_run(rt, tenant, thread_id, run_id, body))


@router.post("/threads/{thread_id}/runs/{run_id}/cancel")
async def cancel_run(thread_id: str, run_id: str, rt: RuntimeDep, tenant: TenantDep) -> JSONResponse:
    return _run_response(await service.cancel_run(rt, tenant, thread_id, run_id))


@router.post("/threads/{thread_id}/runs/{run_id}/submit_tool_outputs")
async def submit_tool_outputs(
    thread_id: str, run_id: str, body: SubmitToolOutputs, rt: RuntimeDep, tenant: TenantDep
) -> Response:
    run, start = await service.submit_tool_outputs(rt, tenant, thread_id, run_id, body)
    if body.stream:
        return run_event_stream(rt.bus, run_id, start)
    return _run_response(run)


@router.get("/threads/{thread_id}/runs/{run_id}/steps")
async def list_run_steps(
    thread_id: str,
    run_id: str,
    params: ListParamsDep,
    rt: RuntimeDep,
    tenant: TenantDep,
    include: IncludeQuery = None,
) -> JSONResponse:
    return JSONResponse(
        await service.list_steps(rt, tenant, thread_id, run_id, params, _include_content(include))
    )


@router.get("/threads/{thread_id}/runs/{run_id}/steps/{step_id}")
async def retrieve_run_step(
    thread_id: str,
    run_id: str,
    step_id: str,
    rt: RuntimeDep,
    tenant: TenantDep,
    include: IncludeQuery = None,
) -> JSONResponse:
    return JSONResponse(
        await service.get_step(rt, tenant, thread_id, run_id, step_id, _include_content(include))
    )
