"""The :class:`UnitJournal`: the journal a cluster worker's transfers write, one bucket
journal per bucket of its unit, each statement routed by its job's bucket.

Opening one takes every bucket's lease (all epochs first, so whoever held any of them
stops at once, then the owner locks in bucket order, so two owners of overlapping units
never wait for each other in a circle), then opens the bucket journals
(``DEST/.stacpull/shards/b017/journal.sqlite``) with the lease's guard on every group
commit (:meth:`~.lease.Lease.guard`: nothing is recorded once the bucket was let go), in
exclusive locking mode on a shared file system. Range records
stay under ``DEST/.stacpull`` (:attr:`directory`), so any owner finds a split file's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import StorageError
from ..events import BytesReceived, Event, HostLimitChanged, JobFinished, TransferRetried
from ..journal import JOURNAL_DIR, Journal, JournalRow
from ..models import Job, Status
from .jobfiles import read_jobs
from .layout import bucket_dir, job_bucket, make_bucket_dir
from .lease import Lease

#: The retries a unit hands back, at most (a unit of a million failing requests would
#: otherwise send them all), and the characters kept of each one's message.
_RETRIES_KEPT = 100_000
_MESSAGE = 300

__all__ = ["UnitJournal"]


class UnitJournal:
    """The bucket journals and leases of one unit (see the module docstring)."""

    def __init__(self, dest: Path, buckets: Iterable[int], layout: int, owner: str) -> None:
        """Nothing taken yet: :meth:`open` takes the leases and opens the journals."""
        self.dest = dest
        self.directory = dest / JOURNAL_DIR  # split files' range records: any owner's
        self.layout = layout
        self.owner = owner
        self.buckets = tuple(sorted(set(buckets)))
        self.leases: dict[int, Lease] = {}
        self.journals: dict[int, Journal] = {}
        self._paths: dict[str, int] = {}
        self.files: dict[int, int] = dict.fromkeys(self.buckets, 0)
        self.bytes: dict[int, int] = dict.fromkeys(self.buckets, 0)
        #: Each change of a data host's window in this worker (host, window, reason): the
        #: coordinator's report lists the hosts as a single run's does.
        self.windows: list[tuple[str, int, str]] = []
        # Each retry, as plain data: the coordinator's counts and error groups tell them
        # (without the URL, which may carry a presigned query). At most _RETRIES_KEPT.
        self.retries: list[tuple[str, str, str, str, int, str, str, float, int]] = []

    @classmethod
    def open(
        cls, dest: Path, buckets: Iterable[int], layout: int, owner: str, *, wait: float = 60.0
    ) -> UnitJournal:
        """Take the unit's buckets for ``owner`` and open their journals; everything taken
        is let go again when one cannot be (:class:`~.lease.BucketBusy`, a lease that
        another owner took meanwhile: :class:`~.lease.Superseded`)."""
        unit = cls(dest, buckets, layout, owner)
        try:
            unit._take(wait)
        except BaseException:
            unit.close("stopped")
            raise
        return unit

    def _take(self, wait: float) -> None:
        for bucket in self.buckets:
            directory = bucket_dir(self.directory, bucket)
            try:
                make_bucket_dir(self.directory, bucket)
            except OSError as exc:
                raise StorageError(f"cannot create {directory}: {exc}") from exc
            self.leases[bucket] = Lease.supersede(directory, bucket, self.owner)
        for bucket in self.buckets:
            lease = self.leases[bucket]
            lease.hold(wait)
            journal = Journal(
                self.dest, directory=lease.directory, guard=lease.guard, exclusive=None
            )
            self.journals[bucket] = journal
            # Rows a killed owner left active are pending: their .part is resumed.
            journal.begin_run("unit", None)

    @property
    def epochs(self) -> dict[int, int]:
        """Each bucket's epoch as this owner took it."""
        return {bucket: lease.epoch for bucket, lease in self.leases.items()}

    def jobs(self, run_id: int) -> Iterator[Job]:
        """The unit's jobs of run ``run_id``, bucket by bucket, each path remembered so that
        :meth:`get` finds its bucket."""
        for bucket in self.buckets:
            for job in read_jobs(self.directory, bucket, run_id):
                self._paths[job.dest] = bucket
                yield job

    def _of(self, job: Job) -> Journal:
        bucket = self._paths.get(job.dest)
        if bucket is None:
            bucket = self._paths[job.dest] = job_bucket(job, self.layout)
        try:
            return self.journals[bucket]
        except KeyError:
            raise StorageError(
                f"{job.dest}: its item is in bucket {bucket}, not in this unit {self.buckets}"
            ) from None

    # -- what a transfer writes (stacpull.journal.TransferJournal) ------------------------
    async def get(self, path: str) -> JournalRow | None:
        bucket = self._paths.get(path)
        if bucket is None:
            return None  # not a job of this unit: nothing recorded for it here
        return await self.journals[bucket].get(path)

    async def started(
        self,
        job: Job,
        *,
        etag: str | None,
        last_modified: str | None,
        offset: int,
        total: int | None = None,
    ) -> None:
        await self._of(job).started(
            job, etag=etag, last_modified=last_modified, offset=offset, total=total
        )

    async def segmented(self, job: Job, *, state: str, received: int) -> None:
        await self._of(job).segmented(job, state=state, received=received)

    async def done(self, job: Job, *, size: int, digest: str | None, mtime_ns: int) -> None:
        await self._of(job).done(job, size=size, digest=digest, mtime_ns=mtime_ns)

    async def failed(self, job: Job, *, error_class: str, error: str, partial: int) -> None:
        await self._of(job).failed(job, error_class=error_class, error=error, partial=partial)

    async def paused(self, job: Job, *, partial: int) -> None:
        await self._of(job).paused(job, partial=partial)

    async def forget_part(self, job: Job) -> None:
        await self._of(job).forget_part(job)

    # -- the heartbeat ------------------------------------------------------------------
    def count(self, event: Event) -> None:
        """An event sink: the files ended and bytes received per bucket, which
        :meth:`beat` records (the coordinator's per-worker throughput reads them), and
        the data hosts' window changes (:attr:`windows`) and the retries (:attr:`retries`)."""
        if type(event) is BytesReceived:
            bucket = self._paths.get(event.job.dest)
            if bucket is not None:
                self.bytes[bucket] += event.n
        elif type(event) is JobFinished and event.outcome.status is not Status.REFUSED:
            bucket = self._paths.get(event.outcome.job.dest)
            if bucket is not None:
                self.files[bucket] += 1
        elif type(event) is HostLimitChanged:
            self.windows.append((event.host, event.limit, event.reason))
        elif type(event) is TransferRetried and len(self.retries) < _RETRIES_KEPT:
            job, error = event.job, event.error[:_MESSAGE]
            where = (job.item_id, job.collection, job.asset_key, job.dest)
            self.retries.append(
                (*where, event.attempt, error, event.error_class, event.delay, event.discarded)
            )

    def beat(self) -> None:
        """Record every bucket's heartbeat (blocking, a few small writes);
        :class:`~.lease.Superseded` when another owner took one."""
        for bucket, lease in self.leases.items():
            lease.beat(self.files[bucket], self.bytes[bucket])

    def close(self, state: str = "complete") -> None:
        """Close the bucket journals, then release the leases recording ``state``: a new
        owner may go on as soon as a lease is free."""
        errors: list[BaseException] = []
        for journal in self.journals.values():
            try:
                journal.close()
            except Exception as exc:
                errors.append(exc)
        self.journals.clear()
        for bucket, lease in self.leases.items():
            with contextlib.suppress(StorageError):
                lease.release(state, self.files[bucket], self.bytes[bucket])
        self.leases.clear()
        if errors:
            raise StorageError(f"cannot close the bucket journals: {errors[0]}")

    def stats(self) -> dict[str, Any]:
        """Files ended and bytes received per bucket, as counted by :meth:`count`."""
        return {"files": dict(self.files), "bytes": dict(self.bytes)}
