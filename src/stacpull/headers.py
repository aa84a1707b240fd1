"""Pure HTTP header arithmetic: ``Range``, ``Content-Range``, ``If-Range``, ``Retry-After``.

Kept free of I/O so property tests can hammer it; :mod:`stacpull.transfer.http` and the
simulated server both use it, so client and server agree on the edge cases.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

__all__ = [
    "ContentRange",
    "Validators",
    "format_http_date",
    "parse_content_range",
    "parse_range",
    "parse_retry_after",
    "parse_unsatisfied_range",
    "range_header",
    "shown",
]

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_UNSATISFIED = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$", re.IGNORECASE)
_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ContentRange:
    """A parsed ``Content-Range: bytes first-last/total`` (``total`` None for ``*``)."""

    first: int
    last: int
    total: int | None

    @property
    def length(self) -> int:
        """Bytes in this part."""
        return self.last - self.first + 1


@dataclass(frozen=True, slots=True)
class Validators:
    """The ``ETag`` and ``Last-Modified`` of one response: which version of a file its
    bytes are. The one rule for resuming lives here: bytes of two responses may be joined
    only when :meth:`same` says they are of one version."""

    etag: str | None = None
    last_modified: str | None = None

    @classmethod
    def of(cls, headers: Mapping[str, str]) -> Validators:
        """The validators a response's headers carry. One with bytes that are not UTF-8
        (aiohttp hands them over as lone surrogates) counts as absent: it could be neither
        journalled nor shown, so those bytes are simply not resumed."""
        return cls(_text(headers.get("ETag")), _text(headers.get("Last-Modified")))

    @classmethod
    def from_if_range(cls, value: str) -> Validators:
        """An ``If-Range`` value (from :attr:`if_range`) back as the validator it is: an
        entity tag is quoted (``"x"``, ``W/"x"``), a date is not."""
        if value.startswith(('"', "W/")):
            return cls(etag=value)
        return cls(last_modified=value)

    @property
    def if_range(self) -> str | None:
        """What ``If-Range`` may carry: a strong ETag, else Last-Modified (a weak ETag
        cannot be used there, RFC 9110 §13.1.5); None when the bytes cannot be resumed."""
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        return self.last_modified

    def same(self, other: Validators) -> bool:
        """Whether ``other`` (a range's response) is of the version these validators name:
        it carries the validator a resume would send in ``If-Range``, unchanged, and no
        validator they both carry differs. A server that ignores ``If-Range`` and sends
        the new version's range fails this, so its bytes are never spliced onto the old."""
        mine = self.if_range
        if mine is None or mine != (other.etag if mine == self.etag else other.last_modified):
            return False
        pairs = ((self.etag, other.etag), (self.last_modified, other.last_modified))
        return all(a is None or b is None or a == b for a, b in pairs)


def _text(value: str | None) -> str | None:
    """``value`` when it is non-empty text every writer accepts, else None."""
    if not value:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value


def shown(value: str) -> str:
    """A header's ``value`` as text every writer accepts: bytes that were not UTF-8 (lone
    surrogates, from aiohttp's surrogateescape) become ``\\udc..`` escapes."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def range_header(offset: int, last: int | None = None) -> str:
    """The ``Range`` value asking for everything from ``offset`` on, or up to byte
    ``last`` (inclusive, as HTTP counts)."""
    if offset < 0 or (last is not None and last < offset):
        raise ValueError("expected 0 ≤ offset ≤ last")
    return f"bytes={offset}-" if last is None else f"bytes={offset}-{last}"


def parse_content_range(value: str) -> ContentRange:
    """Parse a 206's ``Content-Range``; ``ValueError`` if malformed or inconsistent."""
    m = _CONTENT_RANGE.match(value)
    if not m:
        raise ValueError(f"malformed Content-Range {value!r}")
    first, last = int(m.group(1)), int(m.group(2))
    total = None if m.group(3) == "*" else int(m.group(3))
    if last < first or (total is not None and last >= total):
        raise ValueError(f"inconsistent Content-Range {value!r}")
    return ContentRange(first, last, total)


def parse_unsatisfied_range(value: str) -> int | None:
    """The total length from a 416's ``Content-Range: bytes */N``, if present."""
    m = _UNSATISFIED.match(value or "")
    return int(m.group(1)) if m else None


def parse_range(value: str, size: int) -> tuple[int, int] | None:
    """Server side: resolve a single ``Range`` against ``size`` → (first, last) inclusive.

    Returns ``None`` for a header the server should ignore (malformed or multi-range: a
    full 200 is then correct), raises ``ValueError`` when unsatisfiable (416).
    """
    m = _RANGE.match(value)
    if not m or (not m.group(1) and not m.group(2)):
        return None
    if m.group(1):
        first = int(m.group(1))
        last = int(m.group(2)) if m.group(2) else size - 1
        if m.group(2) and last < first:
            return None
        if first >= size:
            raise ValueError("range not satisfiable")
        return first, min(last, size - 1)
    suffix = int(m.group(2))
    if suffix == 0:
        raise ValueError("range not satisfiable")
    return max(size - suffix, 0), size - 1


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` (delta-seconds or HTTP date), or ``None``."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def format_http_date(timestamp: float) -> str:
    """An IMF-fixdate (``Sun, 06 Nov 1994 08:49:37 GMT``) for ``timestamp``."""
    return format_datetime(datetime.fromtimestamp(int(timestamp), tz=UTC), usegmt=True)
