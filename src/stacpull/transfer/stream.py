"""The single stream: one response (resumed where the journal allows) checked and written
into the ``.part``, split into parallel ranges when it turns out slow.

Raw asyncio here only: the write path runs ``loop.run_in_executor`` futures for the write
and the hash of each batch, awaited through ``asyncio.shield`` (an anyio thread call per
batch would cost a task and a cancel scope per hop).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from pathlib import Path

import anyio
import anyio.to_thread

from ..errors import (
    RangeError,
    ScrubFilter,
    SizeMismatchError,
    TooLargeError,
    TruncatedError,
    VerificationError,
)
from ..events import BytesReceived, TransferStarted
from ..headers import Validators, parse_content_range, range_header
from ..journal import JournalRow
from ..models import Job
from ..plan import MAX_FILE_SIZE
from ..verify import Hasher, Opener, ZipFollower
from .context import FetchContext, Progress
from .http import (
    Response,
    body_errors,
    check_status,
    length_source,
    open_response,
    same_version,
    whole_at,
)
from .pace import Batches, SpeedFloor, SplitProbe
from .partfile import PartFile, hash_blocks, storage_error
from .ranges import SegmentState, discard
from .segments import run_segments

__all__ = ["single", "zip_check"]

log = logging.getLogger(__name__)
log.addFilter(ScrubFilter())


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
        await discard(part, job, ctx)
        return 0, {}
    return have, {"Range": range_header(have), "If-Range": validator}


async def single(
    job: Job,
    pf: PartFile,
    had: int,
    row: JournalRow | None,
    hasher: Hasher,
    ctx: FetchContext,
    progress: Progress,
) -> int:
    """One response into ``pf`` (resumed where the journal allows); split into parallel
    ranges when it turns out slow. Returns the size of the complete ``.part``."""
    part = pf.path
    offset, range_headers = await _resume_offset(job, part, had, row, ctx)
    headers = {"Accept-Encoding": "identity", **range_headers}
    total: int | None
    progress.renewed = False
    resp = await open_response(job.url, headers, ctx, progress)
    try:
        if offset and resp.status == 416:
            # Perhaps the .part already holds every byte: the last run stopped between the
            # final write and the rename. Then it is verified as it is; nothing needs to
            # cross the network.
            whole_at(job, row, offset, resp)
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
        state = SegmentState.split(
            total,
            progress.validator,
            progress.split_at,
            segments=ctx.segments,
            segment_size=ctx.segment_size,
        )
        await run_segments(job, part, state, ctx, progress, hasher, progress.split_at)
        written = total - offset
    size = offset + written
    if total is not None and size != total:
        raise TruncatedError(f"body ended at {size} of {total} bytes", url=job.url)
    return size


async def _catch_up(pf: PartFile, hasher: Hasher, offset: int) -> None:
    """:meth:`PartFile.catch_up` in a worker thread, its OSErrors as stacpull's."""
    try:
        await anyio.to_thread.run_sync(pf.catch_up, hasher, offset)
    except OSError as exc:
        raise storage_error(exc, pf.path) from exc


def zip_check(
    follower: ZipFollower, job: Job, part: Path, progress: Progress, opener: Opener
) -> None:
    """The zip check of a sealed ``.part``, read through ``opener`` (the descriptor it was
    written through): always for a job planned as a zip, else when its bytes begin like
    a zip and no length was announced (blocking)."""
    if job.zip_check or (follower.is_zip and progress.total is None):
        follower.check(part, url=job.url, opener=opener)


async def _receive(
    resp: Response,
    job: Job,
    pf: PartFile,
    offset: int,
    hasher: Hasher,
    ctx: FetchContext,
    progress: Progress,
    row: JournalRow | None = None,
) -> tuple[int | None, int, int]:
    """Check the response and stream its body into ``pf`` after the first ``offset``
    bytes (``row``: the journal's record of them). Returns (announced total, the offset
    really used, bytes written)."""
    part = pf.path
    check_status(resp, job, ctx.tokens.source, progress)
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
        same_version(job, row, got, crange.total)
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
            await discard(part, job, ctx)
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


async def _stream(
    resp: Response,
    pf: PartFile,
    hasher: Hasher,
    job: Job,
    ctx: FetchContext,
    progress: Progress,
    end: int | None = None,
) -> int:
    """Write the body into ``pf`` from its offset on; return the bytes received. The file
    stays open for :meth:`PartFile.seal` (or ``close`` when the attempt fails). A body
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
        # last batch of a body is left to the seal (see PartFile).
        if size >= ctx.chunk_size:
            inflight.append(loop.run_in_executor(None, pf.write, batch, position))
            inflight.append(loop.run_in_executor(None, hash_blocks, hasher, batch))
        else:
            inflight.append(loop.run_in_executor(None, pf.write, batch, position, hasher))
        position += size

    batches = Batches(write, ctx.chunk_size)
    probe = SplitProbe() if progress.can_split else None
    floor = SpeedFloor(ctx, job.url)
    whole = False  # the body ended normally, unsplit
    with body_errors(job, pf.path, lambda: f"transfer cut after {offset + written} bytes"):
        try:
            # iter_chunks hands over aiohttp's buffers as they are; iter_chunked would join
            # them into fixed sizes first, a copy that costs as much as the hash.
            async for chunk, _ in resp.content.iter_chunks():
                if room is not None and written + len(chunk) > room:
                    raise SizeMismatchError(
                        f"the server sent more than the {end:,} bytes "
                        f"{length_source(resp, job)} announces; stopped there",
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
