"""The command line: flags → :class:`~stacpull.config.Config` → engine → exit code.

Exit codes: 0 every selected asset present and verified; 1 some files failed or were
refused; 2 bad input (flags, config, query, unreachable catalogue); 3 the run was stopped
(disk full, DEST unwritable); 130 interrupted. Every run is resumable: re-run it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, NoReturn

import anyio
import click
from rich.console import Console

from . import __version__
from .auth import load_token
from .config import Config, load_config, parse_bbox, parse_datetime_range
from .dashboard import LiveDashboard, PlainProgress, render_summary
from .engine import RunResult, run
from .errors import ConfigError, SearchError, StacpullError, StorageError
from .events import EventSink
from .report import RunStats
from .search import load_geojson_geometry

__all__ = ["main"]

_DEMO_COLLECTIONS = ("BiomassLevel1aIOC", "BiomassLevel1cIOC", "FLEXL1CommissioningProducts10")


def _split(values: tuple[str, ...]) -> list[str]:
    """Repeatable, comma-separated options → one flat list."""
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def _fail(message: str, code: int = 2) -> NoReturn:
    """Print one unwrapped line (users grep and paste these) and exit."""
    click.echo(f"stacpull: {message}", err=True)
    sys.exit(code)


def _choose_output(
    config: Config, stats: RunStats, err: Console
) -> tuple[EventSink | None, AbstractContextManager[Any]]:
    mode = config.output.dashboard
    if mode == "auto":
        mode = "rich" if err.is_terminal else "plain"
    if mode == "rich":
        live = LiveDashboard(stats, err)
        return live, live
    if mode == "plain":
        plain = PlainProgress(stats, interval=config.output.progress_interval)
        return plain, plain
    return None, nullcontext()


def _execute(config: Config) -> None:
    """Run the engine under the chosen dashboard, print the summary, exit with its code."""
    err = Console(stderr=True)
    out = Console()
    stats = RunStats()
    try:
        tokens = load_token(config.auth)
    except ConfigError as exc:
        _fail(str(exc))
    for warning in tokens.warnings:
        click.echo(f"stacpull: warning: {warning}", err=True)
    sink, view = _choose_output(config, stats, err)
    result: RunResult | None = None
    code = 0
    try:
        with view:
            result = anyio.run(lambda: run(config, sink=sink, stats=stats, tokens=tokens))
        code = result.exit_code
    except (ConfigError, SearchError) as exc:
        _fail(str(exc), 2)
    except StorageError as exc:
        click.echo(f"stacpull: run stopped: {exc}", err=True)
        code = 3
    except KeyboardInterrupt:
        click.echo("stacpull: interrupted; run the same command again to resume", err=True)
        code = 130
    except StacpullError as exc:
        _fail(str(exc), 1)
    out.print(render_summary(stats.snapshot()))
    dest = config.download.dest
    if result is not None and result.report is not None:
        out.print(f"report: {result.report}", highlight=False)
    if stats.failures:
        out.print(
            f"[red]{len(stats.failures)} file(s) failed[/]; re-run the same command to retry them "
            f"(details in the report under {dest}/.stacpull/)",
            highlight=False,
        )
    if stats.refused:
        out.print(
            f"[magenta]{stats.refused} asset(s) refused[/] (unsafe names in the metadata); see the report",
            highlight=False,
        )
    sys.exit(code)


def _query_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--catalog",
            metavar="URL",
            help="STAC API root [env STACPULL_CATALOG; default: the operational MAAP catalogue].",
        ),
        click.option(
            "--collection",
            "collections",
            multiple=True,
            metavar="ID",
            help="Collection id; repeat or comma-separate.",
        ),
        click.option(
            "--ids", multiple=True, metavar="ID,…", help="Item ids; repeat or comma-separate."
        ),
        click.option("--bbox", metavar="W,S,E,N", help="Bounding box in degrees."),
        click.option(
            "--intersects",
            type=click.Path(dir_okay=False),
            metavar="FILE",
            help="GeoJSON file with the area of interest.",
        ),
        click.option(
            "--datetime",
            "datetime_",
            metavar="START/END",
            help="RFC 3339 instant or interval; '..' for an open end.",
        ),
        click.option(
            "--filter",
            "filter_",
            metavar="CQL2",
            help="CQL2-text filter, e.g. \"product:type='S1_SCS__1S'\".",
        ),
        click.option("--max-items", type=int, metavar="N", help="Stop after N items."),
        click.option("--page-size", type=int, metavar="N", help="Items per search page [100]."),
        click.option(
            "--method",
            type=click.Choice(["GET", "POST"], case_sensitive=False),
            help="Search method [GET].",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _query_values(
    collections: tuple[str, ...],
    ids: tuple[str, ...],
    bbox: str | None,
    intersects: str | None,
    datetime_: str | None,
    filter_: str | None,
    max_items: int | None,
    page_size: int | None,
    method: str | None,
    catalog: str | None,
) -> dict[str, Any]:
    return {
        "search.catalog": catalog,
        "search.collections": _split(collections) or None,
        "search.ids": _split(ids) or None,
        "search.bbox": parse_bbox(bbox, "--bbox") if bbox else None,
        "search.intersects": load_geojson_geometry(intersects) if intersects else None,
        "search.datetime": parse_datetime_range(datetime_, "--datetime") if datetime_ else None,
        "search.filter": filter_,
        "search.max_items": max_items,
        "search.page_size": page_size,
        "search.method": method.upper() if method else None,
    }


def _download_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--assets",
            multiple=True,
            metavar="SEL,…",
            help="Asset selectors: maap (default), all, a key, a glob, role:R, type:T.",
        ),
        click.option(
            "--dest",
            type=click.Path(file_okay=False),
            metavar="DIR",
            help="Destination directory [env STACPULL_DEST].",
        ),
        click.option("-j", "--concurrency", type=int, metavar="N", help="Parallel transfers [8]."),
        click.option("--per-host", type=int, metavar="N", help="Connections per host [8]."),
        click.option(
            "--template", metavar="TPL", help="Destination template [{collection}/{item}/{name}]."
        ),
        click.option("--token", metavar="TOKEN", help="Bearer token [env STACPULL_TOKEN]."),
        click.option(
            "--token-file",
            type=click.Path(dir_okay=False),
            metavar="FILE",
            help="File holding the bearer token [token.txt].",
        ),
        click.option(
            "--auth-host",
            "auth_hosts",
            multiple=True,
            metavar="HOST",
            help="Another host that may receive the token; repeatable.",
        ),
        click.option(
            "--retries", type=int, metavar="N", help="Retries per file for transient errors [5]."
        ),
        click.option(
            "--stall-timeout",
            type=float,
            metavar="S",
            help="Abort a transfer after S seconds without a byte [60].",
        ),
        click.option(
            "--dashboard",
            type=click.Choice(["auto", "rich", "plain", "none"]),
            help="Progress display [auto].",
        ),
        click.option(
            "--config",
            "config_path",
            type=click.Path(dir_okay=False),
            metavar="FILE",
            help="Config file [./stacpull.toml].",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _download_values(
    assets: tuple[str, ...],
    dest: str | None,
    concurrency: int | None,
    per_host: int | None,
    template: str | None,
    token: str | None,
    token_file: str | None,
    auth_hosts: tuple[str, ...],
    retries: int | None,
    stall_timeout: float | None,
    dashboard: str | None,
) -> dict[str, Any]:
    return {
        "download.assets": _split(assets) or None,
        "download.dest": dest,
        "download.concurrency": concurrency,
        "download.per_host": per_host,
        "download.template": template,
        "download.retries": retries,
        "download.stall_timeout": stall_timeout,
        "auth.token": token,
        "auth.token_file": token_file,
        "auth.hosts": list(auth_hosts) or None,
        "output.dashboard": dashboard,
    }


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="stacpull")
def main() -> None:
    """Fast, resumable, verified bulk downloads from STAC catalogues (ESA MAAP first)."""


@main.command()
@_query_options
@_download_options
def download(config_path: str | None, **kw: Any) -> None:
    """Search a STAC catalogue and download the selected assets into DEST, verified.

    \b
    Example:
      stacpull download --collection BiomassLevel1aIOC \\
          --filter "product:type='S1_SCS__1S'" \\
          --datetime 2025-09-29T00:00:00Z/2025-09-29T00:12:00Z --dest data/
    """
    try:
        query = _query_values(
            *(
                kw.pop(k)
                for k in (
                    "collections",
                    "ids",
                    "bbox",
                    "intersects",
                    "datetime_",
                    "filter_",
                    "max_items",
                    "page_size",
                    "method",
                    "catalog",
                )
            )
        )
        values = _download_values(**kw)
        config = load_config(config_path, flags={**query, **values})
        if not config.search.collections and not config.search.ids:
            raise ConfigError(
                "name at least one --collection (or --ids): a whole catalogue is rarely what you want"
            )
        if not config.download.dest:
            raise ConfigError("--dest DIR is required (or set download.dest / STACPULL_DEST)")
    except ConfigError as exc:
        _fail(str(exc))
    _execute(config)


@main.command()
@click.option(
    "--dest",
    type=click.Path(file_okay=False),
    default="stacpull-demo",
    show_default=True,
    help="Where the demo downloads to.",
)
@click.option(
    "--items", type=int, default=12, show_default=True, help="Items per simulated collection."
)
@click.option(
    "--product-size",
    type=int,
    default=8_000_000,
    show_default=True,
    help="Approximate bytes per product zip.",
)
@click.option(
    "-j", "--concurrency", type=int, default=8, show_default=True, help="Parallel transfers."
)
@click.option(
    "--dashboard",
    type=click.Choice(["auto", "rich", "plain", "none"]),
    default="auto",
    show_default=True,
)
def demo(dest: str, items: int, product_size: int, concurrency: int, dashboard: str) -> None:
    """Run the whole pipeline against the built-in simulated MAAP catalogue.

    Starts the simulated catalogue on 127.0.0.1 (BIOMASS L1a with 2025 asset keys, BIOMASS
    L1c with 2026 keys, FLEX), then downloads products, quicklooks and KMZs of all three
    into DEST with the live dashboard, verifying every file. Run it twice: the second run
    skips everything.
    """
    from .sim import SimCatalog, SimServer, default_collections

    if items < 1 or product_size < 10_000:
        _fail("--items must be ≥ 1 and --product-size ≥ 10000")
    with SimServer(SimCatalog(default_collections(items, product_size))) as sim:
        Console(stderr=True).print(
            f"simulated MAAP catalogue at {sim.catalog_url}", highlight=False
        )
        try:
            config = Config().with_values(
                {
                    "search.catalog": sim.catalog_url,
                    "search.collections": list(_DEMO_COLLECTIONS),
                    "search.page_size": 10,
                    "download.dest": dest,
                    "download.concurrency": concurrency,
                    "auth.token": "sim-token",
                    "output.dashboard": dashboard,
                }
            )
        except ConfigError as exc:
            _fail(str(exc))
        _execute(config)


@main.group()
def sim() -> None:
    """The simulated MAAP catalogue."""


@sim.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8765, show_default=True)
@click.option("--items", type=int, default=100, show_default=True, help="Items per collection.")
@click.option(
    "--product-size",
    type=int,
    default=4_000_000,
    show_default=True,
    help="Approximate bytes per product zip.",
)
@click.option(
    "--enclosure-size",
    type=int,
    default=262_144,
    show_default=True,
    help="Bytes per L1c enclosure raster.",
)
@click.option(
    "--token",
    "tokens",
    multiple=True,
    default=("sim-token",),
    show_default=True,
    help="Accepted bearer token; repeatable.",
)
@click.option("--no-auth", is_flag=True, help="Serve data without a token.")
def sim_serve(
    host: str,
    port: int,
    items: int,
    product_size: int,
    enclosure_size: int,
    tokens: tuple[str, ...],
    no_auth: bool,
) -> None:
    """Serve the simulated catalogue until Ctrl-C, for any STAC client to use."""
    import dataclasses

    from .sim import SimCatalog, SimOptions, SimServer, default_collections

    specs = [
        dataclasses.replace(s, enclosure_size=enclosure_size)
        for s in default_collections(items, product_size)
    ]
    try:
        server = SimServer(
            SimCatalog(specs),
            host=host,
            port=port,
            options=SimOptions(tokens=set(tokens), require_auth=not no_auth),
        )
    except OSError as exc:
        _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    click.echo(f"STAC API:  {server.catalog_url}")
    click.echo(f"token:     {'(none needed)' if no_auth else ', '.join(tokens)}")
    click.echo(
        f"try:       stacpull download --catalog {server.catalog_url} --collection BiomassLevel1aIOC "
        f"--dest data --token {tokens[0] if tokens else 'TOKEN'}"
    )
    try:
        anyio.run(server.serve)
    except KeyboardInterrupt:
        click.echo("stopped")


if __name__ == "__main__":  # pragma: no cover
    main()
