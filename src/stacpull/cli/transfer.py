"""The transfer commands, ``download`` and ``mirror``, and their dry run (``--dry-run``): the
plan printed or as JSON, and the ``--max-bytes`` verdict.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any, NoReturn

import click

from ..errors import (
    ConfigError,
    SearchError,
    StacpullError,
)
from ..units import human_bytes

if TYPE_CHECKING:
    # Only what the commands declare (flags, columns, formats) is loaded on import; each
    # command imports what it runs (anyio, the config, rich, the search client, the
    # dashboard; the engine and the credentials bring aiohttp, a quarter of a second), so
    # help and listings start fast (benchmarks/startup.py).

    from ..config import Config
    from ..dryrun import PlanSummary
    from ..search import ItemPages

from .options import RETRY_FAILED_OPTION, download_options, option_group, query_options
from .render import fail, people, whole_table
from .run import build_config, execute, nothing_matched, saved_items, warn_ignored

__all__ = ["download", "mirror"]


_plan_options = option_group(
    click.option(
        "--dry-run",
        is_flag=True,
        help="Search and plan, then say what would be downloaded; transfer nothing.",
    ),
    click.option(
        "--max-bytes",
        metavar="SIZE",
        help="Refuse to start a run that would download more (e.g. 50GB) [download.max_bytes].",
    ),
    click.option("--yes", is_flag=True, help="Start even when the plan exceeds --max-bytes."),
    click.option(
        "--from",
        "from_file",
        type=click.Path(dir_okay=False),
        metavar="ITEMS",
        help="Download the items of a saved search instead of searching: an ItemCollection "
        "(stacpull search -o items.geojson, stac-client search), items one per line, or "
        "stac-geoparquet; - reads standard input.",
    ),
    click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print the final summary (with --dry-run: the plan) as JSON on stdout; "
        "progress and notes go to stderr.",
    ),
)


def _budget_verdict(summary: PlanSummary, budget: int) -> str | None:
    """``within``, ``exceeded`` or ``unknown`` (files of unknown size and the rest within
    it): the dry run's answer about ``--max-bytes``; ``None`` without a budget."""
    from ..dryrun import budget_error

    if not budget:
        return None
    if budget_error(summary, budget) is not None:
        return "exceeded"
    return "unknown" if summary.unguessed else "within"


def _fits(summary: PlanSummary) -> bool | None:
    """Whether DEST has room: ``None`` when files of unknown size may not fit."""
    if not summary.fits:
        return False
    return None if summary.unguessed else True


def _plan_json(summary: PlanSummary, budget: int, yes: bool, command: str) -> dict[str, Any]:
    """The dry run as ``download/mirror --dry-run --json`` prints it."""
    verdict = _budget_verdict(summary, budget)
    return {
        "command": command,
        "dry_run": True,
        "dest": summary.dest,
        "items": summary.items,
        "matched": summary.matched,
        "files": summary.files,
        "refused": summary.refused,
        "on_disk": {"files": summary.on_disk_files, "bytes": summary.on_disk_bytes},
        "to_fetch": {
            "files": summary.to_fetch_files,
            "known_bytes": summary.known_bytes,
            "estimated_files": summary.unknown_files - summary.unguessed,
            "estimated_bytes": summary.estimated_bytes,
            "unknown_size_files": summary.unguessed,
        },
        "free_bytes": summary.free_bytes,
        "min_free": summary.min_free,
        "fits": _fits(summary),
        "budget": None
        if verdict is None
        else {"max_bytes": budget, "verdict": verdict, "yes": yes},
        "assets": [
            {
                "key": plan.key,
                "files": plan.files,
                "on_disk": plan.on_disk,
                "on_disk_bytes": plan.on_disk_bytes,
                "to_fetch": plan.files - plan.on_disk,
                "known_bytes": plan.known_bytes,
                "estimated_files": plan.unknown - plan.unguessed,
                "estimated_bytes": plan.estimated_bytes,
                "unknown_size_files": plan.unguessed,
            }
            for plan in summary.assets.values()
        ],
        "exit_code": 2 if verdict == "exceeded" and not yes else 0,
    }


def _print_plan(summary: PlanSummary, budget: int, yes: bool = False) -> None:
    """The dry run's answer: what would be fetched, what is there, whether it fits."""
    from rich.console import Console
    from rich.markup import escape

    table = Console(highlight=False, soft_wrap=True)
    out = people(table)  # piped: the asset records alone on stdout
    matched = f" of {summary.matched} matched" if summary.matched is not None else ""
    out.print(f"[bold]dry run[/]: nothing was downloaded; DEST {escape(summary.dest)}")
    out.print(f"items:        {summary.items}{matched}")
    refused = f" ({summary.refused} refused: unsafe names)" if summary.refused else ""
    out.print(f"files:        {summary.files}{refused}")
    rows: list[tuple[str, ...]] = []
    records: list[tuple[str, ...]] = []
    for plan in summary.assets.values():
        estimate = f" (~{human_bytes(plan.estimated_bytes)})" if plan.estimated_bytes else ""
        counts = (str(plan.files), str(plan.on_disk), str(plan.files - plan.on_disk))
        rows.append(
            (
                plan.key,
                *counts,
                human_bytes(plan.known_bytes),
                f"{plan.unknown}{estimate}" if plan.unknown else "0",
            )
        )
        records.append((plan.key, *counts, str(plan.known_bytes), str(plan.unknown)))
    whole_table(
        table,
        ("asset", "files", "on disk", "to fetch", "bytes known", "no size (est.)"),
        rows,
        records=records,
        drop=(5, 2, 1, 4),
        right=(1, 2, 3, 4, 5),
    )
    out.print(
        f"on disk:      {summary.on_disk_files} files, {human_bytes(summary.on_disk_bytes)} "
        "(a real run skips them)"
    )
    unknown = ""
    if summary.unknown_files - summary.unguessed:
        unknown += (
            f" + ~{human_bytes(summary.estimated_bytes)} estimated for "
            f"{summary.unknown_files - summary.unguessed} file(s) without file:size (from "
            "the files earlier runs verified in DEST)"
        )
    if summary.unguessed:
        unknown += (
            f" + {summary.unguessed} file(s) of unknown size (no file:size, no earlier run "
            "to estimate from; download a few first, e.g. --max-items 2, and the dry run "
            "estimates the rest from them)"
        )
    out.print(
        f"to download:  {summary.to_fetch_files} files, {human_bytes(summary.known_bytes)} "
        f"known{unknown}"
    )
    fits = _fits(summary)
    verdict = (
        "[green]fits[/]"
        if fits
        else f"[yellow]unknown[/] ({summary.unguessed} file(s) of unknown size; the rest fits)"
        if fits is None
        else f"[red]does not fit[/] with download.min_free ({human_bytes(summary.min_free)}) to spare"
    )
    out.print(f"free at DEST: {human_bytes(summary.free_bytes)}: {verdict}")
    answer = _budget_verdict(summary, budget)
    if answer is not None:
        text = {
            "within": "[green]within[/]",
            "unknown": f"[yellow]unknown[/]: {summary.unguessed} file(s) of unknown size, "
            f"{human_bytes(summary.to_fetch_bytes)} known and estimated",
            "exceeded": "[red]exceeded[/]: "
            + ("--yes lets the run start" if yes else "a run needs --yes"),
        }[answer]
        out.print(f"budget:       {human_bytes(budget)}: {text}")


def _plan_only(
    config: Config,
    pages: ItemPages | None,
    from_file: str | None = None,
    *,
    yes: bool = False,
    as_json: bool = False,
    command: str = "download",
) -> NoReturn:
    """``--dry-run``: print the plan (or its JSON); exit 2 when it exceeds ``--max-bytes``
    without ``--yes``, with the reason on stderr, as the real run would refuse to start."""
    import anyio

    from ..dryrun import budget_error, dry_run

    try:
        summary = anyio.run(lambda: dry_run(config, pages=pages))
    except (ConfigError, SearchError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except StacpullError as exc:
        fail(str(exc), 1)
    if summary.items == 0:
        nothing_matched(config, from_file)
    budget = config.download.max_bytes
    if as_json:
        click.echo(json.dumps(_plan_json(summary, budget, yes, command), indent=2))
    else:
        _print_plan(summary, budget, yes)
    reason = budget_error(summary, budget) if budget else None
    if reason is not None and not yes:
        fail(reason, 2)
    sys.exit(0)


@click.command(short_help="Search and download the selected assets, verified.")
@query_options
@download_options
@RETRY_FAILED_OPTION
@_plan_options
def download(
    config_path: str | None,
    retry_failed: bool,
    dry_run: bool,
    max_bytes: str | None,
    yes: bool,
    from_file: str | None,
    as_json: bool,
    **kw: Any,
) -> None:
    """Search a STAC catalogue and download the selected assets into DEST, verified.

    \b
    Example:
      stacpull download --collection BiomassLevel1aIOC \\
          --filter "product:type='S1_SCS__1S'" \\
          --datetime 2025-09-29T00:00:00Z/2025-09-29T00:12:00Z --dest data/
    """
    warn_ignored(from_file, kw)
    config = build_config(
        config_path,
        kw,
        retry_failed=retry_failed,
        extra={"download.max_bytes": max_bytes},
        saved=from_file is not None,
    )
    config, pages = saved_items(from_file, config)
    if dry_run:
        _plan_only(config, pages, from_file, yes=yes, as_json=as_json, command="download")
    from ..engine import RunOptions  # the engine (and aiohttp) only for a transfer

    execute(
        config,
        RunOptions("download", retry_failed=retry_failed, yes=yes),
        pages,
        from_file,
        as_json=as_json,
    )


@click.command(short_help="Mirror a collection (or query) into DEST.")
@query_options
@download_options
@RETRY_FAILED_OPTION
@_plan_options
@click.option(
    "--prune",
    is_flag=True,
    help="Delete files whose items are no longer in the catalogue (after a complete search).",
)
def mirror(
    config_path: str | None,
    retry_failed: bool,
    dry_run: bool,
    max_bytes: str | None,
    yes: bool,
    from_file: str | None,
    as_json: bool,
    prune: bool,
    **kw: Any,
) -> None:
    """Mirror a whole collection (or query) into DEST, incrementally.

    Each run fetches what is new or changed since the last one (a later item `updated`, a
    changed size or checksum), keeps what is unchanged without re-hashing it, and reports
    files whose items left the catalogue (--prune deletes them). Safe to interrupt and to
    run from cron: the journal in DEST/.stacpull/ makes every run resumable.

    \b
    Example:
      stacpull mirror --collection BiomassLevel1aIOC --dest /data/biomass-l1a
    """
    warn_ignored(from_file, kw)
    config = build_config(
        config_path,
        kw,
        retry_failed=retry_failed,
        extra={"download.max_bytes": max_bytes},
        saved=from_file is not None,
    )
    if prune and (config.search.max_items is not None or from_file or retry_failed):
        fail("--prune needs the complete search; drop --max-items, --from and --retry-failed")
    config, pages = saved_items(from_file, config)
    if dry_run:
        _plan_only(config, pages, from_file, yes=yes, as_json=as_json, command="mirror")
    from ..engine import RunOptions  # the engine (and aiohttp) only for a transfer

    execute(
        config,
        RunOptions("mirror", retry_failed=retry_failed, prune=prune, yes=yes),
        pages,
        from_file,
        as_json=as_json,
    )
