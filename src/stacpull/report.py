"""The run's records on disk: the JSON report and the JSON-lines logs beside it.

The report is written at the end of every run (even a failed or interrupted one) to
``DEST/.stacpull/report-<start>-<run>.json`` and ``last-report.json``; per-file outcomes
stream to a JSON-lines file beside it (:class:`OutcomeLog`) so memory stays flat, and
``--log-json`` writes every event as a line (:class:`EventLog`). The counters themselves
live in :mod:`stacpull.stats`; :class:`RunStats` is re-exported here for the engine and
the CLI, which import it with the report.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from . import safeio
from .claims import listing_gap
from .errors import redact_url, scrub_data
from .events import BytesReceived, Event, JobFinished, JobRefused, RunFinished
from .models import Job, Outcome, Refusal
from .stats import RunStats, Snapshot

__all__ = [
    "EventLog",
    "OutcomeLog",
    "ReportInfo",
    "listing_note",
    "refusal_dict",
    "totals",
    "window_summary",
    "write_report",
]


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
            self._write(_outcome_dict(event.outcome))
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
            out.update(_outcome_dict(value))
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


def _outcome_dict(o: Outcome) -> dict[str, Any]:
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
        "listed": snap.items - snap.duplicates,  # distinct items (an item listed again: once)
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
    ``series.active``, the most transfers in flight in each second), each host's window
    of requests in flight over time (``windows``, see :meth:`RunStats.windows`: at most
    200 steps a host) and every file's outcome (``files``), streamed from the outcomes
    log so a 100 000-file run needs no memory for it. Written to a temporary name first:
    a report is whole or absent.
    """
    report = _report_head(stats, info, outcomes)
    series = stats.series()
    windows = scrub_data(stats.windows())
    directory.mkdir(parents=True, exist_ok=True)
    safeio.ensure_directory(directory, create=False)  # never written through a link
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(stats.started_wall))
    suffix = f"-{run_id}" if run_id is not None else ""
    path = directory / f"report-{stamp}{suffix}.json"
    partial = path.with_name(path.name + ".part")
    head = json.dumps(scrub_data(report), indent=2)
    with safeio.create_new(partial) as f:
        f.write(head[: -len("\n}")])
        f.write(',\n  "series": ' + json.dumps(series, separators=(",", ":")))
        f.write(',\n  "windows": ' + json.dumps(windows, separators=(",", ":")))
        f.write(',\n  "files": [')
        _copy_outcomes(outcomes, f)
        f.write("\n  ]\n}\n")
    partial.replace(path)  # a rename replaces a link at the name, never follows it
    latest = directory / "last-report.json.part"
    with safeio.open_regular(path) as whole, safeio.create_new(latest, binary=True) as copy:
        shutil.copyfileobj(whole, copy)
    latest.replace(directory / "last-report.json")
    return path


def _report_head(stats: RunStats, info: ReportInfo, outcomes: Path | None) -> dict[str, Any]:
    """The report's fields before its series and files: when, what, totals, errors."""
    snap = stats.snapshot()
    return {
        "version": 2,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stats.started_wall)),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(snap.elapsed, 3),
        "interrupted": stats.interrupted,
        "fatal": info.fatal,
        "query": info.query,
        "settings": info.settings,
        "totals": totals(snap),
        "listing": listing_note(snap, cut=bool(info.query.get("max_items"))),
        "errors": [
            {"class": g.error_class, "count": g.count, "last": g.last} for g in snap.error_groups
        ],
        "failed": [_outcome_dict(o) for o in stats.failures],
        "refused": [refusal_dict(r) for r in stats.refusals],
        "outcomes_file": outcomes.name if outcomes else None,
    }


def listing_note(snap: Snapshot, *, cut: bool) -> str | None:
    """Why a whole search's distinct items are not ``numberMatched`` (see
    :func:`~stacpull.claims.listing_gap`); nothing before the search ended, or when
    ``cut`` (``--max-items``) made it short."""
    if not snap.search_done or cut:
        return None
    return listing_gap(snap.items - snap.duplicates, snap.matched, snap.duplicates)


def window_summary(report: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each host's window in a run report, without its history (``stacpull report``'s):
    where it ended and why, its range, how often it changed and was throttled. Empty
    for a run that never moved one (or a report from before windows were recorded);
    TypeError, KeyError or ValueError for one that is not a report's."""
    windows = report.get("windows") or {}
    if not isinstance(windows, dict):
        raise TypeError("windows is not an object")
    return {
        str(host): {
            **{key: int(record[key]) for key in ("window", "changes", "throttles", "min", "max")},
            "reason": str(record["reason"]),
        }
        for host, record in windows.items()
    }


def _copy_outcomes(outcomes: Path | None, out: IO[str]) -> None:
    """Stream the outcomes log's lines into the report's ``files`` list, a line at a time."""
    if outcomes is None or safeio.not_regular(outcomes) or not outcomes.exists():
        return
    first = True
    with outcomes.open(encoding="utf-8") as lines:
        for line in lines:
            try:
                json.loads(line)
            except ValueError:
                continue  # the tail a full disk cut short
            # Written by this run's OutcomeLog, whose lines are scrubbed already.
            out.write(("\n    " if first else ",\n    ") + line.strip())
            first = False
