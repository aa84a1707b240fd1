"""The command line: flags → :class:`~stacpull.config.Config` → engine → exit code.

Exit codes: 0 every selected asset present and verified; 1 some files failed or were
refused; 2 bad input (flags, config, query, unreachable catalogue); 3 the run was stopped
(disk full, DEST unwritable); 130 interrupted. Every run is resumable: re-run it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import fields, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn

import click

from . import safeio
from ._version import __version__
from .errors import (
    SECRETS,
    ConfigError,
    CredentialsError,
    ScrubFilter,
    SearchError,
    StacpullError,
    StorageError,
    first_error,
    scrub,
    scrub_data,
)
from .export import FORMATS
from .listing import Cell, Column, print_listing, printable, tsv_line
from .units import human_bytes

if TYPE_CHECKING:
    # Only what the commands declare (flags, columns, formats) is loaded on import; each
    # command imports what it runs (anyio, the config, rich, the search client, the
    # dashboard; the engine and the credentials bring aiohttp, a quarter of a second), so
    # help and listings start fast (benchmarks/startup.py).
    import anyio
    from rich.console import Console

    from .auth import TokenProvider
    from .config import Config
    from .dryrun import PlanSummary
    from .engine import RunOptions, RunResult, StopSignal
    from .events import EventSink
    from .report import RunStats
    from .search import ItemPages

__all__ = ["main"]

_DEMO_COLLECTIONS = ("BiomassLevel1aIOC", "BiomassLevel1cIOC", "FLEXL1CommissioningProducts10")


def _split(values: tuple[str, ...]) -> list[str]:
    """Repeatable, comma-separated options → one flat list."""
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def _fail(message: str, code: int = 2) -> NoReturn:
    """Print one unwrapped line (users grep and paste these) and exit. A reason quoting a
    server's answer keeps to that line: its line breaks become spaces and its control
    characters (a terminal's escapes) are shown, never sent."""
    click.echo(f"stacpull: {printable(scrub(message))}", err=True)
    sys.exit(code)


def _people(out: Console) -> Console:
    """Where the lines for people go (tallies, verdicts, hints): beside the listing on a
    terminal; on stderr when stdout is a pipe or a file, whose lines are then the records
    alone (one rule for every command, so ``cmd | awk`` never meets a sentence)."""
    from rich.console import Console

    if out.is_terminal:
        return out
    return Console(stderr=True, highlight=False, soft_wrap=True)


def _choose_output(
    config: Config, stats: RunStats, err: Console
) -> tuple[EventSink | None, AbstractContextManager[Any]]:
    from .dashboard import LiveDashboard, PlainProgress

    out = config.output
    mode = out.dashboard
    if out.verbosity == "quiet" and mode != "none":
        # Only errors while it runs, and the summary at the end.
        quiet = PlainProgress(stats, interval=None)
        return quiet, quiet
    if mode == "auto":
        debugging = logging.getLogger("stacpull").isEnabledFor(logging.DEBUG)
        mode = "rich" if err.is_terminal and not debugging else "plain"
    verbose = out.verbosity == "verbose"
    if mode == "rich":
        live = LiveDashboard(stats, err, verbose=verbose)
        return live, live
    if mode == "plain":
        plain = PlainProgress(stats, interval=out.progress_interval, verbose=verbose)
        return plain, plain
    return None, nullcontext()


def _with_log_file(
    config: Config,
    stats: RunStats,
    sink: EventSink | None,
    view: AbstractContextManager[Any],
) -> tuple[EventSink | None, AbstractContextManager[Any]]:
    """Add ``--log-file`` (opened as user-named outputs are: never through a link) to the
    chosen view; exit 2 when it cannot be opened."""
    from .dashboard import LogFile

    name = config.output.log_file
    if name is None:
        return sink, view
    path = Path(name).expanduser()
    try:
        stream = safeio.open_append(path)
    except OSError as exc:
        _fail(f"--log-file {name}: {exc.strerror or exc}")
    log_file = LogFile(stats, stream, interval=config.output.progress_interval)

    def both(event: Any) -> None:
        if sink is not None:
            sink(event)
        log_file(event)

    stack = ExitStack()
    stack.enter_context(log_file)
    stack.enter_context(view)
    return both, stack


async def _watch_signals(stop: StopSignal, abort: anyio.CancelScope) -> None:
    """First Ctrl-C (or SIGTERM): graceful stop (or a drain cut short). Second: abort."""
    import anyio

    try:
        receiver = anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM)
    except NotImplementedError:  # pragma: no cover - Windows: Ctrl-C raises KeyboardInterrupt
        return
    with receiver as signals:
        async for signum in signals:
            if not stop.requested or stop.drain:
                stop.request("Ctrl-C" if signum == signal.SIGINT else "SIGTERM")
                continue
            click.echo("stacpull: aborting; everything written so far stays resumable", err=True)
            abort.cancel()
            return


async def _run_with_signals(
    config: Config,
    *,
    sink: EventSink | None,
    stats: RunStats,
    tokens: TokenProvider,
    options: RunOptions,
    pages: ItemPages | None = None,
) -> RunResult | None:
    """The engine under a signal watcher; ``None`` when a second Ctrl-C aborted it."""
    import anyio

    from .engine import StopSignal, run

    stop = StopSignal()
    result: RunResult | None = None
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_watch_signals, stop, tg.cancel_scope)
            result = await run(
                config,
                sink=sink,
                stats=stats,
                tokens=tokens,
                options=replace(options, pages=pages),
                stop=stop,
            )
            tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise first_error(group) from None
    return result


def _run_json(
    config: Config,
    command: str,
    code: int,
    stats: RunStats,
    result: RunResult | None,
    error: str | None,
) -> dict[str, Any]:
    """The final summary as ``download/mirror --json`` prints it (one schema, whatever
    happened: a run that never started has zero totals)."""
    from .errors import redact_url
    from .report import refusal_dict, totals

    ending = {130: "interrupted", 3: "stopped"}.get(code, "error" if error else "complete")
    return {
        "command": command,
        "dry_run": False,
        "dest": str(config.download.dest),
        "outcome": ending,
        "exit_code": code,
        "error": error,
        "totals": totals(stats.snapshot()),
        "failed": [
            {
                "path": o.job.dest,
                "item": o.job.item_id,
                "collection": o.job.collection,
                "asset": o.job.asset_key,
                "error_class": o.error_class,
                "error": o.error,
            }
            for o in stats.failures
        ],
        "refused": [refusal_dict(r) for r in stats.refusals],
        "report": None if result is None or result.report is None else str(result.report),
        "gone": list(result.gone) if result is not None else [],
        "pruned": result.pruned if result is not None else 0,
        "kept": list(result.kept) if result is not None else [],
        "not_judged": result.not_judged if result is not None else None,
        "catalog": redact_url(config.search.catalog),
    }


def _execute(
    config: Config,
    options: RunOptions | None = None,
    pages: ItemPages | None = None,
    from_file: str | None = None,
    *,
    as_json: bool = False,
) -> None:
    """Run the engine under the chosen dashboard, print the summary, exit with its code.
    ``pages`` replaces the search (``--from``); ``as_json``: the summary goes to stdout as
    JSON alone, and everything for people to stderr."""
    import anyio
    from rich.console import Console

    from .auth import load_credentials
    from .dashboard import render_summary
    from .engine import RunOptions, loop_options
    from .report import RunStats, totals

    opts = options or RunOptions()
    err = Console(stderr=True)
    # The final summary is the run's result, as --json prints it: stdout, unless --json.
    out = Console(stderr=as_json)
    error: str | None = None
    stats = RunStats()
    try:
        tokens = load_credentials(config.auth)
    except ConfigError as exc:
        _fail(str(exc))
    for warning in tokens.warnings:
        click.echo(f"stacpull: warning: {warning}", err=True)
    sink, view = _choose_output(config, stats, err)
    sink, view = _with_log_file(config, stats, sink, view)
    result: RunResult | None = None
    code = 0
    try:
        with view:
            result = anyio.run(
                lambda: _run_with_signals(
                    config, sink=sink, stats=stats, tokens=tokens, options=opts, pages=pages
                ),
                backend_options=loop_options(),
            )
        code = 130 if result is None else result.exit_code
    except (ConfigError, SearchError) as exc:
        if as_json:
            click.echo(json.dumps(_run_json(config, opts.kind, 2, stats, None, scrub(str(exc)))))
        _fail(str(exc), 2)
    except (StorageError, CredentialsError) as exc:
        click.echo(f"stacpull: run stopped: {printable(scrub(str(exc)))}", err=True)
        code, error = 3, scrub(str(exc))
    except KeyboardInterrupt:
        code = 130
    except StacpullError as exc:
        if as_json:
            click.echo(json.dumps(_run_json(config, opts.kind, 1, stats, None, scrub(str(exc)))))
        _fail(str(exc), 1)
    snap = stats.snapshot()
    if result is not None and result.items == 0 and not opts.retry_failed and code == 0:
        _nothing_matched(config, from_file)
    out.print(render_summary(totals(snap)))
    dest = config.download.dest
    if result is not None and result.report is not None:
        out.print(f"report: {result.report}", highlight=False, soft_wrap=True)
    if code == 130:
        out.print(
            "[yellow]stopped before the end[/]: partial files and the journal are kept; "
            "run the same command again to resume",
            highlight=False,
            soft_wrap=True,
        )
    if stats.failures:
        out.print(
            f"[red]{len(stats.failures)} file(s) failed[/]; re-run the same command (or add "
            f"--retry-failed) to retry them; `stacpull status {dest}` lists the reasons",
            highlight=False,
            soft_wrap=True,
        )
    if stats.refused:
        out.print(
            f"[magenta]{stats.refused} asset(s) refused[/] (unsafe or colliding names in the "
            "metadata); see the report",
            highlight=False,
            soft_wrap=True,
        )
    if snap.duplicates:
        out.print(
            f"{snap.duplicates} duplicate item(s) in the search results (same collection and "
            "id): each planned once, the first listing wins",
            highlight=False,
            soft_wrap=True,
        )
    if result is not None and code == 0 and snap.downloaded == 0 and snap.skipped:
        what = "the journal" if opts.retry_failed else "the search"
        out.print(
            f"[green]up to date[/]: all {snap.skipped} file(s) already verified on disk; "
            f"no data was requested, only {what}",
            highlight=False,
            soft_wrap=True,
        )
    if result is not None and opts.prune and result.not_judged:
        out.print(
            f"[yellow]not pruned[/]: {result.not_judged}; files are judged gone only after a "
            "complete search of the same query",
            highlight=False,
            soft_wrap=True,
        )
    if result is not None and result.kept:
        click.echo(
            f"stacpull: warning: kept {len(result.kept)} file(s) of items no longer in the "
            "catalogue: a symbolic link or special file is on the way (prune deletes only "
            "regular files inside DEST), e.g. " + ", ".join(result.kept[:3]),
            err=True,
        )
    if result is not None and result.gone:
        if result.pruned or opts.prune:
            out.print(
                f"pruned {result.pruned} file(s) whose items left the catalogue",
                highlight=False,
                soft_wrap=True,
            )
        else:
            out.print(
                f"[yellow]{len(result.gone)} file(s) belong to items no longer in the catalogue[/]"
                " (kept; add --prune to delete them), e.g. " + ", ".join(result.gone[:3]),
                highlight=False,
                soft_wrap=True,
            )
    if as_json:
        fatal = error or (result.fatal if result is not None else None)
        summary = _run_json(config, opts.kind, code, stats, result, fatal)
        click.echo(json.dumps(summary, indent=2))
    sys.exit(code)


def _options(*options: Callable[[Any], Any]) -> Callable[[Callable[..., Any]], Any]:
    """Several click options as one decorator, listed in the order --help shows them."""

    def apply(fn: Callable[..., Any]) -> Any:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return apply


_CONFIG = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Config file, read over the user's and ./stacpull.toml [env STACPULL_CONFIG].",
)
#: The query and discovery commands' --catalog (auth check declares its own: there the
#: catalogue is what decides which host may receive the token).
_CATALOG = click.option(
    "--catalog",
    metavar="URL",
    help="STAC API root [env STACPULL_CATALOG; default: the operational MAAP catalogue].",
)

_PROFILE = click.option(
    "--profile",
    metavar="NAME",
    help="A named catalogue and its settings from the config file (built in: maap, "
    "maap-preop) [env STACPULL_PROFILE].",
)


def _debug_here(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """``--debug`` after the subcommand: the same as before it."""
    if value and not ctx.meta.get("stacpull.debug"):
        ctx.meta["stacpull.debug"] = True
        _debug_logging(ctx)


class _Duration(click.ParamType):  # type: ignore[type-arg]  # generic from click 8.2 on
    """A time flag: ``500ms``, ``30s``, ``2m``, ``1h30m`` or seconds; anything else is one
    line naming the flag, exit 2 (click's usage error would print three)."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from .config import parse_duration

        flag = param.opts[0] if param is not None and param.opts else "duration"
        try:
            return parse_duration(value, flag)
        except ConfigError as exc:
            _fail(str(exc))


_DURATION_TYPE = _Duration()


_DEBUG = click.option(
    "--debug",
    is_flag=True,
    expose_value=False,
    callback=_debug_here,
    help="Log requests, retries, token refreshes and split files to stderr (never a token).",
)


_query_options = _options(
    _PROFILE,
    _CATALOG,
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
)


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
    from .config import parse_bbox, parse_datetime_range
    from .search import load_geojson_geometry

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


_AUTH_OPTIONS = [
    click.option(
        "--offline-token-file",
        type=click.Path(dir_okay=False),
        metavar="FILE",
        help="MAAP offline token (or credentials.txt with OFFLINE_TOKEN=): stacpull gets "
        "and refreshes access tokens itself [env STACPULL_OFFLINE_TOKEN holds the token].",
    ),
    click.option(
        "--token-url", metavar="URL", help="OIDC token endpoint [MAAP's; env STACPULL_TOKEN_URL]."
    ),
    click.option(
        "--client-id", metavar="ID", help="OIDC client id [offline-token; env STACPULL_CLIENT_ID]."
    ),
    click.option(
        "--client-secret",
        metavar="SECRET",
        help="OIDC client secret [MAAP's public one; env STACPULL_CLIENT_SECRET].",
    ),
    click.option("--token", metavar="TOKEN", help="A fixed access token [env STACPULL_TOKEN]."),
    click.option(
        "--token-file",
        type=click.Path(dir_okay=False),
        metavar="FILE",
        help="File holding an access token, re-read when it changes [token.txt].",
    ),
    click.option(
        "--auth-host",
        "auth_hosts",
        multiple=True,
        metavar="HOST",
        help="Another host that may receive the token; repeatable.",
    ),
]
_AUTH_KEYS = (
    "offline_token_file",
    "token_url",
    "client_id",
    "client_secret",
    "token",
    "token_file",
    "auth_hosts",
)


_auth_options = _options(*_AUTH_OPTIONS)


def _auth_values(kw: dict[str, Any]) -> dict[str, Any]:
    """Pop the auth flags out of ``kw`` as config keys."""
    values = {f"auth.{k}": kw.pop(k) for k in _AUTH_KEYS}
    values["auth.hosts"] = list(values.pop("auth.auth_hosts")) or None
    return values


_download_options = _options(
    *_AUTH_OPTIONS,
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
        "--segments",
        type=int,
        metavar="N",
        help="Parallel connections for a large file on a slow connection; 1: never [8].",
    ),
    click.option(
        "--template", metavar="TPL", help="Destination template [{collection}/{item}/{name}]."
    ),
    click.option(
        "--retries", type=int, metavar="N", help="Retries per file for transient errors [5]."
    ),
    click.option(
        "--stall-timeout",
        type=_DURATION_TYPE,
        metavar="DURATION",
        help="Abort a transfer after this long without a byte: 30s, 2m, 1h30m, seconds [60s].",
    ),
    click.option(
        "--bwlimit",
        metavar="RATE",
        help="Bytes/s for the whole run, all transfers together: 50M, 500k, 1.5MiB; 0/off: "
        "unlimited [off].",
    ),
    click.option(
        "--header",
        "headers",
        multiple=True,
        metavar="'K: V'",
        help="Extra request header for the hosts that receive the token; repeatable.",
    ),
    click.option(
        "--header-all-hosts",
        is_flag=True,
        default=None,
        help="Send --header to every host, redirects included (never an Authorization one).",
    ),
    click.option(
        "--dashboard",
        type=click.Choice(["auto", "rich", "plain", "none"]),
        help="Progress display [auto].",
    ),
    click.option(
        "--progress-interval",
        type=_DURATION_TYPE,
        metavar="DURATION",
        help="How often the plain progress line (and --log-file's) is written [5s].",
    ),
    click.option("-q", "--quiet", is_flag=True, help="Print only errors and the final summary."),
    click.option("-v", "--verbose", is_flag=True, help="Add a line per finished file."),
    _DEBUG,
    click.option(
        "--log-json",
        type=click.Path(dir_okay=False),
        metavar="FILE",
        help="Append every event to FILE as JSON lines.",
    ),
    click.option(
        "--log-file",
        type=click.Path(dir_okay=False),
        metavar="FILE",
        help="Append the run's log to FILE as timestamped plain text (no secrets).",
    ),
    _CONFIG,
)


def _download_values(
    assets: tuple[str, ...],
    dest: str | None,
    concurrency: int | None,
    per_host: int | None,
    segments: int | None,
    template: str | None,
    retries: int | None,
    stall_timeout: float | None,
    bwlimit: str | None,
    headers: tuple[str, ...],
    header_all_hosts: bool | None,
    dashboard: str | None,
    progress_interval: float | None,
    quiet: bool,
    verbose: bool,
    log_json: str | None,
    log_file: str | None,
) -> dict[str, Any]:
    from .config import parse_headers

    outer = _outer_flags()
    quiet, verbose = quiet or outer.get("quiet", False), verbose or outer.get("verbose", False)
    if quiet and verbose:
        raise ConfigError("-q/--quiet and -v/--verbose contradict each other: choose one")
    return {
        "download.stall_timeout": stall_timeout,
        "download.bwlimit": bwlimit,
        "download.headers": parse_headers(list(headers), "--header") if headers else None,
        "download.header_all_hosts": header_all_hosts,
        "output.progress_interval": progress_interval,
        "output.log_file": log_file,
        "download.assets": _split(assets) or None,
        "download.dest": dest,
        "download.concurrency": concurrency,
        "download.per_host": per_host,
        "download.segments": segments,
        "download.template": template,
        "download.retries": retries,
        "output.dashboard": dashboard,
        "output.verbosity": "quiet" if quiet else "verbose" if verbose else None,
        "output.log_json": log_json,
    }


class _ScrubbedStream:
    """``sys.stdout``/``sys.stderr`` for one command: every known secret (in any encoding)
    is taken out of what is written, whoever writes it (click, rich, a library). URLs found
    by shape are left whole here: a listing printed to a pipe keeps every href.

    A closed pipe (``stacpull download -v | head -2``) is not an error of the run: once a
    write or flush meets it, the stream's descriptor is pointed at ``os.devnull`` and
    everything after is dropped, so the run carries on and its journal stays honest.
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.broken = False

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                self._stream.write(SECRETS.scrub(text, shapes=False))
            except (BrokenPipeError, ConnectionResetError):
                self._drop()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._stream.flush()
            except (BrokenPipeError, ConnectionResetError):
                self._drop()

    def _drop(self) -> None:
        """The reader went away: discard what is buffered, and all that follows."""
        self.broken = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self._stream.fileno())
            finally:
                os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass  # not a real descriptor (a test's buffer): dropping our writes is enough

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _scrubbed_output(ctx: click.Context) -> None:
    """Route this command's stdout and stderr through the scrubber; undone when it ends."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _ScrubbedStream(sys.stdout), _ScrubbedStream(sys.stderr)

    def undo() -> None:
        for stream in (sys.stdout, sys.stderr):
            if isinstance(stream, _ScrubbedStream):
                stream.flush()  # a closed pipe is met here, not in the interpreter's exit
        sys.stdout, sys.stderr = saved

    ctx.call_on_close(undo)


def _debug_logging(ctx: click.Context) -> None:
    """Debug lines to stderr for this command, scrubbed; undone when the command ends."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ScrubFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logger = logging.getLogger("stacpull")
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)

    def undo() -> None:
        logger.removeHandler(handler)
        logger.setLevel(level)

    ctx.call_on_close(undo)


class _Stacpull(click.Group):
    """The ``stacpull`` group: a Ctrl-C that no command handles itself (while ``--from -``
    waits on its producer, while ``verify`` hashes) exits 130 with one line, as every
    command's interrupt does, instead of click's "Aborted!" and exit 1, the code of failed
    files and of rot."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            _fail("interrupted", 130)


@click.group(
    cls=_Stacpull,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="stacpull")
@click.option(
    "--debug",
    is_flag=True,
    help="Log requests, retries, token refreshes and split files to stderr (never a token).",
)
@click.option("-q", "--quiet", is_flag=True, help="Print only errors and the final summary.")
@click.option("-v", "--verbose", is_flag=True, help="Add a line per finished file.")
@click.pass_context
def main(ctx: click.Context, debug: bool, quiet: bool, verbose: bool) -> None:
    """Fast, resumable, verified bulk downloads from STAC catalogues (ESA MAAP first)."""
    _fewer_malloc_arenas()
    _scrubbed_output(ctx)
    ctx.meta["stacpull.outer"] = {"quiet": quiet, "verbose": verbose}
    if debug:
        _debug_logging(ctx)
        ctx.meta["stacpull.debug"] = True


def _outer_flags() -> dict[str, bool]:
    """``-q``/``-v`` given before the subcommand (``stacpull -v download``)."""
    ctx = click.get_current_context(silent=True)
    return dict(ctx.meta.get("stacpull.outer", {})) if ctx is not None else {}


#: glibc's mallopt parameter for the number of malloc arenas (M_ARENA_MAX in malloc.h).
_M_ARENA_MAX = -8


def _fewer_malloc_arenas() -> None:
    """Cap glibc at two malloc arenas for this process (as ``MALLOC_ARENA_MAX=2`` would).

    Every thread that allocates gets an arena of its own, up to eight per core, and each
    keeps the memory freed into it. The worker threads that write, hash and seal
    files and commit the journal are many: a 100 000-item mirror peaked at 146 MB with
    glibc's default and at 85 MB with two arenas, at the same items per second. Python's
    small objects do not use these arenas. Only the command line does this: the Python
    API leaves the host process's allocator alone. An environment that sets
    ``MALLOC_ARENA_MAX`` itself wins; other C libraries are left as they are.
    """
    import ctypes

    if sys.platform != "linux" or "MALLOC_ARENA_MAX" in os.environ:
        return
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return  # not glibc (musl has no mallopt)
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt(_M_ARENA_MAX, 2)


def _build_config(
    config_path: str | None,
    kw: dict[str, Any],
    *,
    retry_failed: bool,
    extra: dict[str, Any] | None = None,
    saved: bool = False,
) -> Config:
    """Flags of ``download``/``mirror`` → a validated :class:`Config` (or exit 2)."""
    from .config import load_config

    profile = kw.pop("profile")
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
        auth = _auth_values(kw)
        values = _download_values(**kw)
        config = load_config(
            config_path, flags={**query, **values, **auth, **(extra or {})}, profile=profile
        )
        if (
            not retry_failed
            and not saved
            and not config.search.collections
            and not config.search.ids
        ):
            raise ConfigError(
                "name at least one --collection (or --ids): a whole catalogue is rarely what you want"
            )
        if not config.download.dest:
            raise ConfigError("--dest DIR is required (or set download.dest / STACPULL_DEST)")
    except ConfigError as exc:
        _fail(str(exc))
    return config


_RETRY_FAILED = click.option(
    "--retry-failed",
    is_flag=True,
    help="Skip the search: re-run only the files the journal records as failed.",
)


def _saved(from_file: str | None, config: Config) -> tuple[Config, ItemPages | None]:
    """``--from FILE`` (``-``: standard input): a saved search's items and, unless
    --catalog says otherwise, the one catalogue the file and its items agree on, whose host
    alone may receive the token; exit 2 when the file is not a saved search."""
    from .config import DEFAULT_CATALOG
    from .export import saved_pages

    if from_file is None:
        return config, None
    data = None
    if from_file == "-":
        stdin: IO[bytes] | None = getattr(sys.stdin, "buffer", None)
        if stdin is None or stdin.isatty():
            _fail("--from -: standard input is a terminal or closed; pipe an ItemCollection in")
        try:
            data = stdin.read()
        except OSError as exc:
            _fail(f"--from -: standard input cannot be read: {exc.strerror or exc}")
    try:
        saved = saved_pages(Path(from_file), config.search.page_size, data=data)
    except ConfigError as exc:
        _fail(str(exc))
    for warning in saved.warnings:
        click.echo(f"stacpull: warning: {scrub(warning)}", err=True)
    if saved.catalog and config.search.catalog == DEFAULT_CATALOG:
        if saved.catalog.rstrip("/") != DEFAULT_CATALOG.rstrip("/"):
            click.echo(
                f"stacpull: --from: the items come from {scrub(saved.catalog)}; its host alone "
                "may receive the token (--catalog names another)",
                err=True,
            )
        config = config.with_values({"search.catalog": saved.catalog})
    return config, saved.pages


# The query flags a saved search (--from) makes meaningless, by their keyword and flag.
_QUERY_FLAGS = (
    ("collections", "--collection"),
    ("ids", "--ids"),
    ("bbox", "--bbox"),
    ("intersects", "--intersects"),
    ("datetime_", "--datetime"),
    ("filter_", "--filter"),
    ("max_items", "--max-items"),
    ("page_size", "--page-size"),
    ("method", "--method"),
)


def _warn_ignored(from_file: str | None, kw: dict[str, Any]) -> None:
    """``--from`` replaces the search: say which query flags given with it go unused."""
    if from_file is None:
        return
    given = [flag for key, flag in _QUERY_FLAGS if kw.get(key) not in (None, (), "")]
    if given:
        click.echo(
            f"stacpull: warning: {', '.join(given)} ignored: --from {from_file} replaces the "
            "search (filter the items before saving them)",
            err=True,
        )


def _nothing_matched(config: Config, from_file: str | None) -> None:
    """One stderr line for a run whose search listed no item: DEST was left alone."""
    if from_file is not None:
        what = f"0 items in {'standard input' if from_file == '-' else from_file}"
    else:
        s = config.search
        parts = [
            f"{name} {value}"
            for name, value in (
                ("collection", ",".join(s.collections or ())),
                ("ids", ",".join(s.ids or ())),
                ("bbox", ",".join(f"{v:g}" for v in s.bbox or ())),
                ("intersects", "(a geometry)" if s.intersects else ""),
                ("datetime", s.datetime or ""),
                ("filter", s.filter or ""),
            )
            if value
        ]
        what = f"0 items matched {'; '.join(parts) or 'the query'} at {scrub(s.catalog)}"
    dest = Path(config.download.dest or ".").expanduser()
    left = "" if dest.exists() else f"; DEST {dest} not created"
    click.echo(f"stacpull: {what}: nothing to download{left}", err=True)


def _asset_summary(item: dict[str, Any]) -> list[str]:
    """Each asset of ``item`` as ``key size`` (or its key), sorted: a search table's cell."""
    parts = []
    assets = item.get("assets")
    for key, asset in sorted(assets.items() if isinstance(assets, dict) else ()):
        size = asset.get("file:size") if isinstance(asset, dict) else None
        parts.append(f"{key} {human_bytes(size)}" if isinstance(size, int) else key)
    return parts


_SEARCH_COLUMNS = (
    Column("id"),
    Column("datetime"),
    Column("product type"),
    Column("assets", "values"),
)


def _item_cells(item: dict[str, Any]) -> tuple[list[Cell], list[object]]:
    """One item as a search table row and as its TSV record (id, collection, datetime,
    product type, asset keys): the record keeps each value whole, as the item has it."""
    props = item.get("properties")
    props = props if isinstance(props, dict) else {}
    when = str(props.get("datetime") or props.get("start_datetime") or "")
    kind = str(props.get("product:type") or props.get("productType") or "")
    assets = item.get("assets")
    keys = sorted(assets) if isinstance(assets, dict) else []
    row: list[Cell] = [str(item.get("id")), when[:19] + "Z" if when else "", kind]
    row.append(_asset_summary(item))
    record: list[object] = [item.get("id"), item.get("collection"), when, kind, ",".join(keys)]
    return row, record


def _keep_header_flag(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """``--header``/``--header-all-hosts`` of a catalogue command, kept for
    :func:`_header_flags` (so the commands' signatures stay as they are)."""
    if param.name is not None:
        ctx.meta.setdefault("stacpull.header_flags", {})[param.name] = value


#: The catalogue commands' --header/--header-all-hosts: download's, sent to the STAC API.
_catalogue_header_options = _options(
    click.option(
        "--header",
        "headers",
        multiple=True,
        metavar="'K: V'",
        expose_value=False,
        callback=_keep_header_flag,
        help="Extra request header for the catalogue (its own host); repeatable.",
    ),
    click.option(
        "--header-all-hosts",
        is_flag=True,
        default=None,
        expose_value=False,
        callback=_keep_header_flag,
        help="Send --header to every host: rel=next links and redirects elsewhere too.",
    ),
)


def _header_flags() -> dict[str, Any]:
    """The config flags of a catalogue command's ``--header``s (parsed: a malformed one
    raises :class:`ConfigError` naming the flag, never its value)."""
    from .config import parse_headers

    ctx = click.get_current_context(silent=True)
    given = ctx.meta.get("stacpull.header_flags", {}) if ctx is not None else {}
    headers = tuple(given.get("headers") or ())
    return {
        "download.headers": parse_headers(list(headers), "--header") if headers else None,
        "download.header_all_hosts": given.get("header_all_hosts"),
    }


@main.command(short_help="Search: count, list and save the matching items.")
@_query_options
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Save every matching item: .geojson/.json (an ItemCollection, for --from), .csv "
    "(the notebook's columns) or .parquet (needs stacpull[parquet]); - writes the "
    "ItemCollection to stdout.",
)
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="Format of -o [its extension].")
@click.option("--show", type=int, default=20, show_default=True, metavar="N", help="Items to list.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print every matching item to stdout as a GeoJSON ItemCollection (as -o - does); "
    "the listing goes to stderr.",
)
@_catalogue_header_options
@_CONFIG
def search(
    config_path: str | None,
    output: str | None,
    fmt: str | None,
    show: int,
    as_json: bool,
    **kw: Any,
) -> None:
    """Search the catalogue: how many items match, a table of them, and -o to save them.

    Without -o only the first pages are fetched (enough for --show); with -o every match
    (up to --max-items) is written as it arrives. On a terminal the items are a table;
    piped, one line per item: id, collection, datetime, product type and asset keys
    (comma-separated), tab-separated, with no header.

    \b
    Example:
      stacpull search --collection BiomassLevel1aIOC --filter "product:type='S1_SCS__1S'" \\
          --datetime 2025-09-29/2025-09-30 -o items.geojson
      stacpull download --from items.geojson --dest data/
    """
    import anyio
    from rich.console import Console

    from .config import load_config
    from .export import ItemWriter
    from .search import CatalogueHeaders, search_pages

    if as_json:
        if output not in (None, "-"):
            _fail("--json prints the items to stdout: give it or -o FILE, not both")
        if fmt not in (None, "geojson"):
            _fail(f"--json prints GeoJSON: --format {fmt} needs -o FILE")
        output, fmt = "-", "geojson"
    try:
        if show < 0:
            raise ConfigError(f"--show: expected a count ≥ 0, got {show}")
        profile = kw.pop("profile")
        config = load_config(
            config_path, flags={**_query_values(**kw), **_header_flags()}, profile=profile
        )
        s = config.search
        if not (s.collections or s.ids or s.bbox or s.intersects or s.datetime or s.filter):
            raise ConfigError(
                "name a --collection (or --ids, --bbox, --intersects, --datetime, --filter): "
                "a whole catalogue is rarely what you want"
            )
        writer = ItemWriter(Path(output), fmt, catalog=config.search.catalog) if output else None
    except ConfigError as exc:
        _fail(str(exc))
    # With -o - (or --json), stdout carries the items: everything for people goes to stderr.
    out = Console(highlight=False, soft_wrap=False, stderr=output == "-")
    note = _people(out)  # piped: the records alone on stdout, what they amount to on stderr
    rows: list[list[Cell]] = []
    records: list[list[object]] = []

    async def walk() -> tuple[int | None, int]:
        seen, matched = 0, None
        # The output opens with the first page, so a query the catalogue refuses (an unknown
        # collection, a bad filter) leaves stdout empty rather than half an ItemCollection.
        started = False
        with ExitStack() as opened:
            extra = CatalogueHeaders.of(config)
            async for features, page_matched in search_pages(config.search, extra):
                if writer is not None and not started:
                    opened.enter_context(writer)
                    started = True
                matched = page_matched
                for item in features:
                    seen += 1
                    if seen <= show:
                        row, record = _item_cells(item)
                        rows.append(row)
                        records.append(record)
                    if writer is not None:
                        writer.write(item)
                if writer is None and seen >= show:
                    break
            if writer is not None and not started:  # no page: still a valid, empty one
                opened.enter_context(writer)
        return matched, seen

    try:
        matched, seen = anyio.run(walk)
    except (ConfigError, SearchError) as exc:
        _fail(str(exc))
    except KeyboardInterrupt:  # Ctrl-C: the search was cancelled, a partial -o removed
        _fail("interrupted", 130)
    total = matched if matched is not None else seen
    note.print(f"{total} item(s) matched", soft_wrap=True)
    print_listing(out, _SEARCH_COLUMNS, rows, records)
    if writer is None and (seen > show or (matched is not None and matched > show)):
        note.print(f"(the first {min(show, seen)} shown; -o FILE saves them all)", soft_wrap=True)
    if writer is not None:
        wrote = f"wrote {writer.count} item(s) to {output} ({writer.format})"
        note.print(wrote, soft_wrap=True, markup=False)


_CATALOG_OPTIONS = [
    _PROFILE,
    _CATALOG,
    _catalogue_header_options,
    _CONFIG,
    click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table."),
]


_catalog_options = _options(*_CATALOG_OPTIONS)


def _search_config(config_path: str | None, catalog: str | None, profile: str | None) -> Config:
    from .config import load_config

    try:
        return load_config(
            config_path, flags={"search.catalog": catalog, **_header_flags()}, profile=profile
        )
    except ConfigError as exc:
        _fail(str(exc))


def _interval(col: dict[str, Any]) -> list[Any]:
    """The first temporal interval of a collection as [start, end] (``None`` for an open end)."""
    extent = col.get("extent")
    temporal = extent.get("temporal") if isinstance(extent, dict) else None
    intervals = temporal.get("interval") if isinstance(temporal, dict) else None
    first = intervals[0] if isinstance(intervals, list) and intervals else None
    return [*(first if isinstance(first, list) else []), None, None][:2]


def _extent(col: dict[str, Any], whole: bool = False) -> str:
    """The temporal extent as START/END ('..' for an open end): dates in a table, the
    collection's own timestamps when ``whole``."""
    return "/".join((str(t) if whole else str(t)[:10]) if t else ".." for t in _interval(col))


_COLLECTION_COLUMNS = (
    Column("id"),
    Column("title", "text"),
    Column("temporal extent"),
    Column("items", justify="right"),
)


def _collection_json(col: dict[str, Any], count: int | None, counted: bool) -> dict[str, Any]:
    """One collection in ``collections --json``: the same keys for every collection."""
    record: dict[str, Any] = {
        "id": col.get("id"),
        "title": col.get("title"),
        "description": col.get("description"),
        "license": col.get("license"),
        "keywords": col.get("keywords") if isinstance(col.get("keywords"), list) else [],
        "extent": col.get("extent") if isinstance(col.get("extent"), dict) else None,
    }
    if counted:
        record["count"] = count
    return record


@main.command(short_help="List the collections (ids, titles, extents).")
@click.option("--q", "text", metavar="TEXT", help="Free text in id, title, description.")
@click.option("--title", metavar="TITLE", help="Exact collection title.")
@click.option("--platform", metavar="NAME", help="Platform, e.g. BIOMASS or FLEX.")
@click.option("--organisation", metavar="NAME", help="Organisation, e.g. 'ESA MAAP'.")
@click.option("--bbox", metavar="W,S,E,N", help="Spatial extent must overlap this box.")
@click.option("--datetime", "datetime_", metavar="START/END", help="Temporal extent overlap.")
@click.option("--count", is_flag=True, help="Also ask how many items each one holds.")
@_catalog_options
def collections(
    text: str | None,
    title: str | None,
    platform: str | None,
    organisation: str | None,
    bbox: str | None,
    datetime_: str | None,
    count: bool,
    profile: str | None,
    catalog: str | None,
    config_path: str | None,
    as_json: bool,
) -> None:
    """List the catalogue's collections: id, title, temporal extent, items.

    Filters run on the server when it supports STAC collection search (MAAP does: free
    text, CQL2 on title/platform/organisationName, bbox, datetime), else here, and the
    output says which (on stderr when stdout is not a terminal). Piped, one line per
    collection: id, title, temporal extent (START/END) and item count (with --count),
    tab-separated, with no header.
    """
    from rich.console import Console

    from .config import parse_bbox, parse_datetime_range
    from .search import CatalogueHeaders, CollectionQuery, count_items, list_collections

    config = _search_config(config_path, catalog, profile)
    try:
        query = CollectionQuery(
            q=text,
            title=title,
            platform=platform,
            organisation=organisation,
            bbox=parse_bbox(bbox, "--bbox") if bbox else None,
            datetime=parse_datetime_range(datetime_, "--datetime") if datetime_ else None,
        )
        extra = CatalogueHeaders.of(config)
        found, by_server = list_collections(config.search, query, extra)
        counts = {
            str(c.get("id")): count_items(config.search, str(c.get("id")), extra) if count else None
            for c in found
        }
    except (ConfigError, SearchError) as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    out = Console(highlight=False)
    where = "by the catalogue" if by_server else "here: this catalogue has no collection search"
    filtered = any((text, title, platform, organisation, bbox, datetime_))
    summary = f"{len(found)} collection(s)" + (f"; filtered {where}" if filtered else "")
    if as_json:
        listed = [_collection_json(c, counts.get(str(c.get("id"))), count) for c in found]
        click.echo(json.dumps(listed, indent=2))
        click.echo(summary, err=True)
        return
    rows: list[list[Cell]] = []
    records: list[list[object]] = []
    for col in found:
        cid = str(col.get("id"))
        items = counts.get(cid)
        shown = "" if items is None else str(items)
        rows.append([cid, str(col.get("title") or ""), _extent(col), shown])
        records.append([cid, col.get("title") or "", _extent(col, whole=True), shown])
    print_listing(out, _COLLECTION_COLUMNS, rows, records)
    note = _people(out)  # piped: the records alone on stdout, what they amount to on stderr
    note.print(summary, soft_wrap=True)


def _schema_type(entry: dict[str, Any]) -> str | None:
    """A queryable's JSON Schema type as one word (``a|b`` for a list of types), else the
    last part of its ``$ref`` (e.g. a GeoJSON geometry), else ``None``."""
    kind = entry.get("type")
    if isinstance(kind, list):
        return "|".join(str(k) for k in kind) or None
    if kind:
        return str(kind)
    ref = entry.get("$ref")
    return str(ref).rstrip("/").rsplit("/", 1)[-1] or None if ref else None


def _queryable_list(collection: str, schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The queryables of ``collection`` as ``queryables --json`` prints them: one object per
    property, sorted by name, every key always present (``null`` when the schema is silent)."""
    props: dict[str, Any] = schema["properties"]
    listed = []
    for name in sorted(props):
        entry = props[name] if isinstance(props[name], dict) else {}
        enum = entry.get("enum")
        listed.append(
            {
                "collection": collection,
                "name": name,
                "type": _schema_type(entry),
                "format": entry.get("format"),
                "title": entry.get("title"),
                "description": entry.get("description"),
                "enum": enum if isinstance(enum, list) else None,
            }
        )
    return listed


@main.command("queryables", short_help="What --filter can use on a collection.")
@click.argument("collection")
@_catalog_options
def queryables_command(
    collection: str,
    profile: str | None,
    catalog: str | None,
    config_path: str | None,
    as_json: bool,
) -> None:
    """What --filter can use on COLLECTION: each property, its type and allowed values.

    Piped, one line per property: name, type, format, allowed values (comma-separated)
    and title, tab-separated, with no header.
    """
    from rich.console import Console

    from .search import CatalogueHeaders, queryables

    config = _search_config(config_path, catalog, profile)
    try:
        schema = queryables(config.search, collection, CatalogueHeaders.of(config))
    except (ConfigError, SearchError) as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    listed = _queryable_list(collection, schema)
    if as_json:
        click.echo(json.dumps(listed, indent=2))
        return
    out = Console(highlight=False)
    # A title is worth a column only where it says more than the name.
    titled = any(q["title"] and q["title"] != q["name"] for q in listed)
    columns = [Column("property"), Column("type"), Column("allowed values", "values")]
    if titled:
        columns.append(Column("title", "text"))
    rows: list[list[Cell]] = []
    records: list[list[object]] = []
    for q in listed:
        kind = (q["type"] or "?") + (f" ({q['format']})" if q["format"] else "")
        values = [str(v) for v in q["enum"] or []]
        title = str(q["title"] or "")
        rows.append([q["name"], kind, values, *([title] if titled else [])])
        records.append([q["name"], q["type"] or "", q["format"] or "", ",".join(values), title])
    print_listing(out, columns, rows, records)
    note = _people(out)
    names = {q["name"]: q for q in listed}
    if "product:type" in names and "productType" in names:
        note.print(
            "productType is the older name of product:type (MAAP renamed it in January "
            "2026); both are listed, prefer product:type",
            soft_wrap=True,
        )
    example = next((n for n in ("product:type", "productType") if n in names), None)
    if example and names[example]["enum"]:
        value = names[example]["enum"][0]
        note.print(f"e.g. --filter \"{example}='{value}'\"", soft_wrap=True, markup=False)


_plan_options = _options(
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


def _whole_table(
    out: Console,
    headers: tuple[str, ...],
    rows: list[tuple[str, ...]],
    *,
    records: list[tuple[str, ...]] | None = None,
    drop: tuple[int, ...] = (),
    right: tuple[int, ...] = (),
) -> None:
    """A listing whose values (keys, paths, ids) are never cut nor wrapped.

    Piped (stdout not a terminal): one record per line, tab-separated, no header, no
    markup, with ``records`` (raw numbers) in place of ``rows`` when given, so ``grep``,
    ``cut`` and ``awk`` work. On a terminal: a table; when it is wider than the terminal,
    the columns in ``drop`` go first, least useful first; when the values alone are wider,
    one record per line.
    """
    from rich.table import Table
    from rich.text import Text

    if not out.is_terminal:
        for record in records if records is not None else rows:
            click.echo(tsv_line(record))
        return
    rows = [tuple(printable(cell) for cell in row) for row in rows]  # no escape reaches it
    keep = list(range(len(headers)))

    def width(columns: list[int]) -> int:
        return sum(
            max(Text(headers[c]).cell_len, *(Text(r[c]).cell_len for r in rows)) + 2
            for c in columns
        )

    for column in drop:
        if width(keep) <= out.width:
            break
        keep.remove(column)
    if width(keep) > out.width:
        for row in rows:
            out.print(
                "  ".join(row[c] for c in keep), markup=False, highlight=False, soft_wrap=True
            )
        return
    table = Table(box=None, padding=(0, 1), header_style="dim")
    for c in keep:
        table.add_column(headers[c], justify="right" if c in right else "left", no_wrap=True)
    for row in rows:
        table.add_row(*(Text(row[c]) for c in keep))
    out.print(table)


def _budget_verdict(summary: PlanSummary, budget: int) -> str | None:
    """``within``, ``exceeded`` or ``unknown`` (files of unknown size and the rest within
    it): the dry run's answer about ``--max-bytes``; ``None`` without a budget."""
    from .dryrun import budget_error

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
    out = _people(table)  # piped: the asset records alone on stdout
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
    _whole_table(
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

    from .dryrun import budget_error, dry_run

    try:
        summary = anyio.run(lambda: dry_run(config, pages=pages))
    except (ConfigError, SearchError) as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except StacpullError as exc:
        _fail(str(exc), 1)
    if summary.items == 0:
        _nothing_matched(config, from_file)
    budget = config.download.max_bytes
    if as_json:
        click.echo(json.dumps(_plan_json(summary, budget, yes, command), indent=2))
    else:
        _print_plan(summary, budget, yes)
    reason = budget_error(summary, budget) if budget else None
    if reason is not None and not yes:
        _fail(reason, 2)
    sys.exit(0)


@main.command(short_help="Search and download the selected assets, verified.")
@_query_options
@_download_options
@_RETRY_FAILED
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
    _warn_ignored(from_file, kw)
    config = _build_config(
        config_path,
        kw,
        retry_failed=retry_failed,
        extra={"download.max_bytes": max_bytes},
        saved=from_file is not None,
    )
    config, pages = _saved(from_file, config)
    if dry_run:
        _plan_only(config, pages, from_file, yes=yes, as_json=as_json, command="download")
    from .engine import RunOptions  # the engine (and aiohttp) only for a transfer

    _execute(
        config,
        RunOptions("download", retry_failed=retry_failed, yes=yes),
        pages,
        from_file,
        as_json=as_json,
    )


@main.command(short_help="Mirror a collection (or query) into DEST.")
@_query_options
@_download_options
@_RETRY_FAILED
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
    _warn_ignored(from_file, kw)
    config = _build_config(
        config_path,
        kw,
        retry_failed=retry_failed,
        extra={"download.max_bytes": max_bytes},
        saved=from_file is not None,
    )
    if prune and (config.search.max_items is not None or from_file or retry_failed):
        _fail("--prune needs the complete search; drop --max-items, --from and --retry-failed")
    config, pages = _saved(from_file, config)
    if dry_run:
        _plan_only(config, pages, from_file, yes=yes, as_json=as_json, command="mirror")
    from .engine import RunOptions  # the engine (and aiohttp) only for a transfer

    _execute(
        config,
        RunOptions("mirror", retry_failed=retry_failed, prune=prune, yes=yes),
        pages,
        from_file,
        as_json=as_json,
    )


def _check_output(option: str, target: str) -> None:
    """Exit 2 when a file the user named for output exists and is not a regular file: a
    link, device or FIFO there is never written through nor replaced."""
    kind = safeio.not_regular(Path(target).expanduser())
    if kind is not None:
        _fail(f"{option} {target}: not a regular file ({kind}); name a new or a regular file")


def _open_dest(dest: str) -> Path:
    path = Path(dest).expanduser()
    if not path.is_dir():
        _fail(f"{dest} is not a directory")
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


@main.command(short_help="Summarise the last run in DEST.")
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

    from .dashboard import render_summary
    from .journal import JOURNAL_DIR
    from .plot import plot_format, plot_report

    if plot:
        try:
            plot_format(Path(plot))
        except ConfigError as exc:
            _fail(str(exc))
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
        _fail(f"no run report in {dest} (runs write {JOURNAL_DIR}/last-report.json)")
    except OSError as exc:
        _fail(f"cannot read {exc.filename or path}: it is {exc.strerror or exc}")
    except (ValueError, RecursionError) as exc:
        _fail(f"cannot read {path}: {exc}")
    out = Console(highlight=False, soft_wrap=True)
    try:
        if not isinstance(data, dict):
            raise TypeError("not an object")
        view = _report_json(data, path)
        if not as_json:
            summary = render_summary({"seconds": view["seconds"], **view["totals"]})
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        _fail(f"cannot read {path}: not a stacpull run report ({type(exc).__name__}: {exc})")
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
            _fail(str(exc))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            _fail(f"--plot: cannot draw {path}: not a stacpull run report ({exc})")
        out.print(f"plot: {drawn}", markup=False)
    sys.exit(view["exit_code"])


@main.command(short_help="Show what the journal of DEST knows.")
@click.argument("dest", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(dest: str, as_json: bool) -> None:
    """Print what the journal of DEST knows: done, failed with reasons, pending, bytes."""
    from rich.console import Console
    from rich.markup import escape

    from .audit import read_status

    try:
        report = read_status(_open_dest(dest))
    except StorageError as exc:
        _fail(str(exc))
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
        return
    table = Console(highlight=False, soft_wrap=True)
    out = _people(table)  # piped: the status records alone on stdout
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
    _whole_table(table, ("status", "files", "bytes on disk"), rows, records=records, right=(1, 2))
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


@main.command(short_help="Re-hash the files of DEST and report any rot.")
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

    from .audit import verify_dest

    path = _open_dest(dest)
    if jobs is not None and jobs < 1:
        _fail("--jobs must be ≥ 1")
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
        _fail(str(exc))
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        table = Console(highlight=False, soft_wrap=True)
        out = _people(table)  # piped: the problem records alone on stdout
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


@main.group("config")
def config_group() -> None:
    """The configuration stacpull would use."""


def _shown(value: Any) -> Any:
    """A config value as JSON can hold it, secrets masked."""
    from .config import Secret, secret_header

    if isinstance(value, Secret):
        return "***"
    if isinstance(value, tuple) and value and all(isinstance(v, tuple) for v in value):
        # download.headers: a credential's value is masked whatever its length (the
        # scrubber leaves values under 8 characters alone, as too common to take out).
        return [[n, "***" if secret_header(n) else scrub(v)] for n, v in value]
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, str):
        return scrub(value)  # a catalogue or token URL with a password in it
    return value


@config_group.command("show", short_help="Print the merged configuration and its sources.")
@_PROFILE
@_CONFIG
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def config_show(profile: str | None, config_path: str | None, as_json: bool) -> None:
    """Print the merged configuration with where each value came from; secrets are masked.

    Lowest first: defaults, the user's config file, ./stacpull.toml, --config FILE (or
    STACPULL_CONFIG), the profile, STACPULL_* environment variables, flags.
    """
    from .config import config_files, resolve_config, user_config_file

    try:
        config, origins = resolve_config(config_path, profile=profile)
        files = [origin for origin, _ in config_files(config_path)]
    except ConfigError as exc:
        _fail(str(exc))
    user = user_config_file()
    sections = {
        name: {f.name: _shown(getattr(getattr(config, name), f.name)) for f in fields(kind)}
        for name, kind in (
            ("search", type(config.search)),
            ("download", type(config.download)),
            ("auth", type(config.auth)),
            ("output", type(config.output)),
        )
    }
    if as_json:
        where = {"files": files, "user_file": str(user) if user else None}
        click.echo(json.dumps({**sections, "origins": origins, **where}, indent=2))
        return
    lines = [
        "# stacpull configuration: defaults < user file < ./stacpull.toml < --config file"
        " < profile < environment < flags",
        f"# files read: {', '.join(files) if files else 'none'}",
        f"# user file: {user} ({'read' if user and str(user) in files else 'not found'})"
        if user
        else "# user file: off (STACPULL_NO_USER_CONFIG)",
    ]
    for name, values in sections.items():
        lines.append(f"\n[{name}]")
        for key, value in values.items():
            origin = origins.get(f"{name}.{key}", "default")
            if value is None:
                lines.append(f"# {key} = (unset)".ljust(48) + f"  # {origin}")
            else:
                lines.append(f"{key} = {json.dumps(value)}".ljust(48) + f"  # {origin}")
    click.echo("\n".join(lines))


@main.group()
def auth() -> None:
    """The credentials stacpull uses for data requests."""


@auth.command("check", short_help="Check the credentials and when the token expires.")
@_PROFILE
@_auth_options
@click.option(
    "--url",
    metavar="URL",
    help="Also request the first byte of this file with the token, to prove access.",
)
@click.option(
    "--catalog",
    metavar="URL",
    help="STAC API root whose host may receive the token [env STACPULL_CATALOG].",
)
@_catalogue_header_options
@_CONFIG
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
def auth_check(
    config_path: str | None,
    url: str | None,
    catalog: str | None,
    profile: str | None,
    as_json: bool,
    **kw: Any,
) -> None:
    """Tell whether the credentials work and when the access token expires.

    With an offline token, one access token is requested from the token endpoint. A fixed
    token is judged by the expiry written in it (MAAP tokens are JWTs); --url also tries it
    on a file. No token is ever printed. Exit 0 when they work, 1 when they do not.
    """
    import anyio
    from rich.console import Console

    from .auth import TrustPolicy, check_credentials, human_duration, load_credentials
    from .config import load_config

    try:
        config = load_config(
            config_path,
            flags={**_auth_values(kw), "search.catalog": catalog, **_header_flags()},
            profile=profile,
        )
        tokens = load_credentials(config.auth)
    except ConfigError as exc:
        _fail(str(exc))
    for warning in tokens.warnings:
        click.echo(f"stacpull: warning: {warning}", err=True)
    trust = TrustPolicy(config.search.catalog, config.auth.hosts)
    try:
        found = anyio.run(
            lambda: check_credentials(
                tokens,
                url=url,
                trust=trust,
                headers=config.download.headers,
                header_all_hosts=config.download.header_all_hosts,
            )
        )
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    verdicts = {True: "working", False: "not working", None: "unknown"}
    expires_at = (
        None
        if found.expires_in is None
        else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + found.expires_in))
    )
    if as_json:
        view = {
            "credentials": found.source,
            "kind": found.kind,
            "ok": found.ok,
            "status": verdicts[found.ok],
            "detail": found.detail,
            "expires_in": None if found.expires_in is None else round(found.expires_in, 1),
            "expires_at": expires_at,
            "token_url": scrub(config.auth.token_url) if found.kind == "oidc" else None,
        }
        click.echo(json.dumps(view, indent=2))
        sys.exit(1 if found.ok is False else 0)
    out = Console(highlight=False, soft_wrap=True)
    how = {"oidc": f"{found.source}, exchanged at {scrub(config.auth.token_url)}"}.get(
        found.kind, found.source
    )
    out.print(f"credentials: {how}")
    verdict = {True: "[green]working[/]", False: "[red]not working[/]", None: "[yellow]unknown[/]"}
    out.print(f"status:      {verdict[found.ok]}: {found.detail}")
    if found.expires_in is not None:
        at = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(time.time() + found.expires_in))
        when = (
            f"expired {human_duration(found.expires_in)} ago"
            if found.expires_in <= 0
            else f"expires in {human_duration(found.expires_in)} ({at})"
        )
        out.print(f"access token: {when}")
        if found.kind == "oidc":
            out.print("             stacpull refreshes it by itself during a run")
    sys.exit(1 if found.ok is False else 0)


@main.command(short_help="Run the pipeline against the simulated catalogue.")
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
    into DEST with the live dashboard, verifying every file. Authentication is MAAP's
    offline-token flow against the simulated identity server, with access tokens that
    expire every 2 seconds. Run it twice: the second run skips everything.
    """
    from rich.console import Console

    from .config import Config
    from .sim import OIDCOptions, SimCatalog, SimOptions, SimServer, default_collections

    if items < 1 or product_size < 10_000:
        _fail("--items must be ≥ 1 and --product-size ≥ 10000")
    # Access tokens live 2 s, as if hours passed: the demo refreshes them like a night's run.
    options = SimOptions(tokens=set(), oidc=OIDCOptions(lifetime=2.0))
    with SimServer(SimCatalog(default_collections(items, product_size)), options=options) as sim:
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
                    "auth.offline_token": next(iter(options.oidc.offline_tokens)),
                    "auth.token_url": sim.token_url,
                    "auth.client_secret": options.oidc.client_secret,
                    "output.dashboard": dashboard,
                }
            )
        except ConfigError as exc:
            _fail(str(exc))
        _execute(config)


@main.group()
def sim() -> None:
    """The simulated MAAP catalogue."""


@sim.command("serve", short_help="Serve the simulated catalogue until Ctrl-C.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True)
@click.option(
    "--items",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="Items per collection.",
)
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
@click.option(
    "--offline-token",
    "offline_tokens",
    multiple=True,
    default=("sim-offline-token",),
    show_default=True,
    help="Offline token the OIDC endpoint accepts; repeatable.",
)
@click.option(
    "--token-lifetime",
    type=_DURATION_TYPE,
    default=300.0,
    show_default=True,
    help="Seconds an access token from the OIDC endpoint lives.",
)
@click.option(
    "--rotate-refresh-tokens",
    is_flag=True,
    help="Answer each refresh with a new refresh token and retire the old one.",
)
@click.option(
    "--latency", type=_DURATION_TYPE, default=0.0, help="Seconds before each data response."
)
@click.option("--rate-limit", type=int, default=0, help="Bytes/s per response (0: unlimited).")
@click.option(
    "--cut-probability", type=float, default=0.0, help="Chance a response drops mid-body."
)
@click.option("--cut-after", type=int, default=0, help="Bytes before a cut (0: a random point).")
@click.option(
    "--burst-probability",
    type=float,
    default=0.0,
    help="Chance a data request starts a burst of 503/429 answers.",
)
@click.option("--burst-length", type=int, default=3, show_default=True, help="Answers per burst.")
@click.option(
    "--retry-after",
    type=_DURATION_TYPE,
    default=1.0,
    show_default=True,
    help="Retry-After seconds sent with a burst answer.",
)
@click.option(
    "--truncate-probability",
    type=float,
    default=0.0,
    help="Chance the zipper ends a product early (no central directory).",
)
@click.option(
    "--change-probability",
    type=float,
    default=0.0,
    help="Chance a file is replaced on the server after a response.",
)
@click.option(
    "--not-ready",
    "not_ready_for",
    type=_DURATION_TYPE,
    default=0.0,
    help="Seconds a file answers 404 after it is first asked for.",
)
@click.option(
    "--stall-probability", type=float, default=0.0, help="Chance a response pauses mid-body."
)
@click.option(
    "--stall-seconds",
    type=_DURATION_TYPE,
    default=5.0,
    show_default=True,
    help="Length of a pause.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the fault dice.")
def sim_serve(
    host: str,
    port: int,
    items: int,
    product_size: int,
    enclosure_size: int,
    tokens: tuple[str, ...],
    no_auth: bool,
    offline_tokens: tuple[str, ...],
    token_lifetime: float,
    rotate_refresh_tokens: bool,
    latency: float,
    **knobs: Any,
) -> None:
    """Serve the simulated catalogue until Ctrl-C, for any STAC client to use.

    The fault options make it the night a mirror has to survive, e.g.
    `--cut-probability 0.3 --burst-probability 0.05 --rate-limit 2000000`.
    """
    import dataclasses

    import anyio

    from .sim import Faults, OIDCOptions, SimCatalog, SimOptions, SimServer, default_collections

    try:
        faults = Faults(**knobs)  # the fault options are named after Faults' fields
    except ValueError as exc:
        _fail(str(exc))
    if latency < 0 or token_lifetime <= 0:
        _fail("--latency must be ≥ 0 and --token-lifetime > 0")
    specs = [
        dataclasses.replace(s, enclosure_size=enclosure_size)
        for s in default_collections(items, product_size)
    ]
    try:
        server = SimServer(
            SimCatalog(specs),
            host=host,
            port=port,
            options=SimOptions(
                tokens=set(tokens),
                require_auth=not no_auth,
                latency=latency,
                faults=faults,
                oidc=OIDCOptions(
                    offline_tokens=set(offline_tokens),
                    lifetime=token_lifetime,
                    rotate=rotate_refresh_tokens,
                ),
            ),
        )
    except OSError as exc:
        _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    click.echo(f"STAC API:  {server.catalog_url}")
    click.echo(f"token:     {'(none needed)' if no_auth else ', '.join(tokens)}")
    click.echo(
        f"OIDC:      {server.token_url} (client {server.options.oidc.client_id}, secret "
        f"{server.options.oidc.client_secret}; offline token {', '.join(offline_tokens)}; "
        f"access tokens live {token_lifetime:g} s)"
    )
    if faults.active or latency:
        latency_text = f"latency={latency}" if latency else ""
        click.echo(f"faults:    {', '.join(filter(None, (faults.describe(), latency_text)))}")
    click.echo(
        f"try:       stacpull download --catalog {server.catalog_url} --collection BiomassLevel1aIOC "
        f"--dest data --token {tokens[0] if tokens else 'TOKEN'}"
    )
    if offline_tokens:
        click.echo(
            f"or:        STACPULL_OFFLINE_TOKEN={offline_tokens[0]} stacpull download --catalog "
            f"{server.catalog_url} --collection BiomassLevel1aIOC --dest data --token-url "
            f"{server.token_url} --client-secret {server.options.oidc.client_secret}"
        )
    try:
        anyio.run(server.serve)
    except KeyboardInterrupt:
        click.echo("stopped")


def _outer_here(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """``-q``/``-v`` after a subcommand that has no use for them: the same as before it
    (kept with the group's flags, where a command that prints progress would read them)."""
    if value and param.name is not None:
        ctx.meta.setdefault("stacpull.outer", {})[param.name] = True


#: -q/-v for every command but download and mirror (which declare their own): accepted
#: and, as before the subcommand, without effect on a listing, report or check.
_QUIET_ANYWHERE = click.option(
    "-q",
    "--quiet",
    is_flag=True,
    expose_value=False,
    callback=_outer_here,
    help="Accepted for symmetry with download: this command prints no progress.",
)
_VERBOSE_ANYWHERE = click.option(
    "-v",
    "--verbose",
    is_flag=True,
    expose_value=False,
    callback=_outer_here,
    help="Accepted for symmetry with download: this command prints no progress.",
)


def _debug_on_every_command(group: click.Group) -> None:
    """``--debug``, ``-q`` and ``-v`` after any subcommand (``stacpull search ... --debug``),
    as before it: the transfer commands list them among their options; every other command
    gets them here."""
    for command in group.commands.values():
        if isinstance(command, click.Group):
            _debug_on_every_command(command)
            continue
        given = {opt for param in command.params for opt in param.opts}
        if "--debug" not in given:
            _DEBUG(command)
        if not given & {"-q", "--quiet"}:
            _QUIET_ANYWHERE(command)
        if not given & {"-v", "--verbose"}:
            _VERBOSE_ANYWHERE(command)


_debug_on_every_command(main)


if __name__ == "__main__":  # pragma: no cover
    main()
