"""How a body's chunks are paced: gathered into write batches (:class:`Batches`) sized
for the bodies streaming at once (:class:`Bodies`), held to the least speed
(:class:`SpeedFloor`), and measured once for a split (:class:`SplitProbe`). Shared by
the single stream and the ranges."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ..errors import StallError

if TYPE_CHECKING:
    from .context import FetchContext

__all__ = ["Batches", "Bodies", "SpeedFloor", "SplitProbe"]


#: Seconds a single stream runs before it may be split into ranges: long enough that a
#: fast stream has shown its speed (loopback, a LAN), short enough that a capped one has
#: not wasted much time alone (0.3 s made the MAAP WAN row 0.1 s slower). A wide-area
#: stream still in TCP slow start may look slow and be split too: the parallel ranges
#: then ramp up together, which does no harm.
_SPLIT_AFTER = 0.15


#: A stream that trickles in still reaches the disk every _WRITE_INTERVAL seconds (a kill
#: loses at most that much); a fast one is written every batch (see :class:`Bodies`), and
#: a broken one writes what it received before the error is raised.
_WRITE_INTERVAL = 0.25


#: The bytes the write batches of every body streaming at once hold together: what the
#: old default of 8 files in flight held at 4 MiB batches (one gathering, one on its way
#: to disk). See :class:`Bodies`.
_BATCH_BUDGET = 64 << 20

#: The least batch, however many bodies stream: one socket read's worth (asyncio and
#: uvloop hand over up to 256 KiB per read), so no chunk is bigger than the batch it joins
#: and a batch is never cut more often than once a read.
_BATCH_FLOOR = 256 << 10


class Bodies:
    """The response bodies streaming at once over the run, whole files and ranges alike
    (shared through the :class:`FetchContext`), and the write batch each may gather:
    ``budget / (2 x bodies)``, within ``[floor, most]`` (``most``: ``download.chunk_size``,
    or the ranges' own cap). Two batches a body, as each may have one on its way to disk
    while the next gathers: together they hold at most ``budget`` bytes, so 64 transfers
    cannot buffer the half gigabyte 64 x 2 x 4 MiB batches would.

    The budget, 64 MiB, is what 8 bodies held with full 4 MiB batches: up to eight (the
    old default) nothing changes, and a lone fast stream keeps its full ``chunk_size``
    batches, so the write path's thread hops per byte do not grow where it is fastest. A
    ``chunk_size`` past half the budget is the user's choice of memory per stream: the
    budget grows to two of them. At 64 bodies each batch is 512 KiB, its two hops small
    beside hashing it, and the bodies share the link anyway. The floor, 256 KiB (one
    socket read), binds only past 128 bodies; below it a fast stream's every chunk would
    be a batch of its own, a hop per chunk, which is what batching exists to avoid. The
    bound is then ``2 x floor`` a body.

    The count is read again at every chunk: a body that joins shrinks the others' next
    batches at once, though a batch already cut under the larger share lands first (one
    write). A body's last batch, handed to the seal, is no longer counted: sealing it is
    what its transfer does next."""

    __slots__ = ("_budget", "_floor", "count")

    def __init__(self, budget: int = _BATCH_BUDGET, floor: int = _BATCH_FLOOR) -> None:
        if floor < 1 or budget < 2 * floor:
            raise ValueError(
                f"the batch budget ({budget:,} bytes) must hold two batches of the floor "
                f"({floor:,} bytes, at least 1)"
            )
        self._budget, self._floor = budget, floor
        self.count = 0  # bodies streaming now

    def batch(self, most: int) -> int:
        """The bytes a body's batch may gather now, ``most`` at the very most."""
        share = max(self._budget, 2 * most) // (2 * max(self.count, 1))
        return min(most, max(self._floor, share))

    @contextmanager
    def streaming(self) -> Iterator[None]:
        """Count one body while its chunks arrive and its batches are written."""
        self.count += 1
        try:
            yield
        finally:
            self.count -= 1


class SpeedFloor:
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


class SplitProbe:
    """How fast a single stream runs, measured once, _SPLIT_AFTER seconds in. A slow one
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
        if elapsed < _SPLIT_AFTER * 2 / 3:
            return None
        if self._window is None:
            self._window = (elapsed, received)
            return None
        since, then = self._window
        if elapsed < max(_SPLIT_AFTER, since + _SPLIT_AFTER / 3):
            return None
        return max(received / elapsed, (received - then) / max(elapsed - since, 1e-3))


class Batches:
    """Chunks gathered into one ``write(batch, full)`` per batch: the event loop pays one
    thread round trip per batch, not per chunk. A batch is cut before the chunk that would
    take it past its limit (:meth:`Bodies.batch`, read again at every chunk as bodies come
    and go), so it never holds more unless one chunk alone does; a slow one after
    _WRITE_INTERVAL seconds. ``full``: cut at its limit, more following at once (not by
    the clock, nor at the body's end)."""

    __slots__ = ("_bodies", "_count", "_flushed", "_limit", "_most", "_pending", "_write", "size")

    def __init__(
        self, write: Callable[[list[bytes], bool], Awaitable[None]], bodies: Bodies, most: int
    ) -> None:
        self._write = write
        self._bodies, self._most = bodies, most
        self._count, self._limit = -1, most  # the limit, worked out for this many bodies
        self._pending: list[bytes] = []
        self._flushed = time.monotonic()
        self.size = 0  # bytes waiting

    async def add(self, chunk: bytes) -> None:
        # The count is read at every chunk; the limit, a function of it, only worked out
        # again when it moved (Bodies.batch costs more than the rest of a chunk's pacing).
        if (count := self._bodies.count) != self._count:
            self._count, self._limit = count, self._bodies.batch(self._most)
        limit = self._limit
        if self._pending and self.size + len(chunk) > limit:
            await self._cut(True)
        self._pending.append(chunk)
        self.size += len(chunk)
        if self.size >= limit:
            await self._cut(True)
        elif time.monotonic() - self._flushed >= _WRITE_INTERVAL:
            await self._cut(False)

    async def flush(self) -> None:
        """Write what waits: the body ended, broke or stops here."""
        await self._cut(False)

    async def _cut(self, full: bool) -> None:
        self._flushed = time.monotonic()
        if self._pending:
            await self._write(self.take(), full)

    def take(self) -> list[bytes]:
        """The chunks waiting, handed over unwritten."""
        batch, self._pending, self.size = self._pending, [], 0
        return batch
