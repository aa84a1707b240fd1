"""One politeness budget for a cluster (issue 21): the gate protocol of the host limiter
(a fake gate, a fake clock), then :class:`~stacpull.cluster.gate.DaskGate` on a
``LocalCluster`` of two worker processes, each task a download of its own sim files into its
own DEST: the server never sees more than the cluster's cap, a ``Retry-After`` one task hears
holds the other's requests, and the leases of a killed worker come back."""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from stacpull import api
from stacpull.cluster.gate import DaskGate
from stacpull.limits import HostLimiter
from stacpull.runtypes import RunOptions
from stacpull.sim import Faults, SimCatalog, SimServer, default_collections

from .conftest import L1A, L1C, TOKEN, Clock, files_under, local_dask_client, until

H = "archive.example.org"


class FakeGate:
    """The cluster as one object in this process: ``cap`` leases per host, pauses kept on
    a fake wall clock; several limiters sharing it are several workers."""

    def __init__(self, cap: int, wall: Clock) -> None:
        self.cap, self.wall = cap, wall
        self.leases: dict[str, anyio.Semaphore] = {}
        self.held = 0
        self.peak = 0
        self.published: list[tuple[str, float]] = []
        self.ends: dict[str, float] = {}

    def _leases(self, host: str) -> anyio.Semaphore:
        return self.leases.setdefault(host, anyio.Semaphore(self.cap))

    async def acquire(self, host: str) -> None:
        await self._leases(host).acquire()
        self.held += 1
        self.peak = max(self.peak, self.held)

    def release(self, host: str) -> None:
        self.held -= 1
        self._leases(host).release()

    def pause(self, host: str, seconds: float) -> None:
        self.published.append((host, seconds))
        self.ends[host] = max(self.ends.get(host, -math.inf), self.wall() + seconds)

    def paused_for(self, host: str) -> float:
        return self.ends.get(host, -math.inf) - self.wall()


async def _settle() -> None:
    for _ in range(10):
        await anyio.lowlevel.checkpoint()


@contextlib.asynccontextmanager
async def _holder_and_waiter(
    limiter: HostLimiter,
) -> AsyncIterator[tuple[anyio.Event, anyio.Event]]:
    """One task holding ``H``'s only slot until ``release`` is set, and one waiting for a
    slot, which sets ``entered`` once it has one: the block runs with both under way."""
    release, entered = anyio.Event(), anyio.Event()

    async def holder() -> None:
        async with limiter.slot(H):
            await release.wait()

    async def waiter() -> None:
        async with limiter.slot(H):
            entered.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(holder)
        await _settle()
        tg.start_soon(waiter)
        await _settle()
        yield release, entered


@pytest.mark.anyio
async def test_a_slot_takes_a_lease_under_the_window_and_gives_it_back() -> None:
    gate = FakeGate(2, Clock())
    limiter = HostLimiter(8, start=8, adaptive=False)
    limiter.gate = gate
    release = anyio.Event()
    entered = 0

    async def hold() -> None:
        nonlocal entered
        async with limiter.slot(H):
            entered += 1
            await release.wait()

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(hold)
        await _settle()
        # The window lets all five in locally; the cluster's cap lets two go.
        assert limiter.active(H) == 5 and entered == 2 and gate.held == 2
        release.set()
    assert entered == 5 and gate.held == 0 and gate.peak == 2
    assert limiter.active(H) == 0 == limiter.in_flight()


@pytest.mark.anyio
async def test_a_wait_for_a_lease_cancelled_gives_back_the_local_slot() -> None:
    gate = FakeGate(1, Clock())
    limiter = HostLimiter(4, adaptive=False)
    limiter.gate = gate
    await gate.acquire(H)  # another worker holds the host's one lease
    with anyio.move_on_after(0.05):
        async with limiter.slot(H):
            pytest.fail("no lease was free")
    assert limiter.active(H) == 0 and gate.held == 1


@pytest.mark.parametrize("adaptive", [True, False])
def test_a_retry_after_is_published_and_a_published_pause_holds_another_limiter(
    adaptive: bool,
) -> None:
    wall, here, there = Clock(), Clock(), Clock()
    gate = FakeGate(4, wall)
    heard, other = HostLimiter(8, clock=here), HostLimiter(8, adaptive=adaptive, clock=there)
    heard.gate = other.gate = gate
    heard.throttled(H, 429, 5.0)
    assert gate.published == [(H, 5.0)]
    assert not heard.ready(H)
    assert not other.ready(H)  # it never heard the 429 itself
    for clock in (wall, here, there):
        clock.now += 4.9
    assert not other.ready(H)
    for clock in (wall, here, there):
        clock.now += 0.2
    assert other.ready(H) and heard.ready(H)
    # A fixed window publishes too: the others hold the host though this one's window is fixed.
    fixed = HostLimiter(8, adaptive=False, clock=here)
    fixed.gate = gate
    fixed.throttled(H, 503, 2.0)
    assert gate.published[-1] == (H, 2.0) and not fixed.ready(H) and not other.ready(H)
    fixed.throttled(H, 503, None)  # no Retry-After: nothing to publish
    assert len(gate.published) == 2


@pytest.mark.anyio
async def test_a_pause_that_begins_while_requests_wait_ends_their_wait_when_it_ends() -> None:
    """A request waiting for a slot when a pause begins: the slots given back during the
    pause wake nobody, so its wait is re-timed to the pause's end (else it would wait until
    some other slot is given back, which may never come)."""
    limiter = HostLimiter(1, start=1)  # the real clock: the waiter's own timer ends the pause
    async with _holder_and_waiter(limiter) as (release, entered):
        limiter.throttled(H, 429, 0.2)  # the holder's host asks for a pause...
        release.set()  # ...and its slot is given back during it
        with anyio.fail_after(5):  # a bound for a loaded machine, not a timing
            await entered.wait()


@pytest.mark.anyio
async def test_a_pause_another_worker_published_re_times_the_waiters_here() -> None:
    wall = Clock()
    gate = FakeGate(4, wall)
    limiter = HostLimiter(1, start=1, adaptive=False)
    limiter.gate = gate
    async with _holder_and_waiter(limiter) as (release, entered):
        gate.ends[H] = wall() + 0.2  # published by another worker
        release.set()  # the holder's slot comes back while the pause holds: no wake
        await _settle()
        assert not entered.is_set()
        wall.now += 0.2  # the pause is over on the cluster's clock
        with anyio.fail_after(5):
            await entered.wait()


def test_the_gate_pickles_to_its_cap_and_name_and_a_plain_import_loads_no_dask() -> None:
    gate = DaskGate(3, "stacpull-abc")
    gate.pause(H, 30.0)  # known to this copy only: not pickled
    copy = pickle.loads(pickle.dumps(gate))
    assert (copy.cap, copy.name) == (3, "stacpull-abc") and copy.paused_for(H) < 0
    assert copy.lease_name(H) == f"stacpull-abc-lease-3-{H}"
    with pytest.raises(ValueError, match="at least 1"):
        DaskGate(0, "x")
    code = (
        "import sys, stacpull.api, stacpull.engine, stacpull.cluster.gate, stacpull.runtypes\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')]\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- on a LocalCluster ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """Two worker processes; leases time out after 2 s without a refresh (30 s by default),
    checked every 0.1 s, so a killed worker's leases come back within the test."""
    settings = {
        "distributed.scheduler.locks.lease-timeout": "2s",
        "distributed.scheduler.locks.lease-validation-interval": "100ms",
    }
    with local_dask_client(settings) as c:
        c.run(_warm)
        yield c


def _warm() -> None:
    """Each worker imports the engine before the tests' timing-sensitive tasks arrive."""
    import stacpull.api
    import stacpull.cluster.gate  # noqa: F401


def _sim(**faults: Any) -> SimServer:
    catalog = SimCatalog(default_collections(count=3, product_size=150_000))
    server = SimServer(catalog)
    server.set_faults(Faults(**faults))
    return server


def _download(sim_url: str, collection: str, dest: str, gate: DaskGate, **kw: Any) -> dict:
    """A worker's task: one download with the cluster's gate; plain data back."""
    options: dict[str, Any] = {
        "catalog": sim_url,
        "collections": [collection],
        "dest": dest,
        "token": TOKEN,
        "backoff": 0.01,
        "max_backoff": 0.05,
        **kw,
    }
    result = api.run(api.build_config(**options), RunOptions("download", gate=gate))
    return {"ok": result.ok, "downloaded": result.downloaded, "held": gate.held_back}


def _gate(cap: int) -> DaskGate:
    return DaskGate(cap, f"stacpull-test-{uuid.uuid4().hex[:8]}")  # nothing shared between tests


def test_the_server_never_sees_more_than_the_cluster_cap(client: Any, tmp_path: Path) -> None:
    gate = _gate(2)
    with _sim(rate_limit=1_500_000) as sim:  # bodies last long enough to overlap
        window = {"per_host": 8, "concurrency": 8, "adaptive": False}  # 8 each, 16 together
        futures = [
            client.submit(
                _download, sim.catalog_url, coll, str(tmp_path / coll), gate, pure=False, **window
            )
            for coll in (L1A, L1C)
        ]
        results = client.gather(futures)
        assert [r["ok"] for r in results] == [True, True], results
        assert sum(r["downloaded"] for r in results) == len(files_under(tmp_path)) == 18
        assert 1 <= sim.peak_connections <= 2, sim.peak_connections


def test_a_retry_after_heard_by_one_task_holds_the_others_requests(
    client: Any, tmp_path: Path
) -> None:
    pause = 2.0
    gate = _gate(4)
    faults = {"burst_probability": 1.0, "burst_length": 1, "burst_statuses": (429,)}
    with _sim(**faults, retry_after=pause) as sim:
        a = str(tmp_path / "a")
        first = client.submit(_download, sim.catalog_url, L1A, a, gate, pure=False, per_host=1)
        until(lambda: sim.fault_counts.get("status_429"))
        sim.set_faults(Faults())  # that one 429 only
        # The first task published the pause (the scheduler holds it) before the second starts.
        until(lambda: client.get_metadata([gate.name, "pause", "127.0.0.1"], default=None))
        heard_at = next(r["at"] for r in sim.requests if r["path"].startswith("/data/"))
        c = str(tmp_path / "c")
        second = client.submit(_download, sim.catalog_url, L1C, c, gate, pure=False)
        results = client.gather([first, second])
    assert [r["ok"] for r in results] == [True, True], results
    assert results[1]["held"] >= 1  # the other task did want to send during the pause
    others = [r["at"] for r in sim.requests if f"/{L1C}/" in r["path"]]
    assert others, "the second task sent nothing"
    # Counted, not timed: none of the other task's requests reached the server before the
    # pause ended (the 429 was logged before the client read it; a quarter of a second of
    # slack, in the safe direction).
    early = [at for at in others if at < heard_at + pause - 0.25]
    assert early == [], (len(early), len(others))


def _hold(gate: DaskGate, host: str, marker: str) -> str:
    """A worker's task: take every lease of ``host`` and never give them back (until the
    test kills the worker). Run again after the kill (Dask reruns a lost task), it holds
    nothing."""
    if Path(marker).exists():
        return "rerun"

    async def take() -> None:
        for _ in range(gate.cap):
            await gate.acquire(host)

    anyio.run(take)
    Path(marker).write_text(str(os.getpid()))
    while True:
        time.sleep(1)


def test_the_leases_of_a_killed_worker_come_back(client: Any, tmp_path: Path) -> None:
    from distributed import Semaphore

    gate = _gate(2)
    marker = tmp_path / "holder.pid"
    holder = client.submit(_hold, gate, H, str(marker), pure=False)
    until(marker.exists)
    probe = Semaphore(max_leases=2, name=gate.lease_name(H))
    assert probe.acquire(timeout=0.2) is False  # the holder has both
    os.kill(int(marker.read_text()), signal.SIGKILL)

    async def take_both() -> None:
        with anyio.fail_after(30):  # the lease timeout is 2 s; a bound, not a timing
            for _ in range(2):
                await gate.acquire(H)
        for _ in range(2):
            gate.release(H)

    anyio.run(take_both)
    assert holder.result(timeout=30) == "rerun"
    client.wait_for_workers(2, timeout=30)
