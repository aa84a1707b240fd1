"""What a run is asked to do and what it hands back: :class:`RunOptions` (the kind of run),
:class:`StopSignal` (a graceful stop asked from outside), :class:`RunResult` and its
:class:`FileRecord` s, and :func:`loop_options` (the event loop a run wants).

They live apart from :mod:`stacpull.engine` so that the run's parts (the producer, the
workers, the mirror's verdict, the run's end) can name them without importing the run.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import StacpullError
from .models import Status

if TYPE_CHECKING:
    from .limits import HostGate
    from .search import ItemPages

__all__ = [
    "STOP_GRACE",
    "FileRecord",
    "RunOptions",
    "RunResult",
    "StopSignal",
    "loop_options",
]

#: Seconds in-flight transfers get to finish after a graceful stop.
STOP_GRACE = 3.0


@dataclass(frozen=True, slots=True)
class FileRecord:
    """One file a run dealt with, as :meth:`RunResult.files` lists it.

    ``path`` is absolute (``None`` for an asset refused before it had one); ``size`` is the
    file's size on disk when present; ``bytes_downloaded`` what this run received for it
    (0 for a file already there, ``skipped``); ``error`` why it failed or was refused.
    """

    path: Path | None
    item_id: str
    collection: str
    asset_key: str
    status: Status
    size: int | None
    bytes_downloaded: int
    error: str | None = None


def _file_records(dest: Path, outcomes: Path) -> Iterator[FileRecord]:
    """The records of a run's outcome log (one JSON line per finished or refused job); the
    log is the run's alone (its name carries the run number) and closed when it ends."""
    try:
        handle = outcomes.open("rb")
    except FileNotFoundError:
        return
    with handle:
        for line in handle:
            try:
                row = json.loads(line)
                status = Status(row["status"])
            except (ValueError, KeyError, TypeError):
                continue  # a line cut by a full disk
            path = row.get("path")
            yield FileRecord(
                path=dest / path if isinstance(path, str) else None,
                item_id=str(row.get("item") or ""),
                collection=str(row.get("collection") or ""),
                asset_key=str(row.get("asset") or ""),
                status=status,
                size=row.get("size"),
                bytes_downloaded=int(row.get("bytes_downloaded") or 0),
                error=row.get("error"),
            )


@dataclass(frozen=True, slots=True)
class RunResult:
    """How a run ended; ``exit_code`` is what the CLI returns; :meth:`files` what it wrote."""

    downloaded: int
    skipped: int
    failed: int
    refused: int
    retries: int
    bytes_downloaded: int
    bytes_on_disk: int
    seconds: float
    items: int
    report: Path | None
    interrupted: bool = False
    fatal: str | None = None
    gone: tuple[str, ...] = ()  # mirror: files whose items left the catalogue
    pruned: int = 0  # of those, files deleted (--prune)
    kept: tuple[str, ...] = ()  # of those, paths --prune left: reached through a link
    not_judged: str | None = None  # mirror: why nothing was judged gone (incomplete search)
    duplicates: int = 0  # items the search listed again, planned once (not an error)
    dest: Path | None = None  # the resolved DEST
    outcomes: Path | None = None  # the run's outcome log (JSON lines), read by files()

    def files(self) -> Iterator[FileRecord]:
        """Every file this run downloaded, found already verified (``skipped``), failed or
        refused, in the order they ended, as :class:`FileRecord` s.

        Read lazily from the run's outcome log in ``DEST/.stacpull/`` at each call, so a
        run of 100 000 files costs no memory until asked, and one record at a time then.
        Files a mirror judged gone are in :attr:`gone`, not here."""
        if self.dest is None or self.outcomes is None:
            return iter(())
        return _file_records(self.dest, self.outcomes)

    @property
    def ok(self) -> bool:
        """Every selected asset is present and verified."""
        return not (self.failed or self.refused or self.interrupted or self.fatal)

    @property
    def exit_code(self) -> int:
        """0 all verified, 1 some files failed or were refused, 3 the run was stopped, 130 interrupted."""
        if self.interrupted:
            return 130
        if self.fatal:
            return 3
        return 0 if self.ok else 1

    @property
    def mb_per_s(self) -> float:
        """Network throughput of the run in MB/s (10⁶ bytes)."""
        return self.bytes_downloaded / self.seconds / 1e6 if self.seconds > 0 else 0.0


def loop_options() -> dict[str, Any]:
    """anyio's asyncio options for a run: uvloop when it is installed (``pip install
    'stacpull[fast]'``; ``STACPULL_UVLOOP=0`` turns it off), the standard loop otherwise."""
    if os.environ.get("STACPULL_UVLOOP", "1") == "0":
        return {}
    return {"use_uvloop": True} if importlib.util.find_spec("uvloop") is not None else {}


@dataclass(frozen=True, slots=True)
class RunOptions:
    """What kind of run: a plain ``download``, a ``mirror``, or a retry of failures.

    ``mirror`` records which files the search listed, so files whose items left the
    catalogue are reported (and deleted with ``prune``), after a complete search only.
    ``retry_failed`` skips the search and re-runs the journal's failed jobs only; ``pages``
    replaces the catalogue search (a saved search, ``--from``; tests). With
    ``download.max_bytes`` set, the whole search is planned first and a run that would
    download more refuses to start, unless ``yes``.
    """

    kind: str = "download"
    retry_failed: bool = False
    prune: bool = False
    grace: float = STOP_GRACE
    yes: bool = False  # start even when the plan exceeds download.max_bytes
    pages: ItemPages | None = None
    #: A per-host connection budget shared with other processes (a cluster's workers:
    #: ``stacpull.cluster.gate.DaskGate``); ``None``: this run's own windows alone.
    gate: HostGate | None = None


class StopSignal:
    """Asks a running :func:`run` to stop gracefully (first Ctrl-C, SIGTERM, credentials
    that stopped working).

    No new transfer starts and jobs waiting to retry stay pending. Transfers in flight get
    :attr:`RunOptions.grace` seconds to finish, or, for a ``drain`` stop, as long as they
    need (they hold a token already; nothing is lost by letting them end). A later
    non-drain request puts the deadline back. ``fatal`` is the error :func:`run` raises once
    the run has stopped. Call :meth:`request` from the event loop's thread.
    """

    def __init__(self) -> None:
        self.reason: str | None = None
        self.drain = False
        self.fatal: StacpullError | None = None
        self._callbacks: list[Callable[[str, bool], None]] = []

    @property
    def requested(self) -> bool:
        """Whether a stop was asked for."""
        return self.reason is not None

    def request(
        self,
        reason: str = "interrupted",
        *,
        drain: bool = False,
        fatal: StacpullError | None = None,
    ) -> None:
        """Ask the run to stop (idempotent, except that it can shorten a drain)."""
        if self.reason is not None and (drain or not self.drain):
            return
        if self.reason is None:
            self.reason, self.fatal = reason, fatal
        self.drain = drain
        for callback in self._callbacks:
            callback(reason, drain)

    def subscribe(self, callback: Callable[[str, bool], None]) -> None:
        """Call ``callback(reason, drain)`` on :meth:`request` (at once if already requested)."""
        self._callbacks.append(callback)
        if self.reason is not None:
            callback(self.reason, self.drain)
