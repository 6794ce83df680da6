"""Request bodies for vector stores, their files and file batches, and search."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from openassistants.schemas.common import (
    ChunkingStrategy,
    HybridSearchOptions,
    Metadata,
    ObjectId,
    RequestModel,
)

MAX_ATTRIBUTES = 16

AttributeValue = Annotated[str, Field(max_length=512)] | float | bool


def check_attributes(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    if len(value) > MAX_ATTRIBUTES:
        raise ValueError(f"object too large: expected at most {MAX_ATTRIBUTES} keys, got {len(value)}")
    for key in value:
        if len(key) > 64:
            raise ValueError(f"key '{key[:80]}' is longer than 64 characters")
    return value


Attributes = Annotated[
    dict[str, AttributeValue] | None, Field(default=None), AfterValidator(check_attributes)
]


class ExpiresAfter(RequestModel):
    anchor: Literal["last_active_at"]
    days: int = Field(ge=1, le=365)


class VectorStoreCreate(RequestModel):
    file_ids: list[ObjectId] = Field(default_factory=list, max_length=500)
    name: str | None = Field(default=None, max_length=256)
    description: str | None = Field(default=None, max_length=512)
    expires_after: ExpiresAfter | None = None
    chunking_strategy: ChunkingStrategy | None = None
    metadata: Metadata


class VectorStoreUpdate(RequestModel):
    name: str | None = Field(default=None, max_length=256)
    expires_after: ExpiresAfter | None = None
    metadata: Metadata


class VectorStoreFileCreate(RequestModel):
    file_id: ObjectId
    chunking_strategy: ChunkingStrategy | None = None
    attributes: Attributes


class VectorStoreFileUpdate(RequestModel):
    attributes: Attributes


class BatchFile(RequestModel):
    file_id: ObjectId
    chunking_strategy: ChunkingStrategy | None = None
    attributes: Attributes


class FileBatchCreate(RequestModel):
    file_ids: list[ObjectId] | None = Field(default=None, min_length=1, max_length=2000)
    files: list[BatchFile] | None = Field(default=None, min_length=1, max_length=2000)
    chunking_strategy: ChunkingStrategy | None = None
    attributes: Attributes

    @model_validator(mode="after")
    def _exactly_one(self) -> FileBatchCreate:
        if (self.file_ids is None) == (self.files is None):
            raise ValueError("provide exactly one of file_ids or files")
        return self

    def entries(self) -> list[BatchFile]:
        """Every file with its own settings (batch-level ones apply only to ``file_ids``)."""
        if self.files is not None:
            return self.files
        return [
            BatchFile(file_id=f, chunking_strategy=self.chunking_strategy, attributes=self.attributes)
            for f in self.file_ids or []
        ]


class ComparisonFilter(RequestModel):
    type: Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "nin"]
    key: str
    value: str | float | bool | list[str | float]


class CompoundFilter(RequestModel):
    type: Literal["and", "or"]
    filters: list[ComparisonFilter | CompoundFilter] = Field(min_length=1)


class SearchRankingOptions(RequestModel):
    ranker: Literal["none", "auto", "default-2024-11-15"] = "auto"
    score_threshold: float = Field(default=0.0, ge=0, le=1)
    hybrid_search: HybridSearchOptions | None = None


class SearchRequest(RequestModel):
    query: (
        Annotated[str, Field(min_length=1, max_length=4096)]
        | Annotated[
            list[Annotated[str, Field(min_length=1, max_length=4096)]], Field(min_length=1, max_length=10)
        ]
    )
    rewrite_query: bool = False
    max_num_results: int = Field(default=10, ge=1, le=50)
    filters: ComparisonFilter | CompoundFilter | None = None
    ranking_options: SearchRankingOptions | None = None


def chunking_to_stored(strategy: object) -> dict[str, Any]:
    """``auto`` is never echoed: it is stored (and reported) as static 800/400, as the API does."""
    static = getattr(strategy, "static", None)
    if static is not None:
        return {
            "type": "static",
            "static": {
                "max_chunk_size_tokens": static.max_chunk_size_tokens,
                "chunk_overlap_tokens": static.chunk_overlap_tokens,
            },
        }
    return {"type": "static", "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400}}
