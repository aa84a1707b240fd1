"""Single values as a config key takes them: checked, and turned into what the run uses.

Each parser takes the value and the key it came from, and raises
:class:`~stacpull.errors.ConfigError` naming that key: bounding boxes, STAC datetimes,
destination templates, durations (``500ms``, ``1h30m``), sizes (``50GB``, ``2TiB``) and
rates, positive counts and times, connection counts (``"auto"`` or 1..4096), cluster
addresses (``local:N``, ``tcp://host:port``), and :class:`Secret`, the string that never
shows itself.
Request headers have their own module, :mod:`stacpull.config.headers`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..defaults import AUTO
from ..errors import SECRETS, ConfigError

__all__ = [
    "CONNECTIONS",
    "Secret",
    "check_template",
    "load_geojson_geometry",
    "non_negative_int",
    "parse_bbox",
    "parse_cluster_address",
    "parse_connection_fields",
    "parse_connections",
    "parse_datetime_range",
    "parse_duration",
    "parse_rate",
    "parse_size",
    "positive_float",
    "positive_int",
]


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
_TEMPLATE_FIELDS = ("collection", "item", "key", "name", "year", "month", "day")


def check_template(template: str, key: str = "download.template") -> None:
    """Refuse a destination template that is not valid or whose fixed parts leave DEST
    (``../{name}``, ``/abs/{name}``, ``{collection}/../../x``) or enter stacpull's own
    ``.stacpull``: up front, before any search. What the placeholders bring (ids, names
    from the metadata) is checked file by file when the run plans them."""
    sample = dict.fromkeys(_TEMPLATE_FIELDS, "x")
    try:
        rendered = template.format(**sample)
    except (KeyError, IndexError, ValueError, AttributeError, TypeError) as exc:
        raise ConfigError(
            f"{key}: {template!r} is not a valid template ({type(exc).__name__}: {exc}); "
            f"fields: {', '.join('{' + f + '}' for f in _TEMPLATE_FIELDS)}"
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


def positive_int(name: str, value: int, most: int | None = None) -> None:
    """A count ≥ 1 and, with ``most``, at most that (a worker or a connection each: 1e20 of
    them is a hang, not a setting)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}: expected a positive integer, got {value!r}")
    if most is not None and value > most:
        raise ConfigError(f"{name}: expected an integer from 1 to {most}, got {value!r}")


def non_negative_int(name: str, value: int) -> None:
    """A count ≥ 0 (0: none, or no limit), a bool refused."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{name}: expected an integer ≥ 0, got {value!r}")


#: Field metadata of a connection count (:func:`parse_connections`): ``"auto"``, stored as
#: 0, or 1..4096; :func:`~stacpull.config.model.shown_setting` shows 0 as ``auto``.
CONNECTIONS: Mapping[str, str] = {"unit": "connections"}

#: The most a connection count may be: each one a task or a socket; 1e20 of them is a
#: hang, not a setting.
_MAX_CONNECTIONS = 4096
_WHOLE = re.compile(r"[0-9]+")


def parse_connection_fields(config: Any, section: str) -> None:
    """Check the connection counts of a config section's dataclass (its fields marked
    :data:`CONNECTIONS`), storing each as a number; ``"auto"`` given to the dataclass
    itself stays 0, as stored (``parse_connections`` refuses a 0 anyone writes)."""
    for f in fields(config):
        if f.metadata.get("unit") != "connections":
            continue
        value, key = getattr(config, f.name), f"{section}.{f.name}"
        if type(value) is int and value == AUTO:
            continue
        object.__setattr__(config, f.name, parse_connections(value, key))


def parse_connections(value: object, key: str) -> int:
    """A count of transfers or connections (``download.concurrency``, ``per_host``,
    ``segments``): ``"auto"`` (any case) is :data:`~stacpull.defaults.AUTO`, else a whole
    number from 1 to 4096, as a number or its digits. 0 is refused: it is how auto is
    stored, never a count anyone means."""
    number: int | None = None
    if isinstance(value, str):
        text = value.strip()
        if text.lower() == "auto":
            return AUTO
        number = int(text) if _WHOLE.fullmatch(text) else None
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    if number is None or not 1 <= number <= _MAX_CONNECTIONS:
        raise ConfigError(
            f'{key}: must be "auto" or a whole number from 1 to {_MAX_CONNECTIONS}, got {value!r}'
        )
    return number


def positive_float(name: str, value: float) -> None:
    # nan passes `<= 0` and disables every timer it reaches (or crashes anyio's deadline);
    # inf makes a wait endless: neither is a time a run can use.
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(f"{name}: expected a positive number, got {value!r}")


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


def parse_rate(value: str | int, key: str) -> int:
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


def load_geojson_geometry(path: str | Path) -> dict[str, Any]:
    """Read ``--intersects``: a GeoJSON geometry, Feature or single-feature FeatureCollection."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--intersects: {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--intersects: {path} is not readable GeoJSON: {exc}") from None
    if isinstance(data, dict) and data.get("type") == "FeatureCollection":
        features = data.get("features") or []
        if len(features) != 1:
            raise ConfigError(
                f"--intersects: {path} holds {len(features)} features; give exactly one geometry"
            )
        data = features[0]
    if isinstance(data, dict) and data.get("type") == "Feature":
        data = data.get("geometry")
    geometry_types = {
        "Point",
        "MultiPoint",
        "LineString",
        "MultiLineString",
        "Polygon",
        "MultiPolygon",
        "GeometryCollection",
    }
    if not isinstance(data, dict) or data.get("type") not in geometry_types:
        raise ConfigError(f"--intersects: {path} does not contain a GeoJSON geometry")
    return data


#: The most worker processes ``local:N`` starts: each is a Python process with its own
#: event loop and connections; more than this on one machine is a typo, not a plan.
_MAX_LOCAL_WORKERS = 512
#: The schemes of a Dask scheduler's address stacpull accepts (``distributed``'s TCP and TLS
#: comms; its ``inproc://`` and ``ucx://`` need no help from a command line).
_SCHEDULER_SCHEMES = ("tcp", "tls")


def parse_cluster_address(value: object, key: str = "cluster.address") -> str:
    """Where a cluster run's workers are, checked and written one way: ``local`` (a
    LocalCluster on this machine, a worker process per core), ``local:N`` (N worker
    processes, 1 to 512), or a running scheduler's ``tcp://host:port`` (``tls://`` too).
    Anything else raises :class:`ConfigError` naming ``key`` and the forms it takes."""
    forms = "local:N (N worker processes on this machine) or tcp://HOST:PORT (a scheduler)"
    text = value.strip() if isinstance(value, str) else None
    if not text:
        raise ConfigError(f"{key}: empty; expected {forms}")
    lowered = text.lower()
    if lowered == "local" or lowered.startswith("local:"):
        count = lowered.partition(":")[2]
        if lowered == "local":
            return "local"
        if _WHOLE.fullmatch(count) and 1 <= int(count) <= _MAX_LOCAL_WORKERS:
            return f"local:{int(count)}"
        raise ConfigError(
            f"{key}: local:N takes a whole number of workers from 1 to {_MAX_LOCAL_WORKERS}, "
            f"got {text!r}"
        )
    scheme = lowered.partition("://")[0] if "://" in lowered else None
    if scheme not in _SCHEDULER_SCHEMES:
        raise ConfigError(f"{key}: expected {forms}, got {text!r}")
    return _scheduler_address(text, key)


def _scheduler_address(text: str, key: str) -> str:
    """``tcp://host:port`` checked: a host, a port from 1 to 65535, nothing after it."""
    parts = urlsplit(text)
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"{key}: a scheduler address has no path or query, got {text!r}")
    if not parts.hostname:
        raise ConfigError(f"{key}: no host in {text!r} (expected {parts.scheme}://HOST:PORT)")
    try:
        port = parts.port
    except ValueError:  # not digits, or past 65535
        port = None
    if port is None or not 1 <= port <= 65535:
        given = parts.netloc.rpartition("]")[2].rpartition(":")[2]
        shown = f" ({given!r} is not one)" if given else ""
        raise ConfigError(
            f"{key}: {text!r} needs the scheduler's port from 1 to 65535{shown}, "
            f"e.g. {parts.scheme}://{parts.hostname}:8786"
        )
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme.lower()}://{host}:{port}"
