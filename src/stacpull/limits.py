"""Adaptive per-host concurrency: back off when a host says it is overloaded.

A load balancer that answers 429 or 503 is asking for fewer requests. Retrying each one
after its backoff while keeping every connection busy just keeps it overloaded, so each
host gets a limit that follows AIMD (the rule TCP uses):

* a 429/503 halves the host's limit (never below 1), at most once per ``cooldown``
  seconds, so one burst answered to eight requests at once counts as one signal;
* every ``recovery`` seconds without such an answer, a success raises it by one, back up
  to the configured ``per_host``: recovery is deliberately slow.

Transfers hold a slot of their host's limit for the length of one attempt (request and
body); sleeping between retries holds none.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio

__all__ = ["HostLimiter"]


@dataclass(slots=True)
class _Host:
    limit: int
    active: int = 0
    last_change: float = 0.0
    changed: anyio.Event = field(default_factory=anyio.Event)


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
        cooldown: float = 2.0,
        recovery: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str, int, str], None] | None = None,
    ) -> None:
        self.per_host = per_host
        self.adaptive = adaptive
        self.cooldown = cooldown
        self.recovery = recovery
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

    def throttled(self, host: str) -> None:
        """``host`` answered 429 or 503: halve its limit (once per cooldown)."""
        if not self.adaptive:
            return
        state = self._host(host)
        now = self._clock()
        if state.limit > 1 and now - state.last_change >= self.cooldown:
            state.limit = max(1, state.limit // 2)
            state.last_change = now
            if self._on_change is not None:
                self._on_change(host, state.limit, "throttled")
        elif state.limit == 1:
            state.last_change = now  # still overloaded: restart the recovery clock

    def succeeded(self, host: str) -> None:
        """``host`` served a response: after a calm ``recovery`` period, one more slot."""
        if not self.adaptive:
            return
        state = self._host(host)
        now = self._clock()
        if state.limit < self.per_host and now - state.last_change >= self.recovery:
            state.limit += 1
            state.last_change = now
            self._wake(state)
            if self._on_change is not None:
                self._on_change(host, state.limit, "recovered")
