"""What every transfer of a run shares (:class:`FetchContext`): the session, DEST, the
journal, tokens and trust, limits and budgets, and the download settings. One file's own
state is a :class:`~.state.Transfer`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.lowlevel

from ..defaults import DEFAULT_CHUNK_SIZE, DEFAULT_SEGMENT_BELOW, DEFAULT_SEGMENT_SIZE
from ..events import EventSink
from ..journal import TransferJournal
from ..limits import HostLimiter, TokenBucket
from ..retry import RetryPolicy
from ..tokens import StaticTokenProvider, TokenProvider
from ..trust import TrustPolicy
from ..verify import DEFAULT_RECORD_HASH, Multihash, record_hash
from .http import Session
from .pace import Bodies
from .skip import Looks
from .space import SpaceBudget

__all__ = ["FetchContext"]


@dataclass(slots=True)
class FetchContext:
    """What every transfer of a run shares."""

    session: Session
    root: Path  # DEST, resolved
    journal: TransferJournal  # DEST's journal, or a cluster worker's bucket router
    tokens: TokenProvider
    trust: TrustPolicy
    emit: EventSink
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    chunk_size: int = DEFAULT_CHUNK_SIZE  # bytes received per write (and hash update)
    #: The bodies streaming at once, files and ranges: each one's write batch shrinks as
    #: they grow in number (``chunk_size`` at most), keeping their memory bounded.
    bodies: Bodies = field(default_factory=Bodies)
    #: Waits between attempts; the engine's version gives up the transfer slot meanwhile.
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep
    #: Called once an attempt's bytes have all arrived: what is left (the checks, fsync,
    #: rename, journal write) is local work, and the engine gives the job's transfer slot
    #: to the next file meanwhile. ``sleep`` takes a slot again before a retry.
    unwire: Callable[[], None] = lambda: None
    #: Takes the job's transfer slot again after :attr:`unwire` gave it back: a job whose
    #: host has no slot free (a small window, a ``Retry-After`` pause) waits for one
    #: without a transfer slot, so one host's wait holds up no other host's files.
    rewire: Callable[[], Awaitable[None]] = anyio.lowlevel.checkpoint
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
    looks: Looks = field(default_factory=lambda: Looks())
    #: The run's bandwidth, shared by every transfer and range (``download.bwlimit``).
    bandwidth: TokenBucket | None = None
    #: The user's extra headers (``--header``), for the hosts trusted with the token only
    #: (every host with ``header_all_hosts``; an Authorization header never leaves them).
    headers: tuple[tuple[str, str], ...] = ()
    header_all_hosts: bool = False

    @property
    def fixed_tokens(self) -> StaticTokenProvider | None:
        """The token provider when it holds a fixed token (nothing can refresh it)."""
        return self.tokens if isinstance(self.tokens, StaticTokenProvider) else None
