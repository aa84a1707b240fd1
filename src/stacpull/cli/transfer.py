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

if TYPE_CHECKING:
    # Only what the commands declare (flags, columns, formats) is loaded on import; each
    # command imports what it runs (anyio, the config, rich, the search client, the
    # dashboard; the engine and the credentials bring aiohttp, a quarter of a second), so
    # help and listings start fast (benchmarks/startup.py).

    from ..config import Config
    from ..dryrun import PlanSummary
    from ..search import ItemPages

from .options import RETRY_FAILED_OPTION, download_options, option_group, query_options
from .render import budget_verdict, fail, plan_fits, print_plan
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


def _plan_json(summary: PlanSummary, budget: int, yes: bool, command: str) -> dict[str, Any]:
    """The dry run as ``download/mirror --dry-run --json`` prints it."""
    verdict = budget_verdict(summary, budget)
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
        "fits": plan_fits(summary),
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
    from rich.console import Console

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
        print_plan(Console(highlight=False, soft_wrap=True), summary, budget, yes)
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
