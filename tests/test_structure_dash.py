"""The dashboard, the run's statistics and the report: small units, a dispatch table, sizes.

Issue 18: the live view is drawn from small render units, each rendered alone here with a
recording console (as rich tests its progress columns); :class:`RunStats` counts events
through a table keyed by event type, not an isinstance chain; the statistics live apart
from the report that writes them; and these modules keep the size targets.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import typing
from pathlib import Path

from rich.console import Console, RenderableType

from stacpull.events import (
    BytesReceived,
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
from stacpull.models import Job, Outcome, Refusal, Status

SRC = Path(__file__).resolve().parents[1] / "src" / "stacpull"

#: The modules this part of issue 18 owns, and the targets they keep.
OWNED = ("dashboard.py", "panels.py", "stats.py", "report.py", "plot.py", "events.py")
MAX_MODULE_LINES, MAX_FUNCTION_LINES, MAX_PARAMETERS = 600, 60, 6


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _job(n: int, size: int | None, host: str = "h.example.org") -> Job:
    return Job(f"ITEM{n}", "C", "product", f"https://{host}/{n}", f"C/ITEM{n}/F{n}.ZIP", size=size)


def _stats() -> typing.Any:
    """A run part-way: 4 files queued (one of unknown size), two in flight (one retried),
    one downloaded, one failed, one refused, a throttled host."""
    from stacpull.stats import RunStats

    clock = _Clock()
    stats = RunStats(clock)
    stats(RunStarted("https://h/catalogue/", ("L1A", "L1C"), "/data", 4))
    stats(SearchProgress(2, 40, 100))
    jobs = [_job(n, None if n == 3 else 10_000_000) for n in range(4)]
    for job in jobs:
        stats(JobQueued(job))
    stats(TransferStarted(jobs[0], 0, 10_000_000, 1))
    stats(TransferStarted(jobs[1], 2_000_000, 8_000_000, 1))
    for _ in range(10):
        clock.now += 0.5
        stats(BytesReceived(jobs[0], 1_000_000))
        stats(BytesReceived(jobs[1], 200_000))
    stats(TransferRetried(jobs[1], 1, "transfer cut", "TruncatedError", 1.0, 0))
    stats(JobFinished(Outcome(jobs[0], Status.DOWNLOADED, 10_000_000, size=10_000_000)))
    stats(JobFinished(Outcome(jobs[2], Status.FAILED, error="HTTP 404", error_class="HTTPError")))
    stats(JobRefused(Refusal("EVIL", "C", "product", "an empty segment")))
    stats(HostLimitChanged("h.example.org", 3, "throttled"))
    return stats


def _text(renderable: RenderableType, width: int = 80) -> str:
    console = Console(record=True, width=width, color_system=None)
    console.print(renderable)
    return console.export_text()


# -- the render units, each alone ----------------------------------------------------------


def test_header_line_names_the_collections_and_destination() -> None:
    from stacpull.panels import header_line

    snap = _stats().snapshot()
    assert _text(header_line(snap)).strip() == "stacpull L1A, L1C → /data"
    unnamed = dataclasses.replace(snap, collections=())
    assert _text(header_line(unnamed)).strip() == "stacpull (saved search) → /data"


def test_search_line_shows_pages_items_and_the_queue() -> None:
    from stacpull.panels import search_line

    snap = _stats().snapshot()
    assert _text(search_line(snap)).strip() == (
        "search page 2: 40/100 items · 4 files queued, 1 waiting"
    )
    done = dataclasses.replace(snap, search_done=True, matched=None)
    assert _text(search_line(done)).startswith("search done: 40 items")


def test_progress_bars_count_files_and_estimated_bytes() -> None:
    from stacpull.panels import progress_bars

    text = _text(progress_bars(_stats().snapshot(), 76))
    files, size = text.splitlines()
    assert files.startswith("files") and files.rstrip().endswith("2/4")
    assert size.startswith("bytes") and "10.0 MB/~" in size and "(1 of unknown size)" in size


def test_throughput_line_has_rates_elapsed_and_a_marked_eta() -> None:
    from stacpull.panels import throughput_line

    text = _text(throughput_line(_stats().snapshot()), 120).strip()
    assert text.startswith("⇣ ") and "/s now · " in text and "/s avg · 00:05 elapsed" in text
    assert "ETA ~" in text and text.endswith("(estimated)")


def test_history_line_is_a_sparkline_with_its_peak() -> None:
    from stacpull.panels import history_line

    snap = _stats().snapshot()
    text = _text(history_line(snap, 76)).rstrip()  # type: ignore[arg-type]
    assert text.endswith("last 5 s · peak 2.4 MB/s") and "█" in text
    assert history_line(dataclasses.replace(snap, series=()), 76) is None


def test_counters_line_adds_tokens_once_refreshed() -> None:
    from stacpull.panels import counters_line

    stats = _stats()
    line = "done 1  skipped 0  retried 1  failed 1  refused 1"
    assert _text(counters_line(stats.snapshot())).strip() == line
    stats(TokenRefreshed("oidc", "expiring", 60.0))
    assert _text(counters_line(stats.snapshot())).strip() == line + "  tokens 1"


def test_stopping_line_only_while_stopping() -> None:
    from stacpull.panels import stopping_line

    stats = _stats()
    assert stopping_line(stats.snapshot()) is None
    stats(RunStopping("SIGTERM", 5.0))
    assert _text(stopping_line(stats.snapshot()), 200).startswith(  # type: ignore[arg-type]
        "stopping (SIGTERM): no new transfers, in-flight ones settle"
    )


def test_host_line_shows_flight_rate_and_window() -> None:
    from stacpull.panels import host_line
    from stacpull.stats import HostView

    assert _text(host_line(HostView("a:443", 2, 1500.0, 9, 4))).strip() == (
        "host a:443  2 in flight  1.5 kB/s · window 4"
    )
    assert _text(host_line(HostView("b", 0, 0.0, 0, None))).strip() == "host b  0 in flight  0 B/s"
    (seen,) = _stats().snapshot().hosts
    assert seen.limit == 3 and seen.active == 1  # the throttled host's limit reaches it


def test_error_line_groups_by_class() -> None:
    from stacpull.panels import error_line
    from stacpull.stats import ErrorGroup

    assert _text(error_line(ErrorGroup("TruncatedError", 2, "x: cut"))).strip() == (
        "TruncatedError ×2: x: cut"
    )
    groups = _stats().snapshot().error_groups
    assert [g.error_class for g in groups] == ["refused", "HTTPError", "TruncatedError"]


def test_active_table_puts_retried_first_and_counts_the_rest() -> None:
    from stacpull.panels import active_table
    from stacpull.stats import ActiveTransfer

    active = [
        ActiveTransfer(_job(n, n * 1_000_000), 500_000, n * 1_000_000, 0, 0.0, int(n == 2))
        for n in range(1, 6)
    ]
    text = _text(active_table(active, 3, 1.0), 100)  # type: ignore[arg-type]
    lines = text.splitlines()
    assert lines[0].split() == ["active", "size", "speed"]
    assert "F2.ZIP" in lines[1] and "↻1" in lines[1]  # retried first
    assert "F5.ZIP" in lines[2] and "500.0 kB/5.0 MB" in lines[2]  # then the largest
    assert lines[3].strip() == "… and 3 more" and len(lines) == 4
    assert active_table(active, 0, 1.0) is None and active_table([], 5, 1.0) is None
    unknown = ActiveTransfer(_job(9, None), 2_000, None, 1_000, 0.0)
    assert "3.0 kB/?" in _text(active_table([unknown], 5, 1.0), 100)  # type: ignore[arg-type]


def test_share_height_gives_active_transfers_at_least_two_rows() -> None:
    from stacpull.panels import share_height

    snap = _stats().snapshot()
    roomy = share_height(snap, 20, tall=False)
    assert len(roomy.hosts) == 1 and len(roomy.groups) == 2 and roomy.rows == 16
    tight = share_height(snap, 4, tall=False)
    assert tight.rows == 2 and not tight.groups and len(tight.hosts) == 1
    assert len(share_height(snap, 40, tall=True).groups) == 3


def test_render_dashboard_only_stacks_the_units() -> None:
    from stacpull import dashboard, panels

    source = inspect.getsource(dashboard.render_dashboard)
    body = ast.parse(source).body[0]
    assert body.end_lineno is not None and body.end_lineno - body.lineno < 40
    called = {
        n.func.id
        for n in ast.walk(body)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
    }
    units = {"header_line", "search_line", "progress_bars", "throughput_line", "history_line"}
    units |= {"counters_line", "stopping_line", "share_height", "host_line", "active_table"}
    assert units | {"error_line"} <= called
    assert all(callable(getattr(panels, name)) for name in units)


# -- counting events: a table, not a chain -------------------------------------------------


def _isinstance_calls(cls: type) -> int:
    tree = ast.parse(inspect.getsource(cls))
    return sum(
        isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "isinstance"
        for n in ast.walk(tree)
    )


def test_run_stats_dispatches_on_the_event_type() -> None:
    from stacpull import events, stats

    assert _isinstance_calls(stats.RunStats) == 0
    call = ast.parse(inspect.getsource(stats.RunStats.__call__).strip()).body[0]
    assert call.end_lineno is not None and call.end_lineno - call.lineno < 8
    assert set(stats._HANDLERS) == set(typing.get_args(events.Event))  # every event counted


def test_plain_progress_dispatches_on_the_event_type() -> None:
    from stacpull.dashboard import PlainProgress

    assert _isinstance_calls(PlainProgress) == 0


def test_each_event_moves_its_counter() -> None:
    """The dispatch reaches every handler (the old chain's behaviour, event by event)."""
    stats = _stats()
    before = stats.snapshot()
    job = _job(7, 5, host="other:8443")
    for event in (
        JobQueued(job),
        TransferStarted(job, 0, 5, 1),
        BytesReceived(job, 3),
        TransferRetried(job, 1, "cut", "TruncatedError", 0.0, 0),
        SearchProgress(3, 41, 101, done=True, duplicates=2),
        TokenRefreshed("file", "file changed", None),
        RunStopping("Ctrl-C", None),
        RunFinished(9.0, True),
    ):
        stats(event)
    after = stats.snapshot()
    assert after.queued == before.queued + 1 and after.retries == before.retries + 1
    assert after.bytes_received == before.bytes_received + 3 and len(after.active) == 2
    assert (after.pages, after.items, after.matched, after.duplicates) == (3, 41, 101, 2)
    assert after.search_done and after.token_refreshes == 1 and after.stopping == "Ctrl-C"
    assert after.finished and after.elapsed == 9.0 and stats.interrupted
    assert after.hosts[-1].host == "other:8443" and after.hosts[-1].active == 1


# -- where things live ---------------------------------------------------------------------


def test_statistics_live_apart_from_the_report() -> None:
    """The counters are stats.py's; the report only reads them (no re-export)."""
    from stacpull import report, stats

    assert "RunStats" in stats.__all__ and "RunStats" not in report.__all__
    for name in ("EventLog", "OutcomeLog", "ReportInfo"):
        assert name in report.__all__
    for name in ("refusal_dict", "totals", "write_report"):
        assert name in report.__all__
    assert "RunStats" not in {
        n.name
        for n in ast.parse((SRC / "report.py").read_text()).body
        if isinstance(n, ast.ClassDef)
    }


def test_names_nobody_else_uses_are_private() -> None:
    from stacpull import dashboard, plot, report, stats

    assert not {"SPARK_WINDOW", "sparkline"} & set(dashboard.__all__)
    assert not {"PLOT_FORMATS", "SMOOTHING"} & set(plot.__all__)
    assert "outcome_dict" not in report.__all__ and not hasattr(report, "outcome_dict")
    fields = {f.name for f in dataclasses.fields(stats.Snapshot)}
    assert not {"errors", "host_limits", "catalog"} & fields  # read by nobody


def _internal(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            found.add(node.module.split(".")[0])
        elif (
            isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("stacpull")
        ):
            found.add(node.module.split(".")[1] if "." in node.module else "")
    return found


def test_the_view_and_its_counters_never_import_the_transfer_side() -> None:
    transfer_side = {"fetch", "transfer", "engine", "cli", "search", "api", "auth"}
    offenders = {
        name: _internal(SRC / name) & transfer_side
        for name in ("dashboard.py", "panels.py", "stats.py", "report.py")
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_counters_and_the_report_draw_nothing() -> None:
    for name in ("stats.py", "report.py"):
        imported = ast.parse((SRC / name).read_text())
        modules = {n.module or "" for n in ast.walk(imported) if isinstance(n, ast.ImportFrom)} | {
            a.name for n in ast.walk(imported) if isinstance(n, ast.Import) for a in n.names
        }
        assert not {m for m in modules if m.startswith("rich")}, name
    assert importlib.import_module("stacpull.panels").__doc__


# -- the size targets ----------------------------------------------------------------------


def _offences(name: str) -> list[str]:
    text = (SRC / name).read_text()
    found = [f"{name}: {n} lines"] if (n := len(text.splitlines())) > MAX_MODULE_LINES else []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert node.end_lineno is not None
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                found.append(f"{name}: {node.name} has {length} lines")
            a = node.args
            names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
            count = len([n for n in names if n not in ("self", "cls")])
            count += bool(a.vararg) + bool(a.kwarg)
            if count > MAX_PARAMETERS:
                found.append(f"{name}: {node.name} takes {count} parameters")
    return found


def test_owned_modules_keep_the_size_targets() -> None:
    assert all((SRC / name).is_file() for name in OWNED)
    assert [offence for name in OWNED for offence in _offences(name)] == []
