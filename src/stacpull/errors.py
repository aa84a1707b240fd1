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
URLs carry signatures there) and request headers are never formatted. As a second line of
defence every message, and everything any writer puts out (log records, reports, the
event log, the journal, the console), goes through :data:`SECRETS`, the one
:class:`_Scrubber` that knows every secret of the process in every encoding.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import re
import threading
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit, urlunsplit

__all__ = [
    "SECRETS",
    "AuthError",
    "ChecksumMismatchError",
    "ConfigError",
    "ConnectError",
    "CorruptZipError",
    "CredentialsError",
    "HTTPStatusError",
    "PlanError",
    "RangeError",
    "RunAborted",
    "ScrubFilter",
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
    "scrub",
    "scrub_data",
    "scrubbed_logger",
    "url_credentials",
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
    return scrub(urlunsplit((parts.scheme, netloc, parts.path, query, "")))


#: Query keys whose values are credentials (lower-cased, any part of the name):
#: ``token``, ``access_token``, ``X-Amz-Signature``, ``X-Amz-Credential``,
#: ``X-Amz-Security-Token``, Azure's ``sig``, ``api_key``, ``Key-Pair-Id``, ``password``...
_SENSITIVE_QUERY_WORDS = ("token", "secret", "sig", "key", "pass", "pwd", "credential", "auth")


class _Shapes(NamedTuple):
    """Where credentials nobody registered stand in text, found by their place."""

    url_userinfo: re.Pattern[str]
    encoded_userinfo: re.Pattern[str]
    query: re.Pattern[str]
    encoded_query: re.Pattern[str]
    header: re.Pattern[str]
    scheme_value: re.Pattern[str]


@functools.cache
def _shapes() -> _Shapes:
    """The shapes, compiled by the first scrub rather than on import: every command imports
    this module, and ``--help`` scrubs nothing (benchmarks/startup.py)."""
    return _Shapes(
        url_userinfo=re.compile(r"(?i)([a-z][a-z0-9+.\-]*://)([^\s/?#@\"'<>\\]+)@"),
        encoded_userinfo=re.compile(
            r"(?i)([a-z][a-z0-9+.\-]*%3A%2F%2F)"
            r"((?:[^\s/?#@%\"'<>\\]|%(?!2F|3F|23|40)[0-9A-F]{2})+)%40"
        ),
        query=re.compile(r"([?&;]|&amp;)([A-Za-z0-9_.\-\[\]]+)(=)([^&#\s\"'<>\\]*)"),
        encoded_query=re.compile(
            r"(?i)(%3F|%26)([A-Za-z0-9_.\-\[\]]+)(%3D)((?:(?!%26|%23)[^&#\s\"'<>\\])*)"
        ),
        header=re.compile(
            r"(?i)\b((?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)"
            r"(?:(bearer|basic|digest|token|negotiate)\s+)?([^\s\"',;]+)"
        ),
        scheme_value=re.compile(r"(?i)\b(bearer|basic)\s+([A-Za-z0-9\-._~+/%]{8,}=*)"),
    )


def _encodings(secret: str) -> set[str]:
    """The forms ``secret`` takes in text: raw; percent-encoded as URL paths, query values
    and forms encode it (``+`` for a space), in upper- or lower-case hex, and twice;
    JSON-escaped (``\\/`` too, as PHP writes it). Each is looked for as it is: plain
    substring search stays fast with the dozens of long tokens a night of refreshes
    leaves."""
    percent = {quote(secret, safe=safe) for safe in ("", "/", "+/=", "/:@+=", "@:+")} | {
        quote_plus(secret, safe=safe) for safe in ("", "/", "/=")
    }
    percent |= {re.sub("%[0-9A-F]{2}", lambda m: m.group(0).lower(), f) for f in percent}
    forms = {secret, *percent, *(quote(f, safe="") for f in percent if "%" in f)}
    for form in list(forms):
        for ascii_only in (True, False):
            escaped = json.dumps(form, ensure_ascii=ascii_only)[1:-1]
            forms |= {escaped, escaped.replace("/", "\\/")}
    return forms


class _Scrubber:
    """Every secret stacpull knows of, and the one function that takes them out of text.

    Secrets are registered as they become known: at config load (tokens, the client
    secret, a password in the catalogue's or the token endpoint's URL), and each access or
    refresh token the token endpoint hands out. :meth:`scrub` replaces each of them by
    ``***`` in every encoding (raw, percent-encoded in either hex case, form-encoded,
    JSON-escaped, base64 of ``user:password``), then credentials nobody registered by where
    they stand: URL userinfo, the value of a query key naming a token, signature, key,
    password or credential, and an ``Authorization`` header. Thread-safe; values shorter
    than :attr:`MIN_LENGTH` are too common to take out of text everywhere.
    """

    MIN_LENGTH = 8

    def __init__(self) -> None:
        self._known: set[str] = set()
        self._forms: tuple[str, ...] = ()  # every encoding of every secret, longest first
        self._lock = threading.Lock()

    def add(self, secret: str) -> None:
        """Take ``secret`` out of every text from now on; the parts of a secret with spaces
        in it as well (a line wrapped at a space must not show half of it)."""
        if len(secret) < self.MIN_LENGTH or secret in self._known:
            return
        with self._lock:
            self._known.add(secret)
            self._forms = _ordered({*self._forms, *_all_forms({secret}, self.MIN_LENGTH)})

    def add_pair(self, user: str, password: str) -> None:
        """``password`` and the HTTP Basic forms of ``user:password`` (as aiohttp sends it,
        and form-encoded first, as OAuth clients send ``client_id:client_secret``)."""
        self.add(password)
        if not password:
            return
        for u, p in ((user, password), (quote_plus(user), quote_plus(password))):
            self.add(f"{u}:{p}")  # a server's echo of a password too short to scrub alone
            raw = f"{u}:{p}".encode()
            for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
                self.add(encoded.decode().rstrip("="))

    def add_url(self, url: str) -> None:
        """The credentials a URL carries: its userinfo, and the values of its sensitive
        query keys (the URL itself stays usable: only its printed forms are scrubbed)."""
        user, password = _userinfo(url)
        if password:
            self.add_pair(user, password)
        for value in url_credentials(url):
            self.add(value)

    def scrub(self, text: str, *, shapes: bool = True, also: tuple[str, ...] = ()) -> str:
        """``text`` with every known secret, in every encoding, replaced by ``***``; with
        ``shapes``, credentials found by their place (userinfo, query keys, headers) too.
        ``also`` adds secrets for this text only: a server's words about one request are
        scrubbed of that request's own credentials (see :func:`url_credentials`)."""
        text = _replace(text, self._forms)
        if also:
            text = _replace(text, _ordered(_all_forms(set(also), self.MIN_LENGTH)))
        if not shapes:
            return text
        found = _shapes()
        if "@" in text or "%40" in text:
            text = found.url_userinfo.sub(r"\1***@", text)
            text = found.encoded_userinfo.sub(r"\1***%40", text)
        if "=" in text:
            text = found.query.sub(_query_value, text)
        if "%3D" in text or "%3d" in text:
            text = found.encoded_query.sub(_query_value, text)
        lower = text.lower()
        if "authorization" in lower:
            text = found.header.sub(
                lambda m: m.group(1) + (f"{m.group(2)} " if m.group(2) else "") + "***", text
            )
        if "bearer" in lower or "basic" in lower:
            text = found.scheme_value.sub(_scheme_value, text)
        return text


def _all_forms(secrets: set[str], shortest: int) -> set[str]:
    parts = {p for s in secrets for p in s.split() if len(p) >= shortest}
    return {f for s in secrets | parts if len(s) >= shortest for f in _encodings(s)}


def _ordered(forms: set[str]) -> tuple[str, ...]:
    return tuple(sorted(forms, key=len, reverse=True))


def _replace(text: str, forms: tuple[str, ...]) -> str:
    for form in forms:
        if form in text:
            text = text.replace(form, "***")
    return text


def _userinfo(url: str) -> tuple[str, str]:
    try:
        parts = urlsplit(url)
        return unquote(parts.username or ""), unquote(parts.password or "")
    except ValueError:
        return "", ""


def url_credentials(url: str) -> tuple[str, ...]:
    """The credentials ``url`` carries, decoded: its userinfo's password and the values of
    its sensitive query keys (``token``, ``X-Amz-Signature``, ``sig``...)."""
    password = _userinfo(url)[1]
    try:
        query = parse_qsl(urlsplit(url).query)
    except ValueError:
        query = []
    values = [v for k, v in query if _sensitive(k)]
    return tuple(v for v in (password, *values) if v)


def _sensitive(key: str) -> bool:
    name = key.lower()
    return any(word in name for word in _SENSITIVE_QUERY_WORDS)


def _query_value(m: re.Match[str]) -> str:
    if not m.group(4) or m.group(4) == "***" or not _sensitive(m.group(2)):
        return m.group(0)
    return f"{m.group(1)}{m.group(2)}{m.group(3)}***"


def _scheme_value(m: re.Match[str]) -> str:
    value = m.group(2)
    if value == "***" or not re.search(r"[0-9+/=%._~-]", value):
        return m.group(0)  # an English word after "basic", not a credential
    return f"{m.group(1)} ***"


#: The process's one scrubber: every writer of output applies it.
SECRETS = _Scrubber()


def scrub(text: str) -> str:
    """``text`` without any secret (see :class:`_Scrubber`): for every writer of output."""
    return SECRETS.scrub(text)


def scrub_data(value: Any) -> Any:
    """``value`` for ``json.dumps`` with every string in it (keys too) scrubbed, and any
    other object written as its scrubbed ``str``, for writers of JSON: scrubbing the JSON
    text instead can cut an escaped quote (``Authorization: \\"x\\"``) in half and leave
    text that is no JSON any more."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {scrub_data(k): scrub_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_data(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return scrub(str(value))  # what json.dumps(default=str) would write (a Path, a date)


class ScrubFilter(logging.Filter):
    """Takes every secret out of a log record, whatever put it there: set on stacpull's
    loggers (so every handler, the caller's too, gets clean records) and on the
    ``--debug`` handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = scrub(record.getMessage()), None
        if record.exc_info:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def scrubbed_logger(name: str) -> logging.Logger:
    """The logger ``name`` with one :class:`ScrubFilter` on it, however many modules ask
    (the transfer's modules share ``stacpull.fetch``; a second filter would scrub each
    record twice)."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, ScrubFilter) for f in logger.filters):
        logger.addFilter(ScrubFilter())
    return logger


class RunAborted(Exception):
    """The caller's own code (a sink) asked the run to stop, as a Ctrl-C would: the run ends
    and is recorded as aborted rather than stopped. The API raises it for a sink's
    KeyboardInterrupt or SystemExit, which a worker thread's loop could not carry."""


class StacpullError(Exception):
    """Base class of every error stacpull raises on purpose; its message is scrubbed."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(scrub(a) if isinstance(a, str) else a for a in args))


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
        self.reason = scrub(message)


class HTTPStatusError(TransferError):
    """The server answered a status the transfer cannot use."""

    def __init__(
        self, message: str, *, url: str = "", status: int, retry_after: float | None = None
    ) -> None:
        super().__init__(message, url=url)
        self.status = status
        self.retry_after = retry_after


class AuthError(HTTPStatusError):
    """The server refused our credentials, or sent a login page instead of data.

    ``unproven``: a fixed token no server has served a file for yet was refused. The file
    is retried after a backoff instead of failed, while other files tell whether the token
    itself is refused (then the run stops, this file pending) or only this file.
    """

    def __init__(
        self,
        message: str,
        *,
        url: str = "",
        status: int,
        retry_after: float | None = None,
        unproven: bool = False,
    ) -> None:
        super().__init__(message, url=url, status=status, retry_after=retry_after)
        self.unproven = unproven


class ConnectError(TransferError):
    """The connection could not be made or was lost mid-transfer. ``refused``: the host
    refused it (nothing listening, or its accept queue full): a sign of overload the
    per-host window hears, as it hears 429 and 503."""

    def __init__(self, message: str, *, url: str = "", refused: bool = False) -> None:
        super().__init__(message, url=url)
        self.refused = refused


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
