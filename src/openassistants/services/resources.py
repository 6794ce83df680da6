"""tool_resources as stored on assistants and threads, and the checks they pass on the way in."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from openassistants.errors import InvalidRequest
from openassistants.schemas.common import ToolResources, ToolResourcesCreate
from openassistants.services.lookup import load_file, load_vector_store
from openassistants.tools.registry import TOOLS


def tool_resources_to_stored(value: ToolResources | ToolResourcesCreate | None) -> dict[str, Any]:
    """The stored (and echoed) form: only the tools that were given, with their id lists."""
    if value is None:
        return {}
    stored: dict[str, Any] = {}
    if value.code_interpreter is not None:
        stored["code_interpreter"] = {"file_ids": list(value.code_interpreter.file_ids)}
    if value.file_search is not None:
        if getattr(value.file_search, "vector_stores", None):
            # Only creation requests may carry the helper (services/attachments.create_tool_resources).
            raise InvalidRequest(
                "tool_resources.file_search.vector_stores can only be given when creating; "
                "pass vector_store_ids here.",
                param="tool_resources.file_search.vector_stores",
            )
        stored["file_search"] = {"vector_store_ids": list(value.file_search.vector_store_ids or [])}
    return stored


#: How a tool's resource ids are checked, by their kind (``tools/base.Resource.kind``).
_LOADERS = {"file": load_file, "vector_store": load_vector_store}


async def check_tool_resources(conn: AsyncConnection, tenant: str, stored: dict[str, Any]) -> None:
    """Every id in stored tool_resources names one of the tenant's files or vector stores: an unknown
    id is a 404 now (as for a message's attachments), not a tool that finds nothing at run time."""
    for kind, resource in TOOLS.with_resources():
        load = _LOADERS[resource.kind]
        for resource_id in (stored.get(kind) or {}).get(resource.key) or []:
            await load(conn, tenant, resource_id)
