"""Shapes shared by several resources: metadata, tools, tool resources, response formats, list params."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_validator,
)
from pydantic_core import PydanticCustomError

MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512

#: The largest token limit a run or response takes (``max_prompt_tokens``, ``max_completion_tokens``,
#: ``max_output_tokens``): the runs table holds them in 32-bit integers, which PostgreSQL (and, past
#: 2**63, SQLite) refuse to exceed, and a refused insert failed every run created in its batch.
MAX_TOKEN_LIMIT = 2**31 - 1


# orjson, which writes every response, only handles integers in [-2**63, 2**64) and 254 levels of
# nesting; a body nested deeper than this is refused (a strict JSON schema allows 10 levels).
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
MAX_JSON_DEPTH = 64


def _unstorable(value: Any, path: str = "", depth: int = 0) -> tuple[str, str] | None:
    """The first value (and its path) that we could not store or echo back, and why.

    Python's JSON parser lets through what JSON and our storage don't: NaN and Infinity, lone UTF-16
    surrogates (``"\\ud800"``), integers beyond 64 bits. PostgreSQL text cannot hold NUL (``\\u0000``),
    and an input must mean the same on SQLite and PostgreSQL.
    """
    if depth > MAX_JSON_DEPTH:
        return path, f"nested more than {MAX_JSON_DEPTH} levels deep"
    if isinstance(value, str):
        if "\x00" in value:
            return path, "string contains a null character (\\u0000)"
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return path, "string contains an unpaired UTF-16 surrogate"
    elif isinstance(value, float):
        if not math.isfinite(value):
            return path, "NaN and Infinity are not JSON numbers"
    elif isinstance(value, int) and not isinstance(value, bool):
        if not _INT_MIN <= value <= _INT_MAX:
            return path, "integer out of range"
    elif isinstance(value, dict):
        for key, item in value.items():
            # The path travels in the error, which must itself be encodable.
            printable = str(key).encode("utf-8", "backslashreplace").decode("utf-8")
            child = f"{path}.{printable}" if path else printable
            found = _unstorable(key, child, depth) or _unstorable(item, child, depth + 1)
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _unstorable(item, f"{path}[{index}]", depth + 1)
            if found:
                return found
    return None


class RequestModel(BaseModel):
    """Base for request bodies: unknown fields, loosely typed values (``"0.5"`` or ``true`` for a
    number) and values we could not store are errors, as on the hosted API."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _check_storable(cls, data: Any) -> Any:
        found = _unstorable(data)
        if found is not None:
            path, reason = found
            # api/errors.py appends ``path`` to this model's own location to name the parameter.
            raise PydanticCustomError("unstorable_value", reason, {"path": path})
        return data


def check_metadata(value: dict[str, str] | None) -> dict[str, str] | None:
    if value is None:
        return None
    if len(value) > MAX_METADATA_PAIRS:
        raise ValueError(f"object too large: expected at most {MAX_METADATA_PAIRS} keys, got {len(value)}")
    for key, item in value.items():
        if len(key) > MAX_METADATA_KEY:
            raise ValueError(f"key '{key[:80]}' is longer than {MAX_METADATA_KEY} characters")
        if len(item) > MAX_METADATA_VALUE:
            raise ValueError(f"value for '{key}' is longer than {MAX_METADATA_VALUE} characters")
    return value


#: Metadata as every request body takes it: checked against the hosted API's bounds where it is declared.
Metadata = Annotated[dict[str, str] | None, Field(default=None), AfterValidator(check_metadata)]

ToolName = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]


class FunctionDefinition(RequestModel):
    name: ToolName
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class FunctionTool(RequestModel):
    type: Literal["function"]
    function: FunctionDefinition


class CodeInterpreterTool(RequestModel):
    type: Literal["code_interpreter"]


class HybridSearchOptions(RequestModel):
    """RRF weights of the embedding and the text (lexical) rankings, as the Responses API's."""

    embedding_weight: float = Field(ge=0, allow_inf_nan=False)
    text_weight: float = Field(ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _one_ranking_counts(self) -> HybridSearchOptions:
        if self.embedding_weight == 0 and self.text_weight == 0:
            raise ValueError("embedding_weight and text_weight cannot both be 0")
        return self


class FileSearchRankingOptions(RequestModel):
    ranker: Literal["auto", "default_2024_08_21"] = "auto"
    score_threshold: float = Field(ge=0, le=1)
    hybrid_search: HybridSearchOptions | None = None


class FileSearchOptions(RequestModel):
    max_num_results: int | None = Field(default=None, ge=1, le=50)
    ranking_options: FileSearchRankingOptions | None = None


class FileSearchTool(RequestModel):
    type: Literal["file_search"]
    file_search: FileSearchOptions | None = None


#: Request bodies of tools registered beyond the built-in ones (``tools/base.Registry.register``), by
#: type. Empty unless a deployment or a test adds a tool: then the wire, its errors and the OpenAPI
#: document are exactly the built-in ``Tool`` union's.
_REGISTERED_TOOLS: dict[str, type[RequestModel]] = {}


def accept_tool_schema(kind: str, model: type[RequestModel]) -> None:
    _REGISTERED_TOOLS[kind] = model


def refuse_tool_schema(kind: str) -> None:
    _REGISTERED_TOOLS.pop(kind, None)


def _registered_tool(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """A registered tool's body by its own model; any other by the built-in union (and its errors)."""
    if _REGISTERED_TOOLS and isinstance(value, dict) and value.get("type") in _REGISTERED_TOOLS:
        return _REGISTERED_TOOLS[value["type"]].model_validate(value)
    return handler(value)


Tool = Annotated[
    FunctionTool | CodeInterpreterTool | FileSearchTool,
    Field(discriminator="type"),
    WrapValidator(_registered_tool),
]


def tool_to_wire(tool: RequestModel) -> dict[str, Any]:
    """The stored and echoed form of a tool: what was sent, without nulls, ``strict`` defaulted."""
    wire = tool.model_dump(exclude_none=True)
    if isinstance(tool, FunctionTool):
        wire["function"].setdefault("strict", False)
    return wire


class JsonSchemaFormat(RequestModel):
    name: ToolName
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ResponseFormatText(RequestModel):
    type: Literal["text"]


class ResponseFormatJsonObject(RequestModel):
    type: Literal["json_object"]


class ResponseFormatJsonSchema(RequestModel):
    type: Literal["json_schema"]
    json_schema: JsonSchemaFormat


ResponseFormat = (
    Literal["auto"]
    | Annotated[
        ResponseFormatText | ResponseFormatJsonObject | ResponseFormatJsonSchema,
        Field(discriminator="type"),
    ]
)


def response_format_to_wire(value: object) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(exclude_none=True, by_alias=True)
    return value


#: An object id in a request (``file-…``, ``vs_…``): ours are far shorter; the bound is the schema's, so
#: that no service ever meets a value its own models would refuse.
ObjectId = Annotated[str, Field(min_length=1, max_length=64)]

FileIds = Annotated[list[ObjectId], Field(max_length=20)]


class CodeInterpreterResources(RequestModel):
    file_ids: FileIds = Field(default_factory=list)


class ChunkingStatic(RequestModel):
    max_chunk_size_tokens: int = Field(ge=100, le=4096)
    chunk_overlap_tokens: int = Field(ge=0)

    @model_validator(mode="after")
    def _overlap_at_most_half(self) -> ChunkingStatic:
        if self.chunk_overlap_tokens > self.max_chunk_size_tokens // 2:
            raise ValueError("chunk_overlap_tokens must not exceed half of max_chunk_size_tokens")
        return self


class AutoChunking(RequestModel):
    type: Literal["auto"]


class StaticChunking(RequestModel):
    type: Literal["static"]
    static: ChunkingStatic


ChunkingStrategy = Annotated[AutoChunking | StaticChunking, Field(discriminator="type")]


class VectorStoreHelper(RequestModel):
    file_ids: list[ObjectId] = Field(default_factory=list, max_length=10_000)
    chunking_strategy: ChunkingStrategy | None = None
    metadata: Metadata


class FileSearchResourcesCreate(RequestModel):
    vector_store_ids: list[ObjectId] | None = Field(default=None, max_length=1)
    vector_stores: list[VectorStoreHelper] | None = Field(default=None, max_length=1)

    @model_validator(mode="after")
    def _one_of(self) -> FileSearchResourcesCreate:
        if self.vector_store_ids and self.vector_stores:
            raise ValueError("provide either vector_store_ids or vector_stores, not both")
        return self


class FileSearchResources(RequestModel):
    vector_store_ids: list[ObjectId] = Field(default_factory=list, max_length=1)


class ToolResourcesCreate(RequestModel):
    code_interpreter: CodeInterpreterResources | None = None
    file_search: FileSearchResourcesCreate | None = None


class ToolResources(RequestModel):
    code_interpreter: CodeInterpreterResources | None = None
    file_search: FileSearchResources | None = None


#: The hosted API's bounds on a list's ``limit`` and on a cursor (``after``, ``before``, ``run_id``).
LIST_LIMIT_MAX = 100
LIST_CURSOR_MAX_LENGTH = 128


class ListParams(BaseModel):
    """Cursor pagination, as every Assistants list takes it in its query string. The one reading of
    those parameters: FastAPI validates a route's query against it (``Annotated[ListParams, Query()]``)
    and the fast lane (api/hot.py) validates the same query the same way, so both refuse alike."""

    limit: int = Field(20, ge=1, le=LIST_LIMIT_MAX)
    order: Literal["asc", "desc"] = "desc"
    after: str | None = Field(None, max_length=LIST_CURSOR_MAX_LENGTH)
    before: str | None = Field(None, max_length=LIST_CURSOR_MAX_LENGTH)
