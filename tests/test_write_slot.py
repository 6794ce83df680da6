"""storage/db.WriteSlot: the SQLite writer's mutual exclusion, which never queues a newcomer behind a
free slot and wakes every waiter at once."""

from __future__ import annotations

import asyncio

import pytest

from openassistants.storage.db import WriteSlot


async def test_holders_never_overlap_even_when_they_suspend() -> None:
    slot = WriteSlot()
    inside = 0
    most = 0
    order: list[int] = []

    async def writer(n: int, suspends: bool) -> None:
        nonlocal inside, most
        async with slot:
            inside += 1
            most = max(most, inside)
            if suspends:
                await asyncio.sleep(0.001)
            order.append(n)
            inside -= 1

    await asyncio.gather(*(writer(n, suspends=n % 3 == 0) for n in range(60)))
    assert most == 1
    assert sorted(order) == list(range(60))


async def test_a_free_slot_is_taken_at_once_though_others_wait() -> None:
    slot = WriteSlot()
    release = asyncio.Event()
    events: list[str] = []

    async def holder() -> None:
        async with slot:
            await release.wait()
        events.append("holder out")

    async def waiter() -> None:
        async with slot:
            events.append("waiter in")

    holding = asyncio.create_task(holder())
    await asyncio.sleep(0)
    waiting = asyncio.create_task(waiter())
    await asyncio.sleep(0)
    release.set()
    await holding
    # The waiter has been woken but not run yet: a newcomer still enters without waiting for it.
    async with slot:
        events.append("newcomer in")
    await waiting
    assert events == ["holder out", "newcomer in", "waiter in"]


async def test_a_cancelled_waiter_does_not_strand_the_others() -> None:
    slot = WriteSlot()
    release = asyncio.Event()

    async def holder() -> None:
        async with slot:
            await release.wait()

    async def waiter() -> str:
        async with slot:
            return "in"

    holding = asyncio.create_task(holder())
    await asyncio.sleep(0)
    cancelled = asyncio.create_task(waiter())
    other = asyncio.create_task(waiter())
    await asyncio.sleep(0)
    cancelled.cancel()
    release.set()
    await holding
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert await asyncio.wait_for(other, 1.0) == "in"
    async with asyncio.timeout(1.0), slot:
        pass
