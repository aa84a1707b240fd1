"""The :class:`Journal`: every statement stacpull makes on a DEST's journal.

Runs (their start, end and outcome), planning (a search page's jobs and refusals, who
holds a destination), one transfer's progress (started, segmented, done, failed, paused,
its ``.part`` forgotten) through group commits, and the blocking whole-journal views of
``status``, ``verify`` and ``prune``. Each write is one transaction, made before the disk
state it describes is relied on (see :mod:`stacpull.journal`).
"""

from __future__ import annotations

import functools
import json
import sqlite3
import time
from collections.abc import Callable, Container, Iterable, Iterator
from typing import Any, TypeVar

from ..errors import scrub, scrub_data
from ..models import Holder, Job, Refusal
from .commit import GroupCommit, Statement, run_group
from .rows import PLAN_COLUMNS, ROW_COLUMNS, JournalRow, job_columns, job_from_json, known_only
from .store import Store, transaction

__all__ = ["Journal"]

_T = TypeVar("_T")


def _fetch_all(db: sqlite3.Connection, *, sql: str, args: tuple[Any, ...]) -> list[Any]:
    return db.execute(sql, args).fetchall()


class Journal(Store):
    """Thread-safe access to one DEST's journal; coroutines' writes go in group commits."""

    @functools.cached_property
    def _commits(self) -> GroupCommit:
        """The queue of this journal's next group commit (made at its first statement)."""
        return GroupCommit(self._run_group, self.path)

    async def _call(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``fn`` in the next group commit and return its result (or raise its error)."""
        return await self._commits.call(fn)

    def _run_group(self, fns: list[Statement]) -> list[tuple[bool, Any]]:
        """Run one group commit's statements (in a worker thread)."""
        return run_group(self._run, fns, self.guard)

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
        job_rows = [(*job_columns(j).values(), time.time(), run, scope) for j in planned]
        refusal_rows = [
            (
                known_only(r.item_id),
                known_only(r.collection),
                known_only(r.asset_key),
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
                f"""INSERT INTO transfers ({", ".join(PLAN_COLUMNS)}, status)
                   VALUES ({", ".join("?" * len(PLAN_COLUMNS))}, 'pending')
                   ON CONFLICT(path) DO UPDATE SET job = excluded.job,
                       seen_run = excluded.seen_run, scope = excluded.scope""",
                job_rows,
            )
            # A job planned now is no longer refused (a name freed, metadata fixed).
            db.executemany(
                "DELETE FROM refusals WHERE item_id = ? AND asset_key = ?",
                [(known_only(j.item_id), known_only(j.asset_key)) for j in planned],
            )
            db.executemany(
                """INSERT OR REPLACE INTO refusals (item_id, collection, asset_key, reason, run)
                   VALUES (?, ?, ?, ?, ?)""",
                refusal_rows,
            )

        await self._call(q)

    async def holders(self, keys: Iterable[str], *, run: int) -> dict[str, list[Holder]]:
        """Who holds each of these destinations (by :func:`~stacpull.destpaths.path_key`): the
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
                        planned = job_from_json(job)
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
        row = db.execute(f"SELECT {ROW_COLUMNS} FROM transfers WHERE path = ?", (path,)).fetchone()
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
        columns = job_columns(job)
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
        sql = f"SELECT {ROW_COLUMNS} FROM transfers{where} path > ? ORDER BY path LIMIT 500"
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
            lambda db: transaction(
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
