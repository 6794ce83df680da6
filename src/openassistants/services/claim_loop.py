"""One leased-claim loop, for every queue kept in a table: runs (services/executor.py) and files to
ingest (services/ingestion.py).

Work is claimed when a NOTIFY on the queue's channel (or, in one process, a direct call) says some is
waiting, when a job ends (capacity freed) while more may be waiting, and every ``queue_poll_seconds``
in case a wake-up was lost.
Each claimed job gets one asyncio task. A heartbeat renews the leases of the jobs running here every
third of the lease; every process also sweeps for lapsed leases (a dead claimer's) as often. On
stop, claiming stops first, running jobs get the queue's shutdown grace to finish, and are then
cancelled (each job decides what a cancel leaves behind).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Coroutine, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from openassistants.bus.notify import Notifier

Job = TypeVar("Job")
Key = TypeVar("Key", bound=Hashable)


@dataclass(frozen=True)
class ClaimSettings:
    """One queue's timings: how long a claim lasts unrenewed, how long its jobs may take to finish
    at shutdown, how often it is looked at without a wake-up, and how many jobs run at once here."""

    lease_seconds: float
    shutdown_grace_seconds: float
    poll_seconds: float
    capacity: int


class ClaimWork(Protocol[Job, Key]):
    """What a queue does (services/executor.py, services/ingestion.py); the loop decides when."""

    async def claim_jobs(self, limit: int) -> list[Job]:
        """Claims up to ``limit`` waiting jobs, in a transaction of its own."""

    def run_job(self, job: Job) -> Coroutine[Any, Any, None]:
        """Does one claimed job (and settles its row, whatever happens)."""

    def job_key(self, job: Job) -> Key:
        """What names a running job, and its row to ``renew_leases``."""

    async def renew_leases(self, keys: list[Key]) -> None:
        """Renews the leases of the jobs running here."""

    async def sweep_lapsed(self) -> None:
        """Settles, or frees for others, the claims whose holders stopped renewing them."""


@dataclass(eq=False)
class ClaimLoop(Generic[Job, Key]):
    """Claims and runs one queue's jobs in this process (``name`` prefixes its tasks' names)."""

    name: str
    logger: logging.Logger
    notifier: Notifier
    channel: str
    settings: ClaimSettings
    work: ClaimWork[Job, Key]
    running: dict[Key, asyncio.Task[None]] = field(default_factory=dict, init=False)
    #: Places promised to jobs claimed elsewhere and not started yet (they count against capacity).
    reserved: int = field(default=0, init=False)
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    #: Whether work may be waiting that this loop has not looked for since: a wake-up came, or the
    #: last claim filled every free place. Only then does a job's end (capacity freed) look again:
    #: in a burst of jobs that all started where they were created, every end once cost a read.
    _maybe_waiting: bool = field(default=True, init=False)
    _dispatcher: asyncio.Task[None] | None = field(default=None, init=False)
    _loops: list[asyncio.Task[None]] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.notifier.listen(self.channel, lambda _payload: self._wake_here())
        self.notifier.on_reconnect(self._on_reconnect)

    def _wake_here(self) -> None:
        self._maybe_waiting = True
        self._wakeup.set()

    async def _on_reconnect(self) -> None:
        self._wake_here()  # a wake-up may have been missed while disconnected

    @property
    def dispatching(self) -> bool:
        return self._dispatcher is not None and not self._dispatcher.done()

    def free(self) -> int:
        return self.settings.capacity - len(self.running) - self.reserved

    def start(self, *, dispatch: bool) -> None:
        """Sweep for lapsed claims (always); and, when ``dispatch``, claim, run and renew jobs."""
        self._loops = [asyncio.create_task(self._sweep(), name=f"{self.name}-sweep")]
        if dispatch:
            self._dispatcher = asyncio.create_task(self._dispatch(), name=f"{self.name}-dispatch")
            self._loops.append(asyncio.create_task(self._heartbeat(), name=f"{self.name}-heartbeat"))

    async def stop(self) -> None:
        """Stop claiming; give running jobs the shutdown grace to finish, then cancel them."""
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher
        running = list(self.running.values())
        if running and self.settings.shutdown_grace_seconds > 0:
            self.logger.info("waiting for %d running jobs to finish", len(running))
            await asyncio.wait(running, timeout=self.settings.shutdown_grace_seconds)
        for task in self.running.values():
            task.cancel()
        await asyncio.gather(*self.running.values(), return_exceptions=True)
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)

    async def wake(self) -> None:
        """Tell this queue's claimers, here or in other processes, that work is waiting. The work is
        already committed, so a failed wake-up costs only time: every claimer also polls."""
        try:
            await self.notifier.notify(self.channel, "")
        except Exception:
            self.logger.warning("could not send a wake-up; the work is found by polling", exc_info=True)

    def spawn(self, job: Job) -> None:
        """Run a job claimed by this process (by the dispatcher, or with the row that created it)."""
        key = self.work.job_key(job)
        task = asyncio.create_task(self.work.run_job(job), name=f"{self.name}-{key}")
        self.running[key] = task
        task.add_done_callback(functools.partial(self._finished, key))

    def _finished(self, key: Key, _task: asyncio.Task[None]) -> None:
        self.running.pop(key, None)
        if self._maybe_waiting:
            self._wakeup.set()  # capacity freed, for work that may be waiting

    async def _dispatch(self) -> None:
        while True:
            self._wakeup.clear()
            self._maybe_waiting = False  # a wake-up from now on sets it again
            free = self.free()
            try:
                jobs = await self.work.claim_jobs(free) if free > 0 else []
            except Exception:
                self.logger.warning("could not claim work", exc_info=True)
                jobs = []
                self._maybe_waiting = True
            if len(jobs) >= free:
                self._maybe_waiting = True  # no place left (or every one taken): more may wait
            for job in jobs:
                self.spawn(job)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self.settings.poll_seconds)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.settings.lease_seconds / 3)
            if not self.running:
                continue
            try:
                await self.work.renew_leases(list(self.running))
            except Exception:
                self.logger.warning("could not renew leases", exc_info=True)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.settings.lease_seconds / 3)
            try:
                await self.work.sweep_lapsed()
            except Exception:
                self.logger.warning("could not settle lapsed claims", exc_info=True)


class Wakeable(Protocol):
    """A queue's claimers (services/executor.py, services/ingestion.py), told by whoever commits new
    work that some is waiting: the service that creates the work, never the HTTP layer."""

    async def wake(self) -> None: ...
