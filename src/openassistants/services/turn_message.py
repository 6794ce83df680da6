"""The message a model turn has open: its text as it streams, the images leading it, and its
annotations, which the run's tools give (``tools/``: file_search's citations, code_interpreter's
``sandbox:`` links) and which stream in its deltas once settled."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from openassistants.services.messages import text_part
from openassistants.tools.base import RunToolState


@dataclass
class OpenMessage:
    """The message the turn has open, if any (with its step)."""

    message: dict[str, Any] | None = None
    message_step: dict[str, Any] | None = None
    #: Whether the message's events went out (its text began).
    announced: bool = False
    #: Storing the message and its step ahead of the reply's text, when the turn does that.
    storing: asyncio.Future[None] | None = None
    text: str = ""
    #: Images shown at the start of the message (the content index of its text).
    images: list[str] = field(default_factory=list)
    #: How many of the message's annotations went out in its deltas (a prefix of them, in order).
    annotated: int = 0

    def settled_annotations(self, tools: RunToolState, piece: str) -> list[dict[str, Any]]:
        """The annotations the text just streamed (``piece``) settled, numbered by their place among
        the completed message's annotations, for its delta (as the hosted API streamed them).

        Annotations go out in order, each once (the SDKs add up a re-sent one's offsets), and only
        once nothing streamed later can move or change them: each tool says where its first
        unsettled one may begin (a citation settles when its closing 】 arrives; a ``sandbox:`` link
        once a character after it ends it; neither while an unclosed 【 before it could still become
        a citation that sorts first). The rest go out when the message closes.
        """
        text, annotating = self.text, tools.annotating
        if not annotating or not any(
            tool.streams_annotations(state, piece, text) for tool, state in annotating
        ):
            return []
        annotations = self.annotations(tools)
        boundary = min(tool.unsettled_from(state, text) for tool, state in annotating)
        settled = 0
        for annotation in annotations:
            if annotation["start_index"] >= boundary:
                break
            settled += 1
        return self.numbered(annotations, settled)

    def numbered(self, annotations: list[dict[str, Any]], settled: int) -> list[dict[str, Any]]:
        """``annotations[annotated:settled]`` with their delta ``index``; marks them sent."""
        start = self.annotated
        if settled <= start:
            return []
        self.annotated = settled
        return [{"index": i, **annotations[i]} for i in range(start, settled)]

    def annotations(self, tools: RunToolState) -> list[dict[str, Any]]:
        """The message's annotations, in the order its text has them."""
        annotations = [
            annotation
            for tool, state in tools.annotating
            for annotation in tool.annotations(state, self.text)
        ]
        return sorted(annotations, key=lambda a: a["start_index"])

    def content(self, tools: RunToolState) -> list[dict[str, Any]]:
        """The message's content: images first, then the text with its annotations."""
        text = text_part(self.text)
        text["text"]["annotations"] = self.annotations(tools)
        return [image_part(f) for f in self.images] + [text]


def image_part(file_id: str) -> dict[str, Any]:
    return {"type": "image_file", "image_file": {"file_id": file_id, "detail": "auto"}}
