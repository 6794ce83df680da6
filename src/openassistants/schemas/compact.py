"""The body of ``POST /v1/responses/compact``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from openassistants.schemas.common import RequestModel


class ResponseCompact(RequestModel):
    model: str = Field(min_length=1, max_length=256)
    input: str | list[dict[str, Any]] | None = None
    instructions: str | None = Field(default=None, max_length=256_000)
    previous_response_id: str | None = Field(default=None, max_length=64)
    # Options of the hosted service that change nothing here: accepted, so that SDK settings pass.
    service_tier: Literal["auto", "default", "flex", "scale", "priority"] | None = None
    prompt_cache_key: str | None = Field(default=None, max_length=256)
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None
    prompt_cache_options: dict[str, Any] | None = None
    image: dict[str, Any] | None = None
