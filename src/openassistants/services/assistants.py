"""Assistants: create, retrieve, update, list, delete."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import update

from openassistants.errors import not_found
from openassistants.ids import new_id
from openassistants.schemas.assistants import AssistantCreate, AssistantUpdate
from openassistants.schemas.common import ListParams, response_format_to_wire, tool_to_wire
from openassistants.services.attachments import create_tool_resources, queues_ingestion
from openassistants.services.lookup import load_assistant, read_assistant
from openassistants.services.resources import check_tool_resources, tool_resources_to_stored
from openassistants.services.wire_object import SAMPLING_DEFAULTS, wire_object
from openassistants.storage import tables
from openassistants.storage.db import Database
from openassistants.storage.queries import (
    delete_remembering_cursors,
    list_body,
    page,
    take_turns_creating,
)

if TYPE_CHECKING:
    from openassistants.services.claim_loop import Wakeable

T = tables.assistants


_ASSISTANT_COLUMNS = (
    "created_at",
    "name",
    "description",
    "model",
    "instructions",
    "tools",
    "tool_resources",
    "metadata",
    "temperature",
    "top_p",
    "response_format",
)


def assistant_to_wire(row: Mapping[str, Any]) -> dict[str, Any]:
    """The ``assistant`` object exactly as the hosted API returned it."""
    return wire_object("assistant", row, _ASSISTANT_COLUMNS, null_means=SAMPLING_DEFAULTS)


async def create_assistant(
    db: Database, tenant: str, body: AssistantCreate, *, ingestion: Wakeable
) -> dict[str, Any]:
    values = {
        "id": new_id("assistant"),
        "tenant_id": tenant,
        "name": body.name,
        "description": body.description,
        "model": body.model,
        "instructions": body.instructions,
        "tools": [tool_to_wire(t) for t in body.tools],
        "metadata": body.metadata or {},
        "temperature": body.temperature,
        "top_p": body.top_p,
        "response_format": response_format_to_wire(body.response_format),
        "reasoning_effort": body.reasoning_effort,
    }
    async with db.write() as conn:
        values["tool_resources"] = await create_tool_resources(conn, tenant, body.tool_resources)
        await take_turns_creating(conn, T, tenant)
        values["created_at"] = int(time.time())
        await conn.execute(T.insert().values(values))
    if queues_ingestion(body.tool_resources):
        await ingestion.wake()
    return assistant_to_wire(values)


async def get_assistant(db: Database, tenant: str, assistant_id: str) -> dict[str, Any]:
    """Raises NotFound for an unknown id or another tenant's assistant."""
    return assistant_to_wire(await read_assistant(db, tenant, assistant_id))


async def update_assistant(
    db: Database, tenant: str, assistant_id: str, body: AssistantUpdate
) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for field in body.model_fields_set:
        value = getattr(body, field)
        if field == "tools":
            changes["tools"] = [tool_to_wire(t) for t in value or []]
        elif field == "tool_resources":
            changes["tool_resources"] = tool_resources_to_stored(value)
        elif field == "metadata":
            changes["metadata"] = value or {}
        elif field == "response_format":
            changes["response_format"] = response_format_to_wire(value)
        elif field == "model" and value is None:
            continue
        else:
            changes[field] = value
    async with db.write() as conn:
        if "tool_resources" in changes:
            await load_assistant(conn, tenant, assistant_id)  # an unknown assistant is the 404 to give
            await check_tool_resources(conn, tenant, changes["tool_resources"])
        if changes:
            await conn.execute(
                update(T).where(T.c.id == assistant_id, T.c.tenant_id == tenant).values(changes)
            )
        row = await load_assistant(conn, tenant, assistant_id)
    return assistant_to_wire(row)


async def delete_assistant(db: Database, tenant: str, assistant_id: str) -> dict[str, Any]:
    async with db.write() as conn:
        deleted = await delete_remembering_cursors(conn, T, T.c.id == assistant_id, T.c.tenant_id == tenant)
    if deleted == 0:
        raise not_found("assistant", assistant_id)
    return {"id": assistant_id, "object": "assistant.deleted", "deleted": True}


async def list_assistants(db: Database, tenant: str, params: ListParams) -> dict[str, Any]:
    async with db.read() as conn:
        rows, has_more = await page(conn, T, {"tenant_id": tenant}, **params.model_dump())
    return list_body([assistant_to_wire(r) for r in rows], has_more)
