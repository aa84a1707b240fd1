"""The run: one task group with the search producer, a bounded job stream and N workers.

::

    search pages ──▶ plan ──▶ [bounded stream, 2×N] ──▶ N workers (fetch) ──▶ DEST
         └──────────── events ──▶ stats / dashboard / outcome log ◀──────────┘

The producer blocks on a full stream, so memory stays flat however large the collection.
A :class:`~stacpull.errors.StorageError` (disk full, unwritable DEST) or a search failure
stops the whole run; everything written so far stays resumable. The report is written
whatever the ending, shielded from cancellation.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .auth import TokenProvider, TrustPolicy, load_token
from .config import Config
from .errors import ConfigError, SearchError, StacpullError, StorageError
from .events import Event, EventSink, JobQueued, JobRefused, RunFinished, RunStarted, SearchProgress
from .fetch import FetchContext, fetch
from .journal import JOURNAL_DIR, Journal
from .models import Job
from .plan import PlanRules, plan_item
from .report import OutcomeLog, ReportInfo, RunStats, write_report
from .retry import RetryPolicy
from .search import search_pages

__all__ = ["ItemPages", "RunResult", "run"]

#: An async source of (items of one page, numberMatched): the search, or a saved file.
ItemPages = Callable[[], AsyncIterator[tuple[list[dict[str, Any]], int | None]]]


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


def _first_error(exc: BaseException) -> BaseException:
    """The most meaningful exception inside (possibly nested) exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        inner = [_first_error(e) for e in exc.exceptions]
        for kind in (StorageError, SearchError, StacpullError):
            for e in inner:
                if isinstance(e, kind):
                    return e
        return inner[0]
    return exc


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


async def run(
    config: Config,
    *,
    sink: EventSink | None = None,
    tokens: TokenProvider | None = None,
    pages: ItemPages | None = None,
    stats: RunStats | None = None,
) -> RunResult:
    """Search, plan and download per ``config``; return when every job has ended.

    ``sink`` receives every event (the dashboard); ``tokens`` overrides the token from
    ``config.auth``; ``pages`` replaces the catalogue search (a saved search, tests).
    Raises :class:`ConfigError` before anything starts, never for one file's failure.
    """
    root = _prepare_dest(config.download.dest)
    rules = PlanRules(config.download.assets, config.download.template)
    provider: TokenProvider = tokens if tokens is not None else load_token(config.auth)
    stats = stats if stats is not None else RunStats()
    state_dir = root / JOURNAL_DIR
    journal = Journal(root)
    outcome_log = OutcomeLog(
        state_dir / f"outcomes-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}.jsonl"
    )
    sinks: list[EventSink] = [stats, outcome_log]
    if sink is not None:
        sinks.append(sink)
    emit = _fanout(sinks)
    info = ReportInfo(_query_dict(config), _settings_dict(config))
    source: ItemPages = pages if pages is not None else (lambda: search_pages(config.search))
    started = time.monotonic()
    interrupted = False
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
    try:
        async with aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            headers={"User-Agent": "stacpull/0.1"},
            auto_decompress=False,
        ) as session:
            ctx = FetchContext(
                session=session,
                root=root,
                journal=journal,
                tokens=provider,
                trust=TrustPolicy(config.search.catalog, config.auth.hosts),
                emit=emit,
                retry=RetryPolicy(dl.retries, dl.backoff, dl.max_backoff),
                chunk_size=dl.chunk_size,
            )
            send, receive = anyio.create_memory_object_stream[Job](dl.queue_limit)
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_produce, source, rules, send, emit)
                    for _ in range(dl.concurrency):
                        tg.start_soon(_work, receive.clone(), ctx)
                    receive.close()
            except BaseExceptionGroup as group:
                raise _first_error(group) from None
    except StacpullError as exc:
        info.fatal = str(exc)
        raise
    except (KeyboardInterrupt, anyio.get_cancelled_exc_class()):
        interrupted = True
        raise
    finally:
        # No await in here, so the report is written even while the run is being cancelled.
        seconds = time.monotonic() - started
        emit(RunFinished(seconds, interrupted))
        outcome_log.close()
        report = (
            write_report(state_dir, stats, info, outcome_log.path) if config.output.report else None
        )
        journal.close()
    snap = stats.snapshot()
    return RunResult(
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
    )


async def _produce(
    source: ItemPages, rules: PlanRules, send: MemoryObjectSendStream[Job], emit: EventSink
) -> None:
    pages = items = 0
    matched: int | None = None
    async with send:
        async for features, matched in source():
            pages += 1
            items += len(features)
            emit(SearchProgress(pages, items, matched))
            for item in features:
                jobs, refusals = plan_item(item, rules)
                for refusal in refusals:
                    emit(JobRefused(refusal))
                for job in jobs:
                    emit(JobQueued(job))
                    await send.send(job)
        emit(SearchProgress(pages, items, matched, done=True))


async def _work(receive: MemoryObjectReceiveStream[Job], ctx: FetchContext) -> None:
    async with receive:
        async for job in receive:
            await fetch(job, ctx)


def free_space(path: Path) -> int:
    """Bytes free at ``path`` (for the dry run and the pre-flight check)."""
    return shutil.disk_usage(path).free
