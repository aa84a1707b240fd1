"""A cluster run's coordinator: plan here, transfer on a Dask cluster's workers, judge here.

::

    plan_jobs ──▶ job files per bucket ──▶ units (largest first) ──▶ client.submit(run_unit)
        │                                                                 │ as each completes
        │       lease heartbeats ──▶ one dashboard line per worker        ▼
        └──────────────── conclude ◀── outcomes replayed ◀── merge into the main journal

:func:`run_cluster` runs today's phases up to the plan (:func:`stacpull.engine.plan_jobs`:
the search once, here, each job written to its bucket's job file), then makes or takes the
``distributed.Client``, submits one task per unit (:func:`stacpull.shards.unit.run_unit`,
plain data in and out), and takes the results as they complete: each unit's bucket
journals are merged into the main journal and its files told to the run's sinks (its
outcome log replayed, :mod:`.replay`). A unit that stopped for a transient cause (its
worker was lost, another owner took a bucket, a former owner did not let go in time) is
sent again, at most ``cluster.retries`` times. Only once every unit came back
``complete`` from this same search does the run judge gone files and prune
(:func:`stacpull.engine.conclude`); then one report and one :class:`RunResult`.

While the units run, each worker's progress is read from its buckets' lease heartbeats
(:mod:`.progress`). A stop (Ctrl-C) supersedes every lease of the units still out: their
workers stop at their next heartbeat, ``.part`` files kept, and the run ends interrupted.

Dask is imported here only, and only when a cluster run starts.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import hashlib
import importlib
import importlib.util
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from ..config import Config
from ..engine import conclude, plan_jobs
from ..errors import ConfigError, StacpullError, first_error
from ..events import EventSink, HostLimitChanged, TransferRetried, fanout
from ..models import Job
from ..runstate import RunState, abandon
from ..runtypes import RunOptions, RunResult, StopSignal
from ..shards.coordinator import clear_jobs, merge_unit, open_shards, unit_specs
from ..shards.jobfiles import JobFiles
from ..shards.layout import bucket_dir
from ..shards.lease import Lease, LeaseRow, read_lease
from ..shards.unit import UnitSpec, run_unit
from ..stats import RunStats
from ..tokens import TokenProvider
from .address import LocalAddress, parse_address
from .gate import DaskGate
from .progress import Heartbeats, WorkerLines
from .replay import replay_outcomes
from .tokenfile import TokenFileWriter, token_path

if TYPE_CHECKING:
    from distributed import Client as Client

__all__ = ["ClusterCall", "run_cluster"]

log = logging.getLogger("stacpull.cluster")

#: Seconds the coordinator waits for a result before it reads the heartbeats again.
_POLL = 0.5
#: Seconds between two readings of the lease heartbeats (the workers beat once a second).
_PROGRESS_EVERY = 1.0
#: Seconds the units still out get to come back after a stop (their workers stop at the
#: next heartbeat, a second away, plus the transfers' grace).
_STOP_WAIT = 30.0
#: Seconds a scheduler with no worker yet is waited for.
_WORKERS_WAIT = 60.0
#: The owner a stop writes into the leases it supersedes.
_STOPPER = "coordinator-stop"
#: How a LocalCluster this run makes starts its worker processes (:func:`_connect`).
_FORKSERVER = {"distributed.worker.multiprocessing-method": "forkserver"}


@dataclass(frozen=True, slots=True)
class ClusterCall:
    """The caller's side of one cluster run: ``client`` a ``distributed.Client`` of its
    own (left open; ``None``: one is made from ``cluster.address`` and closed at the end),
    ``sink`` its events, ``tokens`` its credentials, ``stats`` the counters its view
    draws (fed every event, as a single run's), ``stop`` its graceful stop."""

    client: Client | None = None
    sink: EventSink | None = None
    tokens: TokenProvider | None = None
    stats: RunStats | None = None
    stop: StopSignal | None = None


_NO_DASK = "--cluster needs Dask: pip install 'stacpull[dask]' (dask[distributed])"


def _distributed() -> Any:
    """``distributed``, imported at first use. Typed as ``Any``: its classes' methods
    carry no annotations ``mypy --strict`` accepts."""
    try:
        return importlib.import_module("distributed")
    except ImportError:
        raise ConfigError(_NO_DASK) from None


def _sinks(call: ClusterCall) -> EventSink | None:
    """The caller's sink and view counters as one sink: the run's own counters (its
    report, its result) are the engine's, fed the same events."""
    sinks = [s for s in (call.stats, call.sink) if s is not None]
    return fanout(sinks) if sinks else None


async def run_cluster(config: Config, options: RunOptions | None, call: ClusterCall) -> RunResult:
    """Run ``config`` (a mirror, a download, a retry of the failures: ``options``) with its
    transfers on a Dask cluster; see the module docstring. Raises as
    :func:`stacpull.engine.run` does (:class:`ConfigError` for a bad ``cluster.*``, a
    layout DEST did not record, or Dask missing)."""
    opts = options or RunOptions()
    early = None
    if call.client is None:  # clear errors before any search
        parse_address(config.cluster.address or "")
        if importlib.util.find_spec("distributed") is None:
            raise ConfigError(_NO_DASK)
        early = _Early(config)
        if early.workers is None:
            # A scheduler's cluster is reached first: one that does not answer is told
            # before a search that may take hours (a whole mission's), not after it.
            await anyio.to_thread.run_sync(early.ready)
    try:
        return await _run(config, opts, call, early)
    finally:
        if early is not None:  # a cluster started for a run that ended before its dispatch
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(early.close)


async def _run(
    config: Config, opts: RunOptions, call: ClusterCall, early: _Early | None
) -> RunResult:
    files: list[JobFiles] = []

    def on_open(state: RunState) -> Callable[[Job], None]:
        files.append(open_shards(state, config.cluster.buckets))
        return add

    def add(job: Job) -> None:
        files[0].add(job)
        if early is not None:
            early.start()

    plan = await plan_jobs(
        config, opts, on_open, sink=_sinks(call), tokens=call.tokens, stop=call.stop
    )
    if plan.state is None:
        assert plan.result is not None
        return plan.result
    state = plan.state
    try:
        files[0].close()
        fatal = None
        if files[0].loads and not state.stop.requested:
            fatal = await _dispatch(state, files[0], call.client, early)
    except BaseException as exc:
        # An error is the run's stop (``stopped``), an abort (a second Ctrl-C, a
        # cancellation) ``aborted``, as a single run records them.
        abandon(state, exc)
        raise
    return await conclude(state, fatal=fatal)


def _dest_tag(state: RunState) -> str:
    """A short name for this DEST: the tasks' keys and the gate's names on a shared
    scheduler never meet another DEST's."""
    return hashlib.sha256(str(state.root).encode()).hexdigest()[:10]


async def _dispatch(
    state: RunState, files: JobFiles, given: Client | None, early: _Early | None
) -> str | None:
    """Every unit out and back: ``None`` when all completed, else why the run did not.
    When the worker count is known before the cluster is up (``local:N``), the bucket
    journals are seeded while it starts."""
    config = state.config
    # One politeness budget: each host's connections over every worker, at most the cap.
    tag = _dest_tag(state)
    gate = DaskGate(config.cluster.host_cap(config.download.per_host_limit), f"stacpull-{tag}")
    # Only the coordinator holds the credentials: the workers read the current access
    # token from DEST/.stacpull/token, which the writer replaces before each expiry.
    writer = TokenFileWriter(state.provider, token_path(state.root))
    token_file = str(writer.path) if await writer.write_now() else None

    def cut(workers: int) -> list[UnitSpec]:
        return unit_specs(state, files, workers, token_file=token_file, gate=gate)

    known = early.workers if early is not None else None
    specs = None if known is None else await anyio.to_thread.run_sync(cut, known)
    async with _workers(config, given, early) as (client, workers):
        if specs is None:
            specs = await anyio.to_thread.run_sync(cut, workers)
        units = _Units(state, client, specs, tag)
        try:
            async with anyio.create_task_group() as tg:
                if token_file is not None:
                    tg.start_soon(writer.run)  # a refresh that fails for good stops the run
                await units.run()
                tg.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            raise first_error(group) from None
    return units.verdict()


# -- the client -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Made:
    """A client this run made (and a LocalCluster it started), to close at its end."""

    client: Any
    cluster: Any = None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close()


def _connect(config: Config) -> _Made:
    """Start a LocalCluster (``local:N``) or connect to a scheduler (``tcp://…``)."""
    distributed = _distributed()
    address = parse_address(config.cluster.address or "")
    if isinstance(address, LocalAddress):
        # Worker processes forked from one fork server that imported Dask once, rather
        # than each spawned to import it again: a start of 4-7 s here becomes 2-4 s. Not
        # a plain fork: this process has threads and open journals. Only for the start:
        # Dask's own default again for any worker restarted later, and for the caller.
        with importlib.import_module("dask").config.set(_FORKSERVER):
            cluster = distributed.LocalCluster(
                n_workers=address.count,
                threads_per_worker=1,  # one unit per process: its own event loop and core
                processes=True,
                # Dask's own HTTP server (its dashboard, when bokeh is installed) on a free
                # port of this machine: the default, 8787, may be another cluster's.
                dashboard_address="127.0.0.1:0",
            )
        return _Made(distributed.Client(cluster), cluster)
    try:
        return _Made(distributed.Client(address.address, timeout=_WORKERS_WAIT))
    except OSError as exc:
        raise ConfigError(f"cluster.address: cannot reach {address.address}: {exc}") from None


class _Early:
    """The cluster a run makes, started in a thread at the first planned job: its start
    (a LocalCluster's worker processes importing Dask: seconds, on a loaded machine four)
    overlaps the rest of the search and the seeding of the bucket journals instead of
    following them. A run with nothing to transfer never starts one."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._future: concurrent.futures.Future[_Made] | None = None
        self._taken = False

    def start(self) -> None:
        if self._future is None:
            pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="stacpull-dask")
            self._future = pool.submit(_connect, self.config)
            pool.shutdown(wait=False)

    @property
    def workers(self) -> int | None:
        """The workers a LocalCluster is started with; None for a scheduler's own."""
        address = parse_address(self.config.cluster.address or "")
        return address.count if isinstance(address, LocalAddress) else None

    def ready(self) -> None:
        """Block until the cluster is reached, raising what reaching it raised, without
        taking it (whoever takes it later closes it; else :meth:`close` does)."""
        self.start()
        assert self._future is not None
        self._future.result()

    def made(self) -> _Made:
        """The cluster, once it is up (blocking); whoever takes it closes it."""
        self.start()
        assert self._future is not None
        self._taken = True
        return self._future.result()

    def close(self) -> None:
        """Close a cluster started but never taken (blocking until it is up)."""
        if self._future is not None and not self._taken:
            self._taken = True
            with contextlib.suppress(Exception):
                self._future.result().close()


def _worker_count(client: Any) -> int:
    """The workers the cluster has now (waiting a while for a first one)."""
    workers = len(client.scheduler_info().get("workers", {}))
    if workers == 0:
        try:
            client.wait_for_workers(1, timeout=_WORKERS_WAIT)
        except TimeoutError:  # distributed's WorkerStartTimeoutError is one
            raise ConfigError(
                f"cluster: no worker joined the scheduler at {client.scheduler.address} "
                f"within {_WORKERS_WAIT:g} s; start workers (dask worker ADDRESS, or your "
                "batch system's job) or check cluster.address; the plan is kept for the "
                "next run"
            ) from None
        workers = len(client.scheduler_info().get("workers", {}))
    return max(1, workers)


@contextlib.asynccontextmanager
async def _workers(
    config: Config, given: Client | None, early: _Early | None
) -> AsyncIterator[tuple[Any, int]]:
    """The client and its worker count: ``given`` as it is, else one made for this run
    (``early``'s, started at the first job) and closed at its end (its LocalCluster
    stopped)."""
    made = None
    if given is None:
        connect = early.made if early is not None else functools.partial(_connect, config)
        made = await anyio.to_thread.run_sync(connect)
    client = given if made is None else made.client
    try:
        # Counted now, not before the search: a cluster may have grown meanwhile.
        yield client, await anyio.to_thread.run_sync(_worker_count, client)
    finally:
        if made is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(made.close)


# -- the units out and back -----------------------------------------------------------------


@dataclass(slots=True)
class _Unit:
    """One unit's dispatch: its spec, the attempts made, the future out, how it ended."""

    spec: UnitSpec
    attempts: int = 0
    future: Any = None
    done: bool = False
    fatal: str | None = None


@dataclass(slots=True)
class _Units:
    """The units of one run on one client, until each is complete or given up."""

    state: RunState
    client: Any
    specs: list[UnitSpec]
    tag: str
    units: dict[int, _Unit] = field(init=False)
    beats: Heartbeats = field(default_factory=Heartbeats)
    lines: WorkerLines = field(init=False)
    stopping: bool = False

    def __post_init__(self) -> None:
        self.units = {spec.unit: _Unit(spec) for spec in self.specs}
        self.lines = WorkerLines(self.state.emit)

    async def run(self) -> None:
        """Submit every unit (largest first), then take results until none is out. Left
        early (an abort, an error), the units still out are taken back from their workers
        and their tasks cancelled: no worker goes on writing DEST after the run."""
        self.state.stop.subscribe(lambda reason, drain: self._stop())
        try:
            for unit in self.units.values():
                await self._submit(unit)
            await self._gather()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._supersede_out)
                await self._abandon("the run ended first")
            raise

    async def _gather(self) -> None:
        since = anyio.current_time()
        deadline: float | None = None
        while out := [u.future for u in self.units.values() if u.future is not None]:
            if self.stopping and deadline is None:
                deadline = anyio.current_time() + _STOP_WAIT + self.state.opts.grace
                await anyio.to_thread.run_sync(self._supersede_out)
            if deadline is not None and anyio.current_time() > deadline:
                await self._abandon(f"did not stop within {_STOP_WAIT:g} s")
                break
            finished = await anyio.to_thread.run_sync(self._wait, out)
            for future in finished:
                await self._returned(future)
            if anyio.current_time() - since >= _PROGRESS_EVERY:
                since = anyio.current_time()
                await self._progress()

    def _stop(self) -> None:
        self.stopping = True

    def _wait(self, out: list[Any]) -> list[Any]:
        """The futures among ``out`` that completed within a short wait."""
        try:
            done, _ = _distributed().wait(out, timeout=_POLL, return_when="FIRST_COMPLETED")
        except TimeoutError:  # none yet: Dask's wait raises rather than return none
            return []
        return list(done)

    async def _submit(self, unit: _Unit) -> None:
        unit.attempts += 1
        spec = unit.spec
        key = f"stacpull-{self.tag}-r{spec.run_id}-u{spec.unit}-a{unit.attempts}"
        unit.future = await anyio.to_thread.run_sync(
            lambda: self.client.submit(run_unit, spec, key=key, pure=False)
        )

    async def _returned(self, future: Any) -> None:
        """A unit's task ended: merge its buckets, tell its files, decide what next."""
        unit = next(u for u in self.units.values() if u.future is future)
        unit.future = None
        result = await anyio.to_thread.run_sync(_result_of, future)
        await anyio.to_thread.run_sync(self._settle, unit, result)
        if result["outcome"] == "complete":
            unit.done = True
            await anyio.to_thread.run_sync(clear_jobs, self.state, unit.spec.buckets)
            return
        why = result.get("fatal") or result["outcome"]
        again = result["outcome"] == "superseded" or result.get("transient", False)
        if again and not self.stopping and unit.attempts <= self.state.config.cluster.retries:
            log.info("unit %d sent again (attempt %d): %s", unit.spec.unit, unit.attempts, why)
            await self._submit(unit)
        else:
            unit.fatal = f"unit {unit.spec.unit} (buckets {_listed(unit.spec.buckets)}): {why}"

    def _settle(self, unit: _Unit, result: dict[str, Any]) -> None:
        """Bring the unit's buckets home (blocking: SQLite and files): merge the bucket
        journals, count the bytes its last heartbeat had not told, tell its data hosts'
        window changes, replay its outcomes."""
        merge_unit(self.state, unit.spec.buckets)
        beats = result.get("heartbeats") or {}
        news: dict[str, int] = {}
        for bucket, epoch in (result.get("epochs") or {}).items():
            files = int((beats.get("files") or {}).get(bucket, 0))
            size = int((beats.get("bytes") or {}).get(bucket, 0))
            added = self.beats.settle(result["worker"], bucket, epoch, files, size)
            if added:
                news[result["worker"]] = news.get(result["worker"], 0) + added
        self.lines.show(news)
        # The data hosts' windows as the workers moved them: the report's hosts are the
        # ones a single run's lists (the workers' own lines are the dashboard's alone).
        for host, window, reason in result.get("windows") or ():
            self.state.emit(HostLimitChanged(str(host), int(window), str(reason)))
        # And their retries, for the counts and the error groups (no URL: not needed there).
        for item, collection, asset, path, attempt, error, kind, delay, lost in (
            result.get("retries") or ()
        ):
            job = Job(str(item), str(collection), str(asset), "", str(path))
            self.state.emit(
                TransferRetried(job, int(attempt), str(error), str(kind), float(delay), int(lost))
            )
        outcomes = Path(result["outcomes"]) if result.get("outcomes") else None
        if outcomes is not None and result["outcome"] == "complete":
            state = self.state
            replay_outcomes(
                outcomes, state.journal.directory, unit.spec.buckets, state.run_id, state.emit
            )
        elif outcomes is not None:
            # An owner that did not finish: the one that does tells every file of these
            # buckets (those done here it finds verified), so none is counted twice.
            with contextlib.suppress(OSError):
                outcomes.unlink()

    async def _progress(self) -> None:
        """Read the heartbeats of the units still out; show what each worker added."""
        buckets = [b for u in self.units.values() if u.future is not None for b in u.spec.buckets]
        rows = await anyio.to_thread.run_sync(self._leases, buckets)
        self.lines.show(self.beats.read(rows))

    def _leases(self, buckets: list[int]) -> list[LeaseRow]:
        rows: list[LeaseRow] = []
        for bucket in buckets:
            with contextlib.suppress(StacpullError):
                row = read_lease(bucket_dir(self.state.journal.directory, bucket), bucket)
                if row is not None:
                    rows.append(row)
        return rows

    def _supersede_out(self) -> None:
        """A stop: take every bucket still out from its worker (each stops at its next
        heartbeat, its ``.part`` files kept for the next run)."""
        for unit in self.units.values():
            if unit.future is None:
                continue
            for bucket in unit.spec.buckets:
                directory = bucket_dir(self.state.journal.directory, bucket)
                with contextlib.suppress(StacpullError):
                    Lease.supersede(directory, bucket, _STOPPER).close()

    async def _abandon(self, why: str) -> None:
        """The units that did not come back: cancelled, left unmerged (their bucket
        journals are merged at the next run's start)."""
        for unit in self.units.values():
            if unit.future is not None:
                future, unit.future = unit.future, None
                unit.fatal = f"unit {unit.spec.unit}: {why}"
                await anyio.to_thread.run_sync(self.client.cancel, future)

    def verdict(self) -> str | None:
        """Why the run did not complete (the first unit given up), or ``None``."""
        if self.stopping:
            return None  # a graceful stop: the run ends interrupted, not failed
        for unit in self.units.values():
            if not unit.done:
                return unit.fatal or f"unit {unit.spec.unit} did not complete"
        return None


def _result_of(future: Any) -> dict[str, Any]:
    """A task's plain-data result, or one made for a task that raised (a worker lost more
    often than Dask retries, a unit that could not be unpickled): worth sending again.

    The future is released once read: the scheduler forgets the task, so a worker lost
    later, with the result in its memory, does not make Dask run the unit again (a run
    nobody waits for, writing DEST after its merge, perhaps after the run's end)."""
    try:
        result = future.result()
    except Exception as exc:
        return {"outcome": "stopped", "fatal": f"{type(exc).__name__}: {exc}", "transient": True}
    finally:
        future.release()
    if not isinstance(result, dict) or "outcome" not in result:
        return {"outcome": "stopped", "fatal": f"unexpected task result {result!r:.200}"}
    return result


def _listed(buckets: tuple[int, ...]) -> str:
    shown = ", ".join(str(b) for b in buckets[:8])
    return shown + (f" and {len(buckets) - 8} more" if len(buckets) > 8 else "")
