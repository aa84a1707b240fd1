"""The simulator's link knobs alone, with a plain aiohttp client (no stacpull engine):
``link_rate`` is one cap shared by every body in flight, ``max_concurrent`` answers 429 +
``Retry-After`` beyond k requests at once, and the server counts the connections it saw
(``peak_connections``, from arrival) and the 429s it sent (``over_concurrency``)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Iterator

import aiohttp
import pytest

from stacpull.sim import Faults, SimCatalog, SimOptions, SimServer, default_collections
from stacpull.sim.faults import Link

from .conftest import L1C, cli

KEY = "enclosure_i_abs_tiff"
SIZE = 300_000
LINK = 4_000_000  # bytes/s: four bodies of 300 kB take at least 0.3 s together


def _server(faults: Faults, latency: float = 0.0) -> SimServer:
    """Four L1c items whose tiffs are ~300 kB, served without a token."""
    spec = next(s for s in default_collections(4, 50_000) if s.id == L1C)
    catalog = SimCatalog([dataclasses.replace(spec, enclosure_size=SIZE)])
    options = SimOptions(require_auth=False, latency=latency, faults=faults)
    return SimServer(catalog, options=options)


@pytest.fixture
def linked() -> Iterator[SimServer]:
    with _server(Faults(link_rate=LINK)) as server:
        yield server


@pytest.fixture
def held() -> Iterator[SimServer]:
    """A server that admits three requests at once and holds each in its latency wait
    (long enough that they overlap on any machine; the test lets them go)."""
    with _server(Faults(max_concurrent=3, retry_after=2.5), latency=30.0) as server:
        yield server


def _urls(sim: SimServer) -> list[str]:
    return [sim.catalog.item(L1C, i)["assets"][KEY]["href"] for i in range(4)]


def _wait(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 20
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.01)


def test_link_books_each_write_after_every_earlier_one() -> None:
    now = [0.0]
    link = Link(1000, clock=lambda: now[0])
    assert [link.book(100) for _ in range(3)] == pytest.approx([0.1, 0.2, 0.3])
    now[0] = 5.0  # idle for seconds: no credit saved, the next write is paced as before
    assert link.book(100) == pytest.approx(0.1)
    assert link.booked == 400


@pytest.mark.parametrize("name", ["link_rate", "max_concurrent"])
def test_the_new_knobs_refuse_negative_values(name: str) -> None:
    with pytest.raises(ValueError, match=f"{name} must be ≥ 0"):
        Faults(**{name: -1})
    code, _out, err = cli("sim", "serve", "--" + name.replace("_", "-"), "-1")
    assert code != 0 and f"{name} must be ≥ 0" in err


def test_sim_serve_offers_the_new_knobs() -> None:
    code, out, _err = cli("sim", "serve", "--help")
    assert code == 0 and "--link-rate" in out and "--max-concurrent" in out
    assert Faults(link_rate=5, max_concurrent=2).describe() == "link_rate=5, max_concurrent=2"


async def _fetch_all(urls: list[str]) -> tuple[float, list[tuple[float, int]], list[int]]:
    """Every URL at once: when the requests left, (time, bytes received over all bodies)
    after each chunk, and each body's length."""
    samples: list[tuple[float, int]] = []
    received = 0

    async def one(session: aiohttp.ClientSession, url: str) -> int:
        nonlocal received
        length = 0
        async with session.get(url) as resp:
            assert resp.status == 200
            async for chunk in resp.content.iter_any():
                length += len(chunk)
                received += len(chunk)
                samples.append((time.monotonic(), received))
        return length

    async with aiohttp.ClientSession() as session:
        began = time.monotonic()
        lengths = await asyncio.gather(*(one(session, u) for u in urls))
    return began, samples, list(lengths)


def test_the_link_cap_is_shared_by_every_body(linked: SimServer) -> None:
    began, samples, lengths = asyncio.run(_fetch_all(_urls(linked)))
    total = sum(lengths)
    assert all(n >= SIZE for n in lengths) and samples[-1][1] == total
    _wait(lambda: linked.state.connections == 0, "the server to finish its bodies")
    link = linked.state.faults.link
    assert link is not None and link.booked == total == linked.bytes_sent
    assert linked.peak_sending >= 2  # the bodies overlapped, so they shared the one cap
    # The server writes a piece only once the link has carried every byte booked before
    # it, so by any moment the client cannot hold more than the cap allows since it asked
    # (one piece of slack for rounding). Load only delays bytes: no bound the other way.
    piece = LINK // 20
    for at, got in samples:
        assert got <= LINK * (at - began) + piece, (at - began, got)


async def _hold_three_then_ask(sim: SimServer, urls: list[str]) -> aiohttp.ClientResponse:
    """Three requests held in the server's latency wait, then a fourth; the three are
    dropped (the client leaves) once the fourth has its answer."""
    async with aiohttp.ClientSession() as session:

        async def hang(url: str) -> None:
            async with session.get(url) as resp:
                await resp.read()

        held = [asyncio.create_task(hang(u)) for u in urls[:3]]
        await asyncio.to_thread(_wait, lambda: sim.state.connections == 3, "three requests")
        assert sim.peak_sending == 0  # counted from arrival, before the latency wait
        async with session.get(urls[3]) as refused:
            await refused.read()
        for task in held:
            task.cancel()
        await asyncio.gather(*held, return_exceptions=True)
    return refused


async def _get_status(url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        await resp.read()
        return resp.status


def test_max_concurrent_answers_429_with_retry_after_beyond_k(held: SimServer) -> None:
    urls = _urls(held)
    refused = asyncio.run(_hold_three_then_ask(held, urls))
    assert refused.status == 429 and refused.headers["Retry-After"] == "2.5"
    assert held.over_concurrency == 1 == held.fault_counts["over_concurrency"]
    assert held.peak_connections == 4  # the refused one was in flight too, for a moment
    _wait(lambda: held.state.connections == 0, "the held requests to end")
    held.options.latency = 0.0
    assert asyncio.run(_get_status(urls[3])) == 200  # below k again: served
    assert held.over_concurrency == 1 and held.peak_connections == 4


@pytest.fixture
def strict() -> Iterator[SimServer]:
    """Each body capped at 2 MB/s (a 300 kB tiff: about 0.15 s)."""
    with _server(Faults(rate_limit=2_000_000)) as server:
        yield server


async def _two_at_a_time(sim: SimServer, urls: list[str]) -> list[int]:
    """Four connections opened and kept alive, then a limit of two and two workers, each
    asking for its next file (on an idle connection of the pool) the moment it has read
    the last one."""
    statuses: list[int] = []

    async def worker(session: aiohttp.ClientSession, mine: list[str]) -> None:
        for url in mine:
            async with session.get(url) as resp:
                await resp.read()
                statuses.append(resp.status)

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session, [u]) for u in urls))
        statuses.clear()
        sim.set_faults(Faults(rate_limit=2_000_000, max_concurrent=2))
        await asyncio.gather(worker(session, urls * 2), worker(session, urls[::-1] * 2))
    return statuses


def test_a_client_that_keeps_to_k_is_never_refused(strict: SimServer) -> None:
    """The server stops counting a request when its last byte is out, not after a
    pacing pause: a client that keeps two in flight never meets the limit of two."""
    statuses = asyncio.run(_two_at_a_time(strict, _urls(strict)))
    assert statuses == [200] * 16 and strict.over_concurrency == 0
