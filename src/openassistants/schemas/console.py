"""Request bodies of the console's own routes (not part of OpenAI's API)."""

from __future__ import annotations

from pydantic import Field

from openassistants.schemas.common import RequestModel

#: Texts rendered in one request: a thread page's messages, or one that just completed.
MARKDOWN_MAX_TEXTS = 100
#: Longest text rendered; a message's text is at most 256k characters in the hosted API.
MARKDOWN_MAX_CHARS = 256_000


class MarkdownRender(RequestModel):
    texts: list[str] = Field(max_length=MARKDOWN_MAX_TEXTS)
