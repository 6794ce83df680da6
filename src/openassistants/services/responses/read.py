"""Reading, deleting and cancelling responses: a response's run, its stored request, and the items
its steps made."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from openassistants.errors import InvalidRequest
from openassistants.run_events import ends_stream
from openassistants.services.prompt import CONTEXT_LENGTH_EXCEEDED
from openassistants.services.responses.ids import response_not_found, run_id_of
from openassistants.services.responses.stream import ResponseEvents, response_events
from openassistants.services.responses.wire import cited_files, output_items, response_to_wire
from openassistants.services.run_actions import cancel_run
from openassistants.services.runtime import Runtime
from openassistants.statuses import RunStatus, is_terminal
from openassistants.storage import tables
from openassistants.storage.queries import list_body

R, S, M = tables.runs, tables.run_steps, tables.messages
RESPONSES = tables.responses
FILE_SEARCH_RESULTS = "file_search_call.results"
INCLUDABLE = frozenset(
    {
        FILE_SEARCH_RESULTS,
        "message.output_text.logprobs",
        "reasoning.encrypted_content",
        "code_interpreter_call.outputs",
        "message.input_image.image_url",
        "computer_call_output.output.image_url",
        "web_search_call.action.sources",
        "web_search_call.results",
    }
)


def check_include(include: list[str] | None) -> bool:
    """Whether file_search results are asked for; refuses what the API does not know."""
    for value in include or []:
        if value not in INCLUDABLE:
            supported = ", ".join(f"'{v}'" for v in sorted(INCLUDABLE))
            raise InvalidRequest(
                f"Invalid value: '{value}'. Supported values are: {supported}.",
                param="include",
                code="invalid_value",
            )
    return FILE_SEARCH_RESULTS in (include or [])


async def load(
    conn: AsyncConnection, tenant: str, response_id: str, *, unstored: bool = False
) -> tuple[Mapping[Any, Any], Mapping[Any, Any]]:
    """The response's run and stored request; 404 for another tenant's, a deleted one, or (unless
    ``unstored``: its creator still gets it once) one made with ``store: false``."""
    run_id = run_id_of(response_id)
    conditions = [RESPONSES.c.run_id == run_id, RESPONSES.c.tenant_id == tenant]
    if not unstored:
        conditions.append(RESPONSES.c.store.is_(True))
    stored = (await conn.execute(select(RESPONSES).where(*conditions))).mappings().first()
    run = (await conn.execute(select(R).where(R.c.id == run_id))).mappings().first()
    if stored is None or run is None:
        raise response_not_found(response_id)
    return run, stored


async def render(
    conn: AsyncConnection, run: Mapping[Any, Any], stored: Mapping[Any, Any], *, include_results: bool = False
) -> dict[str, Any]:
    steps = (await conn.execute(select(S).where(S.c.run_id == run["id"]).order_by(S.c.seq))).mappings().all()
    messages = {
        m["id"]: m for m in (await conn.execute(select(M).where(M.c.run_id == run["id"]))).mappings().all()
    }
    filenames = await cited_filenames(conn, messages.values())
    items = output_items(steps, messages, filenames=filenames, include_results=include_results)
    return response_to_wire(run, stored, items)


async def cited_filenames(conn: AsyncConnection, messages: Iterable[Mapping[Any, Any]]) -> dict[str, str]:
    """The filenames of the files the ``messages``' annotations name."""
    parts = (part for message in messages for part in message["content"] or [])
    return await filenames_of(
        conn, cited_files(a for p in parts for a in (p.get("text") or {}).get("annotations") or [])
    )


async def filenames_of(conn: AsyncConnection, ids: set[str]) -> dict[str, str]:
    if not ids:
        return {}
    F = tables.files
    rows = await conn.execute(select(F.c.id, F.c.filename).where(F.c.id.in_(ids)))
    return {row[0]: row[1] for row in rows}


async def get_response(
    rt: Runtime, tenant: str, response_id: str, include: list[str] | None = None
) -> dict[str, Any]:
    results = check_include(include)
    async with rt.db.read() as conn:
        run, stored = await load(conn, tenant, response_id)
        return await render(conn, run, stored, include_results=results)


def _asked_results(stored: Mapping[Any, Any]) -> bool:
    return FILE_SEARCH_RESULTS in (stored["request"].get("include") or [])


async def wait_until_done(rt: Runtime, run_id: str) -> None:
    """Returns once the run has stopped (its stream's last event is logged)."""
    async for batch in rt.bus.subscribe(run_id, 0):
        if any(ends_stream(event) for _, event in batch):
            return


async def finished_response(rt: Runtime, tenant: str, response_id: str) -> dict[str, Any]:
    """The response once its run has stopped: what a create without stream or background returns."""
    await wait_until_done(rt, run_id_of(response_id))
    async with rt.db.read() as conn:
        run, stored = await load(conn, tenant, response_id, unstored=True)
        response = await render(conn, run, stored, include_results=_asked_results(stored))
    await forget_unstored(rt, stored)
    error = response["error"]
    if error is not None and error["code"] == CONTEXT_LENGTH_EXCEEDED:
        # Its ``truncation`` is ``disabled``: as hosted, the request is refused.
        raise InvalidRequest(error["message"], param="input", code=CONTEXT_LENGTH_EXCEEDED)
    return response


async def forget_unstored(rt: Runtime, stored: Mapping[Any, Any]) -> None:
    """A response made with ``store: false`` is removed once its creator has it: its run, and its
    thread unless that is a conversation (whose items the response added)."""
    if stored["store"] or stored["conversation"]:
        return
    T = tables.threads
    async with rt.db.write(inline=True) as conn:
        await conn.execute(delete(RESPONSES).where(RESPONSES.c.run_id == stored["run_id"]))
        await conn.execute(delete(S).where(S.c.run_id == stored["run_id"]))
        await conn.execute(delete(M).where(M.c.thread_id == stored["thread_id"]))
        await conn.execute(delete(R).where(R.c.id == stored["run_id"]))
        await conn.execute(delete(T).where(T.c.id == stored["thread_id"]))


async def delete_response(rt: Runtime, tenant: str, response_id: str) -> None:
    """Forgets the response (its messages stay in a conversation it belonged to)."""
    async with rt.db.write(inline=True) as conn:
        run, _ = await load(conn, tenant, response_id)
        await conn.execute(delete(RESPONSES).where(RESPONSES.c.run_id == run["id"]))


async def cancel_response(rt: Runtime, tenant: str, response_id: str) -> dict[str, Any]:
    """Stops a background response (the only kind that can be cancelled, as hosted); a finished
    one is returned as it is."""
    async with rt.db.read() as conn:
        run, stored = await load(conn, tenant, response_id)
    if not stored["background"]:
        raise InvalidRequest("Cannot cancel a synchronous response.", param=None)
    if not is_terminal(run["status"]):
        with contextlib.suppress(InvalidRequest):  # it finished meanwhile
            await cancel_run(rt, tenant, run["thread_id"], run["id"])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wait_until_done(rt, run["id"]), timeout=10)
    async with rt.db.read() as conn:
        run, stored = await load(conn, tenant, response_id)
        return await render(conn, run, stored, include_results=_asked_results(stored))


async def list_input_items(
    rt: Runtime, tenant: str, response_id: str, *, limit: int, order: str, after: str | None
) -> dict[str, Any]:
    async with rt.db.read() as conn:
        _, stored = await load(conn, tenant, response_id)
    items = list(stored["input_items"])
    if order == "desc":
        items.reverse()
    if after is not None:
        ids = [i["id"] for i in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    return list_body(items[:limit], len(items) > limit)


def stream_of(
    rt: Runtime, tenant: str, created: dict[str, Any], *, starting_after: int = -1
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """The response's events (``created`` is the response as created), live until it stops."""
    run_id = run_id_of(created["id"])

    async def final() -> dict[str, Any]:
        async with rt.db.read() as conn:
            run, stored = await load(conn, tenant, created["id"], unstored=True)
            return await render(conn, run, stored, include_results=_asked_results(stored))

    async def filenames(ids: set[str]) -> dict[str, str]:
        if not ids:
            return {}
        async with rt.db.read() as conn:
            return await filenames_of(conn, ids)

    events = ResponseEvents({**created, "output": [], "usage": None}, final, filenames)
    stream = response_events(rt.bus.subscribe(run_id, 0), events, starting_after=starting_after)
    return stream if created["store"] else _forgetting(rt, tenant, created["id"], stream)


async def _forgetting(
    rt: Runtime, tenant: str, response_id: str, stream: AsyncIterator[tuple[str, dict[str, Any]]]
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """An unstored response's stream, which removes it once the stream has said everything."""
    async for event in stream:
        yield event
    async with rt.db.read() as conn:
        _, stored = await load(conn, tenant, response_id, unstored=True)
    await forget_unstored(rt, stored)


async def resumed_stream(
    rt: Runtime, tenant: str, response_id: str, starting_after: int
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """``GET /v1/responses/{id}?stream=true``: the stream again, after ``starting_after``."""
    async with rt.db.read() as conn:
        run, stored = await load(conn, tenant, response_id)
        created = response_to_wire(
            {**run, "status": RunStatus.queued if stored["background"] else RunStatus.in_progress}, stored, []
        )
    if await rt.bus.last_id(run["id"]) == 0:
        raise InvalidRequest(
            "This response's stream is no longer available; retrieve the response instead.", param="stream"
        )
    return stream_of(rt, tenant, created, starting_after=starting_after)
