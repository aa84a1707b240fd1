"""Running a download or mirror job from the command line: the config from the flags, a saved
search (``--from``), the view (dashboard, plain lines, ``--log-file``), the signal watcher,
the final summary (or its JSON) and the exit code; also the scrubbed stdout/stderr and the
malloc arena cap every command gets.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn

import click

from .. import safeio
from ..errors import (
    SECRETS,
    ConfigError,
    CredentialsError,
    RunAborted,
    SearchError,
    StacpullError,
    StorageError,
    scrub,
)

if TYPE_CHECKING:
    # Types only: each command imports what it runs (the API, the engine and aiohttp only
    # for a transfer), so help starts fast (benchmarks/startup.py).
    import anyio
    from rich.console import Console

    from ..api import RunOptions, RunResult, StopSignal
    from ..config import Config
    from ..events import EventSink
    from ..search import ItemPages
    from ..stats import RunStats

from ..printable import printable
from .flags import AuthFlags, JobFlags, OutputFlags, QueryFlags, TransferFlags
from .render import fail

__all__ = [
    "build_config",
    "execute",
    "fewer_malloc_arenas",
    "nothing_matched",
    "saved_items",
    "scrubbed_output",
    "warn_ignored",
]


def _choose_output(
    config: Config, stats: RunStats, err: Console
) -> tuple[EventSink | None, AbstractContextManager[Any]]:
    from ..dashboard import LiveDashboard, PlainProgress

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
    from ..dashboard import LogFile

    name = config.output.log_file
    if name is None:
        return sink, view
    path = Path(name).expanduser()
    try:
        stream = safeio.open_append(path)
    except OSError as exc:
        fail(f"--log-file {name}: {exc.strerror or exc}")
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


@dataclass(frozen=True)
class _Ended:
    """How a run ended, for its summary: ``result`` is ``None`` when it never finished
    (stopped by an error, interrupted); ``error`` the reason it stopped."""

    config: Config
    options: RunOptions
    stats: RunStats
    code: int
    result: RunResult | None = None
    error: str | None = None


def _run_json(ended: _Ended) -> dict[str, Any]:
    """The final summary as ``download/mirror --json`` prints it (one schema, whatever
    happened: a run that never started has zero totals)."""
    from ..errors import redact_url
    from ..report import refusal_dict, totals

    code, result, stats = ended.code, ended.result, ended.stats
    ending = {130: "interrupted", 3: "stopped"}.get(code, "error" if ended.error else "complete")
    return {
        "command": ended.options.kind,
        "dry_run": False,
        "dest": str(ended.config.download.dest),
        "outcome": ending,
        "exit_code": code,
        "error": ended.error,
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
        "listing": _listing_gap(ended),
        "catalog": redact_url(ended.config.search.catalog),
    }


def execute(
    config: Config,
    options: RunOptions | None = None,
    pages: ItemPages | None = None,
    from_file: str | None = None,
    *,
    as_json: bool = False,
) -> NoReturn:
    """Run ``config`` through the API under the chosen view, print the summary, exit with
    its code. ``pages`` replaces the search (``--from``); ``as_json``: the summary goes to
    stdout as JSON alone, and everything for people to stderr."""
    from rich.console import Console

    from ..api import RunOptions

    ended = _run(config, options or RunOptions(), pages, as_json=as_json)
    # The final summary is the run's result, as --json prints it: stdout, unless --json.
    out = Console(stderr=as_json)
    _print_summary(out, ended, from_file)
    if as_json:
        fatal = ended.error or (ended.result.fatal if ended.result is not None else None)
        click.echo(json.dumps(_run_json(replace(ended, error=fatal)), indent=2))
    sys.exit(ended.code)


def _run(config: Config, options: RunOptions, pages: ItemPages | None, *, as_json: bool) -> _Ended:
    """The run itself, under the view and a Ctrl-C watcher: how it ended, or exit 2 (bad
    input) or 1 (an error before any file) with one line and, for --json, the summary."""
    from rich.console import Console

    from ..api import RunControl, run
    from ..credentials import load_credentials
    from ..stats import RunStats

    stats = RunStats()
    ended = _Ended(config, options, stats, 0)
    try:
        tokens = load_credentials(config.auth)
    except ConfigError as exc:
        fail(str(exc))
    for warning in tokens.warnings:
        click.echo(f"stacpull: warning: {warning}", err=True)
    sink, view = _choose_output(config, stats, Console(stderr=True))
    sink, view = _with_log_file(config, stats, sink, view)
    control = RunControl(stats=stats, pages=pages, beside=_watch_signals)
    try:
        with view:
            result = run(config, options, sink=sink, tokens=tokens, control=control)
        return replace(ended, code=result.exit_code, result=result)
    except (ConfigError, SearchError) as exc:
        _refuse(ended, exc, 2, as_json=as_json)
    except (StorageError, CredentialsError) as exc:
        click.echo(f"stacpull: run stopped: {printable(scrub(str(exc)))}", err=True)
        return replace(ended, code=3, error=scrub(str(exc)))
    except (KeyboardInterrupt, RunAborted):  # RunAborted: a second Ctrl-C
        return replace(ended, code=130)
    except StacpullError as exc:
        _refuse(ended, exc, 1, as_json=as_json)


def _refuse(ended: _Ended, exc: Exception, code: int, *, as_json: bool) -> NoReturn:
    """A run that ended on ``exc`` before its summary: the --json summary, one line, exit."""
    if as_json:
        click.echo(json.dumps(_run_json(replace(ended, code=code, error=scrub(str(exc))))))
    fail(str(exc), code)


def _print_summary(out: Console, ended: _Ended, from_file: str | None) -> None:
    """The totals and what they call for: why nothing was fetched, what to re-run, what
    was refused, duplicated, left unpruned or kept."""
    from ..dashboard import render_summary
    from ..report import totals

    result, snap, opts = ended.result, ended.stats.snapshot(), ended.options
    if result is not None and result.items == 0 and not opts.retry_failed and ended.code == 0:
        nothing_matched(ended.config, from_file)
    out.print(render_summary(totals(snap)))
    if result is not None and result.report is not None:
        _note(out, f"report: {result.report}")
    if ended.code == 130:
        _note(
            out,
            "[yellow]stopped before the end[/]: partial files and the journal are kept; "
            "run the same command again to resume",
        )
    _print_file_notes(out, ended)
    if result is not None and ended.code == 0 and snap.downloaded == 0 and snap.skipped:
        what = "the journal" if opts.retry_failed else "the search"
        _note(
            out,
            f"[green]up to date[/]: all {snap.skipped} file(s) already verified on disk; "
            f"no data was requested, only {what}",
        )
    if result is not None:
        _print_gone(out, result, prune=opts.prune)


def _note(out: Console, text: str) -> None:
    out.print(text, highlight=False, soft_wrap=True)


def _print_file_notes(out: Console, ended: _Ended) -> None:
    """What to do about failed, refused and duplicated files."""
    stats, dest = ended.stats, ended.config.download.dest
    if stats.failures:
        _note(
            out,
            f"[red]{len(stats.failures)} file(s) failed[/]; re-run the same command (or add "
            f"--retry-failed) to retry them; `stacpull status {dest}` lists the reasons",
        )
    if stats.refused:
        _note(
            out,
            f"[magenta]{stats.refused} asset(s) refused[/] (unsafe or colliding names in the "
            "metadata); see the report",
        )
    duplicates = stats.snapshot().duplicates
    if gap := _listing_gap(ended):
        click.echo(f"stacpull: warning: {gap}", err=True)
    if duplicates:
        _note(
            out,
            f"{duplicates} duplicate item(s) in the search results (same collection and "
            "id): each planned once, the first listing wins",
        )


def _listing_gap(ended: _Ended) -> str | None:
    """:func:`~stacpull.report.listing_note` of the run ``ended``."""
    from ..report import listing_note

    cut = ended.config.search.max_items is not None
    return listing_note(ended.stats.snapshot(), cut=cut)


def _print_gone(out: Console, result: RunResult, *, prune: bool) -> None:
    """A mirror's files whose items left the catalogue: pruned, kept, or not judged."""
    if prune and result.not_judged:
        _note(
            out,
            f"[yellow]not pruned[/]: {result.not_judged}; files are judged gone only after a "
            "complete search of the same query",
        )
    if result.kept:
        click.echo(
            f"stacpull: warning: kept {len(result.kept)} file(s) of items no longer in the "
            "catalogue: a symbolic link or special file is on the way (prune deletes only "
            "regular files inside DEST), e.g. " + ", ".join(result.kept[:3]),
            err=True,
        )
    if result.gone:
        if result.pruned or prune:
            _note(out, f"pruned {result.pruned} file(s) whose items left the catalogue")
        else:
            _note(
                out,
                f"[yellow]{len(result.gone)} file(s) belong to items no longer in the "
                "catalogue[/] (kept; add --prune to delete them), e.g. "
                + ", ".join(result.gone[:3]),
            )


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


def scrubbed_output(ctx: click.Context) -> None:
    """Route this command's stdout and stderr through the scrubber; undone when it ends."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _ScrubbedStream(sys.stdout), _ScrubbedStream(sys.stderr)

    def undo() -> None:
        for stream in (sys.stdout, sys.stderr):
            if isinstance(stream, _ScrubbedStream):
                stream.flush()  # a closed pipe is met here, not in the interpreter's exit
        sys.stdout, sys.stderr = saved

    ctx.call_on_close(undo)


#: glibc's mallopt parameter for the number of malloc arenas (M_ARENA_MAX in malloc.h).
_M_ARENA_MAX = -8


def fewer_malloc_arenas() -> None:
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


def build_config(
    query: QueryFlags, auth: AuthFlags, transfer: TransferFlags, output: OutputFlags, job: JobFlags
) -> Config:
    """Flags of ``download``/``mirror`` → a validated :class:`Config` (or exit 2)."""
    from ..config import load_config

    try:
        searched = query.values()
        shown = output.values()  # -q with -v is refused before any --header is parsed
        flags = {
            **searched,
            **transfer.values(),
            **shown,
            **auth.values(),
            "download.max_bytes": job.max_bytes,
        }
        config = load_config(job.config_path, flags=flags, profile=query.profile)
        if (
            not job.retry_failed
            and job.from_file is None
            and not config.search.collections
            and not config.search.ids
        ):
            raise ConfigError(
                "name at least one --collection (or --ids): a whole catalogue is rarely what you want"
            )
        if not config.download.dest:
            raise ConfigError("--dest DIR is required (or set download.dest / STACPULL_DEST)")
    except ConfigError as exc:
        fail(str(exc))
    return config


def saved_items(from_file: str | None, config: Config) -> tuple[Config, ItemPages | None]:
    """``--from FILE`` (``-``: standard input): a saved search's items and, unless
    --catalog says otherwise, the one catalogue the file and its items agree on, whose host
    alone may receive the token; exit 2 when the file is not a saved search."""
    from ..defaults import DEFAULT_CATALOG
    from ..export import saved_pages

    if from_file is None:
        return config, None
    data = None
    if from_file == "-":
        stdin: IO[bytes] | None = getattr(sys.stdin, "buffer", None)
        if stdin is None or stdin.isatty():
            fail("--from -: standard input is a terminal or closed; pipe an ItemCollection in")
        try:
            data = stdin.read()
        except OSError as exc:
            fail(f"--from -: standard input cannot be read: {exc.strerror or exc}")
    try:
        saved = saved_pages(Path(from_file), config.search.page_size, data=data)
    except ConfigError as exc:
        fail(str(exc))
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


def warn_ignored(from_file: str | None, query: QueryFlags) -> None:
    """``--from`` replaces the search: say which query flags given with it go unused."""
    if from_file is None:
        return
    given = query.given()
    if given:
        click.echo(
            f"stacpull: warning: {', '.join(given)} ignored: --from {from_file} replaces the "
            "search (filter the items before saving them)",
            err=True,
        )


def nothing_matched(config: Config, from_file: str | None) -> None:
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
