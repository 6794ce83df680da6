"""Status changes that end or pause a run, with everything that goes with them: closing the run's
open steps and messages, releasing its executor's claim, and publishing the events. Used by the
executor, the cancel request, the expiry sweeper and the reaper of dead workers' runs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from openassistants import run_events
from openassistants.bus.base import EventBus
from openassistants.events import Event
from openassistants.services import run_end
from openassistants.services import run_records as records
from openassistants.services.runs import run_to_wire, step_to_wire, transition_row
from openassistants.statuses import RunStatus
from openassistants.storage import run_claims, tables
from openassistants.storage.db import Database, runner_for
from openassistants.storage.prepared import Prepared, Row

R = tables.runs
#: How every failed run's ``last_error.message`` begins, as the hosted API's did; our detail follows.
FAILED_RUN_PREFIX = "Sorry, something went wrong."


#: Writes that belong in the transaction changing a run's status (e.g. completing its last message);
#: returns their events, published before the run's own.
Closing = Callable[[AsyncConnection], Awaitable[list[Event]]]


class RunStatusWriter:
    def __init__(self, db: Database, bus: EventBus) -> None:
        self.db = db
        self.bus = bus

    def publish(self, run_id: str, status: RunStatus, run: Mapping[str, Any]) -> None:
        """The run's ``thread.run.<status>`` event, for a move made without this writer (a claim)."""
        self.bus.publish(run_id, run_events.run_moved(status, run_to_wire(run)))

    async def change(
        self,
        run_id: str,
        sources: set[RunStatus],
        target: RunStatus,
        *,
        closing: Closing | None = None,
        **fields: Any,
    ) -> bool:
        """A non-terminal change (requires_action); finishes a cancel instead if one came first."""
        await self.bus.flush(run_id)
        async with self.db.write(inline=True) as conn:
            events = await closing(conn) if closing is not None else []
            row = await transition_row(conn, run_id, sources, target, **fields)
            changed = row is not None
            if row is None:
                row = await _load(conn, run_id)
            else:
                events.append(run_events.run_moved(target, run_to_wire(row)))
            await self.bus.publish_in(conn, run_id, events)
        if row is None:
            self.bus.close(run_id)  # deleted with its thread: its log is freed as any ended run's
            return False
        if not changed and row["status"] == RunStatus.cancelling:
            await self.finish_cancel(run_id)
        return changed

    async def end(
        self,
        run_id: str,
        sources: set[RunStatus],
        target: RunStatus,
        *,
        dead_worker: str | None = None,
        wait_for_lapse: bool = True,
        closing: Closing | None = None,
        run: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> bool:
        """A terminal change: closes open steps and messages, publishes, and closes the stream.

        With ``dead_worker``, only if that worker still holds the run (and its lease has lapsed,
        unless ``wait_for_lapse`` is False): the change then settles a dead executor's run.
        ``closing`` is applied whether or not the change is (a cancel may have come first).
        ``run``: the run's row as its executor claimed it, which lets an end that closes nothing
        (completed, incomplete) be one statement on PostgreSQL (services/run_end.py).
        """
        outcome = target if target in records.STEP_END else None
        await self.bus.flush(run_id)
        if (
            run is not None
            and dead_worker is None
            and outcome is None
            and await run_end.end_at_once(self.db, self.bus, run, sources, target, closing, fields)
        ):
            self.bus.close(run_id)
            return True
        async with self.db.write(inline=True) as conn:
            if dead_worker is not None and not await run_claims.release_lapsed(
                conn, run_id, dead_worker, require_lapsed=wait_for_lapse
            ):
                return False
            events = await closing(conn) if closing is not None else []
            row = await transition_row(conn, run_id, sources, target, **fields)
            changed = row is not None
            if row is not None:
                if outcome is not None:
                    steps, messages = await records.close_open_work(conn, run_id, outcome)
                    events += [run_events.message_moved(m) for m in messages]
                    events += [run_events.step_moved(step_to_wire(s)) for s in steps]
                events.append(run_events.run_moved(target, run_to_wire(row)))
            else:
                row = await _load(conn, run_id)
            await self.bus.publish_in(conn, run_id, events)
        if row is None:
            self.bus.close(run_id)  # deleted with its thread: its log is freed as any ended run's
            return False
        if not changed:
            if row["status"] == RunStatus.cancelling and target != RunStatus.cancelled:
                await self.finish_cancel(run_id)
            return False
        self.bus.close(run_id)
        return True

    async def finish_cancel(self, run_id: str, *, closing: Closing | None = None, **claim: Any) -> bool:
        return await self.end(
            run_id,
            {RunStatus.cancelling},
            RunStatus.cancelled,
            closing=closing,
            **claim,
        )

    async def fail(
        self,
        run_id: str,
        code: str,
        message: str,
        *,
        usage: dict[str, int] | None = None,
        **claim: Any,
    ) -> bool:
        # The hosted API's words first: frameworks (agency-swarm…) retry a run when they see them.
        fields: dict[str, Any] = {"last_error": {"code": code, "message": f"{FAILED_RUN_PREFIX} {message}"}}
        if usage is not None:
            fields["usage"] = usage
        sources = {RunStatus.queued, RunStatus.in_progress, RunStatus.cancelling}
        return await self.end(run_id, sources, RunStatus.failed, **claim, **fields)


async def _load(conn: AsyncConnection, run_id: str) -> Row | None:
    return await (await runner_for(conn)).first(_SELECT_RUN, {"id": run_id})


_SELECT_RUN = Prepared(select(R).where(R.c.id == bindparam("id")))
