"""Segmented downloads: the unfinished ranges of a split ``.part`` fetched over parallel
connections in file order, the hash following the filled front."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import anyio
import anyio.to_thread

from ..errors import RangeError, StorageError, TruncatedError, first_error
from ..events import BytesReceived
from ..headers import Validators, range_header
from .context import FetchContext
from .http import (
    Response,
    TokenUse,
    body_errors,
    check_status,
    content_range,
    open_response,
    same_split,
)
from .pace import Batches, SpeedFloor
from .partfile import hash_part, open_for_ranges, storage_error
from .ranges import RangeRecord, Segment, SegmentState, close_record, save_segments, write_range
from .state import Transfer

__all__ = ["FOLLOW_STEP", "run_segments"]


#: The hash of a split file follows the filled front in steps of at least this much.
FOLLOW_STEP = 8 << 20


#: Seconds between journal records of the ranges' progress (the :class:`RangeRecord`
#: says, after every batch, how far each range got; the journal is its fallback).
_SEGMENT_JOURNAL_EVERY = 2.0


#: A range's largest write batch: less than ``download.chunk_size``, as a file may have
#: many ranges in flight.
_RANGE_BATCH = 1 << 20


async def run_segments(t: Transfer, ctx: FetchContext, state: SegmentState, hashed: int) -> None:
    """Fetch every unfinished range of ``state`` in place in ``t.part``: up to
    ``download.segments`` connections take them in file order. ``t.hasher`` has seen
    bytes ``[0, hashed)``; it follows the front of the file as it fills, and has seen all
    of it when this returns. The progress record is written before the journal names the
    layout, so a record left by an earlier layout is never read as this one's."""
    job = t.job
    record = RangeRecord.path(ctx.journal.directory, job)
    with anyio.CancelScope(shield=True):  # an open record is always closed below
        state.record = await anyio.to_thread.run_sync(RangeRecord.create, record, job, state)
    try:
        await save_segments(job, state, ctx)
    except BaseException:
        await close_record(state)
        raise
    try:
        await _fill(t, ctx, state, hashed)
    except BaseExceptionGroup as group:
        raise first_error(group) from None
    finally:
        with anyio.move_on_after(1.0, shield=True), contextlib.suppress(StorageError):
            await save_segments(job, state, ctx)
        await close_record(state)
    # Complete, and journalled so: the record has nothing left to say.
    await anyio.to_thread.run_sync(RangeRecord.remove, record)


@dataclass(frozen=True, slots=True)
class _Range:
    """One range of a split file as a lane fetches it."""

    segment: Segment
    state: SegmentState
    wrote: Callable[[], None]  # called after each write: the hash may follow further


async def _fill(t: Transfer, ctx: FetchContext, state: SegmentState, hashed: int) -> None:
    """The lanes that fetch the unfinished ranges, and the hash that follows the front."""
    pending = [p for p in state.parts if p.left > 0]
    todo = iter(pending)  # shared: each lane takes the next
    arrived = anyio.Event()
    ended = False

    def wake() -> None:
        arrived.set()

    async def lane() -> None:
        for segment in todo:
            await _fetch_segment(t, ctx, _Range(segment, state, wake))

    async def follow() -> None:
        nonlocal arrived, hashed
        while True:
            front = state.filled
            if front - hashed >= FOLLOW_STEP or (ended and front > hashed):
                await anyio.to_thread.run_sync(hash_part, ctx.root, t.hasher, t.part, hashed, front)
                hashed = front
            elif ended:
                return
            else:
                await arrived.wait()
                arrived = anyio.Event()

    lanes = min(ctx.segments, len(pending))
    async with anyio.create_task_group() as outer:
        outer.start_soon(follow)
        try:
            async with anyio.create_task_group() as tg:
                for _ in range(lanes):
                    tg.start_soon(lane)
        finally:
            ended = True
            wake()


async def _fetch_segment(t: Transfer, ctx: FetchContext, r: _Range) -> None:
    """One range request, written at its offset (``r.wrote()`` after each write); raises a
    TransferError when cut."""
    job, segment, state = t.job, r.segment, r.state
    position = segment.start + segment.done
    headers = {
        "Accept-Encoding": "identity",
        "Range": range_header(position, segment.end - 1),
        "If-Range": state.validator,
    }
    auth = TokenUse()
    resp = await open_response(job.url, headers, ctx, auth)
    try:
        if resp.status == 200:
            raise RangeError(
                "the file changed on the server during a segmented download", url=job.url
            )
        check_status(resp, job, ctx.tokens.source, auth)
        content_range(resp, job.url, position, state.total)
        got = Validators.of(resp.headers)
        same_split(state.validator, got, job.url)
        try:
            fd = await anyio.to_thread.run_sync(open_for_ranges, ctx.root, t.part)
        except OSError as exc:
            raise storage_error(exc, t.part) from exc
        try:
            await _receive_range(t, ctx, resp, fd, r)
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
    t: Transfer, ctx: FetchContext, resp: Response, fd: int, r: _Range
) -> None:
    """The body of one range, written at its place in the ``.part`` through ``fd``."""
    job, segment, state = t.job, r.segment, r.state
    index = next(i for i, p in enumerate(state.parts) if p is segment)

    async def write(batch: list[bytes]) -> None:
        done = segment.done + sum(map(len, batch))
        await anyio.to_thread.run_sync(
            write_range, fd, batch, segment.start + segment.done, state.record, index, done
        )
        segment.done = done
        r.wrote()
        if time.monotonic() - state.saved_at >= _SEGMENT_JOURNAL_EVERY:
            await save_segments(job, state, ctx)

    batches = Batches(write, min(_RANGE_BATCH, ctx.chunk_size))
    floor = SpeedFloor(ctx, job.url)
    received = 0
    with body_errors(
        job, t.part, lambda: f"range cut at {segment.start + segment.done} of {segment.end}"
    ):
        try:
            async for chunk, _ in resp.content.iter_chunks():
                if segment.done + batches.size + len(chunk) > segment.end - segment.start:
                    raise RangeError("the server sent more than the range asked for", url=job.url)
                t.received += len(chunk)
                received += len(chunk)
                ctx.limiter.received(t.host, len(chunk))
                if ctx.bandwidth is not None:
                    floor.pause(await ctx.bandwidth.take(len(chunk)))
                floor.check(received)
                ctx.emit(BytesReceived(job, len(chunk)))
                await batches.add(chunk)
        finally:
            with anyio.CancelScope(shield=True):
                await batches.flush()
