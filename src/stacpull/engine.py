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
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import anyio
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from . import __version__
from .auth import TokenProvider, TrustPolicy, load_credentials
from .config import Config
from .dryrun import budget_error, dry_run
from .errors import (
    ConfigError,
    CredentialsError,
    PlanError,
    StacpullError,
    StorageError,
    first_error,
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
from .fetch import FetchContext, SpaceBudget, fetch
from .journal import JOURNAL_DIR, Journal
from .limits import HostLimiter
from .models import Job, Refusal
from .plan import PlanRules, plan_item
from .report import EventLog, OutcomeLog, ReportInfo, RunStats, write_report
from .retry import RetryPolicy
from .safepath import remove_below, remove_empty_dirs_below
from .search import ItemPages, search_pages
from .verify import record_hash

__all__ = [
    "STOP_GRACE",
    "ItemPages",
    "RunOptions",
    "RunResult",
    "StopSignal",
    "loop_options",
    "run",
]

#: Seconds in-flight transfers get to finish after a graceful stop.
STOP_GRACE = 3.0


@dataclass(frozen=True, slots=True)
class RunResult:
    """How a run ended; ``exit_code`` is what the CLI returns."""

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
        "catalog": s.catalog,
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
    catalogue are reported (and deleted with ``prune``). ``retry_failed`` skips the search
    and re-runs the journal's failed jobs only. With ``download.max_bytes`` set, the whole
    search is planned first and a run that would download more refuses to start, unless
    ``yes``.
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
    if config.download.max_bytes and not opts.yes and not opts.retry_failed:
        planned = await dry_run(config, pages=pages)
        refusal = budget_error(planned, config.download.max_bytes)
        if refusal is not None:
            raise ConfigError(refusal)
    root = _prepare_dest(config.download.dest)
    rules = PlanRules(config.download.assets, config.download.template)
    provider: TokenProvider = tokens if tokens is not None else load_credentials(config.auth)
    stats = stats if stats is not None else RunStats()
    stop = stop if stop is not None else StopSignal()
    state_dir = root / JOURNAL_DIR
    journal = Journal(root, lock=True)
    scope = _scope(config)
    run_id = journal.begin_run("retry-failed" if opts.retry_failed else opts.kind, scope)
    outcome_log = OutcomeLog(
        state_dir / f"outcomes-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}.jsonl"
    )
    sinks: list[EventSink] = [stats, outcome_log]
    event_log = (
        EventLog(Path(config.output.log_json).expanduser()) if config.output.log_json else None
    )
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
        search: ItemPages = pages if pages is not None else (lambda: search_pages(config.search))
        source = _PageSource(search, rules, journal, run_id, scope)
    started = time.monotonic()
    outcome = "complete"
    gone: list[str] = []
    pruned = 0
    emit(
        RunStarted(
            config.search.catalog, config.search.collections, str(root), config.download.concurrency
        )
    )

    dl = config.download
    connector = aiohttp.TCPConnector(
        limit=max(dl.concurrency, dl.per_host), limit_per_host=dl.per_host
    )
    timeout = aiohttp.ClientTimeout(
        total=None, connect=dl.connect_timeout, sock_read=dl.stall_timeout
    )
    limiter = HostLimiter(
        dl.per_host,
        adaptive=dl.adaptive,
        on_change=lambda host, limit, reason: emit(HostLimitChanged(host, limit, reason)),
    )
    try:
        async with aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            headers={"User-Agent": f"stacpull/{__version__}"},
            auto_decompress=False,
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
        elif opts.kind == "mirror" and source.complete and config.search.max_items is None:
            gone = journal.gone(scope, run_id)
            if opts.prune and gone:
                pruned = await anyio.to_thread.run_sync(_prune, root, journal, gone)
    except StacpullError as exc:
        info.fatal = str(exc)
        outcome = "stopped"
        raise
    except (KeyboardInterrupt, anyio.get_cancelled_exc_class()):
        outcome = "aborted"
        raise
    finally:
        # No await in here, so the report is written even while the run is being cancelled.
        seconds = time.monotonic() - started
        interrupted = outcome in ("interrupted", "aborted")
        emit(RunFinished(seconds, interrupted))
        outcome_log.close()
        if event_log is not None:
            event_log.close()
        report = None
        if config.output.report:
            try:
                report = write_report(state_dir, stats, info, outcome_log.path)
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
        )
        summary = {
            **{k: v for k, v in dataclasses.asdict(result).items() if k not in ("gone", "report")},
            "gone": len(gone),
            "report": str(report) if report else None,
        }
        with contextlib.suppress(StorageError):
            journal.end_run(run_id, outcome, summary)
        journal.close()
    return result


def _prune(root: Path, journal: Journal, paths: list[str]) -> int:
    """Delete the files (and ``.part``) of ``paths`` and their journal rows; tidy empty dirs.
    Nothing is deleted through a link inside DEST (:func:`~stacpull.safepath.remove_below`):
    a path with a link on its way is left alone, its row kept."""
    removed = 0
    pruned: list[str] = []
    for rel in paths:
        final = root / rel
        try:
            for candidate in (final, final.with_name(final.name + ".part")):
                removed += remove_below(root, candidate) and candidate == final
        except PlanError:  # a link on the way: left alone with its target, and its row kept
            continue
        except OSError as exc:
            raise StorageError(f"cannot delete {candidate}: {exc.strerror or exc}") from exc
        remove_empty_dirs_below(root, final.parent)
        pruned.append(rel)
    journal.remove(pruned)
    return removed


class _Source(Protocol):
    """Where jobs come from: a search (planned page by page) or the journal's failures.

    ``complete`` turns true once every job was sent: only then may a mirror call files
    it did not see gone.
    """

    complete: bool

    async def produce(self, send: MemoryObjectSendStream[Job], emit: EventSink) -> None: ...


class _PageSource:
    def __init__(
        self, pages: ItemPages, rules: PlanRules, journal: Journal, run_id: int, scope: str
    ) -> None:
        self.pages, self.rules, self.journal = pages, rules, journal
        self.run_id, self.scope = run_id, scope
        self.complete = False

    async def produce(self, send: MemoryObjectSendStream[Job], emit: EventSink) -> None:
        pages = items = 0
        matched: int | None = None
        async for features, matched in self.pages():
            pages += 1
            items += len(features)
            emit(SearchProgress(pages, items, matched))
            jobs: list[Job] = []
            refusals: list[Refusal] = []
            for item in features:
                planned, refused = plan_item(item, self.rules)
                jobs.extend(planned)
                refusals.extend(refused)
            # The whole page is journalled before any of it is queued: `status` shows the
            # plan, `--retry-failed` can rebuild it, and a mirror knows what it has seen.
            await self.journal.plan(jobs, refusals, run=self.run_id, scope=self.scope)
            for refusal in refusals:
                emit(JobRefused(refusal))
            for job in jobs:
                emit(JobQueued(job))
                await send.send(job)
        emit(SearchProgress(pages, items, matched, done=True))
        self.complete = True


class _JobSource:
    def __init__(self, jobs: list[Job]) -> None:
        self.jobs = jobs
        self.complete = False

    async def produce(self, send: MemoryObjectSendStream[Job], emit: EventSink) -> None:
        emit(SearchProgress(0, 0, None, done=True))
        for job in self.jobs:
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


def free_space(path: Path) -> int:
    """Bytes free at ``path`` (for the dry run and the pre-flight check)."""
    return shutil.disk_usage(path).free
