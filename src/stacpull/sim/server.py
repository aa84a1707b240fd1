"""The simulated MAAP catalogue as a real aiohttp server.

* ``/catalogue/``: STAC API 1.1 (landing page, conformance, collections, queryables, item
  search by GET and POST with opaque ``rel=next`` tokens, ``numberMatched``, a CQL2-text
  subset). The slashless ``/catalogue`` answers 503, as MAAP's load balancer does.
* ``/data/zipper/...``: product zips built on the fly, chunked, no ``Content-Length``, no
  ranges. ``/data/...``: static files with ``ETag``, ``Last-Modified``, ``Range``,
  ``If-Range`` (ETag or date; a stale validator gets the full 200) and 416.
  Paths with a ``public`` segment need no token; the rest need ``Authorization: Bearer``.
* ``/go?to=URL``: a 302 to ``URL``, for redirect tests.
* ``/realms/sim/protocol/openid-connect/token``: the OIDC endpoint of :mod:`.oidc`; data
  requests accept its access tokens until they expire (401 ``invalid_token`` after).

:class:`SimServer` runs it on 127.0.0.1 in a background thread with its own event loop,
so a test, a benchmark or ``stacpull demo`` can point any client at it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from ..headers import format_http_date, parse_range
from .catalog import AssetFile, SimCatalog, default_collections
from .content import product_zip_chunks
from .cql2 import CQL2Error, Predicate, parse_cql2
from .faults import Faults, FaultState
from .oidc import TOKEN_PATH, OIDCOptions, SimIdentity

__all__ = ["SimServer", "build_app"]

MAX_LIMIT = 500
DEFAULT_LIMIT = 10
_ZIP_CHUNK = 256 * 1024

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


@dataclass
class SimOptions:
    """Server behaviour: who may download (a fixed ``tokens`` set, or access tokens from the
    ``oidc`` endpoint), what is recorded, what goes wrong (``faults``)."""

    tokens: set[str] = field(default_factory=lambda: {"sim-token"})
    require_auth: bool = True
    log_size: int = 10_000
    latency: float = 0.0  # seconds before each data response starts, like a distant server
    faults: Faults = field(default_factory=Faults)
    oidc: OIDCOptions = field(default_factory=OIDCOptions)
    collection_search: bool = True  # False: /collections ignores q/filter/bbox/datetime


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


def _error(status: int, code: str, description: str) -> web.Response:
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


class _App:
    def __init__(self, catalog: SimCatalog, options: SimOptions) -> None:
        self.catalog = catalog
        self.options = options
        self.requests: deque[dict[str, Any]] = deque(maxlen=options.log_size)
        self.faults = FaultState(options.faults)
        self.identity = SimIdentity(options.oidc)
        self.bytes_sent = 0  # body bytes written by the data server, for soak figures
        self.sending = 0  # data responses being answered now
        self.peak_sending = 0  # the most at once: how many connections a client used
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
        return _CONFORMANCE + (_COLLECTION_SEARCH if self.options.collection_search else [])

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
        if self.options.collection_search:
            try:
                cols = [c for c in cols if self._collection_matches(c, request.query)]
            except CQL2Error as exc:
                return _error(400, "InvalidParameterValue", f"filter: {exc}")
            except ValueError as exc:
                return _error(400, "InvalidParameterValue", f"datetime: {exc}")
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
            return _error(404, "NotFound", f"collection {cid} not found")
        return web.json_response(self._collection(cid))

    def _queryable_names(self, cid: str) -> set[str]:
        spec = self.catalog.specs[cid]
        if not spec.count:
            return {"id", "collection"}
        return set(self.catalog.item(cid, 0)["properties"]) | {"id", "collection"}

    async def queryables(self, request: web.Request) -> web.Response:
        cid = request.match_info["cid"]
        if cid not in self.catalog.specs:
            return _error(404, "NotFound", f"collection {cid} not found")
        spec = self.catalog.specs[cid]
        props: dict[str, Any] = {}
        for name in sorted(self._queryable_names(cid)):
            entry: dict[str, Any] = {"title": name, "type": "string"}
            if name.endswith(("Date", "datetime")) or name in ("updated", "created"):
                entry["format"] = "date-time"
            if name in ("product:type", "productType"):
                entry["enum"] = list(spec.product_types)
            if name == "instrument":
                entry["enum"] = [spec.instrument]
            props[name] = entry
        return web.json_response(
            {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "title": f"Queryables for {cid} collection",
                "$id": f"{self.root}collections/{cid}/queryables",
                "collection": cid,
                "properties": props,
                "additionalProperties": False,
            }
        )

    async def item(self, request: web.Request) -> web.Response:
        cid, iid = request.match_info["cid"], request.match_info["iid"]
        index = self.catalog.index_of(cid, iid)
        if index is None:
            return _error(404, "NotFound", f"item {iid} not found in {cid}")
        return web.json_response(self.catalog.item(cid, index), content_type="application/geo+json")

    def _parse_query(self, params: dict[str, Any]) -> _Query:
        def listing(name: str) -> tuple[str, ...]:
            value = params.get(name)
            if value is None:
                return ()
            if isinstance(value, str):
                return tuple(v.strip() for v in value.split(",") if v.strip())
            return tuple(str(v) for v in value)

        collections = listing("collections") or tuple(self.catalog.specs)
        for cid in collections:
            if cid not in self.catalog.specs:
                raise ValueError(f"collection {cid!r} does not exist")
        bbox: tuple[float, float, float, float] | None = None
        raw_bbox = params.get("bbox")
        if raw_bbox is not None:
            nums = [
                float(x) for x in (raw_bbox.split(",") if isinstance(raw_bbox, str) else raw_bbox)
            ]
            if len(nums) == 6:
                nums = [nums[0], nums[1], nums[3], nums[4]]
            if len(nums) != 4:
                raise ValueError("bbox must have 4 or 6 numbers")
            bbox = (nums[0], nums[1], nums[2], nums[3])
        intersects = params.get("intersects")
        if intersects is not None:
            geom = json.loads(intersects) if isinstance(intersects, str) else intersects
            bbox = _geometry_bbox(geom)
        start = end = None
        dt = params.get("datetime")
        if dt:
            parts = str(dt).split("/")
            if len(parts) == 1:
                start = end = _parse_time(parts[0])
            elif len(parts) == 2:
                start = None if parts[0] in ("", "..") else _parse_time(parts[0])
                end = None if parts[1] in ("", "..") else _parse_time(parts[1])
            else:
                raise ValueError(f"invalid datetime {dt!r}")
        predicate = None
        text = params.get("filter")
        if text:
            if not isinstance(text, str):
                raise ValueError("only filter-lang=cql2-text is supported")
            known: set[str] = set()
            for cid in collections:
                known |= self._queryable_names(cid)
            predicate = parse_cql2(text, known.__contains__)
        limit = int(params.get("limit", DEFAULT_LIMIT))
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
        return _Query(
            collections, listing("ids"), bbox, start, end, predicate, min(limit, MAX_LIMIT), key
        )

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
        if request.method == "POST":
            try:
                params = await request.json()
            except (json.JSONDecodeError, UnicodeDecodeError):
                return _error(400, "InvalidParameterValue", "request body is not JSON")
            if not isinstance(params, dict):
                return _error(400, "InvalidParameterValue", "request body must be a JSON object")
        else:
            params = dict(request.query)
        lang = params.get("filter-lang") or params.get("filter_lang")
        if lang and lang != "cql2-text":
            return _error(
                400,
                "InvalidParameterValue",
                f"filter-lang {lang!r} is not supported (use cql2-text)",
            )
        try:
            q = self._parse_query(params)
            ci = pos = 0
            token = params.get("token")
            if token:
                state = json.loads(base64.urlsafe_b64decode(str(token).encode()))
                ci, pos = int(state["c"]), int(state["p"])
        except CQL2Error as exc:
            return _error(400, "InvalidParameterValue", f"invalid filter: {exc}")
        except (ValueError, KeyError, TypeError) as exc:
            return _error(400, "InvalidParameterValue", str(exc))
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
            token = base64.urlsafe_b64encode(
                json.dumps({"c": next_state[0], "p": next_state[1]}).encode()
            ).decode()
            if request.method == "POST":
                links.append(
                    {
                        "rel": "next",
                        "href": f"{self.root}search",
                        "method": "POST",
                        "body": {"token": token},
                        "merge": True,
                        "type": "application/geo+json",
                    }
                )
            else:
                query = {k: v for k, v in request.query.items() if k != "token"}
                query["token"] = token
                url = request.url.with_query(query)
                links.append(
                    {
                        "rel": "next",
                        "href": f"{self.root}search?{url.raw_query_string}",
                        "method": "GET",
                        "type": "application/geo+json",
                    }
                )
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

    # -- data -------------------------------------------------------------------------
    async def redirect(self, request: web.Request) -> web.Response:
        target = request.query.get("to")
        if not target:
            return _error(400, "MissingParameter", "to= is required")
        self._log(request)
        raise web.HTTPFound(target)

    def _log(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else None
        ok = token is not None and (
            token in self.options.tokens or self.identity.check(token) == "ok"
        )
        self.requests.append(
            {
                "method": request.method,
                "path": request.path,
                "range": request.headers.get("Range"),
                "if_range": request.headers.get("If-Range"),
                "auth": bool(header),
                "token_ok": ok,
                "token": token,
                "at": time.monotonic(),
            }
        )
        return ok

    async def data(self, request: web.Request) -> web.StreamResponse:
        authorised = self._log(request)
        public = "public" in request.path.split("/")
        if self.options.require_auth and not public and not authorised:
            challenge = 'Bearer realm="maap"'
            if request.headers.get("Authorization"):
                challenge += ', error="invalid_token"'
            return web.Response(
                status=401, text="Unauthorized", headers={"WWW-Authenticate": challenge}
            )
        resolved = self.catalog.resolve(request.path)
        if resolved is None:
            return _error(404, "NotFound", f"no file at {request.path}")
        slot, f = resolved
        if self.faults.not_ready(slot):
            return _error(404, "NotFound", "the product is not available yet")
        status = self.faults.error_status()
        if status is not None:
            retry_after = self.options.faults.retry_after
            headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
            return web.Response(status=status, text="Service Unavailable", headers=headers)
        item_id, key = slot.split("/", 1)
        if self.options.latency > 0:
            await asyncio.sleep(self.options.latency)
        if self.catalog.knobs.tamper.get(slot) == "login":
            return web.Response(
                text="<html><body><form>Sign in to MAAP</form></body></html>",
                content_type="text/html",
            )
        cut = self.catalog.take_cut(item_id, key)
        stall = self.catalog.take_stall(item_id, key)
        self.sending += 1
        self.peak_sending = max(self.peak_sending, self.sending)
        try:
            if f.kind == "zipper":
                truncate = self.catalog.knobs.tamper.get(slot) == "truncate"
                return await self._zipper(
                    request, f, truncate or self.faults.truncate(), cut, stall
                )
            return await self._static(request, f, cut, stall)
        except ConnectionResetError:
            return web.Response(status=499)  # the client left mid-body; nothing more to send
        finally:
            self.sending -= 1
            if self.faults.change():
                self.catalog.bump(item_id, key)

    async def _pump(
        self,
        request: web.Request,
        resp: web.StreamResponse,
        pieces: Iterator[bytes],
        length: int,
        cut: int | None,
        stall: tuple[int, float] | None,
    ) -> bool:
        """Write ``pieces`` under the fault knobs; ``False`` if the connection was dropped.

        ``length`` is the body size (estimated for the zipper), for random cut points.
        """
        if cut is None:
            cut = self.faults.cut_point(length)
        if stall is None:
            point = self.faults.stall_point(length)
            stall = None if point is None else (point, self.options.faults.stall_seconds)
        rate = self.options.faults.rate_limit
        began = asyncio.get_running_loop().time()
        sent = 0
        for chunk in pieces:
            for i in range(0, len(chunk), _ZIP_CHUNK):
                piece = chunk[i : i + _ZIP_CHUNK]
                sent = await self._write_one(request, resp, piece, sent, cut, stall, rate, began)
                if sent < 0:
                    return False
            await asyncio.sleep(0)
        return True

    async def _write_one(
        self,
        request: web.Request,
        resp: web.StreamResponse,
        data: bytes,
        sent: int,
        cut: int | None,
        stall: tuple[int, float] | None,
        rate: int,
        began: float,
    ) -> int:
        """Write ``data`` (split for the rate limit); the new byte count, or -1 after a cut."""
        step = max(1, rate // 20) if rate else len(data) or 1
        for i in range(0, len(data), step):
            part = data[i : i + step]
            if stall is not None and sent <= stall[0] < sent + len(part):
                await resp.write(part[: stall[0] - sent])
                self.bytes_sent += stall[0] - sent
                await asyncio.sleep(stall[1])
                part = part[stall[0] - sent :]
                sent = stall[0]
            if cut is not None and sent + len(part) > cut:
                await resp.write(part[: max(0, cut - sent)])
                self.bytes_sent += max(0, cut - sent)
                await _abort(request)
                return -1
            await resp.write(part)
            sent += len(part)
            self.bytes_sent += len(part)
            if rate:
                ahead = sent / rate - (asyncio.get_running_loop().time() - began)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        return sent

    async def _zipper(
        self,
        request: web.Request,
        f: AssetFile,
        truncate: bool,
        cut: int | None,
        stall: tuple[int, float] | None,
    ) -> web.StreamResponse:
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/zip"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        if request.method == "HEAD":
            return resp

        def pieces() -> Iterator[bytes]:
            sent = 0
            for chunk in product_zip_chunks(f.item_id, f.seed, f.size, corrupt=f.corrupt):
                if truncate and sent + len(chunk) >= f.size // 2:
                    yield chunk[: max(0, f.size // 2 - sent)]
                    return  # ends "cleanly": a zip with no central directory
                yield chunk
                sent += len(chunk)

        if await self._pump(request, resp, pieces(), f.size, cut, stall):
            await resp.write_eof()
        return resp

    async def _static(
        self,
        request: web.Request,
        f: AssetFile,
        cut: int | None,
        stall: tuple[int, float] | None,
    ) -> web.StreamResponse:
        body = f.body
        size = len(body)
        etag, modified = f.etag, format_http_date(f.last_modified)
        headers = {
            "ETag": etag,
            "Last-Modified": modified,
            "Accept-Ranges": "bytes",
            "Content-Type": f.media_type,
        }
        status, first, last = 200, 0, size - 1
        range_value = request.headers.get("Range")
        if range_value:
            if_range = request.headers.get("If-Range")
            fresh = if_range is None or if_range in (etag, modified)
            if fresh:
                try:
                    span = parse_range(range_value, size)
                except ValueError:
                    return web.Response(
                        status=416, headers={"Content-Range": f"bytes */{size}", **headers}
                    )
                if span is not None:
                    status, (first, last) = 206, span
                    headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        payload = body[first : last + 1]
        resp = web.StreamResponse(status=status, headers=headers)
        resp.content_length = len(payload)
        await resp.prepare(request)
        if request.method == "HEAD":
            return resp
        if await self._pump(request, resp, iter((payload,)), len(payload), cut, stall):
            await resp.write_eof()
        return resp


async def _abort(request: web.Request) -> None:
    """Drop the connection mid-body, as a flaky link or load balancer does.

    ``close()`` (FIN after the bytes already written), not ``abort()`` (RST): a reset makes
    the client's kernel discard data it has not read yet, so the cut point would be random.
    """
    # Give the client time to read the prefix: aiohttp raises a pending payload error
    # before handing over bytes still buffered, so prefix + FIN in one burst would lose them.
    await asyncio.sleep(0.15)
    transport = request.transport
    if transport is not None:
        transport.close()


def build_app(
    catalog: SimCatalog, options: SimOptions | None = None
) -> tuple[web.Application, _App]:
    """The aiohttp application and its state (``state.requests`` records data requests)."""
    state = _App(catalog, options or SimOptions())
    app = web.Application()
    app.router.add_get("/catalogue", state.slashless)
    app.router.add_get("/catalogue/", state.landing)
    app.router.add_get("/catalogue/conformance", state.conformance)
    app.router.add_get("/catalogue/collections", state.collections)
    app.router.add_get("/catalogue/collections/{cid}", state.collection)
    app.router.add_get("/catalogue/collections/{cid}/queryables", state.queryables)
    app.router.add_get("/catalogue/collections/{cid}/items/{iid}", state.item)
    app.router.add_route("*", "/catalogue/search", state.search)
    app.router.add_get("/go", state.redirect)
    app.router.add_get("/data/{tail:.*}", state.data)
    app.router.add_post(TOKEN_PATH, state.identity.endpoint)
    return app, state


class SimServer:
    """The simulated catalogue on 127.0.0.1, served from a background thread.

    >>> with SimServer() as sim:            # doctest: +SKIP
    ...     print(sim.catalog_url)          # http://127.0.0.1:PORT/catalogue/
    """

    def __init__(
        self,
        catalog: SimCatalog | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        options: SimOptions | None = None,
    ) -> None:
        self.host = host
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self._sock.listen(256)
        self.port: int = self._sock.getsockname()[1]
        self.catalog = catalog or SimCatalog(default_collections())
        self.catalog.base_url = f"http://{host}:{self.port}"
        self.options = options or SimOptions()
        self._app, self.state = build_app(self.catalog, self.options)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    @property
    def base_url(self) -> str:
        return self.catalog.base_url

    @property
    def catalog_url(self) -> str:
        """The STAC API root, with its trailing slash."""
        return f"{self.base_url}/catalogue/"

    def set_faults(self, faults: Faults) -> None:
        """Change the fault knobs of a running server (the network calms down, or worsens)."""
        self.options.faults = faults
        self.state.faults = FaultState(faults)

    @property
    def fault_counts(self) -> dict[str, int]:
        """Faults injected so far: cuts, status_503, status_429, not_ready, changes…"""
        return dict(self.state.faults.counts)

    @property
    def peak_sending(self) -> int:
        """The most data responses this server was answering at once."""
        return self.state.peak_sending

    @property
    def bytes_sent(self) -> int:
        """Body bytes the data server has written (for re-download figures)."""
        return self.state.bytes_sent

    @property
    def requests(self) -> deque[dict[str, Any]]:
        """Data requests received: method, path, range, if_range, auth, token_ok, token, at
        (``time.monotonic()`` on arrival)."""
        return self.state.requests

    @property
    def token_url(self) -> str:
        """The OIDC token endpoint (``--token-url``)."""
        return f"{self.base_url}{TOKEN_PATH}"

    @property
    def identity(self) -> SimIdentity:
        """The token endpoint's state: ``revoke()``, ``grant()``, ``expire_access_tokens()``,
        ``log`` of token requests."""
        return self.state.identity

    async def serve(self) -> None:
        """Serve on the current event loop until cancelled (``stacpull sim serve``)."""
        runner = web.AppRunner(self._app, access_log=None, handler_cancellation=True)
        await runner.setup()
        site = web.SockSite(runner, self._sock)
        await site.start()
        self._stop = asyncio.Event()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self.serve())
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._ready.set()
        finally:
            loop.close()

    def start(self) -> SimServer:
        """Start serving in a daemon thread; returns once the socket accepts requests."""
        self._thread = threading.Thread(target=self._thread_main, name="stacpull-sim", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise RuntimeError(f"simulated catalogue failed to start: {self._error}")
        return self

    def stop(self) -> None:
        """Stop serving and join the thread."""
        if self._loop is not None and self._stop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)
        self._sock.close()

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
