"""Request bodies for /assistants (CreateAssistantRequest, ModifyAssistantRequest)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from openassistants.schemas.common import (
    Metadata,
    RequestModel,
    ResponseFormat,
    Tool,
    ToolResources,
    ToolResourcesCreate,
)

ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]


class AssistantCreate(RequestModel):
    model: str = Field(min_length=1, max_length=256)
    name: str | None = Field(default=None, max_length=256)
    description: str | None = Field(default=None, max_length=512)
    instructions: str | None = Field(default=None, max_length=256_000)
    reasoning_effort: ReasoningEffort | None = None
    tools: list[Tool] = Field(default_factory=list, max_length=128)
    tool_resources: ToolResourcesCreate | None = None
    metadata: Metadata
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    response_format: ResponseFormat | None = None


class AssistantUpdate(RequestModel):
    model: str | None = Field(default=None, min_length=1, max_length=256)
    name: str | None = Field(default=None, max_length=256)
    description: str | None = Field(default=None, max_length=512)
    instructions: str | None = Field(default=None, max_length=256_000)
    reasoning_effort: ReasoningEffort | None = None
    tools: list[Tool] | None = Field(default=None, max_length=128)
    tool_resources: ToolResources | None = None
    metadata: Metadata
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    response_format: ResponseFormat | None = None
