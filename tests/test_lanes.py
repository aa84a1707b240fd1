"""The ranges of a split file take host slots as whole files do: the first runs under the
slot its transfer holds, each further connection waits for a slot of its own, joins as
other files free theirs, and stops waiting once the last range is taken. Counted on the
server (the sim's responses in flight) and on the limiter (slots taken, tasks waiting)."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

import stacpull.engine
from stacpull.api import build_config
from stacpull.engine import run
from stacpull.events import BytesReceived, Event, JobFinished, TransferRetried
from stacpull.limits import HostLimiter
from stacpull.models import Status
from stacpull.runtypes import RunOptions, StopSignal
from stacpull.sim import Faults, SimCatalog, SimOptions, SimServer, default_collections
from stacpull.transfer.ranges import SegmentState

from .conftest import L1C, TOKEN, Recorder, files_under, pull
from .hostile import Hostile, Request, asset_at, payload, plant, serve

TIFF = "enclosure_i_abs_tiff"  # a static file with file:size and a checksum: it can split
PRODUCT = "product"  # a zip streamed without a length: never split, holds one slot
SIZE = 4_000_000  # the resumed tiff


class CountingLimiter(HostLimiter):
    """The run's limiter, counting the slots taken and the tasks waiting for one."""

    def __init__(self, limit: int, on_change: Any = None) -> None:
        # A fixed window of `limit` (both the ceiling and the start, where the limiter
        # takes one), below the connector's per-host limit: the slots are what limit.
        start = {"start": limit} if "start" in inspect.signature(HostLimiter).parameters else {}
        super().__init__(limit, adaptive=False, on_change=on_change, **start)
        self.acquired = 0
        self.waiting = 0
        self.throttles = 0
        self.successes = 0

    def throttled(self, host: str, *args: Any) -> None:
        self.throttles += 1
        super().throttled(host, *args)

    def succeeded(self, host: str) -> None:
        self.successes += 1
        super().succeeded(host)

    @asynccontextmanager
    async def slot(self, host: str, *, promised: bool = False) -> AsyncIterator[None]:
        self.waiting += 1
        entered = False
        try:
            async with super().slot(host, promised=promised):
                self.waiting -= 1
                entered = True
                self.acquired += 1
                yield
        finally:
            if not entered:
                self.waiting -= 1


@pytest.fixture
def limiter(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], list[CountingLimiter]]:
    """``limiter(n)``: the runs that follow use a CountingLimiter of ``n`` slots per host
    (the list fills with one per run)."""

    def install(limit: int) -> list[CountingLimiter]:
        made: list[CountingLimiter] = []

        def factory(*args: Any, **kwargs: Any) -> CountingLimiter:
            made.append(CountingLimiter(limit, kwargs.get("on_change")))
            return made[-1]

        monkeypatch.setattr(stacpull.engine, "HostLimiter", factory)
        return made

    return install


def _server(tiff: int, product: int, rate: int) -> SimServer:
    """One L1c item: its tiff of ``tiff`` bytes, its product zip about ``product`` bytes,
    every response capped at ``rate`` bytes/s."""
    spec = next(s for s in default_collections(1, product) if s.id == L1C)
    catalog = SimCatalog([dataclasses.replace(spec, enclosure_size=tiff)])
    return SimServer(catalog, options=SimOptions(faults=Faults(rate_limit=rate)))


def _tiff_ranges(sim: SimServer) -> list[str]:
    return [r["range"] for r in sim.requests if r["path"].endswith("_abs.tiff") and r["range"]]


class _Sampler(Recorder):
    """At each chunk of the tiff: whether the product had ended, and how many responses
    the server was answering."""

    def __init__(self, sim: SimServer) -> None:
        super().__init__()
        self.sim = sim
        self.samples: list[tuple[bool, int]] = []
        self.product_done = False

    def __call__(self, event: Event) -> None:
        super().__call__(event)
        if isinstance(event, JobFinished) and event.outcome.job.asset_key == PRODUCT:
            self.product_done = True
        elif isinstance(event, BytesReceived) and event.job.asset_key == TIFF:
            self.samples.append((self.product_done, self.sim.state.sending))


class _Ends(Recorder):
    """Each file's end, in order, with the tasks then waiting for a slot."""

    def __init__(self, made: list[CountingLimiter]) -> None:
        super().__init__()
        self.made = made
        self.ends: list[tuple[str, int]] = []

    def __call__(self, event: Event) -> None:
        super().__call__(event)
        if isinstance(event, JobFinished):
            self.ends.append((event.outcome.job.asset_key, self.made[0].waiting))


def _pull_pair(sim: SimServer, tmp_path: Path, recorder: Recorder, *, segment_size: int) -> Any:
    """The split tiff and the product of one item, up to four lanes and four files; the
    connector allows eight per host, so the test's limiter is what holds."""
    return pull(
        sim,
        tmp_path,
        recorder,
        collections=[L1C],
        assets=[TIFF, PRODUCT],
        segments=4,
        segment_size=segment_size,
        segment_below=10_000_000,
        per_host=8,
        concurrency=4,
    )


def test_a_split_file_gains_lanes_as_another_file_ends_never_past_the_limit(
    tmp_path: Path, limiter: Callable[[int], list[CountingLimiter]]
) -> None:
    """Three slots: while the product holds one, the split tiff runs two ranges at once
    (its own slot and one more); once the product ends, a waiting lane takes its slot and
    the tiff runs three. The server never answers more than three at once."""
    made = limiter(3)
    with _server(6_000_000, 1_500_000, 3_000_000) as sim:
        recorder = _Sampler(sim)
        result = _pull_pair(sim, tmp_path, recorder, segment_size=400_000)
        assert result.ok and result.downloaded == 2, recorder.outcomes()
        assert len(_tiff_ranges(sim)) >= 6  # split
        assert sim.peak_sending <= 3  # never past the host's slots
    (lim,) = made
    assert lim.limit("127.0.0.1") == 3
    during = [n for done, n in recorder.samples if not done]
    after = [n for done, n in recorder.samples if done]
    assert during and max(during) <= 3  # the product's one and at most two ranges
    assert after and max(after) == 3  # three ranges once the product had ended
    assert lim.waiting == 0 and lim.active("127.0.0.1") == 0


def test_a_lane_still_waiting_when_the_last_range_is_taken_stops_waiting(
    tmp_path: Path, limiter: Callable[[int], list[CountingLimiter]]
) -> None:
    """Two slots, and a long product holding one throughout: the split tiff runs all its
    ranges under its own slot, its three waiting lanes are cancelled once the last range
    is taken, and it ends while the product still runs, no slot taken for nothing."""
    made = limiter(2)
    with _server(1_600_000, 3_000_000, 2_000_000) as sim:
        recorder = _Ends(made)
        result = _pull_pair(sim, tmp_path, recorder, segment_size=200_000)
        assert result.ok and result.downloaded == 2
        assert len(_tiff_ranges(sim)) >= 2  # split
        assert sim.peak_sending <= 2
    (lim,) = made
    assert [key for key, _ in recorder.ends] == [TIFF, PRODUCT]  # no wait for the product
    assert [waiting for _, waiting in recorder.ends] == [
        0,
        0,
    ]  # no lane left waiting when the tiff ended
    assert lim.acquired == 2  # the tiff's and the product's: no lane took one for nothing
    assert lim.waiting == 0 and lim.active("127.0.0.1") == 0


def test_a_resumed_split_file_takes_host_slots_and_verifies(
    tmp_path: Path, limiter: Callable[[int], list[CountingLimiter]]
) -> None:
    """A run stopped while the ranges run; the next one finishes the journalled ranges
    with two connections (its slot and one more), never four, and verifies the file."""
    made = limiter(2)
    split = {"segments": 4, "segment_size": 600_000, "segment_below": 10_000_000}
    with _server(SIZE, 50_000, 2_000_000) as sim:
        config = build_config(
            catalog=sim.catalog_url, collections=[L1C], dest=str(tmp_path), assets=[TIFF], **split
        ).with_values({"auth.token": TOKEN})
        stop = StopSignal()

        def stopper(event: Event) -> None:
            if len(_tiff_ranges(sim)) >= 2 and not stop.requested:  # ranges under way
                stop.request("test")

        first = anyio.run(
            lambda: run(config, sink=stopper, stop=stop, options=RunOptions(grace=0.3))
        )
        assert first.interrupted
        before = len(sim.requests)
        sim.state.peak_sending = 0
        recorder = Recorder()
        again = pull(sim, tmp_path, recorder, collections=[L1C], assets=[TIFF], **split)
        assert again.ok and again.downloaded == 1, recorder.outcomes()
        resumed = list(itertools.islice(sim.requests, before, None))
        assert resumed and all(r["range"] for r in resumed)  # ranges only, no restart
        assert sim.peak_sending == 2  # two lanes, within the host's two slots
        outcome = next(iter(recorder.outcomes().values()))
        assert 0 < outcome.bytes_downloaded < SIZE
    (path,) = files_under(tmp_path)
    assert path.stat().st_size == SIZE  # and its checksum was verified
    assert all(lim.waiting == 0 and lim.active("127.0.0.1") == 0 for lim in made)


BIG = payload(1_600_000, 9)


class _Raw(Request):
    async def send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        """``body`` at about 3 MB/s (16 KiB every 5 ms), slow enough to be split."""
        lines = [f"HTTP/1.1 {status} Whatever", *(f"{k}: {v}" for k, v in headers.items())]
        lines += [f"Content-Length: {len(body)}", "Connection: close"]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        for at in range(0, len(body), 16_384):
            self.writer.write(body[at : at + 16_384])
            await self.writer.drain()
            await asyncio.sleep(0.005)


@pytest.fixture
def hostile() -> Iterator[Hostile[_Raw]]:
    yield from serve(_Raw)


def test_a_range_refused_with_429_goes_back_to_the_lanes_still_running(
    sim: SimServer,
    hostile: Hostile[_Raw],
    tmp_path: Path,
    limiter: Callable[[int], list[CountingLimiter]],
) -> None:
    """A server that refuses a second range at once (429) twice: each refused lane hands
    its range back and ends, the file goes on over the lane still running, no attempt
    is failed for it, and every refusal reaches the limiter."""
    made = limiter(4)
    ranges = {"in_flight": 0, "refused": 0, "served": 0}

    async def big(req: _Raw) -> None:
        tag = {"ETag": '"v1"', "Accept-Ranges": "bytes"}
        if req.range_start is None:
            await req.send(200, BIG, tag)
            return
        if ranges["in_flight"] and ranges["refused"] < 2:
            ranges["refused"] += 1
            await req.send(429, b"slow down", {})
            return
        first, _, last = req.headers["range"][6:].partition("-")
        a, b = int(first), int(last) if last else len(BIG) - 1
        ranges["in_flight"] += 1
        try:
            await req.send(
                206, BIG[a : b + 1], {**tag, "Content-Range": f"bytes {a}-{b}/{len(BIG)}"}
            )
            ranges["served"] += 1
        finally:
            ranges["in_flight"] -= 1

    hostile.routes["/big.tif"] = big
    options = plant(sim, hostile, "LANES_ITEM", {"data": asset_at("/big.tif", "big.tif")})
    recorder = Recorder()
    split = {"segments": 3, "segment_size": 200_000, "segment_below": 10**12}
    result = pull(sim, tmp_path, recorder, **options, **split)
    assert result.ok, recorder.outcomes()
    (outcome,) = [o for o in recorder.outcomes().values() if o.job.item_id == "LANES_ITEM"]
    assert outcome.status is Status.DOWNLOADED
    assert (tmp_path / outcome.job.dest).read_bytes() == BIG
    assert sum(1 for _, h in hostile.requests if h.get("range")) >= 4  # split
    assert 1 <= ranges["refused"] <= 2
    assert not [e for e in recorder.of_type(TransferRetried) if e.job.item_id == "LANES_ITEM"]
    (lim,) = made
    assert lim.throttles == ranges["refused"]  # each refusal told the limiter, once
    assert lim.waiting == 0 and lim.active("127.0.0.1") == 0
    # Each range served whole is a good answer too: the burst rule weighs the refusals
    # against them, not against the one attempt the file makes (then 2 refusals in 3
    # answers made a burst; 5 such would have halved the window).
    assert lim.successes >= ranges["served"] >= 3, (lim.successes, ranges)


@given(
    rest=st.integers(1, 1 << 34),
    segments=st.integers(1, 64),
    size=st.integers(1, 1 << 26),
)
def test_every_layout_tiles_the_file_in_even_rounds_that_never_grow(
    rest: int, segments: int, size: int
) -> None:
    state = SegmentState.split(7 + rest, "v", 7, segments=segments, segment_size=size)
    lengths = [p.end - p.start for p in state.parts]
    assert state.parts[0].start == 7 and state.parts[-1].end == 7 + rest
    assert all(a.end == b.start for a, b in itertools.pairwise(state.parts))
    if rest >= size:
        assert min(lengths) >= size  # segment_size stays the least range
    lanes = max(1, min(segments, rest // size))
    assert len(lengths) % lanes == 0 and len(lengths) <= lanes * 7  # 4 rounds, 3 more tapered
    rounds = [lengths[i : i + lanes] for i in range(0, len(lengths), lanes)]
    assert all(max(r) - min(r) <= 1 for r in rounds)
    assert all(a[0] + 1 >= b[0] for a, b in itertools.pairwise(rounds))


def test_a_server_that_refuses_every_range_fails_the_file_in_bounded_requests(
    sim: SimServer,
    hostile: Hostile[_Raw],
    tmp_path: Path,
    limiter: Callable[[int], list[CountingLimiter]],
) -> None:
    """A variant of the refused range: every range is answered 503. Refused lanes give
    their ranges back until one lane is left, whose refusal fails the attempt; the retry
    policy bounds the attempts, so the file fails with the status, the run ends, and no
    lane is left waiting for a slot (a queue of ranges handed back for ever would hang)."""
    made = limiter(4)

    async def refusing(req: _Raw) -> None:
        if req.range_start is None:
            await req.send(200, BIG, {"ETag": '"v1"', "Accept-Ranges": "bytes"})
        else:
            await req.send(503, b"busy", {})

    hostile.routes["/busy.tif"] = refusing
    options = plant(sim, hostile, "BUSY_ITEM", {"data": asset_at("/busy.tif", "busy.tif")})
    recorder = Recorder()
    split = {"segments": 3, "segment_size": 200_000, "segment_below": 10**12}
    pull(sim, tmp_path, recorder, retries=2, **options, **split)
    (outcome,) = [o for o in recorder.outcomes().values() if o.job.item_id == "BUSY_ITEM"]
    assert outcome.status is Status.FAILED and "503" in str(outcome.error)
    ranges = sum(1 for _, h in hostile.requests if h.get("range"))
    assert 1 <= ranges <= 3 * 3  # three attempts, at most three lanes each
    (lim,) = made
    assert lim.waiting == 0 and lim.active("127.0.0.1") == 0
