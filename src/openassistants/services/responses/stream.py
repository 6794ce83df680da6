"""A response's stream: the run's event log (``thread.run.*``, ``thread.message.*``) rendered as the
Responses API's events, numbered by ``sequence_number``.

The rendering is a pure function of the log, so a stream resumed with ``starting_after`` renders
the log from its start and skips the events the client has seen: the numbers are the same every
time. Only the last event (``response.completed`` …) reads the stored response.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from openassistants.events import Event
from openassistants.run_events import (
    MESSAGE_CREATED,
    MESSAGE_DELTA,
    MESSAGE_MOVED,
    RUN_CREATED,
    RUN_MOVED,
    STEP_DELTA,
    STEP_MOVED,
)
from openassistants.services.responses.ids import call_item_id
from openassistants.services.responses.wire import (
    ItemStatus,
    ResponseStatus,
    annotation_to_wire,
    cited_files,
    code_interpreter_item,
    file_search_item,
    function_call_item,
    message_item,
    output_text_part,
    response_status,
    settled_text,
)
from openassistants.statuses import MessageStatus, RunStatus, StepStatus

#: The run event → the response event that ends the stream.
_ENDS = {
    RUN_MOVED[RunStatus.completed]: "response.completed",
    RUN_MOVED[RunStatus.requires_action]: "response.completed",
    RUN_MOVED[RunStatus.incomplete]: "response.incomplete",
    RUN_MOVED[RunStatus.failed]: "response.failed",
    RUN_MOVED[RunStatus.expired]: "response.failed",
    RUN_MOVED[RunStatus.cancelled]: None,
}
_MESSAGE_ENDS = (MESSAGE_MOVED[MessageStatus.completed], MESSAGE_MOVED[MessageStatus.incomplete])

Render = Callable[[], Awaitable[dict[str, Any]]]
#: The filenames of some file ids (those it knows).
Filenames = Callable[[set[str]], Awaitable[dict[str, str]]]


@dataclass
class _Item:
    index: int
    item: dict[str, Any]
    text: str = ""
    #: How much of a message's text (without its citation markers) the deltas have sent.
    shown: int = 0
    #: The message's text part was announced (content_part.added).
    part_open: bool = False


@dataclass
class ResponseEvents:
    """Turns one run's events into response events. ``created`` is the response as created (no
    output); ``final`` renders the stored response when the run stops."""

    created: dict[str, Any]
    final: Render
    filenames: Filenames
    sequence: int = 0
    items: dict[str, _Item] = field(default_factory=dict)
    next_index: int = 0

    def _event(self, kind: str, **payload: Any) -> tuple[str, dict[str, Any]]:
        event = {"type": kind, "sequence_number": self.sequence, **payload}
        self.sequence += 1
        return kind, event

    def _response(self, status: str) -> dict[str, Any]:
        return {**self.created, "status": status}

    async def render(self, event: Event) -> list[tuple[str, dict[str, Any]]]:
        name = event.name
        data = orjson.loads(event.data)
        if name == RUN_CREATED:
            status = response_status(data, self.created["background"])
            return [self._event("response.created", response=self._response(status))]
        if name == RUN_MOVED[RunStatus.queued] and self.created["background"] and self.sequence == 1:
            return [self._event("response.queued", response=self._response(ResponseStatus.queued))]
        if name == RUN_MOVED[RunStatus.in_progress]:
            return [self._event("response.in_progress", response=self._response(ResponseStatus.in_progress))]
        if name == MESSAGE_CREATED:
            return self._message_added(data)
        if name == MESSAGE_DELTA:
            return await self._text_delta(data)
        if name in _MESSAGE_ENDS:
            return await self._message_done(data)
        if name == STEP_DELTA:
            return self._calls_delta(data)
        if name == STEP_MOVED[StepStatus.completed] and data["type"] == "tool_calls":
            return self._calls_done(data)
        if name in _ENDS:
            final = _ENDS[name]
            if final is None:
                return []
            response = await self.final()
            return [self._event(final, response=response)]
        return []

    def _added(self, key: str, item: dict[str, Any]) -> tuple[_Item, tuple[str, dict[str, Any]]]:
        entry = self.items[key] = _Item(self.next_index, item)
        self.next_index += 1
        return entry, self._event("response.output_item.added", output_index=entry.index, item=item)

    def _message_added(self, message: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        item = {**message_item({**message, "content": []}), "status": ItemStatus.in_progress}
        _, event = self._added(message["id"], item)
        return [event]

    def _open_part(self, entry: _Item) -> list[tuple[str, dict[str, Any]]]:
        if entry.part_open:
            return []
        entry.part_open = True
        return [self._part_event(entry, "response.content_part.added", part=output_text_part(""))]

    def _item_event(self, entry: _Item, kind: str, **payload: Any) -> tuple[str, dict[str, Any]]:
        """An event about the output item ``entry``."""
        return self._event(kind, item_id=entry.item["id"], output_index=entry.index, **payload)

    def _part_event(self, entry: _Item, kind: str, **payload: Any) -> tuple[str, dict[str, Any]]:
        """An event about a message's content part (its only one, its text)."""
        return self._item_event(entry, kind, content_index=0, **payload)

    async def _text_delta(self, delta: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        entry = self.items.get(delta["id"])
        if entry is None:
            return []
        events = self._open_part(entry)
        for part in delta["delta"].get("content") or []:
            if part.get("type") != "text":
                continue
            text = part["text"].get("value")
            if text:
                entry.text += text
                events += self._shown_delta(entry, settled_text(entry.text))
            annotations = part["text"].get("annotations") or []
            names = await self.filenames(cited_files(annotations))
            for annotation in annotations:
                wire = annotation_to_wire(annotation, names, entry.text)
                if wire is not None:
                    events.append(
                        self._part_event(
                            entry,
                            "response.output_text.annotation.added",
                            annotation_index=annotation["index"],
                            annotation=wire,
                        )
                    )
        return events

    def _shown_delta(self, entry: _Item, shown: str) -> list[tuple[str, dict[str, Any]]]:
        """The delta of the message's text (as shown, without markers) the client has not seen."""
        if len(shown) <= entry.shown:
            return []
        delta, entry.shown = shown[entry.shown :], len(shown)
        return [self._part_event(entry, "response.output_text.delta", delta=delta, logprobs=[])]

    async def _message_done(self, message: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        entry = self.items.get(message["id"])
        if entry is None:
            return []
        names = await self.filenames(
            cited_files(
                a for p in message["content"] or [] for a in (p.get("text") or {}).get("annotations") or []
            )
        )
        item = message_item(message, names)
        events = self._open_part(entry)
        part = next(
            (p for p in item["content"] if p["type"] == "output_text"),
            output_text_part(settled_text(entry.text)),
        )
        # The end of the text a delta held back (an unclosed 【 that never became a citation).
        events += self._shown_delta(entry, part["text"])
        events.append(self._part_event(entry, "response.output_text.done", text=part["text"], logprobs=[]))
        events.append(self._part_event(entry, "response.content_part.done", part=part))
        events.append(self._event("response.output_item.done", output_index=entry.index, item=item))
        return events

    def _calls_delta(self, delta: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        events: list[tuple[str, dict[str, Any]]] = []
        for call in delta["delta"]["step_details"].get("tool_calls") or []:
            key = f"{delta['id']}:{call['index']}"
            kind = call.get("type")
            item_id = call_item_id(delta["id"], call["index"], kind)
            entry = self.items.get(key)
            if entry is None:
                if kind == "function":
                    function = call["function"]
                    item = function_call_item(
                        item_id, call["id"], function.get("name") or "", "", ItemStatus.in_progress
                    )
                elif kind == "file_search":
                    item = {
                        **file_search_item(item_id, call, include_results=False),
                        "status": ItemStatus.in_progress,
                    }
                else:
                    item = code_interpreter_item(item_id, {"code_interpreter": {}}, ItemStatus.in_progress)
                entry, added = self._added(key, item)
                events.append(added)
            streamed = _streamed_input(call)
            if streamed:
                entry.text += streamed
                events.append(
                    self._event(
                        _INPUT_DELTA_EVENTS[kind], item_id=item_id, output_index=entry.index, delta=streamed
                    )
                )
        return events

    def _calls_done(self, step: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        events: list[tuple[str, dict[str, Any]]] = []
        for index, call in enumerate(step["step_details"]["tool_calls"]):
            entry = self.items.get(f"{step['id']}:{index}")
            if entry is None:
                continue
            item_id = entry.item["id"]
            kind = call.get("type")
            if kind == "function":
                function = call["function"]
                item = function_call_item(
                    item_id, call["id"], function["name"], function["arguments"], ItemStatus.completed
                )
                done = self._item_event(
                    entry,
                    "response.function_call_arguments.done",
                    name=function["name"],
                    arguments=function["arguments"],
                )
            elif kind == "file_search":
                item = file_search_item(item_id, call, include_results=False)
                done = self._item_event(entry, "response.file_search_call.completed")
            else:
                item = code_interpreter_item(item_id, call, ItemStatus.completed)
                done = self._item_event(entry, "response.code_interpreter_call_code.done", code=item["code"])
            events += [done, self._event("response.output_item.done", output_index=entry.index, item=item)]
        return events


#: The event each delta of a call's streamed input goes out as, for the calls that stream one.
_INPUT_DELTA_EVENTS = {
    "function": "response.function_call_arguments.delta",
    "code_interpreter": "response.code_interpreter_call_code.delta",
}


def _streamed_input(call: Mapping[str, Any]) -> str:
    """This delta's piece of a call's input: a function's arguments, the interpreter's code."""
    kind = call.get("type")
    if kind == "function":
        return call["function"].get("arguments") or ""
    if kind == "code_interpreter":
        return (call.get("code_interpreter") or {}).get("input") or ""
    return ""


async def response_events(
    log: AsyncIterator[list[tuple[int, Event]]], events: ResponseEvents, *, starting_after: int = -1
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """The response events of a run's log, those numbered after ``starting_after``."""
    async for batch in log:
        for _, event in batch:
            for name, payload in await events.render(event):
                if payload["sequence_number"] > starting_after:
                    yield name, payload
