"""The run: one task group with the search producer, a bounded job stream and N workers.

::

    search pages ──▶ plan ──▶ [bounded stream, 2×N] ──▶ N workers (fetch) ──▶ DEST
         └──────────── events ──▶ stats / dashboard / outcome log ◀──────────┘

The producer journals each page's jobs, then blocks on a full stream, so memory stays
flat however large the collection. N transfer slots are shared by 2N+ worker tasks: a job
waiting to retry gives its slot back. A :class:`~stacpull.errors.StorageError` (disk full,
unwritable DEST) or a search failure stops the whole run; a :class:`StopSignal` (Ctrl-C)
stops it gracefully; everything written so far stays resumable. The report and the run's
journal record are written whatever the ending, without awaiting.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
import json
import logging
import os
import stat
import time
from collections.abc import Callable, Container, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import anyio
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from . import safeio
from .auth import TokenProvider, TrustPolicy, load_credentials
from .config import Config
from .destlock import refuse_nested
from .dryrun import budget_error, dry_run
from .errors import (
    ConfigError,
    CredentialsError,
    RunAborted,
    ScrubFilter,
    StacpullError,
    StorageError,
    first_error,
    scrub,
)
from .events import (
    Event,
    EventSink,
    HostLimitChanged,
    JobQueued,
    JobRefused,
    RunFinished,
    RunStarted,
    RunStopping,
    SearchProgress,
)
from .journal import JOURNAL_DIR, Journal
from .limits import HostLimiter, TokenBucket
from .models import Job, Refusal, Status
from .peek import peek
from .plan import PlanRules, RunClaims, in_state_dir, path_key, plan_item
from .report import EventLog, OutcomeLog, ReportInfo, RunStats, write_report
from .retry import RetryPolicy
from .safepath import CLOEXEC, DIR_FLAGS
from .search import CatalogueHeaders, ItemPages, search_pages
from .transfer.attempts import fetch
from .transfer.context import FetchContext
from .transfer.http import client_session
from .transfer.space import SpaceBudget
from .verify import record_hash

__all__ = [
    "STOP_GRACE",
    "FileRecord",
    "ItemPages",
    "RunOptions",
    "RunResult",
    "StopSignal",
    "loop_options",
    "run",
]

#: Seconds in-flight transfers get to finish after a graceful stop.
STOP_GRACE = 3.0

log = logging.getLogger("stacpull.engine")
log.addFilter(ScrubFilter())


@dataclass(frozen=True, slots=True)
class FileRecord:
    """One file a run dealt with, as :meth:`RunResult.files` lists it.

    ``path`` is absolute (``None`` for an asset refused before it had one); ``size`` is the
    file's size on disk when present; ``bytes_downloaded`` what this run received for it
    (0 for a file already there, ``skipped``); ``error`` why it failed or was refused.
    """

    path: Path | None
    item_id: str
    collection: str
    asset_key: str
    status: Status
    size: int | None
    bytes_downloaded: int
    error: str | None = None


def _file_records(dest: Path, outcomes: Path) -> Iterator[FileRecord]:
    """The records of a run's outcome log (one JSON line per finished or refused job); the
    log is the run's alone (its name carries the run number) and closed when it ends."""
    try:
        handle = outcomes.open("rb")
    except FileNotFoundError:
        return
    with handle:
        for line in handle:
            try:
                row = json.loads(line)
                status = Status(row["status"])
            except (ValueError, KeyError, TypeError):
                continue  # a line cut by a full disk
            path = row.get("path")
            yield FileRecord(
                path=dest / path if isinstance(path, str) else None,
                item_id=str(row.get("item") or ""),
                collection=str(row.get("collection") or ""),
                asset_key=str(row.get("asset") or ""),
                status=status,
                size=row.get("size"),
                bytes_downloaded=int(row.get("bytes_downloaded") or 0),
                error=row.get("error"),
            )


@dataclass(frozen=True, slots=True)
class RunResult:
    """How a run ended; ``exit_code`` is what the CLI returns; :meth:`files` what it wrote."""

    downloaded: int
    skipped: int
    failed: int
    refused: int
    retries: int
    bytes_downloaded: int
    bytes_on_disk: int
    seconds: float
    items: int
    report: Path | None
    interrupted: bool = False
    fatal: str | None = None
    gone: tuple[str, ...] = ()  # mirror: files whose items left the catalogue
    pruned: int = 0  # of those, files deleted (--prune)
    kept: tuple[str, ...] = ()  # of those, paths --prune left: reached through a link
    not_judged: str | None = None  # mirror: why nothing was judged gone (incomplete search)
    duplicates: int = 0  # items the search listed again, planned once (not an error)
    dest: Path | None = None  # the resolved DEST
    outcomes: Path | None = None  # the run's outcome log (JSON lines), read by files()

    def files(self) -> Iterator[FileRecord]:
        """Every file this run downloaded, found already verified (``skipped``), failed or
        refused, in the order they ended, as :class:`FileRecord` s.

        Read lazily from the run's outcome log in ``DEST/.stacpull/`` at each call, so a
        run of 100 000 files costs no memory until asked, and one record at a time then.
        Files a mirror judged gone are in :attr:`gone`, not here."""
        if self.dest is None or self.outcomes is None:
            return iter(())
        return _file_records(self.dest, self.outcomes)

    @property
    def ok(self) -> bool:
        """Every selected asset is present and verified."""
        return not (self.failed or self.refused or self.interrupted or self.fatal)

    @property
    def exit_code(self) -> int:
        """0 all verified, 1 some files failed or were refused, 3 the run was stopped, 130 interrupted."""
        if self.interrupted:
            return 130
        if self.fatal:
            return 3
        return 0 if self.ok else 1

    @property
    def mb_per_s(self) -> float:
        """Network throughput of the run in MB/s (10⁶ bytes)."""
        return self.bytes_downloaded / self.seconds / 1e6 if self.seconds > 0 else 0.0


def loop_options() -> dict[str, Any]:
    """anyio's asyncio options for a run: uvloop when it is installed (``pip install
    'stacpull[fast]'``; ``STACPULL_UVLOOP=0`` turns it off), the standard loop otherwise."""
    if os.environ.get("STACPULL_UVLOOP", "1") == "0":
        return {}
    return {"use_uvloop": True} if importlib.util.find_spec("uvloop") is not None else {}


def _fanout(sinks: Sequence[EventSink]) -> EventSink:
    def emit(event: Event) -> None:
        for sink in sinks:
            sink(event)

    return emit


def _prepare_dest(dest: str | None) -> Path:
    if not dest:
        raise ConfigError("download.dest: no destination directory given (--dest DIR)")
    root = Path(dest).expanduser()
    refuse_nested(root, JOURNAL_DIR)  # before anything is made inside a running DEST
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create DEST {root}: {exc.strerror or exc}") from exc
    if not os.access(root, os.W_OK | os.X_OK):
        raise StorageError(f"DEST {root} is not writable")
    return root.resolve()


def _query_dict(config: Config) -> dict[str, Any]:
    s = config.search
    return {
        "catalog": scrub(s.catalog),
        "collections": list(s.collections),
        "ids": list(s.ids),
        "bbox": list(s.bbox) if s.bbox else None,
        "intersects": s.intersects,
        "datetime": s.datetime,
        "filter": s.filter,
        "max_items": s.max_items,
    }


def _settings_dict(config: Config) -> dict[str, Any]:
    d = config.download
    return {
        "dest": d.dest,
        "assets": list(d.assets),
        "template": d.template,
        "concurrency": d.concurrency,
        "per_host": d.per_host,
        "chunk_size": d.chunk_size,
        "stall_timeout": d.stall_timeout,
        "retries": d.retries,
        "auth_hosts": list(config.auth.hosts),
    }


@dataclass(frozen=True, slots=True)
class RunOptions:
    """What kind of run: a plain ``download``, a ``mirror``, or a retry of failures.

    ``mirror`` records which files the search listed, so files whose items left the
    catalogue are reported (and deleted with ``prune``), after a complete search only.
    ``retry_failed`` skips the search and re-runs the journal's failed jobs only. With
    ``download.max_bytes`` set, the whole search is planned first and a run that would
    download more refuses to start, unless ``yes``.
    """

    kind: str = "download"
    retry_failed: bool = False
    prune: bool = False
    grace: float = STOP_GRACE
    yes: bool = False  # start even when the plan exceeds download.max_bytes


class StopSignal:
    """Asks a running :func:`run` to stop gracefully (first Ctrl-C, SIGTERM, credentials
    that stopped working).

    No new transfer starts and jobs waiting to retry stay pending. Transfers in flight get
    :attr:`RunOptions.grace` seconds to finish, or, for a ``drain`` stop, as long as they
    need (they hold a token already; nothing is lost by letting them end). A later
    non-drain request puts the deadline back. ``fatal`` is the error :func:`run` raises once
    the run has stopped. Call :meth:`request` from the event loop's thread.
    """

    def __init__(self) -> None:
        self.reason: str | None = None
        self.drain = False
        self.fatal: StacpullError | None = None
        self._callbacks: list[Callable[[str, bool], None]] = []

    @property
    def requested(self) -> bool:
        """Whether a stop was asked for."""
        return self.reason is not None

    def request(
        self,
        reason: str = "interrupted",
        *,
        drain: bool = False,
        fatal: StacpullError | None = None,
    ) -> None:
        """Ask the run to stop (idempotent, except that it can shorten a drain)."""
        if self.reason is not None and (drain or not self.drain):
            return
        if self.reason is None:
            self.reason, self.fatal = reason, fatal
        self.drain = drain
        for callback in self._callbacks:
            callback(reason, drain)

    def subscribe(self, callback: Callable[[str, bool], None]) -> None:
        """Call ``callback(reason, drain)`` on :meth:`request` (at once if already requested)."""
        self._callbacks.append(callback)
        if self.reason is not None:
            callback(self.reason, self.drain)


def _scope(config: Config) -> str:
    """A stable key for "this query into this layout": mirrors only prune their own files."""
    query = _query_dict(config)
    query.pop("max_items", None)
    key = {
        "query": query,
        "assets": list(config.download.assets),
        "template": config.download.template,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


async def run(
    config: Config,
    *,
    sink: EventSink | None = None,
    tokens: TokenProvider | None = None,
    pages: ItemPages | None = None,
    stats: RunStats | None = None,
    options: RunOptions | None = None,
    stop: StopSignal | None = None,
) -> RunResult:
    """Search, plan and download per ``config``; return when every job has ended.

    ``sink`` receives every event (the dashboard); ``tokens`` overrides the token from
    ``config.auth``; ``pages`` replaces the catalogue search (a saved search, tests);
    ``stop`` lets the caller ask for a graceful stop. Raises :class:`ConfigError` before
    anything starts, :class:`StorageError` when DEST cannot take more, never for one
    file's failure.
    """
    opts = options or RunOptions()
    log_json = Path(config.output.log_json).expanduser() if config.output.log_json else None
    kind = safeio.not_regular(log_json) if log_json is not None else None
    if kind is not None:
        raise ConfigError(
            f"--log-json {log_json}: not a regular file ({kind}); name a new or a regular file"
        )
    # Selectors and template are checked before any search and before DEST is created.
    rules = PlanRules(config.download.assets, config.download.template)
    listing = pages
    if not opts.retry_failed:
        # Nothing matched or nothing selected: no DEST, no journal, no report; selectors
        # that pick nothing raise NothingSelected.
        search_once: ItemPages = (
            pages
            if pages is not None
            else (lambda: search_pages(config.search, CatalogueHeaders.of(config)))
        )
        with anyio.CancelScope() as looking:
            if stop is not None:
                stop.subscribe(lambda reason, drain: looking.cancel())
            peeked = await peek(search_once, rules.selectors)
        if looking.cancelled_caught:
            return RunResult(0, 0, 0, 0, 0, 0, 0, 0.0, 0, None, interrupted=True)
        kept_mirror = (
            opts.kind == "mirror"
            and (Path(config.download.dest or ".").expanduser() / JOURNAL_DIR).is_dir()
        )
        if peeked.empty and not kept_mirror:
            return RunResult(0, 0, 0, 0, 0, 0, 0, 0.0, 0, None)
        # An existing mirror goes on: files are judged gone only after a complete search
        # that said none match, each confirmed by id (see _incomplete and _confirm_gone).
        listing = peeked.pages
    if config.download.max_bytes and not opts.yes and not opts.retry_failed:
        with anyio.CancelScope() as preflight:
            if stop is not None:  # a Ctrl-C during this search ends the run, too
                stop.subscribe(lambda reason, drain: preflight.cancel())
            planned = await dry_run(config, pages=listing)
        if preflight.cancelled_caught:
            return RunResult(0, 0, 0, 0, 0, 0, 0, 0.0, 0, None, interrupted=True)
        refusal = budget_error(planned, config.download.max_bytes)
        if refusal is not None:
            raise ConfigError(refusal)
    root = _prepare_dest(config.download.dest)
    provider: TokenProvider = tokens if tokens is not None else load_credentials(config.auth)
    stats = stats if stats is not None else RunStats()
    stop = stop if stop is not None else StopSignal()
    state_dir = root / JOURNAL_DIR
    journal = Journal(root, lock=True)
    scope = _scope(config)
    run_id = journal.begin_run("retry-failed" if opts.retry_failed else opts.kind, scope)
    # The run number makes the name unique even for two runs started in the same second.
    outcome_log = OutcomeLog(
        state_dir / f"outcomes-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{run_id}.jsonl"
    )
    sinks: list[EventSink] = [stats, outcome_log]
    event_log = EventLog(log_json) if log_json is not None else None
    if event_log is not None:
        sinks.append(event_log)
    if sink is not None:
        sinks.append(sink)
    emit = _fanout(sinks)
    info = ReportInfo(_query_dict(config), {**_settings_dict(config), "auth": provider.source})
    if opts.retry_failed:
        failed_jobs = [row.planned_job() for row in journal.rows("failed")]
        source: _Source = _JobSource(failed_jobs)
    else:
        search: ItemPages = (
            listing
            if listing is not None
            else (lambda: search_pages(config.search, CatalogueHeaders.of(config)))
        )
        source = _PageSource(search, rules, journal, run_id, scope)
    started = time.monotonic()
    outcome = "complete"
    gone: list[str] = []
    pruned = 0
    kept: list[str] = []
    not_judged: str | None = None
    emit(
        RunStarted(
            scrub(config.search.catalog),
            config.search.collections,
            str(root),
            config.download.concurrency,
        )
    )

    dl = config.download
    limiter = HostLimiter(
        dl.per_host,
        adaptive=dl.adaptive,
        on_change=lambda host, limit, reason: emit(HostLimitChanged(host, limit, reason)),
    )
    try:
        async with client_session(
            connect=dl.connect_timeout,
            stall=dl.stall_timeout,
            connections=max(dl.concurrency, dl.per_host),
            per_host=dl.per_host,
        ) as session:
            ctx = FetchContext(
                session=session,
                root=root,
                journal=journal,
                tokens=provider,
                trust=TrustPolicy(config.search.catalog, config.auth.hosts),
                emit=emit,
                retry=RetryPolicy(
                    dl.retries,
                    dl.backoff,
                    dl.max_backoff,
                    not_found_retries=dl.not_found_retries,
                    not_found_delay=dl.not_found_delay,
                ),
                chunk_size=dl.chunk_size,
                limiter=limiter,
                space=SpaceBudget(dl.min_free),
                segments=dl.segments,
                segment_size=dl.segment_size,
                segment_below=dl.segment_below,
                record_hash=record_hash(dl.record_hash),
                min_speed=dl.min_speed,
                speed_window=dl.stall_timeout,
                bandwidth=TokenBucket(dl.bwlimit) if dl.bwlimit else None,
                headers=dl.headers,
                header_all_hosts=dl.header_all_hosts,
            )
            provider.listen(emit)
            try:
                await _pump(source, ctx, dl.concurrency, dl.queue_limit, stop, opts.grace, emit)
            except BaseExceptionGroup as group:
                raise first_error(group) from None
            finally:
                provider.listen(None)
        if stop.fatal is not None:
            raise stop.fatal
        if stop.requested:
            outcome = "interrupted"
        elif opts.kind == "mirror":
            not_judged = _incomplete(config, opts, pages, source)
            if not_judged is None:
                unlisted = journal.gone(scope, run_id, spared=source.listed_items)
                gone, not_judged = await _confirm_gone(config, journal, unlisted)
            if opts.prune and gone:
                pruned, kept = await anyio.to_thread.run_sync(_prune, root, journal, gone)
    except StacpullError as exc:
        info.fatal = str(exc)
        outcome = "stopped"
        raise
    except (KeyboardInterrupt, SystemExit, RunAborted, anyio.get_cancelled_exc_class()):
        # Ctrl-C, a cancellation, or the caller's sink asking to exit: the run did not
        # finish, whatever it had done so far.
        outcome = "aborted"
        raise
    except BaseException as exc:
        # Anything else (the caller's sink raised, an output that broke, a bug) ended the
        # run early: the journal must never call it complete while files are still pending.
        info.fatal = f"{type(exc).__name__}: {exc}"
        outcome = "stopped"
        raise
    finally:
        # No await in here, so the report is written even while the run is being cancelled.
        seconds = time.monotonic() - started
        interrupted = outcome in ("interrupted", "aborted")
        sink_error: Exception | None = None
        try:
            emit(RunFinished(seconds, interrupted))
        except Exception as exc:  # the caller's sink: raised once the run is recorded
            sink_error = exc
        outcome_log.close()
        if event_log is not None:
            event_log.close()
        report = None
        if config.output.report:
            try:
                report = write_report(state_dir, stats, info, outcome_log.path, run_id=run_id)
            except OSError:
                report = None  # disk full: the journal is the record; the CLI says why it stopped
        snap = stats.snapshot()
        result = RunResult(
            downloaded=snap.downloaded,
            skipped=snap.skipped,
            failed=snap.failed,
            refused=snap.refused,
            retries=snap.retries,
            bytes_downloaded=snap.bytes_received,
            bytes_on_disk=snap.bytes_done,
            seconds=seconds,
            items=snap.items,
            report=report,
            interrupted=interrupted,
            gone=tuple(gone),
            pruned=pruned,
            kept=tuple(kept),
            not_judged=not_judged,
            duplicates=snap.duplicates,
            dest=root,
            outcomes=outcome_log.path,
        )
        summary = {
            **{
                k: v
                for k, v in dataclasses.asdict(result).items()
                if k not in ("gone", "report", "kept", "dest", "outcomes")
            },
            "gone": len(gone),
            "kept": len(kept),
            "report": str(report) if report else None,
        }
        with contextlib.suppress(StorageError):
            journal.end_run(run_id, outcome, summary)
        journal.close()
        if sink_error is not None and outcome not in ("stopped", "aborted"):
            raise sink_error
    return result


def _incomplete(
    config: Config, opts: RunOptions, pages: ItemPages | None, source: _Source
) -> str | None:
    """Why this mirror run may not judge any file gone (``None``: it may).

    Only a complete search of the same query (the scope) lists everything that is still
    in the catalogue; any other run would call what it did not look at gone, and a prune
    would delete it."""
    if opts.retry_failed:
        return "--retry-failed does not search"
    if pages is not None:
        return "a saved search (--from) is not the catalogue's listing"
    if config.search.max_items is not None:
        return "--max-items cuts the search"
    if not source.complete:
        return "the search did not finish"
    if source.matched is not None and source.listed < source.matched:
        repeats = f" ({source.repeats} listed again)" if source.repeats else ""
        return f"the search listed {source.listed} of {source.matched} matching items{repeats}"
    if source.listed == 0 and source.matched is None:
        # One empty answer (a glitch under load) would otherwise empty the whole mirror.
        return "the search listed no item and the catalogue did not say that none match"
    return None


#: Item ids asked for at once when a mirror makes sure its unlisted items are gone.
_LOOKUP_IDS = 40


async def _confirm_gone(
    config: Config, journal: Journal, paths: list[str]
) -> tuple[list[str], str | None]:
    """The ``paths`` whose items the catalogue still does not find when asked for them by
    id (with the same query), and why nothing is judged gone when it cannot be asked.

    Counting a listing proves little on a catalogue paged by offset whose items are not
    ordered (MAAP): an item that leaves while another arrives during the search makes
    the listing skip one that never left, with every count still right. Only the items
    the catalogue finds by id no longer are gone; the others wait for the next run."""
    if not paths:
        return [], None
    owners: dict[str, list[str]] = {}
    for path in paths:
        row = await journal.get(path)
        owners.setdefault(row.item_id if row is not None and row.item_id else "", []).append(path)
    ids = sorted(i for i in owners if i)
    found: set[str] = set()
    try:
        for start in range(0, len(ids), _LOOKUP_IDS):
            chunk = tuple(ids[start : start + _LOOKUP_IDS])
            query = dataclasses.replace(config.search, ids=chunk, max_items=2 * len(chunk))
            async for features, _ in search_pages(query, CatalogueHeaders.of(config)):
                found.update(f["id"] for f in features if isinstance(f.get("id"), str))
    except StacpullError as exc:
        return [], f"the items it did not list could not be looked up ({exc})"
    return sorted(p for i, group in owners.items() if i not in found for p in group), None


def _prune(root: Path, journal: Journal, paths: list[str]) -> tuple[int, list[str]]:
    """Delete the files (and ``.part``) of ``paths`` and their journal rows; tidy empty dirs.

    Nothing is deleted through a link: each directory is opened from its parent's
    descriptor with ``O_NOFOLLOW``, starting at DEST, so a directory that became a link (to
    somewhere outside DEST) is never entered; only regular files so reached are deleted and
    only empty directories below DEST removed. Returns the files deleted and the paths
    left because a link or special file was in the way (their rows stay: the next mirror
    reports them again).
    """
    removed = 0
    kept: list[str] = []
    forget: list[str] = []
    try:
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | CLOEXEC)
    except OSError as exc:  # DEST removed or unmounted during the run
        raise StorageError(f"cannot prune {root}: {exc.strerror or exc}") from exc
    try:
        for rel in paths:
            parts = Path(rel).parts
            if not parts or Path(rel).is_absolute() or ".." in parts:
                kept.append(rel)
                continue
            if in_state_dir(rel):  # a journal from before such paths were refused
                forget.append(rel)  # never stacpull's file to delete: left, row dropped
                continue
            fds = [root_fd]
            try:
                for name in parts[:-1]:
                    try:
                        fds.append(os.open(name, DIR_FLAGS, dir_fd=fds[-1]))
                    except FileNotFoundError:
                        forget.append(rel)  # already gone
                        break
                    except OSError:  # a link (ELOOP) or a file (ENOTDIR) in the way
                        kept.append(rel)
                        break
                else:
                    deleted, blocked = _unlink_regular(fds[-1], parts[-1], root / rel)
                    removed += deleted
                    (kept if blocked else forget).append(rel)
                    for depth in range(len(fds) - 1, 0, -1):
                        try:  # rmdir never follows a link; a non-empty directory stays
                            os.rmdir(parts[depth - 1], dir_fd=fds[depth - 1])
                        except OSError:
                            break
            finally:
                for fd in fds[1:]:
                    os.close(fd)
    finally:
        os.close(root_fd)
    journal.remove(forget)
    return removed, kept


def _unlink_regular(dir_fd: int, name: str, shown: Path) -> tuple[int, bool]:
    """Delete ``name`` and its ``.part`` in ``dir_fd`` when they are regular files; return
    (final files deleted, whether something else was there and stayed)."""
    deleted, blocked = 0, False
    for candidate in (name, name + ".part"):
        try:
            mode = os.stat(candidate, dir_fd=dir_fd, follow_symlinks=False).st_mode
            if not stat.S_ISREG(mode):
                blocked = True
                continue
            os.unlink(candidate, dir_fd=dir_fd)
            deleted += candidate == name
        except FileNotFoundError:
            pass
        except OSError as exc:
            where = shown.with_name(candidate)
            raise StorageError(f"cannot delete {where}: {exc.strerror or exc}") from exc
    return deleted, blocked


class _Source(Protocol):
    """Where jobs come from: a search (planned page by page) or the journal's failures.

    ``complete`` turns true once every job was sent; a mirror calls files it did not see
    gone only after a complete search that listed every match (see :func:`_incomplete`).
    """

    complete: bool
    listed: int  # distinct items the search returned so far
    matched: int | None  # how many it said match (numberMatched), when it says
    repeats: int  # items it returned again (counted once in listed)
    listed_items: Container[tuple[str, str]]  # (collection, id): none of their files is gone

    async def produce(self, send: MemoryObjectSendStream[Job], emit: EventSink) -> None: ...


class _PageSource:
    def __init__(
        self, pages: ItemPages, rules: PlanRules, journal: Journal, run_id: int, scope: str
    ) -> None:
        self.pages, self.rules, self.journal = pages, rules, journal
        self.run_id, self.scope = run_id, scope
        self.complete = False
        self.listed = 0
        self.matched: int | None = None
        self.repeats = 0
        # Every item listed (planned, refused or listed again): still in the catalogue,
        # so none of its files is judged gone.
        self.claims = RunClaims(run_id)
        self.listed_items: Container[tuple[str, str]] = self.claims

    async def produce(self, send: MemoryObjectSendStream[Job], emit: EventSink) -> None:
        pages = items = 0
        matched: int | None = None
        claims = self.claims
        async for features, matched in self.pages():
            pages += 1
            items += len(features)
            self.matched = matched
            emit(SearchProgress(pages, items, matched, duplicates=claims.duplicates))
            jobs: list[Job] = []
            refusals: list[Refusal] = []
            for item in features:
                if not claims.first_listing(item):
                    if claims.duplicates == 1:
                        log.info("item %s is listed more than once; planned once", item["id"])
                    continue
                planned, refused = plan_item(item, self.rules)
                jobs.extend(planned)
                refusals.extend(refused)
            # Distinct items: an unordered, offset-paged catalogue (MAAP) can list one item
            # twice in place of one it never lists; complete only if they reach matched.
            self.listed, self.repeats = items - claims.duplicates, claims.duplicates
            # Two jobs never share a destination (see RunClaims), in this page, with an
            # earlier page, or with a file the journal records for another item.
            holders = await self.journal.holders(
                (path_key(job.dest) for job in jobs), run=self.run_id
            )
            jobs, clashes = claims.settle(jobs, holders)
            refusals.extend(clashes)
            # The whole page is journalled before any of it is queued: `status` shows the
            # plan, `--retry-failed` can rebuild it, and a mirror knows what it has seen.
            await self.journal.plan(jobs, refusals, run=self.run_id, scope=self.scope)
            for refusal in refusals:
                emit(JobRefused(refusal))
            for job in jobs:
                emit(JobQueued(job))
                await send.send(job)
        emit(SearchProgress(pages, items, matched, done=True, duplicates=claims.duplicates))
        self.complete = True


class _JobSource:
    def __init__(self, jobs: list[Job]) -> None:
        self.jobs = jobs
        self.complete = False
        self.listed = self.repeats = 0
        self.matched: int | None = None  # no search: never a complete listing
        self.listed_items: Container[tuple[str, str]] = frozenset()

    async def produce(self, send: MemoryObjectSendStream[Job], emit: EventSink) -> None:
        emit(SearchProgress(0, 0, None, done=True))
        for job in self.jobs:
            if "***" in job.url:  # the journal does not keep the credentials it needs
                reason = (
                    "its URL carried credentials, which the journal does not keep; run "
                    "without --retry-failed to search for it again"
                )
                emit(JobRefused(Refusal(job.item_id, job.collection, job.asset_key, reason)))
                continue
            emit(JobQueued(job))
            await send.send(job)
        self.complete = True


async def _pump(
    source: _Source,
    ctx: FetchContext,
    concurrency: int,
    queue_limit: int,
    stop: StopSignal,
    grace: float,
    emit: EventSink,
) -> None:
    """Run the producer and the workers until every job ended or a stop took effect.

    ``concurrency`` transfer slots are shared by more worker tasks than that: a job waiting
    to retry (a 404 for minutes, a long ``Retry-After``) gives its slot back, so it does
    not hold up the files behind it; so does a job whose bytes have all arrived, while it
    is checked, fsynced, renamed and journalled (on a many-file WAN run that local work
    took a quarter of each file's time in its slot, with the network idle).
    """
    send, receive = anyio.create_memory_object_stream[Job](queue_limit)
    slots = anyio.Semaphore(concurrency)
    workers = concurrency + max(concurrency, 16)
    producer_scope = anyio.CancelScope()
    parked: set[anyio.CancelScope] = set()  # jobs waiting to retry: a stop ends their wait

    async def produce() -> None:
        with producer_scope:
            async with send:
                await source.produce(send, emit)

    async with anyio.create_task_group() as outer:
        async with anyio.create_task_group() as tg:

            def on_stop(reason: str, drain: bool) -> None:
                if outer.cancel_scope.cancel_called:
                    return  # every job already ended
                emit(RunStopping(reason, None if drain else grace))
                producer_scope.cancel()
                for scope in list(parked):
                    scope.cancel()
                if not drain:
                    outer.start_soon(_cancel_after, grace, tg.cancel_scope)

            stop.subscribe(on_stop)
            tg.start_soon(produce)
            for _ in range(workers):
                tg.start_soon(_work, receive.clone(), ctx, slots, stop, parked)
            receive.close()
        outer.cancel_scope.cancel()


async def _cancel_after(delay: float, scope: anyio.CancelScope) -> None:
    await anyio.sleep(delay)
    scope.cancel()


async def _work(
    receive: MemoryObjectReceiveStream[Job],
    ctx: FetchContext,
    slots: anyio.Semaphore,
    stop: StopSignal,
    parked: set[anyio.CancelScope],
) -> None:
    held = False
    job_scope = anyio.CancelScope()

    def unwire() -> None:
        """The job's bytes are in: its slot goes to the next transfer (see FetchContext)."""
        nonlocal held
        if held:
            slots.release()
            held = False

    async def park(delay: float) -> None:
        """Wait to retry without holding a slot; a stop cancels the job (it stays pending)."""
        nonlocal held
        unwire()
        parked.add(job_scope)
        try:
            if stop.requested:
                job_scope.cancel()
            await anyio.sleep(delay)
        finally:
            parked.discard(job_scope)
        await slots.acquire()
        held = True
        if stop.requested:  # asked while this job queued for its slot again
            job_scope.cancel()
            await anyio.lowlevel.checkpoint()

    mine = dataclasses.replace(ctx, sleep=park, unwire=unwire)
    async with receive:
        try:
            async for job in receive:
                await slots.acquire()
                held = True
                if stop.requested:
                    return  # the job stays pending in the journal
                job_scope = anyio.CancelScope()
                try:
                    with job_scope:
                        await fetch(job, mine)
                except CredentialsError as exc:
                    # No token can be had: start nothing new, let what is in flight finish.
                    stop.request(f"credentials: {exc}", drain=True, fatal=exc)
                if held:
                    slots.release()
                    held = False
        finally:
            if held:
                slots.release()
