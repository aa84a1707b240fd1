"""Fault knobs for the simulated catalogue's data server: the night a mirror has to survive.

:class:`Faults` is the configuration (``stacpull sim serve --cut-probability 0.3 …``);
:class:`FaultState` makes the per-request decisions from one seeded random generator, so
a soak run is repeatable. Every knob models something the real MAAP data path does:

* ``rate_limit``: bytes per second per response, as archives throttle each connection;
* ``link_rate``: bytes per second shared by every response body at once, as one link is
  shared by its connections (a proxy or a thin line: more connections buy nothing);
* ``max_concurrent``: a data request arriving while this many are being answered gets 429
  with ``Retry-After``, as a server that admits k requests at once;
* ``cut_probability`` / ``cut_after``: a response drops its connection mid-body;
* ``burst_probability`` / ``burst_length`` / ``burst_statuses`` / ``retry_after``: the load
  balancer answers 503 or 429 (with ``Retry-After``) to the next few requests;
* ``truncate_probability``: the zipper ends a product early with a clean end of stream
  (a zip without its central directory);
* ``change_probability``: a file is replaced on the server after a response was served
  (new bytes, ETag and date), so the next attempt sees another version;
* ``not_ready_for``: a file answers 404 for this many seconds after it was first asked
  for (MAAP lists items before their files are ready);
* ``stall_probability`` / ``stall_seconds``: a response stops sending bytes for a while
  without closing the connection;
* ``validators`` off (``--no-validators``): static files come without ``ETag`` and
  ``Last-Modified`` but still answer ranges (and an ``If-Range`` never matches), as an
  archive may (nobody recorded whether MAAP's static files send validators).

The decisions happen on the server's single event-loop thread; no locking is needed.
:class:`Holds` is the exception: a test's own knob, set and released from the test's
thread while the server's loop waits on it, so it keeps its own lock.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["FaultState", "Faults", "Holds", "Link"]


def _knob(default: Any, help: str, **cli: Any) -> Any:
    """A knob with what ``stacpull sim serve`` needs to offer it as an option (its help;
    ``flag`` when not the field's name; ``duration`` when it reads ``30s``, ``2m``): the
    options are built from these fields, so they never restate a default."""
    return field(default=default, metadata={"help": help, **cli})


@dataclass(frozen=True, slots=True)
class Faults:
    """What goes wrong on the data server, and how often (all off by default: the
    ``validators`` knob goes wrong when turned off). Each field with a ``help`` in its
    metadata is a ``sim serve`` option."""

    rate_limit: int = _knob(0, "Bytes/s per response (0: unlimited).")
    link_rate: int = _knob(0, "Bytes/s shared by all responses at once (0: unlimited).")
    max_concurrent: int = _knob(
        0, "Data requests answered at once; more get 429 + Retry-After (0: no limit)."
    )
    cut_probability: float = _knob(0.0, "Chance a response drops mid-body.")
    cut_after: int = _knob(0, "Bytes before a cut (0: a random point).")
    burst_probability: float = _knob(
        0.0, "Chance a data request starts a burst of 503/429 answers."
    )
    burst_length: int = _knob(3, "Answers per burst.")
    burst_statuses: tuple[int, ...] = (503, 429)
    retry_after: float | None = _knob(  # None sends no Retry-After
        1.0, "Retry-After seconds sent with a burst or max-concurrent 429.", duration=True
    )
    truncate_probability: float = _knob(
        0.0, "Chance the zipper ends a product early (no central directory)."
    )
    change_probability: float = _knob(
        0.0, "Chance a file is replaced on the server after a response."
    )
    not_ready_for: float = _knob(
        0.0,
        "Seconds a file answers 404 after it is first asked for.",
        flag="--not-ready",
        duration=True,
    )
    stall_probability: float = _knob(0.0, "Chance a response pauses mid-body.")
    stall_seconds: float = _knob(5.0, "Length of a pause.", duration=True)
    seed: int = _knob(0, "Seed of the fault dice.")
    validators: bool = _knob(
        True,
        "Send ETag and Last-Modified with static files (--no-validators: ranges without "
        "them; an If-Range then never matches).",
        flag="--validators/--no-validators",
    )

    def __post_init__(self) -> None:
        for name in (
            "cut_probability",
            "burst_probability",
            "truncate_probability",
            "change_probability",
            "stall_probability",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {value}")
        for name in (
            "rate_limit",
            "link_rate",
            "max_concurrent",
            "cut_after",
            "not_ready_for",
            "stall_seconds",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be ≥ 0")
        if self.burst_length < 1:
            raise ValueError("burst_length must be ≥ 1")
        if not self.burst_statuses:
            raise ValueError("burst_statuses must name at least one status")

    @property
    def active(self) -> bool:
        """Whether any knob is turned."""
        return self != Faults(seed=self.seed)

    def describe(self) -> str:
        """The knobs turned away from their defaults, as ``name=value, …``."""
        default = Faults()
        return ", ".join(
            f"{f.name}={getattr(self, f.name)}"
            for f in fields(self)
            if getattr(self, f.name) != getattr(default, f.name)
        )


@dataclass(slots=True)
class Link:
    """The one link every response body shares (``link_rate``, bytes/s).

    Each write books its bytes' time on the link after every byte booked before it and
    waits until that time is over, then writes: the bodies take turns in order, and the
    bytes written by any moment never exceed ``rate`` × the time since the link began. An
    idle link saves no credit, so a burst after a pause is paced like the rest.
    """

    rate: int
    clock: Callable[[], float] = time.monotonic
    free_at: float = float("-inf")  # when the bytes booked so far have all gone through
    booked: int = 0  # bytes carried so far

    def book(self, n: int) -> float:
        """Seconds to wait before writing ``n`` more bytes."""
        now = self.clock()
        start = max(now, self.free_at)
        self.free_at = start + n / self.rate
        self.booked += n
        return self.free_at - now


@dataclass(slots=True)
class FaultState:
    """Per-server fault decisions and the counters a soak benchmark reports."""

    faults: Faults
    clock: Callable[[], float] = time.monotonic
    _rng: random.Random = field(init=False)
    _burst_left: int = 0
    _burst_status: int = 503
    _first_seen: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    link: Link | None = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.faults.seed)
        rate = self.faults.link_rate
        self.link = Link(rate, self.clock) if rate else None

    def over_concurrency(self, answering: int) -> bool:
        """Whether a request arriving while ``answering`` others are being answered gets
        429 (``max_concurrent``); counted under ``over_concurrency``."""
        limit = self.faults.max_concurrent
        if limit and answering >= limit:
            self._count("over_concurrency")
            return True
        return False

    def _count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    def error_status(self) -> int | None:
        """A 503/429 to answer this request with, or ``None`` to serve it."""
        f = self.faults
        if (
            self._burst_left == 0
            and f.burst_probability
            and self._rng.random() < f.burst_probability
        ):
            self._burst_left = f.burst_length
            self._burst_status = self._rng.choice(f.burst_statuses)
        if self._burst_left:
            self._burst_left -= 1
            self._count(f"status_{self._burst_status}")
            return self._burst_status
        return None

    def not_ready(self, slot: str) -> bool:
        """Whether ``slot``'s file is still "being produced" (answer 404)."""
        if not self.faults.not_ready_for:
            return False
        now = self.clock()
        first = self._first_seen.setdefault(slot, now)
        if now - first < self.faults.not_ready_for:
            self._count("not_ready")
            return True
        return False

    def _roll(self, probability: float, counter: str) -> bool:
        """One throw of the dice; counted under ``counter`` when it hits."""
        hit = bool(probability) and self._rng.random() < probability
        if hit:
            self._count(counter)
        return hit

    def cut_point(self, length: int) -> int | None:
        """Bytes after which to drop this response's connection, or ``None``."""
        if not self._roll(self.faults.cut_probability, "cuts"):
            return None
        return self.faults.cut_after or self._rng.randrange(0, max(1, length))

    def truncate(self) -> bool:
        """Whether this zipper response ends early with a clean end of stream."""
        return self._roll(self.faults.truncate_probability, "truncations")

    def change(self) -> bool:
        """Whether the file is replaced on the server after this response."""
        return self._roll(self.faults.change_probability, "changes")

    def stall_point(self, length: int) -> int | None:
        """Bytes after which this response pauses for ``stall_seconds``, or ``None``."""
        if not self._roll(self.faults.stall_probability, "stalls"):
            return None
        return self._rng.randrange(0, max(1, length))


#: How often a held body looks whether the test released it: a wait the server's loop can
#: cancel at once (a client that died mid-hold), unlike a thread blocked on an event.
_HOLD_POLL = 0.005


class Holds:
    """Files whose next response body pauses after N bytes until the test releases it: the
    moment a test needs to act on a transfer caught mid-file (kill the worker holding it,
    take its bucket over), without racing a fast loopback transfer.

    A hold is one-shot: the first response of the file to reach its byte N waits there
    (counted in :attr:`reached`); responses after it, a resumed range included, pass. A
    release before the hold is reached lets that response through too. Set, released and
    waited for from the test's thread; the server's loop polls, so a held handler that
    aiohttp cancels (its client went away) ends at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._after: dict[str, int] = {}  # slot -> the byte to pause at, not yet taken
        self._released: dict[str, threading.Event] = {}
        self._reached: dict[str, threading.Event] = {}
        self.reached: dict[str, int] = {}  # slot -> responses that reached their hold

    def hold(self, slot: str, after: int) -> None:
        """The next response for ``slot`` pauses after ``after`` bytes (≥ 0)."""
        if after < 0:
            raise ValueError(f"a hold is after a byte count ≥ 0, got {after}")
        with self._lock:
            self._after[slot] = after
            self._released[slot] = threading.Event()
            self._reached[slot] = threading.Event()

    def take(self, slot: str) -> tuple[int, threading.Event] | None:
        """The hold a response for ``slot`` gets (the byte and its release), taken once."""
        with self._lock:
            after = self._after.pop(slot, None)
            return None if after is None else (after, self._released[slot])

    async def wait(self, slot: str, released: threading.Event) -> None:
        """Pause a body at its hold until :meth:`release`; counted as reached first."""
        with self._lock:
            self.reached[slot] = self.reached.get(slot, 0) + 1
            self._reached[slot].set()
        # Polled: the test sets a threading.Event from its own thread; an asyncio.Event
        # would need this loop's hand to be set, and the poll is what a cancel ends.
        while not released.is_set():  # noqa: ASYNC110
            await asyncio.sleep(_HOLD_POLL)

    def release(self, slot: str) -> None:
        """Let ``slot``'s held body go on (or its next response pass its hold)."""
        with self._lock:
            self._after.pop(slot, None)
            event = self._released.get(slot)
        if event is not None:
            event.set()

    def release_all(self) -> None:
        """Release every hold (the server stops: no handler stays parked)."""
        with self._lock:
            self._after.clear()
            events = list(self._released.values())
        for event in events:
            event.set()

    def wait_reached(self, slot: str, timeout: float) -> bool:
        """Block the test until a response for ``slot`` reached its hold; ``False`` when
        ``timeout`` seconds passed first (or ``slot`` has no hold)."""
        with self._lock:
            event = self._reached.get(slot)
        return event is not None and event.wait(timeout)
