"""The run: look at the search, open DEST, transfer, judge, and record how it ended.

::

    search pages ──▶ plan ──▶ [bounded stream, 2×N] ──▶ N workers (fetch) ──▶ DEST
         └──────────── events ──▶ stats / dashboard / outcome log ◀──────────┘

:func:`run` is a sequence of phases sharing one :class:`~stacpull.runstate.RunState`:
:func:`_look` (does the search pick anything, and does it fit the byte budget: nothing is
made in DEST before), :func:`_open` (DEST, its lock and journal, credentials, the logs),
:func:`_transfer` (the session and the pool of :mod:`stacpull.workers`, fed by
:mod:`stacpull.producer`), :func:`_judge` (a mirror's verdict, :mod:`stacpull.gone`),
and :func:`~stacpull.runstate.finish`. A cluster run splits it (:mod:`stacpull.shards`):
:func:`plan_jobs` and :func:`conclude` on the coordinator, :func:`transfer_jobs` on
workers. A :class:`~stacpull.errors.StorageError` (disk full, unwritable DEST) or a search
failure stops the whole run; a :class:`StopSignal` (Ctrl-C) stops it gracefully;
everything written so far stays resumable.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from . import safeio
from .config import Config, shown_setting
from .credentials import load_credentials
from .destlock import refuse_nested
from .dryrun import budget_error, dry_run
from .errors import ConfigError, StorageError, first_error, scrub
from .events import EventSink, HostLimitChanged, RunFinished, RunStarted, fanout
from .gone import confirm_gone, incomplete, prune
from .journal import JOURNAL_DIR, Journal, TransferJournal
from .limits import HostGate, HostLimiter, TokenBucket, connection_cap, open_files_budget
from .models import Job
from .peek import peek
from .plan import PlanRules
from .producer import JobSource, PageSource, Source
from .report import EventLog, OutcomeLog, ReportInfo
from .retry import RetryPolicy
from .runstate import RunState, abandon, finish, settle
from .runtypes import STOP_GRACE, RunOptions, RunResult, StopSignal
from .search import CatalogueHeaders, ItemPages, search_pages
from .shards.sync import forget, merge_all
from .stats import RunStats
from .tokens import TokenProvider
from .transfer.context import FetchContext
from .transfer.http import Session, client_session
from .transfer.space import SpaceBudget
from .trust import TrustPolicy
from .verify import record_hash
from .workers import PoolSize, pump

__all__ = ["PlanOutcome", "TransferSetup", "conclude", "plan_jobs", "run", "transfer_jobs"]

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class _Request:
    """One call of :func:`run`: the config and the kind of run, the selectors and the
    ``--log-json`` path checked before anything starts, and what the caller hands in."""

    config: Config
    opts: RunOptions
    rules: PlanRules
    log_json: Path | None
    sink: EventSink | None
    tokens: TokenProvider | None
    stats: RunStats | None
    stop: StopSignal | None

    @classmethod
    def of(
        cls,
        config: Config,
        opts: RunOptions,
        sink: EventSink | None,
        tokens: TokenProvider | None,
        stats: RunStats | None,
        stop: StopSignal | None,
    ) -> _Request:
        log_json = Path(config.output.log_json).expanduser() if config.output.log_json else None
        kind = safeio.not_regular(log_json) if log_json is not None else None
        if kind is not None:
            raise ConfigError(
                f"--log-json {log_json}: not a regular file ({kind}); name a new or a regular file"
            )
        # Selectors and template are checked before any search and before DEST is created.
        rules = PlanRules(config.download.assets, config.download.template)
        return cls(config, opts, rules, log_json, sink, tokens, stats, stop)

    def search(self) -> ItemPages:
        """The pages to plan from: the caller's (a saved search) or the catalogue's."""
        if self.opts.pages is not None:
            return self.opts.pages
        return lambda: search_pages(self.config.search, CatalogueHeaders.of(self.config))


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
        "concurrency": shown_setting("download.concurrency", d.concurrency),
        "per_host": shown_setting("download.per_host", d.per_host),
        "segments": shown_setting("download.segments", d.segments),
        "chunk_size": d.chunk_size,
        "stall_timeout": d.stall_timeout,
        "retries": d.retries,
        "auth_hosts": list(config.auth.hosts),
    }


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


def _nothing_done(*, interrupted: bool = False) -> RunResult:
    """The result of a run that ended before DEST was made."""
    return RunResult(0, 0, 0, 0, 0, 0, 0, 0.0, 0, None, interrupted=interrupted)


async def _unless_stopped(stop: StopSignal | None, work: Callable[[], Awaitable[_T]]) -> _T | None:
    """``work()``, or ``None`` when a stop is asked for meanwhile (a Ctrl-C during this
    search ends the run, too)."""
    with anyio.CancelScope() as scope:
        if stop is not None:
            stop.subscribe(lambda reason, drain: scope.cancel())
        return await work()
    return None


async def _look(request: _Request) -> RunResult | ItemPages | None:
    """Before DEST is made: the pages to plan from (``None`` for ``--retry-failed``, which
    does not search), or the result of a run that ends here.

    Nothing matched or nothing selected: no DEST, no journal, no report; selectors that
    pick nothing raise NothingSelected. With ``download.max_bytes``, the whole search is
    planned first, and a plan over the budget raises :class:`ConfigError`.
    """
    config, opts = request.config, request.opts
    if opts.retry_failed:
        return None
    peeked = await _unless_stopped(
        request.stop, lambda: peek(request.search(), request.rules.selectors)
    )
    if peeked is None:
        return _nothing_done(interrupted=True)
    kept_mirror = (
        opts.kind == "mirror"
        and (Path(config.download.dest or ".").expanduser() / JOURNAL_DIR).is_dir()
    )
    if peeked.empty and not kept_mirror:
        return _nothing_done()
    # An existing mirror goes on: files are judged gone only after a complete search
    # that said none match, each confirmed by id (see stacpull.gone).
    if config.download.max_bytes and not opts.yes:
        planned = await _unless_stopped(request.stop, lambda: dry_run(config, pages=peeked.pages))
        if planned is None:
            return _nothing_done(interrupted=True)
        refusal = budget_error(planned, config.download.max_bytes)
        if refusal is not None:
            raise ConfigError(refusal)
    return peeked.pages


def _open(
    request: _Request, listing: ItemPages | None, *, exclusive: bool | None = False
) -> RunState:
    """DEST made and locked, the credentials loaded, the run begun in the journal, its
    outcome log (named by the run number: unique even for two runs in the same second)
    and event log opened, the jobs' source ready, the run's start told. A cluster run's
    bucket journals are merged back first (a crashed cluster run merged nothing), so every
    run plans, retries and prunes from the whole DEST. ``exclusive``: see
    :class:`~stacpull.journal.Journal`."""
    config, opts = request.config, request.opts
    root = _prepare_dest(config.download.dest)
    provider = request.tokens if request.tokens is not None else load_credentials(config.auth)
    journal = Journal(root, lock=True, exclusive=exclusive)
    try:
        merge_all(journal, root)
    except BaseException:
        journal.close()  # and the DEST lock with it
        raise
    scope = _scope(config)
    run_id = journal.begin_run("retry-failed" if opts.retry_failed else opts.kind, scope)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    outcome_log = OutcomeLog(root / JOURNAL_DIR / f"outcomes-{stamp}-{run_id}.jsonl")
    stats = request.stats if request.stats is not None else RunStats()
    event_log = EventLog(request.log_json) if request.log_json is not None else None
    sinks = [s for s in (stats, outcome_log, event_log, request.sink) if s is not None]
    info = ReportInfo(_query_dict(config), {**_settings_dict(config), "auth": provider.source})
    source: Source
    if listing is None:  # --retry-failed: no search
        source = JobSource([row.planned_job() for row in journal.rows("failed")])
    else:
        source = PageSource(listing, request.rules, journal, run_id, scope)
    stop = request.stop if request.stop is not None else StopSignal()
    state = RunState(
        config=config,
        opts=opts,
        root=root,
        journal=journal,
        run_id=run_id,
        scope=scope,
        provider=provider,
        stats=stats,
        stop=stop,
        outcome_log=outcome_log,
        event_log=event_log,
        emit=fanout(sinks),
        info=info,
        source=source,
    )
    state.emit(
        RunStarted(scrub(config.search.catalog), config.search.collections, str(root),
                   config.download.concurrency_limit)
    )  # fmt: skip
    return state


@dataclass(frozen=True, slots=True)
class _Pool:
    """What the pool of one run (or one cluster unit) needs: DEST, the journal its
    transfers write, credentials, the jobs, how to stop, and where events go."""

    config: Config
    root: Path
    journal: TransferJournal
    provider: TokenProvider
    source: Source
    stop: StopSignal
    emit: EventSink
    grace: float
    adjust: Callable[[FetchContext], FetchContext] | None = None
    gate: HostGate | None = None  # a cluster's per-host budget (RunOptions.gate)

    @classmethod
    def of(cls, state: RunState) -> _Pool:
        return cls(
            state.config,
            state.root,
            state.journal,
            state.provider,
            state.source,
            state.stop,
            state.emit,
            state.opts.grace,
            gate=state.opts.gate,
        )


async def _transfer(pool: _Pool) -> None:
    """The session and the pool: every job ends, or a stop takes effect."""
    dl = pool.config.download
    # The host windows bound the connections per host; the open-file limit bounds them all
    # (a run over many hosts, or under a low ``ulimit -n``, would otherwise run out).
    cap = connection_cap(open_files_budget())
    per_host = min(dl.per_host_limit, cap)
    async with client_session(
        connect=dl.connect_timeout,
        stall=dl.stall_timeout,
        connections=cap,
        per_host=per_host,
    ) as session:
        ctx = _transfer_context(pool, session, per_host)
        if pool.adjust is not None:
            ctx = pool.adjust(ctx)
        pool.provider.listen(pool.emit)
        try:
            size = PoolSize(dl.concurrency_limit, dl.queue_limit, pool.grace)
            await pump(pool.source, ctx, size, pool.stop, pool.emit)
        except BaseExceptionGroup as group:
            raise first_error(group) from None
        finally:
            pool.provider.listen(None)
    if pool.stop.fatal is not None:
        raise pool.stop.fatal


def _transfer_context(pool: _Pool, session: Session, per_host: int) -> FetchContext:
    """What every transfer of the run shares, from ``download.*``; ``per_host``: the
    ceiling of every host's window (``download.per_host``, lowered to what the open-file
    limit allows)."""
    dl, emit = pool.config.download, pool.emit
    limiter = HostLimiter(
        per_host,  # the ceiling
        start=dl.window_start,  # 8, or the fixed window when not adaptive
        adaptive=dl.adaptive,
        on_change=lambda host, limit, reason: emit(HostLimitChanged(host, limit, reason)),
    )
    limiter.gate = pool.gate  # a cluster's per-host budget, under the window's slots
    return FetchContext(
        session=session,
        root=pool.root,
        journal=pool.journal,
        tokens=pool.provider,
        trust=TrustPolicy(pool.config.search.catalog, pool.config.auth.hosts),
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
        segments=dl.segment_limit,
        segment_size=dl.segment_size,
        segment_below=dl.segment_below,
        record_hash=record_hash(dl.record_hash),
        min_speed=dl.min_speed,
        speed_window=dl.stall_timeout,
        bandwidth=TokenBucket(dl.bwlimit) if dl.bwlimit else None,
        headers=dl.headers,
        header_all_hosts=dl.header_all_hosts,
    )


async def _judge(state: RunState) -> None:
    """After the transfers: a stopped run is ``interrupted``; a mirror judges which files'
    items left the catalogue (after a complete search only) and prunes them if asked."""
    if state.stop.requested:
        state.outcome = "interrupted"
        return
    if state.opts.kind != "mirror":
        return
    state.not_judged = incomplete(state.config, state.opts, state.source)
    if state.not_judged is None:
        unlisted = state.journal.gone(state.scope, state.run_id, spared=state.source.listed_items)
        state.gone, state.not_judged = await confirm_gone(state.config, state.journal, unlisted)
    if state.opts.prune and state.gone:
        state.pruned, state.kept = await anyio.to_thread.run_sync(
            prune, state.root, state.journal, state.gone
        )
        kept = set(state.kept)  # the bucket journals forget the pruned rows too
        forget(state.root, [p for p in state.gone if p not in kept])


async def run(
    config: Config,
    *,
    sink: EventSink | None = None,
    tokens: TokenProvider | None = None,
    stats: RunStats | None = None,
    options: RunOptions | None = None,
    stop: StopSignal | None = None,
) -> RunResult:
    """Search, plan and download per ``config``; return when every job has ended.

    ``sink`` receives every event (the dashboard); ``tokens`` overrides the token from
    ``config.auth``; ``stats`` is filled in as the run goes (a dashboard reads it);
    ``options.pages`` replaces the catalogue search (a saved search, tests); ``stop``
    lets the caller ask for a graceful stop. Raises :class:`ConfigError` before anything
    starts, :class:`StorageError` when DEST cannot take more, never for one file's failure.
    """
    request = _Request.of(config, options or RunOptions(), sink, tokens, stats, stop)
    listing = await _look(request)
    if isinstance(listing, RunResult):
        return listing  # nothing to do, or stopped before DEST was made
    state = _open(request, listing)
    return await _closing(state, lambda: _transfer(_Pool.of(state)), lambda: _judge(state))


async def _closing(state: RunState, *phases: Callable[[], Awaitable[None]]) -> RunResult:
    """Run the open run's last ``phases`` in turn, then end it (:func:`finish`): what ended
    it early recorded first (:func:`~stacpull.runstate.settle`)."""
    try:
        for phase in phases:
            await phase()
    except BaseException as exc:
        settle(state, exc)
        raise
    finally:
        result = finish(state)
    return result


# -- a cluster run: the coordinator plans, workers transfer (see stacpull.shards) -----------


@dataclass(slots=True)
class PlanOutcome:
    """What :func:`plan_jobs` leaves: ``result`` when the run ended before DEST was opened
    (nothing matched, a stop during the first look), else ``state``, the run still open
    (DEST locked, its main journal, the outcome log): close it with :func:`conclude`."""

    result: RunResult | None
    state: RunState | None
    jobs: int = 0  # the jobs handed to on_job


async def plan_jobs(
    config: Config,
    opts: RunOptions,
    on_open: Callable[[RunState], Callable[[Job], None]],
    *,
    sink: EventSink | None = None,
    tokens: TokenProvider | None = None,
    stop: StopSignal | None = None,
) -> PlanOutcome:
    """A cluster run's coordinator: today's phases up to the plan (look, open DEST, the
    main journal, the search planned page by page, each page journalled), handing each
    job to a callback instead of a pool (it writes the job to its bucket's job file, so
    memory stays flat). ``on_open`` is called once DEST and its journal are open (and the
    bucket journals merged back, as every run's :func:`_open` does), before the first
    page is planned (read the layout, open the job files) and returns that callback. No
    transfer, no verdict: the run stays open for the caller, who ends it with
    :func:`conclude` once the workers are done. A stop during the search ends the
    planning early (``state.stop.requested``). Raises as :func:`run` does; a failure
    after DEST was opened is recorded there first."""
    request = _Request.of(config, opts, sink, tokens, None, stop)
    listing = await _look(request)
    if isinstance(listing, RunResult):
        return PlanOutcome(listing, None)
    # On a shared file system no other node may open it: SQLite's WAL index is not shared.
    state = _open(request, listing, exclusive=None)
    outcome = PlanOutcome(None, state)
    try:
        await _drain(state, on_open(state), outcome)
    except BaseException as exc:
        abandon(state, exc)
        raise
    return outcome


async def _drain(state: RunState, on_job: Callable[[Job], None], outcome: PlanOutcome) -> None:
    """Run the source to its end (or a stop), each job to ``on_job``."""
    send, receive = anyio.create_memory_object_stream[Job](state.config.download.queue_limit)

    async def produce() -> None:
        async with send:
            await state.source.produce(send, state.emit)

    with anyio.CancelScope() as scope:
        state.stop.subscribe(lambda reason, drain: scope.cancel())
        async with anyio.create_task_group() as tg:
            tg.start_soon(produce)
            async with receive:
                async for job in receive:
                    on_job(job)
                    outcome.jobs += 1


async def conclude(state: RunState, *, fatal: str | None = None) -> RunResult:
    """End a run :func:`plan_jobs` left open: ``fatal`` says why the transfers did not all
    complete (the run is then ``stopped``); otherwise the verdict of a mirror (after a
    complete search only, and only once every bucket finished it: prune is safe) and
    the run's end, report and result, as :func:`run` writes them."""
    if fatal is None:
        return await _closing(state, lambda: _judge(state))
    state.info.fatal = fatal
    state.outcome = "stopped"
    return finish(state)


@dataclass(frozen=True, slots=True)
class TransferSetup:
    """What a worker's :func:`transfer_jobs` is handed besides the jobs: the outcome log
    it writes (None: none), its credentials (None: from ``config.auth``), the stats it
    fills (a caller reads them even when the transfers raised), the grace after a stop,
    ``adjust``, a last change to the shared :class:`FetchContext`, and ``gate``, the
    cluster-wide per-host budget (see :attr:`~stacpull.runtypes.RunOptions.gate`)."""

    outcomes: Path | None = None
    tokens: TokenProvider | None = None
    stats: RunStats | None = None
    grace: float = STOP_GRACE
    adjust: Callable[[FetchContext], FetchContext] | None = None
    gate: HostGate | None = None  # a cluster's per-host budget, as RunOptions.gate


async def transfer_jobs(
    config: Config,
    jobs: Iterable[Job],
    journal: TransferJournal,
    *,
    sink: EventSink | None = None,
    stop: StopSignal | None = None,
    setup: TransferSetup | None = None,
) -> RunResult:
    """A cluster worker's share of a run: transfer ``jobs`` into ``config.download.dest``,
    recording in ``journal`` (a :class:`~stacpull.shards.router.UnitJournal`): no search,
    no DEST lock, no verdict, no prune, no report, no run recorded. Returns the counts;
    raises :class:`StorageError` (a :class:`~stacpull.shards.lease.Superseded` among them:
    another owner took a bucket) or the stop's fatal error, as :func:`run` does."""
    setup = setup or TransferSetup()
    root = Path(config.download.dest or ".").expanduser().resolve()
    stats = setup.stats if setup.stats is not None else RunStats()
    outcome_log = OutcomeLog(setup.outcomes) if setup.outcomes is not None else None
    sinks = [x for x in (stats, outcome_log, sink) if x is not None]
    emit = fanout(sinks)
    provider = setup.tokens if setup.tokens is not None else load_credentials(config.auth)
    stop = stop if stop is not None else StopSignal()
    source = JobSource(jobs)
    pool = _Pool(
        config, root, journal, provider, source, stop, emit, setup.grace, setup.adjust, setup.gate
    )
    started = time.monotonic()
    try:
        await _transfer(pool)
    finally:
        seconds = time.monotonic() - started
        with contextlib.suppress(Exception):
            emit(RunFinished(seconds, stop.requested))
        if outcome_log is not None:
            outcome_log.close()
    n = stats.snapshot()
    counts = (n.downloaded, n.skipped, n.failed, n.refused, n.retries, n.bytes_received)
    return RunResult(
        *counts, n.bytes_done, seconds, n.items, None, interrupted=stop.requested, dest=root,
        outcomes=setup.outcomes,
    )  # fmt: skip
