"""The settings: one frozen dataclass per config section, and :class:`Config`, all five
([cluster]'s in :mod:`.cluster`).

Each section checks its own values in ``__post_init__`` (a ``Config`` that exists is
valid), and :meth:`Config.with_values` applies one layer's raw values (TOML, environment
text, flags) as dotted keys, converting each to its field's type and naming the key, or
the key meant, when one is wrong. The defaults are those of :mod:`stacpull.defaults`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import date
from typing import Any
from urllib.parse import urlsplit

from ..defaults import (
    AUTO,
    AUTO_CONCURRENCY,
    AUTO_PER_HOST,
    DASHBOARDS,
    DEFAULT_ASSETS,
    DEFAULT_BACKOFF,
    DEFAULT_BWLIMIT,
    DEFAULT_CATALOG,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_CONCURRENCY,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_DASHBOARD,
    DEFAULT_FILTER_LANG,
    DEFAULT_MAX_BACKOFF,
    DEFAULT_MAX_BYTES,
    DEFAULT_METHOD,
    DEFAULT_MIN_FREE,
    DEFAULT_MIN_SPEED,
    DEFAULT_NOT_FOUND_DELAY,
    DEFAULT_NOT_FOUND_RETRIES,
    DEFAULT_PAGE_SIZE,
    DEFAULT_PER_HOST,
    DEFAULT_PROGRESS_INTERVAL,
    DEFAULT_QUEUE_SIZE,
    DEFAULT_REFRESH_MARGIN,
    DEFAULT_RETRIES,
    DEFAULT_SCOPE,
    DEFAULT_SEARCH_TIMEOUT,
    DEFAULT_SEGMENT_BELOW,
    DEFAULT_SEGMENT_SIZE,
    DEFAULT_SEGMENTS,
    DEFAULT_STALL_TIMEOUT,
    DEFAULT_TEMPLATE,
    DEFAULT_TOKEN_FILE,
    DEFAULT_TOKEN_URL,
    DEFAULT_VERBOSITY,
    SEARCH_METHODS,
    VERBOSITIES,
    WINDOW_START,
)
from ..errors import SECRETS, ConfigError
from ..hashes import DEFAULT_RECORD_HASH, MULTIHASH_NAMES
from .cluster import ClusterConfig
from .headers import parse_headers
from .hints import closest, did_you_mean, folded_key
from .values import (
    CONNECTIONS,
    Secret,
    check_template,
    non_negative_int,
    parse_bbox,
    parse_connection_fields,
    parse_connections,
    parse_datetime_range,
    parse_duration,
    parse_rate,
    parse_size,
    positive_float,
    positive_int,
)

__all__ = [
    "SECTIONS",
    "AuthConfig",
    "Config",
    "DownloadConfig",
    "OutputConfig",
    "SearchConfig",
    "key_sections",
    "shown_setting",
]

_MAX_PAGE_SIZE = 10_000  # what pystac-client (and most STAC APIs) accept as a limit

#: Keys holding secrets: never accepted from a config file (except the public client
#: secret), always wrapped in :class:`Secret`.
_SECRET_KEYS = frozenset({"auth.token", "auth.offline_token", "auth.client_secret"})

#: Field metadata of a time-valued key: it takes ``500ms``, ``30s``, ``2m``, ``1h30m`` or seconds.
_DURATION: Mapping[str, str] = {"unit": "duration"}


#: The languages ``search.filter`` may be written in (``--filter-lang``).
_FILTER_LANGS = ("cql2-text", "cql2-json")


#: How deep a CQL2-JSON filter may nest (objects and lists): pystac-client copies it
#: recursively, and a few hundred levels exhaust Python's stack.
_MAX_FILTER_DEPTH = 100


def _depth(value: Any) -> int:
    """How deep ``value`` (parsed JSON) nests, counted without recursion."""
    deepest, level = 0, [(value, 1)]
    while level:
        node, depth = level.pop()
        deepest = max(deepest, depth)
        if isinstance(node, dict | list) and depth <= _MAX_FILTER_DEPTH:
            level.extend(
                (child, depth + 1) for child in (node.values() if isinstance(node, dict) else node)
            )
    return deepest


def _check_filter(text: str | None, lang: str) -> None:
    """``search.filter_lang`` is one of :data:`_FILTER_LANGS`, and a ``cql2-json`` filter is
    a JSON object (checked here, before the search: the catalogue's 400 says less)."""
    import json

    if lang not in _FILTER_LANGS:
        raise ConfigError(f"search.filter_lang: expected cql2-text or cql2-json, got {lang!r}")
    if lang != "cql2-json" or text is None:
        return
    deep = False
    try:
        value = json.loads(text)
    except RecursionError:
        value, deep = None, True  # nested deeper than Python's stack: too deep, as below
    except ValueError as exc:
        raise ConfigError(f"search.filter: not CQL2-JSON (cql2-json): {exc}") from None
    if deep or _depth(value) > _MAX_FILTER_DEPTH:
        raise ConfigError(
            f"search.filter: the CQL2-JSON filter nests deeper than {_MAX_FILTER_DEPTH} "
            "levels (no real filter does; the search client would fail on it)"
        )
    if not isinstance(value, dict) or "op" not in value:
        raise ConfigError(
            'search.filter: a CQL2-JSON filter is an object with an "op", e.g. '
            '{"op": "=", "args": [{"property": "product:type"}, "S3_SCS__1S"]}'
        )


def _durations(config: Any, section: str) -> None:
    """Turn duration strings of a config section's time-valued fields into seconds."""
    for f in fields(config):
        if f.metadata.get("unit") == "duration" and isinstance(getattr(config, f.name), str):
            seconds = parse_duration(getattr(config, f.name), f"{section}.{f.name}")
            object.__setattr__(config, f.name, seconds)


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
    #: How ``filter`` is written: ``cql2-text``, or ``cql2-json`` (a JSON object as text).
    filter_lang: str = DEFAULT_FILTER_LANG
    max_items: int | None = None
    page_size: int = DEFAULT_PAGE_SIZE
    method: str = DEFAULT_METHOD
    timeout: float = field(default=DEFAULT_SEARCH_TIMEOUT, metadata=_DURATION)
    #: Search ``datetime`` in consecutive windows this long (``1d``, ``6h``); ``None``: at once.
    window: float | None = field(default=None, metadata=_DURATION)

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
        _check_filter(self.filter, self.filter_lang)
        if self.window is not None:
            from ..paging import time_windows  # hashlib: not for `config show`

            time_windows(self.datetime, self.window)  # a range it can split, or ConfigError
        if self.max_items is not None:
            positive_int("search.max_items", self.max_items)
        positive_int("search.page_size", self.page_size, _MAX_PAGE_SIZE)
        positive_float("search.timeout", self.timeout)
        if self.method.upper() not in SEARCH_METHODS:
            raise ConfigError(f"search.method: expected GET or POST, got {self.method!r}")
        object.__setattr__(self, "method", self.method.upper())


@dataclass(frozen=True, slots=True)
class DownloadConfig:
    """How jobs are planned and transferred."""

    dest: str | None = None
    assets: tuple[str, ...] = DEFAULT_ASSETS
    template: str = DEFAULT_TEMPLATE
    #: Files in flight over all hosts; 0 (auto): up to AUTO_CONCURRENCY. Read
    #: :attr:`concurrency_limit`, never this, to size anything.
    concurrency: int = field(default=DEFAULT_CONCURRENCY, metadata=CONNECTIONS)
    #: The ceiling of each host's window of requests in flight; 0 (auto): AUTO_PER_HOST.
    per_host: int = field(default=DEFAULT_PER_HOST, metadata=CONNECTIONS)
    queue_size: int = DEFAULT_QUEUE_SIZE  # 0: twice the concurrency
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
    max_bytes: int = (
        DEFAULT_MAX_BYTES  # a run that would download more refuses to start (0: no budget)
    )
    #: Parallel connections for one large file on a slow link (1: never split; 0, auto:
    #: as many as the host's window gives).
    segments: int = field(default=DEFAULT_SEGMENTS, metadata=CONNECTIONS)
    segment_size: int = DEFAULT_SEGMENT_SIZE  # the smallest range worth its own connection
    segment_below: int = DEFAULT_SEGMENT_BELOW  # bytes/s under which a connection is slow
    record_hash: str = DEFAULT_RECORD_HASH  # digest recorded for files without file:checksum
    bwlimit: int = (
        DEFAULT_BWLIMIT  # bytes/s for the whole run, all transfers and ranges together (0: none)
    )
    #: Extra request headers (name, value), sent to the hosts trusted with the token only.
    headers: tuple[tuple[str, str], ...] = ()
    header_all_hosts: bool = False  # send ``headers`` to every host, redirects included

    def __post_init__(self) -> None:
        _durations(self, "download")
        object.__setattr__(self, "headers", parse_headers(self.headers))
        if isinstance(self.bwlimit, str):
            object.__setattr__(self, "bwlimit", parse_rate(self.bwlimit, "download.bwlimit"))
        for name in ("chunk_size", "segment_size"):
            positive_int(f"download.{name}", getattr(self, name))
        parse_connection_fields(self, "download")
        for name in (
            "stall_timeout",
            "connect_timeout",
            "backoff",
            "max_backoff",
            "not_found_delay",
        ):
            positive_float(f"download.{name}", getattr(self, name))
        for name in (
            "retries",
            "not_found_retries",
            "min_free",
            "max_bytes",
            "segment_below",
            "min_speed",
            "bwlimit",
        ):
            non_negative_int(f"download.{name}", getattr(self, name))
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
    def concurrency_limit(self) -> int:
        """Files in flight at most, over every host: the pool's transfer slots."""
        return self.concurrency or AUTO_CONCURRENCY

    @property
    def per_host_limit(self) -> int:
        """The ceiling of each host's window: an explicit ``per_host``, else the polite
        default; the window adapts under it (see :attr:`window_start`)."""
        return self.per_host or AUTO_PER_HOST

    @property
    def segment_limit(self) -> int:
        """Connections one split file may use at most: ``segments``, else (auto) as many
        as its host's window gives, up to the per-host ceiling."""
        return self.segments or self.per_host_limit

    @property
    def queue_limit(self) -> int:
        """Bound of the job stream: the producer blocks beyond it."""
        return self.queue_size or 2 * self.concurrency_limit

    @property
    def window_start(self) -> int:
        """Each host's first window: WINDOW_START, under the ceiling. With ``adaptive``
        off the window stays where it starts: at an explicit ``per_host``, else there."""
        if not self.adaptive and self.per_host:
            return self.per_host
        return min(WINDOW_START, self.per_host_limit)


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
        positive_float("auth.refresh_margin", self.refresh_margin)
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
    dashboard: str = DEFAULT_DASHBOARD  # auto | rich | plain | none
    verbosity: str = DEFAULT_VERBOSITY  # quiet | normal | verbose
    report: bool = True
    log_json: str | None = None  # a file to append every event to, as JSON lines
    log_file: str | None = None  # a file to append the run's log to, as timestamped text

    def __post_init__(self) -> None:
        _durations(self, "output")
        positive_float("output.progress_interval", self.progress_interval)
        if self.dashboard not in DASHBOARDS:
            raise ConfigError(
                f"output.dashboard: expected auto, rich, plain or none, got {self.dashboard!r}"
            )
        if self.verbosity not in VERBOSITIES:
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
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

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


SECTIONS: dict[str, type[Any]] = {
    "search": SearchConfig,
    "download": DownloadConfig,
    "auth": AuthConfig,
    "output": OutputConfig,
    "cluster": ClusterConfig,
}


def key_sections() -> dict[str, str]:
    """Each config key's section: key names are unique across sections, so a profile can
    list them flat (``catalog``, ``concurrency``, ``offline_token_file``…). A name two
    sections share (``per_host``, ``retries``: [download]'s and [cluster]'s) is the first
    section's."""
    sections: dict[str, str] = {}
    for section, kind in SECTIONS.items():
        for name in kind.__dataclass_fields__:
            sections.setdefault(name, section)
    return sections


def _unknown_key(section: str, key: str, names: Iterable[str]) -> str:
    """Why ``[section] key`` is refused, naming the key meant: one of this section's, or a
    key of another section written in the wrong one (``[download] max_items``)."""
    here = list(names)
    elsewhere = {k: s for k, s in key_sections().items() if s != section}
    exact = closest(key, here)
    if exact is not None and folded_key(exact) == folded_key(key):
        return f"unknown key [{section}] {key} (did you mean {exact!r}?)"
    other = closest(key, elsewhere)
    if other is not None and folded_key(other) == folded_key(key):
        return f"unknown key [{section}] {key} (did you mean [{elsewhere[other]}] {other}?)"
    return f"unknown key [{section}] {key}{did_you_mean(key, here, '{!r}')}"


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


def _keys_of_unit(unit: str) -> frozenset[str]:
    return frozenset(
        f"{section}.{f.name}"
        for section, kind in SECTIONS.items()
        for f in fields(kind)
        if f.metadata.get("unit") == unit
    )


#: Every time-valued key (``download.stall_timeout``…), from the fields' metadata.
_DURATION_KEYS = _keys_of_unit("duration")
#: Every connection count (``download.concurrency``…): ``"auto"`` or 1..4096.
_CONNECTION_KEYS = _keys_of_unit("connections")


def shown_setting(key: str, value: Any) -> Any:
    """A setting (dotted ``key``) as people read it and a config file takes it back: a
    connection count stored as 0 is ``"auto"``."""
    return "auto" if key in _CONNECTION_KEYS and value == AUTO else value


#: Whole-number keys unset by default (``None``: no bound, or DEST's recorded number).
_OPTIONAL_COUNTS = ("search.max_items", "cluster.buckets")


def _coerce(name: str, value: Any, default: Any) -> Any:
    """Turn TOML/environment values into the field's type, or name the key that is wrong."""
    if name in _DURATION_KEYS:
        return parse_duration(value, name)
    if name in _CONNECTION_KEYS:
        return parse_connections(value, name)
    if name == "download.bwlimit":
        return parse_rate(value, name)
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
    if isinstance(default, int) or (default is None and name in _OPTIONAL_COUNTS):
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
