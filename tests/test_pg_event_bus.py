"""bus/postgres.py: a run's events reach streams in the publishing process from memory, before they are
written, with the ids the table gets; other processes (here a second bus on the same database, as each
process has one) and resumes read the same events, with the same ids, from the table and NOTIFY."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from openassistants.bus.notify import Listener, PostgresNotifier
from openassistants.bus.postgres import PostgresEventBus
from openassistants.events import Event
from openassistants.storage.db import Database


@pytest.fixture
async def db(pg_url: str) -> AsyncIterator[Database]:
    database = Database(pg_url)
    await database.migrate()
    yield database
    await database.close()


async def _bus(db: Database) -> tuple[PostgresEventBus, PostgresNotifier]:
    notifier = PostgresNotifier(db.asyncpg_dsn)
    bus = PostgresEventBus(notifier, retention_seconds=3600)
    await notifier.start()
    await bus.start()
    return bus, notifier


class _LateNotifier(PostgresNotifier):
    """Delivers the notifications that come while ``held`` only at ``release``: as a loaded machine
    does late (PostgreSQL's listening backend, or this process's loop, not scheduled meanwhile)."""

    def __init__(self, dsn: str) -> None:
        super().__init__(dsn)
        self.held: list[tuple[Listener, str]] | None = None

    def listen(self, channel: str, callback: Listener) -> None:
        def deliver(payload: str) -> None:
            if self.held is None:
                callback(payload)
            else:
                self.held.append((callback, payload))

        super().listen(channel, deliver)

    def release(self) -> None:
        held, self.held = self.held or [], None
        for callback, payload in held:
            callback(payload)


async def _stop(bus: PostgresEventBus, notifier: PostgresNotifier) -> None:
    await bus.aclose()
    await notifier.close()


async def _collect(stream: AsyncIterator[list[tuple[int, Event]]]) -> list[tuple[int, str]]:
    return [(event_id, event.name) async for batch in stream for event_id, event in batch]


def _delta(n: int) -> Event:
    return Event.of("thread.message.delta", {"n": n})


async def test_local_streams_get_events_as_published_with_the_ids_other_processes_see(db: Database) -> None:
    here, here_notifier = await _bus(db)
    there, there_notifier = await _bus(db)
    try:
        run_id = "run_local"
        local = asyncio.ensure_future(_collect(here.subscribe(run_id, 0)))
        remote = asyncio.ensure_future(_collect(there.subscribe(run_id, 0)))
        await asyncio.sleep(0.2)  # both subscribed (their replays done)
        async with db.write() as conn:
            await here.publish_in(
                conn, run_id, [Event.of("thread.run.created", {}), Event.of("thread.run.queued", {})]
            )
        here.publish(run_id, Event.of("thread.run.in_progress", {}))
        for n in range(5):
            here.publish(run_id, _delta(n))
        async with db.write() as conn:
            await here.publish_in(conn, run_id, [Event.of("thread.run.completed", {})])
        got_here, got_there = await asyncio.wait_for(asyncio.gather(local, remote), timeout=10)
        names = ["thread.run.created", "thread.run.queued", "thread.run.in_progress"]
        names += ["thread.message.delta"] * 5 + ["thread.run.completed"]
        assert [name for _, name in got_here] == names
        assert got_there == got_here
        ids = [event_id for event_id, _ in got_here]
        assert ids == sorted(set(ids))
        # A resume, in either process, replays the table: the same ids.
        assert [(i, e.name) for i, e in await there.replay(run_id, 0)] == got_here
        assert [(i, e.name) for i, e in await here.replay(run_id, ids[3])] == got_here[4:]
    finally:
        await _stop(here, here_notifier)
        await _stop(there, there_notifier)


async def test_a_local_stream_does_not_wait_for_the_table(db: Database) -> None:
    bus, notifier = await _bus(db)
    try:
        run_id = "run_unwritten"
        stream = bus.subscribe(run_id, 0)
        first = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.2)
        bus.publish(run_id, Event.of("thread.run.in_progress", {}))  # numbered after one block fetch
        await asyncio.wait_for(first, timeout=10)
        # The run's log has a block now: the next event is delivered within the same loop turn as
        # its publish, while its row is still in the flusher's buffer.
        bus.publish(run_id, _delta(0))
        nxt = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert nxt.done()
        (event_id, event) = nxt.result()[0]
        assert event.name == "thread.message.delta"
        await bus.flush(run_id)
        assert await bus.last_id(run_id) == event_id
        await stream.aclose()
    finally:
        await _stop(bus, notifier)


async def test_ids_keep_increasing_when_the_run_moves_to_another_process(db: Database) -> None:
    """Executed by one process up to requires_action, queued again and executed by another: the
    second's ids are above the first's, though the first took its block earlier and has ids left."""
    first, first_notifier = await _bus(db)
    second, second_notifier = await _bus(db)
    try:
        run_id = "run_moving"
        first.publish(run_id, Event.of("thread.run.in_progress", {}))
        first.publish(run_id, _delta(0))
        async with db.write() as conn:
            await first.publish_in(conn, run_id, [Event.of("thread.run.requires_action", {})])
        second.publish(run_id, Event.of("thread.run.in_progress", {}))
        second.publish(run_id, _delta(1))
        async with db.write() as conn:
            await second.publish_in(conn, run_id, [Event.of("thread.run.completed", {})])
        events = await first.replay(run_id, 0)
        ids = [event_id for event_id, _ in events]
        assert ids == sorted(set(ids)) and len(ids) == 6
        assert [e.name for _, e in events][-3:] == [
            "thread.run.in_progress",
            "thread.message.delta",
            "thread.run.completed",
        ]
    finally:
        await _stop(first, first_notifier)
        await _stop(second, second_notifier)


async def test_another_process_gets_every_event_whole_however_they_share_notifications(db: Database) -> None:
    """The flusher's events travel several to a NOTIFY (up to its payload limit); one too large to
    travel goes without its data, which the receiver fetches: another process streams them all, in
    order, with their data. The creating process streams the run from its own log (no replay)."""
    here, here_notifier = await _bus(db)
    there, there_notifier = await _bus(db)
    try:
        run_id = "run_notified"
        remote = there.subscribe(run_id, 0)
        remote_got = asyncio.ensure_future(
            _collect_data(remote, ends="thread.run.completed"),
        )
        await asyncio.sleep(0.2)  # subscribed (its replay done)
        here.publish(run_id, Event.of("thread.run.created", {}))
        local_got = asyncio.ensure_future(
            _collect_data(here.subscribe(run_id, 0), ends="thread.run.completed")
        )
        sent = [Event.of("thread.message.delta", {"n": n, "text": "x" * (n * 97 % 1500)}) for n in range(60)]
        sent.insert(30, Event.of("thread.message.delta", {"n": "large", "text": "y" * 20_000}))
        for event in sent:
            here.publish(run_id, event)
        async with db.write() as conn:
            await here.publish_in(conn, run_id, [Event.of("thread.run.completed", {})])
        got_there, got_here = await asyncio.wait_for(asyncio.gather(remote_got, local_got), timeout=10)
        expected = [b"{}", *(event.data for event in sent), b"{}"]
        assert [data for _, data in got_here] == expected
        assert got_there == got_here
        ids = [event_id for event_id, _ in got_here]
        assert ids == sorted(set(ids))
    finally:
        await _stop(here, here_notifier)
        await _stop(there, there_notifier)


async def _collect_data(stream: AsyncIterator[list[tuple[int, Event]]], ends: str) -> list[tuple[int, bytes]]:
    got: list[tuple[int, bytes]] = []
    async for batch in stream:
        got += [(event_id, event.data) for event_id, event in batch]
        if batch[-1][1].name == ends:
            break
    return got


async def test_a_late_echo_of_the_runs_requires_action_does_not_end_the_tool_outputs_stream(
    db: Database,
) -> None:
    """This process executed the run up to requires_action; its tool outputs land here too, and
    another process executes the rest. The NOTIFY echoing this process's requires_action comes late
    (a loaded machine), after the log that published it was dropped and the tool outputs' stream made
    a new one, which takes it for another process's event: the stream goes on past it to the run's
    end (once, at load ~6, it ended there, before the assistant's message)."""
    late = _LateNotifier(db.asyncpg_dsn)
    here = PostgresEventBus(late, retention_seconds=3600)
    await late.start()
    await here.start()
    there, there_notifier = await _bus(db)
    try:
        run_id = "run_late_echo"
        late.held = []
        here.publish(run_id, Event.of("thread.run.in_progress", {}))
        async with db.write() as conn:
            await here.publish_in(conn, run_id, [Event.of("thread.run.requires_action", {})])
        # submit_tool_outputs: the stream starts after everything so far.
        start = await here.last_id(run_id)
        async with db.write() as conn:
            await here.publish_in(
                conn, run_id, [Event.of("thread.run.step.completed", {}), Event.of("thread.run.queued", {})]
            )
        stream = here.subscribe(run_id, start)
        first = await asyncio.wait_for(anext(stream), timeout=10)
        assert [event.name for _, event in first] == ["thread.run.step.completed", "thread.run.queued"]
        late.release()  # the echoes come (the requires_action's among them), in commit order
        there.publish(run_id, Event.of("thread.run.in_progress", {}))
        there.publish(run_id, _delta(0))
        async with db.write() as conn:
            await there.publish_in(conn, run_id, [Event.of("thread.run.completed", {})])
        rest = await asyncio.wait_for(_collect(stream), timeout=10)
        names = ["thread.run.in_progress", "thread.message.delta", "thread.run.completed"]
        assert [name for _, name in rest] == names
        assert all(event_id > start for event_id, _ in rest)
    finally:
        await _stop(here, late)
        await _stop(there, there_notifier)
