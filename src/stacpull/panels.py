"""The live view's render units: each draws one part of the dashboard from plain data.

Every unit takes a :class:`~stacpull.stats.Snapshot` (or one of its small parts: a
:class:`~stacpull.stats.HostView`, an :class:`~stacpull.stats.ErrorGroup`, the active
transfers) and returns a rich renderable, so each is tested alone, as rich's progress
columns are; :func:`stacpull.dashboard.render_dashboard` only stacks them in a panel.
Every line is a :class:`~rich.text.Text` that never wraps (an ellipsis instead), so the
view keeps its height on resize, and shows a catalogue's control characters as escapes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from .printable import printable
from .stats import ActiveTransfer, ErrorGroup, HostView, Snapshot
from .units import human_bytes

__all__ = [
    "active_table",
    "counters_line",
    "duration",
    "error_line",
    "eta_text",
    "header_line",
    "history_line",
    "host_line",
    "progress_bars",
    "search_line",
    "share_height",
    "sparkline",
    "stopping_line",
    "throughput_line",
]

_SPARK = "▁▂▃▄▅▆▇█"
_SPARK_WINDOW = 240  # seconds of throughput the sparkline covers


def duration(seconds: float | None) -> str:
    """``mm:ss`` or ``h:mm:ss``; ``--:--`` when unknown."""
    if seconds is None:
        return "--:--"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def eta_text(snap: Snapshot) -> str:
    """The time left, marked ``~`` while it rests on estimated sizes."""
    eta, estimated = snap.eta
    return ("~" if estimated and eta is not None else "") + duration(eta)


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


def header_line(snap: Snapshot) -> Text:
    """What is fetched and where to: ``stacpull COLLECTIONS → DEST``."""
    collections = ", ".join(snap.collections) or "(saved search)"
    return _line(("stacpull ", "bold cyan"), (f"{collections} → {snap.dest}", "bold"))


def search_line(snap: Snapshot) -> Text:
    """The search side: pages read (or done), items of matched, files queued and waiting."""
    matched = f"/{snap.matched}" if snap.matched is not None else ""
    search = "done" if snap.search_done else f"page {snap.pages}"
    return _line(
        f"search {search}: {snap.items}{matched} items · {snap.queued} files queued, "
        f"{snap.waiting} waiting"
    )


def progress_bars(snap: Snapshot, width: int) -> Table:
    """Two bars in ``width`` columns: files finished of queued, bytes of the (estimated)
    total, with how many files are of unknown size."""
    estimate, estimated = snap.estimated_total
    total_bytes = int(estimate)
    bar_width = max(10, min(60, width - 48))
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
    return bars


def throughput_line(snap: Snapshot) -> Text:
    """Current and average throughput, time elapsed, and the ETA (``~``, and why, while
    sizes are unknown)."""
    average = snap.bytes_received / snap.elapsed if snap.elapsed > 0 else 0.0
    eta, eta_estimated = snap.eta
    why = ""
    if eta is not None and eta_estimated:
        why = (
            f" (estimated from the {snap.unknown_done} finished)"
            if snap.queued_unknown and snap.unknown_done
            else " (estimated)"
        )
    return _line(
        ("⇣ ", "green"),
        f"{human_bytes(snap.rate)}/s now · {human_bytes(average)}/s avg · "
        f"{duration(snap.elapsed)} elapsed · ETA {eta_text(snap)}{why}",
    )


def history_line(snap: Snapshot, width: int) -> Text | None:
    """A sparkline of the last minutes' throughput with its peak, in ``width`` columns;
    ``None`` before the first whole second. The second under way is left out until the
    run has finished (it is still filling)."""
    history = list(snap.series[-_SPARK_WINDOW - 1 : -1] if not snap.finished else snap.series)
    history = history[-_SPARK_WINDOW:]
    if not history:
        return None
    span = len(history)
    label = f" last {span} s" if span < 120 else f" last {span // 60} min"
    label += f" · peak {human_bytes(max(history))}/s"
    return _line((sparkline(history, max(8, width - len(label))), "green"), label)


def counters_line(snap: Snapshot) -> Text:
    """Files done, skipped, retried, failed and refused; new access tokens, once any."""
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
    return _line(*counters)


def stopping_line(snap: Snapshot) -> Text | None:
    """Why the run winds down and what Ctrl-C does now; ``None`` while it runs."""
    if not snap.stopping:
        return None
    return _line(
        f"stopping ({snap.stopping}): no new transfers, in-flight ones settle; "
        "Ctrl-C again stops sooner, twice aborts at once",
        style="bold yellow",
    )


def host_line(host: HostView, width: int | None = None) -> Text:
    """One host: transfers in flight, throughput, and its window of requests in flight
    with why it last moved (``window 16 · ramp``), once it moved. In ``width`` columns
    the window outlasts the reason, and both outlast the end of a long host name."""
    name = host.host
    flow = f"  {host.active} in flight  {human_bytes(host.rate)}/s"
    if host.limit is None:
        return _line(("host ", "bold"), f"{name}{flow}")
    window = f" · window {host.limit}"
    why = f" · {host.reason}" if host.reason else ""
    if width is not None:
        room = width - len("host ") - len(flow) - len(window)
        if len(name) + len(why) > room:
            why = ""
        if room >= 8 < len(name) > room:  # narrower yet, the line's own ellipsis cuts it
            name = name[: room - 1] + "…"
    return _line(("host ", "bold"), f"{name}{flow}{window}", (why, "dim"))


def error_line(group: ErrorGroup) -> Text:
    """One class of errors: how many, and the latest message."""
    return _line(f"{group.error_class} ×{group.count}: {group.last}", style="red")


@dataclass(frozen=True, slots=True)
class _HeightShare:
    """How the height left below the fixed lines is shared: the hosts and error groups
    shown, and the rows left for active transfers (their header included)."""

    hosts: tuple[HostView, ...]
    groups: tuple[ErrorGroup, ...]
    rows: int


def share_height(snap: Snapshot, room: int, *, tall: bool) -> _HeightShare:
    """Share ``room`` lines: up to 2 busy hosts and 2 error groups (4 each when ``tall``),
    dropping error groups and hosts (the longer list first) until at least 2 rows are
    left for active transfers."""
    hosts = [h for h in snap.hosts if h.active or h.rate > 0][: 4 if tall else 2]
    groups = list(snap.error_groups[: 4 if tall else 2])
    rows = room - len(hosts) - len(groups) - 1
    while rows < 2 and (hosts or groups):
        (groups if len(groups) >= len(hosts) else hosts).pop()
        rows = room - len(hosts) - len(groups) - 1
    return _HeightShare(tuple(hosts), tuple(groups), rows)


def active_table(active: Sequence[ActiveTransfer], rows: int, now: float) -> Table | None:
    """The transfers in flight in at most ``rows`` rows besides the header: retried ones
    first (the ones to watch), then the largest, and ``… and N more`` for the rest.
    ``None`` when there is none or no room."""
    if not active or rows < 1:
        return None
    ordered = sorted(active, key=lambda t: (-t.retries, -(t.offset + (t.total or t.received))))
    table = Table(box=None, show_header=True, header_style="dim", expand=True, padding=(0, 1))
    table.add_column("active", no_wrap=True, overflow="ellipsis", ratio=1)
    table.add_column("", width=10, no_wrap=True)
    table.add_column("size", justify="right", no_wrap=True)
    table.add_column("speed", justify="right", no_wrap=True)
    table.add_column("", no_wrap=True, width=3)
    shown = ordered if len(ordered) <= rows else ordered[: max(0, rows - 1)]
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
            f"{human_bytes(t.speed(now))}/s",
            f"↻{t.retries}" if t.retries else "",
        )
    if len(shown) < len(ordered):
        table.add_row(Text(f"… and {len(ordered) - len(shown)} more", style="dim"))
    return table
