"""The whole exception tree of stacpull.

Every error the engine raises is a :class:`StacpullError`; third-party exceptions
(aiohttp, pystac-client, OSError) are translated at one boundary each, with
``raise ... from exc``, so callers only ever catch what is drawn here::

    StacpullError
    ├── ConfigError              a bad flag, environment variable or config file (exit 2)
    ├── SearchError              the catalogue could not be searched (exit 2)
    ├── PlanError                an asset cannot be planned; the job is refused, the run goes on
    │   └── UnsafePathError      a destination that would escape DEST or is not a safe name
    ├── TransferError            one transfer failed; carries ``url`` (query string redacted)
    │   ├── HTTPStatusError      an unexpected status; carries ``status`` and ``retry_after``
    │   │   └── AuthError        401/403, or a login page served instead of the data
    │   ├── ConnectError         connection refused/reset, DNS failure, TLS failure
    │   ├── StallError           no byte arrived for ``stall_timeout`` seconds
    │   ├── TruncatedError       the body ended before the announced length
    │   ├── RangeError           a ``Content-Range`` that does not match what was asked
    │   ├── TooLargeError        one file needs more than DEST's free space: it fails alone
    │   └── VerificationError    the bytes are not the advertised bytes
    │       ├── SizeMismatchError
    │       ├── ChecksumMismatchError
    │       └── CorruptZipError
    ├── StorageError             DEST cannot be written (disk full, permissions): stops the run
    └── CredentialsError         no access token can be had any more (offline token revoked,
                                 token endpoint down): no new request; the run stops resumable

Messages never contain a token: URLs are shown without their query string (presigned
URLs carry signatures there) and request headers are never formatted.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "AuthError",
    "ChecksumMismatchError",
    "ConfigError",
    "ConnectError",
    "CorruptZipError",
    "CredentialsError",
    "HTTPStatusError",
    "PlanError",
    "RangeError",
    "SearchError",
    "SizeMismatchError",
    "StacpullError",
    "StallError",
    "StorageError",
    "TooLargeError",
    "TransferError",
    "TruncatedError",
    "UnsafePathError",
    "VerificationError",
    "first_error",
    "redact_url",
]


def redact_url(url: str) -> str:
    """Return ``url`` without user info and query string, safe to print or log."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    query = "…" if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


class StacpullError(Exception):
    """Base class of every error stacpull raises on purpose."""


class ConfigError(StacpullError):
    """A configuration value is missing or invalid; the message names the key."""


class SearchError(StacpullError):
    """The STAC API could not be searched: unreachable, or it answered an error."""


class PlanError(StacpullError):
    """One asset of one item cannot be turned into a download job."""

    def __init__(self, message: str, *, item_id: str = "", asset_key: str = "") -> None:
        super().__init__(message)
        self.item_id = item_id
        self.asset_key = asset_key


class UnsafePathError(PlanError):
    """A destination path from STAC metadata would escape DEST or is not a safe name."""


class TransferError(StacpullError):
    """One transfer failed. ``url`` is already redacted."""

    def __init__(self, message: str, *, url: str = "") -> None:
        self.url = redact_url(url) if url else ""
        super().__init__(f"{message} ({self.url})" if self.url else message)
        self.reason = message


class HTTPStatusError(TransferError):
    """The server answered a status the transfer cannot use."""

    def __init__(
        self, message: str, *, url: str = "", status: int, retry_after: float | None = None
    ) -> None:
        super().__init__(message, url=url)
        self.status = status
        self.retry_after = retry_after


class AuthError(HTTPStatusError):
    """The server refused our credentials, or sent a login page instead of data."""


class ConnectError(TransferError):
    """The connection could not be made or was lost mid-transfer."""


class StallError(TransferError):
    """No byte arrived within the stall timeout; the transfer is aborted and retried."""


class TruncatedError(TransferError):
    """The body ended before the length the server announced."""


class RangeError(TransferError):
    """The server answered a range we did not ask for."""


class TooLargeError(TransferError):
    """One file announces more bytes than DEST has free at all (a lying ``file:size`` or
    ``Content-Length``): that file fails with the figures; the run goes on."""


class VerificationError(TransferError):
    """The downloaded bytes are not the bytes the catalogue or server advertised."""


class SizeMismatchError(VerificationError):
    """The file's size differs from ``file:size`` or ``Content-Length``."""


class ChecksumMismatchError(VerificationError):
    """The file's digest differs from its ``file:checksum``."""


class CorruptZipError(VerificationError):
    """A zip (product or KMZ) whose central directory or member CRCs are wrong."""


class StorageError(StacpullError):
    """DEST cannot be written: the run stops, partial files are kept for resume."""


class CredentialsError(StacpullError):
    """No access token can be obtained: the offline token was refused (revoked, expired,
    wrong client) or the token endpoint kept failing. The message says what to do; the run
    stops starting requests and stays resumable."""


def first_error(exc: BaseException) -> BaseException:
    """The most meaningful exception inside (possibly nested) exception groups.

    A task group wraps what its tasks raise; callers want the disk-full or search error,
    not the group: :class:`StorageError` first, then :class:`SearchError`, then any of ours.
    """
    if isinstance(exc, BaseExceptionGroup):
        inner = [first_error(e) for e in exc.exceptions]
        for kind in (StorageError, CredentialsError, SearchError, StacpullError):
            for e in inner:
                if isinstance(e, kind):
                    return e
        return inner[0]
    return exc
