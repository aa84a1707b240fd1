"""Jobs waiting their turn at a host queue: a freed slot wakes one of them, not all.

With 64 files in flight over a host whose window is 8, 56 jobs wait at the host; when
every release woke all of them, each went round for nothing, and on 2 000 quicklooks
that churn cost about a third of the run's CPU (issue 19)."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from stacpull.limits import HostLimiter


@pytest.mark.anyio
async def test_a_freed_slot_wakes_one_waiting_job_not_all() -> None:
    limiter = HostLimiter(1, start=1, adaptive=False)
    woken: list[int] = []
    release = anyio.Event()

    async def holder() -> None:
        async with limiter.slot("h"):
            await release.wait()

    async def waiter(n: int) -> None:
        await limiter.turn("h")
        woken.append(n)

    async with anyio.create_task_group() as tg:
        tg.start_soon(holder)
        await anyio.wait_all_tasks_blocked()
        for n in range(50):
            tg.start_soon(waiter, n)
        await anyio.wait_all_tasks_blocked()
        assert woken == []  # the one slot is held
        release.set()
        await anyio.wait_all_tasks_blocked()
        assert woken == [0]  # the first in line, and no other
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_a_waiter_cancelled_after_its_wake_passes_it_on() -> None:
    limiter = HostLimiter(1, start=1, adaptive=False)
    woken: list[int] = []
    release = anyio.Event()
    scopes = [anyio.CancelScope() for _ in range(2)]

    async def holder() -> None:
        async with limiter.slot("h"):
            await release.wait()

    async def waiter(n: int) -> None:
        with scopes[n]:
            await limiter.turn("h")
            woken.append(n)

    async with anyio.create_task_group() as tg:
        tg.start_soon(holder)
        await anyio.wait_all_tasks_blocked()
        for n in range(2):
            tg.start_soon(waiter, n)
        await anyio.wait_all_tasks_blocked()
        release.set()  # wakes the first...
        scopes[0].cancel()  # ...which is cancelled before it runs
        await anyio.wait_all_tasks_blocked()
        assert woken == [1]


@pytest.mark.anyio
async def test_the_freed_slot_is_kept_for_the_waiter_not_taken_by_a_newcomer() -> None:
    """The first in line had given back its transfer slot to wait: while it takes that
    again, the host slot freed for it is not free for a job that just arrived (which made
    every waiting job go round about five times on 2 000 quicklooks)."""
    limiter = HostLimiter(1, start=1, adaptive=False)
    release = anyio.Event()
    order: list[str] = []

    async def holder() -> None:
        async with limiter.slot("h"):
            await release.wait()

    async def waiter() -> None:
        promised = await limiter.turn("h")
        await anyio.lowlevel.checkpoint()  # taking its transfer slot back
        async with limiter.slot("h", promised=promised):
            order.append("waiter")

    async with anyio.create_task_group() as tg:
        tg.start_soon(holder)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        release.set()
        await (
            anyio.lowlevel.checkpoint()
        )  # the holder lets go; the waiter is woken, not yet running
        assert not limiter.ready("h")  # a newcomer finds it taken
        await anyio.wait_all_tasks_blocked()
    assert order == ["waiter"]
    assert limiter.ready("h")


@pytest.mark.anyio
async def test_a_kept_slot_given_up_goes_to_the_next() -> None:
    limiter = HostLimiter(1, start=1, adaptive=False)
    async with limiter.slot("h"):
        pass
    release = anyio.Event()

    async def holder() -> None:
        async with limiter.slot("h"):
            await release.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(holder)
        await anyio.wait_all_tasks_blocked()
        got: list[bool] = []

        async def waiter() -> None:
            got.append(await limiter.turn("h"))

        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        release.set()
        await anyio.wait_all_tasks_blocked()
        assert got == [True] and not limiter.ready("h")
        limiter.forfeit("h")
        assert limiter.ready("h")
