"""Who owns a bucket: its lease (an epoch every new owner increments), the owner lock that
keeps two owners from ever writing one bucket's files at once, and the heartbeat.

Dask can run a task twice (a worker it lost that is still running, a reconnect), so a
bucket is taken, never assumed: :meth:`Lease.take` increments the bucket's epoch in one
immediate transaction (superseding whoever held it), then waits for the bucket's owner
lock (``flock``), which the superseded owner lets go of once it has stopped. The owner's
next heartbeat (at most a second away) fails with :class:`Superseded`, which stops it: no
new transfer, those in flight a short grace, then its ``.part`` files stay and the new
owner resumes them from what is on disk. Until it lets go, its journal still records what
it does (:meth:`Lease.guard`): the new owner, waiting for the lock, reads all of it.

The lease lives in its own small database, ``shards/b017/lease.sqlite`` (a rollback
journal, no WAL): it must stay readable and writable while the owner holds its bucket
journal open in exclusive locking mode on a shared file system, for a takeover and for
``status --shards``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .. import safeio
from ..errors import StorageError
from ..journal.store import transaction

__all__ = [
    "LEASE_FILE",
    "BucketBusy",
    "Lease",
    "LeaseRow",
    "Superseded",
    "read_lease",
    "stilled",
]

LEASE_FILE = "lease.sqlite"
_OWNER_LOCK = "owner.lock"
#: How often an owner waiting for a superseded one to let go looks again (seconds).
_POLL = 0.05
_SCHEMA = """
CREATE TABLE IF NOT EXISTS lease (
    bucket    INTEGER PRIMARY KEY,
    epoch     INTEGER NOT NULL,
    owner     TEXT,
    started   REAL,
    heartbeat REAL,
    files     INTEGER NOT NULL DEFAULT 0,
    bytes     INTEGER NOT NULL DEFAULT 0,
    state     TEXT
)
"""


class Superseded(StorageError):
    """Another owner took the bucket (a later epoch): this one must stop writing to it.

    A :class:`StorageError`, so a transfer that meets it stops the whole unit as a full
    disk does, keeping its ``.part``."""

    def __init__(self, bucket: int, epoch: int, current: int | None, owner: str | None) -> None:
        by = f" by {owner}" if owner else ""
        if current is None:  # not read: this owner let go of the bucket already
            said = f"bucket {bucket} was let go of (epoch {epoch}); this owner writes no more"
        else:
            said = (
                f"bucket {bucket} was taken over{by} (epoch {epoch} → {current}); "
                "this owner stops and leaves its files to the new one"
            )
        super().__init__(said)
        self.bucket, self.epoch, self.current = bucket, epoch, current


class BucketBusy(StorageError):
    """A superseded owner did not let go of the bucket in time (a hung worker): the unit
    did nothing, and may be dispatched again."""


@dataclass(frozen=True, slots=True)
class LeaseRow:
    """A bucket's lease as recorded: its epoch and owner (``host:pid``), when it was taken,
    the owner's last heartbeat and what it had done then, and how its hold ended
    (``running``, ``complete``, ``superseded``, ``stopped``)."""

    bucket: int
    epoch: int
    owner: str | None
    started: float | None
    heartbeat: float | None
    files: int
    bytes: int
    state: str | None


def _connect(path: Path) -> sqlite3.Connection:
    kind = safeio.not_regular(path)
    if kind is not None:
        raise StorageError(f"{path} is {kind}, not a regular file; remove it")
    try:
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA busy_timeout=10000")
        # A process crash loses nothing; the heartbeats cost no fsync each.
        db.execute("PRAGMA synchronous=NORMAL")
        # Immediate, as every write here: two owners creating it at once must wait, not fail.
        transaction(db, lambda: db.execute(_SCHEMA).rowcount)
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open the bucket lease {path}: {exc}") from exc
    return db


def _open_owner_lock(directory: Path) -> int:
    """The bucket's owner lock file, opened (created if need be), never through a link."""
    path = directory / _OWNER_LOCK
    try:
        return safeio.regular_fd(path, os.O_RDWR | os.O_CREAT)
    except OSError as exc:
        raise StorageError(f"cannot open the bucket owner lock {path}: {exc}") from exc


def read_lease(directory: Path, bucket: int) -> LeaseRow | None:
    """The lease of the bucket whose directory is ``directory`` (None: never taken)."""
    path = directory / LEASE_FILE
    if not path.is_file():
        return None
    db = _connect(path)
    try:
        row = db.execute(
            "SELECT bucket, epoch, owner, started, heartbeat, files, bytes, state"
            " FROM lease WHERE bucket = ?",
            (bucket,),
        ).fetchone()
    except sqlite3.Error as exc:
        raise StorageError(f"cannot read the bucket lease {path}: {exc}") from exc
    finally:
        db.close()
    return LeaseRow(*row) if row else None


class Lease:
    """One owner's hold of one bucket (see the module docstring)."""

    def __init__(self, directory: Path, bucket: int, owner: str, epoch: int) -> None:
        self.directory, self.bucket, self.owner, self.epoch = directory, bucket, owner, epoch
        self._db = _connect(directory / LEASE_FILE)
        self._mutex = threading.Lock()
        self._lock_fd: int | None = None

    @classmethod
    def supersede(cls, directory: Path, bucket: int, owner: str) -> Lease:
        """Increment the bucket's epoch for ``owner`` (whoever held it is superseded): the
        first half of :meth:`take`; the owner lock is not held yet (:meth:`hold`)."""
        lease = cls(directory, bucket, owner, 0)
        now = time.time()

        def bump(db: sqlite3.Connection) -> int:
            def body() -> int:
                db.execute(
                    "INSERT OR IGNORE INTO lease (bucket, epoch, files, bytes) VALUES (?, 0, 0, 0)",
                    (bucket,),
                )
                db.execute(
                    "UPDATE lease SET epoch = epoch + 1, owner = ?, started = ?, heartbeat = ?,"
                    " files = 0, bytes = 0, state = 'waiting' WHERE bucket = ?",
                    (owner, now, now, bucket),
                )
                (epoch,) = db.execute(
                    "SELECT epoch FROM lease WHERE bucket = ?", (bucket,)
                ).fetchone()
                return int(epoch)

            return transaction(db, body)

        try:
            lease.epoch = lease._locked(bump)
        except BaseException:
            lease._db.close()
            raise
        return lease

    @classmethod
    def take(cls, directory: Path, bucket: int, owner: str, *, wait: float = 60.0) -> Lease:
        """Take the bucket for ``owner``: supersede its holder, then wait up to ``wait``
        seconds for the holder to let go (:class:`BucketBusy` when it does not)."""
        lease = cls.supersede(directory, bucket, owner)
        try:
            lease.hold(wait)
        except BaseException:
            lease.close()
            raise
        return lease

    def hold(self, wait: float) -> None:
        """Wait up to ``wait`` seconds for the owner lock: a superseded owner lets go of
        it once it has stopped writing (a dead one at once: the kernel drops its lock)."""
        fd = _open_owner_lock(self.directory)
        try:
            self._wait_for(fd, wait)
        except BaseException:
            os.close(fd)
            raise
        self._lock_fd = fd
        self._set_state("running")

    def _wait_for(self, fd: int, wait: float) -> None:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise BucketBusy(
                        f"bucket {self.bucket}: its former owner did not stop within {wait:g} s"
                    ) from None
                self.check()  # a later owner took it meanwhile: give up at once
                time.sleep(_POLL)

    def _locked(self, fn: Callable[[sqlite3.Connection], int]) -> int:
        with self._mutex:
            try:
                return int(fn(self._db))
            except sqlite3.Error as exc:
                raise StorageError(f"bucket {self.bucket} lease: {exc}") from exc

    def _current(self) -> tuple[int | None, str | None]:
        with self._mutex:
            try:
                row = self._db.execute(
                    "SELECT epoch, owner FROM lease WHERE bucket = ?", (self.bucket,)
                ).fetchone()
            except sqlite3.Error as exc:
                raise StorageError(f"bucket {self.bucket} lease: {exc}") from exc
        return (row[0], row[1]) if row else (None, None)

    def check(self) -> None:
        """Raise :class:`Superseded` unless this owner's epoch is still the bucket's (its
        heartbeat's test; its journal's commits have :meth:`guard`)."""
        epoch, owner = self._current()
        if epoch != self.epoch:
            raise Superseded(self.bucket, self.epoch, epoch, owner)

    def guard(self, _db: sqlite3.Connection | None = None) -> None:
        """The guard of every group commit of this owner's bucket journal (``_db``, its
        connection): its statements go through while it holds the owner lock, superseded
        or not, and :class:`Superseded` once it let go.

        A superseded owner's commits are not refused: the new owner waits for the owner
        lock before it reads the bucket journal or touches a file, so what the old one
        records meanwhile is the truth of the disk it hands over. Refusing them cut the
        response it had in flight at the takeover (its validators unrecorded, so the new
        owner fetched the file again from zero: the server sent it twice). The epoch stops
        the old owner all the same, at its next heartbeat (a second away): no new
        transfer, those in flight a short grace (:class:`~.unit.UnitSpec`)."""
        if self._lock_fd is None:
            raise Superseded(self.bucket, self.epoch, None, None)

    def beat(self, files: int, size: int) -> None:
        """Record a heartbeat: the files and bytes done so far; :class:`Superseded` when
        another owner took the bucket."""
        if self._update("heartbeat = ?, files = ?, bytes = ?", time.time(), files, size) == 0:
            self.check()

    def _set_state(self, state: str) -> None:
        if self._update("state = ?, heartbeat = ?", state, time.time()) == 0:
            self.check()

    def _update(self, assignments: str, *values: object) -> int:
        sql = f"UPDATE lease SET {assignments} WHERE bucket = ? AND epoch = ?"

        def write(db: sqlite3.Connection) -> int:
            # Immediate: a deferred write that meets another process's write lock would
            # fail at once (SQLite's deadlock rule) instead of waiting its busy timeout.
            return transaction(
                db, lambda: db.execute(sql, (*values, self.bucket, self.epoch)).rowcount
            )

        return self._locked(write)

    def release(self, state: str, files: int, size: int) -> None:
        """Record how this hold ended and what it had done (unless superseded), and let go
        of the bucket."""
        try:
            if self._lock_fd is not None:
                self._update(
                    "state = ?, heartbeat = ?, files = ?, bytes = ?",
                    state,
                    time.time(),
                    files,
                    size,
                )
        finally:
            self.close()

    def close(self) -> None:
        """Close the lease database and drop the owner lock (the bucket's journal must be
        closed first: a new owner may open it as soon as the lock is free)."""
        with self._mutex:
            self._db.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


@contextlib.contextmanager
def stilled(directory: Path, bucket: int, owner: str, *, wait: float) -> Iterator[None]:
    """The bucket held still for a run that reads its journal outside a lease (every run's
    merge at its start): its owner lock taken at once when nobody holds it; else a live
    owner (a worker whose coordinator died: a tcp:// cluster outlives it) is superseded for
    ``owner`` and waited for (:class:`BucketBusy` after ``wait`` seconds), so that it stops
    writing the bucket's files before the run transfers them itself."""
    fd = _open_owner_lock(directory)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
    else:
        try:
            yield
        finally:
            os.close(fd)
        return
    lease = Lease.take(directory, bucket, owner, wait=wait)
    try:
        yield
    finally:
        lease.release("stopped", 0, 0)
