"""A cluster worker's task: one unit of buckets transferred, as plain data in and out.

:func:`run_unit` is a plain function (nothing of Dask in it): it rebuilds the run's
:class:`~stacpull.config.Config` from :attr:`UnitSpec.config` (dotted keys, no secrets:
the worker reads the access token from the file the coordinator keeps current), takes its
buckets (:class:`~.router.UnitJournal`), reads their job files, and runs the engine's
worker entry (:func:`stacpull.engine.transfer_jobs`) with a heartbeat beside it. It
returns a dict of plain values, never an exception object: a task's result must unpickle
on a coordinator that cannot import whatever raised.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import anyio.to_thread

from ..config import Config
from ..config.values import Secret
from ..engine import TransferSetup, transfer_jobs
from ..errors import StacpullError, first_error
from ..journal import JOURNAL_DIR
from ..limits import HostGate
from ..runtypes import RunResult, StopSignal, loop_options
from ..stats import RunStats
from ..tokens import StaticTokenProvider
from ..transfer.context import FetchContext
from .layout import SHARDS_DIR
from .lease import BucketBusy, Superseded
from .router import UnitJournal

__all__ = ["UnitSpec", "config_values", "run_unit", "unit_config"]

#: Seconds between two heartbeats of a unit's leases: how soon a superseded owner
#: notices and stops.
_HEARTBEAT = 1.0
#: Seconds the transfers in flight get when a unit stops (superseded, or the coordinator's
#: stop): a response the server already sent is finished and recorded rather than cut
#: (the new owner would fetch it again); a longer one keeps its ``.part``, resumed.
_GRACE = 1.0
#: The sections a unit's config carries whole; of ``auth`` only the token hosts.
_SECTIONS = ("search", "download", "output")


def config_values(config: Config) -> dict[str, Any]:
    """The dotted keys a worker rebuilds ``config`` from (:func:`unit_config`): every
    setting of ``search``, ``download`` and ``output`` that differs from the default, and
    ``auth.hosts``; no token, no offline token, no client secret (a worker reads
    :attr:`UnitSpec.token_file`). Defaults stay out: ``auto`` is stored as a value no
    setting accepts back."""
    values: dict[str, Any] = {}
    base = Config()
    for section in _SECTIONS:
        part, default = getattr(config, section), getattr(base, section)
        for f in dataclasses.fields(part):
            value = getattr(part, f.name)
            if isinstance(value, Secret) or value == getattr(default, f.name):
                continue
            values[f"{section}.{f.name}"] = value
    if "search.catalog" in values:
        values["search.catalog"] = _catalog_host(config.search.catalog)
    if config.auth.hosts:
        values["auth.hosts"] = config.auth.hosts
    return values


def _catalog_host(url: str) -> str:
    """The catalogue's URL as a worker needs it (which host its token is trusted with: a
    worker never searches), without the user info or query a password or key may be in:
    a unit's spec crosses the wire to the scheduler and its workers."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@dataclass(frozen=True, slots=True)
class UnitSpec:
    """One task: transfer ``buckets`` (of a DEST cut into ``layout`` buckets) for run
    ``run_id``, unit number ``unit``.

    ``dest`` is DEST as every node sees it; ``config`` is :func:`config_values` of the
    run's config; ``token_file`` the access-token file the coordinator keeps current
    (``DEST/.stacpull/token``; None: the coordinator has no token, so neither has the
    worker). ``gate`` is the cluster-wide politeness budget (a
    ``stacpull.limits.HostGate``, e.g. the Dask gate of :mod:`stacpull.cluster.gate`,
    which pickles to its name), installed as the gate of the unit's host limiter
    (``HostLimiter.gate``); ``context``, any other last change: called in the worker with
    the unit's :class:`~stacpull.transfer.context.FetchContext`, it returns the one to use.
    ``wait``: seconds to wait for a superseded owner of a bucket to let go; ``grace``:
    seconds transfers in flight get after a stop (:data:`_GRACE`)."""

    dest: str
    # Out of the repr (a task's arguments reach Dask's logs): headers may carry a key.
    config: dict[str, Any] = field(repr=False)
    run_id: int
    unit: int
    buckets: tuple[int, ...]
    layout: int
    token_file: str | None = None
    gate: HostGate | None = None  # the cluster-wide per-host cap
    context: Callable[[FetchContext], FetchContext] | None = None
    wait: float = 60.0
    grace: float = _GRACE
    owner: str | None = None  # host:pid by default; tests name two owners in one process


def unit_config(spec: UnitSpec) -> Config:
    """The run's config as the worker needs it: DEST and the token file of ``spec``."""
    values = {**spec.config, "download.dest": spec.dest}
    if spec.token_file is not None:
        values["auth.token_file"] = spec.token_file
    return Config().with_values(values)


def _stats(counted: RunStats) -> dict[str, int]:
    snap = counted.snapshot()
    return {
        "downloaded": snap.downloaded,
        "skipped": snap.skipped,
        "failed": snap.failed,
        "refused": snap.refused,
        "retries": snap.retries,
        "bytes_downloaded": snap.bytes_received,
        "bytes_on_disk": snap.bytes_done,
        "items": snap.items,
    }


def _outcomes(spec: UnitSpec, owner: str, epochs: dict[int, int]) -> Path:
    """The unit's outcome log, unique per hold: the run, the unit, the first epoch."""
    first = min(epochs) if epochs else 0
    tag = f"{owner.replace(':', '-').replace('/', '-')}-b{first}e{epochs.get(first, 0)}"
    return (
        Path(spec.dest)
        / JOURNAL_DIR
        / SHARDS_DIR
        / f"outcomes-{spec.run_id}-u{spec.unit}-{tag}.jsonl"
    )


def run_unit(spec: UnitSpec) -> dict[str, Any]:
    """Transfer one unit; returns ``{"unit", "buckets", "epochs", "outcome", "fatal",
    "transient", "stats", "outcomes", "worker", "heartbeats", "windows", "retries"}`` as
    plain data
    (``windows``: each change of a data host's window, ``[host, window, reason]``;
    ``retries``: each retry, ``[item, collection, asset, path, attempt, error, class,
    delay, discarded]``).

    ``outcome`` is ``complete`` (every job ended: downloaded, skipped, failed or refused),
    ``superseded`` (another owner took a bucket: this one stopped at its next
    heartbeat, its ``.part`` files kept) or ``stopped`` (``fatal`` says why; ``transient``:
    worth dispatching again, e.g. a former owner that did not let go in time)."""
    owner = spec.owner or f"{socket.gethostname()}:{os.getpid()}"
    out: dict[str, Any] = {"unit": spec.unit, "buckets": list(spec.buckets), "epochs": {}}
    out |= {"outcome": "stopped", "fatal": None, "transient": False, "stats": {}}
    out |= {"outcomes": None, "worker": owner}
    counted = RunStats()
    state = "stopped"
    journal: UnitJournal | None = None
    try:
        config = unit_config(spec)
        journal = UnitJournal.open(
            Path(spec.dest).expanduser().resolve(), spec.buckets, spec.layout, owner, wait=spec.wait
        )
        out["epochs"] = journal.epochs
        outcomes = _outcomes(spec, owner, journal.epochs)
        out["outcomes"] = str(outcomes)
        result = anyio.run(
            _work, spec, config, journal, counted, outcomes, backend_options=loop_options()
        )
        journal.beat()  # superseded after its last commit: the new owner tells these files
        if result.interrupted:
            out["fatal"], out["transient"] = "the unit was stopped before its end", True
        else:
            state = out["outcome"] = "complete"
    except Superseded as exc:
        state = out["outcome"] = "superseded"
        out["fatal"] = str(exc)
    except BucketBusy as exc:
        out["fatal"], out["transient"] = str(exc), True
    except StacpullError as exc:
        out["fatal"] = str(exc)
    except Exception as exc:  # a bug, a broken config: plain data all the same
        out["fatal"] = f"{type(exc).__name__}: {exc}"
    finally:
        if journal is not None:
            out["heartbeats"] = journal.stats()
            out["windows"] = [list(change) for change in journal.windows]
            out["retries"] = [list(retry) for retry in journal.retries]
            try:
                journal.close(state)
            except StacpullError as exc:
                out["fatal"] = out["fatal"] or str(exc)
    out["stats"] = _stats(counted)
    return out


async def _work(
    spec: UnitSpec, config: Config, journal: UnitJournal, counted: RunStats, outcomes: Path
) -> RunResult:
    """The transfers of the unit's jobs, with the leases' heartbeat beside them: a
    heartbeat that finds a bucket taken over stops the unit (its fatal error)."""
    stop = StopSignal()
    # Exactly the coordinator's credentials: its token file, or none at all. Never the
    # default token.txt of the worker's own working directory, which the config would
    # fall back to (another user's, another mission's token).
    tokens = None if spec.token_file is not None else StaticTokenProvider(None)
    setup = TransferSetup(
        outcomes=outcomes,
        tokens=tokens,
        stats=counted,
        grace=spec.grace,
        adjust=spec.context,
        gate=spec.gate,
    )
    jobs = journal.jobs(spec.run_id)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_heartbeat, journal, stop)
            try:
                result = await transfer_jobs(
                    config, jobs, journal, sink=journal.count, stop=stop, setup=setup
                )
            finally:
                tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise first_error(group) from None
    return result


async def _heartbeat(journal: UnitJournal, stop: StopSignal) -> None:
    while True:
        try:
            await anyio.to_thread.run_sync(journal.beat)
        except Superseded as exc:
            stop.request(str(exc), fatal=exc)
            return
        await anyio.sleep(_HEARTBEAT)
