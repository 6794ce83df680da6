"""The fields of ``POST /v1/files`` besides the file itself (sent as multipart form fields)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from openassistants.schemas.common import RequestModel

#: What a file may be uploaded for; the hosted API's response enum lacks ``evals``, its request enum has it.
FilePurpose = Literal["assistants", "batch", "fine-tune", "vision", "user_data", "evals"]


class FileExpiresAfter(RequestModel):
    anchor: Literal["created_at"]
    seconds: int = Field(ge=3600, le=2_592_000)


class FileCreate(RequestModel):
    purpose: FilePurpose
    expires_after: FileExpiresAfter | None = None
