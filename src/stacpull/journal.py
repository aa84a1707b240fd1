"""The journal: one SQLite database per DEST, the source of truth for every transfer.

It lives at ``DEST/.stacpull/journal.sqlite`` (WAL) and holds one row per destination
path: the planned job (item id, asset key, URL, expected size and checksum, the item's
``updated``), its status, the validators (ETag, Last-Modified) of the response that wrote
the ``.part`` and the length it announced, the bytes on disk, the digest computed while
downloading, attempts, and the last error class and message. Refused assets, runs and
the mirror's scope live beside it. Each row also carries its path key
(:func:`~stacpull.plan.path_key`: case folded, NFC), indexed, so a run finds at once which
rows would be one file on a case-insensitive disk.

**Statuses.** ``pending`` (planned, or stopped with a ``.part`` kept), ``active`` (a
response is being written), ``done`` (verified, under its final name), ``failed`` (gave up
in some run, or found rotten by ``stacpull verify``), plus the ``refusals`` table.

**Crash consistency.** Each write is one transaction, made *before* the disk state it
describes is relied on: validators are recorded before the first byte of a response is
written to the ``.part``, ``done`` after the atomic rename. A ``kill -9`` between any two
steps leaves either a ``.part`` whose validators are known (resumed with ``If-Range``), a
``.part`` whose validators are not (discarded), or a verified file whose row still says
``active`` (re-checked, then skipped). ``synchronous=NORMAL`` in WAL mode loses nothing
on a process crash; a power cut may lose the last transactions, which the rules above
also survive.

**Off the event loop, in group commits.** A coroutine queues its statement and waits for
it; one worker thread at a time runs everything queued so far as one transaction, so a
thousand small files a second cost a few commits a second, not two thousand thread hops
that each wait for the GIL behind the event loop (which made the journal the bottleneck of
small-file runs). A statement's own error fails only that statement. A page of planned
jobs is one statement. ``Journal(dest, lock=True)`` takes an exclusive ``flock`` so two
runs never share a DEST, nor run at once on nested DESTs (:mod:`stacpull.destlock`).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Container, Iterable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from . import safeio
from .destlock import DestLock, refuse_nested
from .destpaths import path_key
from .errors import SECRETS, StorageError, scrub, scrub_data
from .models import Holder, Job, Refusal

__all__ = ["JOURNAL_DIR", "Journal", "JournalRow"]

JOURNAL_DIR = ".stacpull"
#: The database and the files SQLite keeps beside it.
_DB_FILES = ("journal.sqlite", "journal.sqlite-wal", "journal.sqlite-shm", "journal.sqlite-journal")
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
CREATE TABLE IF NOT EXISTS refusals (
    item_id    TEXT NOT NULL,
    collection TEXT NOT NULL,
    asset_key  TEXT NOT NULL,
    reason     TEXT NOT NULL,
    run        INTEGER,
    PRIMARY KEY (item_id, asset_key)
);
CREATE TABLE IF NOT EXISTS runs (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    kind     TEXT NOT NULL,
    scope    TEXT,
    started  REAL NOT NULL,
    ended    REAL,
    outcome  TEXT,
    summary  TEXT
);
"""

#: Columns added after 0.1.0; an older journal gains them on open.
_ADDED_COLUMNS = {
    "job": "TEXT",
    "mtime_ns": "INTEGER",
    "seen_run": "INTEGER",
    "scope": "TEXT",
    "segments": "TEXT",
    "total": "INTEGER",
    "fold": "TEXT",  # plan.path_key(path): which rows are one file on a case-insensitive disk
}

_ROW_COLUMNS = (
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
            return _job_from_json(self.job)
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
    # Each string, so the text stays JSON; by shape only the URL (see _known_only).
    data = {k: scrub_data(v) if k == "url" else _known_only(v) for k, v in data.items()}
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def _known_only(value: Any) -> Any:
    """``value`` (a name: an id, a key, a path, a date) without any known secret. Its
    shape proves nothing (an id ``tile;key=12`` is no credential), and a name changed by
    shape is another name: the next run took the item for another one, refused its file
    and a mirror pruned it."""
    if isinstance(value, str):
        return SECRETS.scrub(value, shapes=False)
    if isinstance(value, tuple):
        return [_known_only(v) for v in value]
    return value


def _job_from_json(text: str) -> Job:
    data = json.loads(text)
    data["roles"] = tuple(data.get("roles") or ())
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
_PLAN_COLUMNS = (*_JOB_COLUMNS, "updated_at", "seen_run", "scope")


def _job_columns(job: Job) -> dict[str, Any]:
    """The columns that describe the planned job (not the bytes on disk). No credential is
    kept: the URL and the job are scrubbed (``--retry-failed`` refuses a job whose URL
    carried one; the search hands it out again)."""
    values = (
        job.dest,
        _known_only(job.item_id),
        _known_only(job.collection),
        _known_only(job.asset_key),
        scrub(job.url),
        job.size,
        job.checksum,
        job.item_updated,
        _job_to_json(job),
        path_key(job.dest),
    )
    return dict(zip(_JOB_COLUMNS, values, strict=True))


def _in_transaction(
    db: sqlite3.Connection, fns: list[Callable[[sqlite3.Connection], Any]]
) -> list[tuple[bool, Any]]:
    results: list[tuple[bool, Any]] = []
    Journal._transaction(db, lambda: results.extend((True, fn(db)) for fn in fns))
    return results


def _fetch_all(db: sqlite3.Connection, *, sql: str, args: tuple[Any, ...]) -> list[Any]:
    return db.execute(sql, args).fetchall()


class Journal:
    """Thread-safe access to one DEST's journal; coroutines run in a worker thread."""

    def __init__(self, dest: Path, *, create: bool = True, lock: bool = False) -> None:
        """Open (``create``: or create) the journal of ``dest``; ``lock`` takes DEST for this
        process, so another run on the same DEST, or on one nested in it or around it, gets a
        clear error instead of a race (see :mod:`stacpull.destlock`).

        ``.stacpull`` and the database files in it are used only as a real directory and
        regular files: a link there (to another DEST's state, to a file outside) is refused,
        never followed, and nothing is created before a lock is refused."""
        self.directory = dest / JOURNAL_DIR
        self.path = self.directory / "journal.sqlite"
        self._lock: DestLock | None = None
        if lock:
            refuse_nested(dest, JOURNAL_DIR)
        self._check_state(dest, create=create)
        if lock:
            safeio.keep_private(self.directory)  # before anyone else can open the lock
            self._lock = DestLock.acquire(dest, JOURNAL_DIR)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            have = {row[1] for row in self._db.execute("PRAGMA table_info(transfers)")}
            for column, kind in _ADDED_COLUMNS.items():
                if column not in have:
                    self._db.execute(f"ALTER TABLE transfers ADD COLUMN {column} {kind}")
            if "fold" not in have:
                self._fill_fold()
            self._db.execute("CREATE INDEX IF NOT EXISTS transfers_fold ON transfers(fold)")
        except (OSError, sqlite3.Error) as exc:
            if self._lock is not None:
                self._lock.release()
            raise StorageError(f"cannot open the journal {self.path}: {exc}") from exc
        self._mutex = threading.Lock()
        self._queued: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]] = []
        self._committer: asyncio.Task[None] | None = None

    def _fill_fold(self) -> None:
        """Give the rows of a journal older than the ``fold`` column their path key."""
        paths = [p for (p,) in self._db.execute("SELECT path FROM transfers WHERE fold IS NULL")]
        self._transaction(
            self._db,
            lambda: self._db.executemany(
                "UPDATE transfers SET fold = ? WHERE path = ?", [(path_key(p), p) for p in paths]
            ),
        )

    def _check_state(self, dest: Path, *, create: bool) -> None:
        """Refuse a ``.stacpull`` that is not a real directory, or database or lock files
        that are not regular files (SQLite and the lock would follow a link)."""
        try:
            if create:
                dest.mkdir(parents=True, exist_ok=True)
            exists = safeio.ensure_directory(self.directory, create=create)
        except (FileNotFoundError, FileExistsError, PermissionError) as exc:
            raise StorageError(f"cannot create {self.directory}: {exc.strerror}") from exc
        except OSError as exc:
            raise StorageError(
                f"{self.directory} is {exc.strerror}; stacpull keeps its journal, lock and "
                "reports only in a real directory inside DEST: remove it"
            ) from exc
        if exists and not os.access(self.directory, os.R_OK | os.X_OK):
            raise StorageError(
                f"cannot read {self.directory}: permission denied (stacpull gives others no "
                "access to its state; use the DEST owner's account or group)"
            )
        if not exists or (not create and not os.path.lexists(self.path)):
            raise StorageError(f"no stacpull journal in {dest} (expected {self.path})")
        for name in (*_DB_FILES, "lock"):
            kind = safeio.not_regular(self.directory / name)
            if kind is not None:
                raise StorageError(
                    f"{self.directory / name} is {kind}, not a regular file; stacpull never "
                    "uses its state through a link or special file: remove it"
                )

    def close(self) -> None:
        """Close the database (checkpointing the WAL) and release the DEST lock."""
        with self._mutex:
            self._db.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # -- plumbing -------------------------------------------------------------------------
    def _run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        with self._mutex:
            try:
                return fn(self._db)
            except sqlite3.Error as exc:
                if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
                    # The same words as a full disk under a .part: users grep for one message.
                    raise StorageError(
                        f"disk full while writing {self.path}; free space and re-run to resume"
                    ) from exc
                raise StorageError(f"journal write failed ({self.path}): {exc}") from exc

    async def _call(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``fn`` in the next group commit and return its result (or raise its error)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queued.append((fn, future))
        if self._committer is None:
            self._committer = loop.create_task(self._commit_queued(loop))
        result: _T = await future
        return result

    async def _commit_queued(self, loop: asyncio.AbstractEventLoop) -> None:
        """Commit what is queued, in a worker thread, until nothing is: statements queued
        while one group commits form the next group. A waiter that was cancelled still has
        its statement committed (it was queued before it gave up)."""
        try:
            while self._queued:
                group, self._queued = self._queued, []
                try:
                    results = await loop.run_in_executor(
                        None, self._run_group, [fn for fn, _ in group]
                    )
                except BaseException as exc:  # the loop is shutting down
                    error = StorageError(f"journal write interrupted ({self.path}): {exc!r}")
                    for _, future in group:
                        if not future.done():
                            future.set_exception(error)
                    raise
                for (_, future), (ok, value) in zip(group, results, strict=True):
                    if future.done():
                        continue
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
        finally:
            self._committer = None

    def _run_group(self, fns: list[Callable[[sqlite3.Connection], Any]]) -> list[tuple[bool, Any]]:
        """Run ``fns`` as one transaction; if one fails, run each in its own so that only
        the failing statement reports an error."""
        try:
            return self._run(functools.partial(_in_transaction, fns=fns))
        except Exception as exc:
            if len(fns) == 1:
                return [(False, exc)]
        results: list[tuple[bool, Any]] = []
        for fn in fns:
            try:
                results.append(self._run(functools.partial(_in_transaction, fns=[fn]))[0])
            except Exception as exc:
                results.append((False, exc))
        return results

    @staticmethod
    def _transaction(db: sqlite3.Connection, body: Callable[[], object]) -> None:
        db.execute("BEGIN IMMEDIATE")
        try:
            body()
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # -- runs -----------------------------------------------------------------------------
    def begin_run(self, kind: str, scope: str | None) -> int:
        """Record a run's start; rows left ``active`` by a crashed run become ``pending``."""

        def q(db: sqlite3.Connection) -> int:
            db.execute("UPDATE transfers SET status = 'pending' WHERE status = 'active'")
            cur = db.execute(
                "INSERT INTO runs (kind, scope, started) VALUES (?, ?, ?)",
                (kind, scope, time.time()),
            )
            return int(cur.lastrowid or 0)

        return self._run(q)

    def end_run(self, run: int, outcome: str, summary: dict[str, Any]) -> None:
        """Record how run ``run`` ended (blocking: called while the run shuts down)."""
        self._run(
            lambda db: db.execute(
                "UPDATE runs SET ended = ?, outcome = ?, summary = ? WHERE id = ?",
                (time.time(), outcome, json.dumps(scrub_data(summary)), run),
            )
        )

    def last_run(self) -> dict[str, Any] | None:
        """The most recent run: id, kind, scope, started, ended, outcome, summary."""

        def q(db: sqlite3.Connection) -> dict[str, Any] | None:
            row = db.execute(
                "SELECT id, kind, scope, started, ended, outcome, summary FROM runs"
                " ORDER BY id DESC LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            keys = ("id", "kind", "scope", "started", "ended", "outcome", "summary")
            out = dict(zip(keys, row, strict=True))
            out["summary"] = json.loads(out["summary"]) if out["summary"] else {}
            return out

        return self._run(q)

    # -- planning -------------------------------------------------------------------------
    async def plan(
        self, jobs: Iterable[Job], refusals: Iterable[Refusal], *, run: int, scope: str | None
    ) -> None:
        """Record one search page's jobs (new ones ``pending``) and refusals, in one transaction.

        Only the planned job, the run that saw it and the scope are updated on existing rows:
        the URL, validators and status stay those of the bytes on disk.
        """
        planned = list(jobs)
        job_rows = [(*_job_columns(j).values(), time.time(), run, scope) for j in planned]
        refusal_rows = [
            (
                _known_only(r.item_id),
                _known_only(r.collection),
                _known_only(r.asset_key),
                scrub(r.reason),
                run,
            )
            for r in refusals
        ]
        if not job_rows and not refusal_rows:
            return

        def q(db: sqlite3.Connection) -> None:
            # Part of a group commit, which is one transaction.
            db.executemany(
                f"""INSERT INTO transfers ({", ".join(_PLAN_COLUMNS)}, status)
                   VALUES ({", ".join("?" * len(_PLAN_COLUMNS))}, 'pending')
                   ON CONFLICT(path) DO UPDATE SET job = excluded.job,
                       seen_run = excluded.seen_run, scope = excluded.scope""",
                job_rows,
            )
            # A job planned now is no longer refused (a name freed, metadata fixed).
            db.executemany(
                "DELETE FROM refusals WHERE item_id = ? AND asset_key = ?",
                [(_known_only(j.item_id), _known_only(j.asset_key)) for j in planned],
            )
            db.executemany(
                """INSERT OR REPLACE INTO refusals (item_id, collection, asset_key, reason, run)
                   VALUES (?, ?, ?, ?, ?)""",
                refusal_rows,
            )

        await self._call(q)

    async def holders(self, keys: Iterable[str], *, run: int) -> dict[str, list[Holder]]:
        """Who holds each of these destinations (by :func:`~stacpull.plan.path_key`): the
        item and asset of the row's file, or, for a row planned in run ``run``, of the job
        this run planned there."""
        wanted = sorted(set(keys))
        if not wanted:
            return {}

        def q(db: sqlite3.Connection) -> dict[str, list[Holder]]:
            found: dict[str, list[Holder]] = {}
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                rows = db.execute(
                    "SELECT path, fold, collection, item_id, asset_key, seen_run,"
                    " CASE WHEN seen_run = ? THEN job END FROM transfers"
                    f" WHERE fold IN ({', '.join('?' * len(chunk))})",
                    (run, *chunk),
                )
                for path, fold, collection, item_id, asset_key, seen, job in rows:
                    if job:
                        planned = _job_from_json(job)
                        collection, item_id = planned.collection, planned.item_id
                        asset_key = planned.asset_key
                    holder = Holder(path, collection, item_id, asset_key, seen)
                    found.setdefault(fold, []).append(holder)
            return found

        return await self._call(q)

    # -- one transfer ---------------------------------------------------------------------
    async def get(self, path: str) -> JournalRow | None:
        """The row for ``path``, if any."""
        return await self._call(lambda db: self._get(db, path))

    @staticmethod
    def _get(db: sqlite3.Connection, path: str) -> JournalRow | None:
        row = db.execute(f"SELECT {_ROW_COLUMNS} FROM transfers WHERE path = ?", (path,)).fetchone()
        return JournalRow(*row) if row else None

    async def started(
        self,
        job: Job,
        *,
        etag: str | None,
        last_modified: str | None,
        offset: int,
        total: int | None = None,
    ) -> None:
        """A response began writing ``job``'s ``.part`` from ``offset`` under these
        validators, announcing ``total`` bytes in all (None: it did not say)."""
        await self._set(
            job,
            "active",
            attempt=True,
            replan=True,
            etag=etag,
            last_modified=last_modified,
            bytes=offset,
            digest=None,
            mtime_ns=None,
            error=None,
            error_class=None,
            segments=None,
            total=total,
        )

    async def segmented(self, job: Job, *, state: str, received: int) -> None:
        """``job``'s ``.part`` is being filled by parallel ranges; ``state`` (JSON) says
        which, and how far each got, so a later attempt or run resumes every one."""
        await self._set(job, "active", bytes=received, segments=state)

    async def done(self, job: Job, *, size: int, digest: str | None, mtime_ns: int) -> None:
        """``job`` is verified and under its final name (size, digest and mtime as on disk).

        The job's metadata is recorded as well: a skip after a crash, or a file already
        present, must leave the row describing the file that is there now.
        """
        await self._set(
            job,
            "done",
            replan=True,
            bytes=size,
            digest=digest,
            mtime_ns=mtime_ns,
            error=None,
            error_class=None,
            segments=None,
        )

    async def failed(self, job: Job, *, error_class: str, error: str, partial: int) -> None:
        """``job`` failed in this run; ``partial`` bytes stay in its ``.part``."""
        await self._set(job, "failed", bytes=partial, error=error, error_class=error_class)

    async def paused(self, job: Job, *, partial: int) -> None:
        """The run stopped while ``job`` was in flight; ``partial`` bytes stay in its ``.part``."""
        await self._set(job, "pending", bytes=partial)

    async def forget_part(self, job: Job) -> None:
        """The ``.part`` was discarded: its validators must never be used again."""
        await self._set(
            job, "pending", bytes=0, etag=None, last_modified=None, segments=None, total=None
        )

    async def _set(
        self,
        job: Job,
        status: str,
        /,
        *,
        attempt: bool = False,
        replan: bool = False,
        **values: Any,
    ) -> None:
        """Set ``status`` and ``values`` on ``job``'s row, creating it from the job if needed.

        ``attempt`` counts one more attempt; ``replan`` also records the job's own columns
        (URL, expected size, checksum...). Other columns keep what they hold: the URL and
        validators stay those of the bytes on disk unless a caller says otherwise.
        """
        columns = _job_columns(job)
        if isinstance(values.get("error"), str):
            values["error"] = scrub(values["error"])
        row = {**columns, **values, "status": status, "updated_at": time.time()}
        changed = (*columns, *values) if replan else tuple(values)
        updates = [f"{c} = excluded.{c}" for c in ("status", "updated_at", *changed) if c != "path"]
        if attempt:
            row["attempts"] = 1
            updates.append("attempts = transfers.attempts + 1")
        sql = (
            f"INSERT INTO transfers ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})"
            f" ON CONFLICT(path) DO UPDATE SET {', '.join(updates)}"
        )
        await self._call(lambda db: db.execute(sql, tuple(row.values())))

    # -- whole-journal views (blocking; for status, verify, prune) --------------------------
    def rows(self, *statuses: str) -> Iterator[JournalRow]:
        """Rows with one of ``statuses`` (all when none), in path order, streamed in batches."""
        where = f" WHERE status IN ({', '.join('?' * len(statuses))}) AND" if statuses else " WHERE"
        sql = f"SELECT {_ROW_COLUMNS} FROM transfers{where} path > ? ORDER BY path LIMIT 500"
        last = ""
        while True:
            batch = self._run(functools.partial(_fetch_all, sql=sql, args=(*statuses, last)))
            if not batch:
                return
            for row in batch:
                yield JournalRow(*row)
            last = batch[-1][0]

    def summary(self) -> dict[str, dict[str, int]]:
        """Per status: ``files`` and ``bytes`` on disk (``expected`` bytes where known)."""

        def q(db: sqlite3.Connection) -> dict[str, dict[str, int]]:
            out: dict[str, dict[str, int]] = {}
            for status, files, size, expected in db.execute(
                "SELECT status, COUNT(*), COALESCE(SUM(bytes), 0),"
                " COALESCE(SUM(expected_size), 0) FROM transfers GROUP BY status"
            ):
                out[status] = {"files": files, "bytes": size, "expected": expected}
            return out

        return self._run(q)

    def typical_sizes(self) -> dict[tuple[str, str], int]:
        """Average size of the verified files per (collection, asset key): what a file of
        unknown size (a zipper product) is likely to weigh, for the dry run's estimate."""

        def q(db: sqlite3.Connection) -> dict[tuple[str, str], int]:
            return {
                (collection, key): int(avg)
                for collection, key, avg in db.execute(
                    "SELECT collection, asset_key, AVG(bytes) FROM transfers"
                    " WHERE status = 'done' AND bytes > 0 GROUP BY collection, asset_key"
                )
            }

        return self._run(q)

    def counts(self) -> dict[str, int]:
        """Rows per status."""
        return {status: v["files"] for status, v in self.summary().items()}

    def refusals(self) -> list[tuple[str, str, str]]:
        """(item id, asset key, reason) of every refused asset."""
        return self._run(
            lambda db: db.execute(
                "SELECT item_id, asset_key, reason FROM refusals ORDER BY item_id, asset_key"
            ).fetchall()
        )

    def high_water_mark(self) -> str | None:
        """The latest item ``updated`` among verified files."""

        def q(db: sqlite3.Connection) -> str | None:
            sql = "SELECT MAX(item_updated) FROM transfers WHERE status = 'done'"
            value: str | None = db.execute(sql).fetchone()[0]
            return value

        return self._run(q)

    def gone(self, scope: str, run: int, *, spared: Container[tuple[str, str]] = ()) -> list[str]:
        """Paths of ``scope`` whose items run ``run``'s complete search no longer listed:
        files of the ``spared`` items (collection, item id: listed, whatever was planned of
        them) are not, as the README promises."""
        return [
            path
            for (path, collection, item_id) in self._run(
                lambda db: db.execute(
                    "SELECT path, collection, item_id FROM transfers"
                    " WHERE scope = ? AND seen_run != ? ORDER BY path",
                    (scope, run),
                ).fetchall()
            )
            if (collection, item_id) not in spared
        ]

    def remove(self, paths: Iterable[str]) -> None:
        """Forget these rows (their files were pruned)."""
        batch = [(p,) for p in paths]
        self._run(
            lambda db: self._transaction(
                db, lambda: db.executemany("DELETE FROM transfers WHERE path = ?", batch)
            )
        )

    def mark_rotten(self, path: str, reason: str) -> None:
        """``stacpull verify`` found the file at ``path`` damaged: fetch it again next run."""
        self._run(
            lambda db: db.execute(
                "UPDATE transfers SET status = 'failed', error_class = 'RotError', error = ?,"
                " mtime_ns = NULL, updated_at = ? WHERE path = ?",
                (scrub(reason), time.time(), path),
            )
        )
