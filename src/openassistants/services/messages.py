"""Messages on a thread: create, retrieve, update (metadata), list (newest first), delete."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, bindparam, func, insert, select, update
from sqlalchemy.dialects.postgresql import ARRAY

from openassistants.errors import APIError, not_found
from openassistants.ids import new_id
from openassistants.schemas.common import ListParams
from openassistants.schemas.messages import (
    ImageFilePart,
    ImageUrlPart,
    MessageCreate,
    MessageUpdate,
)
from openassistants.services.attachments import index_attachments, named_files, queues_ingestion
from openassistants.services.lookup import load_message, load_thread
from openassistants.services.runs import ACTIVE_RUNS, ensure_no_active_run, message_while_active
from openassistants.services.wire_object import wire_object
from openassistants.statuses import MessageStatus
from openassistants.storage import tables
from openassistants.storage.db import Database, runner_for
from openassistants.storage.group_commit import GroupCommit
from openassistants.storage.prepared import Prepared
from openassistants.storage.queries import (
    delete_remembering_cursors,
    insert_rows,
    list_body,
    page,
)

if TYPE_CHECKING:
    from openassistants.services.claim_loop import Wakeable

T = tables.messages


def text_part(value: str) -> dict[str, Any]:
    return {"type": "text", "text": {"value": value, "annotations": []}}


def content_to_stored(content: str | list[Any]) -> list[dict[str, Any]]:
    """Request content (a string or request parts) in the response's content-part shape."""
    if isinstance(content, str):
        return [text_part(content)]
    parts: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, ImageFilePart):
            parts.append({"type": "image_file", "image_file": part.image_file.model_dump()})
        elif isinstance(part, ImageUrlPart):
            parts.append({"type": "image_url", "image_url": part.image_url.model_dump()})
        else:
            parts.append(text_part(part.text))
    return parts


def message_values(
    tenant: str, thread_id: str, body: MessageCreate, now: int, *, run_id: str | None = None
) -> dict[str, Any]:
    """The row for a message created through the API (status completed, no assistant)."""
    return {
        "id": new_id("message"),
        "tenant_id": tenant,
        "thread_id": thread_id,
        "created_at": now,
        "role": body.role,
        "status": MessageStatus.completed.value,
        "content": content_to_stored(body.content),
        "attachments": [a.model_dump() for a in body.attachments or []],
        "metadata": body.metadata or {},
        "assistant_id": None,
        "run_id": run_id,
        "completed_at": now,
        "incomplete_at": None,
        "incomplete_details": None,
    }


_MESSAGE_COLUMNS = (
    "created_at",
    "thread_id",
    "status",
    "incomplete_details",
    "completed_at",
    "incomplete_at",
    "role",
    "content",
    "assistant_id",
    "run_id",
    "attachments",
    "metadata",
)


def message_to_wire(row: Mapping[str, Any]) -> dict[str, Any]:
    body = wire_object("thread.message", row, _MESSAGE_COLUMNS)
    body["attachments"] = row["attachments"] or []
    return body


#: The columns ``message_values`` gives: every one but ``seq``, which the database numbers.
_COLUMNS = [c.key for c in T.columns if c.key != "seq"]
#: The message, unless a run is active on its thread: the check and the insert in one statement (one
#: round trip on PostgreSQL, where the thread's lock is held meanwhile).
_INSERT_UNLESS_RUN_ACTIVE = Prepared(
    T.insert().from_select(
        _COLUMNS,
        select(*(bindparam(key, type_=T.c[key].type) for key in _COLUMNS)).where(~ACTIVE_RUNS.exists()),
    )
)


async def create_message(
    db: Database, tenant: str, thread_id: str, body: MessageCreate, *, ingestion: Wakeable
) -> dict[str, Any]:
    if db.is_sqlite:  # one writer, whose small transactions never wait: nothing to group
        values = (await _add_messages((db, tenant, thread_id), [body]))[0]
    else:
        outcome = await _GROUPED.submit((db, tenant, thread_id), body)
        if isinstance(outcome, APIError):
            raise outcome
        values = outcome
    if queues_ingestion(messages=[body]):
        await ingestion.wake()
    return message_to_wire(values)


async def _add_messages(key: tuple[Database, str, str], bodies: list[MessageCreate]) -> list[dict[str, Any]]:
    """Adds messages to a thread in one transaction; raises as adding any one of them would."""
    db, tenant, thread_id = key
    if not db.is_sqlite and not named_files(bodies):
        return await _add_naming_no_file(db, tenant, thread_id, bodies)
    # Inline: two small statements; attachments for file_search add a few more.
    async with db.write(inline=True) as conn:
        runner = await runner_for(conn)
        await load_thread(runner, tenant, thread_id, lock=True)
        # The clock is read under the thread's lock, so created_at rises with seq (the list order).
        now = int(time.time())
        rows = [message_values(tenant, thread_id, body, now) for body in bodies]
        if len(rows) > 1:
            await ensure_no_active_run(conn, thread_id, for_message=True)
            await insert_rows(conn, [(T, row) for row in rows])
        elif not await runner.execute(_INSERT_UNLESS_RUN_ACTIVE, rows[0]):
            # Under the thread's lock: the run that stopped the insert is still active.
            await ensure_no_active_run(conn, thread_id, for_message=True)
            raise AssertionError("the insert found an active run that ensure_no_active_run did not")
        await index_attachments(conn, tenant, thread_id, bodies)
    return rows


async def _add_grouped(
    key: tuple[Database, str, str], bodies: list[MessageCreate]
) -> list[dict[str, Any] | APIError]:
    """``_GROUPED``'s write: the messages in one transaction; if the API refuses it because of a
    file one of them names (not the tenant's: a 404), each in its own, so that only the refused ones
    fail: the others' requests were valid, and once failed with that one's 404. A group naming no
    file can only be refused for the thread (unknown, or a run active), which is every message's
    answer: no message is tried again alone."""
    try:
        return list(await _add_messages(key, bodies))
    except APIError as exc:
        if len(bodies) == 1 or not named_files(bodies):
            return [exc] * len(bodies)
    outcomes: list[dict[str, Any] | APIError] = []
    for body in bodies:
        try:
            outcomes.extend(await _add_messages(key, [body]))
        except APIError as exc:
            outcomes.append(exc)
    return outcomes


#: What differs between the messages one request adds; the rest is the same for all (``_ADD``).
_EACH = ("id", "role", "content", "attachments", "metadata")


def _add_statement() -> Prepared:
    """Messages (``_EACH``'s arrays, one item each) added to a thread by one statement, which commits by
    itself: the function ``lock_thread_for_messages`` (migration 0011) takes the thread's lock and, as
    of after it, finds whether the thread is the tenant's, its active run and its last message's
    created_at; the INSERT, a CTE, adds the messages only if the thread is found and free. Their
    created_at is the clock's, read before the lock, or the last message's if later: so it never goes
    back along the list, as when the clock was read under the lock. Returns the function's row."""
    guard = select(
        *func.lock_thread_for_messages(
            bindparam("thread_id", type_=T.c.thread_id.type), bindparam("tenant_id", type_=T.c.tenant_id.type)
        )
        .table_valued("thread_found", "active_run_id", "last_created_at")
        .render_derived(name="locked")
        .c
    ).cte("guard")
    each = (
        func.unnest(*(bindparam(key, type_=ARRAY(T.c[key].type, dimensions=1)) for key in _EACH))
        .table_valued(*_EACH, with_ordinality="n")
        .render_derived(name="each")
    )
    shared: dict[str, ColumnElement[Any]] = {
        key: bindparam(key, type_=T.c[key].type) for key in _COLUMNS if key not in _EACH
    }
    for key in ("created_at", "completed_at"):
        shared[key] = func.greatest(shared[key], guard.c.last_created_at)
    rows = (
        select(*(each.c[key] for key in _EACH), *shared.values())
        .select_from(guard, each)
        .where(guard.c.thread_found, guard.c.active_run_id.is_(None))
        .order_by(each.c.n)  # seq in the request's order
    )
    added = insert(T).from_select([*_EACH, *shared], rows).cte("added")
    return Prepared(select(*guard.c).add_cte(added))


_ADD = _add_statement()


async def _add_naming_no_file(
    db: Database, tenant: str, thread_id: str, bodies: list[MessageCreate]
) -> list[dict[str, Any]]:
    """``_add_messages`` for messages that name no file (nothing to check or index): one statement
    (``_add_statement``), outside any transaction (``reader``'s connection begins none)."""
    now = int(time.time())
    rows = [message_values(tenant, thread_id, body, now) for body in bodies]
    # The request's values (``message_values``' for every message but ``_EACH``) once, ``_EACH`` as arrays.
    values: dict[str, Any] = rows[0] | {key: [row[key] for row in rows] for key in _EACH}
    async with db.reader() as reader:
        found = await reader.first(_ADD, values)
    if found is None or not found["thread_found"]:
        raise not_found("thread", thread_id)
    if found["active_run_id"] is not None:
        raise message_while_active(thread_id, found["active_run_id"])
    if found["last_created_at"] is not None and found["last_created_at"] > now:
        for row in rows:
            row["created_at"] = row["completed_at"] = found["last_created_at"]
    return rows


#: messages.create on PostgreSQL: concurrent ones on a thread wait for its lock, so they are added
#: together (storage/group_commit.py), up to this many in one statement.
_GROUPED = GroupCommit(_add_grouped, most=32)


async def get_message(db: Database, tenant: str, thread_id: str, message_id: str) -> dict[str, Any]:
    async with db.reader() as reader:
        return message_to_wire(await load_message(reader, tenant, thread_id, message_id))


async def update_message(
    db: Database, tenant: str, thread_id: str, message_id: str, body: MessageUpdate
) -> dict[str, Any]:
    scope = (T.c.id == message_id, T.c.tenant_id == tenant, T.c.thread_id == thread_id)
    async with db.write() as conn:
        if "metadata" in body.model_fields_set:
            await conn.execute(update(T).where(*scope).values(metadata=body.metadata or {}))
        return message_to_wire(await load_message(conn, tenant, thread_id, message_id))


async def delete_message(db: Database, tenant: str, thread_id: str, message_id: str) -> dict[str, Any]:
    async with db.write() as conn:
        deleted = await delete_remembering_cursors(
            conn, T, T.c.id == message_id, T.c.tenant_id == tenant, T.c.thread_id == thread_id
        )
    if deleted == 0:
        raise not_found("message", message_id)
    return {"id": message_id, "object": "thread.message.deleted", "deleted": True}


async def list_messages(
    db: Database, tenant: str, thread_id: str, params: ListParams, run_id: str | None
) -> dict[str, Any]:
    scope = {"thread_id": thread_id, "tenant_id": tenant}
    if run_id is not None:
        scope["run_id"] = run_id
    cursors = params.after is not None or params.before is not None
    async with db.reader() as reader:
        if cursors:  # an unknown thread is a 404 before its cursor is a 400
            await load_thread(reader, tenant, thread_id)
        rows, has_more = await page(
            reader, T, scope, limit=params.limit, order=params.order, after=params.after, before=params.before
        )
        if not rows and not cursors:
            # Only an empty page can be an unknown thread's: a message belongs to its thread (a foreign
            # key, deleted with it) and to the thread's tenant. One statement fewer on every other page.
            await load_thread(reader, tenant, thread_id)
    return list_body([message_to_wire(r) for r in rows], has_more)
