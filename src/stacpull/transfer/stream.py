"""The single stream: one response (resumed where the journal allows) checked and written
into the ``.part``, split into parallel ranges when it turns out slow.

A resume sends ``Range`` + ``If-Range`` when the response that began the ``.part`` had a
validator. Without one (nobody recorded whether MAAP's static files send ``ETag`` or
``Last-Modified``), a ``.part`` of a file whose length was announced is resumed with a
range that starts :data:`OVERLAP` bytes before its end: those bytes are compared with the
``.part``'s, and any difference restarts the file from zero (a 200 does, as ever).
``file:size`` and ``file:checksum`` still decide at the end; what the overlap proves is
only that the server still sends these bytes where the ``.part`` has them. Such a file is
never split into ranges: each range would need a validator to stay of one version.

Raw asyncio here, for the write path only: each batch's write and hash run as
``loop.run_in_executor`` futures awaited through ``asyncio.shield`` (an anyio thread call
per batch would add a task and a cancel scope per hop, and could not be left running
while the next batch arrives).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import anyio
import anyio.to_thread

from ..errors import (
    RangeError,
    SizeMismatchError,
    TooLargeError,
    TruncatedError,
    VerificationError,
    scrubbed_logger,
)
from ..events import BytesReceived, TransferStarted
from ..headers import Validators, range_header
from ..plan import MAX_FILE_SIZE
from .context import FetchContext
from .http import (
    Response,
    body_errors,
    check_status,
    content_range,
    length_source,
    open_response,
    recorded,
    same_length,
    same_version,
    whole_at,
)
from .pace import Batches, SpeedFloor, SplitProbe
from .partfile import hash_blocks, storage_error
from .ranges import SegmentState, discard
from .segments import run_segments
from .state import Transfer

__all__ = ["OVERLAP", "single"]

#: The transfer's messages keep the name fetch.py gave them (``--debug`` prints it, users
#: set its level); every module of the package shares the logger and its one filter.
log = scrubbed_logger("stacpull.fetch")


#: Bytes before the end of a ``.part`` that a resume without a validator fetches again and
#: compares (64 KiB: one round trip's worth on a slow link, nothing beside a product).
#: A ``.part`` no longer than this is fetched again from zero, which costs no more.
OVERLAP = 64 << 10


async def _resume_offset(t: Transfer, ctx: FetchContext) -> tuple[int, Mapping[str, str]]:
    """Where to resume the ``.part`` (``t.had`` bytes long) from (``t.row``: the journal's
    record of it), and the headers to do it: ``Range`` and ``If-Range`` with the validator
    the ``.part`` was begun under, else (``t.overlap`` set) a ``Range`` that starts
    :data:`OVERLAP` bytes earlier, when the response that began it announced a length."""
    job, have, row = t.job, t.had, t.row
    t.overlap = 0
    if have == 0:
        return 0, {}  # nothing to resume; an empty .part is truncated when opened
    ours = row is not None and row.same_url(job.url)
    validator = recorded(row).if_range if ours else None
    began = row.total if ours and row is not None else None
    longer = (job.size is not None and have > job.size) or (began is not None and have > began)
    if validator is not None and not longer:
        return have, {"Range": range_header(have), "If-Range": validator}
    if validator is None and began is not None and have > OVERLAP and not longer:
        t.overlap = OVERLAP
        return have, {"Range": range_header(have - OVERLAP)}
    await discard(t.part, job, ctx)
    return 0, {}


async def single(t: Transfer, ctx: FetchContext) -> int:
    """One response into ``t.pf`` (resumed where the journal allows); split into parallel
    ranges when it turns out slow. Returns the size of the complete ``.part``."""
    job = t.job
    offset, range_headers = await _resume_offset(t, ctx)
    headers = {"Accept-Encoding": "identity", **range_headers}
    total: int | None
    t.token.renewed = False
    resp = await open_response(job.url, t.host, headers, ctx, t.token)
    try:
        if offset and resp.status == 416 and not t.overlap:
            # Perhaps the .part already holds every byte: the last run stopped between the
            # final write and the rename. Then it is verified as it is; nothing needs to
            # cross the network.
            whole_at(job, t.row, offset, resp)
            t.resumed_from = offset
            total, written = offset, 0
            t.pf.offset = t.total = offset
            await _catch_up(t, offset)
        else:
            total, offset, written = await _receive(t, ctx, resp, offset)
    finally:
        resp.release()
    if t.split_at is not None and total is not None and t.validator:
        state = SegmentState.split(
            total, t.validator, t.split_at, segments=ctx.segments, segment_size=ctx.segment_size
        )
        await run_segments(t, ctx, state, t.split_at)
        written = total - offset
    size = offset + written
    if total is not None and size != total:
        raise TruncatedError(f"body ended at {size} of {total} bytes", url=job.url)
    return size


async def _catch_up(t: Transfer, offset: int) -> None:
    """:meth:`PartFile.catch_up` in a worker thread, its OSErrors as stacpull's."""
    try:
        await anyio.to_thread.run_sync(t.pf.catch_up, t.hasher, offset)
    except OSError as exc:
        raise storage_error(exc, t.part) from exc


def _resumed(t: Transfer, resp: Response, offset: int, got: Validators) -> tuple[int | None, int]:
    """A resume's 206 checked (it starts at ``offset``, or ``t.overlap`` bytes before it,
    is of the version the ``.part`` holds, as its validators say, and fits the file it was
    begun for); returns (the file's total, the body's end). Without a validator the
    overlap's bytes are compared next (:func:`_overlap`)."""
    job, row = t.job, t.row
    if offset == 0:
        raise RangeError("server sent a partial response to a full request", url=job.url)
    crange = content_range(resp, job.url, offset - t.overlap)
    if t.overlap:
        same_length(job, row, crange.total)
    else:
        same_version(job, row, got, crange.total)
    total = crange.total
    if total is None:  # "bytes a-b/*": the length the .part was begun for, or file:size
        total = row.total if row is not None and row.total is not None else job.size
    if (total is not None and crange.last >= total) or crange.last + 1 < offset:
        raise RangeError(
            f"the resume's 206 runs to byte {crange.last}: the file the partial file was "
            f"begun for has {total} bytes, the partial file {offset}; restarting from zero",
            url=job.url,
        )
    t.resumed_from = offset
    return total, crange.last + 1


async def _read_exactly(resp: Response, n: int, url: str) -> bytes:
    """The next ``n`` bytes of ``resp``'s body (inside :func:`body_errors`); a body that
    ends before them is a :class:`TruncatedError`."""
    try:
        return await resp.content.readexactly(n)
    except asyncio.IncompleteReadError as exc:
        raise TruncatedError(
            f"body ended after {len(exc.partial)} of the {n} bytes asked for", url=url
        ) from None


async def _overlap(t: Transfer, ctx: FetchContext, resp: Response, offset: int) -> None:
    """The first ``t.overlap`` bytes of a resume's body without a validator, compared
    with the ``.part``'s bytes before ``offset``: the same, and the rest of the body
    continues the ``.part``; any difference, and the file changed (or the server sends
    other bytes for a range): :class:`RangeError`, so it restarts from zero."""
    job, n = t.job, t.overlap
    with body_errors(job, t.part, lambda: f"transfer cut in the {n} bytes before {offset}"):
        served = await _read_exactly(resp, n, job.url)
    t.received += n
    ctx.limiter.received(t.host, n)
    if ctx.bandwidth is not None:
        await ctx.bandwidth.take(n)
    t.pf.offset = offset  # opened to resume, never truncated
    try:
        held = await anyio.to_thread.run_sync(t.pf.read, offset - n, n)
    except OSError as exc:
        raise storage_error(exc, t.part) from exc
    if held != served:
        t.resumed_from = 0
        at = next(
            (i for i, (a, b) in enumerate(zip(held, served, strict=False)) if a != b), len(held)
        )
        t.notes.append(f"no validator: the bytes before the resume at {offset} differed; restarted")
        raise RangeError(
            f"the file changed on the server: with no validator to ask for, the resume "
            f"fetched the {n} bytes before byte {offset} again and byte {offset - n + at} "
            "differs from the partial file's; restarting from zero",
            url=job.url,
        )
    t.notes.append(f"resumed at {offset} bytes without a validator: the {n} before it matched")


def _announced(t: Transfer, total: int | None) -> None:
    """Refuse a body whose announced length no file has, or that ``file:size`` denies."""
    job = t.job
    if total is not None and total > MAX_FILE_SIZE:
        raise TooLargeError(
            f"the server announces {total} bytes, more than any file holds", url=job.url
        )
    if total is not None and job.size is not None and total != job.size:
        raise VerificationError(
            f"server announces {total} bytes but file:size says {job.size}", url=job.url
        )


def _answered(t: Transfer, ctx: FetchContext, resp: Response, validator: str | None) -> None:
    """What the response this attempt streams says of the file: its strong validator,
    whether its bytes can be resumed, and whether it may be split into ranges."""
    t.validator = validator
    offset, total = t.pf.offset, t.total
    ranges = resp.status == 206 or resp.headers.get("Accept-Ranges", "").lower() == "bytes"
    # Without a validator, the bytes of a file of known length can be resumed with an
    # overlap (see _resume_offset) where ranges are served.
    t.resumable = validator is not None or (ranges and total is not None)
    t.split_at = None
    t.can_split = (
        ctx.segments > 1
        and total is not None
        and validator is not None
        and resp.headers.get("Accept-Ranges", "").lower() == "bytes"
        and total - offset >= 2 * ctx.segment_size
    )


async def _receive(
    t: Transfer, ctx: FetchContext, resp: Response, offset: int
) -> tuple[int | None, int, int]:
    """Check the response and stream its body into ``t.pf`` after the first ``offset``
    bytes (``t.row``: the journal's record of them). Returns (announced total, the offset
    really used, bytes written)."""
    job = t.job
    check_status(resp, job, ctx.tokens.source, t.token)
    total: int | None
    end: int | None
    got = Validators.of(resp.headers)
    if resp.status == 206:
        total, end = _resumed(t, resp, offset, got)
        began = total
    else:
        if offset:
            t.notes.append(f"server answered 200 to a resume at {offset} bytes: restarted")
            t.restarts += 1
            await discard(t.part, job, ctx)
            offset = t.overlap = 0
        total = end = began = resp.content_length
    _announced(t, total)
    if t.overlap:
        await _overlap(t, ctx, resp, offset)
    await ctx.journal.started(
        job, etag=got.etag, last_modified=got.last_modified, offset=offset, total=began
    )
    t.pf.offset = offset
    t.total = total
    _answered(t, ctx, resp, got.if_range)
    ctx.emit(TransferStarted(job, offset, total, t.attempts))
    if offset:
        await _catch_up(t, offset)
    expected = total if total is not None else job.size
    if end is None:
        end = job.size
    reserved = ctx.space.reserve(ctx.root, expected - offset if expected else 0, url=job.url)
    try:
        written = await _stream(t, ctx, resp, end)
    finally:
        ctx.space.release(reserved)
    return total, offset, written


class _Writes:
    """The batches of one body on their way to disk. A full batch is written by one
    worker thread and hashed by another while the next batch arrives: receiving, hashing
    and writing overlap, and the slowest of the three (the hash, on a fast link) sets the
    pace instead of their sum. Both are awaited through asyncio.shield, so a cancellation
    never abandons a thread still using the file."""

    __slots__ = ("_inflight", "_loop", "_t", "position")

    def __init__(self, t: Transfer) -> None:
        self._t = t
        self._loop = asyncio.get_running_loop()
        self._inflight: list[asyncio.Future[None]] = []
        self.position = t.pf.offset  # where the next batch goes

    async def settle(self) -> None:
        """Wait for the batches in flight (shielded: the threads finish their work)."""
        if self._inflight:
            lanes = asyncio.gather(*self._inflight)
            self._inflight.clear()
            await asyncio.shield(lanes)

    async def write(self, batch: list[bytes], full: bool) -> None:
        """Send ``batch`` to worker threads once the one before has landed."""
        await self.settle()
        size = sum(map(len, batch))
        pf, run = self._t.pf, self._loop.run_in_executor
        # A full batch (more follow) is hashed by a second thread while the first writes
        # it; one flushed before it was full (a slow stream) by the writing thread. The
        # last batch of a body is left to the seal (see PartFile).
        if full:
            self._inflight.append(run(None, pf.write, batch, self.position))
            self._inflight.append(run(None, hash_blocks, self._t.hasher, batch))
        else:
            self._inflight.append(run(None, pf.write, batch, self.position, self._t.hasher))
        self.position += size


def _split_here(t: Transfer, ctx: FetchContext, rate: float, written: int) -> bool:
    """Whether a stream measured at ``rate`` bytes/s, ``written`` bytes in, stops here to
    be split into ranges (noted in ``t.split_at``)."""
    offset = t.pf.offset
    left = (t.total or 0) - offset - written
    if rate < ctx.segment_below and left >= 2 * ctx.segment_size:
        t.split_at = offset + written
        log.debug("%s runs at %.1f MB/s: splitting the %d bytes left", t.job.dest, rate / 1e6, left)
        return True
    return False


async def _stream(t: Transfer, ctx: FetchContext, resp: Response, end: int | None) -> int:
    """Write the body into ``t.pf`` from its offset on; return the bytes received. The file
    stays open for :meth:`PartFile.seal` (or ``close`` when the attempt fails). A body
    that ends normally leaves its last batch in ``pf.tail`` for the seal to write: one
    thread hop fewer per file. A broken, stopped or split one is written out here. A body
    that runs past ``end`` (the announced length, else ``file:size``) is stopped at the
    chunk that passes it, which is never written: :class:`SizeMismatchError`."""
    job, pf = t.job, t.pf
    offset, written = pf.offset, 0
    room = None if end is None else end - offset  # bytes this body may bring
    writes = _Writes(t)
    batches = Batches(writes.write, ctx.bodies, ctx.chunk_size)  # sized for the bodies
    probe = SplitProbe() if t.can_split else None
    floor = SpeedFloor(ctx, job.url)
    whole = False  # the body ended normally, unsplit
    with (
        body_errors(job, t.part, lambda: f"transfer cut after {offset + written} bytes"),
        ctx.bodies.streaming(),
    ):
        try:
            # iter_chunks hands over aiohttp's buffers as they are; iter_chunked would join
            # them into fixed sizes first, a copy that costs as much as the hash.
            async for chunk, _ in resp.content.iter_chunks():
                if room is not None and written + len(chunk) > room:
                    raise SizeMismatchError(
                        f"the server sent more than the {end:,} bytes "
                        f"{length_source(resp)} announces; stopped there",
                        url=job.url,
                    )
                written += len(chunk)
                t.received += len(chunk)
                ctx.limiter.received(t.host, len(chunk))
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
                    if _split_here(t, ctx, rate, written):
                        break
            whole = t.split_at is None
        finally:
            # Whatever arrived goes to disk, also when the stream broke or the run stops.
            with anyio.CancelScope(shield=True):
                if not whole:
                    await batches.flush()
                await writes.settle()
    pf.tail, pf.tail_at = batches.take(), writes.position
    return written
