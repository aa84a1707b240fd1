"""The dashboard renders what the events say (fake clock, rich console into a string)."""

from __future__ import annotations

import io

from rich.console import Console

from stacpull.dashboard import PlainProgress, render_dashboard, render_summary
from stacpull.events import (
    BytesReceived,
    JobFinished,
    JobQueued,
    JobRefused,
    RunStarted,
    SearchProgress,
    TransferRetried,
    TransferStarted,
)
from stacpull.models import Job, Outcome, Refusal, Status
from stacpull.report import RunStats


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
    console.print(render_summary(stats.snapshot()))
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
