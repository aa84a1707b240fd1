"""Per-host slots: how many requests go to each host at once, found from what the run
measures (issue 19).

Each host has a :class:`~stacpull.window.HostWindow`, the pure controller of its window of
requests in flight (read its docstring for the rules), started at ``min(start, ceiling)``
and never above ``ceiling`` (``--per-host``). One slot is one connection: a whole file's
request and body, or one range of a split file. :class:`HostLimiter` feeds the window from
the transfer path and turns its decisions into slots:

* :meth:`~HostLimiter.slot` waits while the host's slots in use reach its window, or while
  the host is paused by a ``Retry-After``; a waiter sleeps until the pause ends (its own
  timer: nothing else need happen on the host), and a window cut below the slots in use
  only holds new requests back until enough have ended;
* the window hears of every body chunk (:meth:`~HostLimiter.received`), every time to first
  byte of a 200/206 (:meth:`~HostLimiter.first_byte`, from the transfer's ``open_response``)
  and every 429, 503 and refused connection (:meth:`~HostLimiter.throttled`, with the
  ``Retry-After``); it is ticked on each chunk and first byte and on each slot taken or
  given back, so an epoch in which every slot waits for its first byte still closes, at
  the next first byte or slot. A chunk costs a comparison of ``now`` with the epoch's due time;
* "every slot busy" is judged once per epoch, at its close, from the free slot-seconds
  (the window less the slots in use and the requests waiting for one): an epoch counts
  when at most ``_IDLE_SHARE`` (5 %) of them were free. A file that ends hands its slot to
  the next one only after that one's local checks; marking the epoch idle for that moment
  would keep a run of small files from ever being measured. Nor does an epoch count while
  more slots are in use than the window holds: a cut or a probe down stops no transfer,
  and until the extra ones end, the goodput is the old window's (judged by it, any step
  down would look free);
* every throttle reaches :meth:`HostWindow.on_throttle` (its ``Retry-After`` pauses the
  host, for at most what the retry policy obeys of one: 900 s), with the host's *calm*
  judged by today's burst rule: a burst is 30 % of its last 20 answers 429/503/refused,
  at least 5 of them. A throttle while a step up is under
  test undoes that step at once (the step overloaded the host); any other cuts the window
  by half, at most once per cooldown (2 s), only during a burst, and while the burst
  lasts the window does not grow (no ramp, probe up or latency cover). A stray 503 among
  calm answers changes nothing but the pause: a server that throttles at random, not
  from load, would otherwise ratchet the window down to one (a cut every 2 s, growth a
  quarter at a time), as loss-based TCP does on a lossy link and BBR (v2's loss
  threshold) does not. A server that throttles above k in flight answers most of a
  window above k with 429: the fifth comes within the first round.

With ``adaptive=False`` the window is fixed at ``start`` and the answers change nothing
(each throttled file still waits its own ``Retry-After`` in the retry policy).
``on_change(host, window, reason)`` is called for every :class:`~stacpull.window.Change`
(the engine emits ``HostLimitChanged``). Transfers hold a slot for one attempt's request
and body; the checks, fsync and journal write after the last byte, and sleeping between
retries, hold none.

A :class:`HostGate` (:attr:`HostLimiter.gate`; none by default, which costs one attribute
test per slot) is a budget shared with other processes, a cluster's (issue 21): a slot
taken from the local window then waits for one of the gate's leases of the host too, and
gives it back with the slot; every ``Retry-After`` is published to the gate, and a pause
the gate knows of (published by any process) holds the host here as the local one does.
A pause that begins or grows while requests wait for a slot re-times their waits, so they
look again when it ends even if no slot is given back meanwhile.
"""

from __future__ import annotations

import dataclasses
import math
import resource
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

import anyio

from .retry import RetryPolicy
from .window import Change, HostWindow, WindowSettings

__all__ = ["HostGate", "HostLimiter", "TokenBucket", "connection_cap", "open_files_budget"]

#: The burst rule: the host's last _BURST_ANSWERS answers, of which at least _BURST_SHARE
#: (and _BURST_SIGNALS) were throttles, mean it is not calm.
_BURST_ANSWERS = 20
_BURST_SHARE = 0.3
_BURST_SIGNALS = 5

#: An epoch counts as busy when at most this share of its slot-seconds were free.
_IDLE_SHARE = 0.05

#: The longest a ``Retry-After`` pauses a host: what the retry policy obeys of one, so a
#: server asking for a year holds no request longer than the file's own retry waits (the
#: transfer passes the policy's :meth:`~stacpull.retry.RetryPolicy.pause`; this is the
#: second guard, for days, infinities and NaN).
_MAX_PAUSE = RetryPolicy().max_retry_after

#: The most the soft open-file limit is raised to (the hard limit may be a million: a run
#: needs far fewer, and a limit raised without bound only hides a leak for longer).
_WANTED_FILES = 65536

#: What one connection costs in file descriptors: its socket, the ``.part`` it writes and
#: that file's directory (a range of a split file writes through a descriptor of its own).
_FDS_PER_CONNECTION = 3

#: The most connections a run holds at once, however high the limit (64 hosts' worth).
_MAX_CONNECTIONS = 2048


def open_files_budget() -> int:
    """The open-file limit this process may use, raised first from the soft limit towards
    the hard one (at most :data:`_WANTED_FILES`), as servers and aria2c do: a default soft
    limit of 1 024 is no limit the administrator chose, the hard one is. Where the limit
    cannot be read or raised, the soft one as it is."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        ceiling = _WANTED_FILES if hard == resource.RLIM_INFINITY else min(hard, _WANTED_FILES)
        if soft != resource.RLIM_INFINITY and soft < ceiling:
            resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
            soft = ceiling
    except (OSError, ValueError):
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return _WANTED_FILES if soft == resource.RLIM_INFINITY else int(soft)


def connection_cap(open_files: int) -> int:
    """The most connections a run may hold at once under a limit of ``open_files``
    descriptors: what is left after the run's own files (journal, logs, event loop, and
    the files being checked and made durable after their connection moved on: a fixed 32,
    about what a run holds before its first request, and a quarter of the limit), at
    :data:`_FDS_PER_CONNECTION` each; never below one, so
    a run always makes progress. Without it a run with several hosts' windows at their
    ceilings (or one host under a low ``ulimit -n``) ran out of descriptors and stopped,
    blaming DEST."""
    spare = open_files - 32 - open_files // 4
    return max(1, min(_MAX_CONNECTIONS, spare // _FDS_PER_CONNECTION))


#: A shared pause heard again with an end this much later (seconds) is the same pause: the
#: gate keeps a wall-clock end, read against this clock a little differently each time.
_SAME_PAUSE = 0.001


class HostGate(Protocol):
    """A per-host budget of connections shared with other processes (a cluster's workers),
    and the ``Retry-After`` pauses they publish. :class:`HostLimiter` takes a lease after
    the local window's slot and gives it back with it; the gate deals in wall-clock time
    between processes and answers here in seconds from now."""

    async def acquire(self, host: str) -> None:
        """Wait for one of ``host``'s leases (and out any pause the gate knows of)."""
        ...

    def release(self, host: str) -> None:
        """Give back a lease :meth:`acquire` took (never blocks)."""
        ...

    def pause(self, host: str, seconds: float) -> None:
        """Publish that ``host`` asked for ``seconds`` without requests (never blocks)."""
        ...

    def paused_for(self, host: str) -> float:
        """Seconds of a pause of ``host`` the gate knows of that are left (≤ 0: none)."""
        ...


@dataclass(slots=True, eq=False)
class _Host:
    window: HostWindow | None  # None: a fixed window
    limit: int
    due: float = float("inf")  # when the window's epoch may close
    active: int = 0
    waiting: int = 0  # requests waiting for a slot (demand beyond the slots in use)
    promised: int = 0  # free slots kept for waiters woken to take them
    free: float = 0.0  # free slot-seconds in the epoch so far
    excess: float = 0.0  # slot-seconds in use beyond the window (after a cut)
    stamp: float = 0.0  # when ``free`` was brought up to date
    throttles: int = 0  # among ``recent``
    recent: deque[bool] = field(default_factory=lambda: deque(maxlen=_BURST_ANSWERS))
    waiters: deque[anyio.Event] = field(default_factory=deque)  # first come, first woken
    timers: set[anyio.CancelScope] = field(default_factory=set)  # the waiters' pause timers
    held: float = float("-inf")  # until when a pause the gate knows of holds the host


class HostLimiter:
    """One :class:`~stacpull.window.HostWindow` per host behind ``slot(host)`` (see the
    module docstring)."""

    def __init__(
        self,
        ceiling: int,
        *,
        start: int = 8,
        adaptive: bool = True,
        settings: WindowSettings | None = None,  # its start and ceiling are replaced
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str, int, str], None] | None = None,
    ) -> None:
        if ceiling < 1 or start < 1:
            raise ValueError("a host limiter needs a ceiling and a start of at least 1")
        start = min(start, ceiling)
        rules = settings or WindowSettings()
        settings = dataclasses.replace(
            rules, start=start, ceiling=ceiling, floor=min(rules.floor, start)
        )
        self.ceiling = ceiling
        self.adaptive = adaptive
        self.settings = settings
        self._clock = clock
        self._on_change = on_change
        self._hosts: dict[str, _Host] = {}
        self._in_flight = 0
        #: The budget shared with other processes (see the module docstring); ``None``: this
        #: process's windows alone. Set before the first slot is taken.
        self.gate: HostGate | None = None

    def _host(self, host: str) -> _Host:
        state = self._hosts.get(host)
        if state is None:
            now = self._clock()
            if self.adaptive:
                window = HostWindow(now, self.settings)
                state = _Host(window, window.window, due=window.due(), stamp=now)
            else:
                state = _Host(None, self.settings.start, stamp=now)
            self._hosts[host] = state
        return state

    def limit(self, host: str) -> int:
        """The window of ``host`` now."""
        return self._host(host).limit

    def active(self, host: str) -> int:
        """Slots of ``host`` in use."""
        return self._host(host).active

    def in_flight(self) -> int:
        """Slots in use over every host."""
        return self._in_flight

    def ready(self, host: str) -> bool:
        """Whether :meth:`slot` would let a request to ``host`` go at once: a slot is free
        and no ``Retry-After`` pauses it (the caller gives back what it holds otherwise)."""
        state = self._host(host)
        if self.gate is not None:
            self._heed(host, state)
        return self._free(state)

    def _free(self, state: _Host) -> bool:
        if state.active + state.promised >= state.limit:
            return False
        return not self._paused(state)

    def _paused(self, state: _Host) -> bool:
        """Whether a ``Retry-After``, this process's or one the gate knows of, holds the host."""
        return self._pause_left(state) > 0

    def _pause_left(self, state: _Host) -> float:
        """Seconds that pause has left (≤ 0, ``-inf`` included: none)."""
        end = state.held if state.window is None else max(state.held, state.window.paused_until)
        return end - self._clock()

    def _heed(self, host: str, state: _Host) -> None:
        """Hold the host for a pause the gate knows of (another process's ``Retry-After``),
        as for one of its own: its window's epochs overlapping it are not judged."""
        assert self.gate is not None
        left = self.gate.paused_for(host)
        if left <= 0:
            return
        end = self._clock() + left
        if end > state.held + _SAME_PAUSE:
            state.held = end
            if state.window is not None and end > state.window.paused_until:
                state.window.paused_until = end
            self._retime(state, left)

    @staticmethod
    def _retime(state: _Host, left: float) -> None:
        """A pause of ``left`` seconds began or grew: every waiter looks again when it
        ends (a wait for a slot would otherwise last until a slot is given back, and
        the slots given back during a pause wake nobody)."""
        if state.timers:
            deadline = anyio.current_time() + left
            for scope in state.timers:
                scope.deadline = min(scope.deadline, deadline)

    def slot(self, host: str, *, promised: bool = False) -> AbstractAsyncContextManager[None]:
        """Hold one of ``host``'s slots for the body of the ``async with``: wait while its
        slots in use reach its window or a ``Retry-After`` pauses it. ``promised``: the
        caller's :meth:`turn` kept it a slot, which it takes now without a wait."""
        return self._slot(host, self._host(host), promised)

    @asynccontextmanager
    async def _slot(self, host: str, state: _Host, promised: bool) -> AsyncIterator[None]:
        gate = self.gate
        if gate is not None:
            self._heed(host, state)
        if not promised and not self._free(state):
            promised = await self._wait(state)
        if promised:
            state.promised -= 1
        now = self._clock()
        self._account(state, now)
        state.active += 1
        self._in_flight += 1
        self._tick(host, state, now)
        try:
            if gate is None:
                yield
            else:
                async with self._leased(gate, host, state):
                    yield
        finally:
            now = self._clock()
            self._account(state, now)
            state.active -= 1
            self._in_flight -= 1
            self._tick(host, state, now)
            if gate is not None:
                self._heed(host, state)
            if state.waiting:
                self._wake(state)

    @asynccontextmanager
    async def _leased(self, gate: HostGate, host: str, state: _Host) -> AsyncIterator[None]:
        """One of the gate's leases of ``host`` under a local slot (the local slot first:
        the window bounds what this process asks the cluster for)."""
        await gate.acquire(host)
        try:
            self._heed(host, state)  # a pause the gate heard of while this one waited
            yield
        finally:
            gate.release(host)

    async def turn(self, host: str) -> bool:
        """Wait until a request to ``host`` could go (:meth:`ready`), taking no slot: a
        job waits its turn at a host this way without holding anything, then takes its
        transfer slot and the host slot. True: a slot is kept for the caller, which must
        take it (``slot(host, promised=True)``) or give it up (:meth:`forfeit`); False: a
        pause ended, and the caller looks again."""
        state = self._host(host)
        if self.gate is not None:
            self._heed(host, state)
        return False if self._free(state) else await self._wait(state)

    def forfeit(self, host: str) -> None:
        """Give up the slot :meth:`turn` kept (the job was stopped before taking it)."""
        state = self._host(host)
        state.promised -= 1
        self._wake(state)

    async def _wait(self, state: _Host) -> bool:
        """Until a slot of ``host`` is free and no pause holds it. Waiters queue, and a
        freed slot is kept for the first of them, which alone is woken (with 56 jobs
        waiting at a window of 8, waking all on each release, and letting a newcomer take
        the slot first, cost the quicklooks a sixth of their CPU); a pause is waited out on
        each waiter's own timer. True: woken, with a slot kept for it."""
        self._account(state, self._clock())
        state.waiting += 1
        try:
            while not self._free(state):
                if await self._queue(state, self._pause_left(state)):
                    return True
            return False
        finally:
            self._account(state, self._clock())
            state.waiting -= 1

    async def _queue(self, state: _Host, paused: float) -> bool:
        """One wait in the host's queue: until woken (True) or the pause ends (False)."""
        event = anyio.Event()
        state.waiters.append(event)
        try:
            with anyio.move_on_after(paused if paused > 0 else math.inf) as timer:
                state.timers.add(timer)
                try:
                    await event.wait()
                finally:
                    state.timers.discard(timer)
        except BaseException:
            if event.is_set():  # cancelled after its wake: the kept slot goes to the next
                state.promised -= 1
                self._wake(state)
            raise
        finally:
            if not event.is_set():
                state.waiters.remove(event)
        return event.is_set()

    def _wake(self, state: _Host) -> None:
        """Keep each free slot for the first waiter in the queue, and wake it (none while
        a pause holds the host: the waiters' timers end it)."""
        if self._paused(state):
            return
        free = state.limit - state.active - state.promised
        while free > 0 and state.waiters:
            state.waiters.popleft().set()
            state.promised += 1
            free -= 1

    @staticmethod
    def _account(state: _Host, now: float) -> None:
        """Bring the epoch's free and excess slot-seconds up to ``now``."""
        free = state.limit - state.active - state.waiting - state.promised
        if free > 0:
            state.free += free * (now - state.stamp)
        elif state.active > state.limit:
            state.excess += (state.active - state.limit) * (now - state.stamp)
        state.stamp = now

    def _tick(self, host: str, state: _Host, now: float) -> None:
        """Close the window's epoch if it is due, judging it busy or not first."""
        window = state.window
        if window is None or now < state.due:
            return
        self._account(state, now)
        began = window.epoch_start
        if state.excess > 0 or state.free > _IDLE_SHARE * window.window * (now - began):
            window.on_busy(now, False)  # free slots, or more than the window: not counted
        window.on_busy(now, True)  # the next one is judged at its own close
        change = window.tick(now)
        if window.epoch_start != began:
            state.free = state.excess = 0.0
        state.due = window.due()
        if change is not None:
            self._apply(host, state, change, now)

    def _apply(self, host: str, state: _Host, change: Change, now: float) -> None:
        self._account(state, now)
        grew = change.window > state.limit
        state.limit = change.window
        if self._on_change is not None:
            self._on_change(host, change.window, change.reason)
        if grew and state.waiting:
            self._wake(state)

    def received(self, host: str, n: int) -> None:
        """``n`` bytes of a body from ``host`` arrived (each chunk: a few operations)."""
        state = self._hosts.get(host)
        if state is None or state.window is None:
            return
        now = self._clock()
        state.window.on_bytes(now, n)
        if now >= state.due:
            self._tick(host, state, now)

    def first_byte(self, host: str, seconds: float) -> None:
        """A 200/206 answer's headers came ``seconds`` after its request was sent."""
        state = self._host(host)
        if state.window is None:
            return
        now = self._clock()
        state.window.on_first_byte(now, seconds)
        state.due = state.window.due()  # a shorter least time to first byte: shorter epochs
        self._tick(host, state, now)

    def throttled(self, host: str, status: int | None, retry_after: float | None) -> None:
        """``host`` answered ``status`` (429 or 503; ``None``: it refused the connection),
        with ``retry_after`` seconds when it said so. The gate hears of every pause, a
        fixed window's too: the other processes hold the host as this one does."""
        state = self._host(host)
        if retry_after is not None and not retry_after < _MAX_PAUSE:  # days, inf or NaN
            retry_after = _MAX_PAUSE if retry_after > 0 else None
        if self.gate is not None and retry_after is not None and retry_after > 0:
            self.gate.pause(host, retry_after)
            self._heed(host, state)
        window = state.window
        if window is None:
            return
        self._answer(state, True)
        now = self._clock()
        before = window.paused_until
        change = window.on_throttle(now, status, retry_after)
        if window.paused_until > before:
            self._retime(state, window.paused_until - now)
        if change is not None:
            self._apply(host, state, change, now)

    def succeeded(self, host: str) -> None:
        """``host`` served an attempt or a range whole: one calm answer for the burst rule."""
        state = self._host(host)
        if state.window is not None:
            self._answer(state, False)

    @staticmethod
    def _answer(state: _Host, throttled: bool) -> None:
        """Record one answer; the window is calm unless the last ones make a burst."""
        recent = state.recent
        if len(recent) == recent.maxlen and recent[0]:
            state.throttles -= 1
        recent.append(throttled)
        state.throttles += throttled
        burst = state.throttles >= _BURST_SIGNALS and state.throttles >= _BURST_SHARE * len(recent)
        if state.window is not None:
            state.window.calm = not burst


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
