"""What a DEST holds, from its journal: ``stacpull status`` and ``stacpull verify``.

Both read only the journal and the files; neither talks to the catalogue. ``status`` is a
summary of the journal. ``verify`` re-hashes every file the journal calls done against
the catalogue's ``file:checksum`` (kept in the journal) or, when there was none, the
digest stacpull computed while downloading; zips without either are checked by their
central directory and CRCs. A damaged or missing file is marked failed in the journal,
so the next run (or ``--retry-failed``) fetches it again.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import PlanError, VerificationError, scrub, scrub_data
from .journal import Journal, JournalRow
from .safepath import dup_opener, is_regular, open_below
from .verify import check_zip, hash_range, parse_multihash

__all__ = ["Problem", "StatusReport", "VerifyReport", "read_status", "verify_dest"]

_EXAMPLES = 3
_STATUSES = ("done", "pending", "active", "failed")


@dataclass(slots=True)
class StatusReport:
    """The journal's view of one DEST."""

    dest: str
    by_status: dict[str, dict[str, int]]
    failures: dict[str, list[tuple[str, str]]]  # error class → [(path, message)] (examples)
    failure_counts: dict[str, int]
    refused: list[tuple[str, str, str]]
    last_run: dict[str, Any] | None
    high_water_mark: str | None
    partial_bytes: int  # bytes in .part files of pending/failed rows
    failed_files: list[tuple[str, str, str]] = field(default_factory=list)  # every failed row

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``stacpull status --json``): the same keys whatever the
        journal holds (every status, with zeros)."""
        return {
            "dest": self.dest,
            "by_status": {
                name: self.by_status.get(name, {"files": 0, "bytes": 0}) for name in _STATUSES
            }
            | self.by_status,
            "failed_files": [
                {"path": path, "error_class": kind, "error": message}
                for path, kind, message in self.failed_files
            ],
            "failures": {
                k: {"count": self.failure_counts[k], "examples": [list(e) for e in v]}
                for k, v in self.failures.items()
            },
            "refused": [list(r) for r in self.refused],
            "last_run": self.last_run,
            "high_water_mark": self.high_water_mark,
            "partial_bytes": self.partial_bytes,
        }


def read_status(dest: Path) -> StatusReport:
    """Summarise the journal of ``dest`` (``StorageError`` if there is none)."""
    journal = Journal(dest, create=False)
    try:
        failures: dict[str, list[tuple[str, str]]] = {}
        counts: dict[str, int] = {}
        failed: list[tuple[str, str, str]] = []
        partial = 0
        for row in journal.rows("failed", "pending", "active"):
            if row.status == "failed":
                kind = row.error_class or "Error"
                counts[kind] = counts.get(kind, 0) + 1
                # Scrubbed by shape too: a journal written before stacpull scrubbed
                # its writers may hold a server's echo of a token.
                message = scrub(row.error or "")
                failed.append((row.path, kind, message))
                examples = failures.setdefault(kind, [])
                if len(examples) < _EXAMPLES:
                    examples.append((row.path, message))
            partial += row.bytes
        return StatusReport(
            dest=str(dest),
            by_status=journal.summary(),
            failures=failures,
            failure_counts=counts,
            refused=[(scrub(i), scrub(k), scrub(r)) for i, k, r in journal.refusals()],
            last_run=scrub_data(journal.last_run()),
            high_water_mark=journal.high_water_mark(),
            partial_bytes=partial,
            failed_files=failed,
        )
    finally:
        journal.close()


@dataclass(frozen=True, slots=True)
class Problem:
    """One file that is not what the journal says it is."""

    path: str
    kind: str  # missing | size | checksum | zip
    detail: str
    earlier: bool = False  # found by an earlier verify, not fetched again since


@dataclass(slots=True)
class VerifyReport:
    """The result of re-checking every verified file of a DEST."""

    dest: str = ""
    checked: int = 0
    bytes: int = 0
    hashed: int = 0  # against a checksum or a recorded digest
    zip_only: int = 0  # zips with neither: central directory and CRCs
    size_only: int = 0  # no checksum, no recorded digest, not a zip
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No rot found."""
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``stacpull verify --json``)."""
        return {
            "dest": self.dest,
            "ok": self.ok,
            "checked": self.checked,
            "bytes": self.bytes,
            "hashed": self.hashed,
            "zip_only": self.zip_only,
            "size_only": self.size_only,
            "problems": [
                {"path": p.path, "kind": p.kind, "detail": p.detail, "earlier": p.earlier}
                for p in self.problems
            ],
        }


def _check(root: Path, row: JournalRow) -> tuple[str, Problem | None]:
    """Check one file (blocking). Returns (how it was checked, problem or None). The file
    is reached without following a link on the way or at its name, and read only through
    the one descriptor opened: a link, a FIFO or a device there is a problem, never read
    (the next run replaces it)."""
    final = root / row.path
    try:
        fd = open_below(root, final, os.O_RDONLY)
    except FileNotFoundError:
        return "missing", Problem(row.path, "missing", "the file is gone from disk")
    except PlanError as exc:  # a link at the name or on the way: not followed
        return "missing", Problem(row.path, "missing", str(exc))
    except OSError as exc:
        return "missing", Problem(row.path, "missing", f"cannot read: {exc.strerror or exc}")
    try:
        return _check_open(row, fd)
    finally:
        os.close(fd)


def _check_open(row: JournalRow, fd: int) -> tuple[str, Problem | None]:
    """:func:`_check` of the file open at ``fd``."""
    st = os.fstat(fd)
    if not is_regular(st):
        return "missing", Problem(row.path, "missing", "not a regular file (not read)")
    size = st.st_size
    if size != row.bytes or (row.expected_size is not None and size != row.expected_size):
        expected = row.expected_size if row.expected_size is not None else row.bytes
        return "size", Problem(row.path, "size", f"{size} bytes on disk, expected {expected}")
    final, opener = Path(row.path), dup_opener(fd)
    for source, text in (("file:checksum", row.checksum), ("recorded digest", row.digest)):
        if not text:
            continue
        try:
            mh = parse_multihash(text)
        except ValueError:
            continue
        hasher = mh.new()
        try:
            hash_range(hasher, final, opener=opener)
        except OSError as exc:
            return "hash", Problem(row.path, "missing", f"cannot read: {exc.strerror or exc}")
        if not mh.matches(hasher.digest()):
            return "hash", Problem(
                row.path, "checksum", f"{mh.name} differs from the {source} (bit rot or edited)"
            )
        return "hash", None
    if row.path.lower().endswith((".zip", ".kmz")):
        try:
            check_zip(final, opener=opener)
        except VerificationError as exc:
            return "zip", Problem(row.path, "zip", exc.reason)
        except OSError as exc:
            return "zip", Problem(row.path, "missing", f"cannot read: {exc.strerror or exc}")
        return "zip", None
    return "size", None


def _earlier_problems(journal: Journal) -> list[Problem]:
    """What an earlier verify marked failed and no run has fetched again since: still
    damaged as far as anyone knows, so still reported (a later pass never says all is
    well about them)."""
    problems = []
    for row in journal.rows("failed"):
        if row.error_class != "RotError":
            continue
        kind, _, detail = (row.error or "").partition(": ")
        if not detail:
            kind, detail = "missing", kind
        problems.append(Problem(row.path, kind, scrub(detail), earlier=True))
    return problems


def verify_dest(
    dest: Path,
    *,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> VerifyReport:
    """Re-check every file the journal of ``dest`` marks done; mark damaged ones failed.

    ``progress(files, bytes)`` is called after each file. Files are hashed ``workers`` at
    a time in threads (hashlib releases the GIL on large buffers).
    """
    root = dest.resolve()
    journal = Journal(root, create=False)
    report = VerifyReport(dest=str(dest))
    threads = workers or min(4, os.cpu_count() or 1)
    try:
        earlier = _earlier_problems(journal)  # before this pass marks any
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="verify") as pool:
            # A bounded window of files in flight: a mirror of millions of files is never
            # held in memory as futures.
            pending: deque[tuple[JournalRow, Future[tuple[str, Problem | None]]]] = deque()

            def drain(limit: int) -> None:
                while len(pending) > limit:
                    row, future = pending.popleft()
                    how, problem = future.result()
                    report.checked += 1
                    report.bytes += row.bytes
                    if how == "hash":
                        report.hashed += 1
                    elif how == "zip":
                        report.zip_only += 1
                    elif how == "size" and problem is None:
                        report.size_only += 1
                    if problem is not None:
                        report.problems.append(problem)
                        journal.mark_rotten(row.path, f"{problem.kind}: {problem.detail}")
                    if progress is not None:
                        progress(report.checked, report.bytes)

            for row in journal.rows("done"):
                pending.append((row, pool.submit(_check, root, row)))
                drain(threads * 4)
            drain(0)
        report.problems.extend(earlier)
    finally:
        journal.close()
    return report
