"""Group commits: the journal's writes from the event loop, many statements per transaction.

A coroutine queues its statement and waits for it; one worker thread at a time runs
everything queued so far as one transaction, so a thousand small files a second cost a
few commits a second, not two thousand thread hops that each wait for the GIL behind the
event loop (which made the journal the bottleneck of small-file runs). A statement's own
error fails only that statement.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ..errors import StorageError
from .store import Guard, transaction

__all__ = ["GroupCommit", "Statement", "run_group"]

_T = TypeVar("_T")
#: One statement (or a few, run together) on the journal's connection.
Statement = Callable[[sqlite3.Connection], Any]
#: What a group's statements gave: (True, its result) or (False, its error), in order.
_Results = list[tuple[bool, Any]]


class GroupCommit:
    """The queue of statements waiting for the next group commit, and its committer task.

    ``run_group`` runs one group in a worker thread (the journal's, so that a subclass can
    watch the groups); ``path`` names the journal in errors."""

    def __init__(self, run_group: Callable[[list[Statement]], _Results], path: Path) -> None:
        self._run_group = run_group
        self._path = path
        self._queued: list[tuple[Statement, asyncio.Future[Any]]] = []
        self._committer: asyncio.Task[None] | None = None

    async def call(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
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
                    error = StorageError(f"journal write interrupted ({self._path}): {exc!r}")
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


def run_group(
    run: Callable[[Statement], Any], fns: list[Statement], guard: Guard | None = None
) -> _Results:
    """Run ``fns`` with ``run`` as one transaction; if one fails, run each in its own so
    that only the failing statement reports an error. ``guard`` runs first inside each
    transaction: when it raises, every statement of the group fails with its error."""
    try:
        results: _Results = run(functools.partial(_in_transaction, fns=fns, guard=guard))
        return results
    except _Refused as refused:
        return [(False, refused.error)] * len(fns)
    except Exception as exc:
        if len(fns) == 1:
            return [(False, exc)]
    alone: _Results = []
    for fn in fns:
        try:
            alone.append(run(functools.partial(_in_transaction, fns=[fn], guard=guard))[0])
        except _Refused as refused:
            alone.append((False, refused.error))
        except Exception as exc:
            alone.append((False, exc))
    return alone


class _Refused(Exception):
    """The guard refused a group: carries its error past the statement runner."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _in_transaction(db: sqlite3.Connection, fns: list[Statement], guard: Guard | None) -> _Results:
    results: _Results = []

    def body() -> None:
        if guard is not None:
            try:
                guard(db)
            except Exception as exc:
                raise _Refused(exc) from exc
        results.extend((True, fn(db)) for fn in fns)

    transaction(db, body)
    return results
