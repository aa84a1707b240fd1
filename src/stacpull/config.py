"""Configuration: frozen dataclasses, TOML loading and validation.

Values come, highest first, from command-line flags, the environment
(``STACPULL_<SECTION>_<KEY>`` for every key, generated from the dataclasses below, and the
short names of :data:`ENV_KEYS`), a profile, the config files and the ``DEFAULT_*``
constants. The config files layer, each over the one before: the user's own
(``$XDG_CONFIG_HOME/stacpull/stacpull.toml`` or the platform's place for it, see
:func:`user_config_file`), ``./stacpull.toml``, then ``--config FILE`` (or
``$STACPULL_CONFIG``). ``config.example.toml`` documents every key. Every invalid value
raises :class:`~stacpull.errors.ConfigError` naming the key (and the file and line, or the
environment variable), never a traceback.
"""

from __future__ import annotations

import json
import math
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import SECRETS, ConfigError, scrub
from .hashes import DEFAULT_RECORD_HASH, MULTIHASH_NAMES

__all__ = [
    "BUILTIN_PROFILES",
    "DEFAULT_ASSETS",
    "DEFAULT_CATALOG",
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_TEMPLATE",
    "DEFAULT_TOKEN_URL",
    "ENV_KEYS",
    "ENV_PREFIX",
    "AuthConfig",
    "Config",
    "DownloadConfig",
    "OutputConfig",
    "SearchConfig",
    "Secret",
    "config_files",
    "env_variables",
    "load_config",
    "parse_bbox",
    "parse_datetime_range",
    "parse_duration",
    "parse_headers",
    "parse_size",
    "resolve_config",
    "scrub",
    "user_config_file",
]

DEFAULT_CATALOG = "https://catalog.maap.eo.esa.int/catalogue/"
DEFAULT_PAGE_SIZE = 100
_MAX_PAGE_SIZE = 10_000  # what pystac-client (and most STAC APIs) accept as a limit
_MAX_CONNECTIONS = 4096  # concurrency, per_host, segments: each one a task or a socket
DEFAULT_SEARCH_TIMEOUT = 60.0
DEFAULT_ASSETS = ("maap",)
DEFAULT_CONCURRENCY = 8
DEFAULT_PER_HOST = 8
DEFAULT_TEMPLATE = "{collection}/{item}/{name}"
DEFAULT_CHUNK_SIZE = 4 << 20
DEFAULT_SEGMENT_SIZE = 8 << 20
DEFAULT_SEGMENT_BELOW = 50_000_000
DEFAULT_STALL_TIMEOUT = 60.0
#: Bytes/s a transfer must average over each ``stall_timeout`` window (0: no floor).
DEFAULT_MIN_SPEED = 1024
DEFAULT_CONNECT_TIMEOUT = 30.0
DEFAULT_RETRIES = 5
DEFAULT_BACKOFF = 1.0
DEFAULT_MAX_BACKOFF = 60.0
DEFAULT_NOT_FOUND_RETRIES = 3
DEFAULT_NOT_FOUND_DELAY = 30.0
DEFAULT_MIN_FREE = 100_000_000
DEFAULT_TOKEN_FILE = "token.txt"
#: MAAP's OIDC token endpoint, where an offline token is exchanged for access tokens.
DEFAULT_TOKEN_URL = "https://iam.maap.eo.esa.int/realms/esa-maap/protocol/openid-connect/token"
#: The public client MAAP's notebooks use for that exchange (its secret is published there).
DEFAULT_CLIENT_ID = "offline-token"
DEFAULT_CLIENT_SECRET = "p1eL7uonXs6MDxtGbgKdPVRAmnGxHpVE"
DEFAULT_SCOPE = "offline_access openid"
DEFAULT_REFRESH_MARGIN = 60.0
DEFAULT_PROGRESS_INTERVAL = 5.0

#: Every config key ``[section] key`` is also the variable ``STACPULL_SECTION_KEY``.
ENV_PREFIX = "STACPULL_"

#: Short names kept beside the generated ``STACPULL_<SECTION>_<KEY>`` ones (which win when
#: both are set), and the config key each one sets.
ENV_KEYS: Mapping[str, str] = {
    "STACPULL_CATALOG": "search.catalog",
    "STACPULL_DEST": "download.dest",
    "STACPULL_CONCURRENCY": "download.concurrency",
    "STACPULL_TOKEN": "auth.token",
    "STACPULL_TOKEN_FILE": "auth.token_file",
    "STACPULL_OFFLINE_TOKEN": "auth.offline_token",
    "STACPULL_OFFLINE_TOKEN_FILE": "auth.offline_token_file",
    "STACPULL_TOKEN_URL": "auth.token_url",
    "STACPULL_CLIENT_ID": "auth.client_id",
    "STACPULL_CLIENT_SECRET": "auth.client_secret",
}

#: Keys holding secrets: never accepted from a config file (except the public client
#: secret), always wrapped in :class:`Secret`.
_SECRET_KEYS = frozenset({"auth.token", "auth.offline_token", "auth.client_secret"})


class Secret:
    """A string that never shows itself in ``repr``, ``str`` or f-strings.

    Every secret of the process is also registered with the one scrubber
    (:data:`~stacpull.errors.SECRETS`), so :func:`scrub` can take it out of text that came
    from elsewhere (a server's error message, a debug log line), in any encoding.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        SECRETS.add(value)

    def reveal(self) -> str:
        """The secret itself: call only where it goes on the wire."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def parse_bbox(value: str | list[Any] | tuple[Any, ...], key: str = "bbox") -> tuple[float, ...]:
    """Parse ``W,S,E,N`` (or six numbers with heights) and check the ranges."""
    raw = value.split(",") if isinstance(value, str) else list(value)
    try:
        nums = tuple(float(x) for x in raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: expected W,S,E,N numbers, got {value!r}") from None
    if len(nums) not in (4, 6):
        raise ConfigError(f"{key}: expected 4 numbers W,S,E,N (or 6 with heights), got {len(nums)}")
    half = len(nums) // 2
    w, s, e, n = nums[0], nums[1], nums[half], nums[half + 1]
    if not all(-180.0 <= x <= 180.0 for x in (w, e)):
        raise ConfigError(f"{key}: longitudes must lie in [-180, 180], got {w} and {e}")
    if not all(-90.0 <= x <= 90.0 for x in (s, n)):
        raise ConfigError(f"{key}: latitudes must lie in [-90, 90], got {s} and {n}")
    if s > n:
        raise ConfigError(f"{key}: south ({s}) is north of north ({n})")
    return nums


#: What pystac-client takes for one end of a datetime: a year, a month, a day, or a
#: date-time; stacpull also takes a space for ``T``, minutes without seconds and
#: ``+HHMM``/``+HH`` offsets, and rewrites them into the form pystac-client accepts.
_INSTANT = re.compile(
    r"(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:[Tt ](?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?P<fraction>\.\d+)?)?"
    r"\s*(?P<tz>[Zz]|[-+]\d{2}(?::?\d{2})?)?)?)?)?"
)


def _parse_instant(text: str, key: str) -> tuple[str, datetime, datetime]:
    """One end of a datetime → (its canonical text, the first and the last instant it
    covers, in UTC). ``2025-09`` covers the whole month, as pystac-client expands it."""
    match = _INSTANT.fullmatch(text.strip())
    if match is None:
        raise ConfigError(
            f"{key}: {text!r} is not a date or date-time (e.g. 2025, 2025-09, 2025-09-29, "
            "2025-09-29T00:12:00Z or 2025-09-29 00:12:00)"
        )
    g = match.groupdict()
    year, month, day = int(g["year"]), int(g["month"] or 1), int(g["day"] or 1)
    try:
        if g["hour"] is None:
            first = datetime(year, month, day, tzinfo=UTC)
            if g["day"] is not None:
                after = first + timedelta(days=1)
            elif g["month"] is not None:
                after = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
            else:
                after = datetime(year + 1, 1, 1, tzinfo=UTC)
            return match.group(0), first, after - timedelta(seconds=1)
        tz = g["tz"] or "Z"
        if tz not in ("Z", "z"):
            digits = tz[1:].replace(":", "")
            tz = f"{tz[0]}{digits[:2]}:{digits[2:] or '00'}"
        canonical = (
            f"{g['year']}-{g['month']}-{g['day']}T{g['hour']}:{g['minute']}:"
            f"{g['second'] or '00'}{g['fraction'] or ''}{tz.upper()}"
        )
        stamp = datetime.fromisoformat(canonical.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError as exc:
        raise ConfigError(f"{key}: {text!r} is not a valid date ({exc})") from None
    return canonical, stamp, stamp


def parse_datetime_range(value: str, key: str = "datetime") -> str:
    """Validate a STAC datetime: an instant (``2025``, ``2025-09``, ``2025-09-29``, a
    date-time), or ``START/END`` with ``..`` or empty open ends. Returns it in the form
    pystac-client and STAC servers accept (``T`` between date and time, seconds, an offset:
    ``Z`` when none was given), so a value that passes here never fails the search."""
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected a string such as 2025-09-29/2025-09-30, got {value!r}")
    text = value.strip()
    if not text:
        raise ConfigError(f"{key}: empty datetime")
    parts = [p.strip() for p in text.split("/")]
    if len(parts) > 2:
        raise ConfigError(f"{key}: expected START/END, got {value!r}")
    ends = [None if p in ("", "..") else _parse_instant(p, key) for p in parts]
    if len(parts) == 2:
        start, end = ends
        if start is None and end is None:
            raise ConfigError(f"{key}: both ends are open in {value!r}")
        if start is not None and end is not None and start[1] > end[2]:
            raise ConfigError(f"{key}: start {parts[0]} is after end {parts[1]}")
        return "/".join(".." if e is None else e[0] for e in ends)
    if ends[0] is None:
        raise ConfigError(f"{key}: {value!r} is not a date-time")
    return ends[0][0]


#: The placeholders of ``download.template``.
TEMPLATE_FIELDS = ("collection", "item", "key", "name", "year", "month", "day")


def check_template(template: str, key: str = "download.template") -> None:
    """Refuse a destination template that is not valid or whose fixed parts leave DEST
    (``../{name}``, ``/abs/{name}``, ``{collection}/../../x``) or enter stacpull's own
    ``.stacpull``: up front, before any search. What the placeholders bring (ids, names
    from the metadata) is checked file by file when the run plans them."""
    sample = dict.fromkeys(TEMPLATE_FIELDS, "x")
    try:
        rendered = template.format(**sample)
    except (KeyError, IndexError, ValueError, AttributeError, TypeError) as exc:
        raise ConfigError(
            f"{key}: {template!r} is not a valid template ({type(exc).__name__}: {exc}); "
            f"fields: {', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)}"
        ) from None
    if rendered.startswith(("/", "~")) or re.match(r"[A-Za-z]:", rendered):
        raise ConfigError(f"{key}: {template!r} starts at / or ~; it must stay inside DEST")
    if "\\" in rendered or any(ord(c) < 32 for c in rendered):
        raise ConfigError(f"{key}: {template!r} holds a backslash or a control character")
    parts = rendered.split("/")
    if ".." in parts:
        raise ConfigError(f"{key}: {template!r} climbs out of DEST with '..'")
    if any(p.casefold() == ".stacpull" for p in parts):
        raise ConfigError(f"{key}: {template!r} writes into stacpull's own .stacpull directory")


def _positive_int(name: str, value: int, most: int | None = None) -> None:
    """A count ≥ 1 and, with ``most``, at most that (a worker or a connection each: 1e20 of
    them is a hang, not a setting)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}: expected a positive integer, got {value!r}")
    if most is not None and value > most:
        raise ConfigError(f"{name}: expected an integer from 1 to {most}, got {value!r}")


def _positive_float(name: str, value: float) -> None:
    # nan passes `<= 0` and disables every timer it reaches (or crashes anyio's deadline);
    # inf makes a wait endless: neither is a time a run can use.
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(f"{name}: expected a positive number, got {value!r}")


#: Field metadata of a time-valued key: it takes ``500ms``, ``30s``, ``2m``, ``1h30m`` or seconds.
_DURATION: Mapping[str, str] = {"unit": "duration"}

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h|d)")
_DURATION_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: str | float, key: str = "duration") -> float:
    """``"500ms"``, ``"30s"``, ``"2m"``, ``"1h30m"`` or a plain number of seconds → seconds.
    ``nan``, ``inf`` and numbers too large for a float (``1e400``) are refused: float()
    takes them, but no timer can."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds: float | None = float(value)
    else:
        text = str(value).strip().lower().replace(" ", "")
        try:
            seconds = float(text)
        except ValueError:
            parts = _DURATION_PART.findall(text)
            seconds = None
            if text and "".join(n + u for n, u in parts) == text:
                seconds = sum(float(n) * _DURATION_SECONDS[u] for n, u in parts)
    if seconds is None or not math.isfinite(seconds):
        raise ConfigError(
            f"{key}: expected a duration such as 500ms, 30s, 2m, 1h30m or seconds, got {value!r}"
        )
    return seconds


def _durations(config: Any, section: str) -> None:
    """Turn duration strings of a config section's time-valued fields into seconds."""
    for f in fields(config):
        if f.metadata.get("unit") == "duration" and isinstance(getattr(config, f.name), str):
            seconds = parse_duration(getattr(config, f.name), f"{section}.{f.name}")
            object.__setattr__(config, f.name, seconds)


#: Request headers a user may not set: they belong to HTTP framing or to stacpull itself.
_REFUSED_HEADERS = frozenset(
    {"host", "content-length", "range", "if-range", "transfer-encoding", "connection", "te",
     "upgrade", "keep-alive", "accept-encoding", "expect", "trailer", "proxy-connection"}
)  # fmt: skip
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: Parts of a header name whose value is a credential, registered with the scrubber.
_SECRET_HEADER_WORDS = (
    "auth", "token", "key", "secret", "cookie", "pass", "session", "sig", "cred", "jwt",
)  # fmt: skip


def secret_header(name: str) -> bool:
    """Whether a header's value is a credential by its name (Authorization, Cookie,
    X-Api-Key, X-Auth-Token…): registered with the scrubber, masked by ``config show``."""
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_HEADER_WORDS)


def _header_shown(text: str) -> str:
    """A malformed header entry as an error may show it: its leading name only, never the
    rest, which is likely the value (``X-Api-Key=…`` is a credential with a typo)."""
    match = _HEADER_NAME.match(text.strip())
    return f"{match.group(0)!r}…" if match else "an entry"


def parse_headers(value: Any, key: str = "download.headers") -> tuple[tuple[str, str], ...]:
    """``K: V`` strings (or a ``{K: V}`` table, or ``[K, V]`` pairs) → checked (name, value)
    pairs. Framing headers (Host, Content-Length, Range…) are refused; values of
    credential-like headers (Authorization, Cookie, X-Api-Key…) become known secrets."""
    if isinstance(value, Mapping):
        raw: list[Any] = [(k, v) for k, v in value.items()]
    elif isinstance(value, str):
        raw = [line for line in value.splitlines() if line.strip()]
    elif isinstance(value, list | tuple):
        raw = list(value)
    else:
        raise ConfigError(
            f"{key}: expected 'Name: value' strings or a table, got {type(value).__name__}"
        )
    pairs: list[tuple[str, str]] = []
    for entry in raw:
        if isinstance(entry, str):
            name, sep, text = entry.partition(":")
            if not sep:
                raise ConfigError(
                    f"{key}: expected 'Name: value', got {_header_shown(entry)} without ':'"
                )
        elif isinstance(entry, list | tuple) and len(entry) == 2:
            name, text = entry
        else:
            raise ConfigError(f"{key}: expected 'Name: value', got {type(entry).__name__}")
        if not isinstance(name, str) or not isinstance(text, str):
            raise ConfigError(
                f"{key}: header names and values are strings, got {type(text).__name__} "
                f"for {_header_shown(name) if isinstance(name, str) else type(name).__name__}"
            )
        name, text = name.strip(), text.strip()
        if not _HEADER_NAME.fullmatch(name):
            raise ConfigError(f"{key}: {_header_shown(name)} is not a valid header name")
        if any(c in text for c in "\r\n\0\x85\u2028\u2029"):
            raise ConfigError(f"{key}: the value of {name} holds a line break")
        if any((ord(c) < 32 and c != "\t") or 127 <= ord(c) < 160 for c in text):
            # C1 controls too (0x80-0x9f: 0x9b is an 8-bit CSI a server or log may echo).
            # aiohttp would refuse it only at the first request, with a traceback.
            raise ConfigError(f"{key}: the value of {name} holds a control character")
        if name.lower() in _REFUSED_HEADERS:
            raise ConfigError(
                f"{key}: {name} is set by stacpull and the HTTP protocol itself; "
                "it cannot be given as a header"
            )
        if secret_header(name):
            SECRETS.add(text)
            SECRETS.add(text.partition(" ")[2].strip())  # the credential after a scheme
        pairs.append((name, text))
    return tuple(pairs)


@dataclass(frozen=True, slots=True)
class SearchConfig:
    """What to search for and where."""

    catalog: str = DEFAULT_CATALOG
    collections: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()
    bbox: tuple[float, ...] | None = None
    intersects: dict[str, Any] | None = None
    datetime: str | None = None
    filter: str | None = None
    max_items: int | None = None
    page_size: int = DEFAULT_PAGE_SIZE
    method: str = "GET"
    timeout: float = field(default=DEFAULT_SEARCH_TIMEOUT, metadata=_DURATION)

    def __post_init__(self) -> None:
        _durations(self, "search")
        SECRETS.add_url(self.catalog)  # its password is used for requests, never shown
        if not self.catalog.startswith(("http://", "https://")):
            raise ConfigError(f"search.catalog: expected an http(s) URL, got {self.catalog!r}")
        if not self.catalog.endswith("/"):
            # MAAP's load balancer answers 503 on the slashless root (MAAP.md).
            object.__setattr__(self, "catalog", self.catalog + "/")
        if self.bbox is not None:
            object.__setattr__(self, "bbox", parse_bbox(self.bbox, "search.bbox"))
        if self.bbox is not None and self.intersects is not None:
            raise ConfigError("search: bbox and intersects cannot be used together")
        if self.intersects is not None and (
            not isinstance(self.intersects, dict) or "type" not in self.intersects
        ):
            raise ConfigError("search.intersects: expected a GeoJSON geometry object")
        if self.datetime is not None:
            object.__setattr__(
                self, "datetime", parse_datetime_range(self.datetime, "search.datetime")
            )
        if self.max_items is not None:
            _positive_int("search.max_items", self.max_items)
        _positive_int("search.page_size", self.page_size, _MAX_PAGE_SIZE)
        _positive_float("search.timeout", self.timeout)
        if self.method.upper() not in ("GET", "POST"):
            raise ConfigError(f"search.method: expected GET or POST, got {self.method!r}")
        object.__setattr__(self, "method", self.method.upper())


@dataclass(frozen=True, slots=True)
class DownloadConfig:
    """How jobs are planned and transferred."""

    dest: str | None = None
    assets: tuple[str, ...] = DEFAULT_ASSETS
    template: str = DEFAULT_TEMPLATE
    concurrency: int = DEFAULT_CONCURRENCY
    per_host: int = DEFAULT_PER_HOST
    queue_size: int = 0  # 0: twice the concurrency
    chunk_size: int = DEFAULT_CHUNK_SIZE
    stall_timeout: float = field(default=DEFAULT_STALL_TIMEOUT, metadata=_DURATION)
    min_speed: int = DEFAULT_MIN_SPEED  # bytes/s over each stall_timeout window, or a stall
    connect_timeout: float = field(default=DEFAULT_CONNECT_TIMEOUT, metadata=_DURATION)
    retries: int = DEFAULT_RETRIES
    backoff: float = field(default=DEFAULT_BACKOFF, metadata=_DURATION)
    max_backoff: float = field(default=DEFAULT_MAX_BACKOFF, metadata=_DURATION)
    not_found_retries: int = DEFAULT_NOT_FOUND_RETRIES
    not_found_delay: float = field(default=DEFAULT_NOT_FOUND_DELAY, metadata=_DURATION)
    adaptive: bool = True
    min_free: int = DEFAULT_MIN_FREE
    max_bytes: int = 0  # a run that would download more refuses to start (0: no budget)
    segments: int = 8  # parallel connections for one large file on a slow link (1: never)
    segment_size: int = DEFAULT_SEGMENT_SIZE  # the smallest range worth its own connection
    segment_below: int = DEFAULT_SEGMENT_BELOW  # bytes/s under which a connection is slow
    record_hash: str = DEFAULT_RECORD_HASH  # digest recorded for files without file:checksum
    bwlimit: int = 0  # bytes/s for the whole run, all transfers and ranges together (0: none)
    #: Extra request headers (name, value), sent to the hosts trusted with the token only.
    headers: tuple[tuple[str, str], ...] = ()
    header_all_hosts: bool = False  # send ``headers`` to every host, redirects included

    def __post_init__(self) -> None:
        _durations(self, "download")
        object.__setattr__(self, "headers", parse_headers(self.headers))
        if isinstance(self.bwlimit, str):
            object.__setattr__(self, "bwlimit", _parse_rate(self.bwlimit, "download.bwlimit"))
        for name in ("chunk_size", "segment_size"):
            _positive_int(f"download.{name}", getattr(self, name))
        for name in ("concurrency", "per_host", "segments"):
            _positive_int(f"download.{name}", getattr(self, name), _MAX_CONNECTIONS)
        for name in (
            "stall_timeout",
            "connect_timeout",
            "backoff",
            "max_backoff",
            "not_found_delay",
        ):
            _positive_float(f"download.{name}", getattr(self, name))
        for name in (
            "retries",
            "not_found_retries",
            "min_free",
            "max_bytes",
            "segment_below",
            "min_speed",
            "bwlimit",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"download.{name}: expected an integer ≥ 0, got {value!r}")
        if isinstance(self.queue_size, bool) or self.queue_size < 0:
            raise ConfigError(
                f"download.queue_size: expected an integer ≥ 0, got {self.queue_size!r}"
            )
        if self.record_hash not in MULTIHASH_NAMES:
            raise ConfigError(
                f"download.record_hash: expected one of {', '.join(MULTIHASH_NAMES)}, "
                f"got {self.record_hash!r}"
            )
        if not self.assets:
            raise ConfigError("download.assets: select at least one asset (e.g. 'maap' or 'all')")
        if "{name}" not in self.template:
            raise ConfigError(f"download.template: must contain {{name}}, got {self.template!r}")
        check_template(self.template)

    @property
    def queue_limit(self) -> int:
        """Bound of the job stream: the producer blocks beyond it."""
        return self.queue_size or 2 * self.concurrency


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """Where the bearer token comes from and which hosts may receive it.

    Sources, first match wins: ``token`` (``--token``/``STACPULL_TOKEN``); a ``token_file``
    named explicitly; an offline token (``offline_token`` from ``STACPULL_OFFLINE_TOKEN``,
    or ``offline_token_file``) exchanged at ``token_url`` for short-lived access tokens;
    the default ``token.txt`` when it exists.
    """

    token: Secret | None = None
    token_file: str = DEFAULT_TOKEN_FILE
    hosts: tuple[str, ...] = ()
    offline_token: Secret | None = None
    offline_token_file: str | None = None
    token_url: str = DEFAULT_TOKEN_URL
    client_id: str = DEFAULT_CLIENT_ID
    client_secret: Secret = field(default_factory=lambda: Secret(DEFAULT_CLIENT_SECRET))
    scope: str = DEFAULT_SCOPE
    refresh_margin: float = field(default=DEFAULT_REFRESH_MARGIN, metadata=_DURATION)

    def __post_init__(self) -> None:
        _durations(self, "auth")
        for name in ("token", "offline_token", "client_secret"):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, Secret(value))
        _positive_float("auth.refresh_margin", self.refresh_margin)
        SECRETS.add_url(self.token_url)
        _check_token_url(self.token_url)
        if not self.client_id.strip():
            raise ConfigError("auth.client_id: must not be empty")
        hosts = tuple(h.strip().lower() for h in self.hosts if h.strip())
        for host in hosts:
            if "/" in host or " " in host:
                raise ConfigError(f"auth.hosts: expected a host name, got {host!r}")
        object.__setattr__(self, "hosts", hosts)


def _check_token_url(url: str) -> None:
    """The token endpoint receives the offline token: https only, except on this machine."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"auth.token_url: expected an http(s) URL, got {url!r}")
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise ConfigError(
            f"auth.token_url: {url!r} would send the offline token unencrypted; use https"
        )


@dataclass(frozen=True, slots=True)
class OutputConfig:
    """What the run shows and writes."""

    progress_interval: float = field(default=DEFAULT_PROGRESS_INTERVAL, metadata=_DURATION)
    dashboard: str = "auto"  # auto | rich | plain | none
    verbosity: str = "normal"  # quiet | normal | verbose
    report: bool = True
    log_json: str | None = None  # a file to append every event to, as JSON lines
    log_file: str | None = None  # a file to append the run's log to, as timestamped text

    def __post_init__(self) -> None:
        _durations(self, "output")
        _positive_float("output.progress_interval", self.progress_interval)
        if self.dashboard not in ("auto", "rich", "plain", "none"):
            raise ConfigError(
                f"output.dashboard: expected auto, rich, plain or none, got {self.dashboard!r}"
            )
        if self.verbosity not in ("quiet", "normal", "verbose"):
            raise ConfigError(
                f"output.verbosity: expected quiet, normal or verbose, got {self.verbosity!r}"
            )


@dataclass(frozen=True, slots=True)
class Config:
    """Everything one run needs."""

    search: SearchConfig = field(default_factory=SearchConfig)
    download: DownloadConfig = field(default_factory=DownloadConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def with_values(self, values: Mapping[str, Any]) -> Config:
        """A copy with dotted keys (``download.concurrency``) replaced; ``None`` is skipped."""
        sections: dict[str, dict[str, Any]] = {}
        for dotted, value in values.items():
            if value is None:
                continue
            section, _, key = dotted.partition(".")
            sections.setdefault(section, {})[key] = value
        updated = self
        for section, changes in sections.items():
            current = getattr(updated, section)
            updated = replace(updated, **{section: _replace_checked(current, section, changes)})
        return updated


_SECTIONS: dict[str, type[Any]] = {
    "search": SearchConfig,
    "download": DownloadConfig,
    "auth": AuthConfig,
    "output": OutputConfig,
}


def _folded(name: str) -> str:
    """A key as a typo is compared: ``Max-Items`` and ``maxitems`` are ``max_items``."""
    return re.sub(r"[\s_-]", "", name).lower()


def _closest(name: str, choices: Iterable[str]) -> str | None:
    """The choice ``name`` most likely meant: the one equal but for case, ``_`` and ``-``,
    else difflib's closest of the folded names (so ``maxitems`` is ``max_items``, not
    ``max_bytes``), else None."""
    folded: dict[str, str] = {}
    for choice in choices:
        folded.setdefault(_folded(choice), choice)
    key = _folded(name)
    if key in folded:
        return folded[key]
    import difflib  # only for a typo: every command reads the config

    hint = difflib.get_close_matches(key, list(folded), n=1)
    return folded[hint[0]] if hint else None


def _did_you_mean(name: str, choices: Iterable[str], form: str) -> str:
    """' (did you mean X?)' for the closest choice, formatted with ``form``, or ''."""
    hint = _closest(name, choices)
    return f" (did you mean {form.format(hint)}?)" if hint is not None else ""


def _unknown_key(section: str, key: str, names: Iterable[str]) -> str:
    """Why ``[section] key`` is refused, naming the key meant: one of this section's, or a
    key of another section written in the wrong one (``[download] max_items``)."""
    here = list(names)
    elsewhere = {k: s for k, s in _key_sections().items() if s != section}
    exact = _closest(key, here)
    if exact is not None and _folded(exact) == _folded(key):
        return f"unknown key [{section}] {key} (did you mean {exact!r}?)"
    other = _closest(key, elsewhere)
    if other is not None and _folded(other) == _folded(key):
        return f"unknown key [{section}] {key} (did you mean [{elsewhere[other]}] {other}?)"
    return f"unknown key [{section}] {key}{_did_you_mean(key, here, '{!r}')}"


def _replace_checked(current: Any, section: str, changes: Mapping[str, Any]) -> Any:
    names = {f.name: f for f in fields(current)}
    converted: dict[str, Any] = {}
    for key, value in changes.items():
        if key not in names:
            raise ConfigError(_unknown_key(section, key, names))
        converted[key] = _coerce(f"{section}.{key}", value, getattr(current, key))
    if section == "search":
        # bbox and intersects are one spatial filter written two ways: the layer that
        # sets one (a keyword, a flag) replaces the other a lower layer set.
        for one, other in (("bbox", "intersects"), ("intersects", "bbox")):
            if one in converted and other not in converted:
                converted[other] = None
    try:
        return replace(current, **converted)
    except TypeError as exc:
        raise ConfigError(f"[{section}]: {exc}") from None


_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def parse_size(value: str | int, key: str = "size") -> int:
    """``"50GB"``, ``"1.5 TiB"``, ``"500M"`` or a plain number of bytes → bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return int(_size_bytes(value, key))


def _size_bytes(value: str | int, key: str) -> float:
    """A size as :func:`parse_size` reads it, before it is rounded down to whole bytes."""
    text = str(value).strip().lower().replace(" ", "")
    number = text.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = text[len(number) :]
    try:
        amount = float(number)
    except ValueError:
        amount = -1.0
    # 1e400 is inf to float(), and int(inf) an OverflowError: a traceback, not a size.
    if unit not in _SIZE_UNITS or not 0 <= amount * _SIZE_UNITS.get(unit, 1) < math.inf:
        raise ConfigError(f"{key}: expected a size such as 500MB, 50GB or 2TiB, got {value!r}")
    return amount * _SIZE_UNITS[unit]


def _parse_rate(value: str | int, key: str) -> int:
    """A bandwidth: a size per second (``50M``, ``500k``, ``1.5MiB``, ``2MB/s``); 0 or
    ``off`` for no limit."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("off", "none", "unlimited", ""):
            return 0
        value = text.removesuffix("/s")
    rate = parse_size(value, key)
    if rate == 0 and not isinstance(value, int) and _size_bytes(value, key) > 0:
        # "0.5" would round to 0, which means no limit at all: the opposite of what was asked.
        raise ConfigError(f"{key}: {value!r} is under 1 byte/s; use 0 or off for no limit")
    return rate


def _duration_keys() -> frozenset[str]:
    return frozenset(
        f"{section}.{f.name}"
        for section, kind in _SECTIONS.items()
        for f in fields(kind)
        if f.metadata.get("unit") == "duration"
    )


#: Every time-valued key (``download.stall_timeout``…), from the fields' metadata.
_DURATION_KEYS = _duration_keys()


def _coerce(name: str, value: Any, default: Any) -> Any:
    """Turn TOML/environment values into the field's type, or name the key that is wrong."""
    if name in _DURATION_KEYS:
        return parse_duration(value, name)
    if name == "download.bwlimit":
        return _parse_rate(value, name)
    if name == "download.headers":
        return parse_headers(value, name)
    if name in (
        "download.max_bytes",
        "download.min_free",
        "download.segment_size",
        "download.segment_below",
        "download.min_speed",
    ):
        return parse_size(value, name)
    if isinstance(default, tuple) or name in ("search.bbox",):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{name}: expected a list, got {value!r}")
        return tuple(value)
    if isinstance(default, bool):
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "0", "false", "no"):
            return value.lower() in ("1", "true", "yes")
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: expected true or false, got {value!r}")
        return value
    if isinstance(default, int) or (default is None and name.endswith("max_items")):
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                raise ConfigError(f"{name}: expected an integer, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise ConfigError(f"{name}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{name}: expected a number, got {value!r}")
        return float(value)
    if name == "search.datetime" and isinstance(value, date | int) and not isinstance(value, bool):
        # TOML's own dates (datetime = 2025-09-29) and a bare year (datetime = 2025).
        return value.isoformat() if isinstance(value, date) else str(value)
    if name in _SECRET_KEYS:
        return value if isinstance(value, Secret) else Secret(str(value))
    if isinstance(default, str) or default is None:
        if name == "search.intersects":
            return value
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected a string, got {value!r}")
    return value


#: Profiles every install knows; a config file's ``[profiles.NAME]`` adds or replaces.
BUILTIN_PROFILES: Mapping[str, Mapping[str, Any]] = {
    "maap": {"catalog": DEFAULT_CATALOG},
    "maap-preop": {"catalog": "https://catalog.preop.esa-maap.org/catalogue/"},
}
_NOT_IN_FILES = {
    "token": "auth.token_file or the STACPULL_TOKEN environment variable",
    "offline_token": "auth.offline_token_file or the STACPULL_OFFLINE_TOKEN environment variable",
}


def _key_sections() -> dict[str, str]:
    """Each config key's section: key names are unique across sections, so a profile can
    list them flat (``catalog``, ``concurrency``, ``offline_token_file``…)."""
    return {
        name: section for section, kind in _SECTIONS.items() for name in kind.__dataclass_fields__
    }


def _line_of(text: str, section: str, key: str) -> int | None:
    """The line of ``key =`` inside ``[section]`` of a TOML text (1-based), if found."""
    current = ""
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            current = stripped.strip("[]").strip()
        elif current == section and re.match(rf"{re.escape(key)}\s*=", stripped):
            return number
    return None


def _flatten_toml(data: Mapping[str, Any], origin: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for section, table in data.items():
        if section == "profiles":
            continue
        if section not in _SECTIONS:
            hint = _did_you_mean(section, [*_SECTIONS, "profiles"], "[{}]")
            raise ConfigError(f"{origin}: unknown section [{section}]{hint}")
        if not isinstance(table, dict):
            raise ConfigError(f"{origin}: [{section}] must be a table")
        if section == "auth":
            for key, instead in _NOT_IN_FILES.items():
                if key in table:
                    raise ConfigError(
                        f"{origin}: [auth] {key} must not be stored in a config file; use {instead}"
                    )
        for key, value in table.items():
            flat[f"{section}.{key}"] = value
    return flat


def _profile_values(name: str, table: Any, origin: str) -> dict[str, Any]:
    """A profile's flat keys as dotted config keys."""
    if not isinstance(table, dict):
        raise ConfigError(f"{origin}: [profiles.{name}] must be a table")
    sections = _key_sections()
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key in _NOT_IN_FILES:
            raise ConfigError(
                f"{origin}: [profiles.{name}] {key} must not be stored in a config file; "
                f"use {_NOT_IN_FILES[key]}"
            )
        if key not in sections:
            hint = _did_you_mean(key, sections, "{!r}")
            raise ConfigError(f"{origin}: unknown key [profiles.{name}] {key}{hint}")
        values[f"{sections[key]}.{key}"] = value
    return values


def env_variables() -> dict[str, str]:
    """Every environment variable that sets a config key, and that key: one
    ``STACPULL_<SECTION>_<KEY>`` per field of the section dataclasses (generated, so a new
    key has its variable without a line here), plus the short names of :data:`ENV_KEYS`."""
    generated = {
        f"{ENV_PREFIX}{section.upper()}_{f.name.upper()}": f"{section}.{f.name}"
        for section, kind in _SECTIONS.items()
        for f in fields(kind)
    }
    return {**ENV_KEYS, **generated}


_STRUCTURED = ("tuple[", "list[", "dict[")


def _env_text(var: str, key: str, text: str) -> Any:
    """An environment value as the file's would be: a list or table field also takes JSON
    (``["a", "b"]``, ``{"type": "Point", ...}``); everything else, and a list written
    ``a,b``, is converted by the same rules as the file's values."""
    section, _, name = key.partition(".")
    kind = _SECTIONS[section].__dataclass_fields__[name].type
    if any(mark in str(kind) for mark in _STRUCTURED) and text.lstrip()[:1] in ("[", "{"):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{var}: expected JSON ({exc})") from None
    return text


def _env_values(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The config values the environment sets and the variable each came from.

    An empty variable counts as unset. A ``STACPULL_<SECTION>_...`` name that matches no
    key is an error (a typo would otherwise be ignored in silence)."""
    known = env_variables()
    values: dict[str, Any] = {}
    names: dict[str, str] = {}
    # The short names first, so the generated name of the same key wins.
    for var, key in sorted(known.items(), key=lambda pair: pair[0] not in ENV_KEYS):
        text = environ.get(var)
        if text:
            values[key] = _env_text(var, key, text)
            names[key] = var
    for var, text in environ.items():
        section = next((s for s in _SECTIONS if var.startswith(f"{ENV_PREFIX}{s.upper()}_")), None)
        if section is not None and text and var not in known:
            hint = _did_you_mean(var, known, "{}")
            raise ConfigError(f"environment variable {var} sets no config key{hint}")
    return values, names


def _in_env(message: str, names: Mapping[str, str]) -> str:
    """A value error from the environment, naming the variable it came from."""
    match = re.match(r"(?:unknown key \[(\w+)\] (\w+)|(\w+)\.(\w+):)", message)
    if match:
        section, key = (match.group(1), match.group(2)) if match.group(1) else match.group(3, 4)
        var = names.get(f"{section}.{key}")
        if var is not None:
            return f"{var}: {message}"
    section = re.match(r"\[?(\w+)\]?:", message)
    related = [
        var
        for key, var in names.items()
        if section is None or key.startswith(f"{section.group(1)}.")
    ]
    return f"environment ({', '.join(sorted(related or names.values()))}): {message}"


def user_config_file(env: Mapping[str, str] | None = None) -> Path | None:
    r"""Where the user's own config file is looked for (it need not exist), or ``None``
    when ``STACPULL_NO_USER_CONFIG`` is set (tests and CI set it).

    With the process environment, platformdirs says where: ``$XDG_CONFIG_HOME/stacpull``
    (``~/.config/stacpull``) on Linux, ``~/Library/Application Support/stacpull`` on macOS,
    ``%APPDATA%\stacpull`` on Windows. An explicit ``env`` mapping stands for the whole
    environment: only its own ``XDG_CONFIG_HOME`` points at a user file."""
    environ = os.environ if env is None else env
    if environ.get("STACPULL_NO_USER_CONFIG", "").strip() not in ("", "0"):
        return None
    if env is not None and env is not os.environ:
        xdg = env.get("XDG_CONFIG_HOME")
        return Path(xdg) / "stacpull" / "stacpull.toml" if xdg else None
    import platformdirs  # only here: where the user file lives is its only use

    return Path(platformdirs.user_config_dir("stacpull", appauthor=False)) / "stacpull.toml"


def config_files(
    path: str | os.PathLike[str] | None = None, *, env: Mapping[str, str] | None = None
) -> list[tuple[str, Path]]:
    """The config files read, lowest layer first, each as (the name its values are
    attributed to, its path): the user file and ``./stacpull.toml`` when they exist, then
    ``path`` (``--config``), else ``$STACPULL_CONFIG``, which must exist. A file named
    twice is read once, in its highest place."""
    environ = os.environ if env is None else env
    layers: list[tuple[str, Path]] = []
    user = user_config_file(env)
    if user is not None and user.is_file():
        layers.append((str(user), user))
    local = Path("stacpull.toml")
    if local.is_file():
        layers.append(("./stacpull.toml", local))
    explicit = path if path is not None else (environ.get("STACPULL_CONFIG") or None)
    if explicit is not None:
        chosen = Path(explicit)
        if path is None and not chosen.exists():
            # An API user who never named a file must learn where this one came from.
            raise ConfigError(f"STACPULL_CONFIG: config file {chosen} does not exist")
        layers.append((str(chosen), chosen))
    seen: dict[Path, int] = {}
    for index, (_, file) in enumerate(layers):
        try:
            seen[file.resolve()] = index
        except OSError:
            seen[file.absolute()] = index
    return [layer for index, layer in enumerate(layers) if index in seen.values()]


def _read_toml(origin: str, file_path: Path) -> tuple[str, dict[str, Any]]:
    """A config file's text and its parsed TOML, or an error naming the file."""
    try:
        text = file_path.read_text(encoding="utf-8")
        return text, tomllib.loads(text)
    except FileNotFoundError:
        raise ConfigError(f"config file {origin} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {origin} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {origin} is not valid TOML: {exc}") from None


def resolve_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
    profile: str | None = None,
) -> tuple[Config, dict[str, str]]:
    """:func:`load_config`, plus where each key that is not a default came from
    (``FILE line N``, ``profile P``, ``env VAR``, ``flag``), for ``stacpull config show``.

    Layers, lowest first: defaults; the config files of :func:`config_files` (the user's,
    ``./stacpull.toml``, ``--config``), each over the one before; the profile
    (``--profile``, else ``STACPULL_PROFILE``; built in: ``maap``, ``maap-preop``; a file's
    ``[profiles.NAME]`` replaces a lower one of that name); the environment; the flags.
    """
    environ = os.environ if env is None else env
    config = Config()
    origins: dict[str, str] = {}
    profiles: dict[str, Any] = {k: dict(v) for k, v in BUILTIN_PROFILES.items()}
    profile_origin = dict.fromkeys(BUILTIN_PROFILES, "built in")
    for origin, file_path in config_files(path, env=env):
        text, data = _read_toml(origin, file_path)
        flat = _flatten_toml(data, origin)
        try:
            config = config.with_values(flat)
        except ConfigError as exc:
            raise ConfigError(_in_file(str(exc), origin, text)) from None
        for dotted in flat:
            line = _line_of(text, *dotted.split(".", 1))
            origins[dotted] = f"{origin} line {line}" if line else origin
        raw_profiles = data.get("profiles") or {}
        if not isinstance(raw_profiles, dict):
            raise ConfigError(f"{origin}: [profiles] must hold tables, e.g. [profiles.maap]")
        for name, table in raw_profiles.items():
            _profile_values(name, table, origin)  # validate every profile, used or not
            profiles[name] = table
            profile_origin[name] = origin
    chosen = profile or environ.get("STACPULL_PROFILE") or None
    if chosen is not None:
        if chosen not in profiles:
            hint = _did_you_mean(chosen, profiles, "{!r}")
            where = "" if profile else "STACPULL_PROFILE: "
            raise ConfigError(
                f"{where}unknown profile {chosen!r}{hint}; profiles: {', '.join(sorted(profiles))}"
            )
        values = _profile_values(chosen, profiles[chosen], profile_origin[chosen])
        try:
            config = config.with_values(values)
        except ConfigError as exc:
            raise ConfigError(f"profile {chosen!r} ({profile_origin[chosen]}): {exc}") from None
        origins.update(dict.fromkeys(values, f"profile {chosen}"))
    env_values, env_names = _env_values(environ)
    if env_values:
        try:
            config = config.with_values(env_values)
        except ConfigError as exc:
            raise ConfigError(_in_env(str(exc), env_names)) from None
        origins.update({key: f"env {env_names[key]}" for key in env_values})
    if flags:
        config = config.with_values(flags)
        origins.update({key: "flag" for key, value in flags.items() if value is not None})
    return config, origins


def _in_file(message: str, origin: str, text: str) -> str:
    """A value error from the file, with the file and the line of the key it names."""
    match = re.match(r"(?:unknown key \[(\w+)\] ([\w-]+)|(\w+)\.(\w+):)", message)
    line = None
    if match:
        section, key = (match.group(1), match.group(2)) if match.group(1) else match.group(3, 4)
        line = _line_of(text, section, key)
    where = f"{origin} line {line}" if line else origin
    return message if message.startswith(origin) else f"{where}: {message}"


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
    profile: str | None = None,
) -> Config:
    """Build the run's :class:`Config` from defaults, the config files (the user's,
    ``./stacpull.toml``, then ``path`` or ``$STACPULL_CONFIG``), the profile, the
    environment and the flags, each overriding the one before. Errors name the file, the
    key and its line, or the environment variable."""
    return resolve_config(path, env=env, flags=flags, profile=profile)[0]
