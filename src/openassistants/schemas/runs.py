"""Request bodies for runs (CreateRunRequest, CreateThreadAndRunRequest, ModifyRunRequest,
SubmitToolOutputsRunRequest)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from openassistants.schemas.assistants import ReasoningEffort
from openassistants.schemas.common import (
    MAX_TOKEN_LIMIT,
    Metadata,
    RequestModel,
    ResponseFormat,
    Tool,
    ToolResources,
)
from openassistants.schemas.messages import MessageCreate
from openassistants.schemas.threads import ThreadCreate

FILE_SEARCH_CONTENT_INCLUDE = "step_details.tool_calls[*].file_search.results[*].content"


class TruncationStrategy(RequestModel):
    type: Literal["auto", "last_messages"]
    last_messages: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _needs_count(self) -> TruncationStrategy:
        if self.type == "last_messages" and self.last_messages is None:
            raise ValueError("last_messages is required when type is 'last_messages'")
        return self


class ToolChoiceFunctionName(RequestModel):
    name: str


class ToolChoiceObject(RequestModel):
    type: Literal["function", "code_interpreter", "file_search"]
    function: ToolChoiceFunctionName | None = None

    @model_validator(mode="after")
    def _function_needs_name(self) -> ToolChoiceObject:
        if self.type == "function" and self.function is None:
            raise ValueError("tool_choice.function is required when tool_choice.type is 'function'")
        return self


ToolChoice = Literal["none", "auto", "required"] | ToolChoiceObject


class RunOptions(RequestModel):
    """Fields shared by create-run and create-thread-and-run."""

    assistant_id: str = Field(min_length=1, max_length=64)
    model: str | None = Field(default=None, min_length=1, max_length=256)
    instructions: str | None = Field(default=None, max_length=256_000)
    tools: list[Tool] | None = Field(default=None, max_length=20)
    metadata: Metadata
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stream: bool | None = None
    max_prompt_tokens: int | None = Field(default=None, ge=256, le=MAX_TOKEN_LIMIT)
    max_completion_tokens: int | None = Field(default=None, ge=256, le=MAX_TOKEN_LIMIT)
    truncation_strategy: TruncationStrategy | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool = True
    response_format: ResponseFormat | None = None


class RunCreate(RunOptions):
    reasoning_effort: ReasoningEffort | None = None
    additional_instructions: str | None = Field(default=None, max_length=256_000)
    additional_messages: list[MessageCreate] | None = Field(default=None, max_length=100)


class ThreadAndRunCreate(RunOptions):
    thread: ThreadCreate | None = None
    tool_resources: ToolResources | None = None


class RunUpdate(RequestModel):
    metadata: Metadata


class ToolOutput(RequestModel):
    tool_call_id: str | None = None
    output: str | None = Field(default=None, max_length=512 * 1024)


class SubmitToolOutputs(RequestModel):
    tool_outputs: Annotated[list[ToolOutput], Field(max_length=128)]
    stream: bool | None = None
