"""Request bodies of the Responses and Conversations APIs (CreateResponse, CreateConversationBody,
UpdateConversationBody, the items endpoints). Input items stay plain dicts here: their many shapes
are read, and refused with the hosted wording, by services/responses/inputs.py."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from openassistants.schemas.common import (
    LIST_CURSOR_MAX_LENGTH,
    LIST_LIMIT_MAX,
    MAX_TOKEN_LIMIT,
    FunctionDefinition,
    Metadata,
    RequestModel,
    ToolName,
)
from openassistants.schemas.vector_stores import ComparisonFilter, CompoundFilter, SearchRankingOptions

#: Items one ``POST /v1/conversations/{id}/items`` (or a conversation's creation) may add.
MAX_ITEMS_PER_CALL = 20
INPUT_ITEMS_MAX = 2000


class FunctionToolParam(FunctionDefinition):
    """The Responses API's function tool: an Assistants function definition, with its ``type`` beside it
    rather than around it."""

    type: Literal["function"]


class FileSearchToolParam(RequestModel):
    type: Literal["file_search"]
    vector_store_ids: list[str] = Field(max_length=2)
    max_num_results: int | None = Field(default=None, ge=1, le=50)
    filters: ComparisonFilter | CompoundFilter | None = None
    ranking_options: SearchRankingOptions | None = None


class CodeInterpreterContainer(RequestModel):
    type: Literal["auto"]
    file_ids: list[str] = Field(default_factory=list, max_length=20)
    memory_limit: str | None = None


class CodeInterpreterToolParam(RequestModel):
    type: Literal["code_interpreter"]
    container: str | CodeInterpreterContainer


ToolParam = Annotated[
    FunctionToolParam | FileSearchToolParam | CodeInterpreterToolParam, Field(discriminator="type")
]


class ToolChoiceFunction(RequestModel):
    type: Literal["function"]
    name: str


class ToolChoiceBuiltin(RequestModel):
    type: Literal["file_search", "code_interpreter"]


ToolChoiceParam = (
    Literal["none", "auto", "required"]
    | Annotated[ToolChoiceFunction | ToolChoiceBuiltin, Field(discriminator="type")]
)


class TextFormatText(RequestModel):
    type: Literal["text"]


class TextFormatJsonObject(RequestModel):
    type: Literal["json_object"]


class TextFormatJsonSchema(RequestModel):
    type: Literal["json_schema"]
    name: ToolName
    schema_: dict[str, Any] = Field(alias="schema")
    description: str | None = None
    strict: bool | None = None

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


TextFormat = Annotated[
    TextFormatText | TextFormatJsonObject | TextFormatJsonSchema, Field(discriminator="type")
]


class TextConfig(RequestModel):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


ConversationId = Annotated[str, Field(min_length=1, max_length=64)]


class ConversationRef(RequestModel):
    id: ConversationId


class Reasoning(RequestModel):
    """Accepted and echoed as null: the upstream is a Chat Completions model."""

    effort: str | None = Field(default=None, max_length=32)
    summary: str | None = Field(default=None, max_length=32)
    generate_summary: str | None = Field(default=None, max_length=32)


class StreamOptions(RequestModel):
    include_obfuscation: bool | None = None


class ResponseCreate(RequestModel):
    model: str = Field(min_length=1, max_length=256)
    input: str | list[dict[str, Any]] | None = None
    instructions: str | None = Field(default=None, max_length=256_000)
    previous_response_id: str | None = Field(default=None, max_length=64)
    conversation: ConversationId | ConversationRef | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_output_tokens: int | None = Field(default=None, ge=16, le=MAX_TOKEN_LIMIT)
    max_tool_calls: int | None = Field(default=None, ge=1)
    metadata: Metadata
    store: bool | None = None
    background: bool | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    text: TextConfig | None = None
    tools: list[ToolParam] | None = Field(default=None, max_length=128)
    tool_choice: ToolChoiceParam | None = None
    parallel_tool_calls: bool | None = None
    truncation: Literal["auto", "disabled"] | None = None
    include: list[str] | None = None
    user: str | None = Field(default=None, max_length=256)
    safety_identifier: str | None = Field(default=None, max_length=64)
    prompt_cache_key: str | None = Field(default=None, max_length=256)
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None
    service_tier: Literal["auto", "default", "flex", "scale", "priority"] | None = None
    reasoning: Reasoning | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    # Options of the hosted service that change nothing here: accepted, so that SDK settings pass.
    prompt_cache_options: dict[str, Any] | None = None
    background_options: dict[str, Any] | None = None
    context_management: list[dict[str, Any]] | None = None
    moderation: dict[str, Any] | None = None
    access_programs: list[Any] | None = None
    image: dict[str, Any] | None = None
    #: Stored prompt templates (refused by services/responses/create.py: there are none here).
    prompt: dict[str, Any] | None = None

    @field_validator("input")
    @classmethod
    def _bounded_input(cls, value: str | list[dict[str, Any]] | None) -> Any:
        if isinstance(value, list) and len(value) > INPUT_ITEMS_MAX:
            raise ValueError(f"array too long: expected at most {INPUT_ITEMS_MAX} items, got {len(value)}")
        return value

    @property
    def conversation_id(self) -> str | None:
        if isinstance(self.conversation, ConversationRef):
            return self.conversation.id
        return self.conversation


class InputTokensCount(RequestModel):
    """``POST /v1/responses/input_tokens``: the fields of a response that shape its prompt."""

    model: str | None = Field(default=None, max_length=256)
    input: str | list[dict[str, Any]] | None = None
    instructions: str | None = Field(default=None, max_length=256_000)
    previous_response_id: str | None = Field(default=None, max_length=64)
    conversation: ConversationId | ConversationRef | None = None
    tools: list[ToolParam] | None = Field(default=None, max_length=128)
    tool_choice: ToolChoiceParam | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    truncation: Literal["auto", "disabled"] | None = None
    reasoning: Reasoning | None = None
    personality: str | None = Field(default=None, max_length=256)


class ConversationCreate(RequestModel):
    items: list[dict[str, Any]] | None = Field(default=None, max_length=MAX_ITEMS_PER_CALL)
    metadata: Metadata


class ConversationUpdate(RequestModel):
    metadata: Metadata


class ItemsCreate(RequestModel):
    items: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_ITEMS_PER_CALL)


class ItemListParams(BaseModel):
    """A page of Responses items (a response's input items, a conversation's items), read from the query
    string as the Assistants lists' ``ListParams`` are, with the same bounds and no ``before``."""

    limit: int = Field(20, ge=1, le=LIST_LIMIT_MAX)
    order: Literal["asc", "desc"] = "desc"
    after: str | None = Field(None, max_length=LIST_CURSOR_MAX_LENGTH)
