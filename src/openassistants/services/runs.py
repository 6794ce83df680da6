"""Runs and run steps: the writer of a run's status (``transition``, which keeps to the moves
``statuses.ALLOWED`` allows; only a claim, ``storage/run_claims.py``, starts a run without it), the
one-active-run-per-thread check, and their wire shapes. The changes clients ask for (create, cancel,
submit tool outputs) live in ``run_actions.py``; executing a run lives in ``executor.py``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import ColumnElement, Select, Update, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from openassistants.errors import InvalidRequest
from openassistants.services.wire_object import SAMPLING_DEFAULTS, wire_object
from openassistants.statuses import ACTIVE_STATUSES, HELD, RunStatus, check_moves, is_terminal
from openassistants.storage import tables
from openassistants.storage.db import runner_for
from openassistants.storage.prepared import Prepared, Row, Runner
from openassistants.tools.base import without_private
from openassistants.tools.registry import TOOLS

R = tables.runs
S = tables.run_steps


#: The timestamp column each terminal status stamps.
STAMPS = {
    RunStatus.cancelled: "cancelled_at",
    RunStatus.failed: "failed_at",
    RunStatus.completed: "completed_at",
    RunStatus.incomplete: "incomplete_at",
}


async def transition(
    conn: AsyncConnection,
    run_id: str,
    sources: frozenset[RunStatus] | set[RunStatus],
    target: RunStatus,
    *,
    owner: str | None = None,
    **fields: Any,
) -> bool:
    """Move the run from one of ``sources`` to ``target`` if it is still in one of them (and, with
    ``owner``, still claimed by that executor).

    The compare-and-set happens in the database, so of two racing changes (two submits, a cancel
    and a completion) exactly one wins; the loser gets False.
    """
    statement, values = _transition(run_id, sources, target, owner, fields, returning=False)
    return await (await runner_for(conn)).execute(statement, values) == 1


async def transition_row(
    conn: AsyncConnection,
    run_id: str,
    sources: frozenset[RunStatus] | set[RunStatus],
    target: RunStatus,
    **fields: Any,
) -> Row | None:
    """``transition``, returning the run's row as changed (``UPDATE … RETURNING``), or None."""
    statement, values = _transition(run_id, sources, target, None, fields, returning=True)
    return await (await runner_for(conn)).first(statement, values)


def _transition(
    run_id: str,
    sources: frozenset[RunStatus] | set[RunStatus],
    target: RunStatus,
    owner: str | None,
    fields: dict[str, Any],
    *,
    returning: bool,
) -> tuple[Prepared, dict[str, Any]]:
    values = transition_values(run_id, sources, target, fields)
    keys = tuple(values)[1:]
    if owner is not None:
        values["transition_owner"] = owner
    sources_key = frozenset(s.value for s in sources)
    statement = _transition_statement(sources_key, keys, owned=owner is not None, returning=returning)
    return statement, values


def transition_values(
    run_id: str, sources: frozenset[RunStatus] | set[RunStatus], target: RunStatus, fields: dict[str, Any]
) -> dict[str, Any]:
    """The parameters of ``transition_update``: the run's id, then the columns it sets (``status``,
    ``fields``, and what the move implies: its stamp, the end of the claim)."""
    check_moves(sources, target)
    stamp = STAMPS.get(target)
    if stamp is not None and stamp not in fields:
        fields[stamp] = int(time.time())
    if target not in HELD:
        # Waiting for tool outputs or finished: no executor holds the run any more.
        fields.update(worker_id=None, lease_expires_at=None)
    return {"transition_run_id": run_id, "status": target.value, **fields}


def transition_update(sources: frozenset[str], *, owned: bool = False) -> Update:
    """The compare-and-set UPDATE, with the run id (and, ``owned``, its worker's) as parameters."""
    conditions = [
        R.c.id == bindparam("transition_run_id"),
        status_among(sources),
    ]
    if owned:
        conditions.append(R.c.worker_id == bindparam("transition_owner"))
    return update(R).where(*conditions)


@functools.cache
def _transition_statement(
    sources: frozenset[str], keys: tuple[str, ...], *, owned: bool, returning: bool
) -> Prepared:
    """The compare-and-set UPDATE, prepared once per shape (storage/prepared.py); its SET clause is
    ``keys``."""
    statement = transition_update(sources, owned=owned)
    return Prepared(statement.returning(*R.c) if returning else statement, column_keys=keys)


def status_among(statuses: Iterable[str]) -> ColumnElement[bool]:
    """A run's status is one of ``statuses``, each a literal of its own: a prepared statement's IN list
    would be expanded again at every execution."""
    return or_(*(R.c.status == status for status in sorted(statuses)))


def active_runs_of(thread_id: ColumnElement[Any]) -> Select[tuple[str]]:
    """The ids of thread ``thread_id``'s active runs, which messages and runs wait for."""
    return select(R.c.id).where(R.c.thread_id == thread_id, status_among(s.value for s in ACTIVE_STATUSES))


#: The active runs of thread ``thread_id`` (a parameter).
ACTIVE_RUNS = active_runs_of(bindparam("thread_id"))
#: Built once (storage/prepared.py): checked before every run is added to a thread.
_ACTIVE_RUN = Prepared(ACTIVE_RUNS.limit(1))


async def active_run_id(conn: AsyncConnection | Runner, thread_id: str) -> str | None:
    runner = conn if isinstance(conn, Runner) else await runner_for(conn)
    run_id: str | None = await runner.scalar(_ACTIVE_RUN, {"thread_id": thread_id})
    return run_id


async def ensure_no_active_run(conn: AsyncConnection, thread_id: str, *, for_message: bool) -> None:
    """Raises InvalidRequest (400, as the hosted API) while a run is active on the thread."""
    run_id = await active_run_id(conn, thread_id)
    if run_id is None:
        return
    if for_message:
        raise message_while_active(thread_id, run_id)
    raise InvalidRequest(f"Thread {thread_id} already has an active run {run_id}.")


def message_while_active(thread_id: str, run_id: str) -> InvalidRequest:
    """The hosted API's 400 for a message added to a thread while run ``run_id`` is active on it."""
    return InvalidRequest(f"Can't add messages to {thread_id} while a run {run_id} is active.")


#: The codes of a response's run that the Assistants API's ``last_error`` has not: theirs there.
_ASSISTANTS_CODES = {"context_length_exceeded": "invalid_prompt"}


def _assistants_error(error: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    if error is None or error.get("code") not in _ASSISTANTS_CODES:
        return error
    return {**error, "code": _ASSISTANTS_CODES[error["code"]]}


_RUN_COLUMNS = (
    "created_at",
    "assistant_id",
    "thread_id",
    "status",
    "started_at",
    "expires_at",
    "cancelled_at",
    "failed_at",
    "completed_at",
    "required_action",
    "last_error",
    "model",
    "instructions",
    "tools",
    "metadata",
    "incomplete_details",
    "usage",
    "temperature",
    "top_p",
    "max_prompt_tokens",
    "max_completion_tokens",
    "truncation_strategy",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
)
_RUN_DEFAULTS = {**SAMPLING_DEFAULTS, "tool_choice": "auto"}


def run_to_wire(row: Mapping[str, Any]) -> dict[str, Any]:
    """The ``thread.run`` object; every field the SDK types declare, null where the API had null."""
    body = wire_object("thread.run", row, _RUN_COLUMNS, null_means=_RUN_DEFAULTS)
    if is_terminal(row["status"]):
        body["expires_at"] = None
    body["last_error"] = _assistants_error(row["last_error"])
    return body


_STEP_COLUMNS = (
    "created_at",
    "assistant_id",
    "thread_id",
    "run_id",
    "type",
    "status",
    "step_details",
    "last_error",
    "expired_at",
    "cancelled_at",
    "failed_at",
    "completed_at",
    "metadata",
    "usage",
)


def step_to_wire(row: Mapping[str, Any], *, include_content: bool = False) -> dict[str, Any]:
    details = row["step_details"]
    if details.get("type") == "tool_calls":
        details = _public_tool_calls(details, include_content)
    body = wire_object("thread.run.step", row, _STEP_COLUMNS)
    body["step_details"] = details
    return body


def _public_tool_calls(details: dict[str, Any], include_content: bool) -> dict[str, Any]:
    """Tool calls as the API shows them, as each call's tool shows it (without our private ``_``
    keys; file_search's result content only when asked for with ``include[]``)."""
    calls = []
    for call in details.get("tool_calls", []):
        tool = TOOLS.get(call.get("type"))
        calls.append(tool.public(call, include_content=include_content) if tool else without_private(call))
    return {**details, "tool_calls": calls}
