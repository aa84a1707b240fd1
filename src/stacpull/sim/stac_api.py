"""The simulated catalogue's STAC API: landing page, conformance, collections (with MAAP's
collection search), queryables, items and item search (GET and POST, opaque ``rel=next``
tokens, ``numberMatched``, a CQL2-text subset).

Answers are computed from :class:`~.catalog.SimCatalog` on every request; nothing here
serves file bytes (that is :mod:`.files`).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from .catalog import SimCatalog
from .cql2 import CQL2Error, Predicate, parse_cql2

__all__ = ["StacApi", "error_response"]

_MAX_LIMIT = 500
_DEFAULT_LIMIT = 10

_CONFORMANCE = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0/collections",
    "https://api.stacspec.org/v1.0.0/ogcapi-features",
    "https://api.stacspec.org/v1.0.0-rc.2/item-search#filter",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
]
_COLLECTION_SEARCH = [
    "https://api.stacspec.org/v1.0.0-rc.1/collection-search",
    "https://api.stacspec.org/v1.0.0-rc.1/collection-search#free-text",
    "https://api.stacspec.org/v1.0.0-rc.1/collection-search#filter",
]


@dataclass(frozen=True, slots=True)
class _Query:
    collections: tuple[str, ...]
    ids: tuple[str, ...]
    bbox: tuple[float, float, float, float] | None
    start: datetime | None
    end: datetime | None
    predicate: Predicate | None
    limit: int
    key: str


def error_response(status: int, code: str, description: str) -> web.Response:
    """An OGC API error document, as MAAP answers a request it cannot serve."""
    return web.json_response({"code": code, "description": description}, status=status)


def _parse_time(text: str) -> datetime:
    stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def _geometry_bbox(geom: dict[str, Any]) -> tuple[float, float, float, float]:
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

    if geom.get("type") == "GeometryCollection":
        for g in geom.get("geometries", []):
            walk(g.get("coordinates"))
    else:
        walk(geom.get("coordinates"))
    if not xs:
        raise ValueError("geometry has no coordinates")
    return min(xs), min(ys), max(xs), max(ys)


class StacApi:
    """The request handlers of ``/catalogue/``; ``collection_search`` turns MAAP's
    collection search on (``q``, ``filter``, ``bbox``, ``datetime`` on ``/collections``)."""

    def __init__(self, catalog: SimCatalog, *, collection_search: bool = True) -> None:
        self.catalog = catalog
        self.collection_search = collection_search
        self._matched: dict[str, int] = {}

    @property
    def root(self) -> str:
        return f"{self.catalog.base_url}/catalogue/"

    # -- STAC API ---------------------------------------------------------------------
    async def landing(self, request: web.Request) -> web.Response:
        root = self.root
        return web.json_response(
            {
                "type": "Catalog",
                "id": "fedeo",
                "stac_version": "1.1.0",
                "title": "Simulated ESA MAAP catalogue (stacpull.sim)",
                "description": "A deterministic stand-in for catalog.maap.eo.esa.int",
                "conformsTo": self.conforms_to,
                "links": [
                    {"rel": "self", "href": root, "type": "application/json"},
                    {"rel": "root", "href": root, "type": "application/json"},
                    {
                        "rel": "conformance",
                        "href": f"{root}conformance",
                        "type": "application/json",
                    },
                    {"rel": "data", "href": f"{root}collections", "type": "application/json"},
                    {
                        "rel": "search",
                        "href": f"{root}search",
                        "type": "application/geo+json",
                        "method": "GET",
                    },
                    {
                        "rel": "search",
                        "href": f"{root}search",
                        "type": "application/geo+json",
                        "method": "POST",
                    },
                ]
                + [
                    {"rel": "child", "href": f"{root}collections/{cid}", "type": "application/json"}
                    for cid in self.catalog.specs
                ],
            }
        )

    async def slashless(self, request: web.Request) -> web.Response:
        return web.Response(status=503, text="Service Unavailable")

    async def conformance(self, request: web.Request) -> web.Response:
        return web.json_response({"conformsTo": self.conforms_to})

    @property
    def conforms_to(self) -> list[str]:
        return _CONFORMANCE + (_COLLECTION_SEARCH if self.collection_search else [])

    def _collection(self, cid: str) -> dict[str, Any]:
        spec = self.catalog.specs[cid]
        first = self.catalog.item(cid, 0) if spec.count else None
        end = spec.start + spec.step * max(spec.count - 1, 0) + spec.duration
        root = self.root
        return {
            "type": "Collection",
            "id": cid,
            "stac_version": "1.1.0",
            "title": spec.title or cid,
            "description": f"Simulated {spec.title or cid}",
            "license": "other",
            "extent": {
                "spatial": {"bbox": [[-180, -90, 180, 90]]},
                "temporal": {
                    "interval": [
                        [
                            spec.start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                            end.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        ]
                    ]
                },
            },
            "summaries": {"platform": [spec.platform], "instruments": [spec.instrument]},
            "providers": [{"name": "ESA MAAP", "roles": ["host"]}],
            "item_assets": {
                k: {"type": v.get("type"), "roles": v.get("roles")}
                for k, v in (first or {}).get("assets", {}).items()
            },
            "links": [
                {"rel": "self", "href": f"{root}collections/{cid}", "type": "application/json"},
                {"rel": "root", "href": root, "type": "application/json"},
                {"rel": "parent", "href": root, "type": "application/json"},
                {
                    "rel": "items",
                    "href": f"{root}collections/{cid}/items",
                    "type": "application/geo+json",
                },
                {
                    "rel": "http://www.opengis.net/def/rel/ogc/1.0/queryables",
                    "href": f"{root}collections/{cid}/queryables",
                    "type": "application/schema+json",
                },
            ],
        }

    def _collection_matches(self, col: dict[str, Any], query: Any) -> bool:
        """MAAP's collection search: ``q`` free text, a CQL2 ``filter`` on title, platform
        and organisationName, ``bbox`` and ``datetime`` overlapping the extent."""
        text = query.get("q", "").lower()
        if text:
            haystack = " ".join(
                [
                    col["id"],
                    col.get("title", ""),
                    col.get("description", ""),
                    *col["summaries"].get("platform", []),
                ]
            ).lower()
            if not all(word in haystack for word in text.split()):
                return False
        if query.get("filter"):
            props = {
                "id": col["id"],
                "title": col.get("title", ""),
                "platform": col["summaries"]["platform"][0],
                "organisationName": col["providers"][0]["name"],
            }
            predicate = parse_cql2(query["filter"], props.__contains__)
            if not predicate(props):
                return False
        if query.get("datetime"):
            start, slash, end = query["datetime"].partition("/")
            end = end if slash else start  # an instant
            first, last = (_parse_time(t) for t in col["extent"]["temporal"]["interval"][0])
            if start not in ("", "..") and _parse_time(start) > last:
                return False
            if end not in ("", "..") and _parse_time(end) < first:
                return False
        return True

    async def collections(self, request: web.Request) -> web.Response:
        cols = [self._collection(cid) for cid in self.catalog.specs]
        if self.collection_search:
            try:
                cols = [c for c in cols if self._collection_matches(c, request.query)]
            except CQL2Error as exc:
                return error_response(400, "InvalidParameterValue", f"filter: {exc}")
            except ValueError as exc:
                return error_response(400, "InvalidParameterValue", f"datetime: {exc}")
        return web.json_response(
            {
                "collections": cols,
                "numberMatched": len(cols),
                "numberReturned": len(cols),
                "links": [
                    {"rel": "self", "href": f"{self.root}collections"},
                    {"rel": "root", "href": self.root},
                ],
            }
        )

    async def collection(self, request: web.Request) -> web.Response:
        cid = request.match_info["cid"]
        if cid not in self.catalog.specs:
            return error_response(404, "NotFound", f"collection {cid} not found")
        return web.json_response(self._collection(cid))

    def _queryable_names(self, cid: str) -> set[str]:
        spec = self.catalog.specs[cid]
        if not spec.count:
            return {"id", "collection"}
        return set(self.catalog.item(cid, 0)["properties"]) | {"id", "collection"}

    async def queryables(self, request: web.Request) -> web.Response:
        cid = request.match_info["cid"]
        if cid not in self.catalog.specs:
            return error_response(404, "NotFound", f"collection {cid} not found")
        return web.json_response(
            {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "title": f"Queryables for {cid} collection",
                "$id": f"{self.root}collections/{cid}/queryables",
                "collection": cid,
                "properties": self.catalog.queryables(cid),
                "additionalProperties": False,
            }
        )

    async def item(self, request: web.Request) -> web.Response:
        cid, iid = request.match_info["cid"], request.match_info["iid"]
        index = self.catalog.index_of(cid, iid)
        if index is None:
            return error_response(404, "NotFound", f"item {iid} not found in {cid}")
        record = self.catalog.record(cid, index, request.query)  # a metadata_* asset's URL
        if record is not None:
            return web.Response(body=record[0], headers={"Content-Type": record[1]})
        return web.json_response(self.catalog.item(cid, index), content_type="application/geo+json")

    def _parse_query(self, params: dict[str, Any]) -> _Query:
        collections = _listing(params, "collections") or tuple(self.catalog.specs)
        for cid in collections:
            if cid not in self.catalog.specs:
                raise ValueError(f"collection {cid!r} does not exist")
        bbox = _query_bbox(params)
        start, end = _time_range(params.get("datetime"))
        predicate = None
        text = params.get("filter")
        if text:
            if not isinstance(text, str):
                raise ValueError("only filter-lang=cql2-text is supported")
            known: set[str] = set()
            for cid in collections:
                known |= self._queryable_names(cid)
            predicate = parse_cql2(text, known.__contains__)
        limit = int(params.get("limit", _DEFAULT_LIMIT))
        if limit < 1:
            raise ValueError("limit must be ≥ 1")
        key = json.dumps(
            {
                k: params.get(k)
                for k in ("collections", "ids", "bbox", "intersects", "datetime", "filter")
            },
            sort_keys=True,
            default=str,
        )
        ids = _listing(params, "ids")
        return _Query(collections, ids, bbox, start, end, predicate, min(limit, _MAX_LIMIT), key)

    def _matches(self, q: _Query, item: dict[str, Any]) -> bool:
        if q.ids and item.get("id") not in q.ids:
            return False
        if q.bbox is not None:
            w, s, e, n = item.get("bbox", [0, 0, 0, 0])[:4]
            qw, qs, qe, qn = q.bbox
            if e < qw or w > qe or n < qs or s > qn:
                return False
        props = item.get("properties", {})
        if q.start is not None or q.end is not None:
            begin = _parse_time(props.get("start_datetime") or props["datetime"])
            finish = _parse_time(props.get("end_datetime") or props["datetime"])
            if q.start is not None and finish < q.start:
                return False
            if q.end is not None and begin > q.end:
                return False
        if q.predicate is not None:
            flat = {**props, "id": item.get("id"), "collection": item.get("collection")}
            if not q.predicate(flat):
                return False
        return True

    def _scan(self, q: _Query, ci: int, pos: int) -> Iterator[tuple[int, int, dict[str, Any]]]:
        for c in range(ci, len(q.collections)):
            cid = q.collections[c]
            if q.ids:
                spec = self.catalog.specs[cid]
                positions = sorted(
                    {i for i in (self.catalog.index_of(cid, x) for x in q.ids) if i is not None}
                    | set(range(spec.count, self.catalog.count(cid)))
                )
                for p in positions:
                    if c == ci and p < pos:
                        continue
                    item = (
                        self.catalog.item(cid, p)
                        if p < spec.count
                        else self.catalog.knobs.extra[cid][p - spec.count]
                    )
                    if self._matches(q, item):
                        yield c, p, item
                continue
            for p, item in self.catalog.iter_items(cid, pos if c == ci else 0):
                if self._matches(q, item):
                    yield c, p, item

    def _number_matched(self, q: _Query) -> int:
        # Counted once per query and catalogue state: a removed, added or new item changes
        # the count as on a real catalogue (a mirror trusts it to know its listing whole).
        knobs = self.catalog.knobs
        state = (
            len(knobs.removed),
            tuple(sorted((c, len(extra)) for c, extra in knobs.extra.items())),
            tuple(spec.count for spec in self.catalog.specs.values()),
        )
        key = f"{q.key}|{state}"
        if key not in self._matched:
            simple = not (q.ids or q.bbox or q.start or q.end or q.predicate)
            self._matched[key] = (
                sum(self.catalog.count(c) for c in q.collections)
                if simple
                else sum(1 for _ in self._scan(q, 0, 0))
            )
        return self._matched[key]

    async def search(self, request: web.Request) -> web.Response:
        params = await _search_params(request)
        if isinstance(params, web.Response):
            return params
        try:
            q = self._parse_query(params)
            ci = pos = 0
            token = params.get("token")
            if token:
                state = json.loads(base64.urlsafe_b64decode(str(token).encode()))
                ci, pos = int(state["c"]), int(state["p"])
        except CQL2Error as exc:
            return error_response(400, "InvalidParameterValue", f"invalid filter: {exc}")
        except (ValueError, KeyError, TypeError) as exc:
            return error_response(400, "InvalidParameterValue", str(exc))
        features: list[dict[str, Any]] = []
        next_state: tuple[int, int] | None = None
        for c, p, item in self._scan(q, ci, pos):
            if len(features) == q.limit:
                next_state = (c, p)
                break
            features.append(item)
        links: list[dict[str, Any]] = [
            {"rel": "root", "href": self.root, "type": "application/json"}
        ]
        if next_state is not None:
            links.append(self._next_link(request, next_state))
        return web.json_response(
            {
                "type": "FeatureCollection",
                "features": features,
                "links": links,
                "numberMatched": self._number_matched(q),
                "numberReturned": len(features),
            },
            content_type="application/geo+json",
        )

    def _next_link(self, request: web.Request, state: tuple[int, int]) -> dict[str, Any]:
        """The ``rel=next`` link to the page from ``state`` (collection, position): a POST
        body to merge for a POST search, the same query with a new token for a GET."""
        token = base64.urlsafe_b64encode(json.dumps({"c": state[0], "p": state[1]}).encode())
        if request.method == "POST":
            return {
                "rel": "next",
                "href": f"{self.root}search",
                "method": "POST",
                "body": {"token": token.decode()},
                "merge": True,
                "type": "application/geo+json",
            }
        query = {k: v for k, v in request.query.items() if k != "token"}
        query["token"] = token.decode()
        url = request.url.with_query(query)
        return {
            "rel": "next",
            "href": f"{self.root}search?{url.raw_query_string}",
            "method": "GET",
            "type": "application/geo+json",
        }


async def _search_params(request: web.Request) -> dict[str, Any] | web.Response:
    """A search's parameters (the JSON body of a POST, the query of a GET), or the 400."""
    if request.method == "POST":
        try:
            params = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return error_response(400, "InvalidParameterValue", "request body is not JSON")
        if not isinstance(params, dict):
            return error_response(
                400, "InvalidParameterValue", "request body must be a JSON object"
            )
    else:
        params = dict(request.query)
    lang = params.get("filter-lang") or params.get("filter_lang")
    if lang and lang != "cql2-text":
        return error_response(
            400, "InvalidParameterValue", f"filter-lang {lang!r} is not supported (use cql2-text)"
        )
    return params


def _listing(params: dict[str, Any], name: str) -> tuple[str, ...]:
    """A list parameter, comma-separated (GET) or a JSON array (POST)."""
    value = params.get(name)
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return tuple(str(v) for v in value)


def _query_bbox(params: dict[str, Any]) -> tuple[float, float, float, float] | None:
    """The search box: ``bbox`` (4 or 6 numbers), or the box around ``intersects``."""
    bbox: tuple[float, float, float, float] | None = None
    raw_bbox = params.get("bbox")
    if raw_bbox is not None:
        nums = [float(x) for x in (raw_bbox.split(",") if isinstance(raw_bbox, str) else raw_bbox)]
        if len(nums) == 6:
            nums = [nums[0], nums[1], nums[3], nums[4]]
        if len(nums) != 4:
            raise ValueError("bbox must have 4 or 6 numbers")
        bbox = (nums[0], nums[1], nums[2], nums[3])
    intersects = params.get("intersects")
    if intersects is not None:
        geom = json.loads(intersects) if isinstance(intersects, str) else intersects
        bbox = _geometry_bbox(geom)
    return bbox


def _time_range(dt: Any) -> tuple[datetime | None, datetime | None]:
    """``datetime``: an instant, or an interval with open ends (``..`` or empty)."""
    if not dt:
        return None, None
    parts = str(dt).split("/")
    if len(parts) == 1:
        return _parse_time(parts[0]), _parse_time(parts[0])
    if len(parts) == 2:
        start = None if parts[0] in ("", "..") else _parse_time(parts[0])
        end = None if parts[1] in ("", "..") else _parse_time(parts[1])
        return start, end
    raise ValueError(f"invalid datetime {dt!r}")
