"""One transfer's entry point (:func:`fetch`) and its retry loop.

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

aiohttp exceptions are translated into :mod:`stacpull.errors` at one boundary,
:mod:`.http`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.to_thread
from yarl import URL

from ..errors import (
    CredentialsError,
    HTTPStatusError,
    PlanError,
    RangeError,
    ScrubFilter,
    StorageError,
    TransferError,
    VerificationError,
)
from ..events import JobFinished, TransferRetried
from ..models import Job, Outcome, Status
from ..verify import Hasher, Multihash, Opener, ZipFollower, encode_multihash, verify_size
from .context import FetchContext, Progress
from .partfile import PartFile, Tee, part_bytes, part_path, storage_error
from .ranges import discard, saved_segments
from .segments import run_segments
from .skip import already_verified, checksum, look
from .stream import single, zip_check

__all__ = ["fetch"]

log = logging.getLogger(__name__)
log.addFilter(ScrubFilter())


async def fetch(job: Job, ctx: FetchContext) -> Outcome:
    """Bring ``job`` to disk, verified, retrying per :class:`RetryPolicy`; never raises for
    a failure of this one job (that is an :class:`Outcome`), only :class:`StorageError`
    (the whole run must stop) and cancellation, after which the journal says ``pending``
    with the ``.part`` kept."""
    started = time.monotonic()
    progress = Progress()
    disk = await look(ctx, job)
    if disk.refusal is not None:  # a link on the way, a directory at the name...
        return await _refuse(job, disk.refusal, ctx, partial=0)
    final = disk.final
    mh = checksum(job, progress.notes)
    present = await already_verified(job, final, disk.final_stat, mh, ctx)
    if present is not None:
        await ctx.journal.done(
            job, size=present.size, digest=present.digest, mtime_ns=present.mtime_ns
        )
        return _finish(
            ctx, Outcome(job, Status.SKIPPED, size=present.size, notes=tuple(progress.notes))
        )

    part = part_path(final)
    try:
        host = URL(job.url).host or ""
    except ValueError as exc:  # a URL yarl cannot take (an IDNA label "xn--"): refused
        refusal = PlanError(f"asset URL {job.url!r} is not valid: {exc}")
        return await _refuse(job, refusal, ctx, partial=0)
    try:
        return await _attempts(job, final, part, disk.part_size, mh, ctx, progress, host, started)
    except PlanError as exc:  # nothing may be written there (a link, a name too long...)
        return await _refuse(job, exc, ctx, partial=part_bytes(part))
    except (anyio.get_cancelled_exc_class(), StorageError, CredentialsError):
        # Stopped (Ctrl-C, disk full, no token any more, a fatal error elsewhere): keep the
        # .part, settle the journal. Bounded, so a second Ctrl-C is never kept waiting.
        with anyio.move_on_after(1.0, shield=True), contextlib.suppress(StorageError):
            await ctx.journal.paused(job, partial=part_bytes(part))
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
    progress: Progress,
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
            had = part_bytes(part)
        try:
            size, digest = await _attempt(job, final, part, had, mh, ctx, progress, host)
            ctx.limiter.succeeded(host)
        except TransferError as exc:
            if isinstance(exc, HTTPStatusError) and exc.status in (429, 503):
                ctx.limiter.throttled(host)
            discarded = 0
            restart = isinstance(exc, VerificationError | RangeError)
            if restart:
                discarded = await discard(part, job, ctx)
                progress.restarts += 1
            # What the .part keeps now, looked at once per failure (none after a discard).
            held = 0 if restart else part_bytes(part)
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


def _finish(ctx: FetchContext, outcome: Outcome) -> Outcome:
    ctx.emit(JobFinished(outcome))
    return outcome


async def _attempt(
    job: Job,
    final: Path,
    part: Path,
    had: int,
    mh: Multihash | None,
    ctx: FetchContext,
    progress: Progress,
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
        hasher = Tee(hasher, follower)
        check = functools.partial(zip_check, follower, job, part, progress)
    pf = PartFile(part, ctx.root, job.url)
    try:
        async with ctx.limiter.slot(host):
            # One journal read serves the segment check and the resume; a fresh file
            # needs none.
            row = await ctx.journal.get(job.dest) if had else None
            saved = await saved_segments(job, part, row, ctx)
            if saved is not None:
                # A segmented .part from an earlier attempt or run: finish its ranges, the
                # hash following from the first byte.
                progress.resumed_from = saved.received
                await run_segments(job, part, saved, ctx, progress, hasher, 0)
                size = pf.offset = progress.total = saved.total
            else:
                size = await single(job, pf, had, row, hasher, ctx, progress)
        ctx.unwire()
        verify_size(size, job.size, url=job.url)
        try:
            mtime_ns, actual = await anyio.to_thread.run_sync(pf.seal, final, hasher, mh, check)
        except OSError as exc:
            raise storage_error(exc, final) from exc
        digest = job.checksum if mh is not None else encode_multihash(ctx.record_hash.name, actual)
        await ctx.journal.done(job, size=size, digest=digest, mtime_ns=mtime_ns)
    finally:
        if pf.fd is not None:  # not sealed: the attempt failed or was cancelled
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(pf.close)
    return size, digest
