"""What the user sees: a rich live view on a terminal, plain progress lines otherwise.

The engine's events only update :class:`~stacpull.report.RunStats` counters; the live view
is drawn by rich's own refresh thread from :meth:`RunStats.snapshot`, so rendering never
runs in the transfer loop. Without a terminal (cron, CI, pipes) there are no control
codes: one progress line every ``progress_interval`` seconds and one line per failure.
The only importer of ``rich.live``.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
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
from .printable import printable
from .report import RunStats, Snapshot
from .units import human_bytes

__all__ = [
    "SPARK_WINDOW",
    "LiveDashboard",
    "LogFile",
    "PlainProgress",
    "human_bytes",
    "render_dashboard",
    "render_summary",
    "sparkline",
]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def _eta_text(snap: Snapshot) -> str:
    eta, estimated = snap.eta
    return ("~" if estimated and eta is not None else "") + _duration(eta)


_SPARK = "▁▂▃▄▅▆▇█"
SPARK_WINDOW = 240  # seconds of throughput the sparkline covers


def sparkline(values: Sequence[float], width: int) -> str:
    """``values`` as at most ``width`` block characters, newest on the right; each
    character is the mean of the values it covers. Zero shows as a blank (a stall)."""
    if not values or width <= 0:
        return ""
    per = max(1, math.ceil(len(values) / width))
    # Buckets are aligned on the newest value, so the right edge is always "now".
    first = len(values) % per
    chunks = ([values[:first]] if first else []) + [
        values[i : i + per] for i in range(first, len(values), per)
    ]
    means = [sum(c) / len(c) for c in chunks]
    top = max(means) or 1.0
    return "".join(
        _SPARK[max(0, math.ceil(v / top * len(_SPARK)) - 1)] if v > 0 else " " for v in means
    )


def _line(*parts: str | tuple[str, str], style: str = "") -> Text:
    """One line of the view: never wraps (an ellipsis instead), so heights stay known; a
    catalogue's control characters (in ids, keys, errors) are shown as escapes, never sent."""
    shown = [printable(p) if isinstance(p, str) else (printable(p[0]), p[1]) for p in parts]
    return Text.assemble(*shown, style=style, no_wrap=True, overflow="ellipsis")


def render_dashboard(snap: Snapshot, *, width: int = 80, height: int = 24) -> RenderableType:
    """The live view of one snapshot, fitted to a ``width`` × ``height`` terminal (pure:
    tests render it with a fake clock).

    From the top: query and destination; the search side; files and bytes bars; current
    and average throughput with an ETA (marked ``~``, and why, while sizes are unknown);
    a sparkline of the last minutes; counters; per-host throughput and transfers in
    flight; the active transfers (when they do not all fit: retried ones first, then the
    largest); the latest
    errors grouped by class. Lines never wrap, so the view keeps its height on resize.
    """
    panel_width = min(width, 160)
    inner = panel_width - 4
    collections = ", ".join(snap.collections) or "(saved search)"
    matched = f"/{snap.matched}" if snap.matched is not None else ""
    search = "done" if snap.search_done else f"page {snap.pages}"
    parts: list[RenderableType] = [
        _line(("stacpull ", "bold cyan"), (f"{collections} → {snap.dest}", "bold")),
        _line(
            f"search {search}: {snap.items}{matched} items · {snap.queued} files queued, "
            f"{snap.waiting} waiting"
        ),
    ]
    estimate, estimated = snap.estimated_total
    total_bytes = int(estimate)
    bar_width = max(10, min(60, inner - 48))
    bars = Table.grid(padding=(0, 1))
    bars.add_column(no_wrap=True, min_width=5)
    bars.add_column(no_wrap=True, width=bar_width)
    bars.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
    bars.add_row(
        Text("files", style="bold"),
        ProgressBar(total=max(snap.queued, 1), completed=snap.files_done, width=bar_width),
        Text(f"{snap.files_done}/{snap.queued}"),
    )
    unknown = f" ({snap.queued_unknown} of unknown size)" if snap.queued_unknown else ""
    bars.add_row(
        Text("bytes", style="bold"),
        ProgressBar(
            total=max(total_bytes, 1), completed=min(snap.bytes_done, total_bytes), width=bar_width
        ),
        Text(
            f"{human_bytes(snap.bytes_done)}/{'~' if estimated else ''}"
            f"{human_bytes(total_bytes)}{unknown}"
        ),
    )
    parts.append(bars)
    average = snap.bytes_received / snap.elapsed if snap.elapsed > 0 else 0.0
    eta, eta_estimated = snap.eta
    why = ""
    if eta is not None and eta_estimated:
        why = (
            f" (estimated from the {snap.unknown_done} finished)"
            if snap.queued_unknown and snap.unknown_done
            else " (estimated)"
        )
    parts.append(
        _line(
            ("⇣ ", "green"),
            f"{human_bytes(snap.rate)}/s now · {human_bytes(average)}/s avg · "
            f"{_duration(snap.elapsed)} elapsed · "
            f"ETA {'~' if eta_estimated and eta is not None else ''}{_duration(eta)}{why}",
        )
    )
    history = list(snap.series[-SPARK_WINDOW - 1 : -1] if not snap.finished else snap.series)
    history = history[-SPARK_WINDOW:]
    peak = max(history, default=0)
    span = len(history)
    label = f" last {span} s" if span < 120 else f" last {span // 60} min"
    label += f" · peak {human_bytes(peak)}/s"
    if history:
        parts.append(_line((sparkline(history, max(8, inner - len(label))), "green"), label))
    counters: list[str | tuple[str, str]] = [
        ("done ", "green"),
        str(snap.downloaded),
        "  ",
        ("skipped ", "cyan"),
        str(snap.skipped),
        "  ",
        ("retried ", "yellow"),
        str(snap.retries),
        "  ",
        ("failed ", "red"),
        str(snap.failed),
        "  ",
        ("refused ", "magenta"),
        str(snap.refused),
    ]
    if snap.token_refreshes:
        counters += ["  ", ("tokens ", "blue"), str(snap.token_refreshes)]
    parts.append(_line(*counters))
    if snap.stopping:
        parts.append(
            _line(
                f"stopping ({snap.stopping}): no new transfers, in-flight ones settle; "
                "Ctrl-C again stops sooner, twice aborts at once",
                style="bold yellow",
            )
        )
    # What is left of the height goes to hosts, active transfers and errors.
    room = height - 2 - len(parts) - 1  # borders, the fixed lines, the bars' second row
    tall = height >= 32
    hosts = [h for h in snap.hosts if h.active or h.rate > 0][: 4 if tall else 2]
    groups = list(snap.error_groups[: 4 if tall else 2])
    rows_room = room - len(hosts) - len(groups) - 1
    while rows_room < 2 and (hosts or groups):
        (groups if len(groups) >= len(hosts) else hosts).pop()
        rows_room = room - len(hosts) - len(groups) - 1
    for h in hosts:
        limit = f" · limit {h.limit}" if h.limit is not None else ""
        parts.append(
            _line(
                ("host ", "bold"),
                f"{h.host}  {h.active} in flight  {human_bytes(h.rate)}/s{limit}",
            )
        )
    # Retried transfers first (the ones to watch), then the largest.
    active = sorted(snap.active, key=lambda t: (-t.retries, -(t.offset + (t.total or t.received))))
    if active and rows_room >= 1:
        table = Table(box=None, show_header=True, header_style="dim", expand=True, padding=(0, 1))
        table.add_column("active", no_wrap=True, overflow="ellipsis", ratio=1)
        table.add_column("", width=10, no_wrap=True)
        table.add_column("size", justify="right", no_wrap=True)
        table.add_column("speed", justify="right", no_wrap=True)
        table.add_column("", no_wrap=True, width=3)
        shown = active if len(active) <= rows_room else active[: max(0, rows_room - 1)]
        for t in shown:
            total = t.total or 0
            done = min(t.received, total) if total else t.received
            size = (
                f"{human_bytes(t.offset + t.received)}/"
                f"{human_bytes(t.offset + total) if total else '?'}"
            )
            table.add_row(
                t.job.dest.rsplit("/", 1)[-1],
                ProgressBar(
                    total=max(total, 1), completed=done if total else 0, width=10, pulse=not total
                ),
                size,
                f"{human_bytes(t.speed(snap.now))}/s",
                f"↻{t.retries}" if t.retries else "",
            )
        if len(shown) < len(active):
            table.add_row(Text(f"… and {len(active) - len(shown)} more", style="dim"))
        parts.append(table)
    for g in groups:
        parts.append(_line(f"{g.error_class} ×{g.count}: {g.last}", style="red"))
    return Panel(Group(*parts), border_style="cyan", width=panel_width)


def render_summary(values: Mapping[str, Any]) -> Table:
    """The end-of-run table, from the report's ``totals`` (see :func:`~stacpull.report.totals`),
    so the screen and the JSON report always agree."""
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
        self.stats = stats
        self.console = console
        self.verbose = verbose
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
        size = self.console.size
        return render_dashboard(self.stats.snapshot(), width=size.width, height=size.height)

    def __call__(self, event: Event) -> None:
        """Events are already in :class:`RunStats`; the live view only reads it. Verbose:
        a line per finished file, printed above the live view."""
        if self.verbose and isinstance(event, JobFinished):
            o = event.outcome
            self.console.print(
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
    ``--quiet``), one line per failure; ``verbose`` adds one per file and token."""

    def __init__(
        self,
        stats: RunStats,
        stream: IO[str] | None = None,
        *,
        interval: float | None = 5.0,
        verbose: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stats = stats
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.verbose = verbose
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def line(self) -> str:
        """One progress line for the current state."""
        s = self.stats.snapshot()
        matched = f"/{s.matched}" if s.matched is not None else ""
        return (
            f"[stacpull] {_duration(s.elapsed)} items {s.items}{matched} · files {s.files_done}/{s.queued}"
            f" (done {s.downloaded}, skipped {s.skipped}, failed {s.failed}, refused {s.refused},"
            f" retries {s.retries}) · {human_bytes(s.bytes_received)} at {human_bytes(s.rate)}/s"
            f" · ETA {_eta_text(s)}"
        )

    def _write(self, text: str) -> None:
        with self._lock:
            # One line per event, a catalogue's control characters shown as escapes.
            self.stream.write(printable(scrub(text)) + "\n")
            self.stream.flush()

    def __call__(self, event: Event) -> None:
        if isinstance(event, JobFinished):
            o = event.outcome
            if o.status in (Status.FAILED, Status.REFUSED):
                self._write(f"[stacpull] {o.status.value} {o.job.label}: {o.error}")
            elif self.verbose:
                self._write(
                    f"[stacpull] {o.status.value} {o.job.dest} ({human_bytes(o.size or 0)})"
                )
        elif isinstance(event, JobRefused):
            r = event.refusal
            self._write(f"[stacpull] refused {r.item_id}/{r.asset_key}: {r.reason}")
        elif isinstance(event, HostLimitChanged):
            self._write(f"[stacpull] {event.host}: {event.limit} connection(s) ({event.reason})")
        elif isinstance(event, RunStopping):
            settle = "may finish" if event.grace is None else f"get {event.grace:g} s"
            self._write(
                f"[stacpull] stopping ({event.reason}): no new transfers; in-flight ones "
                f"{settle}; Ctrl-C {'stops them' if event.grace is None else 'again aborts at once'}"
            )
        elif isinstance(event, TokenRefreshed) and self.verbose:
            left = "" if event.expires_in is None else f", valid {event.expires_in:.0f} s"
            self._write(f"[stacpull] new access token ({event.reason}{left})")

    def _loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self._write(self.line())

    def __enter__(self) -> PlainProgress:
        if self.interval is not None:
            self._thread = threading.Thread(
                target=self._loop, args=(self.interval,), name="stacpull-progress", daemon=True
            )
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)


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
