"""Attacks on issue 19's adaptive per-host window, as a hostile server and world would.

Each run must end, lose no data and say why. A ``Retry-After`` of days (or a date far
away, or a number too long for a float) pauses the host no longer than the retry policy
would wait; a server that answers every request with 429, refuses every connection or
accepts and never answers fails its files in bounded time; one slot a host with split
files does not deadlock; a stop while requests wait for a slot or a paused host ends
within the grace. No assertion reads a clock: every run is bounded by ``fail_after``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp.test_utils
import aiohttp.web
import anyio
import pytest

import stacpull
from stacpull import retry
from stacpull.api import build_config
from stacpull.engine import run
from stacpull.events import BytesReceived, Event, HostLimitChanged, JobFinished, TransferRetried
from stacpull.headers import format_http_date
from stacpull.limits import HostLimiter
from stacpull.retry import RetryPolicy
from stacpull.runtypes import RunOptions, RunResult, StopSignal
from stacpull.sim import Faults, SimCatalog, SimOptions, SimServer, default_collections
from stacpull.window import HostWindow

from .conftest import L1C, TOKEN, files_under, pull
from .hostile import SearchApi, feature, serve_api

#: Bound on each run: today's code never ends on the attacks it fixes, the fixed code
#: ends in a second or two.
HANG = 10.0


class Throttler(SearchApi):
    """``items`` items of one ``size``-byte asset each; the first :attr:`refuse` data
    requests are answered ``status`` with ``Retry-After: retry_after`` (None: none)."""

    def __init__(self, items: int = 2, size: int = 20_000) -> None:
        self.items, self.size = items, size
        self.refuse = 0
        self.status = 429
        self.retry_after: str | None = None
        self.data_requests = 0
        self.hang = False
        self.data_base = ""  # where the assets are ("": this server)
        self.extra: list[dict[str, Any]] = []  # more items, after those

    async def search(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        base = self.data_base or self.base
        features = [feature(base, f"i{k}") for k in range(self.items)] + self.extra
        return aiohttp.web.json_response({"type": "FeatureCollection", "features": features})

    async def data(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        self.data_requests += 1
        if self.hang:
            await anyio.sleep_forever()
        if self.data_requests <= self.refuse:
            headers = {} if self.retry_after is None else {"Retry-After": self.retry_after}
            return aiohttp.web.Response(status=self.status, headers=headers)
        return aiohttp.web.Response(body=bytes(self.size))


@pytest.fixture
async def api() -> AsyncIterator[Throttler]:
    server_api = Throttler()
    server = await serve_api(server_api)
    try:
        yield server_api
    finally:
        await server.close()


def _options(api: Throttler, **extra: Any) -> dict[str, Any]:
    return {
        "catalog": api.base,
        "collections": ["C1"],
        "assets": ["all"],
        "backoff": 0.01,
        "max_backoff": 0.05,
        **extra,
    }


FAR = [
    "86400",  # a day
    format_http_date(4102444800),  # 2100-01-01
    "9" * 400,  # too long for a float: infinity
]


@pytest.mark.parametrize("value", FAR, ids=["days", "date", "infinite"])
@pytest.mark.anyio
async def test_a_retry_after_of_days_pauses_the_host_no_longer_than_the_retry_policy(
    api: Throttler, tmp_path: Any, value: str
) -> None:
    """Under ``retry.testing()`` the policy waits nothing; the host's pause followed the
    server's word alone, so the file's next attempt waited a day for its slot."""
    api.refuse, api.retry_after = 1, value
    with retry.testing(), anyio.fail_after(HANG):
        result = await stacpull.adownload(dest=str(tmp_path), **_options(api))
    assert result.ok and result.downloaded == 2, result


def test_the_pause_is_what_the_policy_obeys() -> None:
    policy = RetryPolicy(max_retry_after=60.0)
    assert policy.pause(None) is None
    assert policy.pause(86400.0) == 60.0
    assert policy.pause(float("inf")) == 60.0
    assert policy.pause(-5.0) == 0.0
    assert policy.pause(float("nan")) is None
    with retry.testing() as skipped:
        assert policy.pause(30.0) == 0.0
    assert skipped == []  # the file's own wait is the one recorded


def test_an_infinite_retry_after_given_to_the_limiter_never_pauses_for_ever() -> None:
    now = [0.0]
    limiter = HostLimiter(8, clock=lambda: now[0])
    limiter.throttled("h", 429, float("inf"))
    limiter.throttled("h", 429, float("nan"))
    assert not limiter.ready("h")  # paused, but not for ever: the policy's longest wait
    now[0] = 901.0
    assert limiter.ready("h")


def _said(result: Any) -> list[str]:
    return [str(f.error) for f in result.files() if f.error is not None]


@pytest.mark.anyio
async def test_a_server_answering_429_to_everything_fails_its_files_in_bounded_time(
    api: Throttler, tmp_path: Any
) -> None:
    api.refuse, api.retry_after = 10**6, "1"
    seen: list[Event] = []
    with retry.testing(), anyio.fail_after(HANG):
        result = await stacpull.adownload(
            dest=str(tmp_path), sink=seen.append, **_options(api, retries=3)
        )
    assert result.failed == 2 and not result.ok
    said = _said(result)
    assert all("HTTP 429" in e for e in said) and api.data_requests == 2 * 4, said
    windows = [e.limit for e in seen if isinstance(e, HostLimitChanged)]
    assert windows and min(windows) >= 1


@pytest.mark.anyio
async def test_a_host_that_accepts_and_never_answers_fails_its_files(
    api: Throttler, tmp_path: Any
) -> None:
    """The first byte never comes: the stall timeout ends each attempt and frees its slot."""
    api.hang = True
    with retry.testing(), anyio.fail_after(HANG):
        result = await stacpull.adownload(
            dest=str(tmp_path), **_options(api, retries=1, stall_timeout=0.3)
        )
    assert result.failed == 2, result
    assert all("no answer" in said for said in _said(result)), _said(result)


@pytest.mark.anyio
async def test_a_host_refusing_every_connection_fails_its_files_and_cuts_no_window_to_zero(
    api: Throttler, tmp_path: Any
) -> None:
    api.items, api.data_base = 6, "http://127.0.0.1:9/"  # discard: nothing listens
    seen: list[Event] = []
    with retry.testing(), anyio.fail_after(HANG):
        result = await stacpull.adownload(
            dest=str(tmp_path), sink=seen.append, **_options(api, retries=5)
        )
    assert result.failed == 6, result
    assert all("connection failed" in said for said in _said(result)), _said(result)
    windows = [e for e in seen if isinstance(e, HostLimitChanged)]
    assert windows and windows[-1].limit >= 1 and windows[0].reason == "throttled", windows


async def _stopped_run(
    api: Throttler, dest: Any, when: Callable[[Event], bool], **extra: Any
) -> tuple[RunResult, list[Event]]:
    """A run stopped (grace 0.3 s) at the first event ``when`` accepts."""
    config = build_config(dest=str(dest), **_options(api, **extra))
    stop = StopSignal()
    seen: list[Event] = []

    def sink(event: Event) -> None:
        seen.append(event)
        if not stop.requested and when(event):
            stop.request("test")

    with anyio.fail_after(HANG):
        result = await run(config, sink=sink, stop=stop, options=RunOptions(grace=0.3))
    return result, seen


@pytest.mark.anyio
async def test_a_stop_while_the_host_is_paused_ends_within_the_grace(
    api: Throttler, tmp_path: Any
) -> None:
    """Every file waits out a 60 s Retry-After (the retry policy's wait, and the host's
    pause for the requests not yet sent): a stop ends the run, nothing left waiting."""
    api.items, api.refuse, api.retry_after = 12, 10**6, "60"
    result, _ = await _stopped_run(
        api, tmp_path, lambda e: isinstance(e, TransferRetried), per_host=2, concurrency=12
    )
    assert result.interrupted and result.downloaded == 0, result
    assert api.data_requests <= 2  # the pause held every request not yet sent


TIFF = "enclosure_i_abs_tiff"  # file:size and a checksum: it can split
SPLIT: dict[str, Any] = {"segment_size": 40_000, "segment_below": 10**12}  # ~8 ranges a tiff


@pytest.mark.parametrize(
    "knobs",
    [
        {"concurrency": 1, "per_host": 1},  # segments auto: the per-host ceiling, 1
        {"concurrency": 1, "per_host": 1, "segments": 8},  # 7 joiners, never a slot
        {"concurrency": 4, "per_host": 1, "segments": 8, "adaptive": False},
        {"concurrency": 4, "per_host": 2, "segments": 8},  # files each wanting a 2nd lane
    ],
    ids=["auto", "joiners", "fixed", "two"],
)
def test_one_or_two_slots_a_host_with_split_files_never_deadlocks(
    tmp_path: Any, knobs: dict[str, Any]
) -> None:
    with _slow(2) as sim, retry.testing():
        result = pull(sim, tmp_path, collections=[L1C], assets=[TIFF], **SPLIT, **knobs)
        ranges = [r for r in sim.requests if r["path"].endswith("_abs.tiff") and r["range"]]
        peak = sim.peak_connections
    assert result.ok and result.downloaded == 2 == len(files_under(tmp_path)), result
    if "segments" in knobs:  # auto under one slot a host: one connection a file
        assert len(ranges) >= 2 * 4  # split
    assert peak <= knobs["per_host"]


def _slow(items: int) -> SimServer:
    """``items`` L1c items whose 500 kB tiffs come at 1 MB/s a connection: slow enough
    to be split."""
    spec = next(s for s in default_collections(items, 50_000) if s.id == L1C)
    catalog = SimCatalog([dataclasses.replace(spec, enclosure_size=500_000)])
    for index in range(items):  # made now, not in the server's thread mid-run
        catalog.item(L1C, index)
    return SimServer(catalog, options=SimOptions(faults=Faults(rate_limit=1_000_000)))


def test_a_stop_while_lanes_wait_for_slots_leaves_nothing_waiting(tmp_path: Any) -> None:
    """Two slots, four split files of eight lanes: most lanes wait for a slot when the
    stop comes; the run ends within the grace, the .parts kept for the next run."""
    with _slow(4) as slow:

        async def main() -> tuple[RunResult, list[Event]]:
            api = Throttler()
            api.base = slow.catalog_url  # not served: the options' catalogue only
            return await _stopped_run(
                api,
                tmp_path,
                lambda e: isinstance(e, BytesReceived),
                collections=[L1C],
                assets=[TIFF],
                per_host=2,
                concurrency=4,
                segments=8,
                token=TOKEN,
                **SPLIT,
            )

        result, _ = anyio.run(main)
        assert result.interrupted and result.downloaded < 4, result
        again = pull(slow, tmp_path, collections=[L1C], assets=[TIFF], **SPLIT)
    assert again.ok and again.downloaded + again.skipped == 4 == len(files_under(tmp_path))


def test_one_fast_answer_does_not_brake_the_window_for_ever() -> None:
    """A host whose answers come after 50 ms, but one of them (a cached quicklook, an
    error page) after 1 ms, behind a per-connection cap: more connections bring more
    goodput. The brake compared every epoch's time to first byte with that one least
    sample, so the window never grew past its start."""
    control = HostWindow(0.0)
    control.on_first_byte(0.0, 0.001)
    now = 0.0
    for _ in range(400):
        control.on_busy(now, True)
        for _ in range(control.window):  # each connection: a first byte and 1 MB an epoch
            control.on_first_byte(now, 0.05)
        control.on_bytes(now, control.window * 1_000_000)
        now += 0.1
        control.tick(now)
    assert control.window == 32


@pytest.mark.anyio
async def test_a_paused_host_holds_up_no_other_host(api: Throttler, tmp_path: Any) -> None:
    """Six files on a host that asks for a minute's pause, then four on another host: the
    files of the paused host that wait for a slot held the run's transfer slots, so the
    other host's files waited out the pause too."""
    other = Throttler(items=4)
    server = aiohttp.test_utils.TestServer(other.app(), host="127.0.0.2")
    await server.start_server()
    try:
        other.base = str(server.make_url("/"))
        api.items, api.refuse, api.retry_after = 6, 10**6, "60"
        api.extra = [feature(other.base, f"b{k}") for k in range(4)]

        def others_done(event: Event) -> bool:
            return other.data_requests >= 4 and isinstance(event, JobFinished)

        result, seen = await _stopped_run(api, tmp_path, others_done, per_host=2, concurrency=2)
    finally:
        await server.close()
    done = [e.outcome.job.url for e in seen if isinstance(e, JobFinished)]
    assert sum(1 for url in done if "127.0.0.2" in url) >= 1, done
    assert result.interrupted and api.data_requests <= 2  # the pause still held host A


@pytest.mark.anyio
async def test_a_window_cut_to_one_under_32_in_flight_admits_the_next_once_all_ended() -> None:
    """32 requests in flight, then a storm of throttles cuts the window to 1: none of the
    32 is stopped, a new request waits until every one of them ended, and nothing is
    left waiting after."""
    now = [0.0]
    limiter = HostLimiter(32, start=32, clock=lambda: now[0])
    ends = [anyio.Event() for _ in range(32)]
    entered: list[int] = []

    async def hold(index: int) -> None:
        async with limiter.slot("h"):
            entered.append(index)
            if index < 32:
                await ends[index].wait()

    async with anyio.create_task_group() as tg:
        for index in range(32):
            tg.start_soon(hold, index)
        await anyio.wait_all_tasks_blocked()
        for _ in range(20):  # a burst, one cut per cooldown
            now[0] += 2.5
            limiter.throttled("h", 503, None)
        assert limiter.limit("h") == 1 and limiter.active("h") == 32
        tg.start_soon(hold, 32)
        await anyio.wait_all_tasks_blocked()
        for end in ends[:31]:
            end.set()
        await anyio.wait_all_tasks_blocked()
        assert 32 not in entered and limiter.active("h") == 1  # the window is 1: it waits
        ends[31].set()
    assert entered[-1] == 32 and limiter.active("h") == 0 and limiter.in_flight() == 0
