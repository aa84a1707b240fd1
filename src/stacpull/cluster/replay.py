"""A returned unit's files, told to the coordinator: each line of the unit's outcome log
becomes the :class:`~stacpull.events.JobFinished` its worker emitted, handed to the run's
sinks on the coordinator.

So the run's own counters (its report and :class:`~stacpull.runtypes.RunResult`), its
outcome log (the concatenation of the units', which :meth:`RunResult.files` reads) and the
caller's sink (the dashboard's per-file lines, a script's recorder) see every file of the
cluster run as they would a single process's. Each outcome carries the job as planned
(read back from its bucket's job file: its size, checksum and URL), so the counters of
files of unknown size come out as a single run's do.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..events import EventSink, JobFinished, JobRefused
from ..models import Job, Outcome, Refusal, Status
from ..shards.jobfiles import read_jobs

__all__ = ["replay_outcomes"]


def _planned(state: Path, buckets: Iterable[int], run_id: int) -> dict[str, Job]:
    """The unit's jobs as planned, by their path in DEST (one unit's: a share of the run)."""
    return {job.dest: job for bucket in buckets for job in read_jobs(state, bucket, run_id)}


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    """The outcome log's rows (a line cut short by a full disk or a killed worker skipped)."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return
    with handle:
        for line in handle:
            with contextlib.suppress(ValueError):
                row = json.loads(line)
                if isinstance(row, dict) and isinstance(row.get("status"), str):
                    yield row


def _job(row: dict[str, Any], planned: dict[str, Job]) -> Job:
    """The planned job of an outcome row, or one made from the row (its URL redacted)."""
    path = str(row.get("path") or "")
    job = planned.get(path)
    if job is not None:
        return job
    return Job(
        str(row.get("item") or ""),
        str(row.get("collection") or ""),
        str(row.get("asset") or ""),
        str(row.get("url") or ""),
        path,
    )


def _outcome(row: dict[str, Any], job: Job) -> Outcome:
    return Outcome(
        job,
        Status(row["status"]),
        bytes_downloaded=int(row.get("bytes_downloaded") or 0),
        size=row.get("size"),
        seconds=float(row.get("seconds") or 0.0),
        attempts=int(row.get("attempts") or 0),
        error=row.get("error"),
        error_class=row.get("error_class"),
        resumed_from=int(row.get("resumed_from") or 0),
        notes=tuple(row.get("notes") or ()),
    )


def replay_outcomes(
    log: Path, state: Path, buckets: Iterable[int], run_id: int, emit: EventSink
) -> int:
    """Hand ``emit`` one event per line of the unit's outcome ``log`` (its buckets' jobs
    of run ``run_id`` read from the job files under ``state``, ``DEST/.stacpull``), then
    remove the log (the coordinator's own now holds its lines). Returns the lines told."""
    planned = _planned(state, buckets, run_id)
    told = 0
    for row in _lines(log):
        try:
            status = Status(row["status"])
        except ValueError:
            continue
        if row.get("path") is None and status is Status.REFUSED:
            refusal = Refusal(
                str(row.get("item") or ""),
                str(row.get("collection") or ""),
                str(row.get("asset") or ""),
                str(row.get("error") or ""),
            )
            emit(JobRefused(refusal))
        else:
            emit(JobFinished(_outcome(row, _job(row, planned))))
        told += 1
    with contextlib.suppress(OSError):
        log.unlink()
    return told
