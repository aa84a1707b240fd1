"""Per-bucket job files: the coordinator writes each planned job to its bucket's file as
the search is planned (memory stays flat however large the collection), and the worker
that owns a unit reads its buckets' files back.

``DEST/.stacpull/shards/b017/jobs-<run>.jsonl``: one job per line, every field of the
:class:`~stacpull.models.Job`. Unlike the journal, a job file keeps the URL as planned (a
presigned URL's signature is what the worker needs to fetch it): it is made mode 0600 in
stacpull's private state directory and removed once its run merged (:func:`remove_jobs`).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import fields
from pathlib import Path
from typing import IO

from .. import safeio
from ..destpaths import destination
from ..errors import StorageError, UnsafePathError
from ..models import Job
from .layout import Layout, bucket_dir, job_bucket, make_bucket_dir, planned_bytes

__all__ = ["JobFiles", "job_file", "read_jobs", "remove_jobs"]

_FIELDS = tuple(f.name for f in fields(Job))
#: Job files kept open at once while planning (more buckets: the least recent is closed).
_OPEN_MAX = 128


def job_file(state: Path, bucket: int, run_id: int) -> Path:
    """The job file of ``bucket`` for run ``run_id``."""
    return bucket_dir(state, bucket) / f"jobs-{run_id}.jsonl"


def _line(job: Job) -> str:
    data = {name: getattr(job, name) for name in _FIELDS}
    return json.dumps(data, separators=(",", ":")) + "\n"


def _job(line: str) -> Job:
    data = json.loads(line)
    data["roles"] = tuple(data.get("roles") or ())
    data["also"] = tuple(data.get("also") or ())
    return Job(**data)


class JobFiles:
    """The coordinator's writer of one run's job files; ``loads`` (bucket → planned bytes)
    and ``counts`` (bucket → jobs) are what :func:`~stacpull.shards.layout.units` groups."""

    def __init__(
        self,
        state: Path,
        layout: Layout,
        run_id: int,
        typical: Mapping[tuple[str, str], int] | None = None,
    ) -> None:
        self.state, self.layout, self.run_id = state, layout, run_id
        self.typical = typical or {}
        self.loads: dict[int, int] = {}
        self.counts: dict[int, int] = {}
        self._open: dict[int, IO[str]] = {}

    def add(self, job: Job) -> int:
        """Append ``job`` to its bucket's file; returns the bucket."""
        bucket = job_bucket(job, self.layout.buckets)
        try:
            self._handle(bucket).write(_line(job))
        except OSError as exc:
            raise StorageError(f"cannot write the job file of bucket {bucket}: {exc}") from exc
        self.loads[bucket] = self.loads.get(bucket, 0) + planned_bytes(job, self.typical)
        self.counts[bucket] = self.counts.get(bucket, 0) + 1
        return bucket

    def _handle(self, bucket: int) -> IO[str]:
        handle = self._open.pop(bucket, None)
        if handle is None:
            if len(self._open) >= _OPEN_MAX:
                oldest = next(iter(self._open))
                self._open.pop(oldest).close()
            make_bucket_dir(self.state, bucket)
            path = job_file(self.state, bucket, self.run_id)
            # A bucket met again after its file was closed appends; a new run starts afresh.
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
            if bucket not in self.counts:
                flags |= os.O_TRUNC
            fd = safeio.regular_fd(path, flags)  # never through a link
            os.fchmod(fd, 0o600)  # it holds presigned URLs
            os.set_blocking(fd, True)
            handle = os.fdopen(fd, "w", encoding="utf-8")
        self._open[bucket] = handle  # most recent last
        return handle

    def close(self) -> None:
        """Close every job file (each is complete once closed)."""
        errors: list[OSError] = []
        for handle in self._open.values():
            try:
                handle.close()
            except OSError as exc:
                errors.append(exc)
        self._open.clear()
        if errors:
            raise StorageError(f"cannot write the job files of run {self.run_id}: {errors[0]}")

    def __enter__(self) -> JobFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_jobs(state: Path, bucket: int, run_id: int) -> Iterator[Job]:
    """The jobs of ``bucket`` in run ``run_id``, in the order they were planned (none when
    the bucket has no file for that run)."""
    path = job_file(state, bucket, run_id)
    try:
        handle = path.open(encoding="utf-8")
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StorageError(f"cannot read the job file {path}: {exc}") from exc
    with handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                yield _checked(path, number, line)


def _checked(path: Path, number: int, line: str) -> Job:
    """One line of a job file as a job, its destination checked as the planner checks it:
    a job file is read on another node, perhaps after an edit, and what it names is
    written there (a path outside DEST, or DEST's own journal, stops the unit)."""
    try:
        job = _job(line)
        destination(job.dest)
    except (UnsafePathError, ValueError, TypeError, KeyError) as exc:
        raise StorageError(
            f"{path}, line {number}: not a job stacpull planned ({exc}); remove the file "
            "(the next run plans again)"
        ) from None
    return job


def remove_jobs(state: Path, bucket: int, run_id: int) -> None:
    """Remove a bucket's job file of run ``run_id`` (it keeps presigned URLs as planned)."""
    with contextlib.suppress(FileNotFoundError):
        job_file(state, bucket, run_id).unlink()
