"""What the user sees: a rich live view on a terminal, plain progress lines otherwise.

The engine's events only update :class:`~stacpull.stats.RunStats` counters; the live view
is drawn by rich's own refresh thread from :meth:`RunStats.snapshot`, so rendering never
runs in the transfer loop. It is stacked from the small render units of
:mod:`stacpull.panels`. Without a terminal (cron, CI, pipes) there are no control codes:
one progress line every ``progress_interval`` seconds and one line per failure.
The only importer of ``rich.live``.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import IO, Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .errors import ScrubFilter, scrub
from .events import (
    Event,
    HostLimitChanged,
    JobFinished,
    JobRefused,
    RunStopping,
    TokenRefreshed,
)
from .models import Status
from .panels import (
    active_table,
    counters_line,
    duration,
    error_line,
    eta_text,
    header_line,
    history_line,
    host_line,
    progress_bars,
    search_line,
    share_height,
    stopping_line,
    throughput_line,
)
from .printable import printable
from .stats import RunStats, Snapshot
from .units import human_bytes

__all__ = [
    "LiveDashboard",
    "LogFile",
    "PlainProgress",
    "human_bytes",
    "render_dashboard",
    "render_summary",
]


def render_dashboard(snap: Snapshot, *, width: int = 80, height: int = 24) -> RenderableType:
    """The live view of one snapshot, fitted to a ``width`` × ``height`` terminal (pure:
    tests render it with a fake clock).

    From the top: query and destination; the search side; files and bytes bars; current
    and average throughput with an ETA (marked ``~``, and why, while sizes are unknown);
    a sparkline of the last minutes; counters; per-host throughput and transfers in
    flight; the active transfers (when they do not all fit: retried ones first, then the
    largest); the latest errors grouped by class. Lines never wrap, so the view keeps its
    height on resize.
    """
    panel_width = min(width, 160)
    inner = panel_width - 4
    fixed = [
        header_line(snap),
        search_line(snap),
        progress_bars(snap, inner),
        throughput_line(snap),
        history_line(snap, inner),
        counters_line(snap),
        stopping_line(snap),
    ]
    parts: list[RenderableType] = [part for part in fixed if part is not None]
    # What is left of the height goes to hosts, active transfers and errors.
    room = height - 2 - len(parts) - 1  # borders, the fixed lines, the bars' second row
    share = share_height(snap, room, tall=height >= 32)
    parts += [host_line(h, inner) for h in share.hosts]
    table = active_table(snap.active, share.rows, snap.now)
    if table is not None:
        parts.append(table)
    parts += [error_line(g) for g in share.groups]
    return Panel(Group(*parts), border_style="cyan", width=panel_width)


def render_summary(
    values: Mapping[str, Any], windows: Mapping[str, Mapping[str, Any]] | None = None
) -> RenderableType:
    """The end-of-run table, from the report's ``totals`` (see :func:`~stacpull.report.totals`),
    so the screen and the JSON report always agree; with ``windows``
    (:func:`~stacpull.report.window_summary`), a line per host's window below it."""
    table = _summary_table(values)
    if not windows:
        return table
    return Group(table, *(_window_text(host, w) for host, w in windows.items()))


def _window_text(host: str, window: Mapping[str, Any]) -> Text:
    """One host's window over a run: where it ended and why, its range, how it moved."""
    low, high, changes, throttles = (window[k] for k in ("min", "max", "changes", "throttles"))
    moved = f"{changes} change{'' if changes == 1 else 's'}"
    if low != high:
        moved = f"{low}-{high} over {moved}"
    if throttles:
        moved += f", {throttles} throttle{'' if throttles == 1 else 's'}"
    return Text(
        printable(f"window {host}: {window['window']} at the end ({window['reason']}) · {moved}")
    )


def _summary_table(values: Mapping[str, Any]) -> Table:
    """The totals as a two-column table (see :func:`render_summary`)."""
    table = Table(title="stacpull summary", show_header=False, title_style="bold")
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    rows = [
        ("downloaded", str(values["downloaded"])),
        ("skipped (already verified)", str(values["skipped"])),
        ("failed", str(values["failed"])),
        ("refused (unsafe or unusable)", str(values["refused"])),
        ("retries", str(values["retries"])),
    ]
    if values.get("token_refreshes"):
        rows.append(("new access tokens", str(values["token_refreshes"])))
    if values.get("duplicates"):
        rows.append(("items listed twice (planned once)", str(values["duplicates"])))
    rows += [
        ("bytes downloaded", human_bytes(values["bytes_downloaded"])),
        ("seconds", f"{values.get('seconds', 0.0):.1f}"),
        ("throughput", f"{values['mb_per_s']:.1f} MB/s"),
    ]
    # A run of a few seconds has no whole second busier than its average: no peak to show.
    if values.get("peak_mb_per_s", 0) >= values["mb_per_s"] > 0:
        rows.append(("peak (1 s)", f"{values['peak_mb_per_s']:.1f} MB/s"))
    for label, value in rows:
        table.add_row(label, value)
    return table


class LiveDashboard:
    """The rich live view: start/stop around a run; feeds on :class:`RunStats`."""

    def __init__(
        self,
        stats: RunStats,
        console: Console,
        *,
        refresh_per_second: float = 4,
        verbose: bool = False,
    ) -> None:
        self._stats = stats
        self._console = console
        self._verbose = verbose
        self._live = Live(
            console=console,
            get_renderable=self._render,
            refresh_per_second=refresh_per_second,
            transient=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )

    def _render(self) -> RenderableType:
        # Read the size at every refresh: a resized terminal gets a view that fits it.
        size = self._console.size
        return render_dashboard(self._stats.snapshot(), width=size.width, height=size.height)

    def __call__(self, event: Event) -> None:
        """Events are already in :class:`RunStats`; the live view only reads it. Verbose:
        a line per finished file, printed above the live view."""
        if self._verbose and isinstance(event, JobFinished):
            o = event.outcome
            self._console.print(
                f"{o.status.value} {o.job.dest} ({human_bytes(o.size or 0)})"
                + (f": {o.error}" if o.error else ""),
                highlight=False,
                markup=False,
                soft_wrap=True,
            )

    def __enter__(self) -> LiveDashboard:
        self._live.start(refresh=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.stop()


class PlainProgress:
    """No terminal: a progress line every ``interval`` seconds (``None``: none, for
    ``--quiet``), one line per failure and per throttled host window; ``verbose`` adds
    one per file, token and every other move of a host's window."""

    def __init__(
        self,
        stats: RunStats,
        stream: IO[str] | None = None,
        *,
        interval: float | None = 5.0,
        verbose: bool = False,
    ) -> None:
        self._stats = stats
        self._stream = stream if stream is not None else sys.stderr
        self._interval = interval
        self._verbose = verbose
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def line(self) -> str:
        """One progress line for the current state."""
        s = self._stats.snapshot()
        matched = f"/{s.matched}" if s.matched is not None else ""
        return (
            f"[stacpull] {duration(s.elapsed)} items {s.items}{matched} · files {s.files_done}/{s.queued}"
            f" (done {s.downloaded}, skipped {s.skipped}, failed {s.failed}, refused {s.refused},"
            f" retries {s.retries}) · {human_bytes(s.bytes_received)} at {human_bytes(s.rate)}/s"
            f" · ETA {eta_text(s)}"
        )

    def _write(self, text: str) -> None:
        with self._lock:
            # One line per event, a catalogue's control characters shown as escapes.
            self._stream.write(printable(scrub(text)) + "\n")
            self._stream.flush()

    def __call__(self, event: Event) -> None:
        describe = _PLAIN_LINES.get(type(event))
        text = describe(event, self._verbose) if describe is not None else None
        if text is not None:
            self._write(f"[stacpull] {text}")

    def _loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self._write(self.line())

    def __enter__(self) -> PlainProgress:
        if self._interval is not None:
            self._thread = threading.Thread(
                target=self._loop, args=(self._interval,), name="stacpull-progress", daemon=True
            )
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)


def _finished_text(event: JobFinished, verbose: bool) -> str | None:
    o = event.outcome
    if o.status in (Status.FAILED, Status.REFUSED):
        return f"{o.status.value} {o.job.label}: {o.error}"
    return f"{o.status.value} {o.job.dest} ({human_bytes(o.size or 0)})" if verbose else None


def _refused_text(event: JobRefused, verbose: bool) -> str:
    r = event.refusal
    return f"refused {r.item_id}/{r.asset_key}: {r.reason}"


def _host_limit_text(event: HostLimitChanged, verbose: bool) -> str | None:
    # The window moves every few seconds while it probes: only a throttle (the host
    # pushing back, which a log's reader looks for) is worth a line unless verbose.
    if event.reason != "throttled" and not verbose:
        return None
    return f"{event.host}: window {event.limit} ({event.reason})"


def _stopping_text(event: RunStopping, verbose: bool) -> str:
    settle = "may finish" if event.grace is None else f"get {event.grace:g} s"
    return (
        f"stopping ({event.reason}): no new transfers; in-flight ones "
        f"{settle}; Ctrl-C {'stops them' if event.grace is None else 'again aborts at once'}"
    )


def _token_text(event: TokenRefreshed, verbose: bool) -> str | None:
    if not verbose:
        return None
    left = "" if event.expires_in is None else f", valid {event.expires_in:.0f} s"
    return f"new access token ({event.reason}{left})"


#: The line plain progress prints for each kind of event (``None``: none, for this
#: verbosity); events not listed print nothing.
_PLAIN_LINES: dict[type[Any], Callable[[Any, bool], str | None]] = {
    JobFinished: _finished_text,
    JobRefused: _refused_text,
    HostLimitChanged: _host_limit_text,
    RunStopping: _stopping_text,
    TokenRefreshed: _token_text,
}


class _Stamped:
    """A text stream that starts every line with the local time (``--log-file``)."""

    def __init__(self, stream: IO[str], lock: threading.Lock) -> None:
        self._stream, self._lock = stream, lock

    def write(self, text: str) -> int:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S%z")
        lines = [f"{stamp} {line}\n" for line in scrub(text).splitlines() if line.strip()]
        with self._lock:
            self._stream.write("".join(lines))
        return len(text)

    def flush(self) -> None:
        with self._lock:
            self._stream.flush()


class LogFile:
    """``--log-file``: the run's log as timestamped plain text. The lines plain progress
    prints (every file, failure and token refresh, and a progress line every
    ``interval`` seconds) and stacpull's log records (INFO, DEBUG with ``--debug``), all
    scrubbed of secrets. ``stream`` is opened by the caller with :mod:`stacpull.safeio`."""

    def __init__(self, stats: RunStats, stream: IO[str], *, interval: float) -> None:
        self._file = stream
        self._lock = threading.Lock()
        self._stamped = _Stamped(stream, self._lock)
        self._lines = PlainProgress(stats, self._stamped, interval=interval, verbose=True)  # type: ignore[arg-type]
        self._handler = logging.StreamHandler(self._stamped)
        self._handler.addFilter(ScrubFilter())
        self._handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self._logger = logging.getLogger("stacpull")
        self._level = self._logger.level

    def __call__(self, event: Event) -> None:
        self._lines(event)

    def __enter__(self) -> LogFile:
        if not self._logger.isEnabledFor(logging.INFO):
            self._logger.setLevel(logging.INFO)
        self._logger.addHandler(self._handler)
        self._lines.__enter__()
        self._stamped.write("[stacpull] run started")
        return self

    def __exit__(self, *exc: Any) -> None:
        self._lines.__exit__(*exc)
        self._stamped.write(self._lines.line())
        error = exc[1] if len(exc) > 1 else None
        if isinstance(error, KeyboardInterrupt):
            self._stamped.write("[stacpull] interrupted")
        elif isinstance(error, Exception):
            # Why a cron job's run stopped belongs in its log, not on stderr alone.
            self._stamped.write(f"[stacpull] run stopped: {error}")
        self._stamped.write("[stacpull] run ended")
        self._logger.removeHandler(self._handler)
        self._logger.setLevel(self._level)
        self._file.close()
