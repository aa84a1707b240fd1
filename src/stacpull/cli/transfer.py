"""The transfer commands, ``download`` and ``mirror``, and their dry run (``--dry-run``): the
plan printed or as JSON, and the ``--max-bytes`` verdict.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any, NoReturn

import click

from ..errors import ConfigError, SearchError, StacpullError
from ..units import human_bytes

if TYPE_CHECKING:
    # Types only: each command imports what it runs (the API, the engine and aiohttp only
    # for a transfer), so help starts fast (benchmarks/startup.py).
    from rich.console import Console

    from ..config import Config
    from ..dryrun import PlanSummary
    from ..search import ItemPages

from .flags import AuthFlags, JobFlags, OutputFlags, QueryFlags, TransferFlags, gather
from .options import download_options, job_options, query_options
from .render import fail, people, whole_table
from .run import build_config, execute, nothing_matched, saved_items, warn_ignored

__all__ = ["download", "mirror"]


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
    _print_assets(table, summary)
    out.print(
        f"on disk:      {summary.on_disk_files} files, {human_bytes(summary.on_disk_bytes)} "
        "(a real run skips them)"
    )
    unknown = _unknown_sizes(summary)
    out.print(
        f"to download:  {summary.to_fetch_files} files, {human_bytes(summary.known_bytes)} "
        f"known{unknown}"
    )
    _print_verdicts(out, summary, budget, yes)


def _print_assets(table: Console, summary: PlanSummary) -> None:
    """The plan per asset key: files, on disk, to fetch, bytes known, without a size."""
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


def _unknown_sizes(summary: PlanSummary) -> str:
    """What the bytes to download leave out: estimated files, files of unknown size."""
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
    return unknown


def _print_verdicts(out: Console, summary: PlanSummary, budget: int, yes: bool) -> None:
    """Whether the plan fits in DEST and within ``--max-bytes``."""
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


def _plan_only(config: Config, pages: ItemPages | None, job: JobFlags, command: str) -> NoReturn:
    """``--dry-run``: print the plan (or its JSON); exit 2 when it exceeds ``--max-bytes``
    without ``--yes``, with the reason on stderr, as the real run would refuse to start."""
    import anyio

    from ..api import adry_run
    from ..dryrun import budget_error

    try:  # asyncio's own loop, as ever for the plan (uvloop is for transfers)
        summary = anyio.run(lambda: adry_run(config, pages=pages))
    except (ConfigError, SearchError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except StacpullError as exc:
        fail(str(exc), 1)
    if summary.items == 0:
        nothing_matched(config, job.from_file)
    budget = config.download.max_bytes
    if job.as_json:
        click.echo(json.dumps(_plan_json(summary, budget, job.yes, command), indent=2))
    else:
        _print_plan(summary, budget, job.yes)
    reason = budget_error(summary, budget) if budget else None
    if reason is not None and not job.yes:
        fail(reason, 2)
    sys.exit(0)


def _start(config: Config, job: JobFlags, kind: str, *, prune: bool = False) -> NoReturn:
    """A transfer command's config, run: its plan alone with ``--dry-run``, else the run
    through the API (the engine and aiohttp are loaded only here)."""
    config, pages = saved_items(job.from_file, config)
    if job.dry_run:
        _plan_only(config, pages, job, kind)
    from ..api import RunOptions

    options = RunOptions(kind, retry_failed=job.retry_failed, prune=prune, yes=job.yes)
    execute(config, options, pages, job.from_file, as_json=job.as_json)


_GROUPS = {
    "query": QueryFlags,
    "auth": AuthFlags,
    "transfer": TransferFlags,
    "output": OutputFlags,
    "job": JobFlags,
}


@click.command(short_help="Search and download the selected assets, verified.")
@gather(**_GROUPS)
@query_options
@download_options
@job_options
def download(
    query: QueryFlags, auth: AuthFlags, transfer: TransferFlags, output: OutputFlags, job: JobFlags
) -> None:
    """Search a STAC catalogue and download the selected assets into DEST, verified.

    \b
    Example:
      stacpull download --collection BiomassLevel1aIOC \\
          --filter "product:type='S1_SCS__1S'" \\
          --datetime 2025-09-29T00:00:00Z/2025-09-29T00:12:00Z --dest data/
    """
    warn_ignored(job.from_file, query)
    _start(build_config(query, auth, transfer, output, job), job, "download")


@click.command(short_help="Mirror a collection (or query) into DEST.")
@gather(**_GROUPS)
@query_options
@download_options
@job_options
@click.option(
    "--prune",
    is_flag=True,
    help="Delete files whose items are no longer in the catalogue (after a complete search).",
)
def mirror(
    query: QueryFlags,
    auth: AuthFlags,
    transfer: TransferFlags,
    output: OutputFlags,
    job: JobFlags,
    prune: bool,
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
    warn_ignored(job.from_file, query)
    config = build_config(query, auth, transfer, output, job)
    if prune and (config.search.max_items is not None or job.from_file or job.retry_failed):
        fail("--prune needs the complete search; drop --max-items, --from and --retry-failed")
    _start(config, job, "mirror", prune=prune)
