"""What the user sees: a rich live view on a terminal, plain progress lines otherwise.

The engine's events only update :class:`~stacpull.report.RunStats` counters; the live view
is drawn by rich's own refresh thread from :meth:`RunStats.snapshot`, so rendering never
runs in the transfer loop. Without a terminal (cron, CI, pipes) there are no control
codes: one progress line every ``progress_interval`` seconds and one line per failure.
The only importer of ``rich.live``.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from .events import (
    Event,
    HostLimitChanged,
    JobFinished,
    JobRefused,
    RunStopping,
    TokenRefreshed,
)
from .models import Status
from .report import RunStats, Snapshot

__all__ = ["LiveDashboard", "PlainProgress", "human_bytes", "render_dashboard", "render_summary"]


def human_bytes(n: float) -> str:
    """1234567 → '1.2 MB' (decimal units, as network rates are quoted)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


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


def render_dashboard(snap: Snapshot, *, width: int = 80, max_rows: int = 8) -> RenderableType:
    """The live view for one snapshot (pure: testable with a fake clock)."""
    collections = ", ".join(snap.collections) or "(saved search)"
    matched = f"/{snap.matched}" if snap.matched is not None else ""
    search = "done" if snap.search_done else f"page {snap.pages}"
    head = Text.assemble(
        ("stacpull ", "bold cyan"),
        (f"{collections} → {snap.dest}", "bold"),
        f"\nsearch {search}: {snap.items}{matched} items · {snap.queued} files queued",
    )
    total_files = max(snap.queued, 1)
    estimate, estimated = snap.estimated_total
    total_bytes = int(estimate)
    bar_width = max(10, min(40, width - 44))
    files = Table.grid(padding=(0, 1))
    files.add_row(
        Text("files", style="bold"),
        ProgressBar(total=total_files, completed=snap.files_done, width=bar_width),
        Text(f"{snap.files_done}/{snap.queued}"),
    )
    unknown = f" ({snap.queued_unknown} of unknown size)" if snap.queued_unknown else ""
    approx = "~" if estimated else ""
    files.add_row(
        Text("bytes", style="bold"),
        ProgressBar(
            total=max(total_bytes, 1), completed=min(snap.bytes_done, total_bytes), width=bar_width
        ),
        Text(f"{human_bytes(snap.bytes_done)}/{approx}{human_bytes(total_bytes)}{unknown}"),
    )
    average = snap.bytes_received / snap.elapsed if snap.elapsed > 0 else 0.0
    speed = Text.assemble(
        ("⇣ ", "green"),
        f"{human_bytes(snap.rate)}/s now · {human_bytes(average)}/s average · ",
        f"ETA {_eta_text(snap)} · elapsed {_duration(snap.elapsed)}",
    )
    counters = Text.assemble(
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
    )
    active = Table(box=None, show_header=True, header_style="dim", expand=False, padding=(0, 1))
    name_width = max(16, width - 44)
    active.add_column("active", no_wrap=True, max_width=name_width, overflow="ellipsis")
    active.add_column("", width=12)
    active.add_column("", justify="right", no_wrap=True)
    rows = sorted(snap.active, key=lambda t: -(t.total or t.received))
    for t in rows[:max_rows]:
        total = t.total or 0
        done = min(t.received, total) if total else t.received
        label = t.job.dest.rsplit("/", 1)[-1]
        retry = f" ↻{t.retries}" if t.retries else ""
        size = f"{human_bytes(t.offset + t.received)}/{human_bytes(t.offset + total) if total else '?'}"
        active.add_row(
            label,
            ProgressBar(
                total=max(total, 1), completed=done if total else 0, width=12, pulse=not total
            ),
            size + retry,
        )
    if len(rows) > max_rows:
        active.add_row(Text(f"… and {len(rows) - max_rows} more", style="dim"), "", "")
    parts: list[RenderableType] = [head, files, speed, counters]
    if snap.stopping:
        parts.append(
            Text(
                f"stopping ({snap.stopping}): no new transfers, in-flight ones settle; "
                "Ctrl-C again stops sooner, twice aborts at once",
                style="bold yellow",
            )
        )
    if rows:
        parts.append(active)
    if snap.errors:
        parts.append(Text("\n".join(e[: width - 4] for e in snap.errors[-3:]), style="red"))
    return Panel(Group(*parts), border_style="cyan", width=min(width, 120))


def render_summary(snap: Snapshot) -> Table:
    """The end-of-run table: the same totals the JSON report holds."""
    table = Table(title="stacpull summary", show_header=False, title_style="bold")
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    seconds = max(snap.elapsed, 1e-9)
    for label, value in (
        ("downloaded", str(snap.downloaded)),
        ("skipped (already verified)", str(snap.skipped)),
        ("failed", str(snap.failed)),
        ("refused (unsafe or unusable)", str(snap.refused)),
        ("retries", str(snap.retries)),
        *((("new access tokens", str(snap.token_refreshes)),) if snap.token_refreshes else ()),
        ("bytes downloaded", human_bytes(snap.bytes_received)),
        ("seconds", f"{snap.elapsed:.1f}"),
        ("throughput", f"{snap.bytes_received / seconds / 1e6:.1f} MB/s"),
    ):
        table.add_row(label, value)
    return table


class LiveDashboard:
    """The rich live view: start/stop around a run; feeds on :class:`RunStats`."""

    def __init__(self, stats: RunStats, console: Console, *, refresh_per_second: float = 4) -> None:
        self.stats = stats
        self.console = console
        self._live = Live(
            console=console,
            get_renderable=self._render,
            refresh_per_second=refresh_per_second,
            transient=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )

    def _render(self) -> RenderableType:
        height = self.console.size.height
        return render_dashboard(
            self.stats.snapshot(),
            width=self.console.size.width,
            max_rows=max(2, min(12, height - 14)),
        )

    def __call__(self, event: Event) -> None:
        """Events are already in :class:`RunStats`; the live view only reads it."""

    def __enter__(self) -> LiveDashboard:
        self._live.start(refresh=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.stop()


class PlainProgress:
    """No terminal: a progress line every ``interval`` seconds, one line per failure."""

    def __init__(
        self,
        stats: RunStats,
        stream: IO[str] | None = None,
        *,
        interval: float = 5.0,
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
            self.stream.write(text + "\n")
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

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._write(self.line())

    def __enter__(self) -> PlainProgress:
        self._thread = threading.Thread(target=self._loop, name="stacpull-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
