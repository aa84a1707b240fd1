"""The retry policy: which failures are worth another attempt, and how long to wait.

Decided per error, not per attempt count alone: a connection reset, a stall, a truncated
body, 408/429/5xx retry with exponential backoff and full jitter (honouring
``Retry-After``); a bad range or a size/checksum mismatch restarts at once, the latter
only once (a server that keeps lying about a file will not be believed on the third try);
a zip that fails its central directory or CRCs (a zipper stream cut short) retries like a
truncated body;
a 404 retries a few times over minutes, because MAAP lists items before their files are
ready; other 4xx and auth failures fail the job at once, except a fixed token that no
server has taken yet (see :class:`~stacpull.errors.AuthError`), which backs off.
"""

from __future__ import annotations

import random
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

__all__ = ["RETRY_STATUSES", "RetryPolicy"]

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
MAX_RETRY_AFTER = 900.0
#: Retries of a file refused to a fixed token no server has taken yet (see AuthError).
UNPROVEN_TOKEN_RETRIES = 2


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``retries`` extra attempts at most; waits grow ``backoff × 2ⁿ`` up to ``max_backoff``.

    A 404 has its own budget: ``not_found_retries`` more attempts, ``not_found_delay × 2ⁿ``
    apart (30 s, 60 s, 120 s by default: a product published a few minutes early arrives).
    """

    retries: int = 5
    backoff: float = 1.0
    max_backoff: float = 60.0
    jitter: bool = True
    not_found_retries: int = 3
    not_found_delay: float = 30.0

    def delay(self, attempt: int, exc: TransferError) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or ``None`` to give up."""
        if isinstance(exc, HTTPStatusError) and exc.status == 404:
            if attempt > self.not_found_retries:
                return None
            return float(self.not_found_delay * 2 ** (attempt - 1))
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
            if not exc.unproven or attempt > UNPROVEN_TOKEN_RETRIES:
                return None
        elif isinstance(exc, HTTPStatusError):
            if exc.status not in RETRY_STATUSES:
                return None
            if exc.retry_after is not None:
                return min(exc.retry_after, MAX_RETRY_AFTER)
        elif not isinstance(exc, ConnectError | StallError | TruncatedError | CorruptZipError):
            return None
        ceiling = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        return random.uniform(0.0, ceiling) if self.jitter else ceiling
