"""The journal's rows: :class:`JournalRow`, what it knows of one destination path, and how
a planned :class:`~stacpull.models.Job` is stored in columns and read back.

No credential is kept: a URL and the job's JSON are scrubbed, and names (ids, keys,
paths) lose only the secrets the process knows (:func:`known_only`), never by shape.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, fields
from typing import Any

from ..destpaths import path_key
from ..errors import SECRETS, scrub, scrub_data
from ..models import Job

__all__ = [
    "PLAN_COLUMNS",
    "ROW_COLUMNS",
    "JournalRow",
    "job_columns",
    "job_from_json",
    "known_only",
]

ROW_COLUMNS = (
    "path, url, status, etag, last_modified, bytes, digest, expected_size, checksum,"
    " item_updated, mtime_ns, attempts, error_class, error, item_id, asset_key, collection,"
    " job, scope, seen_run, segments, total"
)


@dataclass(frozen=True, slots=True)
class JournalRow:
    """What the journal knows of one destination path."""

    path: str
    url: str
    status: str
    etag: str | None
    last_modified: str | None
    bytes: int
    digest: str | None
    expected_size: int | None
    checksum: str | None
    item_updated: str | None = None
    mtime_ns: int | None = None
    attempts: int = 0
    error_class: str | None = None
    error: str | None = None
    item_id: str = ""
    asset_key: str = ""
    collection: str = ""
    job: str | None = None
    scope: str | None = None
    seen_run: int | None = None
    segments: str | None = None  # JSON: a segmented .part's ranges and progress
    total: int | None = None  # the length announced by the response that began the .part

    def same_url(self, url: str) -> bool:
        """Whether this row was recorded for ``url``: the journal keeps URLs scrubbed of
        credentials (a presigned signature, a password), so it compares scrubbed forms."""
        return self.url == url or self.url == scrub(url)

    def planned_job(self) -> Job:
        """The job as last planned (for ``--retry-failed``); rebuilt from the columns when
        the row predates the ``job`` column."""
        if self.job:
            return job_from_json(self.job)
        return Job(
            self.item_id,
            self.collection,
            self.asset_key,
            self.url,
            self.path,
            size=self.expected_size,
            checksum=self.checksum,
            item_updated=self.item_updated,
            zip_check=self.path.lower().endswith((".zip", ".kmz")),
        )


_JOB_FIELDS = tuple(f.name for f in fields(Job))


@functools.lru_cache(maxsize=1024)
def _job_to_json(job: Job) -> str:
    """A job as compact JSON (stored so failures can be retried without a search).

    Built field by field (``dataclasses.asdict`` deep-copies every value) and cached for
    the jobs in flight: each is recorded at least three times (planned, started, done),
    which cost more than the SQL itself with thousands of small files a second."""
    data = {name: getattr(job, name) for name in _JOB_FIELDS}
    # Each string, so the text stays JSON; by shape only the URL (see known_only).
    data = {k: scrub_data(v) if k == "url" else known_only(v) for k, v in data.items()}
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def known_only(value: Any) -> Any:
    """``value`` (a name: an id, a key, a path, a date) without any known secret. Its
    shape proves nothing (an id ``tile;key=12`` is no credential), and a name changed by
    shape is another name: the next run took the item for another one, refused its file
    and a mirror pruned it."""
    if isinstance(value, str):
        return SECRETS.scrub(value, shapes=False)
    if isinstance(value, tuple):
        return [known_only(v) for v in value]
    return value


def job_from_json(text: str) -> Job:
    data = json.loads(text)
    data["roles"] = tuple(data.get("roles") or ())
    data["also"] = tuple(data.get("also") or ())
    return Job(**data)


_JOB_COLUMNS = (
    "path",
    "item_id",
    "collection",
    "asset_key",
    "url",
    "expected_size",
    "checksum",
    "item_updated",
    "job",
    "fold",
)
PLAN_COLUMNS = (*_JOB_COLUMNS, "updated_at", "seen_run", "scope")


def job_columns(job: Job) -> dict[str, Any]:
    """The columns that describe the planned job (not the bytes on disk). No credential is
    kept: the URL and the job are scrubbed (``--retry-failed`` refuses a job whose URL
    carried one; the search hands it out again)."""
    values = (
        job.dest,
        known_only(job.item_id),
        known_only(job.collection),
        known_only(job.asset_key),
        scrub(job.url),
        job.size,
        job.checksum,
        job.item_updated,
        _job_to_json(job),
        path_key(job.dest),
    )
    return dict(zip(_JOB_COLUMNS, values, strict=True))
