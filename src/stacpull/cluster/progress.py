"""The coordinator's view of a cluster run while it goes: each worker's files and bytes,
read from its buckets' lease heartbeats, and the events that show them.

A worker's events stay in its own process; what it records once a second in each bucket's
lease row (the files ended and the bytes received under its hold) is what the coordinator
sees. :class:`Heartbeats` turns successive readings into what was new since the last one,
per worker; :class:`WorkerLines` hands that to the run's sinks as the events every view
already draws: each worker is one line of the dashboard's active transfers (a
:class:`~stacpull.events.TransferStarted` of a job named for the worker, its bytes as
:class:`~stacpull.events.BytesReceived`), and the run's total throughput is their sum. The
files themselves reach the sinks when their unit returns (its outcome log, replayed).

No Dask here: the rows are read from DEST, which every node shares.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..events import BytesReceived, EventSink, TransferStarted
from ..models import Job
from ..shards.lease import LeaseRow

__all__ = ["Heartbeats", "WorkerLine", "WorkerLines", "worker_job"]


@dataclass(slots=True)
class WorkerLine:
    """One worker as the coordinator last saw it: the buckets it holds, the files it ended
    and the bytes it received in this run (over every hold it had)."""

    worker: str
    buckets: set[int] = field(default_factory=set)
    files: int = 0
    bytes: int = 0


class Heartbeats:
    """Successive readings of lease rows, as news: the bytes and files each worker added
    since the reading before. A bucket's counts start again at each new hold (its epoch),
    so each (bucket, epoch) is followed alone; a reading that goes back (never expected)
    adds nothing."""

    def __init__(self) -> None:
        self._seen: dict[tuple[int, int], tuple[int, int]] = {}  # (bucket, epoch) -> files, bytes
        self.workers: dict[str, WorkerLine] = {}

    def read(self, rows: Iterable[LeaseRow]) -> dict[str, int]:
        """Take in a reading of lease rows; the bytes each worker received since the last."""
        news: dict[str, int] = {}
        for row in rows:
            if not row.owner:
                continue
            files, size = self._seen.get((row.bucket, row.epoch), (0, 0))
            line = self.workers.get(row.owner)
            if line is None:
                line = self.workers[row.owner] = WorkerLine(row.owner)
            for other in self.workers.values():
                if other is not line:
                    other.buckets.discard(row.bucket)
            line.buckets.add(row.bucket)
            added_files, added = max(0, row.files - files), max(0, row.bytes - size)
            self._seen[(row.bucket, row.epoch)] = (max(files, row.files), max(size, row.bytes))
            line.files += added_files
            line.bytes += added
            if added:
                news[row.owner] = news.get(row.owner, 0) + added
        return news

    def settle(self, worker: str, bucket: int, epoch: int, files: int, size: int) -> int:
        """A hold's final counts, as its unit returned them (its last heartbeat may be up
        to a second behind): the bytes not seen before."""
        return self.read([LeaseRow(bucket, epoch, worker, None, None, files, size, "ended")]).get(
            worker, 0
        )

    @property
    def total(self) -> int:
        """Bytes received over the cluster so far."""
        return sum(line.bytes for line in self.workers.values())


def worker_job(worker: str) -> Job:
    """The job a worker's line of the dashboard stands for: named for the worker (its
    ``host:pid``), no file of DEST."""
    return Job(worker, "", "worker", f"dask-worker://{worker.replace(':', '/')}", "")


class WorkerLines:
    """The sink side: a worker's first bytes open its line (a transfer started), each new
    reading adds to it; the dashboard shows one line per worker and the run's total."""

    def __init__(self, emit: EventSink) -> None:
        self._emit = emit
        self._jobs: dict[str, Job] = {}

    def show(self, news: dict[str, int]) -> None:
        """Hand the sinks each worker's bytes since the last reading."""
        for worker, added in news.items():
            job = self._jobs.get(worker)
            if job is None:
                job = self._jobs[worker] = worker_job(worker)
                self._emit(TransferStarted(job, 0, None, 1))
            self._emit(BytesReceived(job, added))
