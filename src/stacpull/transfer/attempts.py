"""One transfer's entry point (:func:`fetch`) and its retry loop.

The guarantees, whatever happens (errors, cancellation, a crash):

* a file appears under its final name only after its size, ``file:checksum`` and (for zips
  and KMZs) central directory and CRCs were verified, via fsync + atomic ``os.replace``;
* a ``.part`` is resumed with ``Range`` + ``If-Range`` when the journal holds the
  validator of the response that wrote it; a 200 answer, or a 206 (of a resume or of a
  split file's range) whose validators differ (:class:`~stacpull.headers.Validators`),
  restarts it from zero, so bytes of two versions of a file are never spliced. Without a
  validator, a ``.part`` of a file of announced length is resumed only when the server
  sends the bytes just before its end again, unchanged (:mod:`.stream`'s overlap);
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
from collections.abc import AsyncIterator, Iterator

import anyio
import anyio.to_thread

from ..errors import (
    ConnectError,
    CredentialsError,
    HTTPStatusError,
    PlanError,
    RangeError,
    StorageError,
    TransferError,
    VerificationError,
    scrubbed_logger,
)
from ..events import TransferRetried
from ..models import Job, Outcome, Status
from ..verify import Opener, ZipFollower, encode_multihash, verify_size
from .context import FetchContext
from .http import host_of
from .partfile import PartFile, Tee, part_bytes, storage_error
from .ranges import discard, saved_segments
from .segments import run_segments
from .skip import already_verified, checksum, look
from .state import Transfer
from .stream import single

__all__ = ["fetch"]

#: The transfer's messages keep the name fetch.py gave them (``--debug`` prints it, users
#: set its level); every module of the package shares the logger and its one filter.
log = scrubbed_logger("stacpull.fetch")


async def fetch(job: Job, ctx: FetchContext) -> Outcome:
    """Bring ``job`` to disk, verified, retrying per :class:`RetryPolicy`; never raises for
    a failure of this one job (that is an :class:`Outcome`), only :class:`StorageError`
    (the whole run must stop) and cancellation, after which the journal says ``pending``
    with the ``.part`` kept."""
    t = Transfer.begin(job, ctx.root)
    disk = await look(ctx, job)
    if disk.refusal is not None:  # a link on the way, a directory at the name...
        return await _refuse(t, ctx, disk.refusal, partial=0)
    t.expect = checksum(job, t.notes)
    present = await already_verified(job, t.final, disk.final_stat, t.expect, ctx)
    if present is not None:
        await ctx.journal.done(
            job, size=present.size, digest=present.digest, mtime_ns=present.mtime_ns
        )
        return t.finish(ctx, Status.SKIPPED, size=present.size)
    try:
        t.host = host_of(job.url)
    except ValueError as exc:  # a URL the client cannot take (an IDNA label "xn--"): refused
        refusal = PlanError(f"asset URL {job.url!r} is not valid: {exc}")
        return await _refuse(t, ctx, refusal, partial=0)
    t.had = t.best = disk.part_size
    try:
        return await _attempts(t, ctx)
    except PlanError as exc:  # nothing may be written there (a link, a name too long...)
        return await _refuse(t, ctx, exc, partial=part_bytes(t.part))
    except (anyio.get_cancelled_exc_class(), StorageError, CredentialsError):
        # Stopped (Ctrl-C, disk full, no token any more, a fatal error elsewhere): keep the
        # .part, settle the journal. Bounded, so a second Ctrl-C is never kept waiting.
        with anyio.move_on_after(1.0, shield=True), contextlib.suppress(StorageError):
            await ctx.journal.paused(job, partial=part_bytes(t.part))
        raise


#: Bytes an attempt must add past the most the ``.part`` ever held to renew its file's
#: retry budget (or a sixteenth of a smaller file): a server that sends a few bytes per
#: connection cannot keep a file retrying for ever, a link that drops every few minutes
#: brings far more.
_PROGRESS_MIN = 1 << 20


def _least_progress(total: int | None) -> int:
    """The bytes past its high-water mark that count as progress for a file of ``total``
    bytes (None: unknown): at most _PROGRESS_MIN, at least one byte."""
    return _PROGRESS_MIN if total is None else max(1, min(_PROGRESS_MIN, total // 16))


async def _attempts(t: Transfer, ctx: FetchContext) -> Outcome:
    """Attempts until one succeeds or the retry policy gives up; ``t.had`` is the size of
    the ``.part`` before the first.

    Bounded whatever the server does. Only an attempt that takes the ``.part`` at least
    :func:`_least_progress` bytes past the most it ever held renews the retry budget (a
    link that drops every few minutes never kills a 20 GB file that keeps moving); bytes
    fetched again after a restart are no progress. Every restart from zero (the ``.part``
    discarded: a changed file, a bad range or 416, a failed check, a resume answered with
    200) counts against the same budget and is never renewed, so a server that cuts every
    body and spoils every resume is given up on after ``retries`` restarts."""
    while True:
        t.attempts += 1
        t.streak += 1
        if t.attempts > 1:
            t.had = part_bytes(t.part)
        try:
            size, digest = await _attempt(t, ctx)
            ctx.limiter.succeeded(t.host)
        except TransferError as exc:
            delay, held = await _failed(t, ctx, exc)
            if delay is None:
                return await _give_up(t, ctx, exc, partial=held)
            await ctx.sleep(delay)
            continue
        return t.finish(ctx, Status.DOWNLOADED, size=size, digest=digest)


async def _failed(t: Transfer, ctx: FetchContext, exc: TransferError) -> tuple[float | None, int]:
    """Settle a failed attempt: throw the ``.part`` away when its bytes cannot be kept,
    renew the retry budget when the attempt moved the file forward, and announce the
    retry. Returns the wait before the next attempt (None: give up) and the bytes the
    ``.part`` keeps."""
    if isinstance(exc, HTTPStatusError) and exc.status in (429, 503):
        ctx.limiter.throttled(t.host, exc.status, ctx.retry.pause(exc.retry_after))
    elif isinstance(exc, ConnectError) and exc.refused:
        ctx.limiter.throttled(t.host, None, None)
    discarded = 0
    restart = isinstance(exc, VerificationError | RangeError)
    if restart:
        discarded = await discard(t.part, t.job, ctx)
        t.restarts += 1
    # What the .part keeps now, looked at once per failure (none after a discard).
    held = 0 if restart else part_bytes(t.part)
    if not restart and t.resumable and held - t.best >= _least_progress(t.total):
        # The attempt moved the file forward and those bytes are kept: a link that
        # drops every few minutes must not exhaust the retries of a 20 GB file.
        t.streak, t.best = 1, held
    delay = ctx.retry.delay(max(t.streak, t.restarts), exc)
    if delay is not None:
        log.debug("%s: attempt %d failed (%s); next in %.1f s", t.job.label, t.attempts, exc, delay)
        ctx.emit(TransferRetried(t.job, t.attempts, str(exc), type(exc).__name__, delay, discarded))
    return delay, held


async def _give_up(t: Transfer, ctx: FetchContext, exc: TransferError, *, partial: int) -> Outcome:
    """End the job failed: the retry policy gave up on ``exc``."""
    reason = exc.reason
    if t.attempts > 1:
        restarts = f", {t.restarts} of them from zero" if t.restarts else ""
        reason = f"{reason} (gave up after {t.attempts} attempts{restarts})"
    await ctx.journal.failed(t.job, error_class=type(exc).__name__, error=reason, partial=partial)
    return t.finish(ctx, Status.FAILED, error=exc)


async def _refuse(t: Transfer, ctx: FetchContext, exc: PlanError, *, partial: int) -> Outcome:
    """End the job refused: its destination cannot be written safely."""
    await ctx.journal.failed(t.job, error_class=type(exc).__name__, error=str(exc), partial=partial)
    return t.finish(ctx, Status.REFUSED, error=exc)


def _prepare(t: Transfer, ctx: FetchContext) -> None:
    """This attempt's hash, zip check and ``.part``."""
    job, mh = t.job, t.expect
    # Without a file:checksum, hash anyway: the digest lets `stacpull verify` find rot.
    t.hasher = (mh or ctx.record_hash).new()
    t.check = None
    if mh is None and (job.zip_check or job.size is None):
        # A file nothing describes (no checksum, no size) is a zip when its bytes say so,
        # whatever its media type or name: over a stream without a length, a zip's own
        # central directory is the only proof that it arrived whole.
        follower = ZipFollower()
        t.hasher = Tee(t.hasher, follower)
        t.check = functools.partial(_zip_check, follower, t)
    t.pf = PartFile(t.part, ctx.root, job.url)


async def _attempt(t: Transfer, ctx: FetchContext) -> tuple[int, str | None]:
    """One request (or one set of parallel ranges): fill the ``.part`` (``t.had`` bytes
    long now), verify, rename. Returns (size, digest). The transfer holds a slot of its
    host's limit; the local work after it holds none, so the next file's request is
    already on its way while this one is checked and made durable."""
    job, mh = t.job, t.expect
    _prepare(t, ctx)
    pf = t.pf
    try:
        async with _host_slot(t, ctx):
            # One journal read serves the segment check and the resume; a fresh file
            # needs none.
            t.row = await ctx.journal.get(job.dest) if t.had else None
            saved = await saved_segments(job, t.part, t.row, ctx)
            if saved is not None:
                # A segmented .part from an earlier attempt or run: finish its ranges, the
                # hash following from the first byte.
                t.resumed_from = saved.received
                await run_segments(t, ctx, saved, 0)
                size = pf.offset = t.total = saved.total
            else:
                size = await single(t, ctx)
        ctx.unwire()
        with _spliced(t):
            verify_size(size, job.size, url=job.url)
            try:
                mtime_ns, actual = await anyio.to_thread.run_sync(
                    pf.seal, t.final, t.hasher, mh, t.check
                )
            except OSError as exc:
                raise storage_error(exc, t.final) from exc
        digest = job.checksum if mh is not None else encode_multihash(ctx.record_hash.name, actual)
        await ctx.journal.done(job, size=size, digest=digest, mtime_ns=mtime_ns)
    finally:
        if pf.fd is not None:  # not sealed: the attempt failed or was cancelled
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(pf.close)
    return size, digest


@contextlib.contextmanager
def _spliced(t: Transfer) -> Iterator[None]:
    """A file resumed without a validator that fails its checks (``file:size``,
    ``file:checksum``, a zip's CRCs) may be two versions spliced where the overlap could
    not see it: a :class:`RangeError`, so it is fetched again from zero (and retried as a
    restart is) instead of given up on as a file that fails its checks."""
    try:
        yield
    except VerificationError as exc:
        if not (t.overlap and t.resumed_from):
            raise
        t.notes.append("resumed without a validator, then failed its check: restarted")
        at, t.resumed_from = t.resumed_from, 0
        raise RangeError(
            f"{exc.reason} after a resume without a validator at {at} bytes; restarting from zero",
            url=t.job.url,
        ) from exc


@contextlib.asynccontextmanager
async def _host_slot(t: Transfer, ctx: FetchContext) -> AsyncIterator[None]:
    """A slot of the job's host for one attempt. When none is free (a small window, a
    ``Retry-After`` pause), the job waits its turn at the host without its transfer slot,
    then takes that again: jobs of a host that waits would otherwise fill the run's
    transfer slots, and every other host's files would wait with them. Waiting its turn
    takes no host slot (one is held only by a request that can go), but the slot that
    frees is kept for it while it takes its transfer slot back."""
    promised = False
    while not promised and not ctx.limiter.ready(t.host):
        ctx.unwire()
        promised = await ctx.limiter.turn(t.host)  # its turn came: a slot is kept for it
        try:
            await ctx.rewire()
        except BaseException:
            if promised:
                ctx.limiter.forfeit(t.host)
            raise
    async with ctx.limiter.slot(t.host, promised=promised):
        yield


def _zip_check(follower: ZipFollower, t: Transfer, opener: Opener) -> None:
    """The zip check of a sealed ``.part``, read through ``opener`` (the descriptor it was
    written through): always for a job planned as a zip, else when its bytes begin like
    a zip and no length was announced (blocking)."""
    if t.job.zip_check or (follower.is_zip and t.total is None):
        follower.check(t.part, url=t.job.url, opener=opener)
