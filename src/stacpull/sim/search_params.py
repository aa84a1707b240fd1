"""The parameters of an item search, read as strictly as a STAC API validator expects:
RFC 3339 datetimes (``T``/``Z`` in either case, an offset with its colon, no bare dates),
intervals with at most one open end, bounding boxes whose south is not north of their
north, and ``bbox`` or ``intersects``, never both. Each refusal is a :class:`ValueError`
whose message the server sends back in its 400. A POST search's body is also written back
as GET parameters here, for the ``rel=next`` links that must work as a plain GET.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

__all__ = ["as_get_query", "filter_lang", "listing", "parse_time", "query_bbox", "time_range"]

_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})")
_OPEN = ("", "..")


def parse_time(text: str) -> datetime:
    """A timestamp the catalogue itself wrote (items, extents), read leniently."""
    stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def _rfc3339(text: str) -> datetime:
    """A timestamp a client sent: RFC 3339 only (``1985-04-12t23:20:50.5z`` included)."""
    if not _RFC3339.fullmatch(text):
        raise ValueError(f"invalid datetime {text!r}: expected RFC 3339, e.g. 2025-09-29T00:00:00Z")
    try:
        return parse_time(text.upper())
    except ValueError as exc:
        raise ValueError(f"invalid datetime {text!r}: {exc}") from exc


def time_range(dt: Any) -> tuple[datetime | None, datetime | None]:
    """``datetime``: an instant, or an interval with one open end at most (``..`` or empty)."""
    if dt is None or dt == "":
        return None, None
    if not isinstance(dt, str):
        raise ValueError(f"invalid datetime {dt!r}: expected a string")
    parts = dt.split("/")
    if len(parts) == 1:
        stamp = _rfc3339(parts[0])
        return stamp, stamp
    if len(parts) != 2 or (parts[0] in _OPEN and parts[1] in _OPEN):
        raise ValueError(f"invalid datetime interval {dt!r}: give a start, an end, or both")
    start = None if parts[0] in _OPEN else _rfc3339(parts[0])
    end = None if parts[1] in _OPEN else _rfc3339(parts[1])
    if start is not None and end is not None and start > end:
        raise ValueError(f"invalid datetime interval {dt!r}: the start is after the end")
    return start, end


def _geometry_bbox(geom: Any) -> tuple[float, float, float, float]:
    """The bounding box of any GeoJSON geometry (intersects is approximated by boxes)."""
    xs: list[float] = []
    ys: list[float] = []

    def walk(node: Any) -> None:
        if isinstance(node, list | tuple) and node and isinstance(node[0], int | float):
            xs.append(float(node[0]))
            ys.append(float(node[1]))
        elif isinstance(node, list | tuple):
            for child in node:
                walk(child)

    if not isinstance(geom, dict):
        raise ValueError("intersects must be a GeoJSON geometry object")
    if geom.get("type") == "GeometryCollection":
        for g in geom.get("geometries", []):
            walk(g.get("coordinates"))
    else:
        walk(geom.get("coordinates"))
    if not xs:
        raise ValueError("intersects: the geometry has no coordinates")
    return min(xs), min(ys), max(xs), max(ys)


def _box(raw: Any, *, from_get: bool) -> tuple[float, float, float, float]:
    if from_get and isinstance(raw, str):
        raw = raw.split(",")
    elif not isinstance(raw, list):
        raise ValueError("bbox must be a JSON array of numbers in a POST body")
    try:
        nums = [float(x) for x in raw]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"bbox must be numbers: {raw!r}") from exc
    if len(nums) == 6:
        nums = [nums[0], nums[1], nums[3], nums[4]]
    if len(nums) != 4:
        raise ValueError("bbox must have 4 or 6 numbers")
    west, south, east, north = nums
    if south > north:
        raise ValueError(f"bbox south ({south:g}) is north of its north ({north:g})")
    if not (-90 <= south <= 90 and -90 <= north <= 90 and min(west, east) >= -180):
        raise ValueError("bbox latitudes must lie in [-90, 90], longitudes in [-180, 180]")
    if max(west, east) > 180:
        raise ValueError("bbox latitudes must lie in [-90, 90], longitudes in [-180, 180]")
    return west, south, east, north


def query_bbox(
    params: dict[str, Any], *, from_get: bool
) -> tuple[float, float, float, float] | None:
    """The search box: ``bbox`` (4 or 6 numbers), or the box around ``intersects``."""
    raw_bbox, intersects = params.get("bbox"), params.get("intersects")
    if raw_bbox is not None and intersects is not None:
        raise ValueError("give bbox or intersects, not both")
    if raw_bbox is not None:
        return _box(raw_bbox, from_get=from_get)
    if intersects is not None:
        try:
            geom = json.loads(intersects) if isinstance(intersects, str) else intersects
        except json.JSONDecodeError as exc:
            raise ValueError(f"intersects is not GeoJSON: {exc}") from exc
        return _geometry_bbox(geom)
    return None


def listing(params: dict[str, Any], name: str) -> tuple[str, ...]:
    """A list parameter, comma-separated (GET) or a JSON array (POST)."""
    value = params.get(name)
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if not isinstance(value, list):
        raise ValueError(f"{name} must be a list of strings")
    return tuple(str(v) for v in value)


def filter_lang(params: dict[str, Any]) -> str:
    """The filter's language: as named, else JSON for an object and text for a string."""
    lang = params.get("filter-lang") or params.get("filter_lang")
    if lang:
        return str(lang)
    return "cql2-json" if isinstance(params.get("filter"), dict) else "cql2-text"


def as_get_query(params: dict[str, Any], lang: str) -> dict[str, str]:
    """A search's parameters (a GET's, or a POST body's) as GET query parameters."""
    query: dict[str, str] = {}
    for name in ("collections", "ids", "bbox"):
        value = params.get(name)
        if isinstance(value, list):
            query[name] = ",".join(str(v) for v in value)
        elif value is not None:
            query[name] = str(value)
    for name in ("intersects", "filter"):
        value = params.get(name)
        if value is not None:
            query[name] = value if isinstance(value, str) else json.dumps(value)
    if "filter" in query:
        query["filter-lang"] = lang
    for name in ("datetime", "limit"):
        if params.get(name) is not None:
            query[name] = str(params[name])
    return query
