"""Run statistics built from events, and the JSON run report.

:class:`RunStats` is an :data:`~stacpull.events.EventSink`: O(1) work per event under a
lock, so the dashboard can read a consistent snapshot from rich's refresh thread while the
event loop keeps streaming. The report is written at the end of every run (even a failed
or interrupted one) to ``DEST/.stacpull/report-<start>.json`` and ``last-report.json``;
per-file outcomes stream to a JSON-lines file beside it so memory stays flat.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from . import safeio
from .errors import redact_url, scrub_data
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

__all__ = [
    "ActiveTransfer",
    "ErrorGroup",
    "EventLog",
    "HostView",
    "OutcomeLog",
    "RunStats",
    "Snapshot",
    "totals",
    "write_report",
]

_RATE_WINDOW = 5.0
_MAX_KEPT = 1000
_SERIES_KEPT = 600  # seconds of throughput history in a snapshot (the sparkline's window)


def _host_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc.rsplit("@", 1)[-1] or "?"


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
    limit: int | None  # the adaptive limit, once it moved


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
    catalog: str
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
    errors: tuple[str, ...]
    finished: bool
    stopping: str | None = None
    host_limits: tuple[tuple[str, int], ...] = ()
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
    """Counters for one run, fed by events; thread-safe snapshots for the dashboard."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._t0 = clock()
        self.started_wall = time.time()
        self.catalog = ""
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
        self.errors: deque[str] = deque(maxlen=5)
        self.failures: list[Outcome] = []
        self.refusals: list[Refusal] = []
        self.finished = False
        self.seconds = 0.0
        self.interrupted = False
        self.stopping: str | None = None  # why the run is winding down, once asked to stop
        self.host_limits: dict[str, int] = {}  # hosts whose adaptive limit moved
        self.token_refreshes = 0  # new access tokens (OIDC refresh, token file changed)
        self.token_source: str | None = None
        self.series = _Series()
        self.hosts: dict[str, _HostStats] = {}
        self.error_groups: dict[str, ErrorGroup] = {}  # by class, least recent first
        self._samples: deque[tuple[float, int]] = deque()

    def _second(self) -> int:
        return max(0, int(self._clock() - self._t0))

    def _host(self, name: str) -> _HostStats:
        stats = self.hosts.get(name)
        if stats is None:
            stats = self.hosts[name] = _HostStats()
        return stats

    def _group(self, error_class: str, message: str) -> None:
        prior = self.error_groups.pop(error_class, None)
        count = prior.count + 1 if prior else 1
        self.error_groups[error_class] = ErrorGroup(error_class, count, message)

    def __call__(self, event: Event) -> None:
        with self._lock:
            if isinstance(event, BytesReceived):
                self.bytes_received += event.n
                now = self._clock()
                second = max(0, int(now - self._t0))
                self.series.add(second, event.n)
                t = self.active.get((event.job.item_id, event.job.asset_key))
                if t is not None:
                    t.received += event.n
                    self._host(t.host).add(second, event.n)
                if not self._samples or now - self._samples[-1][0] >= 0.2:
                    self._samples.append((now, self.bytes_received))
                    while self._samples and now - self._samples[0][0] > _RATE_WINDOW:
                        self._samples.popleft()
            elif isinstance(event, TransferStarted):
                key = (event.job.item_id, event.job.asset_key)
                prior = self.active.get(key)
                host = prior.host if prior else _host_of(event.job.url)
                if prior is None:
                    self._host(host).active += 1
                self.active[key] = ActiveTransfer(
                    event.job,
                    0,
                    event.total,
                    event.offset,
                    self._clock(),
                    prior.retries if prior else 0,
                    host,
                )
                self.series.set_active(self._second(), len(self.active))
            elif isinstance(event, JobQueued):
                self.queued += 1
                if event.job.size is None:
                    self.queued_unknown += 1
                else:
                    self.queued_known_bytes += event.job.size
            elif isinstance(event, JobFinished):
                self._finished(event.outcome)
            elif isinstance(event, TransferRetried):
                self.retries += 1
                key = (event.job.item_id, event.job.asset_key)
                t = self.active.get(key)
                if t is not None:
                    t.retries += 1
                self.errors.append(f"retry {event.job.label}: {event.error}")
                self._group(event.error_class, f"{event.job.label}: {event.error}")
            elif isinstance(event, JobRefused):
                self.refused += 1
                if len(self.refusals) < _MAX_KEPT:
                    self.refusals.append(event.refusal)
                self.errors.append(
                    f"refused {event.refusal.item_id}/{event.refusal.asset_key}: {event.refusal.reason}"
                )
                self._group(
                    "refused",
                    f"{event.refusal.item_id}/{event.refusal.asset_key}: {event.refusal.reason}",
                )
            elif isinstance(event, SearchProgress):
                self.pages, self.items, self.matched = event.pages, event.items, event.matched
                self.search_done = event.done
                self.duplicates = event.duplicates
            elif isinstance(event, RunStarted):
                self.catalog, self.collections, self.dest = (
                    event.catalog,
                    event.collections,
                    event.dest,
                )
            elif isinstance(event, HostLimitChanged):
                self.host_limits[event.host] = event.limit
                self.errors.append(
                    f"{event.host}: {event.limit} connection(s) "
                    + ("(it answered 429/503)" if event.reason == "throttled" else "(recovering)")
                )
            elif isinstance(event, RunStopping):
                self.stopping = event.reason
            elif isinstance(event, TokenRefreshed):
                self.token_refreshes += 1
                self.token_source = event.source
            elif isinstance(event, RunFinished):
                self.finished, self.seconds, self.interrupted = (
                    True,
                    event.seconds,
                    event.interrupted,
                )

    def _finished(self, outcome: Outcome) -> None:
        job = outcome.job
        gone = self.active.pop((job.item_id, job.asset_key), None)
        if gone is not None:
            self._host(gone.host).active -= 1
            self.series.set_active(self._second(), len(self.active))
        if outcome.status is Status.DOWNLOADED:
            self.downloaded += 1
            self.bytes_done += outcome.size or 0
        elif outcome.status is Status.SKIPPED:
            self.skipped += 1
            self.bytes_done += outcome.size or 0
        elif outcome.status is Status.REFUSED:
            self.refused += 1
            self.queued -= 1  # it never became a transfer
            self.errors.append(f"refused {job.label}: {outcome.error}")
            self._group("refused", f"{job.label}: {outcome.error}")
        else:
            self.failed += 1
            if len(self.failures) < _MAX_KEPT:
                self.failures.append(outcome)
            self.errors.append(f"failed {job.label}: {outcome.error}")
            self._group(outcome.error_class or "error", f"failed {job.label}: {outcome.error}")
        if job.size is None and outcome.status is not Status.REFUSED:
            # its size is known now: move it from the unknown to the known total
            self.queued_unknown -= 1
            self.queued_known_bytes += outcome.size or 0
            if outcome.size:
                self.unknown_done += 1
                self.unknown_done_bytes += outcome.size

    def rate(self) -> float:
        """Bytes per second over the last few seconds."""
        with self._lock:
            return self._rate_locked()

    def _rate_locked(self) -> float:
        if len(self._samples) < 2:
            elapsed = self._clock() - self._t0
            return self.bytes_received / elapsed if elapsed > 0 and self._samples else 0.0
        (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
        if self._clock() - t1 > 2.0:  # nothing moved lately
            return 0.0
        return (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0

    def snapshot(self) -> Snapshot:
        """A consistent copy of the counters."""
        with self._lock:
            return Snapshot(
                elapsed=self.seconds if self.finished else self._clock() - self._t0,
                catalog=self.catalog,
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
                errors=tuple(self.errors),
                finished=self.finished,
                stopping=self.stopping,
                host_limits=tuple(sorted(self.host_limits.items())),
                token_refreshes=self.token_refreshes,
                now=self._clock(),
                series=tuple(self.series.bytes[-_SERIES_KEPT:]),
                peak=self.series.peak,
                hosts=tuple(
                    HostView(
                        name,
                        h.active,
                        h.rate(self._second(), self._clock() - self._t0),
                        h.received,
                        self.host_limits.get(name.rsplit(":", 1)[0]),
                    )
                    for name, h in sorted(self.hosts.items(), key=lambda kv: -kv[1].received)
                ),
                error_groups=tuple(reversed(self.error_groups.values())),
                duplicates=self.duplicates,
            )


class _JsonLines:
    """An append-only JSON-lines file that a full disk stops but never turns into a crash
    of the run (the journal stays the truth); why it stopped is kept in :attr:`error`."""

    #: stacpull's own file in its state directory: a link or special file planted at
    #: its name is replaced; a user's file (``--log-json``) is refused instead.
    _own = False

    def __init__(self, path: Path) -> None:
        self.path = path
        self.error: str | None = None
        self._file: IO[str] | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = safeio.open_append(path, replace_special=self._own)
        except OSError as exc:
            self.error = f"cannot write {path}: {exc.strerror or exc}"

    def _write(self, record: dict[str, Any], *, flush: bool = False) -> None:
        if self._file is None:
            return
        line = json.dumps(scrub_data(record))
        try:
            self._file.write(line + "\n")
            if flush:
                self._file.flush()
        except OSError as exc:
            self.error = f"cannot write {self.path}: {exc.strerror or exc}"
            self.close()

    def close(self) -> None:
        """Flush and close the file (errors are kept in :attr:`error`, never raised)."""
        if self._file is not None:
            handle, self._file = self._file, None
            try:
                handle.close()
            except OSError as exc:
                self.error = f"cannot write {self.path}: {exc.strerror or exc}"


class OutcomeLog(_JsonLines):
    """An event sink that appends each finished job to a JSON-lines file."""

    _own = True

    def __call__(self, event: Event) -> None:
        if isinstance(event, JobFinished):
            self._write(outcome_dict(event.outcome))
        elif isinstance(event, JobRefused):
            r = event.refusal
            row = {
                "item": r.item_id,
                "collection": r.collection,
                "asset": r.asset_key,
                "status": "refused",
                "error": r.reason,
            }
            self._write(row)


class EventLog(_JsonLines):
    """``--log-json``: every event as one JSON line, for machines (log shippers, tests).

    Each line has ``t`` (Unix time), ``event`` (the class name) and the event's fields;
    jobs appear as their item, asset, path and redacted URL, never a token. Bytes are
    summed into one ``Throughput`` line per second instead of a line per chunk, and the
    file is flushed with it, so a reader tailing it is at most a second behind. Like
    :class:`OutcomeLog`, a full disk stops the log, never the run.
    """

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        super().__init__(path)
        self._clock = clock
        self._pending = 0
        self._since = self._flushed_at = clock()

    def __call__(self, event: Event) -> None:
        if self._file is None:
            return
        now = self._clock()
        if isinstance(event, BytesReceived):
            self._pending += event.n
            if now - self._since < 1.0:
                return
            row: dict[str, Any] = {"event": "Throughput", "bytes": self._pending}
            row["seconds"] = round(now - self._since, 3)
            self._pending, self._since = 0, now
        else:
            row = {"event": type(event).__name__, **_fields(event)}
        flush = now - self._flushed_at >= 1.0 or isinstance(event, RunFinished)
        if flush:
            self._flushed_at = now
        self._write({"t": round(now, 3), **row}, flush=flush)


def _fields(event: Event) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in event.__dataclass_fields__:
        value = getattr(event, name)
        if isinstance(value, Job):
            out.update(
                item=value.item_id,
                collection=value.collection,
                asset=value.asset_key,
                path=value.dest,
                url=redact_url(value.url),
                size=value.size,
            )
        elif isinstance(value, Outcome):
            out.update(outcome_dict(value))
        elif isinstance(value, Refusal):
            out.update(
                item=value.item_id,
                collection=value.collection,
                asset=value.asset_key,
                reason=value.reason,
            )
        else:
            out[name] = list(value) if isinstance(value, tuple) else value
    return out


def refusal_dict(r: Refusal) -> dict[str, Any]:
    """One refused asset as a JSON-ready dict: the report's and ``--json``'s ``refused``."""
    return {"item": r.item_id, "collection": r.collection, "asset": r.asset_key, "reason": r.reason}


def outcome_dict(o: Outcome) -> dict[str, Any]:
    """One outcome as a JSON-ready dict (no secrets: URLs are redacted)."""
    return {
        "item": o.job.item_id,
        "collection": o.job.collection,
        "asset": o.job.asset_key,
        "path": o.job.dest,
        "url": redact_url(o.job.url),
        "status": o.status.value,
        "bytes_downloaded": o.bytes_downloaded,
        "size": o.size,
        "seconds": round(o.seconds, 3),
        "attempts": o.attempts,
        "resumed_from": o.resumed_from,
        "error": o.error,
        "error_class": o.error_class,
        "notes": list(o.notes),
    }


@dataclass(slots=True)
class ReportInfo:
    """What the report says about the run besides the counters."""

    query: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    fatal: str | None = None


def totals(snap: Snapshot) -> dict[str, Any]:
    """The run's totals: the report's ``totals`` and the rows of the summary table."""
    return {
        "items": snap.items,
        "matched": snap.matched,
        "duplicates": snap.duplicates,
        "files": snap.queued + snap.refused,
        "downloaded": snap.downloaded,
        "skipped": snap.skipped,
        "failed": snap.failed,
        "refused": snap.refused,
        "retries": snap.retries,
        "token_refreshes": snap.token_refreshes,
        "bytes_downloaded": snap.bytes_received,
        "bytes_on_disk": snap.bytes_done,
        "seconds": round(snap.elapsed, 3),
        "mb_per_s": round(snap.bytes_received / snap.elapsed / 1e6, 3) if snap.elapsed else 0.0,
        # Whole seconds only: a run's last second is partial (and a short run has no other).
        "peak_mb_per_s": round(snap.peak / 1e6, 3),
    }


def write_report(
    directory: Path,
    stats: RunStats,
    info: ReportInfo,
    outcomes: Path | None,
    *,
    run_id: int | None = None,
) -> Path:
    """Write the JSON report of the run into ``directory``; return its path.

    The name is ``report-<start>-<run_id>.json``: the journal's run number keeps two runs
    started in the same second from sharing (and replacing) one report.

    Besides totals it holds the per-second throughput series (``series.bytes``, and
    ``series.active``, the most transfers in flight in each second) and every file's
    outcome (``files``), streamed from the outcomes log so a 100 000-file run needs no
    memory for it. Written to a temporary name first: a report is whole or absent.
    """
    snap = stats.snapshot()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(stats.started_wall))
    with stats._lock:
        series = {
            "interval_s": 1,
            "bytes": list(stats.series.bytes),
            "active": list(stats.series.active),
        }
    report = {
        "version": 2,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stats.started_wall)),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(snap.elapsed, 3),
        "interrupted": stats.interrupted,
        "fatal": info.fatal,
        "query": info.query,
        "settings": info.settings,
        "totals": totals(snap),
        "errors": [
            {"class": g.error_class, "count": g.count, "last": g.last} for g in snap.error_groups
        ],
        "failed": [outcome_dict(o) for o in stats.failures],
        "refused": [refusal_dict(r) for r in stats.refusals],
        "outcomes_file": outcomes.name if outcomes else None,
    }
    directory.mkdir(parents=True, exist_ok=True)
    safeio.ensure_directory(directory, create=False)  # never written through a link
    suffix = f"-{run_id}" if run_id is not None else ""
    path = directory / f"report-{stamp}{suffix}.json"
    partial = path.with_name(path.name + ".part")
    head = json.dumps(scrub_data(report), indent=2)
    with safeio.create_new(partial) as f:
        f.write(head[: -len("\n}")])
        f.write(',\n  "series": ' + json.dumps(series, separators=(",", ":")))
        f.write(',\n  "files": [')
        first = True
        if outcomes is not None and not safeio.not_regular(outcomes) and outcomes.exists():
            with outcomes.open(encoding="utf-8") as lines:
                for line in lines:
                    try:
                        json.loads(line)
                    except ValueError:
                        continue  # the tail a full disk cut short
                    # Written by this run's OutcomeLog, whose lines are scrubbed already.
                    f.write(("\n    " if first else ",\n    ") + line.strip())
                    first = False
        f.write("\n  ]\n}\n")
    partial.replace(path)  # a rename replaces a link at the name, never follows it
    latest = directory / "last-report.json.part"
    with safeio.open_regular(path) as whole, safeio.create_new(latest, binary=True) as copy:
        shutil.copyfileobj(whole, copy)
    latest.replace(directory / "last-report.json")
    return path
