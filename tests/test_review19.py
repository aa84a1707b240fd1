"""Review of the issue-19 merge: defects found reading it, each pinned by a test that
failed on ``merge19``'s tip. A fake clock throughout: no wall-clock assertions."""

from __future__ import annotations

import anyio
import pytest

from stacpull.limits import HostLimiter
from stacpull.retry import RetryPolicy
from stacpull.window import HostWindow

from .conftest import Clock

pytestmark = pytest.mark.anyio
H = "archive.example.org"


async def test_a_retry_after_pauses_the_host_no_longer_than_the_retry_policy_obeys() -> None:
    """``Retry-After: 999999999`` (a hostile or misconfigured server) paused every new
    request to the host for thirty years, while each file's own retry waits at most
    ``max_retry_after``: the run hung at the slot. The pause is bounded the same way."""
    clock = Clock()
    limiter = HostLimiter(8, clock=clock)
    limiter.throttled(H, 429, 999_999_999.0)
    with pytest.raises(TimeoutError), anyio.fail_after(0.05):
        async with limiter.slot(H):  # paused now
            pass
    clock.now += RetryPolicy().max_retry_after + 1
    with anyio.fail_after(5):  # a bound for a loaded machine: the slot is free at once
        async with limiter.slot(H):
            assert limiter.active(H) == 1


def _epoch(window: HostWindow, start: float, nbytes: int = 1_000_000) -> object:
    """One busy epoch of 1/8 s from ``start``; the change its close decides."""
    window.on_bytes(start, nbytes)
    return window.tick(start + 0.125)


def test_an_epoch_a_retry_after_pause_overlapped_does_not_count() -> None:
    """While a ``Retry-After`` holds the host, its new requests wait: the slots are not all
    busy and the goodput is not the window's. An epoch that closed during the pause was
    left out, but one the pause covered only in part counted (it compared ``now``, the
    close, with the pause's end), a low sample biasing the decision after it."""
    window = HostWindow(0.0)
    window.calm = True  # the caller's burst rule: calm, so the throttle only pauses
    window.on_busy(0.0, True)
    window.on_first_byte(0.0, 0.0625)  # epochs of 1/8 s (exact in binary)
    assert _epoch(window, 0.0) is None  # the first epoch after a change: ignored
    assert _epoch(window, 0.125) is None  # the first sample of two
    assert window.on_throttle(0.25, 429, 0.0625) is None  # a stray: paused until 0.3125
    assert _epoch(window, 0.25, 200_000) is None  # partly paused: not a sample
    change = _epoch(window, 0.375)  # the second sample: start-up doubles
    assert change is not None and (change.window, change.reason) == (16, "ramp")
