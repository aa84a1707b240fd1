"""The write batches stay within one budget however many bodies stream at once: the rule
(:class:`Bodies`), a batch that never passes its limit (:class:`Batches`), and loopback
runs against the sim observed through the batches and ``PartFile.write``."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web

import stacpull
from stacpull.sim import Faults, SimCatalog, SimOptions, SimServer, default_collections
from stacpull.transfer import partfile
from stacpull.transfer.pace import Batches, Bodies
from stacpull.transfer.partfile import PartFile

from .conftest import L1C, files_under, pull
from .hostile import ThreadedApp, feature, landing

MiB, KiB = 1 << 20, 1 << 10
KEY = "enclosure_i_abs_tiff"  # carries file:size and a sha2-512 checksum
READ = 256 * KiB  # the most one socket read hands over (asyncio and uvloop alike)


# -- the rule ---------------------------------------------------------------------------


def _with(bodies: Bodies, count: int) -> int:
    """The batch of a 4 MiB ``chunk_size`` body while ``count`` bodies stream."""
    bodies.count = count
    return bodies.batch(4 * MiB)


def test_the_batch_shrinks_with_the_bodies_streaming() -> None:
    bodies = Bodies(budget=64 * MiB, floor=256 * KiB)
    # Up to eight bodies (today's default) nothing changes: full chunk_size batches.
    assert [_with(bodies, n) for n in (0, 1, 2, 8)] == [4 * MiB] * 4
    assert _with(bodies, 16) == 2 * MiB
    assert _with(bodies, 64) == 512 * KiB  # 64 bodies hold 64 MiB, not half a gigabyte
    assert _with(bodies, 128) == 256 * KiB
    assert _with(bodies, 1000) == 256 * KiB  # the floor: a thread hop per chunk is not paid
    for n in range(1, 129):  # two batches a body (one gathering, one landing) fit the budget
        assert 2 * n * _with(bodies, n) <= 64 * MiB


def test_the_batch_never_exceeds_what_the_body_may_use() -> None:
    bodies = Bodies(budget=64 * MiB, floor=256 * KiB)
    bodies.count = 64
    assert bodies.batch(64 * KiB) == 64 * KiB  # a chunk_size below the floor is the user's
    assert bodies.batch(1 * MiB) == 512 * KiB  # the ranges' own cap, shared like the rest
    bodies.count = 1
    assert bodies.batch(1 * MiB) == 1 * MiB
    # A chunk_size past half the budget still goes whole to a lone stream...
    assert bodies.batch(64 * MiB) == 64 * MiB
    bodies.count = 4  # ...and its budget is two of them
    assert bodies.batch(64 * MiB) == 16 * MiB


def test_default_budget_and_floor() -> None:
    bodies = Bodies()
    assert _with(bodies, 8) == 4 * MiB and _with(bodies, 32) == 1 * MiB
    assert _with(bodies, 10_000) == 256 * KiB


@pytest.mark.parametrize(("budget", "floor"), [(0, 1), (1 * MiB, 0), (1 * MiB, 2 * MiB)])
def test_a_budget_below_its_floor_is_refused(budget: int, floor: int) -> None:
    with pytest.raises(ValueError, match="budget"):
        Bodies(budget=budget, floor=floor)


def test_a_body_is_counted_while_it_streams_even_when_it_fails() -> None:
    bodies = Bodies()
    with bodies.streaming():
        with bodies.streaming():
            assert bodies.count == 2
        assert bodies.count == 1
    with pytest.raises(OSError), bodies.streaming():
        raise OSError("disk full")
    assert bodies.count == 0


def test_a_batch_never_passes_its_limit_which_follows_the_bodies() -> None:
    """Cut before the chunk that would take it past its limit, re-read at every chunk."""
    bodies = Bodies(budget=16 * MiB, floor=64 * KiB)
    written: list[tuple[int, bool]] = []

    async def write(batch: list[bytes], full: bool) -> None:
        written.append((sum(map(len, batch)), full))

    async def main() -> None:
        batches = Batches(write, bodies, 4 * MiB)
        with bodies.streaming():
            for _ in range(100):  # 6.25 MiB alone: 4 MiB batches
                await batches.add(b"x" * (64 * KiB))
            bodies.count = 16  # fifteen more came: 512 KiB each
            for _ in range(100):
                await batches.add(b"x" * (48 * KiB))
            await batches.add(b"y" * MiB)  # one chunk bigger than the limit goes alone
            await batches.add(b"z" * KiB)
            await batches.flush()

    anyio.run(main)
    sizes = [size for size, _ in written]
    assert sizes[0] == 4 * MiB and written[0][1]  # cut at the limit: a full batch
    assert sum(sizes) == 100 * 64 * KiB + 100 * 48 * KiB + MiB + KiB  # nothing lost or twice
    later = [size for size, _ in written[2:-2]]
    assert later and all(512 * KiB - 48 * KiB < s <= 512 * KiB for s in later)
    assert MiB in sizes  # the big chunk alone, not joined to what waited before it
    assert written[-1] == (KiB, False)  # the body's end: not a full batch


# -- loopback ---------------------------------------------------------------------------


class _Ledger:
    """The bytes the write batches hold, seen from the batches: what each has gathered
    (``size``) plus each batch it handed over, until the same body's next hand-over has
    returned (its write settles the one before) or the body stopped streaming. A thread
    that finished early only makes this count more than the memory really held."""

    def __init__(self) -> None:
        self.batches: list[Batches] = []
        self.out: dict[int, list[int]] = {}  # id(batches): sizes handed over, maybe unwritten
        self.mine: dict[asyncio.Task[Any] | None, list[int]] = {}  # a task's batches
        self.peak = 0
        self.most_bodies = 0
        self.handed: list[tuple[int, bool]] = []  # (size, full) of every batch handed over
        self.limits: list[int] = []  # the limit each hand-over was cut under
        self.bodies: Bodies | None = None

    def note(self) -> None:
        held = sum(b.size for b in self.batches) + sum(map(sum, self.out.values()))
        self.peak = max(self.peak, held)
        if self.bodies is not None:
            self.most_bodies = max(self.most_bodies, self.bodies.count)

    def install(self, monkeypatch: pytest.MonkeyPatch, budget: int | None = None) -> None:
        ledger, real_init, real_add = self, Batches.__init__, Batches.add
        real_bodies, real_streaming = Bodies.__init__, Bodies.streaming

        def bodies_init(self: Bodies, budget: int = budget or 64 * MiB, floor: int = READ) -> None:
            real_bodies(self, budget=budget, floor=floor)
            ledger.bodies = self

        def init(self: Batches, write: Callable[..., Awaitable[None]], *rest: Any) -> None:
            key = id(self)

            async def observed(batch: list[bytes], full: bool) -> None:
                ledger.out.setdefault(key, []).append(sum(map(len, batch)))
                ledger.handed.append((sum(map(len, batch)), full))
                if ledger.bodies is not None:
                    ledger.limits.append(ledger.bodies.batch(rest[-1]))
                ledger.note()
                await write(batch, full)
                ledger.out[key] = ledger.out[key][-1:]  # the one before has landed

            real_init(self, observed, *rest)
            ledger.batches.append(self)
            ledger.mine.setdefault(asyncio.current_task(), []).append(key)

        async def add(self: Batches, chunk: bytes) -> None:
            await real_add(self, chunk)
            ledger.note()

        @contextmanager
        def streaming(self: Bodies) -> Iterator[None]:
            with real_streaming(self):
                yield
            for key in ledger.mine.pop(asyncio.current_task(), []):
                ledger.out.pop(key, None)  # its last batch settled before the body ended

        monkeypatch.setattr(Bodies, "__init__", bodies_init)
        monkeypatch.setattr(Bodies, "streaming", streaming)
        monkeypatch.setattr(Batches, "__init__", init)
        monkeypatch.setattr(Batches, "add", add)


def _tiffs(count: int, size: int, options: SimOptions | None = None) -> SimServer:
    spec = next(s for s in default_collections(count, 50_000) if s.id == L1C)
    catalog = SimCatalog([dataclasses.replace(spec, enclosure_size=size)])
    return SimServer(catalog, options=options)


class _Paced(ThreadedApp):
    """A catalogue of ``count`` items of one ``size``-byte file each, sent at ``rate``
    bytes/s a response, once ``ready()`` says the client counts every body as streaming:
    the bodies all start together, and each batch is cut under the share it ends with
    (when a body joins late, a batch cut under the larger share before lands first)."""

    def __init__(self, count: int, size: int, rate: int, ready: Callable[[], bool]) -> None:
        super().__init__()
        self.count, self.size, self.rate, self.ready = count, size, rate, ready
        self.unready = 0  # bodies sent before ready(): the wait gave up

    def payload(self, name: str) -> bytes:
        return (name.encode() * (self.size // len(name) + 1))[: self.size]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        base = f"http://127.0.0.1:{self.port}/"
        if request.path == "/":
            return web.json_response(landing(base))
        if request.path == "/search":
            features = [feature(base, f"item-{i}") for i in range(self.count)]
            page = {"type": "FeatureCollection", "features": features, "links": []}
            return web.json_response({**page, "numberMatched": self.count})
        body = self.payload(request.path)
        headers = {"Content-Length": str(self.size), "ETag": f'"{len(request.path)}"'}
        resp = web.StreamResponse(headers=headers)
        await resp.prepare(request)  # a StreamResponse sends its headers at once
        for _ in range(2000):  # ten seconds at most: a missed count fails the test, no hang
            if self.ready():
                break
            await asyncio.sleep(0.005)
        else:
            self.unready += 1
        loop, sent = asyncio.get_running_loop(), 0
        began = loop.time()
        while sent < self.size:
            await resp.write(body[sent : sent + 64 * KiB])
            sent = min(self.size, sent + 64 * KiB)
            if (ahead := sent / self.rate - (loop.time() - began)) > 0:
                await asyncio.sleep(ahead)
        return resp


def test_many_bodies_hold_no_more_than_the_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sixteen capped bodies at once, under an 8 MiB budget: each batch 256 KiB. Before
    the rule, each gathered up to chunk_size (or what a quarter second brought) for
    itself: 16 x 1 MB, twice the budget."""
    budget, count = 8 * MiB, 16
    ledger = _Ledger()
    ledger.install(monkeypatch, budget)

    def ready() -> bool:
        return ledger.bodies is not None and ledger.bodies.count >= count

    with _Paced(count, 1_500_000, 4_000_000, ready) as app:
        result = stacpull.download(
            catalog=f"http://127.0.0.1:{app.port}/",
            collections=["C1"],
            assets=["data"],
            dest=str(tmp_path),
            concurrency=count,
            per_host=count,
            adaptive=False,
            segments=1,
        )
        assert result.ok and result.downloaded == count
        assert app.unready == 0  # every body streamed at once
        files = files_under(tmp_path)
        assert len(files) == count
        assert all(f.read_bytes() == app.payload(f"/data/{f.name}") for f in files)
    assert ledger.most_bodies == count
    assert ledger.peak <= budget, f"{ledger.peak:,} bytes held, over the {budget:,} budget"
    assert ledger.peak > budget // 4  # and the ledger did see them gathering
    assert min(ledger.limits) == READ  # 8 MiB / (2 x 16)
    handed = zip(ledger.handed, ledger.limits, strict=True)
    assert all(size <= limit for (size, _), limit in handed)


def test_a_lone_fast_stream_keeps_full_chunk_size_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Alone, a body's batches are chunk_size (less at most one read), each costing the two
    thread calls it did before (one writes, one hashes), and its last batch the seal's."""
    ledger = _Ledger()
    ledger.install(monkeypatch)
    calls = {"write": 0, "hash": 0}
    real_write, real_hash = PartFile.write, partfile.hash_blocks

    def write(self: PartFile, blocks: list[bytes], position: int, hasher: Any = None) -> None:
        calls["write"] += 1
        real_write(self, blocks, position, hasher)

    def hash_blocks(hasher: Any, blocks: list[bytes]) -> None:
        calls["hash"] += 1
        real_hash(hasher, blocks)

    monkeypatch.setattr(PartFile, "write", write)
    monkeypatch.setattr("stacpull.transfer.stream.hash_blocks", hash_blocks)  # its own name
    size = 14 * MiB
    with _tiffs(1, size) as sim:
        result = pull(sim, tmp_path, collections=[L1C], assets=[KEY], segments=1)
        assert result.ok and result.downloaded == 1
    full = [s for s, is_full in ledger.handed if is_full]
    assert full and all(4 * MiB - READ < s <= 4 * MiB for s in full)
    # 14 MiB in batches of nearly 4 MiB: three full ones, or two when a stall of the loaded
    # machine let the clock cut one early; the rest is left to the seal.
    assert len(full) >= 2 and sum(s for s, _ in ledger.handed) <= size
    assert calls["hash"] == len(full)  # a full batch: a second thread hashes it...
    assert calls["write"] == len(ledger.handed)  # ...one writes it, as before
    assert ledger.most_bodies == 1 and set(ledger.limits) == {4 * MiB}


def test_the_ranges_of_a_split_file_count_as_bodies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = _Ledger()
    ledger.install(monkeypatch, 4 * MiB)
    options = SimOptions(faults=Faults(rate_limit=1_500_000))
    with _tiffs(1, 2_000_000, options) as sim:
        result = pull(
            sim,
            tmp_path,
            collections=[L1C],
            assets=[KEY],
            segments=4,
            segment_size=500_000,
            segment_below=10_000_000,
        )
        assert result.ok and result.downloaded == 1
        assert sim.peak_sending >= 2
    assert ledger.most_bodies >= 2  # the ranges streaming at once, counted like files
    assert ledger.bodies is not None and ledger.bodies.count == 0  # and uncounted after
    assert ledger.handed and all(size <= 1 * MiB for size, _ in ledger.handed)  # their cap
