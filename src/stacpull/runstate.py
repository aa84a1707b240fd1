"""The run-wide state, and the run's end: what every phase of :func:`stacpull.engine.run`
shares in one :class:`RunState`, and :func:`finish`, which records how the run ended.

:func:`finish` runs whatever the ending (a complete run, a stop, a crash, a
cancellation) and awaits nothing, so the report and the journal's record of the run are
written even while the run is being cancelled.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from .config import Config
from .errors import RunAborted, StacpullError, StorageError
from .events import EventSink, RunFinished
from .journal import JOURNAL_DIR, Journal
from .producer import Source
from .report import EventLog, OutcomeLog, ReportInfo, write_report
from .runtypes import RunOptions, RunResult, StopSignal
from .stats import RunStats
from .tokens import TokenProvider

__all__ = ["RunState", "abandon", "finish", "settle"]


@dataclass(slots=True)
class RunState:
    """What the phases of one run share, from the moment DEST's journal is open.

    ``outcome`` is what the journal records: ``complete``, ``interrupted`` (a graceful
    stop), ``stopped`` (an error ended it) or ``aborted`` (Ctrl-C twice, a cancellation);
    ``gone``, ``pruned``, ``kept`` and ``not_judged`` are a mirror's verdict.
    """

    config: Config
    opts: RunOptions
    root: Path  # DEST, resolved
    journal: Journal
    run_id: int
    scope: str  # the query and layout: a mirror judges only its own files gone
    provider: TokenProvider
    stats: RunStats
    stop: StopSignal
    outcome_log: OutcomeLog
    event_log: EventLog | None
    emit: EventSink  # every sink: the stats, the logs, the caller's
    info: ReportInfo
    source: Source
    started: float = field(default_factory=time.monotonic)  # made just before RunStarted
    outcome: str = "complete"
    gone: list[str] = field(default_factory=list)
    pruned: int = 0
    kept: list[str] = field(default_factory=list)
    not_judged: str | None = None


def finish(state: RunState) -> RunResult:
    """Close the run: tell the sinks, close the logs, write the report and the journal's
    record of the run, and return its result. No await in here. A sink that raised on
    :class:`~stacpull.events.RunFinished` raises once all that is done, unless the run
    already ends with an error."""
    seconds = time.monotonic() - state.started
    interrupted = state.outcome in ("interrupted", "aborted")
    sink_error: Exception | None = None
    try:
        state.emit(RunFinished(seconds, interrupted))
    except Exception as exc:  # the caller's sink: raised once the run is recorded
        sink_error = exc
    state.outcome_log.close()
    if state.event_log is not None:
        state.event_log.close()
    result = _result(state, seconds, _report(state))
    with contextlib.suppress(StorageError):
        state.journal.end_run(state.run_id, state.outcome, _summary(result))
    state.journal.close()
    if sink_error is not None and state.outcome not in ("stopped", "aborted"):
        raise sink_error
    return result


def _report(state: RunState) -> Path | None:
    if not state.config.output.report:
        return None
    try:
        return write_report(
            state.root / JOURNAL_DIR,
            state.stats,
            state.info,
            state.outcome_log.path,
            run_id=state.run_id,
        )
    except OSError:
        return None  # disk full: the journal is the record; the CLI says why it stopped


def _result(state: RunState, seconds: float, report: Path | None) -> RunResult:
    snap = state.stats.snapshot()
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
        interrupted=state.outcome in ("interrupted", "aborted"),
        gone=tuple(state.gone),
        pruned=state.pruned,
        kept=tuple(state.kept),
        not_judged=state.not_judged,
        duplicates=snap.duplicates,
        dest=state.root,
        outcomes=state.outcome_log.path,
    )


def _summary(result: RunResult) -> dict[str, Any]:
    """The run's record in the journal: the result, with its lists as counts."""
    return {
        **{
            k: v
            for k, v in dataclasses.asdict(result).items()
            if k not in ("gone", "report", "kept", "dest", "outcomes")
        },
        "gone": len(result.gone),
        "kept": len(result.kept),
        "report": str(result.report) if result.report else None,
    }


def abandon(state: RunState, exc: BaseException) -> RunResult:
    """End an open run that ``exc`` ended early (:func:`settle`, :func:`finish`); the
    caller raises ``exc`` again."""
    settle(state, exc)
    return finish(state)


def settle(state: RunState, exc: BaseException) -> None:
    """What the journal records of a run that ``exc`` ended early."""
    if isinstance(exc, StacpullError):
        state.info.fatal = str(exc)
        state.outcome = "stopped"
    elif isinstance(
        exc, (KeyboardInterrupt, SystemExit, RunAborted, anyio.get_cancelled_exc_class())
    ):
        # Ctrl-C, a cancellation, or the caller's sink asking to exit: the run did not
        # finish, whatever it had done so far.
        state.outcome = "aborted"
    else:
        # Anything else (the caller's sink raised, an output that broke, a bug) ended the
        # run early: the journal must never call it complete while files are still pending.
        state.info.fatal = f"{type(exc).__name__}: {exc}"
        state.outcome = "stopped"
