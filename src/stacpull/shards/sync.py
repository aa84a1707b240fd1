"""Seed and merge: the main journal and the bucket journals agree, newest row wins.

The main journal (``DEST/.stacpull/journal.sqlite``) stays the planning authority (paths,
collisions, refusals, runs, what each search saw); a bucket journal is the transfer
authority for its bucket's rows while a cluster run owns it. Before a unit is dispatched
the coordinator **seeds** its buckets' journals with the main journal's rows for the
paths planned there; when a unit returns, and at the start of every cluster run (a
crashed coordinator merged nothing), it **merges** every bucket row back. Either way a
row replaces the other side's only when its ``updated_at`` is newer, so a row a killed
worker wrote after the last merge is kept, and one the main journal never saw is added.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .. import safeio
from ..errors import StorageError
from ..journal import JOURNAL_DIR, Journal
from ..journal.store import transaction
from .layout import shards_dir
from .lease import stilled

__all__ = ["bucket_dirs", "bucket_journal", "forget", "merge", "merge_all", "merge_buckets", "seed"]

#: What a merge takes from a bucket row: the transfer (the bytes on disk, and the job
#: columns a transfer records with them). The main journal keeps its job, seen_run,
#: scope and fold: the plan is its own.
_MERGED = (
    "url",
    "status",
    "expected_size",
    "checksum",
    "item_updated",
    "etag",
    "last_modified",
    "bytes",
    "digest",
    "attempts",
    "error_class",
    "error",
    "mtime_ns",
    "segments",
    "total",
    "updated_at",
)
_PLAN = ("job", "seen_run", "scope")
_BATCH = 500
#: Seconds a run's merge waits for a worker still writing a bucket to stop: it stops at
#: its next heartbeat (a second away), its transfers in flight a short grace.
_LET_GO = 30.0


def _columns(db: sqlite3.Connection) -> list[str]:
    return [row[1] for row in db.execute("PRAGMA table_info(transfers)")]


def _rows(journal: Journal, paths: list[str] | None) -> Iterator[tuple[list[str], list[Any]]]:
    """(columns, rows) of ``journal``'s transfers, in batches: those at ``paths`` (all
    when None)."""
    if paths is None:
        last = ""
        while True:
            columns, batch = journal.blocking(functools.partial(_page, after=last))
            if not batch:
                return
            yield columns, batch
            last = batch[-1][columns.index("path")]
    else:
        for start in range(0, len(paths), _BATCH):
            chunk = paths[start : start + _BATCH]
            yield journal.blocking(functools.partial(_at, paths=chunk))


def _page(db: sqlite3.Connection, after: str) -> tuple[list[str], list[Any]]:
    columns = _columns(db)
    sql = f"SELECT {', '.join(columns)} FROM transfers WHERE path > ? ORDER BY path LIMIT {_BATCH}"
    return columns, db.execute(sql, (after,)).fetchall()


def _at(db: sqlite3.Connection, paths: list[str]) -> tuple[list[str], list[Any]]:
    columns = _columns(db)
    marks = ", ".join("?" * len(paths))
    sql = f"SELECT {', '.join(columns)} FROM transfers WHERE path IN ({marks})"
    return columns, db.execute(sql, paths).fetchall()


def _upsert(target: Journal, columns: list[str], rows: list[Any], updated: Iterable[str]) -> int:
    """Insert ``rows`` into ``target``, or set the ``updated`` columns of an existing row
    whose ``updated_at`` is older; returns how many rows changed."""
    sets = ", ".join(f"{c} = excluded.{c}" for c in updated)
    sql = (
        f"INSERT INTO transfers ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        f" ON CONFLICT(path) DO UPDATE SET {sets}"
        " WHERE excluded.updated_at > transfers.updated_at"
    )

    def q(db: sqlite3.Connection) -> int:
        before = db.total_changes
        transaction(db, lambda: db.executemany(sql, rows))
        return db.total_changes - before

    return target.blocking(q)


def seed(main: Journal, bucket: Journal, paths: Iterable[str]) -> int:
    """Give ``bucket``'s journal the main journal's rows at ``paths`` (a unit's planned
    paths of that bucket): a row the bucket lacks, or holds older, is the main one; a
    newer bucket row keeps its transfer, and takes the main row's plan (job, the run
    that saw it, scope). Returns the rows written."""
    wanted = list(paths)
    changed = 0
    for columns, rows in _rows(main, wanted):
        if not rows:
            continue
        changed += _upsert(bucket, columns, rows, [c for c in columns if c != "path"])
        at = [columns.index(c) for c in (*_PLAN, "path")]
        plans = [tuple(row[i] for i in at) for row in rows]
        bucket.blocking(functools.partial(_replan, plans=plans))
    return changed


def _replan(db: sqlite3.Connection, plans: list[tuple[Any, ...]]) -> None:
    sql = "UPDATE transfers SET job = ?, seen_run = ?, scope = ? WHERE path = ?"
    transaction(db, lambda: db.executemany(sql, plans))


def merge(main: Journal, bucket: Journal) -> int:
    """Bring every row of ``bucket``'s journal into the main journal where it is newer
    (its transfer columns, ``_MERGED``), or absent (the whole row). Returns the rows
    written."""
    changed = 0
    for columns, rows in _rows(bucket, None):
        changed += _upsert(main, columns, rows, [c for c in _MERGED if c in columns])
    return changed


def bucket_dirs(dest: Path) -> list[tuple[int, Path]]:
    """(bucket, directory) of every bucket journal under DEST, in bucket order."""
    shards = shards_dir(dest / JOURNAL_DIR)
    found: list[tuple[int, Path]] = []
    if shards is None:
        return found
    for entry in shards.iterdir():
        name = entry.name
        if not (name.startswith("b") and name[1:].isdigit()):
            continue
        try:  # a link planted at a bucket's name: refused before anything is made through it
            if not safeio.ensure_directory(entry, create=False):
                continue
        except OSError as exc:
            raise StorageError(
                f"{entry} is {exc.strerror}, not a bucket directory: remove it"
            ) from None
        if (entry / "journal.sqlite").is_file():
            found.append((int(name[1:]), entry))
    return sorted(found)


@contextlib.contextmanager
def bucket_journal(dest: Path, directory: Path) -> Iterator[Journal]:
    """DEST's bucket journal in ``directory``, open for the block (in exclusive locking
    mode on a shared file system), closed after it."""
    journal = Journal(dest, directory=directory, exclusive=None)
    try:
        yield journal
    finally:
        journal.close()


def merge_buckets(main: Journal, dest: Path, directories: Iterable[Path]) -> int:
    """Merge the bucket journals in ``directories`` into ``main`` (newest row wins)."""
    changed = 0
    for directory in directories:
        with bucket_journal(dest, directory) as bucket:
            changed += merge(main, bucket)
    return changed


def merge_all(main: Journal, dest: Path, *, still: bool = True) -> int:
    """Merge every bucket journal under DEST into ``main`` (newest row wins): at the start
    of every run, so that rows a crashed cluster run never merged are not lost. A worker
    of that run still writing a bucket is stopped first (:func:`~.lease.stilled`): the
    run would otherwise transfer the same files beside it, into the same ``.part``.
    ``still=False`` leaves the owners alone (a view that only reads: ``status``)."""
    changed = 0
    owner = f"merge:{socket.gethostname()}:{os.getpid()}"
    for number, directory in bucket_dirs(dest):
        held = (
            stilled(directory, number, owner, wait=_LET_GO) if still else contextlib.nullcontext()
        )
        with held:
            changed += merge_buckets(main, dest, [directory])
    return changed


def forget(dest: Path, paths: list[str]) -> None:
    """Remove these rows from every bucket journal under DEST (their files were pruned from
    the main journal): a later merge must not bring them back as rows it never saw."""
    if not paths:
        return
    for _, directory in bucket_dirs(dest):
        with bucket_journal(dest, directory) as bucket:
            bucket.remove(paths)
