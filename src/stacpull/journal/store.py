"""The journal's SQLite file: where it lives, its schema and migrations, and statements run
one at a time.

The file is ``DEST/.stacpull/journal.sqlite`` (WAL, ``synchronous=NORMAL``): ``.stacpull``
and the database files in it are used only as a real directory and regular files (a link
there is refused, never followed), the DEST lock is taken before the database is opened,
and a journal older than a column gains it on open. Every statement runs under one mutex
and every SQLite error becomes a :class:`~stacpull.errors.StorageError` naming the file.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from .. import safeio
from ..destlock import DestLock, refuse_nested
from ..destpaths import path_key
from ..errors import StorageError
from .fs import exclusive_locking

__all__ = ["JOURNAL_DIR", "Guard", "Store", "transaction"]

JOURNAL_DIR = ".stacpull"
#: The database and the files SQLite keeps beside it.
_DB_FILES = ("journal.sqlite", "journal.sqlite-wal", "journal.sqlite-shm", "journal.sqlite-journal")
_T = TypeVar("_T")
#: Run first in every group commit's transaction (a shard's lease check): its error fails
#: the whole group, each statement with it, and nothing of the group is written.
Guard = Callable[[sqlite3.Connection], None]

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
    "fold": "TEXT",  # destpaths.path_key(path): which rows are one file on a case-insensitive disk
}


def transaction(db: sqlite3.Connection, body: Callable[[], _T]) -> _T:
    """Run ``body`` in one immediate transaction (the write lock taken first, waited for),
    rolled back if it raises; returns what ``body`` returned."""
    db.execute("BEGIN IMMEDIATE")
    try:
        result = body()
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return result


def _migrate(db: sqlite3.Connection) -> None:
    """Create the tables, or give an older journal the columns added since 0.1.0 (and its
    rows their path key), then index the path keys."""
    db.executescript(_SCHEMA)
    have = {row[1] for row in db.execute("PRAGMA table_info(transfers)")}
    for column, kind in _ADDED_COLUMNS.items():
        if column not in have:
            db.execute(f"ALTER TABLE transfers ADD COLUMN {column} {kind}")
    if "fold" not in have:
        paths = [p for (p,) in db.execute("SELECT path FROM transfers WHERE fold IS NULL")]
        transaction(
            db,
            lambda: db.executemany(
                "UPDATE transfers SET fold = ? WHERE path = ?", [(path_key(p), p) for p in paths]
            ),
        )
    db.execute("CREATE INDEX IF NOT EXISTS transfers_fold ON transfers(fold)")


class Store:
    """One DEST's journal database, opened safely; statements run one at a time."""

    def __init__(
        self,
        dest: Path,
        *,
        create: bool = True,
        lock: bool = False,
        directory: Path | None = None,
        guard: Guard | None = None,
        exclusive: bool | None = False,
    ) -> None:
        """Open (``create``: or create) the journal of ``dest``; ``lock`` takes DEST for this
        process, so another run on the same DEST, or on one nested in it or around it, gets a
        clear error instead of a race (see :mod:`stacpull.destlock`).

        ``directory`` holds the database instead of ``DEST/.stacpull`` (a shard's bucket
        journal, ``DEST/.stacpull/shards/b017``; its parent must exist); ``guard`` runs
        first in every group commit's transaction (a shard's lease check, see
        :mod:`stacpull.journal.commit`); ``exclusive`` opens the database in SQLite's
        exclusive locking mode, with no shared-memory WAL index (``None``: when
        :func:`~stacpull.journal.fs.exclusive_locking` says DEST is on a shared file system).

        ``.stacpull`` and the database files in it are used only as a real directory and
        regular files: a link there (to another DEST's state, to a file outside) is refused,
        never followed, and nothing is created before a lock is refused."""
        self.directory = directory if directory is not None else dest / JOURNAL_DIR
        self.path = self.directory / "journal.sqlite"
        self.guard = guard
        self._lock: DestLock | None = None
        if lock:
            refuse_nested(dest, JOURNAL_DIR)
        self._check_state(dest, create=create)
        if lock:
            safeio.keep_private(self.directory)  # before anyone else can open the lock
            self._lock = DestLock.acquire(dest, JOURNAL_DIR)
        if exclusive is None:
            exclusive = exclusive_locking(self.directory)
        self.exclusive = exclusive
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA busy_timeout=5000")
            if exclusive:
                # Before WAL: SQLite then keeps the WAL index in this connection's memory
                # and never maps a -shm file, which a network file system does not share.
                self._db.execute("PRAGMA locking_mode=EXCLUSIVE")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            _migrate(self._db)
        except (OSError, sqlite3.Error) as exc:
            if self._lock is not None:
                self._lock.release()
            raise StorageError(f"cannot open the journal {self.path}: {exc}") from exc
        self._mutex = threading.Lock()

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

    def blocking(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``fn`` on the database now, blocking, alone (its SQLite errors become
        :class:`StorageError`): whole-journal work outside any run, such as a shard's
        seed and merge (:mod:`stacpull.shards.sync`)."""
        return self._run(fn)

    def _run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``fn`` on the database, blocking, alone: the statement runner of the
        blocking views and of each group commit."""
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
