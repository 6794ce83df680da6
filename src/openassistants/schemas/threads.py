"""Request bodies for threads (CreateThreadRequest, ModifyThreadRequest)."""

from __future__ import annotations

from pydantic import Field

from openassistants.schemas.common import (
    Metadata,
    RequestModel,
    ToolResources,
    ToolResourcesCreate,
)
from openassistants.schemas.messages import MessageCreate


class ThreadCreate(RequestModel):
    messages: list[MessageCreate] = Field(default_factory=list, max_length=1000)
    tool_resources: ToolResourcesCreate | None = None
    metadata: Metadata


class ThreadUpdate(RequestModel):
    tool_resources: ToolResources | None = None
    metadata: Metadata
