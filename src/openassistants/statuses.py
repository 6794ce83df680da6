"""Every status the server stores, defined once: runs (with the moves allowed between them), run steps,
messages, uploaded files, vector store files and file batches, and vector stores.

The run lifecycle follows https://platform.openai.com/docs/assistants/deep-dive#runs-and-run-steps:

    queued ─► in_progress ─► completed | incomplete | failed | expired
                  │  ▲
                  ▼  │ (tool outputs submitted → queued)
             requires_action ─► expired
    queued | in_progress | requires_action ─► cancelling ─► cancelled

Values are the wire spellings, and StrEnum members are ``str``: they compare equal to stored values
and serialize as themselves. Each member's name is its value, so a member and its string hash alike
(``Enum`` hashes the name): sets and dicts keyed by members are looked up with the strings read from
the database. SQL parameters get ``.value`` so that drivers see a plain ``str``.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    queued = "queued"  #: created or resumed, waiting for the executor to pick it up
    in_progress = "in_progress"  #: the executor is calling the model or running tools
    requires_action = "requires_action"  #: waiting for the client's function-call outputs
    cancelling = "cancelling"  #: cancel asked for; the executor has not stopped yet
    cancelled = "cancelled"  #: stopped on request (terminal)
    failed = "failed"  #: stopped by an error; see last_error (terminal)
    completed = "completed"  #: the assistant finished its reply (terminal)
    incomplete = "incomplete"  #: stopped by max_prompt_tokens / max_completion_tokens (terminal)
    expired = "expired"  #: not finished before expires_at (terminal)


#: The moves a run's status may make; a status with none is terminal.
ALLOWED: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.queued: frozenset(
        {RunStatus.in_progress, RunStatus.cancelling, RunStatus.expired, RunStatus.failed}
    ),
    RunStatus.in_progress: frozenset(
        {
            RunStatus.requires_action,
            RunStatus.completed,
            RunStatus.incomplete,
            RunStatus.failed,
            RunStatus.cancelling,
            RunStatus.expired,
        }
    ),
    RunStatus.requires_action: frozenset({RunStatus.queued, RunStatus.cancelling, RunStatus.expired}),
    RunStatus.cancelling: frozenset({RunStatus.cancelled, RunStatus.failed}),
    RunStatus.cancelled: frozenset(),
    RunStatus.failed: frozenset(),
    RunStatus.completed: frozenset(),
    RunStatus.incomplete: frozenset(),
    RunStatus.expired: frozenset(),
}

#: Not finished: a thread with such a run takes no new run.
ACTIVE_STATUSES = frozenset(
    {RunStatus.queued, RunStatus.in_progress, RunStatus.requires_action, RunStatus.cancelling}
)
TERMINAL_STATUSES = frozenset(s for s, nxt in ALLOWED.items() if not nxt)
#: Statuses in which an executor may hold the run (its claim and lease stay).
HELD = frozenset({RunStatus.queued, RunStatus.in_progress, RunStatus.cancelling})
#: Statuses in which an executor was working on the run (not merely holding it in the queue).
EXECUTING = frozenset({RunStatus.in_progress, RunStatus.cancelling})
#: Run statuses after which a stream ends with ``done``: the client has to act, or nothing follows.
STREAM_STOP_STATUSES = frozenset({RunStatus.requires_action} | TERMINAL_STATUSES)


def is_terminal(status: str) -> bool:
    return status in TERMINAL_STATUSES


def check_moves(sources: frozenset[RunStatus] | set[RunStatus], target: RunStatus) -> RunStatus:
    """``target``, if every one of ``sources`` may move to it; ValueError otherwise."""
    for source in sources:
        if target not in ALLOWED[source]:
            raise ValueError(f"illegal run transition {source} -> {target}")
    return target


class StepStatus(StrEnum):
    in_progress = "in_progress"  #: the model's message or tool calls are being produced
    completed = "completed"  #: done; tool calls carry their outputs
    cancelled = "cancelled"  #: the run was cancelled while the step was open
    failed = "failed"  #: the run failed while the step was open
    expired = "expired"  #: the run expired while the step was open


class MessageStatus(StrEnum):
    in_progress = "in_progress"  #: the assistant is still writing it
    completed = "completed"  #: written in full (every user message is stored completed)
    incomplete = "incomplete"  #: cut off: the run stopped or hit a token limit; see incomplete_details


class UploadStatus(StrEnum):
    """A File's ``status`` (a field OpenAI deprecated): an upload is stored whole or not at all."""

    processed = "processed"  #: its bytes are in the blob store


class FileStatus(StrEnum):
    """A vector store file's ingestion: chunking and embedding."""

    in_progress = "in_progress"  #: waiting for, or being ingested by, an ingestor
    completed = "completed"  #: its chunks are searchable
    failed = "failed"  #: ingestion failed; see last_error
    cancelled = "cancelled"  #: its batch was cancelled before it was ingested


class BatchStatus(StrEnum):
    """A file batch's status, derived from its files' (a batch stores only whether it was cancelled)."""

    in_progress = "in_progress"  #: some file is still being ingested
    completed = "completed"  #: every file finished, at least one of them successfully
    failed = "failed"  #: every file failed
    cancelled = "cancelled"  #: cancelled on request


class VectorStoreStatus(StrEnum):
    """Derived from its files' statuses and its expiry policy."""

    in_progress = "in_progress"  #: some file is still being ingested
    completed = "completed"  #: every file finished ingesting
    expired = "expired"  #: past expires_at; it can no longer be used
