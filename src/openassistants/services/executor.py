"""The executor: claims queued runs, executes them, and keeps them from getting stuck.

Runs are claimed from the ``runs`` table (storage/run_claims.py) by a claim loop
(services/claim_loop.py: wake-ups, polling, leases, shutdown grace). Each claimed run gets one
asyncio task; its model turns are in ``run_turn.py``. Every process also settles runs whose executor
died (lapsed leases) and expires runs not finished by their ``expires_at`` (its own executing ones
included).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Coroutine, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, select

from openassistants.bus.base import EventBus
from openassistants.config import Settings
from openassistants.services.claim_loop import ClaimLoop, ClaimSettings
from openassistants.services.run_context import wait_for_tools
from openassistants.services.run_records import Reply
from openassistants.services.run_status import Closing, RunStatusWriter
from openassistants.services.run_turn import ModelTurn, TurnOutcome
from openassistants.services.runs import status_among

if TYPE_CHECKING:
    from openassistants.code_interpreter.manager import KernelManager
    from openassistants.services.search import Searcher
    from openassistants.storage.blobs import BlobStore
from openassistants.bus.notify import RUN_CANCEL, RUNS_QUEUED, Notifier
from openassistants.statuses import RunStatus
from openassistants.storage import claims, run_claims, tables
from openassistants.storage.db import Database
from openassistants.storage.prepared import Prepared
from openassistants.tokens import count_text
from openassistants.upstream.chat import ChatClient

logger = logging.getLogger("openassistants.executor")

R = tables.runs

#: Between two reads of a model's stream, its reader waits this long for each run executing here (at
#: most COALESCE_MAX_SECONDS), so that the pieces arriving meanwhile go out together, as one delta.
#: Relaying a read (parse, event, one write to each stream) costs about the same for one piece as for
#: ten: with the wait growing with the number of streams, relaying stays under about half a core however
#: many there are, and the rest goes to starting new runs. A few runs wait well under a millisecond
#: (not at all below COALESCE_MIN_SECONDS); a run's first piece never waits.
COALESCE_SECONDS_PER_RUN = 0.0002
COALESCE_MIN_SECONDS = 0.002
COALESCE_MAX_SECONDS = 0.1
#: A run to execute: its row as claimed, and its reply's message and step when stored with it.
RunJob = tuple[Mapping[str, Any], Reply | None]
#: How often runs past their ``expires_at`` are looked for.
EXPIRY_SWEEP_SECONDS = 0.5
LAPSED_MESSAGE = "The worker executing this run stopped responding; the run was ended."
RESTART_MESSAGE = "The server restarted while this run was in progress."


#: Unfinished runs past their ``expires_at``, looked for every EXPIRY_SWEEP_SECONDS (prepared once).
_OVERDUE = Prepared(
    select(R.c.id, R.c.status, R.c.worker_id).where(
        status_among(s.value for s in (RunStatus.queued, RunStatus.requires_action, RunStatus.in_progress)),
        R.c.expires_at <= bindparam("now"),
    )
)


def new_worker_id() -> str:
    return f"{socket.gethostname()[:24]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class Executor:
    """Executes runs in this process (when ``execute``), and settles stuck runs (always)."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        bus: EventBus,
        chat: ChatClient,
        notifier: Notifier,
        searcher: Searcher | None = None,
        *,
        execute: bool = True,
        blobs: BlobStore | None = None,
        kernels: KernelManager | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.bus = bus
        self.searcher = searcher
        self.blobs = blobs
        self.kernels = kernels
        self.chat = chat
        self.notifier = notifier
        self.execute = execute
        self.worker_id = new_worker_id()
        self.status = RunStatusWriter(db, bus)
        self.claims: ClaimLoop[RunJob, str] = ClaimLoop(
            "run",
            logger,
            notifier,
            RUNS_QUEUED,
            ClaimSettings(
                lease_seconds=settings.run_lease_seconds,
                shutdown_grace_seconds=settings.shutdown_grace_seconds,
                poll_seconds=settings.queue_poll_seconds,
                capacity=settings.max_concurrent_runs,
            ),
            self,
        )
        #: The runs executing here, by id (the claim loop's).
        self._running = self.claims.running
        self._turns: dict[str, ModelTurn] = {}
        self._cancel_requested: set[str] = set()
        #: Runs executing here found past their ``expires_at``: stopped like a cancel, ended ``expired``.
        self._expiring: set[str] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._tokenizer_ready: asyncio.Task[None] | None = None
        notifier.listen(RUN_CANCEL, self._on_cancel_notice)
        notifier.on_reconnect(self._on_reconnect)

    # --- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self.db.is_sqlite:
            # The embedded database has one process: whatever a run was held by is gone.
            await self.settle_orphans()
        self.claims.start(dispatch=self.execute)
        self._loops = [asyncio.create_task(self._expire_loop(), name="run-expiry")]
        if self.execute:
            # Load the tokenizer's tables (1-2 s) in the background rather than in the first run.
            self._tokenizer_ready = asyncio.create_task(self._warm_tokenizer(), name="tokenizer-warmup")
            self._loops.append(self._tokenizer_ready)

    @staticmethod
    async def _warm_tokenizer() -> None:
        await asyncio.to_thread(count_text, "")

    async def stop(self) -> None:
        """Stop claiming; give running runs ``shutdown_grace_seconds`` to finish, then fail them."""
        await self.claims.stop()
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)

    def offer_claim(self) -> dict[str, Any] | None:
        """The claim columns for a run being created in this process, when this executor can start
        it at once: the run is then stored already claimed and ``in_progress``, and ``adopt``ed when
        its transaction commits, with no claim transaction or wake-up between. None otherwise (the
        run is stored ``queued`` for any executor)."""
        if not self.execute or not self.claims.dispatching or self.claims.free() <= 0:
            return None
        self.claims.reserved += 1
        return {
            "status": run_claims.CLAIMED,
            "started_at": int(time.time()),
            "worker_id": self.worker_id,
            "lease_expires_at": claims.lease_until(self.settings.run_lease_seconds),
        }

    def adopt(self, row: Mapping[str, Any] | None, reply: Reply | None = None) -> None:
        """Start executing a run stored with ``offer_claim``'s columns (None: it was not stored), and
        with its reply's message and step when those were stored with it."""
        self.claims.reserved -= 1
        if row is not None:
            self.claims.spawn((row, reply))

    def coalescing_pause(self) -> float:
        """Seconds a model stream's reader waits before its next read (see COALESCE_SECONDS_PER_RUN)."""
        pause = min(len(self._running) * COALESCE_SECONDS_PER_RUN, COALESCE_MAX_SECONDS)
        return pause if pause >= COALESCE_MIN_SECONDS else 0.0

    async def wake(self) -> None:
        """Tell executors (here or in other processes) that a run was queued."""
        await self.claims.wake()

    async def request_cancel(self, run_id: str) -> None:
        """The run is already ``cancelling`` in the database; make whoever holds it stop."""
        if run_id in self._running:
            self._cancel_here(run_id)
            return
        async with self.db.read() as conn:
            holder = await run_claims.owner(conn, run_id)
        if holder is None:
            # Nobody executes it (waiting for tool outputs, or not claimed yet): finish it now.
            await self.status.finish_cancel(run_id)
        else:
            await self.notifier.notify(RUN_CANCEL, run_id)

    async def stop_deleted(self, run_id: str, holder: str | None) -> None:
        """The run was deleted with its thread: make the executor ``holder`` stop it (it finds the
        run gone, and ends its stream), or end the stream here when nobody executes it."""
        if run_id in self._running:
            self._cancel_here(run_id)
        elif holder is not None:
            await self.notifier.notify(RUN_CANCEL, run_id)
        else:
            self.bus.close(run_id)

    def _on_cancel_notice(self, run_id: str) -> None:
        if run_id in self._running:
            self._cancel_here(run_id)

    def _cancel_here(self, run_id: str) -> None:
        self._cancel_requested.add(run_id)
        turn = self._turns.get(run_id)
        if turn is not None:
            turn.cancel()

    def _expire_here(self, run_id: str) -> None:
        if run_id in self._expiring:
            return
        self._expiring.add(run_id)
        turn = self._turns.get(run_id)
        if turn is not None:
            turn.cancel()

    async def _expire(self, run_id: str, closing: Closing | None = None) -> None:
        """Ends a run this executor stopped at its ``expires_at`` (or a cancel, if one came first)."""
        await self.status.end(run_id, {RunStatus.in_progress}, RunStatus.expired, closing=closing)

    async def _on_reconnect(self) -> None:
        for run_id in list(self._running):
            # A cancel notice may have been missed while disconnected.
            async with self.db.read() as conn:
                status = (await conn.execute(select(R.c.status).where(R.c.id == run_id))).scalar()
            if status == RunStatus.cancelling:
                self._cancel_here(run_id)

    # --- background loops -------------------------------------------------------------------

    # --- the claim loop's work (services/claim_loop.ClaimWork) ------------------------------

    def run_job(self, job: RunJob) -> Coroutine[Any, Any, None]:
        return self._execute(*job)

    @staticmethod
    def job_key(job: RunJob) -> str:
        return str(job[0]["id"])

    async def claim_jobs(self, free: int) -> list[RunJob]:
        # Looked for first, with a read: this runs on every wake-up (each run that ends, every poll),
        # and a claim is a write transaction that, on SQLite, holds the one writer slot across its
        # hand-offs to the writer thread. Under a burst of runs each hand-off waits a whole turn of
        # the busy event loop, and every run's own writes waited behind it.
        async with self.db.reader() as reader:
            if not await run_claims.any_waiting(reader):
                return []
        async with self.db.write() as conn:
            rows = await run_claims.claim_runs(conn, self.worker_id, free, self.settings.run_lease_seconds)
        return [(row, None) for row in rows]

    async def renew_leases(self, run_ids: list[str]) -> None:
        async with self.db.lease_write() as conn:
            await run_claims.renew_leases(conn, self.worker_id, run_ids, self.settings.run_lease_seconds)

    async def _expire_loop(self) -> None:
        while True:
            await asyncio.sleep(EXPIRY_SWEEP_SECONDS)
            try:
                await self.expire_overdue()
            except Exception:
                logger.warning("could not expire overdue runs", exc_info=True)

    async def expire_overdue(self) -> None:
        """Expire runs not finished by their ``expires_at``: those nobody holds (queued, or waiting
        for tool outputs) at once; those executing here by stopping them between two tokens (or
        their tool call), as a cancel does. A run another process executes is that process's to
        expire (its own sweep finds it), or, should it have died, its lapsed lease settles the run."""
        async with self.db.reader() as reader:
            rows = await reader.rows(_OVERDUE, {"now": int(time.time())})
        for row in rows:
            run_id, status, worker = row["id"], row["status"], row["worker_id"]
            if worker is None and status != RunStatus.in_progress:
                await self.status.end(run_id, {RunStatus(status)}, RunStatus.expired)
            elif worker == self.worker_id and run_id in self._running:
                self._expire_here(run_id)

    async def sweep_lapsed(self) -> None:
        """Settle the runs of executors that stopped renewing their leases (a dead worker)."""
        async with self.db.read() as conn:
            lapsed = await run_claims.lapsed_runs(conn)
        for run_id, status, worker in lapsed:
            # Our own lapsed runs too, unless still executing here: a task that died without
            # settling its run would otherwise leave it held, and stuck, until a restart.
            if worker != self.worker_id or run_id not in self._running:
                logger.warning("run %s: worker %s lapsed; settling it", run_id, worker)
                await self._settle_orphan(run_id, status, worker, LAPSED_MESSAGE, wait_for_lapse=True)

    async def settle_orphans(self) -> None:
        """At start-up on the embedded database: settle every run a previous process held."""
        async with self.db.read() as conn:
            held = await run_claims.held_runs(conn)
        for run_id, status, worker in held:
            await self._settle_orphan(run_id, status, worker, RESTART_MESSAGE, wait_for_lapse=False)

    async def _settle_orphan(
        self, run_id: str, status: str, worker: str | None, message: str, *, wait_for_lapse: bool
    ) -> None:
        claim: dict[str, Any] = {"wait_for_lapse": wait_for_lapse}
        if worker is not None:
            claim["dead_worker"] = worker
        if status == RunStatus.queued:
            if worker is not None:
                async with self.db.write() as conn:
                    await run_claims.release_lapsed(conn, run_id, worker, require_lapsed=wait_for_lapse)
            await self.wake()  # claimed but never started: someone else takes it
        elif status == RunStatus.in_progress:
            await self.status.fail(run_id, "server_error", message, **claim)
        elif status == RunStatus.cancelling:
            await self.status.finish_cancel(run_id, **claim)

    # --- one run ----------------------------------------------------------------------------

    async def _execute(self, row: Mapping[str, Any], reply: Reply | None) -> None:
        run_id: str = row["id"]
        try:
            if self._tokenizer_ready is not None and not self._tokenizer_ready.done():
                # A run claimed during the warm-up waits for it here. Counting tokens meanwhile would
                # block the loop on the tokenizer's lock for the rest of the load (about a second):
                # no heartbeat, so with short leases another process took the run for dead.
                await asyncio.wait({self._tokenizer_ready})
            await self._execute_run(row, reply)
        except asyncio.CancelledError:
            # Shutting down past the grace period: leave a defined status rather than in_progress.
            with contextlib.suppress(Exception):
                await asyncio.shield(
                    self.status.fail(
                        run_id, "server_error", "The server shut down while this run was in progress."
                    )
                )
            raise
        except Exception:
            if not await self._exists(run_id):
                # Its thread was deleted under it (a write into the thread failed): nothing to end.
                logger.info("run %s stopped: its thread was deleted", run_id)
                self.bus.close(run_id)
                return
            logger.exception("run %s crashed", run_id)
            await self.status.fail(
                run_id, "server_error", "The server had an error while processing the run."
            )
        finally:
            self._turns.pop(run_id, None)
            self._cancel_requested.discard(run_id)
            self._expiring.discard(run_id)

    async def _exists(self, run_id: str) -> bool:
        try:
            async with self.db.read() as conn:
                return (await conn.execute(select(R.c.id).where(R.c.id == run_id))).first() is not None
        except Exception:
            return True  # cannot tell: treat the failure as the run's own

    async def _execute_run(self, row: Mapping[str, Any], reply: Reply | None) -> None:
        # The claim moved the run to in_progress and returned its row (storage/run_claims.claim_runs);
        # a cancel since then is in _cancel_requested.
        run_id: str = row["id"]
        self.status.publish(run_id, RunStatus.in_progress, row)
        await wait_for_tools(self.db, row)
        # A run that never ran has no usage yet, and no steps (a resumed one has both).
        has_steps = row["usage"] is not None
        usage = dict(row["usage"] or {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0})
        while True:
            if run_id in self._cancel_requested:
                # Cancelled before its first turn: the reply stored with it was never begun.
                await self.status.finish_cancel(run_id, closing=reply.discard if reply else None)
                return
            if run_id in self._expiring:
                await self._expire(run_id, closing=reply.discard if reply else None)
                return
            turn = ModelTurn(self, row, usage, has_steps=has_steps, reply=reply)
            has_steps, reply = True, None
            self._turns[run_id] = turn
            outcome = await turn.run()
            self._turns.pop(run_id, None)
            if not await self._settle(row, outcome, usage):
                return

    async def _settle(self, row: Mapping[str, Any], outcome: TurnOutcome, usage: dict[str, int]) -> bool:
        """Apply one model turn's outcome to the run (``row``, as claimed); True when the run goes on
        to another turn."""
        run_id: str = row["id"]
        status = self.status
        closing = outcome.closing
        if outcome.kind == "cancelled" and run_id in self._expiring:
            await self._expire(run_id)
        elif outcome.kind == "cancelled":
            await status.finish_cancel(run_id)
        elif outcome.kind == "failed":
            await status.fail(run_id, outcome.error_code, outcome.error_message, usage=usage)
        elif outcome.kind == "requires_action":
            await status.change(
                run_id,
                {RunStatus.in_progress},
                RunStatus.requires_action,
                closing=closing,
                required_action=outcome.required_action,
                usage=usage,
            )
        elif outcome.kind == "incomplete":
            await status.end(
                run_id,
                {RunStatus.in_progress},
                RunStatus.incomplete,
                closing=closing,
                run=row,
                incomplete_details={"reason": outcome.incomplete_reason},
                usage=usage,
            )
        elif outcome.kind == "continue":
            return True
        else:
            await status.end(
                run_id,
                {RunStatus.in_progress},
                RunStatus.completed,
                closing=closing,
                run=row,
                usage=usage,
            )
        return False
