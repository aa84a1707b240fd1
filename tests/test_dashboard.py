"""The dashboard renders what the events say (fake clock, rich console into a string)."""

from __future__ import annotations

import io
import json
from pathlib import Path

from rich.console import Console

from stacpull.dashboard import PlainProgress, render_dashboard, render_summary
from stacpull.events import (
    BytesReceived,
    HostLimitChanged,
    JobFinished,
    JobQueued,
    JobRefused,
    RunStarted,
    SearchProgress,
    TransferRetried,
    TransferStarted,
)
from stacpull.models import Job, Outcome, Refusal, Status
from stacpull.panels import sparkline
from stacpull.report import totals
from stacpull.stats import RunStats


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _job(n: int, size: int | None) -> Job:
    return Job(
        f"ITEM{n}",
        "BiomassLevel1aIOC",
        "product",
        f"https://h/{n}",
        f"C/ITEM{n}/ITEM{n}.ZIP",
        size=size,
    )


def _scripted() -> tuple[RunStats, FakeClock]:
    clock = FakeClock()
    stats = RunStats(clock)
    stats(RunStarted("https://h/catalogue/", ("BiomassLevel1aIOC",), "/data", 4))
    stats(SearchProgress(1, 4, 10))
    jobs = [_job(n, 10_000_000 if n % 2 else None) for n in range(4)]
    for job in jobs:
        stats(JobQueued(job))
    stats(TransferStarted(jobs[0], 0, None, 1))
    stats(TransferStarted(jobs[1], 0, 10_000_000, 1))
    for _ in range(10):
        clock.now += 0.5
        stats(BytesReceived(jobs[0], 1_000_000))
        stats(BytesReceived(jobs[1], 500_000))
    stats(JobFinished(Outcome(jobs[0], Status.DOWNLOADED, 10_000_000, size=10_000_000)))
    stats(TransferRetried(jobs[1], 1, "transfer cut", "TruncatedError", 1.0, 0))
    stats(
        JobFinished(
            Outcome(
                jobs[2], Status.FAILED, error="HTTP 404 Not Found", error_class="HTTPStatusError"
            )
        )
    )
    stats(
        JobRefused(
            Refusal("EVIL", "C", "product", "file name '../x' has an empty, '.' or '..' segment")
        )
    )
    return stats, clock


def test_live_view_shows_search_progress_transfers_and_errors() -> None:
    stats, _ = _scripted()
    console = Console(file=io.StringIO(), force_terminal=True, width=80, color_system=None)
    console.print(render_dashboard(stats.snapshot(), width=80))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "BiomassLevel1aIOC → /data" in text
    assert "4/10 items" in text and "page 1" in text
    assert "2/4" in text  # files finished of queued
    assert "ITEM1.ZIP" in text and "↻1" in text  # the active transfer with its retry
    assert "failed 1" in text and "refused 1" in text and "retried 1" in text
    assert "HTTP 404" in text
    assert "MB/s" in text and "ETA" in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_eta_is_marked_as_an_estimate_when_sizes_are_unknown() -> None:
    stats, _ = _scripted()
    eta, estimated = stats.snapshot().eta
    assert eta is not None and estimated


def test_summary_table_holds_the_totals() -> None:
    stats, _ = _scripted()
    console = Console(file=io.StringIO(), width=80, color_system=None)
    console.print(render_summary(totals(stats.snapshot())))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "downloaded" in text and "failed" in text and "MB/s" in text


def test_plain_progress_has_no_escape_codes() -> None:
    stats, _ = _scripted()
    out = io.StringIO()
    plain = PlainProgress(stats, out)
    plain(JobFinished(Outcome(_job(9, 5), Status.FAILED, error="boom", error_class="ConnectError")))
    out.write(plain.line() + "\n")
    text = out.getvalue()
    assert "\x1b" not in text
    assert "failed ITEM9/product: boom" in text and "files 2/4" in text


def test_unknown_sizes_are_estimated_from_finished_products() -> None:
    stats = RunStats(FakeClock())
    jobs = [_job(n, None) for n in range(3)] + [_job(9, 1_000)]
    for job in jobs:
        stats(JobQueued(job))
    stats(SearchProgress(1, 4, 4, done=True))
    stats(JobFinished(Outcome(jobs[3], Status.DOWNLOADED, 1_000, size=1_000)))
    stats(JobFinished(Outcome(jobs[0], Status.DOWNLOADED, 8_000_000, size=8_000_000)))
    total, estimated = stats.snapshot().estimated_total
    assert estimated and total == 1_000 + 8_000_000 * 3  # two pending products guessed at 8 MB
    console = Console(file=io.StringIO(), force_terminal=True, width=80, color_system=None)
    console.print(render_dashboard(stats.snapshot(), width=80))
    assert "/~24.0 MB (2 of unknown size)" in console.file.getvalue()  # type: ignore[attr-defined]


def _render(stats: RunStats, width: int, height: int) -> list[str]:
    console = Console(
        file=io.StringIO(), force_terminal=True, width=width, height=height, color_system=None
    )
    console.print(render_dashboard(stats.snapshot(), width=width, height=height))
    return console.file.getvalue().splitlines()  # type: ignore[attr-defined]


def _busy(clock: FakeClock, *, transfers: int = 30, hosts: int = 3) -> RunStats:
    """Three minutes of a busy mirror: many transfers on several hosts, a lull, retries."""
    stats = RunStats(clock)
    stats(RunStarted("https://h/catalogue/", ("BiomassLevel1cIOC",), "/data/l1c", transfers))
    stats(SearchProgress(7, 700, 1200))
    jobs = [
        Job(
            f"ITEM{n:04d}",
            "BiomassLevel1cIOC",
            "product",
            f"https://host{n % hosts}.example.org:8443/data/{n}",
            f"C/ITEM{n:04d}/BIO_S1_STA__1S_2026021{n % 10}T000000_very_long_product_name_{n}.ZIP",
            size=(n + 1) * 1_000_000,
        )
        for n in range(transfers + 10)
    ]
    for job in jobs:
        stats(JobQueued(job))
    for job in jobs[:transfers]:
        stats(TransferStarted(job, 0, job.size, 1))
    for second in range(180):
        clock.now += 1.0
        if 60 <= second < 80:
            continue  # a lull: the sparkline shows a gap
        for job in jobs[:transfers]:
            stats(BytesReceived(job, 10_000))
    stats(TransferRetried(jobs[3], 1, "transfer cut after 1.0 MB", "TruncatedError", 1.0, 0))
    stats(TransferRetried(jobs[4], 1, "transfer cut after 2.0 MB", "TruncatedError", 1.0, 0))
    stats(TransferRetried(jobs[5], 1, "HTTP 503 Service Unavailable", "HTTPStatusError", 1.0, 0))
    stats(HostLimitChanged("host1.example.org", 4, "throttled"))
    stats(JobFinished(Outcome(jobs[-1], Status.DOWNLOADED, 1_000, size=1_000)))
    return stats


def test_the_whole_pipeline_fits_80x24() -> None:
    clock = FakeClock()
    lines = _render(_busy(clock), 80, 24)
    text = "\n".join(lines)
    assert len(lines) <= 24 and max(len(line) for line in lines) <= 80
    assert "BiomassLevel1cIOC → /data/l1c" in text
    assert "search page 7: 700/1200 items · 40 files queued, 9 waiting" in text  # queue depth
    assert "1/40" in text  # files done of planned
    assert "300.0 kB/s now · 266.7 kB/s avg · 03:00 elapsed · ETA ~" in text
    spark = next(line for line in lines if "last 3 min" in line)
    assert "█" in spark and " " in spark.split("last")[0].strip("│ ")  # the lull is a gap
    assert "host host0.example.org:8443  10 in flight" in text  # per-host, busiest first
    assert "host1.example.org:8443  10 in flight  100.0 kB/s · window 4 · throttled" in text
    assert "TruncatedError ×2: ITEM0004/product: transfer cut after 2.0 MB" in text
    assert "HTTPStatusError ×1" in text  # grouped by class, newest class first
    assert "… and" in text and "more" in text  # 30 transfers do not fit in 24 lines
    assert "↻1" in text and "/s" in text  # per-file speed and retries


def test_a_wider_and_taller_terminal_is_used() -> None:
    clock = FakeClock()
    stats = _busy(clock)
    small, large = _render(stats, 80, 24), _render(stats, 160, 50)
    assert len(large) <= 50 and max(len(line) for line in large) <= 160
    assert max(len(line) for line in large) > 120
    shown = [sum(".ZIP" in line for line in lines) for lines in (small, large)]
    assert shown[1] > shown[0]  # more active transfers
    assert sum("host " in line for line in large) == 3  # every host
    # When not all fit: the retried transfers first, then the largest.
    shown_small = "\n".join(small)
    assert shown_small.count("↻1") == 3
    assert "/30.0 MB" in shown_small and "/21.0 MB" not in shown_small


def test_a_resize_redraws_within_the_new_size() -> None:
    stats = _busy(FakeClock())
    for width, height in ((80, 24), (60, 16), (132, 43), (80, 24)):
        lines = _render(stats, width, height)
        assert len(lines) <= height and max(len(line) for line in lines) <= width


def test_sparkline() -> None:
    assert sparkline([], 10) == ""
    assert sparkline([0, 1, 2, 4, 8], 5) == " ▁▂▄█"
    assert len(sparkline(list(range(1000)), 40)) == 40
    assert sparkline([5] * 7, 3)[-1] == "█"  # buckets align on the newest value


def test_report_series_and_event_log(tmp_path: Path) -> None:
    from stacpull.report import EventLog, ReportInfo, write_report

    clock = FakeClock()
    stats = _busy(clock, transfers=4, hosts=1)
    log = EventLog(tmp_path / "events.jsonl", clock=clock)
    for event in (
        JobQueued(_job(1, 5)),
        BytesReceived(_job(1, 5), 5),
        BytesReceived(_job(1, 5), 7),
        JobFinished(Outcome(_job(1, 5), Status.DOWNLOADED, 5, size=5)),
    ):
        clock.now += 0.4
        log(event)
    log.close()
    rows = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [r["event"] for r in rows] == ["JobQueued", "Throughput", "JobFinished"]
    assert rows[1]["bytes"] == 12 and rows[2]["status"] == "downloaded"
    outcomes = tmp_path / "outcomes.jsonl"
    outcomes.write_text('{"item": "A", "status": "downloaded"}\n{"item": "B", "sta')  # cut short
    path = write_report(tmp_path, stats, ReportInfo(), outcomes)
    report = json.loads(path.read_text())
    assert report["series"]["interval_s"] == 1
    assert len(report["series"]["bytes"]) >= 180 and report["series"]["active"][5] == 4
    assert sum(report["series"]["bytes"]) == report["totals"]["bytes_downloaded"]
    assert report["files"] == [{"item": "A", "status": "downloaded"}]
    assert {g["class"]: g["count"] for g in report["errors"]} == {
        "TruncatedError": 2,
        "HTTPStatusError": 1,
    }
    assert json.loads((tmp_path / "last-report.json").read_text()) == report
