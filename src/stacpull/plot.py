"""``stacpull report DEST --plot out.png``: a run's throughput and concurrency over time,
with each host's window of requests in flight (the limit the transfers in flight run
under, and the throttles that cut it).

matplotlib is an optional extra (``pip install 'stacpull[plot]'``); it is imported only
here, only when a plot is asked for, and drawn with the Agg backend (no display needed,
as on the server where the night's run happened).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import safeio
from .errors import ConfigError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_format", "plot_report"]

#: Seconds in the moving average drawn over the per-second throughput.
_SMOOTHING = 10

#: The file formats ``--plot`` draws, chosen by the name's suffix.
_PLOT_FORMATS = ("png", "svg", "pdf")


def plot_format(out: Path) -> str:
    """The format ``out``'s suffix asks for (:class:`ConfigError` for one not drawn), so a
    bad name is refused before any work, not by matplotlib after it."""
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in _PLOT_FORMATS:
        names = ", ".join(f".{f}" for f in _PLOT_FORMATS)
        raise ConfigError(f"--plot {out}: name a {names} file (the suffix picks the format)")
    return fmt


def _moving_average(values: Sequence[float], window: int) -> list[float]:
    out: list[float] = []
    total = 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_report(report: Mapping[str, Any], out: Path) -> Path:
    """Draw throughput (MB/s per second, and its moving average) above the transfers in
    flight and the hosts' windows, from a report's ``series`` and ``windows``; write it
    to ``out`` (PNG, SVG or PDF by its suffix)."""
    fmt = plot_format(out)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError(
            "--plot needs matplotlib: pip install 'stacpull[plot]' (or pip install matplotlib)"
        ) from None
    fig = _draw(report)
    try:
        _save(fig, out, fmt)
    finally:
        plt.close(fig)
    return out


def _draw(report: Mapping[str, Any]) -> Figure:
    """The figure: MB/s per second and its moving average on top, transfers in flight
    below, on a time axis in seconds (in minutes for a run over ten minutes)."""
    import matplotlib.pyplot as plt  # loaded (with the Agg backend) by plot_report

    series = report.get("series") or {}
    mb = [b / 1e6 for b in series.get("bytes", [])]
    active = list(series.get("active", []))
    if not mb:
        raise ConfigError("this report has no throughput series (written by stacpull < 0.3?)")
    last = float(report.get("seconds") or 0) - (len(mb) - 1)
    if 0.05 < last < 1:
        mb[-1] /= last  # the run ended partway through its last second
    seconds = list(range(len(mb)))
    minutes = len(mb) > 600
    xs = [s / 60 for s in seconds] if minutes else seconds
    fig, (top, bottom) = plt.subplots(
        2, 1, sharex=True, figsize=(10, 5.5), height_ratios=(3, 1.4), layout="constrained"
    )
    top.plot(xs, mb, color="#9ecae1", linewidth=0.8, label="per second")
    top.plot(
        xs,
        _moving_average(mb, _SMOOTHING),
        color="#08519c",
        linewidth=1.6,
        label=f"{_SMOOTHING} s average",
    )
    top.set_ylabel("MB/s")
    top.set_ylim(bottom=0)
    top.legend(loc="upper right", frameon=False)
    top.set_title(_title(report), fontsize=10)
    bottom.step(xs, active, where="post", color="#d94801", linewidth=1.2, label="in flight")
    bottom.set_ylabel("in flight")
    _draw_windows(bottom, report, 60.0 if minutes else 1.0)
    bottom.set_ylim(bottom=0)
    bottom.set_xlabel("minutes" if minutes else "seconds")
    for axis in (top, bottom):
        axis.grid(alpha=0.3)
    return fig


#: The colours of the hosts' windows (at most this many hosts, those that moved most, so
#: the legend stays legible), apart from the transfers in flight's orange.
_WINDOW_COLOURS = ("#2171b5", "#238b45", "#6a51a3", "#525252")


def _draw_windows(axis: Axes, report: Mapping[str, Any], unit: float) -> None:
    """Each host's window as a dashed step line to the run's end, a mark at each throttle;
    nothing for a report without ``windows`` (written before stacpull recorded them)."""
    windows = report.get("windows") or {}
    end = float(report.get("seconds") or 0)
    busiest = sorted(windows.items(), key=lambda kv: -int(kv[1].get("changes", 0)))
    drawn = 0
    for (host, record), colour in zip(busiest, _WINDOW_COLOURS, strict=False):
        steps = [(float(s["t"]), int(s["window"]), str(s["reason"])) for s in record["history"]]
        if not steps:
            continue
        xs = [t / unit for t, _, _ in steps] + [max(end, steps[-1][0]) / unit]
        ys = [w for _, w, _ in steps] + [steps[-1][1]]
        axis.step(
            xs,
            ys,
            where="post",
            linestyle="--",
            linewidth=1.1,
            color=colour,
            label=f"window {host}",
        )
        cuts = [(t / unit, w) for t, w, why in steps if why == "throttled"]
        if cuts:
            axis.plot(*zip(*cuts, strict=True), "v", color=colour, markersize=4)
        drawn += 1
    if drawn:
        axis.set_ylabel("in flight, window")
        axis.legend(loc="upper right", fontsize=8, framealpha=0.8)


def _title(report: Mapping[str, Any]) -> str:
    """The collections (or ``stacpull run``), when the run started, and its totals."""
    totals = report.get("totals", {})
    query = report.get("query", {})
    title = ", ".join(query.get("collections") or []) or "stacpull run"
    return (
        f"{title}\n{report.get('started', '')} · {totals.get('downloaded', 0)} downloaded, "
        f"{totals.get('failed', 0)} failed · {totals.get('mb_per_s', 0):.1f} MB/s average"
    )


def _save(fig: Figure, out: Path, fmt: str) -> None:
    """Write ``fig`` to ``out``: a new file beside it, renamed over it, never written
    through a link or onto a device; a failed write leaves nothing."""
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(out.name + ".part")
    made = False  # only a temporary file of ours is removed, never what else had its name
    try:
        with safeio.create_new(part, binary=True) as f:
            made = True
            fig.savefig(f, dpi=110, format=fmt)
        safeio.replace_regular(part, out)
        made = False  # renamed
    except OSError as exc:
        raise ConfigError(f"--plot {out}: cannot write: {exc.strerror or exc}") from None
    finally:
        if made:
            with contextlib.suppress(OSError):
                part.unlink()
