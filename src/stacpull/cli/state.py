"""The commands that read what a run left in DEST: ``report`` (the last run), ``status``
(the journal) and ``verify`` (re-hash everything).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .. import safeio
from ..errors import (
    ConfigError,
    StorageError,
    scrub_data,
)
from ..units import human_bytes

if TYPE_CHECKING:
    # Only what the commands declare (flags, columns, formats) is loaded on import; each
    # command imports what it runs (anyio, the config, rich, the search client, the
    # dashboard; the engine and the credentials bring aiohttp, a quarter of a second), so
    # help and listings start fast (benchmarks/startup.py).

    pass

from ..printable import printable
from .render import fail, people, tsv_line, whole_table

__all__ = ["report", "status", "verify"]


def _check_output(option: str, target: str) -> None:
    """Exit 2 when a file the user named for output exists and is not a regular file: a
    link, device or FIFO there is never written through nor replaced."""
    kind = safeio.not_regular(Path(target).expanduser())
    if kind is not None:
        fail(f"{option} {target}: not a regular file ({kind}); name a new or a regular file")


def _open_dest(dest: str) -> Path:
    path = Path(dest).expanduser()
    if not path.is_dir():
        fail(f"{dest} is not a directory")
    return path


def _report_json(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """``stacpull report --json``: the run report's summary (not its per-second series
    nor every file's outcome: those stay in the report file, named by ``report``).
    Raises KeyError/TypeError/ValueError when ``data`` is not a run report."""
    totals_ = data.get("totals") or {}
    if not isinstance(totals_, dict):
        raise TypeError("totals is not an object")
    failed = int(totals_.get("failed", 0) or 0)
    refused = int(totals_.get("refused", 0) or 0)
    ending = (
        "stopped" if data.get("fatal") else "interrupted" if data.get("interrupted") else "complete"
    )
    errors = [
        {"class": str(g["class"]), "count": int(g["count"]), "last": str(g["last"])}
        for g in data.get("errors") or []
    ]
    rows = [dict(row) for row in data.get("failed") or []]
    for row in rows:
        str(row["item"]), str(row["asset"])  # every failure names its file
    return {
        "dest": str(path.parent.parent),
        "report": str(path.resolve()),
        "started": data.get("started"),
        "finished": data.get("finished"),
        "seconds": float(data.get("seconds") or 0.0),
        "outcome": ending,
        "fatal": data.get("fatal"),
        "exit_code": 0 if ending == "complete" and not failed and not refused else 1,
        "query": dict(data.get("query") or {}),
        "totals": totals_,
        "errors": errors,
        "failed": rows,
        "refused": [dict(row) for row in data.get("refused") or []],
    }


@click.command(short_help="Summarise the last run in DEST.")
@click.argument("dest", type=click.Path(file_okay=False))
@click.option(
    "--plot",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Also draw throughput and transfers in flight over time, as .png, .svg or .pdf "
    "(needs stacpull[plot]).",
)
@click.option(
    "--failures",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="Failures to list.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report's summary as JSON.")
def report(dest: str, plot: str | None, failures: int, as_json: bool) -> None:
    """Summarise the last run in DEST: read the night's run in the morning.

    Prints when it ran, how it ended, the query, the same totals as the run's final
    table, its errors grouped by class and the first failures, from
    DEST/.stacpull/last-report.json. Exit 0 when that run completed with every file
    verified; 1 when files failed or were refused, or the run was stopped or interrupted.
    """
    from rich.console import Console
    from rich.markup import escape

    from ..dashboard import render_summary
    from ..journal import JOURNAL_DIR
    from ..plot import plot_format, plot_report

    if plot:
        try:
            plot_format(Path(plot))
        except ConfigError as exc:
            fail(str(exc))
    state = _open_dest(dest) / JOURNAL_DIR
    path = state / "last-report.json"
    if plot:
        _check_output("--plot", plot)
    try:
        safeio.ensure_directory(state, create=False)  # never read through a link
        # Scrubbed by shape as well: a report written before stacpull scrubbed its
        # writers may hold a catalogue's password or a token, and nothing is registered here.
        data = scrub_data(json.loads(safeio.read_regular(path)))
    except FileNotFoundError:
        fail(f"no run report in {dest} (runs write {JOURNAL_DIR}/last-report.json)")
    except OSError as exc:
        fail(f"cannot read {exc.filename or path}: it is {exc.strerror or exc}")
    except (ValueError, RecursionError) as exc:
        fail(f"cannot read {path}: {exc}")
    out = Console(highlight=False, soft_wrap=True)
    try:
        if not isinstance(data, dict):
            raise TypeError("not an object")
        view = _report_json(data, path)
        if not as_json:
            summary = render_summary({"seconds": view["seconds"], **view["totals"]})
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        fail(f"cannot read {path}: not a stacpull run report ({type(exc).__name__}: {exc})")
    if as_json:
        click.echo(json.dumps(view, indent=2))
        sys.exit(view["exit_code"])
    bad = [
        f"{n} {what}"
        for n, what in (
            (view["totals"].get("failed"), "failed"),
            (view["totals"].get("refused"), "refused"),
        )
        if n
    ]
    ending = (
        f"[red]stopped: {escape(str(view['fatal']))}[/]"
        if view["outcome"] == "stopped"
        else "[yellow]interrupted[/]"
        if view["outcome"] == "interrupted"
        else f"[red]complete, {', '.join(bad)}[/]"
        if bad
        else "[green]complete[/]"
    )
    out.print(
        f"run {escape(str(view['started'] or '?'))} → {escape(str(view['finished'] or '?'))} "
        f"({view['seconds']:.0f} s): {ending}"
    )
    query = {k: v for k, v in view["query"].items() if v not in (None, [], "")}
    shown = " ".join(f"{k}={v}" for k, v in query.items())
    out.print("query: " + printable(shown), markup=False)
    out.print(summary)
    # The report quotes the catalogue (ids, keys, errors): its control characters are
    # shown as escapes, never sent to the terminal.
    for group in view["errors"]:
        last = escape(printable(group["last"]))
        out.print(f"[red]{escape(printable(group['class']))}[/] ×{group['count']}: {last}")
    failed = view["failed"]
    for row in failed[:failures]:
        line = f"failed {row['item']}/{row['asset']}: {row.get('error')}"
        out.print(printable(line), markup=False)
    if len(failed) > failures:
        out.print(f"… and {len(failed) - failures} more failures (stacpull status {dest})")
    out.print(f"report: {view['report']}", markup=False)
    if plot:
        try:
            drawn = plot_report(data, Path(plot))
        except ConfigError as exc:
            fail(str(exc))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            fail(f"--plot: cannot draw {path}: not a stacpull run report ({exc})")
        out.print(f"plot: {drawn}", markup=False)
    sys.exit(view["exit_code"])


@click.command(short_help="Show what the journal of DEST knows.")
@click.argument("dest", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(dest: str, as_json: bool) -> None:
    """Print what the journal of DEST knows: done, failed with reasons, pending, bytes."""
    from rich.console import Console
    from rich.markup import escape

    from ..audit import read_status

    try:
        report = read_status(_open_dest(dest))
    except StorageError as exc:
        fail(str(exc))
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
        return
    table = Console(highlight=False, soft_wrap=True)
    out = people(table)  # piped: the status records alone on stdout
    if table.is_terminal:
        out.print(f"[bold]stacpull status[/] · {escape(dest)}")
    rows: list[tuple[str, ...]] = []
    records: list[tuple[str, ...]] = []
    for name in ("done", "pending", "active", "failed"):
        row = report.by_status.get(name)
        if row:
            rows.append((name, str(row["files"]), human_bytes(row["bytes"])))
            records.append((name, str(row["files"]), str(row["bytes"])))
    if report.refused:
        rows.append(("refused", str(len(report.refused)), "-"))
        records.append(("refused", str(len(report.refused)), "0"))
    whole_table(table, ("status", "files", "bytes on disk"), rows, records=records, right=(1, 2))
    if report.failure_counts:
        out.print("[red]failed[/], by reason:")
        for kind, count in sorted(report.failure_counts.items(), key=lambda kv: -kv[1]):
            out.print(f"  {printable(kind)}: {count}", markup=False)
            for path, message in report.failures[kind]:
                out.print(f"    {printable(f'{path}: {message}')}", markup=False)
    for item_id, key, reason in report.refused[:5]:  # refused for what these ids hold
        what = escape(printable(f"{item_id}/{key}: {reason}"))
        out.print(f"[magenta]refused[/] {what}")
    if report.partial_bytes:
        out.print(f"partial files to resume: {human_bytes(report.partial_bytes)}")
    if report.high_water_mark:
        out.print(f"newest item `updated` on disk: {report.high_water_mark}", markup=False)
    last = report.last_run
    if last is not None:
        summary = last.get("summary") or {}
        out.print(
            f"last run: {last['kind']}, {last.get('outcome') or 'running or killed'}"
            + (
                f" — {summary.get('downloaded', 0)} downloaded, {summary.get('skipped', 0)} "
                f"skipped, {summary.get('failed', 0)} failed"
                if summary
                else ""
            ),
            markup=False,
        )


@click.command(short_help="Re-hash the files of DEST and report any rot.")
@click.argument("dest", type=click.Path(file_okay=False))
@click.option(
    "-j", "--jobs", type=int, default=None, help="Files hashed in parallel [min(4, CPUs)]."
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def verify(dest: str, jobs: int | None, as_json: bool) -> None:
    """Re-hash every file of DEST against its checksum and report any rot.

    Uses the catalogue's file:checksum where there was one and otherwise the digest
    stacpull recorded while downloading; zips are also checked by their CRCs. Damaged or
    missing files are marked failed: the next run (or --retry-failed) fetches them again.
    Exit code 1 when anything is wrong.
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import Progress, TextColumn  # only this command draws a bar

    from ..audit import verify_dest

    path = _open_dest(dest)
    if jobs is not None and jobs < 1:
        fail("--jobs must be ≥ 1")
    err = Console(stderr=True)
    try:
        with Progress(
            TextColumn("verifying"),
            TextColumn("{task.completed} files"),
            TextColumn("{task.fields[size]}"),
            console=err,
            transient=True,
            disable=not err.is_terminal or as_json,
        ) as bar:
            task = bar.add_task("verify", total=None, size="")
            report = verify_dest(
                path,
                workers=jobs,
                progress=lambda n, b: bar.update(task, completed=n, size=human_bytes(b)),
            )
    except StorageError as exc:
        fail(str(exc))
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        table = Console(highlight=False, soft_wrap=True)
        out = people(table)  # piped: the problem records alone on stdout
        out.print(
            f"checked {report.checked} file(s), {human_bytes(report.bytes)}: {report.hashed} "
            f"hashed, {report.zip_only} by zip CRCs only, {report.size_only} by size only"
        )
        for problem in report.problems:
            detail = problem.detail
            if problem.earlier:
                detail += " (found by an earlier verify; not fetched again yet)"
            if table.is_terminal:
                shown = escape(printable(f"{problem.path}: {detail}"))
                out.print(f"[red]{problem.kind}[/] {shown}")
            else:
                click.echo(tsv_line((problem.kind, problem.path, detail)))
        if report.problems:
            out.print(
                f"[red]{len(report.problems)} damaged file(s)[/] marked failed; fetch them again "
                "with the same download/mirror command or with --retry-failed"
            )
        else:
            out.print("[green]no rot found[/]")
    sys.exit(0 if report.ok else 1)
