"""The one retry policy: which failures are worth another attempt, and how long to wait.

Transfers, the token refresh and the catalogue's requests all wait through
:class:`RetryPolicy`: exponential backoff with full jitter, ``Retry-After`` honoured, each
use with its own budget (``retries``, ``backoff``, ``max_backoff``, ``max_retry_after``).
:func:`testing` (or :func:`set_testing`) turns every wait into none, as stamina's
``set_testing`` does, while every decision and attempt count stays the same.

For transfers :meth:`RetryPolicy.delay` decides per error, not per attempt count alone: a
connection reset, a stall, a truncated body, 408/429/5xx retry with backoff; a bad range or
a size/checksum mismatch restarts at once, the latter only once (a server that keeps lying
about a file will not be believed on the third try); a zip that fails its central
directory or CRCs (a zipper stream cut short) retries like a truncated body; a 404 retries
a few times over minutes, because MAAP lists items before their files are ready; other
4xx and auth failures fail the job at once, except a fixed token that no server has taken
yet (see :class:`~stacpull.errors.AuthError`), which backs off.
"""

from __future__ import annotations

import contextlib
import math
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from .errors import (
    AuthError,
    ConnectError,
    CorruptZipError,
    HTTPStatusError,
    RangeError,
    StallError,
    TransferError,
    TruncatedError,
    VerificationError,
)

__all__ = ["RetryPolicy", "set_testing", "testing"]

_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
#: The longest ``Retry-After`` obeyed by default, in seconds: a server asking for more
#: gets this.
_MAX_RETRY_AFTER = 900.0
#: Retries of a file refused to a fixed token no server has taken yet (see AuthError).
_UNPROVEN_TOKEN_RETRIES = 2


class _Switch:
    """Whether waits are removed (:func:`testing`), and the waits skipped meanwhile."""

    def __init__(self) -> None:
        self.on = False
        self.skipped: list[float] = []
        self.lock = threading.Lock()  # the catalogue's requests wait in threads of their own

    def wait(self, seconds: float) -> float:
        if not self.on:
            return seconds
        with self.lock:
            self.skipped.append(seconds)
        return 0.0


_SWITCH = _Switch()


def set_testing(on: bool) -> None:
    """Remove every policy's waits (``on``) or give them back; attempt counts are unchanged."""
    _SWITCH.on = on


@contextlib.contextmanager
def testing(on: bool = True) -> Iterator[list[float]]:
    """:func:`set_testing` for a block, restored after it; yields the waits skipped in it
    (seconds, in the order asked), so a test can see what the policy would have waited."""
    before, skipped = _SWITCH.on, _SWITCH.skipped
    _SWITCH.on, _SWITCH.skipped = on, []
    try:
        yield _SWITCH.skipped
    finally:
        _SWITCH.on, _SWITCH.skipped = before, skipped


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``retries`` extra attempts at most; waits grow ``backoff × 2ⁿ`` up to ``max_backoff``;
    a server's ``Retry-After`` is obeyed up to ``max_retry_after`` seconds.

    A 404 has its own budget: ``not_found_retries`` more attempts, ``not_found_delay × 2ⁿ``
    apart (30 s, 60 s, 120 s by default: a product published a few minutes early arrives).
    """

    retries: int = 5
    backoff: float = 1.0
    max_backoff: float = 60.0
    jitter: bool = True
    not_found_retries: int = 3
    not_found_delay: float = 30.0
    max_retry_after: float = _MAX_RETRY_AFTER

    @property
    def attempts(self) -> int:
        """Attempts in all: the first and its ``retries``."""
        return self.retries + 1

    def wait(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt`` (from 1): the server's
        ``Retry-After`` (at most ``max_retry_after``) when it gave one, else a random
        share of ``backoff × 2^(attempt-1)`` capped at ``max_backoff`` (full jitter)."""
        if retry_after is not None:
            return _SWITCH.wait(min(max(retry_after, 0.0), self.max_retry_after))
        ceiling = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        return _SWITCH.wait(random.uniform(0.0, ceiling) if self.jitter else ceiling)

    def pause(self, retry_after: float | None) -> float | None:
        """Seconds a host's new requests pause for a ``Retry-After`` (None: no pause): what
        :meth:`wait` obeys, so a server asking for days (a date far away, a number too
        long for a float) pauses its host no longer than its files wait; none under
        :func:`testing`, where files do not wait either (not recorded: the file's own
        wait is)."""
        if retry_after is None or math.isnan(retry_after):
            return None
        if _SWITCH.on:
            return 0.0
        return min(max(retry_after, 0.0), self.max_retry_after)

    def delay(self, attempt: int, exc: TransferError) -> float | None:
        """Seconds to wait before attempt ``attempt + 1`` of a transfer, or ``None`` to give up."""
        if isinstance(exc, HTTPStatusError) and exc.status == 404:
            if attempt > self.not_found_retries:
                return None
            return _SWITCH.wait(float(self.not_found_delay * 2 ** (attempt - 1)))
        if attempt > self.retries:
            return None
        # A zipper stream cut short shows as a CorruptZipError: it retries like a cut body.
        if isinstance(exc, VerificationError) and not isinstance(exc, CorruptZipError):
            return 0.0 if attempt == 1 else None
        if isinstance(exc, RangeError):
            return 0.0
        if isinstance(exc, AuthError):
            # A token that works elsewhere: this file is refused. An unproven fixed token
            # gets two more tries while other files tell whether the token is the fault.
            if not exc.unproven or attempt > _UNPROVEN_TOKEN_RETRIES:
                return None
        elif isinstance(exc, HTTPStatusError):
            if exc.status not in _RETRY_STATUSES:
                return None
            return self.wait(attempt, exc.retry_after)
        elif not isinstance(exc, ConnectError | StallError | TruncatedError | CorruptZipError):
            return None
        return self.wait(attempt)
