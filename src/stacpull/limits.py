"""Adaptive per-host concurrency: back off when a host says it is overloaded.

A load balancer that answers 429 or 503 to many requests is asking for fewer of them.
Retrying each one after its backoff while keeping every connection busy just keeps it
overloaded, so each host gets a limit that follows AIMD (the rule TCP uses), with the
knobs of :class:`AimdSettings`:

* when at least ``share`` of the host's last ``window`` answers were 429/503 (and at least
  ``min_signals`` of them), the limit halves (never below 1), at most once per ``cooldown``
  seconds; a stray 503 among hundreds of good answers changes nothing;
* every ``recovery`` seconds without such a decrease, while the share is below the
  threshold, a success raises the limit by one, back up to ``per_host``: recovery is slow.

Transfers hold a slot of their host's limit for one attempt's request and body; the
checks, fsync and journal write after the last byte, and sleeping between retries, hold
none.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio

__all__ = ["AimdSettings", "HostLimiter", "TokenBucket"]


@dataclass(slots=True)
class _Host:
    limit: int
    active: int = 0
    last_change: float = 0.0
    changed: anyio.Event = field(default_factory=anyio.Event)
    recent: deque[bool] = field(default_factory=deque)  # True: a 429/503 answer


@dataclass(frozen=True, slots=True)
class AimdSettings:
    """When a host's limit moves (see the module docstring): it halves when ``share`` of its
    last ``window`` answers (and at least ``min_signals``) were 429/503, at most once per
    ``cooldown`` seconds, and grows by one after ``recovery`` calm seconds."""

    cooldown: float = 2.0
    recovery: float = 10.0
    window: int = 20
    share: float = 0.3
    min_signals: int = 5


class HostLimiter:
    """Per-host slots whose number adapts to 429/503 answers.

    ``on_change(host, limit, reason)`` is called whenever a host's limit moves (the engine
    turns it into an event for the dashboard and the report).
    """

    def __init__(
        self,
        per_host: int,
        *,
        adaptive: bool = True,
        settings: AimdSettings = AimdSettings(),
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str, int, str], None] | None = None,
    ) -> None:
        self.per_host = per_host
        self.adaptive = adaptive
        self.settings = settings
        self._clock = clock
        self._on_change = on_change
        self._hosts: dict[str, _Host] = {}

    def _host(self, host: str) -> _Host:
        state = self._hosts.get(host)
        if state is None:
            state = self._hosts[host] = _Host(self.per_host, last_change=float("-inf"))
        return state

    def limit(self, host: str) -> int:
        """The current limit for ``host``."""
        return self._host(host).limit

    def active(self, host: str) -> int:
        """Slots of ``host`` in use."""
        return self._host(host).active

    @asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[None]:
        """Hold one of ``host``'s slots for the body of the ``async with``."""
        state = self._host(host)
        while state.active >= state.limit:
            await state.changed.wait()
        state.active += 1
        try:
            yield
        finally:
            state.active -= 1
            self._wake(state)

    def _wake(self, state: _Host) -> None:
        state.changed.set()
        state.changed = anyio.Event()

    def _record(self, state: _Host, throttled: bool) -> tuple[int, float]:
        state.recent.append(throttled)
        while len(state.recent) > self.settings.window:
            state.recent.popleft()
        signals = sum(state.recent)
        return signals, signals / len(state.recent)

    def throttled(self, host: str) -> None:
        """``host`` answered 429 or 503: halve its limit if it keeps doing so."""
        if not self.adaptive:
            return
        state = self._host(host)
        signals, share = self._record(state, True)
        rules = self.settings
        if signals < rules.min_signals or share < rules.share:
            return
        now = self._clock()
        if state.limit > 1 and now - state.last_change >= rules.cooldown:
            state.limit = max(1, state.limit // 2)
            state.last_change = now
            state.recent.clear()  # judge the new limit on fresh answers
            if self._on_change is not None:
                self._on_change(host, state.limit, "throttled")
        elif state.limit == 1:
            state.last_change = now  # still overloaded: restart the recovery clock

    def succeeded(self, host: str) -> None:
        """``host`` served a response: after a calm ``recovery`` period, one more slot."""
        if not self.adaptive:
            return
        state = self._host(host)
        _, share = self._record(state, False)
        now = self._clock()
        if (
            state.limit < self.per_host
            and share < self.settings.share
            and now - state.last_change >= self.settings.recovery
        ):
            state.limit += 1
            state.last_change = now
            self._wake(state)
            if self._on_change is not None:
                self._on_change(host, state.limit, "recovered")


class TokenBucket:
    """The run's bandwidth (``download.bwlimit``): every transfer and every range of a
    split file takes its bytes from this one bucket, so the whole run averages at most
    ``rate`` bytes/s, with bursts of at most ``burst`` bytes (one second's worth).

    The bucket may go into debt: a chunk larger than what is left is let through and the
    next takers wait until the debt is paid, so a chunk is never split and no taker waits
    for ever. ``clock`` and ``sleep`` are injectable, for tests with a fake clock.
    """

    __slots__ = ("_clock", "_level", "_lock", "_sleep", "_stamp", "burst", "rate")

    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("a token bucket needs a rate above 0")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else rate)
        self._clock, self._sleep = clock, sleep
        self._level = self.burst  # bytes that may go now; negative: a debt
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._level = min(self.burst, self._level + (now - self._stamp) * self.rate)
        self._stamp = now

    def charge(self, amount: int) -> float:
        """Take ``amount`` bytes; return the seconds the taker must wait before going on
        (0 when the bucket held them)."""
        self._refill()
        self._level -= amount
        return 0.0 if self._level >= 0 else -self._level / self.rate

    async def take(self, amount: int) -> float:
        """Take ``amount`` bytes, waiting as long as the rate asks; returns the wait."""
        wait = self.charge(amount)
        if wait > 0:
            await self._sleep(wait)
        return wait
