"""The events a run emits, each defined once: its name (the Assistants API's ``thread.*`` event type,
which is also the name it has in a run's log) and a constructor saying when it fires.

A streamed run, in order: ``thread.created`` (only with ``POST /threads/runs``), the run's
``created``, ``queued`` and ``in_progress``; per step its ``created`` and ``in_progress``, tool-call
``delta``s and ``completed``; per assistant message its ``created``, ``in_progress``, ``delta``s and
``completed`` (or ``incomplete``); then the run's last status. The Responses rendering
(``services/responses/stream.py``) reads the same log, by these names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openassistants.events import Event
from openassistants.statuses import STREAM_STOP_STATUSES, MessageStatus, RunStatus, StepStatus

THREAD_CREATED = "thread.created"
RUN_CREATED = "thread.run.created"
#: ``thread.run.<status>``: the run moved to that status.
RUN_MOVED = {status: f"thread.run.{status.value}" for status in RunStatus}
STEP_CREATED = "thread.run.step.created"
STEP_DELTA = "thread.run.step.delta"
#: ``thread.run.step.<status>``: the step moved to that status.
STEP_MOVED = {status: f"thread.run.step.{status.value}" for status in StepStatus}
MESSAGE_CREATED = "thread.message.created"
MESSAGE_DELTA = "thread.message.delta"
#: ``thread.message.<status>``: the message moved to that status.
MESSAGE_MOVED = {status: f"thread.message.{status.value}" for status in MessageStatus}
#: The run events after which a stream has nothing more to say (a final status, or requires_action).
STREAM_ENDING = frozenset(RUN_MOVED[status] for status in STREAM_STOP_STATUSES)


def ends_stream(event: Event) -> bool:
    """True for the run event after which a stream has nothing more to say."""
    return event.name in STREAM_ENDING


def thread_created(thread: Mapping[str, Any]) -> Event:
    """A run's thread was created with it (``POST /threads/runs``): before the run's first events."""
    return Event.of(THREAD_CREATED, thread)


def run_created(run: Mapping[str, Any]) -> list[Event]:
    """A run was stored: ``created`` and ``queued``, in the transaction that stores it."""
    return Event.each((RUN_CREATED, RUN_MOVED[RunStatus.queued]), run)


def run_moved(status: RunStatus, run: Mapping[str, Any]) -> Event:
    """The run moved to ``status``: ``in_progress`` when an executor starts it, ``queued`` again when
    tool outputs arrive, ``requires_action``, ``cancelling``, or how it ended."""
    return Event.of(RUN_MOVED[status], run)


def step_created(step: Mapping[str, Any]) -> list[Event]:
    """A step began (the model started a message or tool calls): ``created`` and ``in_progress``."""
    return Event.each((STEP_CREATED, STEP_MOVED[StepStatus.in_progress]), step)


def step_delta(step_id: str, tool_calls: list[dict[str, Any]]) -> Event:
    """More of a tool-calls step streamed: call arguments as the model writes them, or outputs."""
    details = {"type": "tool_calls", "tool_calls": tool_calls}
    return Event.of(STEP_DELTA, {"id": step_id, "object": STEP_DELTA, "delta": {"step_details": details}})


def step_moved(step: Mapping[str, Any]) -> Event:
    """The step moved to its (final) status: ``completed``, or closed by the run's cancel, failure or
    expiry."""
    return Event.of(STEP_MOVED[step["status"]], step)


def message_created(message: Mapping[str, Any]) -> list[Event]:
    """The assistant began a message, announced once its first text or image is known: ``created``
    and ``in_progress``."""
    return Event.each((MESSAGE_CREATED, MESSAGE_MOVED[MessageStatus.in_progress]), message)


def message_delta(message_id: str, content: list[dict[str, Any]]) -> Event:
    """More of the assistant's message streamed: text as the model writes it, images, annotations.
    Per token: build nothing more here than the payload."""
    return Event.of(MESSAGE_DELTA, {"id": message_id, "object": MESSAGE_DELTA, "delta": {"content": content}})


def message_moved(message: Mapping[str, Any]) -> Event:
    """The message ended: ``completed``, or ``incomplete`` (a token limit, or the run stopped)."""
    return Event.of(MESSAGE_MOVED[message["status"]], message)
