"""Typed events the engine emits; dashboards and reports are built only from these.

Events are small frozen dataclasses handed to an :data:`EventSink` synchronously. A sink
must be cheap (update counters, ``put_nowait``): it runs on the engine's event loop, in
the transfer's hot path for :class:`BytesReceived`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .models import Job, Outcome, Refusal

__all__ = [
    "BytesReceived",
    "Event",
    "EventSink",
    "HostLimitChanged",
    "JobFinished",
    "JobQueued",
    "JobRefused",
    "RunFinished",
    "RunStarted",
    "RunStopping",
    "SearchProgress",
    "TokenRefreshed",
    "TransferRetried",
    "TransferStarted",
    "fanout",
]


@dataclass(frozen=True, slots=True)
class RunStarted:
    """The run begins: what is searched and where it goes."""

    catalog: str
    collections: tuple[str, ...]
    dest: str
    concurrency: int


@dataclass(frozen=True, slots=True)
class SearchProgress:
    """One more page of search results was read."""

    pages: int
    items: int
    matched: int | None
    done: bool = False
    duplicates: int = 0  # items listed again so far (planned once)


@dataclass(frozen=True, slots=True)
class JobQueued:
    """A planned job entered the queue."""

    job: Job


@dataclass(frozen=True, slots=True)
class JobRefused:
    """Planning refused one asset; nothing is requested for it."""

    refusal: Refusal


@dataclass(frozen=True, slots=True)
class TransferStarted:
    """A response is streaming. ``offset`` > 0 means a resume; ``total`` may be unknown."""

    job: Job
    offset: int
    total: int | None
    attempt: int


@dataclass(frozen=True, slots=True)
class BytesReceived:
    """``n`` more bytes of ``job`` reached disk."""

    job: Job
    n: int


@dataclass(frozen=True, slots=True)
class TransferRetried:
    """An attempt failed and will be retried after ``delay`` seconds."""

    job: Job
    attempt: int
    error: str
    error_class: str
    delay: float
    discarded: int  # bytes thrown away (restart from zero), 0 for a resume


@dataclass(frozen=True, slots=True)
class HostLimitChanged:
    """The window of requests in flight to ``host`` (its connections) changed: ``limit``
    is the window now, ``reason`` why (one of :class:`~stacpull.window.Change`'s: ``ramp``,
    ``ramp undone``, ``ramp kept``, ``probe up``, ``probe down``, ``probe kept``, ``probe
    undone``, ``fewer suffice``, ``cover latency``, ``throttled``, ``ttfb brake``). The
    ``… kept``, ``fewer suffice`` and ``ttfb brake`` reasons keep the window where a step
    put it: the event says the step was judged. ``host`` is the URL's host, without a port."""

    host: str
    limit: int
    reason: str


@dataclass(frozen=True, slots=True)
class RunStopping:
    """A stop was asked for (Ctrl-C, SIGTERM, credentials that stopped working): no new
    transfers; in-flight ones get ``grace`` seconds (``None``: as long as they need), then
    stop with their ``.part`` kept."""

    reason: str
    grace: float | None


@dataclass(frozen=True, slots=True)
class TokenRefreshed:
    """A new access token is in use. ``reason``: ``expiring`` (refreshed ahead of its
    expiry), ``refused`` (a server answered 401), ``first`` or ``file changed``;
    ``expires_in`` in seconds when known. Never carries the token."""

    source: str
    reason: str
    expires_in: float | None


@dataclass(frozen=True, slots=True)
class JobFinished:
    """A job ended: downloaded, skipped or failed."""

    outcome: Outcome


@dataclass(frozen=True, slots=True)
class RunFinished:
    """Every job has ended (or the run was stopped)."""

    seconds: float
    interrupted: bool


Event = (
    RunStarted
    | SearchProgress
    | JobQueued
    | JobRefused
    | TransferStarted
    | BytesReceived
    | TransferRetried
    | HostLimitChanged
    | RunStopping
    | TokenRefreshed
    | JobFinished
    | RunFinished
)
EventSink = Callable[[Event], None]


def fanout(sinks: Sequence[EventSink]) -> EventSink:
    """One sink that hands each event to every one of ``sinks``, in order."""

    def emit(event: Event) -> None:
        for sink in sinks:
            sink(event)

    return emit
