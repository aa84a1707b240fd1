"""How a body's chunks are paced: gathered into write batches (:class:`Batches`), held
to the least speed (:class:`SpeedFloor`), and measured once for a split
(:class:`SplitProbe`). Shared by the single stream and the ranges."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from ..errors import StallError

if TYPE_CHECKING:
    from .context import FetchContext

__all__ = ["Batches", "SpeedFloor", "SplitProbe"]


#: Seconds a single stream runs before it may be split into ranges: long enough that a
#: fast stream has shown its speed (loopback, a LAN), short enough that a capped one has
#: not wasted much time alone (0.3 s made the MAAP WAN row 0.1 s slower). A wide-area
#: stream still in TCP slow start may look slow and be split too: the parallel ranges
#: then ramp up together, which does no harm.
_SPLIT_AFTER = 0.15


#: A stream that trickles in still reaches the disk every _WRITE_INTERVAL seconds (a kill
#: loses at most that much); a fast one is written every ``download.chunk_size`` bytes, and
#: a broken one writes what it received before the error is raised.
_WRITE_INTERVAL = 0.25


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
    """Chunks gathered into one ``write`` every ``limit`` bytes or _WRITE_INTERVAL seconds:
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
        if self.size >= self._limit or time.monotonic() - self._flushed >= _WRITE_INTERVAL:
            await self.flush()

    async def flush(self) -> None:
        self._flushed = time.monotonic()
        if self._pending:
            await self._write(self.take())

    def take(self) -> list[bytes]:
        """The chunks waiting, handed over unwritten."""
        batch, self._pending, self.size = self._pending, [], 0
        return batch
