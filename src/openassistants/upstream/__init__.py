"""The model boundary: the only code that speaks to the LLM (``chat.py``; its replies are read in
``chat_reply.py``, its failures sorted in ``chat_errors.py``)."""

from openassistants.upstream.chat import (
    ChatClient,
    ChatEvent,
    ChatRequest,
    Finish,
    FinishReason,
    TextDelta,
    ToolCallDelta,
    UpstreamError,
    UpstreamErrorCode,
    Usage,
    UsageReport,
)

__all__ = [
    "ChatClient",
    "ChatEvent",
    "ChatRequest",
    "Finish",
    "FinishReason",
    "TextDelta",
    "ToolCallDelta",
    "UpstreamError",
    "UpstreamErrorCode",
    "Usage",
    "UsageReport",
]
