"""One transfer: ``.part`` file, range resume, redirects, streaming verification, atomic rename.

The guarantees, whatever happens (errors, cancellation, a crash):

* a file appears under its final name only after its size, ``file:checksum`` and (for zips
  and KMZs) central directory and CRCs were verified, via fsync + atomic ``os.replace``;
* a ``.part`` is resumed with ``Range`` + ``If-Range`` only when the journal holds the
  validator of the response that wrote it; a 200 answer, or a 206 (of a resume or of a
  split file's range) whose validators differ (:class:`~stacpull.headers.Validators`),
  restarts it from zero, so bytes of two versions of a file are never spliced;
* a ``Content-Range`` that does not start where we asked is an error, never appended; a
  416 proves a ``.part`` complete only when its length is what ``file:size`` and the
  response that began the ``.part`` announced;
* a body is stopped at the first chunk past its announced length (or ``file:size``);
* the attempts of one file are bounded whatever the server does (see :func:`_attempts`);
  one file larger than the free space fails alone.

aiohttp exceptions are translated into :mod:`stacpull.errors` here, at one boundary.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import functools
import hashlib
import itertools
import json
import logging
import os
import shutil
import stat
import struct
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import cast

import aiohttp
import anyio
import anyio.to_thread
from yarl import URL

from .auth import StaticTokenProvider, TokenProvider, TrustPolicy
from .config import DEFAULT_CHUNK_SIZE, DEFAULT_SEGMENT_BELOW, DEFAULT_SEGMENT_SIZE, Secret
from .errors import (
    SECRETS,
    AuthError,
    ConnectError,
    CredentialsError,
    HTTPStatusError,
    PlanError,
    RangeError,
    ScrubFilter,
    SizeMismatchError,
    StallError,
    StorageError,
    TooLargeError,
    TransferError,
    TruncatedError,
    UnsafePathError,
    VerificationError,
    first_error,
    redact_url,
    url_credentials,
)
from .events import BytesReceived, EventSink, JobFinished, TransferRetried, TransferStarted
from .headers import (
    Validators,
    parse_content_range,
    parse_retry_after,
    parse_unsatisfied_range,
    range_header,
    shown,
)
from .journal import Journal, JournalRow
from .limits import HostLimiter, TokenBucket
from .models import Job, Outcome, Status
from .plan import MAX_FILE_SIZE
from .retry import RetryPolicy
from .safepath import CLOEXEC as _CLOEXEC
from .safepath import DIR_FLAGS as _DIR_FLAGS
from .safepath import PATH_MAX as _PATH_MAX
from .safepath import dup_opener
from .safepath import is_ours as _ours
from .safepath import open_below as _open_below
from .safepath import open_dir as _open_dir
from .verify import (
    DEFAULT_RECORD_HASH,
    Hasher,
    Multihash,
    Opener,
    ZipFollower,
    check_digest,
    check_zip,
    encode_multihash,
    hash_range,
    parse_multihash,
    record_hash,
    verify_size,
)

__all__ = [
    "MAX_REDIRECTS",
    "WRITE_INTERVAL",
    "FetchContext",
    "SpaceBudget",
    "fetch",
]

MAX_REDIRECTS = 10
log = logging.getLogger("stacpull.fetch")
log.addFilter(ScrubFilter())
_HTML_TYPES = ("text/html", "application/xhtml+xml")


class SpaceBudget:
    """Free space at DEST, minus what transfers in flight will still write.

    Before a file of known size starts, the bytes it still needs are reserved; a file that
    would leave less than ``min_free`` bytes free stops the run (:class:`StorageError`)
    instead of filling the disk halfway through a product.

    The free space is read at most every ``REREAD`` seconds (a ``statvfs`` per file cost
    as much as the rest of a small file's bookkeeping); between readings the bytes of
    every finished reservation count as written, so the estimate errs on the safe side.
    """

    REREAD = 1.0

    def __init__(self, min_free: int) -> None:
        self.min_free = min_free
        self.reserved = 0
        self._free: int | None = None  # the last reading
        self._read_at = 0.0
        self._since = 0  # bytes of reservations finished since that reading

    def _free_now(self, where: Path) -> int | None:
        # One reading serves every directory of DEST: they share its filesystem (a mount
        # point inside DEST is the exception; ENOSPC still stops the run cleanly there).
        # A reading that fails skips the check, so ``where`` must exist: fetch passes DEST
        # itself, never a file's directory (which is only made with its .part).
        now = time.monotonic()
        if self._free is None or now - self._read_at >= self.REREAD:
            try:
                self._free = shutil.disk_usage(where).free
            except OSError:
                return None
            self._read_at, self._since = now, 0
        return self._free - self._since

    def reserve(self, where: Path, need: int, *, url: str = "") -> int:
        """Reserve ``need`` bytes at ``where`` (a directory); return what to release later.

        A file larger than all the free space (nothing else in flight, nothing kept
        free) is a lie or a mistake of its metadata (``Content-Length: 10^13``), not a
        full disk: it fails alone (:class:`TooLargeError`) and the run goes on."""
        if need <= 0:
            return 0
        free = self._free_now(where)
        if free is None:
            return 0
        if need > free:
            raise TooLargeError(
                f"the file needs {_human(need)}, only {_human(free)} are free in {where}",
                url=url,
            )
        if free - self.reserved - need < self.min_free:
            raise StorageError(
                f"not enough free space in {where}: the next file needs {need:,} bytes, "
                f"{max(0, free - self.reserved):,} are free and {self.min_free:,} must stay "
                "free (download.min_free); free some space and re-run to resume"
            )
        self.reserved += need
        return need

    def release(self, amount: int) -> None:
        """Give back a reservation (its bytes are now on disk, or were never written)."""
        self.reserved -= amount
        self._since += amount


def _human(n: int) -> str:
    """``n`` bytes in decimal units, for a message (``10.0 TB``)."""
    if n < 1000:
        return f"{n} bytes"
    value = float(n)
    for unit in ("kB", "MB", "GB"):
        value /= 1000
        if value < 1000:
            return f"{value:.1f} {unit}"
    return f"{value / 1000:.1f} TB"


@dataclass(slots=True)
class FetchContext:
    """What every transfer of a run shares."""

    session: aiohttp.ClientSession
    root: Path  # DEST, resolved
    journal: Journal
    tokens: TokenProvider
    trust: TrustPolicy
    emit: EventSink
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    chunk_size: int = DEFAULT_CHUNK_SIZE  # bytes received per write (and hash update)
    #: Waits between attempts; the engine's version gives up the transfer slot meanwhile.
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep
    #: Called once an attempt's bytes have all arrived: what is left (the checks, fsync,
    #: rename, journal write) is local work, and the engine gives the job's transfer slot
    #: to the next file meanwhile. ``sleep`` takes a slot again before a retry.
    unwire: Callable[[], None] = lambda: None
    limiter: HostLimiter = field(default_factory=lambda: HostLimiter(8, adaptive=False))
    space: SpaceBudget = field(default_factory=lambda: SpaceBudget(0))
    segments: int = 1  # parallel ranges for a slow large file (1: never split)
    segment_size: int = DEFAULT_SEGMENT_SIZE
    segment_below: int = DEFAULT_SEGMENT_BELOW  # bytes/s under which a single stream is split
    #: Bytes/s a response body must average over each ``speed_window`` seconds (the stall
    #: timeout), or the attempt ends as a stall (0: no floor).
    min_speed: int = 0
    speed_window: float = 60.0
    #: The digest recorded for a file the catalogue gives no file:checksum for.
    record_hash: Multihash = field(default_factory=lambda: record_hash(DEFAULT_RECORD_HASH))
    #: Where destinations are looked at; shared by the per-worker copies of the context.
    looks: _Looks = field(default_factory=lambda: _Looks())
    #: The run's bandwidth, shared by every transfer and range (``download.bwlimit``).
    bandwidth: TokenBucket | None = None
    #: The user's extra headers (``--header``), for the hosts trusted with the token only
    #: (every host with ``header_all_hosts``; an Authorization header never leaves them).
    headers: tuple[tuple[str, str], ...] = ()
    header_all_hosts: bool = False


@dataclass(slots=True)
class _Progress:
    attempts: int = 0
    received: int = 0
    resumed_from: int = 0
    resumable: bool = False  # the last response had a validator: its bytes can be resumed
    renewed: bool = False  # this attempt already retried with a newer token
    withheld: bool = False  # there was a token, but this host may not receive it
    unproven: bool = False  # a fixed token no file was served with yet was refused
    validator: str | None = None  # the strong validator of the last response, for ranges
    total: int | None = None  # the size the last response announced
    can_split: bool = False  # that response may be continued as parallel ranges
    split_at: int | None = None  # where the single stream stopped to split
    restarts: int = 0  # times the .part was thrown away to start again from zero
    notes: list[str] = field(default_factory=list)


def _part_path(final: Path) -> Path:
    return final.with_name(final.name + ".part")


#: OSErrors that concern one destination (its name, or what lies at it or on its way),
#: not DEST as a whole: that file is refused and the run goes on. Any other (disk full, a
#: read-only or unwritable DEST, an I/O error) stops the run.
_ONE_PATH_ERRNOS = frozenset(
    {
        errno.ENAMETOOLONG,
        errno.ELOOP,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.EEXIST,
        errno.ENOTEMPTY,
        errno.ENOENT,
        errno.ENXIO,
        errno.EFBIG,
        errno.EMLINK,
        errno.ETXTBSY,
        errno.EINVAL,  # a name this filesystem cannot hold (":" or "?" on vfat, exFAT, SMB)
        errno.EILSEQ,  # a name that is not valid on a filesystem that insists on UTF-8
    }
)


def _storage_error(exc: OSError, path: Path) -> StorageError | PlanError:
    """What an OSError at ``path`` becomes: a :class:`PlanError` (this file is refused, the
    run goes on) when it concerns this one path, else a :class:`StorageError` (the run
    stops)."""
    if exc.errno in _ONE_PATH_ERRNOS:
        return PlanError(f"cannot write {path}: {exc.strerror or exc}")
    if exc.errno == errno.ENOSPC:
        return StorageError(f"disk full while writing {path}; free space and re-run to resume")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StorageError(f"cannot write {path}: {exc.strerror}")
    return StorageError(f"cannot write {path}: {exc}")


def _hash_part(
    root: Path, hasher: Hasher, path: Path, start: int = 0, end: int | None = None
) -> None:
    """:func:`hash_range` of a file in DEST, opened without following a link (blocking)."""
    try:
        hash_range(hasher, path, start, end, opener=functools.partial(_open_below, root))
    except OSError as exc:
        raise _storage_error(exc, path) from exc


def _digest_in(root: Path, path: Path, mh: Multihash) -> bytes | None:
    """``path``'s digest with ``mh``'s function, read without following a link; None when
    it cannot be read as a file of DEST (a link put there meanwhile, say) (blocking)."""
    hasher = mh.new()
    try:
        _hash_part(root, hasher, path)
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
#: (which cost a small file a tenth of its time); a look slower than this (a network
#: filesystem) sends every later one of the run to a worker thread, so a slow disk never
#: holds up the transfers.
LOOK_INLINE_LIMIT = 0.002


def _look_now(root: Path, job: Job) -> _OnDisk:
    """``job``'s file and ``.part`` as they are now (blocking). No link is followed: a link
    (or a FIFO, a hard link) at either name counts as no file, and is replaced; a link on
    the way, a file where a directory should be, a directory at the final name or a path
    too long refuse the job before anything is requested."""
    final = root / job.dest
    refusal: PlanError
    if len(os.fsencode(final)) + len(".part") >= _PATH_MAX:
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
            final_stat = _lstat(final.name, dir_fd)
            part_stat = _lstat(final.name + ".part", dir_fd)
        finally:
            os.close(dir_fd)
    except PlanError as exc:
        return _OnDisk(final, None, 0, exc)
    except OSError as exc:
        error = _storage_error(exc, final)
        if isinstance(error, StorageError):
            raise error from exc
        return _OnDisk(final, None, 0, error)
    if final_stat is not None and stat.S_ISDIR(final_stat.st_mode):
        refusal = PlanError(f"{job.dest!r} in DEST is a directory (another asset's directory?)")
        return _OnDisk(final, None, 0, refusal)
    regular = final_stat is not None and stat.S_ISREG(final_stat.st_mode)
    return _OnDisk(
        final,
        final_stat if regular else None,
        part_stat.st_size if part_stat is not None and _ours(part_stat) else 0,
    )


def _lstat(name: str, dir_fd: int) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


class _Looks:
    """Whether destinations are looked at on the event loop (until one look is slow) or,
    from then on, in worker threads. One per run."""

    __slots__ = ("in_threads",)

    def __init__(self) -> None:
        self.in_threads = False


async def _look(ctx: FetchContext, job: Job) -> _OnDisk:
    """:func:`_look_now`, on the event loop while the disk answers at once."""
    if ctx.looks.in_threads:
        return await anyio.to_thread.run_sync(_look_now, ctx.root, job)
    began = time.perf_counter()
    disk = _look_now(ctx.root, job)
    if (took := time.perf_counter() - began) > LOOK_INLINE_LIMIT:
        ctx.looks.in_threads = True
        log.debug("a look at %s took %.1f ms: looking from worker threads", job.dest, took * 1e3)
    return disk


def _checksum(job: Job, notes: list[str]) -> Multihash | None:
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


async def _already_verified(
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


async def fetch(job: Job, ctx: FetchContext) -> Outcome:
    """Bring ``job`` to disk, verified, retrying per :class:`RetryPolicy`; never raises for
    a failure of this one job (that is an :class:`Outcome`), only :class:`StorageError`
    (the whole run must stop) and cancellation, after which the journal says ``pending``
    with the ``.part`` kept."""
    started = time.monotonic()
    progress = _Progress()
    disk = await _look(ctx, job)
    if disk.refusal is not None:  # a link on the way, a directory at the name...
        return await _refuse(job, disk.refusal, ctx, partial=0)
    final = disk.final
    mh = _checksum(job, progress.notes)
    present = await _already_verified(job, final, disk.final_stat, mh, ctx)
    if present is not None:
        await ctx.journal.done(
            job, size=present.size, digest=present.digest, mtime_ns=present.mtime_ns
        )
        return _finish(
            ctx, Outcome(job, Status.SKIPPED, size=present.size, notes=tuple(progress.notes))
        )

    part = _part_path(final)
    try:
        host = URL(job.url).host or ""
    except ValueError as exc:  # a URL yarl cannot take (an IDNA label "xn--"): refused
        refusal = PlanError(f"asset URL {job.url!r} is not valid: {exc}")
        return await _refuse(job, refusal, ctx, partial=0)
    try:
        return await _attempts(job, final, part, disk.part_size, mh, ctx, progress, host, started)
    except PlanError as exc:  # nothing may be written there (a link, a name too long...)
        return await _refuse(job, exc, ctx, partial=_size(part))
    except (anyio.get_cancelled_exc_class(), StorageError, CredentialsError):
        # Stopped (Ctrl-C, disk full, no token any more, a fatal error elsewhere): keep the
        # .part, settle the journal. Bounded, so a second Ctrl-C is never kept waiting.
        with anyio.move_on_after(1.0, shield=True), contextlib.suppress(StorageError):
            await ctx.journal.paused(job, partial=_size(part))
        raise


#: Bytes an attempt must add past the most the ``.part`` ever held to renew its file's
#: retry budget (or a sixteenth of a smaller file): a server that sends a few bytes per
#: connection cannot keep a file retrying for ever, a link that drops every few minutes
#: brings far more.
PROGRESS_MIN = 1 << 20


def _least_progress(total: int | None) -> int:
    """The bytes past its high-water mark that count as progress for a file of ``total``
    bytes (None: unknown): at most PROGRESS_MIN, at least one byte."""
    return PROGRESS_MIN if total is None else max(1, min(PROGRESS_MIN, total // 16))


async def _attempts(
    job: Job,
    final: Path,
    part: Path,
    had: int,
    mh: Multihash | None,
    ctx: FetchContext,
    progress: _Progress,
    host: str,
    started: float,
) -> Outcome:
    """Attempts until one succeeds or the retry policy gives up; ``had`` is the size of
    the ``.part`` before the first.

    Bounded whatever the server does. Only an attempt that takes the ``.part`` at least
    :func:`_least_progress` bytes past the most it ever held renews the retry budget (a
    link that drops every few minutes never kills a 20 GB file that keeps moving); bytes
    fetched again after a restart are no progress. Every restart from zero (the ``.part``
    discarded: a changed file, a bad range or 416, a failed check, a resume answered with
    200) counts against the same budget and is never renewed, so a server that cuts every
    body and spoils every resume is given up on after ``retries`` restarts."""
    streak = 0  # failed attempts in a row that kept no new bytes
    best = had  # the most bytes the .part held: only bytes past it are progress
    while True:
        progress.attempts += 1
        streak += 1
        if progress.attempts > 1:
            had = _size(part)
        try:
            size, digest = await _attempt(job, final, part, had, mh, ctx, progress, host)
            ctx.limiter.succeeded(host)
        except TransferError as exc:
            if isinstance(exc, HTTPStatusError) and exc.status in (429, 503):
                ctx.limiter.throttled(host)
            discarded = 0
            restart = isinstance(exc, VerificationError | RangeError)
            if restart:
                discarded = await _discard(part, job, ctx)
                progress.restarts += 1
            # What the .part keeps now, looked at once per failure (none after a discard).
            held = 0 if restart else _size(part)
            if (
                not restart
                and progress.resumable
                and held - best >= _least_progress(progress.total)
            ):
                # The attempt moved the file forward and those bytes are kept: a link that
                # drops every few minutes must not exhaust the retries of a 20 GB file.
                streak, best = 1, held
            delay = ctx.retry.delay(max(streak, progress.restarts), exc)
            if delay is None:
                partial = held
                reason = exc.reason
                if progress.attempts > 1:
                    restarts = (
                        f", {progress.restarts} of them from zero" if progress.restarts else ""
                    )
                    reason = f"{reason} (gave up after {progress.attempts} attempts{restarts})"
                await ctx.journal.failed(
                    job, error_class=type(exc).__name__, error=reason, partial=partial
                )
                return _finish(
                    ctx,
                    Outcome(
                        job,
                        Status.FAILED,
                        bytes_downloaded=progress.received,
                        seconds=time.monotonic() - started,
                        attempts=progress.attempts,
                        error=str(exc),
                        error_class=type(exc).__name__,
                        resumed_from=progress.resumed_from,
                        notes=tuple(progress.notes),
                    ),
                )
            log.debug(
                "%s: attempt %d failed (%s); next in %.1f s",
                job.label,
                progress.attempts,
                exc,
                delay,
            )
            ctx.emit(
                TransferRetried(
                    job, progress.attempts, str(exc), type(exc).__name__, delay, discarded
                )
            )
            await ctx.sleep(delay)
            continue
        return _finish(
            ctx,
            Outcome(
                job,
                Status.DOWNLOADED,
                bytes_downloaded=progress.received,
                size=size,
                seconds=time.monotonic() - started,
                attempts=progress.attempts,
                digest=digest,
                resumed_from=progress.resumed_from,
                notes=tuple(progress.notes),
            ),
        )


async def _refuse(job: Job, exc: PlanError, ctx: FetchContext, *, partial: int) -> Outcome:
    """End ``job`` refused: its destination cannot be written safely."""
    await ctx.journal.failed(job, error_class=type(exc).__name__, error=str(exc), partial=partial)
    return _finish(
        ctx, Outcome(job, Status.REFUSED, error=str(exc), error_class=type(exc).__name__)
    )


def _size(path: Path) -> int:
    """Bytes in the ``.part`` at ``path``: 0 when there is none or it is not a file of ours
    (a link, a hard link, a FIFO), which is replaced, never resumed."""
    try:
        st = path.lstat()
    except OSError:
        return 0
    return st.st_size if _ours(st) else 0


def _finish(ctx: FetchContext, outcome: Outcome) -> Outcome:
    ctx.emit(JobFinished(outcome))
    return outcome


async def _discard(part: Path, job: Job, ctx: FetchContext) -> int:
    """Throw a ``.part`` away and forget its validators; return the bytes discarded."""
    size = _remove_part(ctx.root, part)
    # A split .part's progress record goes with it.
    _RangeRecord.remove(_RangeRecord.path(ctx.journal.directory, job))
    await ctx.journal.forget_part(job)
    return size


def _remove_part(root: Path, part: Path) -> int:
    """Remove the ``.part`` at ``part`` (a link there is removed itself, never its target;
    nothing is removed through a link on the way); return its size."""
    try:
        dir_fd = _open_dir(root, part.parent, create=False)
        if dir_fd is None:
            return 0
        try:
            st = os.stat(part.name, dir_fd=dir_fd, follow_symlinks=False)
            os.unlink(part.name, dir_fd=dir_fd)
        except FileNotFoundError:
            return 0
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise _storage_error(exc, part) from exc
    return st.st_size if stat.S_ISREG(st.st_mode) else 0


async def _resume_offset(
    job: Job, part: Path, have: int, row: JournalRow | None, ctx: FetchContext
) -> tuple[int, Mapping[str, str]]:
    """Where to resume ``part`` (``have`` bytes long) from (``row``: the journal's record
    of it), and the ``Range``/``If-Range`` headers to do it."""
    if have == 0:
        return 0, {}  # nothing to resume; an empty .part is truncated when opened
    validator = None
    if row is not None and row.same_url(job.url):
        validator = Validators(row.etag, row.last_modified).if_range
    if validator is None or (job.size is not None and have > job.size):
        await _discard(part, job, ctx)
        return 0, {}
    return have, {"Range": range_header(have), "If-Range": validator}


async def _open(
    url: str, headers: dict[str, str], ctx: FetchContext, progress: _Progress
) -> aiohttp.ClientResponse:
    """GET ``url``, following redirects ourselves so the bearer header obeys
    :class:`TrustPolicy`. A 401/403 to a token we sent asks the provider for a newer one
    and repeats the request once with it (from the first URL: a redirect may be signed
    for the old token)."""
    token = await ctx.tokens.token()
    fixed = ctx.tokens if isinstance(ctx.tokens, StaticTokenProvider) else None
    while True:
        resp, sent = await _follow(url, headers, token, ctx)
        progress.withheld = token is not None and not sent
        if fixed is not None and sent and token is not None and resp.status in (200, 206):
            fixed.accepted(token)
        if resp.status not in (401, 403) or not sent or token is None or progress.renewed:
            return resp
        fresh = await ctx.tokens.refused(token)
        if fresh is None or fresh == token:
            if fixed is not None:
                try:  # a fixed token nothing can refresh: refused everywhere, the run stops
                    fixed.check_refusal(token, resp.status, url)
                except CredentialsError:
                    resp.release()
                    raise
                progress.unproven = not fixed.proven(token)
            return resp
        resp.release()
        log.debug("HTTP %s to a token: retrying %s with a new one", resp.status, redact_url(url))
        token, progress.renewed = fresh, True


def _own_credentials(url: str) -> bool:
    """Whether ``url`` carries its own credentials (userinfo, which aiohttp sends as HTTP
    Basic): they win over the bearer token (one request has one Authorization header), and
    the scrubber learns them, so they are used but never shown."""
    parts = URL(url)
    if parts.user is None:
        return False
    SECRETS.add_pair(parts.user, parts.password or "")
    return True


async def _follow(
    url: str, headers: dict[str, str], token: Secret | None, ctx: FetchContext
) -> tuple[aiohttp.ClientResponse, bool]:
    """The redirect chain from ``url``; returns the last response and whether it was sent
    the token."""
    send_token = token is not None and ctx.trust.trusts(url)
    trusted = ctx.trust.trusts(url)  # the user's headers follow the token's rule
    for _ in range(MAX_REDIRECTS + 1):
        hop_headers = dict(headers)
        own = _own_credentials(url)
        if ctx.headers:
            own = _user_headers(hop_headers, ctx, trusted) or own
        if send_token and token is not None and not own:
            hop_headers["Authorization"] = f"Bearer {token.reveal()}"
        try:
            resp = await ctx.session.get(url, headers=hop_headers, allow_redirects=False)
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise StallError("no answer within the timeout", url=url) from exc
        except aiohttp.InvalidURL as exc:
            raise HTTPStatusError("invalid URL", url=url, status=0) from exc
        except aiohttp.ClientError as exc:
            raise ConnectError(f"connection failed: {type(exc).__name__}", url=url) from exc
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "GET %s%s%s -> %s",
                redact_url(url),
                " with token" if send_token else "",
                f" Range {headers['Range']}" if "Range" in headers else "",
                resp.status,
            )
        if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
            try:
                location = str(resp.url.join(URL(resp.headers["Location"])))
            except ValueError as exc:  # the server's Location is no URL (UnicodeError too)
                resp.release()
                raise HTTPStatusError(
                    f"HTTP {resp.status} redirect to an invalid URL ({exc})",
                    url=url,
                    status=resp.status,
                ) from None
            resp.release()
            send_token = token is not None and ctx.trust.trusts_redirect(
                url, location, sent=send_token
            )
            trusted = ctx.trust.trusts_redirect(url, location, sent=trusted)
            url = location
            continue
        return resp, send_token and not own
    raise HTTPStatusError(f"more than {MAX_REDIRECTS} redirects", url=url, status=310)


def _user_headers(hop_headers: dict[str, str], ctx: FetchContext, trusted: bool) -> bool:
    """Add the user's headers to one request (to a trusted host, or any with
    ``header_all_hosts``); returns whether they set Authorization, which then replaces the
    bearer token and, being a credential, goes to trusted hosts only."""
    own = False
    for name, value in ctx.headers:
        is_auth = name.lower() == "authorization"
        # Proxy-Authorization is as much a credential, and no proxy of ours reads it.
        credential = is_auth or name.lower() == "proxy-authorization"
        if trusted or (ctx.header_all_hosts and not credential):
            hop_headers[name] = value
            own = own or is_auth
    return own


def _check_status(
    resp: aiohttp.ClientResponse, job: Job, token_source: str, progress: _Progress
) -> None:
    status = resp.status
    if status in (200, 206):
        ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
        expected = (job.media_type or "").lower()
        if ctype in _HTML_TYPES and expected not in _HTML_TYPES:
            raise AuthError(
                "the server sent an HTML page instead of the file (a login page?); check the token",
                url=str(resp.url),
                status=status,
            )
        return
    if status in (401, 403):
        host = resp.url.host or "this host"
        if progress.withheld:
            hint = (
                f"the token was not sent: {host} is not the catalogue's host (--catalog); "
                f"add --auth-host {host} if it should receive it"
            )
        elif token_source == "none":
            hint = (
                "no token was sent: pass --offline-token-file or --token, or set "
                "STACPULL_OFFLINE_TOKEN or STACPULL_TOKEN"
            )
        elif progress.renewed:
            hint = (
                f"a fresh token from {token_source} was refused too: the account may not "
                "have access to this collection"
            )
        else:
            hint = f"the token from {token_source} was refused (expired?)"
        unproven = progress.unproven and not progress.withheld
        raise AuthError(
            f"HTTP {status}: {hint}", url=str(resp.url), status=status, unproven=unproven
        )
    if status == 416:
        raise RangeError(
            "HTTP 416: the partial file no longer fits the server's file", url=str(resp.url)
        )
    if status == 404:
        raise HTTPStatusError(
            "HTTP 404: the file is not on the server (MAAP lists some items before their "
            "files are ready)",
            url=str(resp.url),
            status=404,
        )
    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
    # The reason phrase is the server's: it may echo this request's own credentials.
    own = (*url_credentials(job.url), *url_credentials(str(resp.url)))
    reason = shown(SECRETS.scrub(resp.reason or "", also=own))
    raise HTTPStatusError(
        f"HTTP {status} {reason}".strip(), url=str(resp.url), status=status, retry_after=retry_after
    )


async def _attempt(
    job: Job,
    final: Path,
    part: Path,
    had: int,
    mh: Multihash | None,
    ctx: FetchContext,
    progress: _Progress,
    host: str,
) -> tuple[int, str | None]:
    """One request (or one set of parallel ranges): fill ``part`` (``had`` bytes long
    now), verify, rename. Returns (size, digest). The transfer holds a slot of ``host``'s
    limit; the local work after it holds none, so the next file's request is already on
    its way while this one is checked and made durable."""
    # Without a file:checksum, hash anyway: the digest lets `stacpull verify` find rot.
    hasher: Hasher = (mh or ctx.record_hash).new()
    check: Callable[[Opener], object] | None = None
    if mh is None and (job.zip_check or job.size is None):
        # A file nothing describes (no checksum, no size) is a zip when its bytes say so,
        # whatever its media type or name: over a stream without a length, a zip's own
        # central directory is the only proof that it arrived whole.
        follower = ZipFollower()
        hasher = _Tee(hasher, follower)
        check = functools.partial(_zip_check, follower, job, part, progress)
    pf = _PartFile(part, ctx.root, job.url)
    try:
        async with ctx.limiter.slot(host):
            # One journal read serves the segment check and the resume; a fresh file
            # needs none.
            row = await ctx.journal.get(job.dest) if had else None
            saved = await _saved_segments(job, part, row, ctx)
            if saved is not None:
                # A segmented .part from an earlier attempt or run: finish its ranges, the
                # hash following from the first byte.
                progress.resumed_from = saved.received
                await _run_segments(job, part, saved, ctx, progress, hasher, 0)
                size = pf.offset = progress.total = saved.total
            else:
                size = await _single(job, pf, had, row, hasher, ctx, progress)
        ctx.unwire()
        verify_size(size, job.size, url=job.url)
        try:
            mtime_ns, actual = await anyio.to_thread.run_sync(pf.seal, final, hasher, mh, check)
        except OSError as exc:
            raise _storage_error(exc, final) from exc
        digest = job.checksum if mh is not None else encode_multihash(ctx.record_hash.name, actual)
        await ctx.journal.done(job, size=size, digest=digest, mtime_ns=mtime_ns)
    finally:
        if pf.fd is not None:  # not sealed: the attempt failed or was cancelled
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(pf.close)
    return size, digest


def _zip_check(
    follower: ZipFollower, job: Job, part: Path, progress: _Progress, opener: Opener
) -> None:
    """The zip check of a sealed ``.part``, read through ``opener`` (the descriptor it was
    written through): always for a job planned as a zip, else when its bytes begin like
    a zip and no length was announced (blocking)."""
    if job.zip_check or (follower.is_zip and progress.total is None):
        follower.check(part, url=job.url, opener=opener)


async def _single(
    job: Job,
    pf: _PartFile,
    had: int,
    row: JournalRow | None,
    hasher: Hasher,
    ctx: FetchContext,
    progress: _Progress,
) -> int:
    """One response into ``pf`` (resumed where the journal allows); split into parallel
    ranges when it turns out slow. Returns the size of the complete ``.part``."""
    part = pf.path
    offset, range_headers = await _resume_offset(job, part, had, row, ctx)
    headers = {"Accept-Encoding": "identity", **range_headers}
    total: int | None
    progress.renewed = False
    resp = await _open(job.url, headers, ctx, progress)
    try:
        if offset and resp.status == 416:
            # Perhaps the .part already holds every byte: the last run stopped between the
            # final write and the rename. Then it is verified as it is; nothing needs to
            # cross the network.
            _whole_at(job, row, offset, resp)
            progress.resumed_from = offset
            total, written = offset, 0
            pf.offset = progress.total = offset
            await _catch_up(pf, hasher, offset)
        else:
            total, offset, written = await _receive(
                resp, job, pf, offset, hasher, ctx, progress, row
            )
    finally:
        resp.release()
    if progress.split_at is not None and total is not None and progress.validator:
        state = _SegmentState.split(
            total,
            progress.validator,
            progress.split_at,
            segments=ctx.segments,
            segment_size=ctx.segment_size,
        )
        await _run_segments(job, part, state, ctx, progress, hasher, progress.split_at)
        written = total - offset
    size = offset + written
    if total is not None and size != total:
        raise TruncatedError(f"body ended at {size} of {total} bytes", url=job.url)
    return size


async def _catch_up(pf: _PartFile, hasher: Hasher, offset: int) -> None:
    """:meth:`_PartFile.catch_up` in a worker thread, its OSErrors as stacpull's."""
    try:
        await anyio.to_thread.run_sync(pf.catch_up, hasher, offset)
    except OSError as exc:
        raise _storage_error(exc, pf.path) from exc


def _whole_at(job: Job, row: JournalRow | None, have: int, resp: aiohttp.ClientResponse) -> None:
    """Raise :class:`RangeError` unless a 416 to a resume at ``have`` bytes says the
    ``.part`` is complete: its ``Content-Range: bytes */N`` has N = ``have``, and what the
    catalogue (``file:size``) and the response that began the ``.part`` (its total, in
    ``row``) expect is known and is N too. A server's word alone proves nothing: a 416
    with a smaller N after a cut would otherwise pass half a file on to the checks."""
    said = parse_unsatisfied_range(resp.headers.get("Content-Range", ""))
    began = row.total if row is not None else None
    expected = {n for n in (job.size, began) if n is not None}
    if said == have and expected == {have}:
        return
    if said is None:
        claim = "HTTP 416 without Content-Range: bytes */N"
    else:
        claim = f"HTTP 416 says the file has {said} bytes"
    known = (
        f"file:size says {job.size}" if job.size is not None
        else f"the partial file was begun for {began}" if began is not None
        else "nothing else says how long it is"
    )  # fmt: skip
    raise RangeError(
        f"{claim}, the partial file holds {have} and {known}: restarting from zero",
        url=str(resp.url),
    )


# -- segmented downloads ----------------------------------------------------------------

#: Seconds a single stream runs before it may be split into ranges: long enough that a
#: fast stream has shown its speed (loopback, a LAN), short enough that a capped one has
#: not wasted much time alone (0.3 s made the MAAP WAN row 0.1 s slower). A wide-area
#: stream still in TCP slow start may look slow and be split too: the parallel ranges
#: then ramp up together, which does no harm.
SPLIT_AFTER = 0.15
#: A split file has up to this many ranges per parallel connection (each at least
#: ``download.segment_size``). Connections take them in file order, so the file fills
#: from the front and its hash can follow while the rest arrives: when the last ranges
#: end, only what they held is left to hash, not the whole file. Each further range costs
#: its connection one round trip.
RANGES_PER_LANE = 4
#: The hash of a split file follows the filled front in steps of at least this much.
FOLLOW_STEP = 8 << 20
#: Seconds between journal records of the ranges' progress (the :class:`_RangeRecord`
#: says, after every batch, how far each range got; the journal is its fallback).
SEGMENT_JOURNAL_EVERY = 2.0
#: A range's largest write batch: less than ``download.chunk_size``, as a file may have
#: many ranges in flight.
RANGE_BATCH = 1 << 20


@dataclass(slots=True)
class _Segment:
    start: int
    end: int  # exclusive
    done: int = 0

    @property
    def left(self) -> int:
        return self.end - self.start - self.done


@dataclass(slots=True)
class _SegmentState:
    """A ``.part`` filled by parallel ranges: bytes ``[0, prefix)`` came from the first
    stream, each segment fills its own range (``parts`` in file order). Journalled as
    JSON."""

    total: int
    validator: str
    prefix: int
    parts: list[_Segment]
    saved_at: float = 0.0
    record: _RangeRecord | None = None  # the ranges' progress after every batch, if open

    @classmethod
    def split(
        cls, total: int, validator: str, prefix: int, *, segments: int, segment_size: int
    ) -> _SegmentState:
        """The bytes after ``prefix`` as ranges of at least ``segment_size`` for up to
        ``segments`` connections. Every connection gets the same number of ranges, so they
        all end together: with 19 ranges on 16 connections, three would fetch a second
        range while thirteen sat idle, and the file would take nearly twice as long."""
        rest = total - prefix
        lanes = max(1, min(segments, rest // segment_size))
        count = lanes * max(1, min(RANGES_PER_LANE, rest // (lanes * segment_size)))
        bounds = [prefix + rest * i // count for i in range(count + 1)]
        parts = [_Segment(a, b) for a, b in itertools.pairwise(bounds)]
        return cls(total, validator, prefix, parts)

    @property
    def received(self) -> int:
        return self.prefix + sum(p.done for p in self.parts)

    @property
    def filled(self) -> int:
        """How many bytes from the start of the file are on disk without a gap."""
        for p in self.parts:
            if p.left > 0:
                return p.start + p.done
        return self.total

    def to_json(self) -> str:
        return json.dumps(
            {
                "total": self.total,
                "validator": self.validator,
                "prefix": self.prefix,
                "parts": [[p.start, p.end, p.done] for p in self.parts],
            }
        )

    @classmethod
    def from_json(cls, text: str) -> _SegmentState:
        data = json.loads(text)
        parts = [_Segment(int(a), int(b), int(d)) for a, b, d in data["parts"]]
        return cls(int(data["total"]), str(data["validator"]), int(data["prefix"]), parts)


#: The directory, inside the journal's, of the split files' progress records.
RANGE_RECORDS = "ranges"
_RECORD_MAGIC = b"stpl-rg1"
#: magic, layout digest, boot id, number of ranges; then each range's bytes on disk.
_RECORD_HEAD = struct.Struct("<8s16s16sQ")
_RECORD_DONE = struct.Struct("<Q")


def _boot_id() -> bytes:
    """This boot of the machine (Linux), or zeros where it cannot be told: the page cache,
    which makes a progress record true after a crash of the process, lasts one boot."""
    try:
        return uuid.UUID(Path("/proc/sys/kernel/random/boot_id").read_text().strip()).bytes
    except (OSError, ValueError):
        return bytes(16)


_BOOT_ID = _boot_id()


def _record_dir(directory: Path, *, make: bool) -> int:
    """A descriptor of the progress records' directory, never reached through a link at
    its own name (``make``: created, and a link there replaced by a directory). Blocking."""
    if make:
        with contextlib.suppress(FileExistsError):
            directory.mkdir(0o700)
    try:
        return os.open(directory, _DIR_FLAGS)
    except OSError:
        if not (make and directory.is_symlink()):
            raise
    directory.unlink()  # a link in stacpull's own directory: removed, never followed
    directory.mkdir(0o700)
    return os.open(directory, _DIR_FLAGS)


class _RangeRecord:
    """How far each range of a split ``.part`` has reached the disk, rewritten in place
    right after each batch's ``pwritev``, by the same worker thread (one 8-byte ``pwrite``
    per batch of up to ``RANGE_BATCH``, never an fsync). The data is written before the
    number that claims it, so after ``kill -9`` (the page cache keeps both) the record
    never claims a byte that is not in the ``.part``: a resume re-fetches only the batches
    that were in flight, as a single stream resumes at the ``.part``'s size. The journal's
    segment JSON stays the authority for the layout and is the fallback for the numbers.

    Why this and not the alternatives: a journal record per batch is a SQLite transaction
    per megabyte, and an uncommitted group is lost to ``kill -9`` anyway; ``SEEK_DATA`` on
    the sparse ``.part`` depends on the file system and is block-granular; a trailer in the
    ``.part`` would change its size, which the retry loop reads as progress.

    The record lives in the journal's directory (``ranges/<digest of the path>.ranges``),
    not beside the ``.part``: any name beside it could be another asset's name or ``.part``
    (hostile metadata names files), and may exceed NAME_MAX where a long name's ``.part``
    does not. It is replaced by rename (never written through a link: ``O_NOFOLLOW``, a
    new name created ``O_EXCL``), removed when the ranges are complete or the ``.part``
    is discarded, and ignored (the journal's numbers used) unless it names the journalled
    layout and this boot, and every claim lies within its range and the ``.part``'s size.
    After a power loss neither the data nor the record is durable (no fsync until the
    seal): on Linux the new boot id makes the resume fall back to the journal, as before;
    where the boot cannot be told, the record is trusted as the journal is."""

    __slots__ = ("_fd",)

    def __init__(self, fd: int) -> None:
        self._fd = fd

    @staticmethod
    def path(journal_dir: Path, job: Job) -> Path:
        name = hashlib.blake2b(job.dest.encode("utf-8", "surrogateescape"), digest_size=16)
        return journal_dir / RANGE_RECORDS / f"{name.hexdigest()}.ranges"

    @staticmethod
    def _layout(job: Job, state: _SegmentState) -> bytes:
        """A digest of what the record's numbers are about: the URL and the journalled
        layout (size, validator, prefix, every range's bounds)."""
        bounds = [[p.start, p.end] for p in state.parts]
        text = json.dumps([job.url, state.total, state.validator, state.prefix, bounds])
        return hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=16).digest()

    @classmethod
    def create(cls, path: Path, job: Job, state: _SegmentState) -> _RangeRecord | None:
        """Write a record of ``state`` as it is now at ``path`` and keep it open for
        :meth:`mark`; None (progress is then journalled only) when it cannot be written.
        Blocking."""
        head = _RECORD_HEAD.pack(_RECORD_MAGIC, cls._layout(job, state), _BOOT_ID, len(state.parts))
        body = b"".join(_RECORD_DONE.pack(p.done) for p in state.parts)
        temp = f"{path.name}.new"
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _CLOEXEC
        try:
            dir_fd = _record_dir(path.parent, make=True)
        except OSError as exc:
            log.debug("no progress record for %s: %s", job.dest, exc)
            return None
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp, dir_fd=dir_fd)
            fd = os.open(temp, flags, 0o600, dir_fd=dir_fd)
            try:
                os.pwrite(fd, head + body, 0)
                # Atomic, and never through a link: the old record (a resume's claims)
                # stays whole until the new one, claiming at least as much, replaces it.
                os.rename(temp, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except OSError:
                os.close(fd)
                raise
        except OSError as exc:
            log.debug("no progress record for %s: %s", job.dest, exc)
            return None
        finally:
            os.close(dir_fd)
        return cls(fd)

    @classmethod
    def read(cls, path: Path, job: Job, state: _SegmentState, part: Path) -> list[int] | None:
        """Each range's bytes on disk as recorded at ``path``, or None when there is no
        record or it does not fit ``state`` (another layout, boot or size, a claim beyond
        its range or the ``.part``'s end, not a regular file, reached through a link).
        Blocking."""
        size = _RECORD_HEAD.size + _RECORD_DONE.size * len(state.parts)
        flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | _CLOEXEC
        try:
            dir_fd = _record_dir(path.parent, make=False)
        except OSError:
            return None
        try:
            fd = os.open(path.name, flags, dir_fd=dir_fd)
        except OSError:
            return None
        finally:
            os.close(dir_fd)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_size != size:
                return None
            data = os.pread(fd, size, 0)
            part_size = _size(part)  # 0 unless a file of ours: then every claim is refused
        except OSError:
            return None
        finally:
            os.close(fd)
        if len(data) != size:
            return None
        magic, layout, boot, count = _RECORD_HEAD.unpack_from(data)
        if (
            magic != _RECORD_MAGIC
            or layout != cls._layout(job, state)
            or boot != _BOOT_ID
            or count != len(state.parts)
        ):
            return None
        done = [
            _RECORD_DONE.unpack_from(data, _RECORD_HEAD.size + _RECORD_DONE.size * i)[0]
            for i in range(count)
        ]
        for p, d in zip(state.parts, done, strict=True):
            if d > p.end - p.start or (d and p.start + d > part_size):
                return None
        return done

    def mark(self, index: int, done: int) -> None:
        """Range ``index`` has ``done`` bytes on disk (written just before). Blocking."""
        try:
            os.pwrite(
                self._fd, _RECORD_DONE.pack(done), _RECORD_HEAD.size + _RECORD_DONE.size * index
            )
        except OSError as exc:  # the record lags, which is safe: the journal still follows
            log.debug("progress record not updated: %s", exc)

    def close(self) -> None:
        os.close(self._fd)

    @staticmethod
    def remove(path: Path) -> None:
        """Forget the record at ``path`` (the ranges are complete, or the ``.part`` gone),
        removed relative to its directory, never through a link at the directory's name."""
        try:
            dir_fd = _record_dir(path.parent, make=False)
        except OSError:
            return  # no records directory (or a link there): nothing of ours to remove
        try:
            os.unlink(path.name, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.debug("progress record %s not removed: %s", path, exc)
        finally:
            os.close(dir_fd)


def _write_range(
    fd: int,
    blocks: list[bytes],
    position: int,
    record: _RangeRecord | None,
    index: int,
    done: int,
) -> None:
    """One range batch: the data, then the record that claims it. In a worker thread."""
    _write_blocks(fd, blocks, position)
    if record is not None:
        record.mark(index, done)


async def _saved_segments(
    job: Job, part: Path, row: JournalRow | None, ctx: FetchContext
) -> _SegmentState | None:
    """The journalled ranges of ``part``, when ``row`` says they describe this very file
    (``row`` is only read for a ``.part`` that has bytes, so the file is there)."""
    if row is None or not row.segments or not row.same_url(job.url):
        return None
    try:
        state = _SegmentState.from_json(row.segments)
    except (ValueError, KeyError, TypeError):
        await _discard(part, job, ctx)
        return None
    if job.size is not None and state.total != job.size:
        await _discard(part, job, ctx)
        return None
    # The record says how far each range got after its last batch; the journal, as of
    # its last record (up to SEGMENT_JOURNAL_EVERY older), is the fallback.
    record = _RangeRecord.path(ctx.journal.directory, job)
    done = await anyio.to_thread.run_sync(_RangeRecord.read, record, job, state, part)
    if done is None:
        log.debug("%s: no usable progress record; resuming from the journal's", job.dest)
    else:
        for p, d in zip(state.parts, done, strict=True):
            p.done = max(p.done, d)
    return state


async def _save_segments(job: Job, state: _SegmentState, ctx: FetchContext) -> None:
    state.saved_at = time.monotonic()
    await ctx.journal.segmented(job, state=state.to_json(), received=state.received)


async def _run_segments(
    job: Job,
    part: Path,
    state: _SegmentState,
    ctx: FetchContext,
    progress: _Progress,
    hasher: Hasher,
    hashed: int,
) -> None:
    """Fetch every unfinished range of ``state`` in place in ``part``: up to
    ``download.segments`` connections take them in file order. ``hasher`` has seen bytes
    ``[0, hashed)``; it follows the front of the file as it fills, and has seen all of it
    when this returns. The progress record is written before the journal names the
    layout, so a record left by an earlier layout is never read as this one's."""
    record = _RangeRecord.path(ctx.journal.directory, job)
    with anyio.CancelScope(shield=True):  # an open record is always closed below
        state.record = await anyio.to_thread.run_sync(_RangeRecord.create, record, job, state)
    try:
        await _save_segments(job, state, ctx)
    except BaseException:
        await _close_record(state)
        raise
    pending = [p for p in state.parts if p.left > 0]
    todo = iter(pending)  # shared: each lane takes the next
    arrived = anyio.Event()
    ended = False

    def wake() -> None:
        arrived.set()

    async def lane() -> None:
        for segment in todo:
            await _fetch_segment(job, part, segment, state, ctx, progress, wake)

    async def follow() -> None:
        nonlocal arrived, hashed
        while True:
            front = state.filled
            if front - hashed >= FOLLOW_STEP or (ended and front > hashed):
                await anyio.to_thread.run_sync(_hash_part, ctx.root, hasher, part, hashed, front)
                hashed = front
            elif ended:
                return
            else:
                await arrived.wait()
                arrived = anyio.Event()

    lanes = min(ctx.segments, len(pending))
    try:
        async with anyio.create_task_group() as outer:
            outer.start_soon(follow)
            try:
                async with anyio.create_task_group() as tg:
                    for _ in range(lanes):
                        tg.start_soon(lane)
            finally:
                ended = True
                wake()
    except BaseExceptionGroup as group:
        raise first_error(group) from None
    finally:
        with anyio.move_on_after(1.0, shield=True), contextlib.suppress(StorageError):
            await _save_segments(job, state, ctx)
        await _close_record(state)
    # Complete, and journalled so: the record has nothing left to say.
    await anyio.to_thread.run_sync(_RangeRecord.remove, record)


async def _close_record(state: _SegmentState) -> None:
    """Close ``state``'s progress record (every write to it has returned)."""
    if state.record is not None:
        record, state.record = state.record, None
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(record.close)


def _open_for_ranges(root: Path, part: Path) -> int:
    """The ``.part`` a split file's ranges are written into: the regular file already
    there, reached without following a link (blocking)."""
    fd = _open_below(root, part, os.O_WRONLY)
    if not _ours(os.fstat(fd)):
        os.close(fd)
        raise UnsafePathError(f"{part} is not a file of stacpull's (a hard link?): not written")
    return fd


async def _fetch_segment(
    job: Job,
    part: Path,
    segment: _Segment,
    state: _SegmentState,
    ctx: FetchContext,
    progress: _Progress,
    wrote: Callable[[], None],
) -> None:
    """One range request, written at its offset (``wrote()`` after each write); raises a
    TransferError when cut."""
    position = segment.start + segment.done
    headers = {
        "Accept-Encoding": "identity",
        "Range": range_header(position, segment.end - 1),
        "If-Range": state.validator,
    }
    auth = _Progress()
    resp = await _open(job.url, headers, ctx, auth)
    try:
        if resp.status == 200:
            raise RangeError(
                "the file changed on the server during a segmented download", url=job.url
            )
        _check_status(resp, job, ctx.tokens.source, auth)
        try:
            crange = parse_content_range(resp.headers.get("Content-Range", ""))
        except ValueError as exc:
            raise RangeError(str(exc), url=job.url) from exc
        if crange.first != position or crange.total != state.total:
            raise RangeError(
                f"asked for bytes from {position} of {state.total}, got Content-Range "
                f"{crange.first}-{crange.last}/{crange.total}",
                url=job.url,
            )
        got = Validators.of(resp.headers)
        if not Validators.from_if_range(state.validator).same(got):
            raise RangeError(
                "the file changed on the server during a segmented download: a range came "
                f"with {_validator_text(got)}, the file was split under {state.validator}",
                url=job.url,
            )
        try:
            fd = await anyio.to_thread.run_sync(_open_for_ranges, ctx.root, part)
        except OSError as exc:
            raise _storage_error(exc, part) from exc
        try:
            await _receive_range(resp, job, part, fd, segment, state, ctx, progress, wrote)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(os.close, fd)
    finally:
        resp.release()
    if segment.left > 0:
        raise TruncatedError(
            f"range ended at {segment.start + segment.done} of {segment.end}", url=job.url
        )


async def _receive_range(
    resp: aiohttp.ClientResponse,
    job: Job,
    part: Path,
    fd: int,
    segment: _Segment,
    state: _SegmentState,
    ctx: FetchContext,
    progress: _Progress,
    wrote: Callable[[], None],
) -> None:
    index = next(i for i, p in enumerate(state.parts) if p is segment)

    async def write(batch: list[bytes]) -> None:
        done = segment.done + sum(map(len, batch))
        await anyio.to_thread.run_sync(
            _write_range, fd, batch, segment.start + segment.done, state.record, index, done
        )
        segment.done = done
        wrote()
        if time.monotonic() - state.saved_at >= SEGMENT_JOURNAL_EVERY:
            await _save_segments(job, state, ctx)

    batches = _Batches(write, min(RANGE_BATCH, ctx.chunk_size))
    floor = _SpeedFloor(ctx, job.url)
    received = 0
    with _body_errors(
        job, part, lambda: f"range cut at {segment.start + segment.done} of {segment.end}"
    ):
        try:
            async for chunk, _ in resp.content.iter_chunks():
                if segment.done + batches.size + len(chunk) > segment.end - segment.start:
                    raise RangeError("the server sent more than the range asked for", url=job.url)
                progress.received += len(chunk)
                received += len(chunk)
                if ctx.bandwidth is not None:
                    floor.pause(await ctx.bandwidth.take(len(chunk)))
                floor.check(received)
                ctx.emit(BytesReceived(job, len(chunk)))
                await batches.add(chunk)
        finally:
            with anyio.CancelScope(shield=True):
                await batches.flush()


async def _receive(
    resp: aiohttp.ClientResponse,
    job: Job,
    pf: _PartFile,
    offset: int,
    hasher: Hasher,
    ctx: FetchContext,
    progress: _Progress,
    row: JournalRow | None = None,
) -> tuple[int | None, int, int]:
    """Check the response and stream its body into ``pf`` after the first ``offset``
    bytes (``row``: the journal's record of them). Returns (announced total, the offset
    really used, bytes written)."""
    part = pf.path
    _check_status(resp, job, ctx.tokens.source, progress)
    total: int | None
    got = Validators.of(resp.headers)
    if resp.status == 206:
        if offset == 0:
            raise RangeError("server sent a partial response to a full request", url=job.url)
        try:
            crange = parse_content_range(resp.headers.get("Content-Range", ""))
        except ValueError as exc:
            raise RangeError(str(exc), url=job.url) from exc
        if crange.first != offset:
            raise RangeError(
                f"asked for bytes from {offset}, got Content-Range {crange.first}-{crange.last}",
                url=job.url,
            )
        _same_version(job, row, got, crange.total)
        total = crange.total
        if total is None:  # "bytes a-b/*": the length the .part was begun for, or file:size
            total = row.total if row is not None and row.total is not None else job.size
        if total is not None and crange.last >= total:
            raise RangeError(
                f"the resume's 206 runs to byte {crange.last}, past the {total} bytes of the "
                "file the partial file was begun for; restarting from zero",
                url=job.url,
            )
        end: int | None = crange.last + 1
        began = total
        progress.resumed_from = offset
    else:
        if offset:
            progress.notes.append(f"server answered 200 to a resume at {offset} bytes: restarted")
            progress.restarts += 1
            await _discard(part, job, ctx)
            offset = 0
        total = end = began = resp.content_length
    if total is not None and total > MAX_FILE_SIZE:
        raise TooLargeError(
            f"the server announces {total} bytes, more than any file holds", url=job.url
        )
    if total is not None and job.size is not None and total != job.size:
        raise VerificationError(
            f"server announces {total} bytes but file:size says {job.size}", url=job.url
        )
    await ctx.journal.started(
        job, etag=got.etag, last_modified=got.last_modified, offset=offset, total=began
    )
    pf.offset = offset
    progress.validator = got.if_range
    progress.resumable = progress.validator is not None
    progress.total, progress.split_at = total, None
    progress.can_split = (
        ctx.segments > 1
        and total is not None
        and progress.validator is not None
        and resp.headers.get("Accept-Ranges", "").lower() == "bytes"
        and total - offset >= 2 * ctx.segment_size
    )
    ctx.emit(TransferStarted(job, offset, total, progress.attempts))
    if offset:
        await _catch_up(pf, hasher, offset)
    expected = total if total is not None else job.size
    if end is None:
        end = job.size
    reserved = ctx.space.reserve(ctx.root, expected - offset if expected else 0, url=job.url)
    try:
        written = await _stream(resp, pf, hasher, job, ctx, progress, end)
    finally:
        ctx.space.release(reserved)
    return total, offset, written


def _same_version(job: Job, row: JournalRow | None, got: Validators, total: int | None) -> None:
    """Raise :class:`RangeError` unless a resume's 206 is of the version the ``.part``
    holds (``row``: its journal record): same validators (see :meth:`Validators.same`)
    and, where both are known, the same total length. A server that ignores ``If-Range``
    answers a changed file with a range of the new one; its bytes after the old ones
    would make a file that never existed, so the ``.part`` is discarded instead."""
    recorded = Validators(row.etag, row.last_modified) if row is not None else Validators()
    if not recorded.same(got):
        raise RangeError(
            f"the file changed on the server: the resume's 206 carries "
            f"{_validator_text(got)}, the partial file has {_validator_text(recorded)}; "
            "restarting from zero",
            url=job.url,
        )
    if row is not None and row.total is not None and total is not None and total != row.total:
        raise RangeError(
            f"the file changed on the server: the resume's 206 says {total} bytes in all, "
            f"the partial file was begun for {row.total}; restarting from zero",
            url=job.url,
        )


def _validator_text(v: Validators) -> str:
    """ETag and Last-Modified for a message."""
    shown = [f"ETag {v.etag}"] if v.etag else []
    if v.last_modified:
        shown.append(f"Last-Modified {v.last_modified}")
    return ", ".join(shown) or "no validator"


#: A stream that trickles in still reaches the disk every WRITE_INTERVAL seconds (a kill
#: loses at most that much); a fast one is written every ``download.chunk_size`` bytes, and
#: a broken one writes what it received before the error is raised.
WRITE_INTERVAL = 0.25

#: pwritev takes at most IOV_MAX (1024 on Linux) blocks per call.
_IOV_GROUP = 512


def _open_part(dir_fd: int, name: str, offset: int) -> int:
    """The ``.part`` ``name`` in the directory ``dir_fd``, for writing from ``offset``.
    From zero, whatever lies at the name (a link, a hard link to a file elsewhere, a FIFO)
    is removed and a new file made (``O_EXCL``); a resume opens only the regular file of
    ours already there, never through a link. Opened for reading too: the zip check reads
    this very file back through it (see :meth:`_PartFile.seal`)."""
    if not offset:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=dir_fd)
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _CLOEXEC
        return os.open(name, flags, 0o644, dir_fd=dir_fd)
    # No O_CREAT: a .part gone since its bytes were hashed must not come back empty, its
    # old bytes zeros under a digest that still counts them.
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC
    fd = os.open(name, flags, dir_fd=dir_fd)
    if not _ours(os.fstat(fd)):
        os.close(fd)
        raise UnsafePathError(f"{name!r} is not a file of stacpull's (a hard link?): not resumed")
    return fd


def _write_blocks(fd: int, blocks: list[bytes], position: int) -> None:
    """Write ``blocks`` back to back at ``position`` in as few system calls as the kernel
    allows (no joined copy), then ask it to start writing them back: by the time the
    transfer ends and fsyncs, little is left dirty, so the fsync does not stall the end of
    a large file for the seconds a gigabyte of page cache takes to reach the disk."""
    start = position
    views = [memoryview(block) for block in blocks]
    first = 0
    while first < len(views):
        n = os.pwritev(fd, views[first : first + _IOV_GROUP], position)
        position += n
        while first < len(views) and n >= len(views[first]):
            n -= len(views[first])
            first += 1
        if n:  # a short write ended inside a block: the rest of it goes next
            views[first] = views[first][n:]
    _start_writeback(fd, start, position - start)


def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """Linux's sync_file_range(2), which Python's os module lacks; None elsewhere."""
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return cast(Callable[[int, int, int, int], int], function)


_SYNC_FILE_RANGE = _sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2


def _start_writeback(fd: int, start: int, length: int) -> None:
    # SYNC_FILE_RANGE_WRITE starts writing the dirty pages without waiting, and keeps
    # them cached (posix_fadvise(DONTNEED) would start it too, but then drops the pages
    # that a zip check or the hash of a segmented file reads back). ctypes releases the
    # GIL for the call. Where it is missing, the fsync at the end does all the work.
    if length and _SYNC_FILE_RANGE is not None:
        _SYNC_FILE_RANGE(fd, start, length, _SYNC_FILE_RANGE_WRITE)


class _Tee:
    """The hash and a :class:`ZipFollower` fed together. Every path that feeds a file's
    hash (the stream, a resume's catch-up, the follower of a split file's front) feeds its
    zip check too, each byte once and in order."""

    __slots__ = ("_follower", "_hasher")

    def __init__(self, hasher: Hasher, follower: ZipFollower) -> None:
        self._hasher, self._follower = hasher, follower

    def update(self, data: bytes | memoryview, /) -> None:
        self._hasher.update(data)
        self._follower.update(data)

    def digest(self) -> bytes:
        return self._hasher.digest()


def _hash_blocks(hasher: Hasher, blocks: list[bytes]) -> None:
    """Feed one batch to the hash, in a worker thread (hashlib releases the GIL)."""
    for block in blocks:
        hasher.update(block)


class _PartFile:
    """A ``.part`` as worker threads write it: opened by the thread hop that writes the
    first batch, sealed by one more (the last batch, the checks, fsync, close, rename to
    the final name, fsync of the directory). A body that fits in one batch is written by
    the sealing hop: a small file costs one thread hop."""

    def __init__(self, path: Path, root: Path, url: str) -> None:
        self.path = path
        self.root = root  # DEST, resolved: the .part's directory must stay inside it
        self.url = url  # for error messages
        self.offset = 0  # where this attempt's bytes start
        self.fd: int | None = None
        #: Its directory, opened from DEST without following a link: the .part is made,
        #: renamed and made durable relative to it. Open exactly while ``fd`` is.
        self.dir_fd: int | None = None
        #: The body's last batch, received but not yet written: the seal writes it.
        self.tail: list[bytes] = []
        self.tail_at = 0  # where it goes

    def _opened(self) -> int:
        if self.fd is None:
            dir_fd = _open_dir(self.root, self.path.parent, create=True)
            if dir_fd is None:  # never, with create
                raise FileNotFoundError(errno.ENOENT, "no directory", str(self.path.parent))
            try:
                self.fd = _open_part(dir_fd, self.path.name, self.offset)
            except FileNotFoundError:
                os.close(dir_fd)
                raise RangeError(  # retried from zero, as a range that does not fit is
                    "the partial file vanished before the resume opened it; restarting from zero",
                    url=self.url,
                ) from None
            except BaseException:
                os.close(dir_fd)
                raise
            self.dir_fd = dir_fd
        return self.fd

    def catch_up(self, hasher: Hasher, end: int) -> None:
        """Open the ``.part`` to resume it and feed its first ``end`` bytes to ``hasher``,
        read through the descriptor the new bytes are then written through: the bytes
        hashed are the bytes kept, whatever happens to the name meanwhile (blocking)."""
        hash_range(hasher, self.path, 0, end, opener=dup_opener(self._opened()))

    def write(self, blocks: list[bytes], position: int, hasher: Hasher | None = None) -> None:
        """Write (and with ``hasher``, hash) one batch; in a worker thread."""
        _write_blocks(self._opened(), blocks, position)
        if hasher is not None:
            _hash_blocks(hasher, blocks)

    def seal(
        self,
        final: Path,
        hasher: Hasher,
        expect: Multihash | None,
        check: Callable[[Opener], object] | None,
    ) -> tuple[int, bytes]:
        """Write and hash the tail; check the digest against ``expect`` (the
        ``file:checksum``) and run ``check`` (a zip's CRCs); make the bytes durable and
        move them to ``final`` atomically. Returns the file's mtime and digest. In a worker
        thread. An empty body still leaves an (empty) file; a segmented file's ranges,
        written through other descriptors, are made durable by the same fsync (it is per
        file, not per descriptor)."""
        fd = self._opened()
        if self.tail:
            blocks, self.tail = self.tail, []
            _write_blocks(fd, blocks, self.tail_at)
            _hash_blocks(hasher, blocks)
        digest = hasher.digest()
        if expect is not None:
            check_digest(digest, expect, url=self.url)
        if check is not None:
            check(dup_opener(fd))  # the bytes written, not whatever the name leads to now
        os.fsync(fd)
        written = os.fstat(fd)  # a rename keeps the mtime
        dir_fd, self.fd, self.dir_fd = self.dir_fd, None, None
        os.close(fd)
        assert dir_fd is not None and final.parent == self.path.parent
        try:
            # Only the file this transfer wrote moves: a .part replaced meanwhile (by a
            # link, say) is refused, not renamed into place.
            try:
                now = os.stat(self.path.name, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                raise RangeError(
                    "the partial file was removed while written; restarting from zero",
                    url=self.url,
                ) from None
            if (now.st_dev, now.st_ino) != (written.st_dev, written.st_ino):
                raise UnsafePathError(f"{self.path} was replaced while written: not renamed")
            os.replace(self.path.name, final.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return written.st_mtime_ns, digest

    def close(self) -> None:
        """Close without sealing (the attempt failed or was stopped); in a worker thread."""
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)
        if self.dir_fd is not None:
            dir_fd, self.dir_fd = self.dir_fd, None
            os.close(dir_fd)


class _SpeedFloor:
    """The least a body must deliver per window (``download.min_speed`` over
    ``stall_timeout`` seconds). The stall timeout alone is beaten by a server that sends a
    few bytes just often enough, which would keep a transfer going for ever; curl's
    ``--speed-limit`` and aria2c's ``--lowest-speed-limit`` guard the same way."""

    __slots__ = ("_ends", "_least", "_mark", "_speed", "_url", "_window")

    def __init__(self, ctx: FetchContext, url: str) -> None:
        self._speed, self._window, self._url = ctx.min_speed, ctx.speed_window, url
        self._least = ctx.min_speed * ctx.speed_window
        self._ends = time.monotonic() + ctx.speed_window
        self._mark = 0

    def pause(self, seconds: float) -> None:
        """Time the run's own bandwidth limit held the body back is not the server's."""
        self._ends += seconds

    def check(self, received: int) -> None:
        """Raise :class:`StallError` when the window that just ended (``received`` bytes
        so far) brought less than the floor."""
        if not self._least:
            return
        now = time.monotonic()
        if now < self._ends:
            return
        if received - self._mark < self._least:
            raise StallError(
                f"slower than {self._speed:,} bytes/s for {self._window:g} s (download.min_speed)",
                url=self._url,
            )
        self._ends, self._mark = now + self._window, received


class _SplitProbe:
    """How fast a single stream runs, measured once, SPLIT_AFTER seconds in. A slow one
    (a per-connection cap) is worth splitting; a fast one is left alone. Slow means slow
    overall and over the last stretch (a third of the probe at least: chunks that arrive
    back to back from one read would make any link look fast), so a fast stream that
    merely started late (a hiccup, a cold cache) is not split.

    One verdict only. Measured again every half second, a loopback stream sharing two
    cores with seven others dipped below ``download.segment_below`` now and then and was
    split for nothing; a cap that sets in only after a fast start goes unnoticed."""

    __slots__ = ("_began", "_window")

    def __init__(self) -> None:
        self._began = time.monotonic()
        self._window: tuple[float, int] | None = None  # (seconds, bytes) the stretch began

    def pause(self, seconds: float) -> None:
        """Time the run's bandwidth limit held the stream back is not the server's: a
        fast server under ``--bwlimit`` is not split into more connections for nothing."""
        self._began += seconds

    def rate(self, received: int) -> float | None:
        """Bytes per second once the probe has run (the higher of the two), else None."""
        elapsed = time.monotonic() - self._began
        if elapsed < SPLIT_AFTER * 2 / 3:
            return None
        if self._window is None:
            self._window = (elapsed, received)
            return None
        since, then = self._window
        if elapsed < max(SPLIT_AFTER, since + SPLIT_AFTER / 3):
            return None
        return max(received / elapsed, (received - then) / max(elapsed - since, 1e-3))


class _Batches:
    """Chunks gathered into one ``write`` every ``limit`` bytes or WRITE_INTERVAL seconds:
    the event loop pays one thread round trip per batch, not per chunk."""

    def __init__(self, write: Callable[[list[bytes]], Awaitable[None]], limit: int) -> None:
        self._write = write
        self._limit = limit
        self._pending: list[bytes] = []
        self._flushed = time.monotonic()
        self.size = 0  # bytes waiting

    async def add(self, chunk: bytes) -> None:
        self._pending.append(chunk)
        self.size += len(chunk)
        if self.size >= self._limit or time.monotonic() - self._flushed >= WRITE_INTERVAL:
            await self.flush()

    async def flush(self) -> None:
        self._flushed = time.monotonic()
        if self._pending:
            await self._write(self.take())

    def take(self) -> list[bytes]:
        """The chunks waiting, handed over unwritten."""
        batch, self._pending, self.size = self._pending, [], 0
        return batch


def _length_source(resp: aiohttp.ClientResponse, job: Job) -> str:
    """What announced a response's length, for a message."""
    if resp.status == 206:
        return "its Content-Range"
    return "its Content-Length" if resp.content_length is not None else "file:size"


@contextlib.contextmanager
def _body_errors(job: Job, part: Path, cut: Callable[[], str]) -> Iterator[None]:
    """aiohttp's and the disk's errors while a body is read into ``part``, as stacpull's
    (``cut()`` says where a truncated body ended)."""
    try:
        yield
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise StallError("no data received within the stall timeout", url=job.url) from exc
    except aiohttp.ClientPayloadError as exc:
        raise TruncatedError(cut(), url=job.url) from exc
    except aiohttp.ClientError as exc:
        raise ConnectError(f"connection lost: {type(exc).__name__}", url=job.url) from exc
    except OSError as exc:
        raise _storage_error(exc, part) from exc


async def _stream(
    resp: aiohttp.ClientResponse,
    pf: _PartFile,
    hasher: Hasher,
    job: Job,
    ctx: FetchContext,
    progress: _Progress,
    end: int | None = None,
) -> int:
    """Write the body into ``pf`` from its offset on; return the bytes received. The file
    stays open for :meth:`_PartFile.seal` (or ``close`` when the attempt fails). A body
    that ends normally leaves its last batch in ``pf.tail`` for the seal to write: one
    thread hop fewer per file. A broken, stopped or split one is written out here. A body
    that runs past ``end`` (the announced length, else ``file:size``) is stopped at the
    chunk that passes it, which is never written: :class:`SizeMismatchError`."""
    offset, written = pf.offset, 0
    room = None if end is None else end - offset  # bytes this body may bring
    # A full batch is written by one worker thread and hashed by another while the next
    # batch arrives: receiving, hashing and writing overlap, and the slowest of the three
    # (the hash, on a fast link) sets the pace instead of their sum. Both are awaited
    # through asyncio.shield, so a cancellation never abandons a thread still using the
    # file.
    loop = asyncio.get_running_loop()
    position = offset
    inflight: list[asyncio.Future[None]] = []

    async def settle() -> None:
        if inflight:
            lanes = asyncio.gather(*inflight)
            inflight.clear()
            await asyncio.shield(lanes)

    async def write(batch: list[bytes]) -> None:
        nonlocal position
        await settle()
        size = sum(map(len, batch))
        # A full batch (more follow) is hashed by a second thread while the first writes
        # it; one flushed before it was full (a slow stream) by the writing thread. The
        # last batch of a body is left to the seal (see _PartFile).
        if size >= ctx.chunk_size:
            inflight.append(loop.run_in_executor(None, pf.write, batch, position))
            inflight.append(loop.run_in_executor(None, _hash_blocks, hasher, batch))
        else:
            inflight.append(loop.run_in_executor(None, pf.write, batch, position, hasher))
        position += size

    batches = _Batches(write, ctx.chunk_size)
    probe = _SplitProbe() if progress.can_split else None
    floor = _SpeedFloor(ctx, job.url)
    whole = False  # the body ended normally, unsplit
    with _body_errors(job, pf.path, lambda: f"transfer cut after {offset + written} bytes"):
        try:
            # iter_chunks hands over aiohttp's buffers as they are; iter_chunked would join
            # them into fixed sizes first, a copy that costs as much as the hash.
            async for chunk, _ in resp.content.iter_chunks():
                if room is not None and written + len(chunk) > room:
                    raise SizeMismatchError(
                        f"the server sent more than the {end:,} bytes "
                        f"{_length_source(resp, job)} announces; stopped there",
                        url=job.url,
                    )
                written += len(chunk)
                progress.received += len(chunk)
                if ctx.bandwidth is not None:
                    held = await ctx.bandwidth.take(len(chunk))
                    floor.pause(held)
                    if probe is not None:
                        probe.pause(held)
                floor.check(written)
                ctx.emit(BytesReceived(job, len(chunk)))
                await batches.add(chunk)
                if probe is not None and (rate := probe.rate(written)) is not None:
                    probe = None  # one verdict per stream
                    left = (progress.total or 0) - offset - written
                    if rate < ctx.segment_below and left >= 2 * ctx.segment_size:
                        progress.split_at = offset + written
                        log.debug(
                            "%s runs at %.1f MB/s: splitting the %d bytes left",
                            job.dest, rate / 1e6, left,
                        )  # fmt: skip
                        break
            whole = progress.split_at is None
        finally:
            # Whatever arrived goes to disk, also when the stream broke or the run stops.
            with anyio.CancelScope(shield=True):
                if not whole:
                    await batches.flush()
                await settle()
    pf.tail, pf.tail_at = batches.take(), position
    return written
