"""The per-host limiter (issue 19): one :class:`~stacpull.window.HostWindow` per host behind
``HostLimiter.slot``, fed by the transfer path. A fake clock for the pure rules; one
loopback run against the sim for the wiring."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from stacpull.events import HostLimitChanged
from stacpull.limits import HostLimiter
from stacpull.sim import SimCatalog, SimOptions, SimServer, default_collections
from stacpull.sim.faults import Faults
from stacpull.window import WindowSettings

from .conftest import Clock, Recorder, files_under, pull

pytestmark = pytest.mark.anyio
MB = 1_000_000
H = "archive.example.org"


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
        with anyio.fail_after(10):  # a bound for a loaded machine, not a timing
            while limiter.active(host) < min(n, limiter.limit(host)):
                await anyio.lowlevel.checkpoint()
        await _settle()
        yield release
        release.set()


def _burst(limiter: HostLimiter, status: int | None = 503, n: int = 5) -> None:
    """``n`` throttles in a row: a burst by today's rule (5 of them, 30 % of the answers)."""
    for _ in range(n):
        limiter.throttled(H, status, None)


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
            _burst(limiter)  # cut to 4 with 8 in flight
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
    assert limiter.limit(H) == 8  # a stray 429: a pause, no cut


async def test_every_throttle_reaches_the_window_a_burst_cuts_once_per_cooldown() -> None:
    clock = Clock()
    limiter, changes = _limiter(clock, 32, start=16)
    limiter.throttled(H, 429, 2.0)  # a stray among calm answers: only its pause
    for _ in range(20):
        limiter.succeeded(H)
    assert changes == []
    _burst(limiter, 503, 3)
    limiter.throttled(H, 429, 10.0)
    assert changes == []  # 4 of the last 20 answers: not yet a burst
    limiter.throttled(H, 503, None)  # the fifth: a burst, one cut...
    _burst(limiter, 429, 5)  # ...and no more within the cooldown
    assert [c[1:] for c in changes] == [(8, "throttled")]
    clock.now += 2.5
    limiter.throttled(H, None, None)  # a refused connection, after the cooldown
    assert [c[1:] for c in changes] == [(8, "throttled"), (4, "throttled")]
    with pytest.raises(TimeoutError), anyio.fail_after(0.05):
        async with limiter.slot(H):  # still within the 429's ten seconds
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
    limiter.throttled(H, 429, None)  # one throttle while the ramp is under test: undone
    assert changes[-1] == (H, 8, "throttled")


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


class _Files:
    """``n`` workers taking file after file from one host, each file one epoch long, over
    a link where each connection brings ``per_conn`` bytes per epoch."""

    def __init__(self, limiter: HostLimiter, clock: Clock, per_conn: int = MB) -> None:
        self.limiter, self.clock, self.per_conn = limiter, clock, per_conn
        self.turn = anyio.Event()

    async def worker(self) -> None:
        while True:
            async with self.limiter.slot(H):
                await self.turn.wait()

    async def epochs(self, n: int) -> None:
        for _ in range(n):
            limiter = self.limiter
            await _epoch(limiter, self.clock, min(limiter.active(H), limiter.limit(H)) * MB)
            limiter.first_byte(H, 0.05)
            turn, self.turn = self.turn, anyio.Event()
            turn.set()  # every file ends; the next ones take the slots the window allows
            await _settle()


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
    files = _Files(limiter, clock)
    async with anyio.create_task_group() as tg:
        for _ in range(16):
            tg.start_soon(files.worker)
        await files.epochs(16)
        assert max(c[1] for c in changes) == 4 and changes[1:]  # probed, never above
        for _ in range(20):
            limiter.succeeded(H)
        await files.epochs(16)
        assert limiter.limit(H) > 4
        tg.cancel_scope.cancel()


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


class _DeadAssets(SimCatalog):
    """A catalogue whose assets live on a port nothing listens on."""

    dead = 0

    def item(self, collection: str, index: int) -> dict[str, Any]:
        item = super().item(collection, index)
        for asset in item["assets"].values():
            asset["href"] = asset["href"].replace(self.base_url, f"http://127.0.0.1:{self.dead}")
        return item


def test_a_refused_connection_cuts_the_window_like_a_429(
    tmp_path: Path, recorder: Recorder
) -> None:
    """Files whose host refuses every connection: the refusals reach the window, which is
    cut once (the cooldown holds the next ones)."""
    catalog = _DeadAssets(default_collections(count=2, product_size=10_000))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        catalog.dead = probe.getsockname()[1]  # closed again: nothing listens there
    with SimServer(catalog) as sim:
        result = pull(sim, tmp_path, recorder, retries=1)
    outcomes = recorder.outcomes().values()
    assert result.failed == len(outcomes) > 0
    assert {o.error_class for o in outcomes} == {"ConnectError"}
    changes = recorder.of_type(HostLimitChanged)
    assert changes[0].limit == 4 and {c.reason for c in changes} == {"throttled"}


async def test_an_epoch_with_more_in_flight_than_the_window_does_not_count() -> None:
    """A cut (or a probe down) stops no transfer: until the extra ones have ended, the
    goodput is the old window's, and judging the new one by it would keep any cut."""
    clock = Clock()
    settings = WindowSettings(samples=1, probe_after=1)
    limiter, changes = _limiter(clock, settings=settings)
    limiter.first_byte(H, 0.05)
    async with _holding(limiter, 4):
        async with _holding(limiter, 4):
            _burst(limiter)
            assert changes == [(H, 4, "throttled")]
            for _ in range(8):
                await _epoch(limiter, clock, 8 * MB)
                limiter.first_byte(H, 0.05)
            assert changes == [(H, 4, "throttled")]  # eight in flight: nothing measured
        for _ in range(4):
            await _epoch(limiter, clock, 4 * MB)
            limiter.first_byte(H, 0.05)
        assert changes[1:] and changes[1][2] == "probe down"  # four: measured at last
