"""The in-process event bus keeps a stopped run's events for reconnects, then forgets them."""

from __future__ import annotations

import asyncio
import contextlib

from openassistants.bus.memory import EVENT_OVERHEAD_BYTES, InProcessEventBus
from openassistants.events import Event

RETENTION = 0.05


def _event(n: int) -> Event:
    return Event.of("thread.message.delta", {"n": n})


async def _past_retention(bus: InProcessEventBus) -> None:
    await asyncio.sleep(RETENTION * 3)
    bus.close("run_other")  # forgetting happens as runs close


async def test_a_stopped_run_is_replayed_until_its_retention_passes() -> None:
    bus = InProcessEventBus(retention_seconds=RETENTION)
    bus.publish("run_a", _event(1))
    bus.close("run_a")
    assert [i for i, _ in await bus.replay("run_a", 0)] == [1]

    await _past_retention(bus)

    assert await bus.replay("run_a", 0) == []
    assert await bus.last_id("run_a") == 0


async def test_a_run_that_goes_on_after_its_stream_stopped_is_kept() -> None:
    # A run stops streaming when it requires action and goes on once outputs are submitted.
    bus = InProcessEventBus(retention_seconds=RETENTION)
    bus.publish("run_a", _event(1))
    bus.close("run_a")
    bus.publish("run_a", _event(2))

    await _past_retention(bus)
    assert await bus.last_id("run_a") == 2

    bus.close("run_a")
    assert await bus.last_id("run_a") == 2
    await _past_retention(bus)
    assert await bus.last_id("run_a") == 0


async def test_only_runs_past_their_retention_are_forgotten() -> None:
    bus = InProcessEventBus(retention_seconds=RETENTION)
    for n in range(1000):
        bus.publish(f"run_old_{n}", _event(n))
        bus.close(f"run_old_{n}")
    await asyncio.sleep(RETENTION * 3)
    bus.publish("run_new", _event(0))
    bus.close("run_new")
    bus.publish("run_open", _event(0))

    assert all([await bus.last_id(f"run_old_{n}") == 0 for n in range(1000)])
    assert await bus.last_id("run_new") == 1
    assert await bus.last_id("run_open") == 1


async def test_ended_runs_logs_are_capped_in_bytes_oldest_first() -> None:
    size = len(_event(0).data) + EVENT_OVERHEAD_BYTES
    bus = InProcessEventBus(retention_seconds=3600, max_bytes=size * 10)
    for n in range(30):
        bus.publish(f"run_{n}", _event(0))
        bus.close(f"run_{n}")
    bus.publish("run_open", _event(0))  # a running run's log is never dropped for the cap
    for n in range(20):
        bus.publish("run_open", _event(n))
    kept = [n for n in range(30) if await bus.last_id(f"run_{n}")]
    assert kept == list(range(20, 30))
    assert await bus.last_id("run_open") == 21


async def test_a_subscriber_of_a_silent_run_leaves_nothing_behind() -> None:
    bus = InProcessEventBus()
    stream = bus.subscribe("run_gone", 0)
    waiting = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
    await stream.aclose()  # type: ignore[attr-defined]
    assert bus._logs == {}
