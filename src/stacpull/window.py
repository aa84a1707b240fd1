"""How many requests to keep in flight to one host, found from what the run measures.

Archives such as MAAP cap each connection (10 MB/s, say), so the connections per host, not
the link, decide the speed, and no fixed ``--per-host`` suits every link (issue 19). A
:class:`HostWindow` moves one host's window of requests in flight from the host's
aggregate goodput, sampled over short epochs (2 × the least time to first byte, clamped to
:attr:`WindowSettings.min_epoch`-:attr:`WindowSettings.max_epoch`):

* only epochs in which every slot was busy count (a tail of three files says nothing about
  the link), nor any a ``Retry-After`` pause overlapped, and the first epoch after a
  change is ignored (its connections were opening);
* start-up is BBR's (Cardwell et al., "BBR: congestion-based congestion control", 2016):
  double the window while doubling buys at least ``growth`` more goodput, then keep the
  last step only if it paid for itself;
* the steady state probes now and then, like BBR's ProbeBW: a step up is kept only when
  the added connections each bring at least ``keep_share`` of an average connection's
  goodput, a step down when goodput stays within ``tolerance`` (the fewest connections
  that give the same goodput); a probe that is undone waits twice as long for the next.
  A step down takes a quarter of the connections away (what it takes away is what the
  probe costs while it lasts), a half after a doubling bought next to nothing (less than
  half of ``growth``: the link, not the connections, is the limit; fewer will do, and
  they are found in few steps).
  One measurement is noisy (a loaded client reads in bursts: several percent, a quarter
  at a hiccup; at a small window one falls between two files' gaps for a first byte, or
  across one), so a probe is judged against the mean of the measurements at the window
  it left. A step down is kept on the mean of its last ``judge`` measurements, which may
  fall by the noise of that comparison (one standard error) when that is more than
  ``tolerance`` (never ``growth`` × the share of connections taken away, so noise hides
  no real loss); it is undone after two measurements in a row that each fell by more
  than twice the spread of one (within the same bounds), or when ``2 × judge`` never
  settled it; a braked first measurement, likewise, is taken again before start-up ends;
* small files (smaller than goodput × latency) need requests in flight just to cover the
  latency: by Little's law (in flight = arrival rate × time in the system) the requests
  waiting for a first byte number requests/s × time to first byte, so the window grows to,
  and is never probed below, ``cover`` × requests/s × the base time to first byte; with
  ``cover`` 1.5 it grows while a file takes less than half its wait to transfer;
* 429/503 and refused connections cut the window by ``cut`` at most once per ``cooldown``
  and remember where the throttle began: no probe reaches it again for ``hold`` seconds;
  one during a step up undoes that step instead. A caller that judges the host's answers
  (:attr:`HostWindow.calm`) lets a throttle among calm ones only pause, unless it undoes
  a step up. ``Retry-After`` sets :attr:`HostWindow.paused_until`.

Latency-based limiters (TCP Vegas, Netflix's Gradient, Envoy's adaptive concurrency)
shrink when request time grows, but a bulk transfer's request time grows with the file's
size, not with the host's load: they would read a large file as an overloaded host. Time
to first byte is therefore only a brake on growth (``brake`` × its base value), never
alone a reason to shrink. Its base is the least *mean* of a counted epoch, not the least
single answer: one answer far faster than the rest (a cached quicklook, a short error
page, a redirect-free file among signed redirects) would otherwise brake every epoch
after it, and the window would never grow again; the least answer only sets the epochs'
length.

The controller is pure: no clock and no I/O; the caller passes ``now`` (monotonic seconds)
to every method, so tests drive it with a fake clock and a model link.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

__all__ = ["Change", "HostWindow", "WindowSettings"]


@dataclass(frozen=True, slots=True)
class WindowSettings:
    """The knobs of :class:`HostWindow` (see the module docstring)."""

    start: int = 8
    ceiling: int = 32
    floor: int = 1
    min_epoch: float = 0.1
    max_epoch: float = 1.0
    growth: float = 0.25  # a doubling must buy this much more goodput to go on ramping
    keep_share: float = 0.5  # of an average connection's goodput, per added connection
    tolerance: float = 0.03  # a step down is kept when goodput falls less than this
    cooldown: float = 2.0  # seconds between two throttle cuts
    hold: float = 30.0  # seconds before a probe may reach a throttled window again
    cut: float = 0.5
    brake: float = 2.0  # no growth while time to first byte is over brake × its least
    cover: float = 1.5  # Little's-law floor: cover × requests/s × least time to first byte
    samples: int = 2  # counted epochs averaged into one measurement
    probe_after: int = 4  # measurements at a steady window before a probe
    judge: int = 4  # measurements whose mean keeps a step down (two low in a row undo it)
    probe_max: int = 32  # the longest wait between probes, after undone ones

    def __post_init__(self) -> None:
        if not 1 <= self.floor <= self.start <= self.ceiling:
            raise ValueError("window settings need 1 <= floor <= start <= ceiling")
        if not 0 < self.min_epoch <= self.max_epoch:
            raise ValueError("window settings need 0 < min_epoch <= max_epoch")
        if not 0 < self.cut < 1:
            raise ValueError("window settings need 0 < cut < 1")
        if self.samples < 1 or self.probe_after < 1 or self.probe_max < self.probe_after:
            raise ValueError("window settings need samples, probe_after >= 1 <= probe_max")
        if self.judge < 1:
            raise ValueError("window settings need judge >= 1")


@dataclass(frozen=True, slots=True)
class Change:
    """A host's window moved to ``window`` because of ``reason`` (for events and the
    dashboard): ``ramp``, ``ramp undone``, ``ramp kept``, ``probe up``, ``probe down``,
    ``probe kept``, ``probe undone``, ``fewer suffice``, ``cover latency``, ``throttled``,
    ``ttfb brake``. The ``… kept``, ``fewer suffice`` and ``ttfb brake`` changes leave
    ``window`` where a step put it: they say the step was judged (a braked step that paid
    stays, and growth stops there)."""

    window: int
    reason: str


@dataclass(slots=True)
class _Epoch:
    """What one epoch measured so far."""

    start: float
    bytes: int = 0
    firsts: int = 0  # responses whose first byte arrived
    ttfb: float = 0.0  # their summed time to first byte
    idle: bool = False  # some slot was free at some moment


@dataclass(slots=True)
class _Step:
    """A change under test: the window and goodput it is judged against."""

    kind: str  # "ramp", "up" or "down"
    base: int
    rate: float
    spread: float = 0.0  # relative deviation of the measurements ``rate`` is the mean of
    noise: float = 0.0  # relative noise of comparing a mean of ``judge`` with ``rate``
    again: bool = False  # measured a second time after a braked first one (start-up)
    seen: list[float] = field(default_factory=list)  # a step down's measurements so far


@dataclass(slots=True)
class _Measure:
    rate: float  # goodput, bytes/s
    requests: float  # first bytes per second
    ttfb: float  # mean time to first byte (0: none seen)


class HostWindow:
    """One host's window of requests in flight (see the module docstring).

    Feed it with :meth:`on_bytes`, :meth:`on_first_byte`, :meth:`on_busy` and
    :meth:`on_throttle`; call :meth:`tick` often (each chunk, each second): it closes the
    epoch when due and returns a :class:`Change` when the window moved.
    """

    def __init__(self, now: float, settings: WindowSettings = WindowSettings()) -> None:
        self.settings = settings
        self.window = settings.start
        self.paused_until = float("-inf")
        self.min_ttfb = math.inf  # the least answer's: the epochs' length
        self.base_ttfb = math.inf  # the least mean of a counted epoch: brake, Little's law
        self._epoch = _Epoch(now)
        self._busy = False
        self._skip = 1  # the epochs still to ignore after a change
        self._samples: list[_Measure] = []
        self._rates: list[float] = []  # the goodput measured at this window, since it moved
        self._step: _Step | None = _Step("ramp", 0, 0.0)  # start-up: ramping
        self._calm = 0  # measurements at this window since the last probe
        self._wait = settings.probe_after
        self._next_probe = "down"
        self._fine = True  # steps down by quarters; by halves after a doubling bought ~nothing
        self._last_cut = float("-inf")
        self._throttled_at = float("-inf")
        self.throttle_mark: int | None = None  # where the last throttle began
        #: The caller's verdict on the host's recent answers (:mod:`stacpull.limits` keeps
        #: its burst rule so): ``None``, no verdict: every throttle cuts; ``True``, calm: a
        #: throttle while no step up is under test is a stray, and only pauses; ``False``,
        #: a burst: throttles cut, and the window does not grow.
        self.calm: bool | None = None

    # -- what the run measures ---------------------------------------------------------

    def on_bytes(self, now: float, n: int) -> None:
        """``n`` bytes of a body arrived from this host."""
        self._epoch.bytes += n

    def on_first_byte(self, now: float, seconds: float) -> None:
        """A response's first byte came ``seconds`` after its request was sent."""
        self._epoch.firsts += 1
        self._epoch.ttfb += seconds
        self.min_ttfb = min(self.min_ttfb, seconds)

    def on_busy(self, now: float, busy: bool) -> None:
        """Whether every slot of this host is in use, from ``now`` on."""
        self._busy = busy
        if not busy:
            self._epoch.idle = True

    def on_throttle(
        self, now: float, status: int | None, retry_after: float | None
    ) -> Change | None:
        """The host answered ``status`` (429, 503; ``None``: it refused the connection),
        with ``retry_after`` seconds when it said so: cut the window, at most once per
        cooldown, and pause new requests for ``retry_after``."""
        if retry_after is not None and retry_after > 0:
            self.paused_until = max(self.paused_until, now + retry_after)
        if now - self._last_cut < self.settings.cooldown:
            return None
        step = self._step
        undo = step is not None and step.kind in ("up", "ramp") and 0 < step.base < self.window
        if self.calm and not undo:
            return None  # a stray among calm answers
        self._last_cut = self._throttled_at = now
        self.throttle_mark = self.window
        # A step up that overloaded the host goes back to what was fine; else a cut.
        target = step.base if step is not None and undo else int(self.window * self.settings.cut)
        self._next_probe = "down"
        return self._change(max(self.settings.floor, target), "throttled", None)

    # -- deciding ----------------------------------------------------------------------

    def epoch_length(self) -> float:
        """Seconds per epoch: 2 × the least time to first byte, within the bounds."""
        rules = self.settings
        if math.isinf(self.min_ttfb):
            return rules.max_epoch
        return min(rules.max_epoch, max(rules.min_epoch, 2 * self.min_ttfb))

    @property
    def epoch_start(self) -> float:
        """When the epoch being measured began."""
        return self._epoch.start

    def due(self) -> float:
        """When the epoch being measured may close: :meth:`tick` before it does nothing,
        so a caller on a hot path compares ``now`` with this first."""
        return self._epoch.start + self.epoch_length()

    def tick(self, now: float) -> Change | None:
        """Close the epoch if it is due; return the change it decides, if any."""
        epoch = self._epoch
        seconds = now - epoch.start
        if seconds < self.epoch_length():
            return None
        # A pause that overlapped the epoch held new requests back: its slots were not
        # all busy, even where the caller counts the requests waiting as demand.
        counted = not epoch.idle and self._busy and epoch.start >= self.paused_until
        self._epoch = _Epoch(now, idle=not self._busy)
        if not counted:
            return None
        mean_ttfb = epoch.ttfb / epoch.firsts if epoch.firsts else 0.0
        if epoch.firsts:
            self.base_ttfb = min(self.base_ttfb, mean_ttfb)
        if self._skip > 0:
            self._skip -= 1
            return None
        self._samples.append(_Measure(epoch.bytes / seconds, epoch.firsts / seconds, mean_ttfb))
        if len(self._samples) < self.settings.samples:
            return None
        measure = _Measure(
            sum(s.rate for s in self._samples) / len(self._samples),
            sum(s.requests for s in self._samples) / len(self._samples),
            max(s.ttfb for s in self._samples),
        )
        self._samples.clear()
        return self._decide(now, measure)

    def _braked(self, measure: _Measure) -> bool:
        return measure.ttfb > self.settings.brake * self._base()

    def _base(self) -> float:
        """The base time to first byte: the least mean of a counted epoch (see the module
        docstring), the least answer's until an epoch counted."""
        return self.min_ttfb if math.isinf(self.base_ttfb) else self.base_ttfb

    def _cap(self, now: float) -> int:
        """The highest window growth may reach now: the ceiling, below a recent
        throttle's mark, and no higher than now while the host is not :attr:`calm`."""
        rules = self.settings
        if self.calm is False:
            return max(rules.floor, min(rules.ceiling, self.window))
        mark = self.throttle_mark
        if mark is None or now - self._throttled_at >= rules.hold:
            return rules.ceiling
        return max(rules.floor, min(rules.ceiling, mark - 1))

    def _little(self, measure: _Measure) -> int:
        """Little's-law floor: enough requests in flight to cover the latency."""
        base = self._base()
        if math.isinf(base):
            return self.settings.floor
        return math.ceil(self.settings.cover * measure.requests * base)

    def _decide(self, now: float, measure: _Measure) -> Change | None:
        step = self._step
        if step is None:
            return self._steady(now, measure)
        self._step = None
        if step.kind == "down":
            return self._judge_down(step, measure)
        if step.kind == "ramp" and step.base == 0:  # the first measurement: the ramp's base
            if self._braked(measure) and not step.again:
                step.again = True  # slow first answers (a loaded client) end no start-up:
                self._step = step  # it measures once more
                return None
            return self._ramp(now, measure)
        braked = self._braked(measure)
        if (
            not braked
            and step.kind == "ramp"
            and measure.rate >= step.rate * (1 + self.settings.growth)
        ):
            return self._ramp(now, measure)
        if self._paid(step, measure):
            if braked:  # the step paid: it stays, but the window grows no further now
                return self._kept("ttfb brake", "down")
            if step.kind == "up":
                return self._kept("probe kept", "up")
            return self._kept("ramp kept", "down")
        if step.kind == "ramp":
            # The doubling bought too little to keep. When it bought next to nothing the
            # link, not the connections, is the limit: the steady state probes down by
            # halves, and soon; when it bought some, by quarters (fewer may not do).
            self._fine = measure.rate >= step.rate * (1 + self.settings.growth / 2)
            return self._change(step.base, "ramp undone", None)
        return self._undo(step, "probe undone")

    def _judge_down(self, step: _Step, measure: _Measure) -> Change | None:
        """A step down is kept once the mean of its last ``judge`` measurements stays
        within its slack; undone after two measurements in a row that each fell by more
        than twice the spread of one (one low one may be a hiccup of the client's, or
        the step's own transition), or when ``2 × judge`` measurements never settled it.
        One high measurement proves little at a small window: it may fall between two
        files' gaps for a first byte, so it measures the link full when it is not. Kept
        on one lucky measurement, a step sat at two connections on a link of two
        connections' worth, losing a fifth of it."""
        rules = self.settings
        floor = step.rate * (1 - self._slack(step, step.noise))
        step.seen.append(measure.rate)
        recent = step.seen[-rules.judge :]
        if len(recent) == rules.judge and sum(recent) / len(recent) >= floor:
            return self._kept("fewer suffice", "down")
        # Two single measurements are noisier than a mean of four: they undo the step
        # only when each falls by more than twice the spread of one.
        low = step.rate * (1 - self._slack(step, 2 * step.spread))
        low_twice = len(step.seen) >= 2 and max(step.seen[-2:]) < low
        if not low_twice and len(step.seen) < 2 * rules.judge:
            self._step = step
            return None
        self._fine = True
        return self._undo(step, "probe undone")

    def _paid(self, step: _Step, measure: _Measure) -> bool:
        """The step up's added connections each brought ``keep_share`` of an average one."""
        added = self.window - step.base
        average = step.rate / step.base
        return measure.rate - step.rate >= self.settings.keep_share * average * added

    def _ramp(self, now: float, measure: _Measure) -> Change | None:
        target = min(self._cap(now), self.window * 2)
        if target <= self.window or self._braked(measure):
            return self._steady(now, measure)
        return self._change(target, "ramp", _Step("ramp", self.window, measure.rate))

    def _kept(self, reason: str, probe: str) -> Change:
        """The step under test stays (the window does not move; the event says why)."""
        self._wait = self.settings.probe_after
        self._next_probe = probe
        self._calm = 0
        return Change(self.window, reason)

    def _undo(self, step: _Step, reason: str) -> Change:
        self._wait = min(self.settings.probe_max, self._wait * 2)
        return self._change(step.base, reason, None)

    def _probe(self, kind: str) -> _Step:
        """A probe away from this window, judged against the mean goodput measured at it
        and the spread of those measurements."""
        rates = self._rates
        mean = sum(rates) / len(rates)
        spread = statistics.stdev(rates) / mean if len(rates) > 1 and mean > 0 else 0.0
        # The noise of comparing a mean of ``judge`` measurements with this mean of
        # len(rates): one standard error of their difference.
        noise = spread * math.sqrt(1 / self.settings.judge + 1 / len(rates))
        return _Step(kind, self.window, mean, spread, noise)

    def _slack(self, step: _Step, noise: float) -> float:
        """How far goodput may fall for a step down to stay: ``tolerance``, or ``noise``
        (relative) when that is more (a fall within the noise is no fall: fewer
        connections suffice), but never ``growth`` of what the connections taken away
        would carry at an average share (as a doubling must buy ``growth`` to go on
        ramping), so noise never hides a real loss. For the mean that keeps a step the
        noise is one standard error of the difference of the two means, not more: a
        step down wrongly kept costs for long (at two connections a step up cannot show
        that a third pays), one wrongly undone only a connection more until the next
        probe."""
        rules = self.settings
        removed = (step.base - self.window) / step.base
        return max(rules.tolerance, min(rules.growth * removed, noise))

    def _steady(self, now: float, measure: _Measure) -> Change | None:
        rules = self.settings
        needed = min(self._cap(now), self._little(measure))
        if needed > self.window and not self._braked(measure):
            return self._change(needed, "cover latency", None)
        self._rates.append(measure.rate)
        self._calm += 1
        if self._calm < self._wait:
            return None
        down = self.window // 4 if self._fine else self.window // 2
        low = max(rules.floor, self.window - max(1, down), min(needed, self.window))
        high = min(self._cap(now), self.window + max(1, self.window // 4))
        if self._braked(measure):
            high = self.window
        probe = self._next_probe
        if probe == "up" and high <= self.window:
            probe = "down"
        elif probe == "down" and low >= self.window:
            probe = "up"
        if probe == "up" and high > self.window:
            return self._change(high, "probe up", self._probe("up"), "down")
        if probe == "down" and low < self.window:
            return self._change(low, "probe down", self._probe("down"), "up")
        self._calm = 0
        return None

    def _change(self, window: int, reason: str, step: _Step | None, probe: str = "") -> Change:
        """Move to ``window`` and start measuring it afresh."""
        self.window = window
        self._step = step
        self._skip = 1
        self._samples.clear()
        self._rates.clear()
        self._calm = 0
        if probe:
            self._next_probe = probe
        return Change(window, reason)
