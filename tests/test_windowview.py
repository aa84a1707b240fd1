"""Each host's window made visible (issue 19): the counters, the live view's host row, plain
progress, the run report (JSON and ``stacpull report``) and ``report --plot``."""

from __future__ import annotations

import io
import itertools
import json
from pathlib import Path

import pytest
from rich.console import Console

from stacpull.dashboard import PlainProgress, render_dashboard, render_summary
from stacpull.events import (
    BytesReceived,
    HostLimitChanged,
    JobQueued,
    RunStarted,
    TransferStarted,
)
from stacpull.models import Job
from stacpull.panels import host_line
from stacpull.plot import plot_report
from stacpull.report import totals, window_summary
from stacpull.sim import Faults, SimCatalog, SimOptions, SimServer, default_collections
from stacpull.stats import HostView, RunStats

from .conftest import TOKEN, Clock, Recorder, cli, pull


def _job(n: int, host: str) -> Job:
    return Job(f"ITEM{n}", "C", "product", f"https://{host}/{n}", f"C/ITEM{n}/F{n}.ZIP", size=10**8)


def _busy(clock: Clock, host: str = "data.example.org:8443") -> RunStats:
    """Two transfers streaming from ``host`` for 10 s while its window ramps."""
    stats = RunStats(clock)
    stats(RunStarted("https://h/catalogue/", ("L1A",), "/data", 8))
    jobs = [_job(n, host) for n in range(2)]
    for job in jobs:
        stats(JobQueued(job))
        stats(TransferStarted(job, 0, job.size, 1))
    bare = host.rsplit(":", 1)[0].strip("[]")
    for second, (window, reason) in enumerate([(16, "ramp"), (32, "ramp"), (16, "ramp undone")]):
        clock.now += 1.0 + second
        for job in jobs:
            stats(BytesReceived(job, 1_000_000))
        stats(HostLimitChanged(bare, window, reason))
    return stats


def _text(renderable: object, width: int) -> list[str]:
    console = Console(record=True, width=width, color_system=None, file=io.StringIO())
    console.print(renderable)
    return console.export_text().splitlines()


# -- the counters ----------------------------------------------------------------------------


def test_a_host_row_knows_its_window_and_why_it_last_moved() -> None:
    clock = Clock()
    (host,) = _busy(clock).snapshot().hosts
    assert (host.host, host.limit, host.reason) == ("data.example.org:8443", 16, "ramp undone")
    ipv6 = _busy(Clock(), "[::1]:8080")  # the limiter names the host without brackets
    assert ipv6.snapshot().hosts[0].limit == 16


def test_the_history_has_times_from_the_run_start_and_the_range() -> None:
    clock = Clock()
    stats = _busy(clock)
    record = stats.windows()["data.example.org"]
    assert [(s["t"], s["window"], s["reason"]) for s in record["history"]] == [
        (1.0, 16, "ramp"),
        (3.0, 32, "ramp"),
        (6.0, 16, "ramp undone"),
    ]
    assert (record["window"], record["reason"], record["min"], record["max"]) == (
        16,
        "ramp undone",
        16,
        32,
    )
    assert (record["changes"], record["throttles"], record["dropped"]) == (3, 0, 0)


def test_the_history_stays_bounded_keeping_first_last_and_every_throttle() -> None:
    clock = Clock()
    stats = RunStats(clock)
    for n in range(5000):  # an overnight run probing every few seconds
        clock.now += 3.0
        throttled = n % 100 == 50
        reason = "throttled" if throttled else ("probe up" if n % 2 else "probe down")
        stats(HostLimitChanged("h", 4 if throttled else 16 + n % 2, reason))
    record = stats.windows()["h"]
    history = record["history"]
    assert len(history) <= 200 and record["changes"] == 5000
    assert record["dropped"] == 5000 - len(history)
    assert history[0] == {"t": 3.0, "window": 16, "reason": "probe down"}
    assert history[-1]["t"] == 15000.0 and history[-1]["reason"] == "probe up"
    assert sum(s["reason"] == "throttled" for s in history) == record["throttles"] == 50
    times = [s["t"] for s in history]
    assert times == sorted(times)
    middle = [t for s, t in zip(history, times, strict=True) if s["reason"] != "throttled"]
    assert max(b - a for a, b in itertools.pairwise(middle)) < 400  # spread evenly


def test_throttles_alone_past_the_bound_are_thinned_too() -> None:
    clock = Clock()
    stats = RunStats(clock)
    for _ in range(1000):
        clock.now += 2.0
        stats(HostLimitChanged("h", 1, "throttled"))
    record = stats.windows()["h"]
    assert len(record["history"]) <= 200 and record["throttles"] == 1000
    assert record["history"][0]["t"] == 2.0 and record["history"][-1]["t"] == 2000.0


# -- the live view ---------------------------------------------------------------------------


def test_the_host_row_shows_the_window_and_the_reason() -> None:
    row = HostView("data.example.org:8443", 12, 3_500_000.0, 9, 16, "ramp")
    assert _text(host_line(row), 120) == [
        "host data.example.org:8443  12 in flight  3.5 MB/s · window 16 · ramp"
    ]
    unmoved = HostView("data.example.org:8443", 12, 3_500_000.0, 9, None)
    assert _text(host_line(unmoved), 120) == ["host data.example.org:8443  12 in flight  3.5 MB/s"]


_LONG = HostView("a-very-long-data-host.example.org:8443", 12, 3_500_000.0, 9, 16, "ramp undone")


@pytest.mark.parametrize("width", [50, 60, 80, 100])
def test_a_narrow_row_keeps_the_window_before_the_reason_and_the_name(width: int) -> None:
    (line,) = _text(host_line(_LONG, width), width + 20)
    assert len(line.rstrip()) <= width
    assert "12 in flight  3.5 MB/s · window 16" in line
    assert ("ramp undone" in line) == (width >= 100)
    assert ("a-very-long-data-host.example.org:8443" in line) == (width >= 80)


@pytest.mark.parametrize(("width", "height"), [(40, 16), (50, 20), (60, 20), (80, 24), (160, 50)])
def test_the_dashboard_fits_with_the_window_on_the_host_row(width: int, height: int) -> None:
    stats = _busy(Clock())
    lines = _text(render_dashboard(stats.snapshot(), width=width, height=height), width)
    assert len(lines) <= height and max(len(line) for line in lines) <= width
    if width < 60:  # too narrow for the numbers: the row ends in an ellipsis, as others do
        assert any(line.startswith("│ host data.example.org:8443  2 in") for line in lines)
        return
    (row,) = [line for line in lines if "in flight" in line and line.lstrip("│ ").startswith("h")]
    assert "· window 16" in row
    assert ("ramp undone" in row) == (width >= 160)  # 80: no room left for the reason


# -- plain progress --------------------------------------------------------------------------


def _plain(verbose: bool) -> list[str]:
    stream = io.StringIO()
    progress = PlainProgress(RunStats(Clock()), stream, interval=None, verbose=verbose)
    for window, reason in [(16, "ramp"), (20, "probe up"), (20, "probe kept"), (10, "throttled")]:
        progress(HostLimitChanged("data.example.org", window, reason))
    return stream.getvalue().splitlines()


def test_plain_progress_prints_only_throttles_unless_verbose() -> None:
    assert _plain(verbose=False) == ["[stacpull] data.example.org: window 10 (throttled)"]
    assert _plain(verbose=True) == [
        "[stacpull] data.example.org: window 16 (ramp)",
        "[stacpull] data.example.org: window 20 (probe up)",
        "[stacpull] data.example.org: window 20 (probe kept)",
        "[stacpull] data.example.org: window 10 (throttled)",
    ]


# -- the report ------------------------------------------------------------------------------


def test_the_summary_adds_a_line_per_host_window() -> None:
    stats = _busy(Clock())
    snap = stats.snapshot()
    plain = _text(render_summary(totals(snap)), 80)
    windows = window_summary({"windows": stats.windows()})
    assert windows == {
        "data.example.org": {
            "window": 16,
            "reason": "ramp undone",
            "changes": 3,
            "throttles": 0,
            "min": 16,
            "max": 32,
        }
    }
    lines = _text(render_summary(totals(snap), windows), 80)
    assert lines[: len(plain)] == plain  # the table itself is unchanged
    assert lines[len(plain) :] == [
        "window data.example.org: 16 at the end (ramp undone) · 16-32 over 3 changes"
    ]
    assert window_summary({}) == {} and window_summary({"windows": None}) == {}
    with pytest.raises(TypeError):
        window_summary({"windows": [1]})


@pytest.fixture
def bursty() -> SimServer:
    """503/429 bursts: today's burst rule (and the window's cut) throttles the host."""
    faults = Faults(
        burst_probability=0.3, burst_length=3, burst_statuses=(503, 429), retry_after=0.2, seed=3
    )
    catalog = SimCatalog(default_collections(count=5, product_size=300_000))
    return SimServer(catalog, options=SimOptions(faults=faults))


def test_a_throttled_run_records_its_windows_in_the_report(
    bursty: SimServer, tmp_path: Path
) -> None:
    recorder = Recorder()
    with bursty as sim:
        result = pull(sim, tmp_path, recorder, retries=15, max_items=3)
    assert result.ok and result.report is not None
    changes = recorder.of_type(HostLimitChanged)
    assert any(c.reason == "throttled" for c in changes)
    report = json.loads(result.report.read_text())
    (host,) = report["windows"]
    record = report["windows"][host]
    assert host == changes[0].host and record["changes"] == len(changes)
    assert [(s["window"], s["reason"]) for s in record["history"]] == [
        (c.limit, c.reason) for c in changes
    ]
    times = [s["t"] for s in record["history"]]
    assert times == sorted(times) and 0 <= times[0] <= times[-1] <= report["seconds"] + 1
    assert record["window"] == changes[-1].limit and record["throttles"] >= 1

    code, out, err = cli("report", str(tmp_path), token=TOKEN)
    assert code == 0, err
    assert f"window {host}: {changes[-1].limit} at the end ({changes[-1].reason})" in out
    assert "throttled" in out
    code, out, err = cli("report", str(tmp_path), "--json", token=TOKEN)
    assert code == 0, err
    view = json.loads(out)
    assert view["windows"][host]["throttles"] == record["throttles"]
    assert "history" not in view["windows"][host]  # the series stay in the report file


def test_the_plot_draws_each_host_window(tmp_path: Path) -> None:
    import matplotlib

    history = [
        {"t": 0.5, "window": 16, "reason": "ramp"},
        {"t": 2.0, "window": 8, "reason": "throttled"},
        {"t": 4.0, "window": 10, "reason": "probe up"},
    ]
    report = {
        "seconds": 6.0,
        "totals": {},
        "series": {"interval_s": 1, "bytes": [10**6] * 6, "active": [8, 8, 8, 6, 6, 4]},
        "windows": {"data.example.org": {"changes": 3, "history": history}},
    }
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # the legend stays searchable text
        drawn = plot_report(report, tmp_path / "run.svg")
        bare = plot_report({**report, "windows": {}}, tmp_path / "bare.svg")
    assert "window data.example.org" in drawn.read_text()
    assert "window data.example.org" not in bare.read_text()
