"""The transfer commands, ``download`` and ``mirror``, and their dry run (``--dry-run``): the
plan printed or as JSON, and the ``--max-bytes`` verdict.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any, NoReturn

import click

from ..errors import ConfigError, SearchError, StacpullError

if TYPE_CHECKING:
    # Types only: each command imports what it runs (the API, the engine and aiohttp only
    # for a transfer), so help starts fast (benchmarks/startup.py).

    from ..config import Config
    from ..dryrun import PlanSummary
    from ..search import ItemPages

from .flags import (
    AuthFlags,
    JobFlags,
    MirrorFlags,
    OutputFlags,
    QueryFlags,
    TransferFlags,
    gather,
)
from .options import CLUSTER_OPTION, download_options, job_options, query_options
from .render import budget_verdict, fail, plan_fits, print_plan
from .run import build_config, execute, nothing_matched, saved_items, warn_ignored

__all__ = ["download", "mirror"]


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
        **summary.records(),  # the maap profile's rules, hrefs under two keys
        "exit_code": 2 if verdict == "exceeded" and not yes else 0,
    }


def _plan_only(config: Config, pages: ItemPages | None, job: JobFlags, command: str) -> NoReturn:
    """``--dry-run``: print the plan (or its JSON); exit 2 when it exceeds ``--max-bytes``
    without ``--yes``, with the reason on stderr, as the real run would refuse to start."""
    import anyio
    from rich.console import Console

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
        print_plan(Console(highlight=False, soft_wrap=True), summary, budget, job.yes)
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
@gather(**_GROUPS, mirroring=MirrorFlags)
@query_options
@download_options
@job_options
@click.option(
    "--prune",
    is_flag=True,
    help="Delete files whose items are no longer in the catalogue (after a complete search).",
)
@CLUSTER_OPTION
def mirror(
    query: QueryFlags,
    auth: AuthFlags,
    transfer: TransferFlags,
    output: OutputFlags,
    job: JobFlags,
    mirroring: MirrorFlags,
) -> None:
    """Mirror a whole collection (or query) into DEST, incrementally.

    Each run fetches what is new or changed since the last one (a later item `updated`, a
    changed size or checksum), keeps what is unchanged without re-hashing it, and reports
    files whose items left the catalogue (--prune deletes them). Safe to interrupt and to
    run from cron: the journal in DEST/.stacpull/ makes every run resumable.

    With --cluster, the search and the plan stay here and the transfers run on a Dask
    cluster's workers, each a shard of the job space, with one per-host budget; DEST
    must be the same directory at the same path on every worker (a shared file system).

    \b
    Example:
      stacpull mirror --collection BiomassLevel1aIOC --dest /data/biomass-l1a
      stacpull mirror --collection BiomassLevel1aIOC --dest /shared/l1a --cluster local:4
    """
    warn_ignored(job.from_file, query)
    config = build_config(query, auth, transfer, output, job)
    config = config.with_values(mirroring.values())  # checked by --cluster's type
    prune = mirroring.prune
    if prune and (config.search.max_items is not None or job.from_file or job.retry_failed):
        fail("--prune needs the complete search; drop --max-items, --from and --retry-failed")
    _start(config, job, "mirror", prune=prune)
