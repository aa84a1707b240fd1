"""Segmented downloads: the unfinished ranges of a split ``.part`` fetched over parallel
connections in file order, the hash following the filled front. Each connection past the
first holds a host slot of its own, taken as other transfers free theirs."""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import anyio
import anyio.to_thread

from ..errors import (
    HTTPStatusError,
    RangeError,
    StorageError,
    TruncatedError,
    first_error,
    scrubbed_logger,
)
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

#: The transfer's messages keep the name fetch.py gave them (``--debug`` prints it, users
#: set its level); every module of the package shares the logger and its one filter.
log = scrubbed_logger("stacpull.fetch")


#: The hash of a split file follows the filled front in steps of at least this much.
FOLLOW_STEP = 8 << 20


#: Seconds between journal records of the ranges' progress (the :class:`RangeRecord`
#: says, after every batch, how far each range got; the journal is its fallback).
_SEGMENT_JOURNAL_EVERY = 2.0


#: A range's largest write batch: less than ``download.chunk_size``, as a file may have
#: many ranges in flight; less still when many bodies stream (``pace.Bodies``).
_RANGE_BATCH = 1 << 20


async def run_segments(t: Transfer, ctx: FetchContext, state: SegmentState, hashed: int) -> None:
    """Fetch every unfinished range of ``state`` in place in ``t.part``: up to
    ``download.segments`` connections take them in file order, each past the first under
    a host slot of its own (the caller holds one for the first). ``t.hasher`` has seen
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


class _Queue:
    """The ranges of a split file not yet taken, in file order, and the lanes still
    waiting for a host slot: once the last range is taken they are cancelled, so no
    task is left waiting for a slot it has no use for (nor takes one from the next
    file). Only ever touched on the event loop, between awaits."""

    __slots__ = ("_todo", "_waiting")

    def __init__(self, todo: list[Segment]) -> None:
        self._todo = deque(todo)
        self._waiting: set[anyio.CancelScope] = set()

    def take(self) -> Segment | None:
        """The next range in file order (None: all are taken)."""
        if not self._todo:
            return None
        segment = self._todo.popleft()
        if not self._todo:
            for scope in self._waiting:
                scope.cancel()
            self._waiting.clear()
        return segment

    @contextlib.contextmanager
    def waiting(self) -> Iterator[anyio.CancelScope]:
        """A scope for a lane waiting for its slot, cancelled with the last range taken
        (at once when none is left); :meth:`joined` once the slot is held."""
        with anyio.CancelScope() as scope:
            if self._todo:
                self._waiting.add(scope)
            else:
                scope.cancel()
            try:
                yield scope
            finally:
                self._waiting.discard(scope)

    def give_back(self, segment: Segment) -> None:
        """A range a lane could not fetch, first again for the lanes still running."""
        self._todo.appendleft(segment)

    def joined(self, scope: anyio.CancelScope) -> bool:
        """The lane of ``scope`` holds its slot: it is no longer cancelled for want of
        ranges. False when there is nothing left for it (it ends, freeing the slot)."""
        self._waiting.discard(scope)
        return bool(self._todo)


@dataclass(slots=True)
class _Lanes:
    """The connections of one split file. Each takes the next range until none is left;
    the first runs under the slot its transfer holds, a joiner waits for a slot of its
    own first. A range refused with 429/503 while another lane runs goes back to the
    queue and its lane ends (:func:`_refused`); the last lane's refusal fails the
    attempt, whose retry waits as the server asks."""

    t: Transfer
    ctx: FetchContext
    state: SegmentState
    wake: Callable[[], None]  # the hash may follow further
    queue: _Queue
    running: int = 0  # lanes fetching ranges

    async def lane(self) -> None:
        """Fetch ranges while any is left."""
        self.running += 1
        try:
            while (segment := self.queue.take()) is not None:
                try:
                    r = _Range(segment, self.state, self.wake)
                    await _fetch_segment(self.t, self.ctx, r)
                except HTTPStatusError as exc:
                    if self.running == 1 or exc.status not in (429, 503):
                        raise
                    _refused(self.t, self.ctx, exc)
                    self.queue.give_back(segment)
                    return
        finally:
            self.running -= 1

    async def joiner(self) -> None:
        """A lane under a host slot of its own, unless no range is left by then."""
        with self.queue.waiting() as scope:
            async with self.ctx.limiter.slot(self.t.host):
                if self.queue.joined(scope):
                    await self.lane()


async def _fill(t: Transfer, ctx: FetchContext, state: SegmentState, hashed: int) -> None:
    """The lanes that fetch the unfinished ranges, and the hash that follows the front.

    A range takes a host slot as a whole file does: the first lane runs under the slot
    the transfer holds, each further one (up to ``download.segments`` in all) waits for
    a slot of its own before its first range and keeps it while ranges are left. A lane
    that waits joins as other transfers end, so a split file gains connections as the
    host frees them instead of holding ranges for connections it cannot have."""
    pending = [p for p in state.parts if p.left > 0]
    queue = _Queue(pending)
    arrived = anyio.Event()
    ended = False

    def wake() -> None:
        arrived.set()

    lanes = _Lanes(t, ctx, state, wake, queue)

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

    count = min(ctx.segments, len(pending))
    async with anyio.create_task_group() as outer:
        outer.start_soon(follow)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(lanes.lane)
                for _ in range(count - 1):
                    tg.start_soon(lanes.joiner)
        finally:
            ended = True
            wake()


def _refused(t: Transfer, ctx: FetchContext, exc: HTTPStatusError) -> None:
    """A lane's range was answered 429 or 503 while other lanes run: the server asks for
    fewer connections, so the lane ends (its range goes back to the others, its slot to
    the host) instead of failing the attempt, which would cut every other range; the
    limiter hears of it here, as the retry loop would have told it."""
    log.debug("%s: a range was refused (%s); one connection fewer", t.job.dest, exc.status)
    ctx.limiter.throttled(t.host, exc.status, ctx.retry.pause(exc.retry_after))


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
    resp = await open_response(job.url, t.host, headers, ctx, auth)
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
    # A range served whole is a good answer, as a refused one is a throttle: the burst
    # rule weighs a split file's refusals against its ranges, not its one attempt.
    ctx.limiter.succeeded(t.host)


async def _receive_range(
    t: Transfer, ctx: FetchContext, resp: Response, fd: int, r: _Range
) -> None:
    """The body of one range, written at its place in the ``.part`` through ``fd``."""
    job, segment, state = t.job, r.segment, r.state
    index = next(i for i, p in enumerate(state.parts) if p is segment)

    async def write(batch: list[bytes], full: bool) -> None:  # one thread hop either way
        done = segment.done + sum(map(len, batch))
        await anyio.to_thread.run_sync(
            write_range, fd, batch, segment.start + segment.done, state.record, index, done
        )
        segment.done = done
        r.wrote()
        if time.monotonic() - state.saved_at >= _SEGMENT_JOURNAL_EVERY:
            await save_segments(job, state, ctx)

    batches = Batches(write, ctx.bodies, min(_RANGE_BATCH, ctx.chunk_size))
    floor = SpeedFloor(ctx, job.url)
    received = 0
    with (
        body_errors(
            job, t.part, lambda: f"range cut at {segment.start + segment.done} of {segment.end}"
        ),
        ctx.bodies.streaming(),
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
