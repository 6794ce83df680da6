"""Request bodies for messages (CreateMessageRequest, ModifyMessageRequest)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from openassistants.schemas.common import (
    LIST_CURSOR_MAX_LENGTH,
    ListParams,
    Metadata,
    ObjectId,
    RequestModel,
)

MAX_TEXT_CHARS = 256_000


class ImageFileRef(RequestModel):
    file_id: ObjectId
    detail: Literal["auto", "low", "high"] = "auto"


class ImageUrlRef(RequestModel):
    url: str = Field(min_length=1, max_length=65_536)
    detail: Literal["auto", "low", "high"] = "auto"


class TextPart(RequestModel):
    type: Literal["text"]
    text: str = Field(max_length=MAX_TEXT_CHARS)


class ImageFilePart(RequestModel):
    type: Literal["image_file"]
    image_file: ImageFileRef


class ImageUrlPart(RequestModel):
    type: Literal["image_url"]
    image_url: ImageUrlRef

    @field_validator("image_url")
    @classmethod
    def _http_url(cls, value: ImageUrlRef) -> ImageUrlRef:
        if not value.url.startswith(("http://", "https://", "data:image/")):
            raise ValueError("image_url.url must be an http(s) URL or an image data URL")
        return value


ContentPart = Annotated[TextPart | ImageFilePart | ImageUrlPart, Field(discriminator="type")]


class AttachmentTool(RequestModel):
    type: Literal["code_interpreter", "file_search"]


class Attachment(RequestModel):
    file_id: ObjectId
    tools: list[AttachmentTool] = Field(default_factory=list)


class MessageCreate(RequestModel):
    role: Literal["user", "assistant"]
    content: (
        Annotated[str, Field(max_length=MAX_TEXT_CHARS)]
        | Annotated[list[ContentPart], Field(min_length=1, max_length=100)]
    )
    attachments: list[Attachment] | None = Field(default=None, max_length=20)
    metadata: Metadata


class MessageUpdate(RequestModel):
    metadata: Metadata


class MessageListParams(ListParams):
    """A thread's messages take one more filter: those a run created."""

    run_id: str | None = Field(None, max_length=LIST_CURSOR_MAX_LENGTH)
