"""The look at a destination before a transfer, and the skip proof: whether the file
already under its final name is the file the catalogue describes (cheapest proof first).
"""

from __future__ import annotations

import functools
import os
import stat
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread

from ..errors import (
    PlanError,
    StorageError,
    UnsafePathError,
    VerificationError,
    scrubbed_logger,
)
from ..safepath import PATH_MAX as _PATH_MAX
from ..safepath import is_ours as _ours
from ..safepath import is_regular as _is_regular
from ..safepath import lstat_at as _lstat_at
from ..safepath import open_below as _open_below
from ..safepath import open_dir as _open_dir
from ..verify import Multihash, check_zip, parse_multihash
from .partfile import hash_part, part_path, storage_error

if TYPE_CHECKING:
    from ..models import Job
    from .context import FetchContext

__all__ = ["LOOK_INLINE_LIMIT", "Looks", "already_verified", "checksum", "look"]

#: The transfer's messages keep the name fetch.py gave them (``--debug`` prints it, users
#: set its level); every module of the package shares the logger and its one filter.
log = scrubbed_logger("stacpull.fetch")


def _digest_in(root: Path, path: Path, mh: Multihash) -> bytes | None:
    """``path``'s digest with ``mh``'s function, read without following a link; None when
    it cannot be read as a file of DEST (a link put there meanwhile, say) (blocking)."""
    hasher = mh.new()
    try:
        hash_part(root, hasher, path)
    except PlanError:
        return None
    return hasher.digest()


@dataclass(frozen=True, slots=True)
class _OnDisk:
    """What is at a job's destination before it starts."""

    final: Path
    final_stat: os.stat_result | None  # the file under its final name, if there
    part_size: int  # bytes in its .part (0: none)
    refusal: PlanError | None = None  # why nothing may be written there


#: Seconds one look at a destination may take on the event loop. Its directory opened
#: and two ``lstat`` calls on a local disk take microseconds, far less than a thread hop
#: (which cost a small file a tenth of its time); :data:`_SLOW_LOOKS` looks in a row
#: slower than this (a network filesystem) send every later one of the run to a worker
#: thread, so a slow disk never holds up the transfers.
LOOK_INLINE_LIMIT = 0.002

#: Slow looks in a row that send the looks to worker threads. One is not proof of a slow
#: disk: a look is timed by the clock on the wall, and on a busy machine one in a while is
#: slow for reasons of its own (the event loop waiting for the GIL, which a thread hashing
#: or writing a batch takes back between its system calls, or the thread preempted). One
#: look of 2.8-10.6 ms did so in most runs of the benchmark's ``products`` scenario (200
#: files), whose median CPU seconds fell from 2.1 to 1.96 when one no longer did. A slow
#: disk is slow at every look.
_SLOW_LOOKS = 3


def _look_now(root: Path, job: Job) -> _OnDisk:
    """``job``'s file and ``.part`` as they are now (blocking). No link is followed: a link
    (or a FIFO, a hard link) at either name counts as no file, and is replaced; a link on
    the way, a file where a directory should be, a directory at the final name or a path
    too long refuse the job before anything is requested."""
    final = root / job.dest
    refusal: PlanError
    part = part_path(final)
    if len(os.fsencode(part)) >= _PATH_MAX:
        refusal = UnsafePathError(
            f"destination {job.dest[:80]!r}…: path too long in this DEST "
            f"({_PATH_MAX - 1} bytes at most, with DEST and .part)"
        )
        return _OnDisk(final, None, 0, refusal)
    try:
        dir_fd = _open_dir(root, final.parent, create=False)
        if dir_fd is None:
            return _OnDisk(final, None, 0)
        try:
            final_stat = _lstat_at(dir_fd, final.name)
            part_stat = _lstat_at(dir_fd, part.name)
        finally:
            os.close(dir_fd)
    except PlanError as exc:
        return _OnDisk(final, None, 0, exc)
    except OSError as exc:
        error = storage_error(exc, final)
        if isinstance(error, StorageError):
            raise error from exc
        return _OnDisk(final, None, 0, error)
    if final_stat is not None and stat.S_ISDIR(final_stat.st_mode):
        refusal = PlanError(f"{job.dest!r} in DEST is a directory (another asset's directory?)")
        return _OnDisk(final, None, 0, refusal)
    return _OnDisk(
        final,
        final_stat if _is_regular(final_stat) else None,
        part_stat.st_size if part_stat is not None and _ours(part_stat) else 0,
    )


class Looks:
    """Whether destinations are looked at on the event loop (until :data:`_SLOW_LOOKS`
    looks in a row are slow) or, from then on, in worker threads. One per run, used from
    the event loop alone."""

    __slots__ = ("_slow", "in_threads")

    def __init__(self) -> None:
        self.in_threads = False
        self._slow = 0  # looks slower than LOOK_INLINE_LIMIT in a row

    def timed(self, seconds: float) -> bool:
        """Count a look on the event loop that took ``seconds``; True when it is the slow
        look that sends the later ones to worker threads."""
        if seconds <= LOOK_INLINE_LIMIT:
            self._slow = 0
            return False
        self._slow += 1
        self.in_threads = self._slow >= _SLOW_LOOKS
        return self.in_threads


async def look(ctx: FetchContext, job: Job) -> _OnDisk:
    """:func:`_look_now`, on the event loop while the disk answers at once."""
    if ctx.looks.in_threads:
        return await anyio.to_thread.run_sync(_look_now, ctx.root, job)
    began = time.perf_counter()
    disk = _look_now(ctx.root, job)
    if ctx.looks.timed(took := time.perf_counter() - began):
        log.debug(
            "%d looks in a row were slow, the last at %s %.1f ms: looking from worker threads",
            _SLOW_LOOKS,
            job.dest,
            took * 1e3,
        )
    return disk


def checksum(job: Job, notes: list[str]) -> Multihash | None:
    if job.checksum is None:
        return None
    try:
        return parse_multihash(job.checksum)
    except ValueError as exc:
        notes.append(f"checksum not checked: {exc}")
        return None


def _newer(planned: str | None, recorded: str | None) -> bool:
    """Whether the item's ``updated`` moved past the one recorded with the file on disk."""
    if not planned or not recorded or planned == recorded:
        return False
    try:
        return datetime.fromisoformat(planned) > datetime.fromisoformat(recorded)
    except ValueError:
        return planned > recorded


@dataclass(frozen=True, slots=True)
class _Present:
    size: int
    digest: str | None
    mtime_ns: int


async def already_verified(
    job: Job, final: Path, st: os.stat_result | None, mh: Multihash | None, ctx: FetchContext
) -> _Present | None:
    """The file under its final name, if it is the file the catalogue describes.

    Cheapest proof first. The journal's own record of this very file (same size, mtime,
    URL, checksum and item ``updated``) needs no hashing, so re-running a mirror of
    terabytes costs one ``stat`` per file; ``stacpull verify`` is the deep check. Then the
    catalogue's checksum; then, unless the item changed, the digest recorded while
    downloading (which survives a URL that moved), the journal's word, ``file:size``, and
    a zip's CRCs. ``st`` is the file's stat (None: there is no file).
    """
    if st is None:
        return None
    size = st.st_size
    if job.size is not None and size != job.size:
        return None
    row = await ctx.journal.get(job.dest)
    same_size = row if row is not None and row.bytes == size else None
    done = same_size if same_size is not None and same_size.status == "done" else None
    changed = row is not None and _newer(job.item_updated, row.item_updated)
    present = _Present(size, same_size.digest if same_size else None, st.st_mtime_ns)
    if (
        done is not None
        and not changed
        and done.mtime_ns == st.st_mtime_ns
        and done.same_url(job.url)
        and done.checksum == job.checksum
        and done.expected_size == job.size
    ):
        return present
    if mh is not None:
        actual = await anyio.to_thread.run_sync(_digest_in, ctx.root, final, mh)
        ok = actual is not None and mh.matches(actual)
        return _Present(size, job.checksum, st.st_mtime_ns) if ok else None
    if changed:
        return None  # the item changed and nothing proves this file is still current
    # Also for a row `verify` marked rotten: its digest is what the file should hash to.
    recorded = _recorded_hash(same_size.digest if same_size else None)
    if recorded is not None:
        actual = await anyio.to_thread.run_sync(_digest_in, ctx.root, final, recorded)
        ok = actual is not None and recorded.matches(actual)
        return present if ok else None
    if (done is not None and done.same_url(job.url)) or job.size is not None:
        return present
    if job.zip_check:
        return present if await anyio.to_thread.run_sync(_zip_in, ctx.root, final) else None
    return None


def _zip_in(root: Path, path: Path) -> bool:
    """Whether ``path``, a file in DEST read without following a link, passes
    :func:`check_zip` (blocking)."""
    try:
        check_zip(path, opener=functools.partial(_open_below, root))
    except (VerificationError, PlanError, OSError):
        return False
    return True


def _recorded_hash(digest: str | None) -> Multihash | None:
    try:
        return parse_multihash(digest) if digest else None
    except ValueError:
        return None
