"""Attacks on issue 19's adaptive per-host window, as a hostile server and world would.

Each run must end, lose no data and say why. A ``Retry-After`` of days (or a date far
away, or a number too long for a float) pauses the host no longer than the retry policy
would wait; a server that answers every request with 429, refuses every connection or
accepts and never answers fails its files in bounded time; one slot a host with split
files does not deadlock; a stop while requests wait for a slot or a paused host ends
within the grace. No assertion reads a clock: every run is bounded by ``fail_after``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp.web
import anyio
import pytest

import stacpull
from stacpull import retry
from stacpull.events import Event, HostLimitChanged, TransferRetried
from stacpull.headers import format_http_date
from stacpull.limits import HostLimiter
from stacpull.retry import RetryPolicy
from stacpull.runtypes import StopSignal

from .hostile import SearchApi, feature, serve_api

pytestmark = pytest.mark.anyio

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

    async def search(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        features = [feature(self.base, f"i{k}") for k in range(self.items)]
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
    window = limiter.window("h")
    assert window is not None and window.paused_until < float("inf")
