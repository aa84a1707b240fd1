"""The journal: one SQLite database per DEST, the source of truth for every transfer.

It lives at ``DEST/.stacpull/journal.sqlite`` (WAL mode) and records, per destination
path: the URL, status, validators (ETag, Last-Modified) of the response that wrote the
``.part``, the bytes on disk, the digest and the last error. A re-run reads it to resume a
``.part`` with ``If-Range`` (only bytes written under a known validator are ever spliced)
and to skip files already verified.

Writes are small and few per file; :class:`Journal` runs them in a worker thread through
:func:`anyio.to_thread.run_sync` under a lock so the event loop never waits on disk.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread

from .errors import StorageError
from .models import Job

__all__ = ["JOURNAL_DIR", "Journal", "JournalRow"]

JOURNAL_DIR = ".stacpull"
_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS transfers (
    path          TEXT PRIMARY KEY,
    item_id       TEXT NOT NULL,
    collection    TEXT NOT NULL,
    asset_key     TEXT NOT NULL,
    url           TEXT NOT NULL,
    status        TEXT NOT NULL,
    expected_size INTEGER,
    checksum      TEXT,
    etag          TEXT,
    last_modified TEXT,
    bytes         INTEGER NOT NULL DEFAULT 0,
    digest        TEXT,
    attempts      INTEGER NOT NULL DEFAULT 0,
    error_class   TEXT,
    error         TEXT,
    item_updated  TEXT,
    updated_at    REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS transfers_status ON transfers(status);
"""


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


class Journal:
    """Thread-safe access to the journal; every public coroutine runs in a worker thread."""

    def __init__(self, dest: Path) -> None:
        directory = dest / JOURNAL_DIR
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                directory / "journal.sqlite", check_same_thread=False, isolation_level=None
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"cannot open the journal in {directory}: {exc}") from exc
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the database (checkpointing the WAL)."""
        with self._lock:
            self._db.close()

    def _run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        with self._lock:
            try:
                return fn(self._db)
            except sqlite3.Error as exc:
                raise StorageError(f"journal write failed: {exc}") from exc

    async def _call(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        return await anyio.to_thread.run_sync(self._run, fn)

    async def get(self, path: str) -> JournalRow | None:
        """The row for ``path``, if any."""

        def q(db: sqlite3.Connection) -> JournalRow | None:
            row = db.execute(
                "SELECT path, url, status, etag, last_modified, bytes, digest, expected_size,"
                " checksum FROM transfers WHERE path = ?",
                (path,),
            ).fetchone()
            return JournalRow(*row) if row else None

        return await self._call(q)

    async def started(
        self, job: Job, *, etag: str | None, last_modified: str | None, offset: int
    ) -> None:
        """A response began writing ``job``'s ``.part`` from ``offset`` under these validators."""

        def q(db: sqlite3.Connection) -> None:
            db.execute(
                """INSERT INTO transfers (path, item_id, collection, asset_key, url, status,
                       expected_size, checksum, etag, last_modified, bytes, attempts,
                       item_updated, updated_at)
                   VALUES (?, ?, ?, ?, ?, 'active', ?, ?, ?, ?, ?, 1, ?, ?)
                   ON CONFLICT(path) DO UPDATE SET
                       item_id=excluded.item_id, collection=excluded.collection,
                       asset_key=excluded.asset_key, url=excluded.url, status='active',
                       expected_size=excluded.expected_size, checksum=excluded.checksum,
                       etag=excluded.etag, last_modified=excluded.last_modified,
                       bytes=excluded.bytes, attempts=transfers.attempts + 1,
                       item_updated=excluded.item_updated, updated_at=excluded.updated_at,
                       error=NULL, error_class=NULL""",
                (
                    job.dest,
                    job.item_id,
                    job.collection,
                    job.asset_key,
                    job.url,
                    job.size,
                    job.checksum,
                    etag,
                    last_modified,
                    offset,
                    job.item_updated,
                    time.time(),
                ),
            )

        await self._call(q)

    async def done(self, job: Job, *, size: int, digest: str | None) -> None:
        """``job`` is verified and under its final name."""
        await self._set(job, "done", bytes=size, digest=digest, error=None, error_class=None)

    async def failed(self, job: Job, *, error_class: str, error: str, partial: int) -> None:
        """``job`` failed in this run; ``partial`` bytes stay in its ``.part``."""
        await self._set(job, "failed", bytes=partial, error=error, error_class=error_class)

    async def forget_part(self, job: Job) -> None:
        """The ``.part`` was discarded: its validators must never be used again."""
        await self._set(job, "pending", bytes=0, etag=None, last_modified=None)

    async def _set(self, job: Job, status: str, **values: Any) -> None:
        cols = ", ".join(f"{k} = ?" for k in values)

        def q(db: sqlite3.Connection) -> None:
            cur = db.execute(
                f"UPDATE transfers SET status = ?, {cols}, updated_at = ? WHERE path = ?",
                (status, *values.values(), time.time(), job.dest),
            )
            if cur.rowcount == 0:
                db.execute(
                    """INSERT INTO transfers (path, item_id, collection, asset_key, url, status,
                           expected_size, checksum, item_updated, updated_at)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                    (
                        job.dest,
                        job.item_id,
                        job.collection,
                        job.asset_key,
                        job.url,
                        status,
                        job.size,
                        job.checksum,
                        job.item_updated,
                        time.time(),
                    ),
                )
                db.execute(
                    f"UPDATE transfers SET {cols} WHERE path = ?", (*values.values(), job.dest)
                )

        await self._call(q)

    def counts(self) -> dict[str, int]:
        """Rows per status (blocking; for summaries)."""
        return self._run(
            lambda db: dict(
                db.execute("SELECT status, COUNT(*) FROM transfers GROUP BY status").fetchall()
            )
        )
