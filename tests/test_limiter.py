"""The per-host limiter (issue 19): one :class:`~stacpull.window.HostWindow` per host behind
``HostLimiter.slot``, fed by the transfer path. A fake clock for the pure rules; one
loopback run against the sim for the wiring."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from stacpull.events import HostLimitChanged
from stacpull.limits import HostLimiter
from stacpull.sim import SimCatalog, SimOptions, SimServer, default_collections
from stacpull.sim.faults import Faults
from stacpull.window import WindowSettings

from .conftest import Recorder, files_under, pull

pytestmark = pytest.mark.anyio
MB = 1_000_000
H = "archive.example.org"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _limiter(clock: Clock, ceiling: int = 32, **kw: object) -> tuple[HostLimiter, list[tuple]]:
    changes: list[tuple] = []
    limiter = HostLimiter(
        ceiling, clock=clock, on_change=lambda *change: changes.append(change), **kw
    )  # type: ignore[arg-type]
    return limiter, changes


@asynccontextmanager
async def _holding(limiter: HostLimiter, n: int, host: str = H) -> AsyncIterator[anyio.Event]:
    """``n`` tasks holding a slot each of ``host`` until the event yielded is set."""
    release = anyio.Event()

    async def hold() -> None:
        async with limiter.slot(host):
            await release.wait()

    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(hold)
        with anyio.fail_after(2):
            while limiter.active(host) < min(n, limiter.limit(host)):
                await anyio.lowlevel.checkpoint()
        await _settle()
        yield release
        release.set()


async def _settle() -> None:
    """Let the tasks a change woke take their slots."""
    for _ in range(5):
        await anyio.lowlevel.checkpoint()


async def _epoch(limiter: HostLimiter, clock: Clock, nbytes: int, seconds: float = 0.25) -> None:
    """One epoch of a fake link: bytes arrive, then time passes; nothing ticks after it."""
    limiter.received(H, nbytes)
    clock.now += seconds
    await _settle()


async def test_the_window_starts_at_eight_under_the_ceiling() -> None:
    clock = Clock()
    assert HostLimiter(32, clock=clock).limit(H) == 8
    assert HostLimiter(4, clock=clock).limit(H) == 4
    assert HostLimiter(32, start=16, clock=clock).limit(H) == 16


async def test_a_fixed_window_ignores_every_answer() -> None:
    clock = Clock()
    limiter, changes = _limiter(clock, 6, start=6, adaptive=False)
    for _ in range(30):
        limiter.throttled(H, 429, 5.0)
        clock.now += 3
    async with _holding(limiter, 6):
        for _ in range(20):
            await _epoch(limiter, clock, 50 * MB)
            limiter.first_byte(H, 0.05)
    assert limiter.limit(H) == 6 and changes == []
    async with limiter.slot(H):  # not paused: the server's Retry-After is the file's own wait
        pass


async def test_a_slot_waits_for_the_window_and_a_cut_below_active_does_not_deadlock() -> None:
    clock = Clock()
    limiter, changes = _limiter(clock, 8)
    entered = anyio.Event()

    async def late() -> None:
        async with limiter.slot(H):
            entered.set()

    async with anyio.create_task_group() as tg:
        async with _holding(limiter, 8) as release:
            tg.start_soon(late)
            await _settle()
            assert not entered.is_set() and limiter.in_flight() == 8
            limiter.throttled(H, 503, None)  # cut to 4 with 8 in flight
            assert limiter.limit(H) == 4 and changes[-1] == (H, 4, "throttled")
            release.set()
        with anyio.fail_after(2):
            await entered.wait()
    assert limiter.active(H) == 0 == limiter.in_flight()


async def test_a_paused_host_lets_a_waiting_slot_in_when_retry_after_ends() -> None:
    limiter = HostLimiter(8)  # the real clock: the waiter's own timer ends the pause
    limiter.throttled(H, 429, 0.3)
    entered = anyio.Event()

    async def late() -> None:
        async with limiter.slot(H):
            entered.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(late)
        await anyio.sleep(0.05)
        assert not entered.is_set()  # paused, though every slot is free
        with anyio.fail_after(3):
            await entered.wait()  # nothing else happens on the host: its timer wakes it
    assert limiter.limit(H) == 4


async def test_every_throttle_reaches_the_window_at_most_one_cut_per_cooldown() -> None:
    clock = Clock()
    limiter, changes = _limiter(clock, 32, start=16)
    limiter.throttled(H, 429, 2.0)
    limiter.throttled(H, 503, 10.0)  # within the cooldown: no second cut, a longer pause
    assert [c[1:] for c in changes] == [(8, "throttled")]
    clock.now += 2.5
    limiter.throttled(H, None, None)  # a refused connection, after the cooldown
    assert [c[1:] for c in changes] == [(8, "throttled"), (4, "throttled")]
    with pytest.raises(TimeoutError), anyio.fail_after(0.05):
        async with limiter.slot(H):  # still within the 503's ten seconds
            pass


async def test_a_busy_host_ramps_and_a_half_empty_one_does_not() -> None:
    clock = Clock()
    limiter, changes = _limiter(clock)
    limiter.first_byte(H, 0.05)  # epochs of 0.1 s
    async with _holding(limiter, 4):  # half the window: the link was not what limited
        for _ in range(12):
            await _epoch(limiter, clock, 10 * MB)
            limiter.first_byte(H, 0.05)
    assert changes == []
    async with _holding(limiter, 8):
        for _ in range(4):
            await _epoch(limiter, clock, 20 * MB)
            limiter.first_byte(H, 0.05)
    assert changes[0] == (H, 16, "ramp") and limiter.limit(H) == 16


async def test_a_slot_handed_on_between_files_does_not_make_the_epoch_idle() -> None:
    """A file ends and the next takes its slot a moment later (its local checks first):
    the host was busy all the same."""
    clock = Clock()
    limiter, changes = _limiter(clock)
    limiter.first_byte(H, 0.05)
    async with _holding(limiter, 7):
        for _ in range(4):
            async with limiter.slot(H):
                await _epoch(limiter, clock, 20 * MB, 0.245)
            clock.now += 0.005  # one slot free for 2 % of the epoch
            limiter.first_byte(H, 0.05)
    assert changes and changes[0][1:] == (16, "ramp")


async def test_an_epoch_closes_on_first_bytes_and_slots_without_a_chunk_after_it() -> None:
    """Every slot waiting for its first byte: no chunk ticks the window, the epoch still
    closes (at the next first byte, or the next slot given back or taken)."""
    clock = Clock()
    limiter, changes = _limiter(clock)
    limiter.first_byte(H, 0.05)
    async with _holding(limiter, 7):
        for i in range(4):
            if i % 2:
                async with limiter.slot(H):
                    await _epoch(limiter, clock, 20 * MB)  # closes when the slot is given back
            else:
                async with limiter.slot(H):
                    await _epoch(limiter, clock, 20 * MB)
                    limiter.first_byte(H, 0.05)
    assert changes and changes[0][1:] == (16, "ramp")


async def test_a_burst_of_throttles_holds_growth_until_the_host_is_calm() -> None:
    """Today's burst rule lives on: while 30 % of the host's last 20 answers were 429/503
    (at least 5 of them), the window does not grow; it may once the answers are calm."""
    clock = Clock()
    limiter, changes = _limiter(clock, settings=WindowSettings(hold=1.0, probe_after=1))
    for _ in range(6):
        limiter.throttled(H, 429, None)
        limiter.succeeded(H)
    assert changes == [(H, 4, "throttled")]
    clock.now += 5  # past the hold: only the burst rule keeps the window from growing
    limiter.first_byte(H, 0.05)

    async def epochs(n: int) -> None:
        for _ in range(n):  # a link where each connection brings 1 MB per epoch
            await _epoch(limiter, clock, min(limiter.active(H), limiter.limit(H)) * MB)
            limiter.first_byte(H, 0.05)

    async with _holding(limiter, 16):
        await epochs(16)
        assert max(c[1] for c in changes) == 4
        for _ in range(20):
            limiter.succeeded(H)
        await epochs(16)
        assert limiter.limit(H) > 4


def test_a_per_connection_cap_grows_the_window_past_eight_on_loopback(
    tmp_path: Path, recorder: Recorder
) -> None:
    """The wiring end to end: a sim capping each response at 300 kB/s, 100 ms away (slow
    and far enough that a loaded machine's own delays do not pass for the server's); the
    window reported by HostLimitChanged grows past today's 8."""
    catalog = SimCatalog(default_collections(count=10, product_size=300_000))
    options = SimOptions(latency=0.1, faults=Faults(rate_limit=300_000))
    with SimServer(catalog, options=options) as sim:
        result = pull(sim, tmp_path, recorder, concurrency=64, per_host=32, segments=1)
    assert result.ok and len(files_under(tmp_path)) == result.downloaded > 0
    changes = recorder.of_type(HostLimitChanged)
    assert changes and max(c.limit for c in changes) > 8, changes
    assert {c.host for c in changes} == {"127.0.0.1"}
