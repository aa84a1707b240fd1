"""Run statistics: counters fed by the engine's events, read as consistent snapshots.

:class:`RunStats` is an :data:`~stacpull.events.EventSink`: each event type has one small
handler (a table keyed by the event's type, no isinstance chain), doing O(1) work under a
lock, so the dashboard can read a :class:`Snapshot` from rich's refresh thread while the
event loop keeps streaming. The JSON report (:mod:`stacpull.report`) and the live view
(:mod:`stacpull.dashboard`) are both drawn from these counters, so they always agree.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .events import (
    BytesReceived,
    Event,
    HostLimitChanged,
    JobFinished,
    JobQueued,
    JobRefused,
    RunFinished,
    RunStarted,
    RunStopping,
    SearchProgress,
    TokenRefreshed,
    TransferRetried,
    TransferStarted,
)
from .models import Job, Outcome, Refusal, Status

__all__ = ["ActiveTransfer", "ErrorGroup", "HostView", "RunStats", "Snapshot"]

_RATE_WINDOW = 5.0
_MAX_KEPT = 1000
_SERIES_KEPT = 600  # seconds of throughput history in a snapshot (the sparkline's window)
_WINDOW_KEPT = 200  # changes of one host's window the report keeps (see _WindowLog)


def _host_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc.rsplit("@", 1)[-1] or "?"


def _bare_host(netloc: str) -> str:
    """``host:port`` (or ``[v6]:port``) as the limiter names it: the host alone."""
    host = netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 or "]:" in netloc else netloc
    return host.strip("[]")


@dataclass(frozen=True, slots=True)
class _WindowStep:
    """One change of a host's window: ``t`` seconds after the run started, the window it
    moved to (or stayed at: ``probe kept``) and why (:class:`~stacpull.window.Change`)."""

    t: float
    window: int
    reason: str


class _WindowLog:
    """One host's window: where it is, why it last moved, and a bounded history.

    An overnight run probes its window every few seconds, so the history keeps at most
    ``kept`` steps, spread evenly over the run: past that, only every ``stride``-th step
    is kept (the stride doubles each time the history fills up, dropping the steps off
    it), besides the first, the last and every throttle (the steps a reader looks for).
    Throttles alone outgrowing it are thinned the same way, by their own stride. Each
    thinning halves what it thins: O(1) per event on average.
    """

    __slots__ = ("changes", "high", "kept", "latest", "low", "steps", "stride", "throttles")

    def __init__(self, kept: int = _WINDOW_KEPT) -> None:
        self.kept = max(3, kept)
        self.steps: list[tuple[int, int, _WindowStep]] = []  # (change no., throttle no., step)
        self.latest: _WindowStep | None = None
        self.changes = self.throttles = 0
        self.low = self.high = 0
        self.stride = [1, 1]  # of the other steps, of the throttles

    @property
    def last(self) -> _WindowStep:
        assert self.latest is not None  # a log exists from its first step on
        return self.latest

    def add(self, step: _WindowStep) -> None:
        throttled = step.reason == "throttled"
        number = (self.changes, self.throttles if throttled else -1, step)
        self.low = min(self.low, step.window) if self.changes else step.window
        self.high = max(self.high, step.window)
        self.changes += 1
        self.throttles += throttled
        self.latest = step
        if self._keeps(number):
            self.steps.append(number)
        while len(self.steps) >= self.kept:  # one place stays for the latest step
            self.stride[self._thinned()] *= 2
            self.steps = [n for n in self.steps if self._keeps(n)]

    def _thinned(self) -> int:
        """Which stride doubles: the other steps' while any is kept, else the throttles'."""
        return 0 if any(t < 0 and c > 0 for c, t, _ in self.steps) else 1

    def _keeps(self, number: tuple[int, int, _WindowStep]) -> bool:
        change, throttle, _ = number
        if change == 0:
            return True
        if throttle >= 0:
            return throttle % self.stride[1] == 0
        return change % self.stride[0] == 0

    def record(self) -> dict[str, Any]:
        """The report's record of this host's window (see :meth:`RunStats.windows`)."""
        steps = [step for _, _, step in self.steps]
        if self.latest is not None and (not steps or steps[-1] is not self.latest):
            steps.append(self.latest)
        return {
            "window": self.last.window,
            "reason": self.last.reason,
            "changes": self.changes,
            "throttles": self.throttles,
            "min": self.low,
            "max": self.high,
            "dropped": self.changes - len(steps),
            "history": [{"t": s.t, "window": s.window, "reason": s.reason} for s in steps],
        }


class _HostStats:
    """Per-host counters: transfers in flight, bytes, and bytes per recent second."""

    __slots__ = ("active", "received", "recent")

    def __init__(self) -> None:
        self.active = 0
        self.received = 0
        self.recent: deque[list[int]] = deque(maxlen=6)  # [second, bytes]

    def add(self, second: int, n: int) -> None:
        self.received += n
        if self.recent and self.recent[-1][0] == second:
            self.recent[-1][1] += n
        else:
            self.recent.append([second, n])

    def rate(self, second: int, elapsed: float) -> float:
        """Bytes per second over the last 5 whole seconds (fewer at the start)."""
        window = max(1.0, min(5.0, elapsed))
        return sum(n for s, n in self.recent if s > second - 5) / window


@dataclass(slots=True)
class ActiveTransfer:
    """A transfer in flight, as the dashboard shows it."""

    job: Job
    received: int = 0
    total: int | None = None
    offset: int = 0
    started: float = 0.0
    retries: int = 0
    host: str = ""

    def speed(self, now: float) -> float:
        """Bytes per second since this attempt started."""
        elapsed = now - self.started
        return self.received / elapsed if elapsed > 0.2 else 0.0


@dataclass(frozen=True, slots=True)
class HostView:
    """One host as the dashboard shows it."""

    host: str
    active: int
    rate: float  # bytes/s over the last few seconds
    received: int
    limit: int | None  # the host's window of requests in flight, once it moved
    reason: str = ""  # why it last moved (``ramp``, ``throttled``…)


@dataclass(frozen=True, slots=True)
class ErrorGroup:
    """Errors of one class: how many (retried or failed) and the latest message."""

    error_class: str
    count: int
    last: str


class _Series:
    """Bytes received in each whole second of the run, and the most transfers active in it.

    One int per second (an overnight run: ~40 000), so the report can hold the whole
    throughput curve and the dashboard its sparkline.
    """

    def __init__(self) -> None:
        self.bytes: list[int] = []
        self.active: list[int] = []
        self.peak = 0  # the most bytes in one whole (finished) second
        self._current = 0  # transfers active right now

    def _reach(self, second: int) -> None:
        while len(self.bytes) <= second:
            if self.bytes:
                self.peak = max(self.peak, self.bytes[-1])
            self.bytes.append(0)
            self.active.append(self._current)

    def add(self, second: int, n: int) -> None:
        self._reach(second)
        self.bytes[second] += n

    def set_active(self, second: int, active: int) -> None:
        self._reach(second)
        self._current = active
        self.active[second] = max(self.active[second], active)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A consistent copy of :class:`RunStats` for rendering."""

    elapsed: float
    collections: tuple[str, ...]
    dest: str
    pages: int
    items: int
    matched: int | None
    search_done: bool
    queued: int
    queued_known_bytes: int
    queued_unknown: int
    unknown_done: int  # finished jobs whose size was unknown when queued (zipper products)
    unknown_done_bytes: int
    downloaded: int
    skipped: int
    failed: int
    refused: int
    retries: int
    bytes_received: int
    bytes_done: int
    rate: float
    active: tuple[ActiveTransfer, ...]
    finished: bool
    stopping: str | None = None
    token_refreshes: int = 0
    now: float = 0.0  # the stats clock when the snapshot was taken
    series: tuple[int, ...] = ()  # bytes per second, the last minutes
    peak: int = 0  # the most bytes received in one whole second of the run
    hosts: tuple[HostView, ...] = ()  # busiest first
    error_groups: tuple[ErrorGroup, ...] = ()  # most recent class first
    duplicates: int = 0  # items the search listed again (planned once)

    @property
    def waiting(self) -> int:
        """Jobs planned and queued but not started yet (the queue depth)."""
        return max(0, self.queued - self.files_done - len(self.active))

    @property
    def files_done(self) -> int:
        """Files that reached an end (any status)."""
        return self.downloaded + self.skipped + self.failed

    @property
    def estimated_total(self) -> tuple[float, bool]:
        """(total bytes, estimated): each job of unknown size counts as the average of the
        unknown-size jobs already finished (zipper products resemble each other), or of all
        finished files before any such job has finished."""
        if not self.queued_unknown:
            return float(self.queued_known_bytes), not self.search_done
        if self.unknown_done:
            average = self.unknown_done_bytes / self.unknown_done
        else:
            ends = self.downloaded + self.skipped
            largest = max((t.received for t in self.active), default=0)
            average = max(self.bytes_done / ends if ends else 0.0, float(largest))
        return self.queued_known_bytes + self.queued_unknown * average, True

    @property
    def eta(self) -> tuple[float | None, bool]:
        """(seconds left, estimated) at the current rate."""
        if self.rate <= 0:
            return None, False
        total, estimated = self.estimated_total
        in_flight = sum(t.received for t in self.active)
        left = max(0.0, total - self.bytes_done - in_flight)
        return left / self.rate, estimated


class RunStats:
    """Counters for one run, fed by events; thread-safe snapshots for the dashboard.

    Besides :meth:`snapshot`, the report reads :meth:`series` and :meth:`windows` (the
    throughput curve, each host's window over time), and the report and the CLI read
    :attr:`failures` and :attr:`refusals` (the first 1000 of each), :attr:`refused`,
    :attr:`interrupted` and :attr:`started_wall`.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._t0 = clock()
        self.started_wall = time.time()
        self.collections: tuple[str, ...] = ()
        self.dest = ""
        self.pages = self.items = self.duplicates = 0
        self.matched: int | None = None
        self.search_done = False
        self.queued = self.queued_known_bytes = self.queued_unknown = 0
        self.unknown_done = self.unknown_done_bytes = 0
        self.downloaded = self.skipped = self.failed = self.refused = self.retries = 0
        self.bytes_received = self.bytes_done = 0
        self.active: dict[tuple[str, str], ActiveTransfer] = {}
        self.failures: list[Outcome] = []
        self.refusals: list[Refusal] = []
        self.finished = False
        self.seconds = 0.0
        self.interrupted = False
        self.stopping: str | None = None  # why the run is winding down, once asked to stop
        self._windows: dict[str, _WindowLog] = {}  # hosts whose window moved
        self.token_refreshes = 0  # new access tokens (OIDC refresh, token file changed)
        self._series = _Series()
        self._hosts: dict[str, _HostStats] = {}
        self._error_groups: dict[str, ErrorGroup] = {}  # by class, least recent first
        self._samples: deque[tuple[float, int]] = deque()

    def __call__(self, event: Event) -> None:
        handler = _HANDLERS.get(type(event))
        if handler is not None:
            with self._lock:
                handler(self, event)

    # -- one handler per event type (called under the lock) ---------------------------

    def _on_bytes(self, event: BytesReceived) -> None:
        self.bytes_received += event.n
        now = self._clock()
        second = max(0, int(now - self._t0))
        self._series.add(second, event.n)
        t = self.active.get((event.job.item_id, event.job.asset_key))
        if t is not None:
            t.received += event.n
            self._host(t.host).add(second, event.n)
        if not self._samples or now - self._samples[-1][0] >= 0.2:
            self._samples.append((now, self.bytes_received))
            while self._samples and now - self._samples[0][0] > _RATE_WINDOW:
                self._samples.popleft()

    def _on_started(self, event: TransferStarted) -> None:
        key = (event.job.item_id, event.job.asset_key)
        prior = self.active.get(key)
        host = prior.host if prior else _host_of(event.job.url)
        if prior is None:
            self._host(host).active += 1
        retries = prior.retries if prior else 0
        self.active[key] = ActiveTransfer(
            event.job, 0, event.total, event.offset, self._clock(), retries, host
        )
        self._series.set_active(self._second(), len(self.active))

    def _on_queued(self, event: JobQueued) -> None:
        self.queued += 1
        if event.job.size is None:
            self.queued_unknown += 1
        else:
            self.queued_known_bytes += event.job.size

    def _on_finished(self, event: JobFinished) -> None:
        outcome = event.outcome
        job = outcome.job
        gone = self.active.pop((job.item_id, job.asset_key), None)
        if gone is not None:
            self._host(gone.host).active -= 1
            self._series.set_active(self._second(), len(self.active))
        self._count_end(outcome)
        if job.size is None and outcome.status is not Status.REFUSED:
            # its size is known now: move it from the unknown to the known total
            self.queued_unknown -= 1
            self.queued_known_bytes += outcome.size or 0
            if outcome.size:
                self.unknown_done += 1
                self.unknown_done_bytes += outcome.size

    def _count_end(self, outcome: Outcome) -> None:
        """Count a finished job under its status; a refusal or failure joins its group."""
        label = outcome.job.label
        if outcome.status is Status.DOWNLOADED:
            self.downloaded += 1
            self.bytes_done += outcome.size or 0
        elif outcome.status is Status.SKIPPED:
            self.skipped += 1
            self.bytes_done += outcome.size or 0
        elif outcome.status is Status.REFUSED:
            self.refused += 1
            self.queued -= 1  # it never became a transfer
            self._group("refused", f"{label}: {outcome.error}")
        else:
            self.failed += 1
            if len(self.failures) < _MAX_KEPT:
                self.failures.append(outcome)
            self._group(outcome.error_class or "error", f"failed {label}: {outcome.error}")

    def _on_retried(self, event: TransferRetried) -> None:
        self.retries += 1
        t = self.active.get((event.job.item_id, event.job.asset_key))
        if t is not None:
            t.retries += 1
        self._group(event.error_class, f"{event.job.label}: {event.error}")

    def _on_refused(self, event: JobRefused) -> None:
        r = event.refusal
        self.refused += 1
        if len(self.refusals) < _MAX_KEPT:
            self.refusals.append(r)
        self._group("refused", f"{r.item_id}/{r.asset_key}: {r.reason}")

    def _on_search(self, event: SearchProgress) -> None:
        self.pages, self.items, self.matched = event.pages, event.items, event.matched
        self.search_done = event.done
        self.duplicates = event.duplicates

    def _on_run_started(self, event: RunStarted) -> None:
        self.collections, self.dest = event.collections, event.dest

    def _on_host_limit(self, event: HostLimitChanged) -> None:
        log = self._windows.get(event.host)
        if log is None:
            log = self._windows[event.host] = _WindowLog()
        t = round(max(0.0, self._clock() - self._t0), 3)
        log.add(_WindowStep(t, event.limit, event.reason))

    def _on_stopping(self, event: RunStopping) -> None:
        self.stopping = event.reason

    def _on_token(self, event: TokenRefreshed) -> None:
        self.token_refreshes += 1

    def _on_run_finished(self, event: RunFinished) -> None:
        self.finished, self.seconds, self.interrupted = True, event.seconds, event.interrupted

    # -- helpers -----------------------------------------------------------------------

    def _second(self) -> int:
        return max(0, int(self._clock() - self._t0))

    def _host(self, name: str) -> _HostStats:
        stats = self._hosts.get(name)
        if stats is None:
            stats = self._hosts[name] = _HostStats()
        return stats

    def _group(self, error_class: str, message: str) -> None:
        prior = self._error_groups.pop(error_class, None)
        count = prior.count + 1 if prior else 1
        self._error_groups[error_class] = ErrorGroup(error_class, count, message)

    def _rate_locked(self) -> float:
        if len(self._samples) < 2:
            elapsed = self._clock() - self._t0
            return self.bytes_received / elapsed if elapsed > 0 and self._samples else 0.0
        (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
        if self._clock() - t1 > 2.0:  # nothing moved lately
            return 0.0
        return (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0

    def _host_views(self) -> tuple[HostView, ...]:
        second, elapsed = self._second(), self._clock() - self._t0
        busiest = sorted(self._hosts.items(), key=lambda kv: -kv[1].received)
        views = []
        for name, h in busiest:
            log = self._windows.get(_bare_host(name))
            step = log.last if log is not None else None
            views.append(
                HostView(
                    name,
                    h.active,
                    h.rate(second, elapsed),
                    h.received,
                    step.window if step else None,
                    step.reason if step else "",
                )
            )
        return tuple(views)

    # -- reading -----------------------------------------------------------------------

    def series(self) -> dict[str, Any]:
        """The whole per-second series, as the report holds it: bytes received, and the
        most transfers in flight, in each second of the run."""
        with self._lock:
            return {
                "interval_s": 1,
                "bytes": list(self._series.bytes),
                "active": list(self._series.active),
            }

    def windows(self) -> dict[str, dict[str, Any]]:
        """Each host's window over the run, as the report holds it: where it ended and why
        (``window``, ``reason``), how often it changed and was throttled, its range, and
        its ``history`` of ``{t, window, reason}`` (``t``: seconds since the run started),
        at most 200 steps (``dropped``: how many were thinned out, see :class:`_WindowLog`)."""
        with self._lock:
            return {host: log.record() for host, log in self._windows.items()}

    def snapshot(self) -> Snapshot:
        """A consistent copy of the counters."""
        with self._lock:
            return Snapshot(
                elapsed=self.seconds if self.finished else self._clock() - self._t0,
                collections=self.collections,
                dest=self.dest,
                pages=self.pages,
                items=self.items,
                matched=self.matched,
                search_done=self.search_done,
                queued=self.queued,
                queued_known_bytes=self.queued_known_bytes,
                queued_unknown=self.queued_unknown,
                unknown_done=self.unknown_done,
                unknown_done_bytes=self.unknown_done_bytes,
                downloaded=self.downloaded,
                skipped=self.skipped,
                failed=self.failed,
                refused=self.refused,
                retries=self.retries,
                bytes_received=self.bytes_received,
                bytes_done=self.bytes_done,
                rate=self._rate_locked(),
                active=tuple(
                    ActiveTransfer(t.job, t.received, t.total, t.offset, t.started, t.retries)
                    for t in self.active.values()
                ),
                finished=self.finished,
                stopping=self.stopping,
                token_refreshes=self.token_refreshes,
                now=self._clock(),
                series=tuple(self._series.bytes[-_SERIES_KEPT:]),
                peak=self._series.peak,
                hosts=self._host_views(),
                error_groups=tuple(reversed(self._error_groups.values())),
                duplicates=self.duplicates,
            )


#: Which handler counts each event type; a type not listed is not counted.
_HANDLERS: dict[type[Any], Callable[[RunStats, Any], None]] = {
    BytesReceived: RunStats._on_bytes,
    TransferStarted: RunStats._on_started,
    JobQueued: RunStats._on_queued,
    JobFinished: RunStats._on_finished,
    TransferRetried: RunStats._on_retried,
    JobRefused: RunStats._on_refused,
    SearchProgress: RunStats._on_search,
    RunStarted: RunStats._on_run_started,
    HostLimitChanged: RunStats._on_host_limit,
    RunStopping: RunStats._on_stopping,
    TokenRefreshed: RunStats._on_token,
    RunFinished: RunStats._on_run_finished,
}
