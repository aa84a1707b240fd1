"""The commands that read what a run left in DEST: ``report`` (the last run), ``status``
(the journal) and ``verify`` (re-hash everything).

They read DEST through :mod:`stacpull.audit` (the journal's status, the re-hash) and the
run report file; what they print is drawn by :mod:`.render`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from .. import safeio
from ..errors import ConfigError, StorageError, scrub_data
from ..units import human_bytes
from .render import fail, print_report, print_status, print_verify

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


def _bring_home(path: Path) -> None:
    """The rows a cluster run's workers recorded and its coordinator never merged (it was
    killed) brought into the main journal, newest row wins, as the next run's start would:
    ``status`` and ``verify`` tell what is on disk. Only when no run holds DEST (a live
    cluster run merges its own), and no owner is stopped (a view must not stop a worker)."""
    from ..journal import Journal
    from ..shards.sync import merge_all

    try:
        journal = Journal(path, create=False, lock=True)
    except StorageError:
        return  # no journal (the command says so), or a run holds DEST
    try:
        merge_all(journal, path, still=False)
    finally:
        journal.close()


def _report_json(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """``stacpull report --json``: the run report's summary (not its per-second series
    nor every file's outcome: those stay in the report file, named by ``report``; each
    host's window without its history). Raises KeyError/TypeError/ValueError when
    ``data`` is not a run report."""
    from ..report import window_summary

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
        "windows": window_summary(data),
    }


@click.command(short_help="Summarise the last run in DEST.")
@click.argument("dest", type=click.Path(file_okay=False))
@click.option(
    "--plot",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Also draw throughput, transfers in flight and each host's window over time, as "
    ".png, .svg or .pdf (needs stacpull[plot]).",
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

    from ..dashboard import render_summary

    data, path = _read_report(dest, plot)
    out = Console(highlight=False, soft_wrap=True)
    try:
        if not isinstance(data, dict):
            raise TypeError("not an object")
        view = _report_json(data, path)
        if not as_json:
            summary = render_summary(
                {"seconds": view["seconds"], **view["totals"]}, windows=view["windows"]
            )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        fail(f"cannot read {path}: not a stacpull run report ({type(exc).__name__}: {exc})")
    if as_json:
        click.echo(json.dumps(view, indent=2))
        sys.exit(view["exit_code"])
    print_report(out, view, summary=summary, failures=failures, dest=dest)
    if plot:
        out.print(f"plot: {_plot(data, path, plot)}", markup=False)
    sys.exit(view["exit_code"])


def _read_report(dest: str, plot: str | None) -> tuple[Any, Path]:
    """The last run report of ``dest`` (scrubbed) and its path; exit 2 when there is none,
    it cannot be read, or ``--plot`` names a format or a file it cannot write."""
    from ..journal import JOURNAL_DIR
    from ..plot import plot_format

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
        return scrub_data(json.loads(safeio.read_regular(path))), path
    except FileNotFoundError:
        fail(f"no run report in {dest} (runs write {JOURNAL_DIR}/last-report.json)")
    except OSError as exc:
        fail(f"cannot read {exc.filename or path}: it is {exc.strerror or exc}")
    except (ValueError, RecursionError) as exc:
        fail(f"cannot read {path}: {exc}")


def _plot(data: dict[str, Any], path: Path, plot: str) -> Path:
    """``report --plot``: the report drawn to ``plot``; exit 2 when it cannot be."""
    from ..plot import plot_report

    try:
        return plot_report(data, Path(plot))
    except ConfigError as exc:
        fail(str(exc))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        fail(f"--plot: cannot draw {path}: not a stacpull run report ({exc})")


@click.command(short_help="Show what the journal of DEST knows.")
@click.argument("dest", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.option(
    "--shards",
    "shards",
    is_flag=True,
    help="Show a cluster run's buckets instead: each one's owner, epoch, state and heartbeat.",
)
def status(dest: str, as_json: bool, shards: bool) -> None:
    """Print what the journal of DEST knows: done, failed with reasons, pending, bytes."""
    from rich.console import Console

    from ..audit import read_status

    if shards:
        _status_shards(dest, as_json)
        return
    try:
        path = _open_dest(dest)
        _bring_home(path)
        report = read_status(path)
    except StorageError as exc:
        fail(str(exc))
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
        return
    print_status(Console(highlight=False, soft_wrap=True), report, dest)


def _status_shards(dest: str, as_json: bool) -> None:
    """``status --shards``: the buckets' leases (exit 2 when they cannot be read)."""
    from rich.console import Console

    from .render_shards import print_shards, shards_status

    try:
        view = shards_status(_open_dest(dest))
    except StorageError as exc:
        fail(str(exc))
    if as_json:
        click.echo(json.dumps(view, indent=2))
        return
    print_shards(Console(highlight=False, soft_wrap=True), view, dest)


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
    from rich.progress import Progress, TextColumn  # only this command draws a bar

    from ..audit import verify_dest

    path = _open_dest(dest)
    if jobs is not None and jobs < 1:
        fail("--jobs must be ≥ 1")
    err = Console(stderr=True)
    try:
        _bring_home(path)
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
        print_verify(Console(highlight=False, soft_wrap=True), report)
    sys.exit(0 if report.ok else 1)
