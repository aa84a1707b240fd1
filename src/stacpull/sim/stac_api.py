"""The simulated catalogue's STAC API: landing page, OpenAPI ``service-desc``, conformance,
collections (with MAAP's collection search), queryables, a collection's items and item
search (GET and POST, opaque ``rel=next`` tokens, ``numberMatched``, CQL2 text and JSON),
strict enough that ``stac-api-validator`` finds nothing to report (``scripts/validate-sim``).

Answers are computed from :class:`~.catalog.SimCatalog` on every request; nothing here
serves file bytes (that is :mod:`.files`).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import chain
from typing import Any

from aiohttp import web

from .catalog import SimCatalog
from .cql2 import CQL2Error, Predicate, parse_cql2, parse_filter
from .openapi import openapi_document
from .results import ResultOrder
from .search_params import as_get_query, filter_lang, listing, parse_time, query_bbox, time_range

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
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-operators",
    "http://www.opengis.net/spec/cql2/1.0/conf/temporal-operators",
]
_QUERYABLES = "http://www.opengis.net/def/rel/ogc/1.0/queryables"
_OPENAPI = "application/vnd.oai.openapi+json;version=3.0"
_GEOJSON = "application/geo+json"
# A search over every collection reads the root queryables: these, and any other name
# (additionalProperties), since no one collection's list applies to all.
_COMMON_QUERYABLES: dict[str, dict[str, Any]] = {
    "id": {"title": "Item id", "type": "string"},
    "collection": {"title": "Collection id", "type": "string"},
    "datetime": {"title": "Acquisition time", "type": "string", "format": "date-time"},
    "geometry": {"title": "Footprint", "$ref": "https://geojson.org/schema/Geometry.json"},
}
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
    get_query: dict[str, str]  # the same search as GET parameters (for rel=next hrefs)


def _link(
    rel: str, href: str, media_type: str = "application/json", **extra: str
) -> dict[str, str]:
    return {"rel": rel, "href": href, "type": media_type, **extra}


def error_response(status: int, code: str, description: str) -> web.Response:
    """An OGC API error document, as MAAP answers a request it cannot serve."""
    return web.json_response({"code": code, "description": description}, status=status)


class StacApi:
    """The request handlers of ``/catalogue/``; ``collection_search`` turns MAAP's
    collection search on (``q``, ``filter``, ``bbox``, ``datetime`` on ``/collections``)."""

    def __init__(
        self,
        catalog: SimCatalog,
        *,
        collection_search: bool = True,
        results: ResultOrder | None = None,
    ) -> None:
        self.catalog = catalog
        self.collection_search = collection_search
        self.results = results or ResultOrder()  # unordered, repeating pages (off by default)
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
                    _link("self", root),
                    _link("root", root),
                    _link("conformance", f"{root}conformance"),
                    _link("data", f"{root}collections"),
                    _link("service-desc", f"{root}api", _OPENAPI),
                    _link("service-doc", f"{root}api.html", "text/html"),
                    _link(_QUERYABLES, f"{root}queryables", "application/schema+json"),
                    _link("search", f"{root}search", _GEOJSON, method="GET"),
                    _link("search", f"{root}search", _GEOJSON, method="POST"),
                    *(_link("child", f"{root}collections/{cid}") for cid in self.catalog.specs),
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
                _link("self", f"{root}collections/{cid}"),
                _link("root", root),
                _link("parent", root),
                _link("items", f"{root}collections/{cid}/items", _GEOJSON),
                _link(
                    _QUERYABLES, f"{root}collections/{cid}/queryables", "application/schema+json"
                ),
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
            first, last = (parse_time(t) for t in col["extent"]["temporal"]["interval"][0])
            if start not in ("", "..") and parse_time(start) > last:
                return False
            if end not in ("", "..") and parse_time(end) < first:
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
        # The first item's property names, without building its assets (and their bytes).
        return {*self.catalog.sample_properties(cid), "id", "collection"}

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

    async def root_queryables(self, request: web.Request) -> web.Response:
        """The queryables of a search over every collection: the STAC core names, and any
        other name allowed (a collection's own list is at its ``/queryables``)."""
        return web.json_response(
            {
                # 2019-09, as the STAC API filter extension's examples (and its validator)
                # expect; MAAP's per-collection documents say 2020-12, kept there.
                "$schema": "https://json-schema.org/draft/2019-09/schema",
                "$id": f"{self.root}queryables",
                "type": "object",
                "title": "Queryables for a search over every collection",
                "properties": _COMMON_QUERYABLES,
                "additionalProperties": True,
            },
            content_type="application/schema+json",
        )

    async def openapi(self, request: web.Request) -> web.Response:
        """The ``service-desc``: an OpenAPI 3.0 description of the routes served here."""
        return web.json_response(
            openapi_document(self.root, list(self.catalog.specs)), content_type=_OPENAPI
        )

    async def openapi_html(self, request: web.Request) -> web.Response:
        """The ``service-doc``: a page pointing at the OpenAPI document."""
        href = f"{self.root}api"
        return web.Response(
            text=f"<html><body><h1>Simulated MAAP STAC API</h1>"
            f'<p>OpenAPI description: <a href="{href}">{href}</a></p></body></html>',
            content_type="text/html",
        )

    async def items(self, request: web.Request) -> web.Response:
        """``/collections/{cid}/items``: OGC API Features paging over one collection, with
        ``bbox``, ``datetime``, ``limit`` (and ``filter``) as item search reads them."""
        cid = request.match_info["cid"]
        if cid not in self.catalog.specs:
            return error_response(404, "NotFound", f"collection {cid} not found")
        params: dict[str, Any] = dict(request.query)
        if listing(params, "collections") not in ((), (cid,)):
            # pystac-client names the collection again; another one is a contradiction.
            return error_response(
                400, "InvalidParameterValue", f"/collections/{cid}/items lists {cid} alone"
            )
        params["collections"] = cid
        return await self._page(request, params, f"{self.root}collections/{cid}/items")

    async def item(self, request: web.Request) -> web.Response:
        cid, iid = request.match_info["cid"], request.match_info["iid"]
        index = self.catalog.index_of(cid, iid)
        if index is None:
            return error_response(404, "NotFound", f"item {iid} not found in {cid}")
        record = self.catalog.record(cid, index, request.query)  # a metadata_* asset's URL
        if record is not None:
            return web.Response(body=record[0], headers={"Content-Type": record[1]})
        return web.json_response(
            self._linked(self.catalog.item(cid, index)), content_type="application/geo+json"
        )

    def _linked(self, item: dict[str, Any]) -> dict[str, Any]:
        """The item with the ``parent`` and ``root`` links OGC API Features asks for (the
        catalogue content names only ``self`` and ``collection``)."""
        rels = {link.get("rel") for link in item.get("links", [])}
        extra = [
            _link(rel, href)
            for rel, href in (
                ("parent", f"{self.root}collections/{item.get('collection')}"),
                ("root", self.root),
            )
            if rel not in rels
        ]
        return {**item, "links": [*item.get("links", []), *extra]} if extra else item

    def _parse_query(self, params: dict[str, Any], *, from_get: bool) -> _Query:
        named = listing(params, "collections")
        collections = named or tuple(self.catalog.specs)
        for cid in collections:
            if cid not in self.catalog.specs:
                raise ValueError(f"collection {cid!r} does not exist")
        bbox = query_bbox(params, from_get=from_get)
        start, end = time_range(params.get("datetime"))
        predicate = None
        source, lang = params.get("filter"), filter_lang(params)
        if source:
            known: set[str] = set()
            for cid in collections:
                known |= self._queryable_names(cid)
            # Named collections: their queryables, strictly; all of them: the root's
            # queryables, which allow any name (an item without it does not match).
            allowed = known.__contains__ if named else (lambda _n: True)
            predicate = parse_filter(source, lang, allowed)
        try:
            limit = int(params.get("limit", _DEFAULT_LIMIT))
        except (TypeError, ValueError, OverflowError) as exc:  # JSON's Infinity overflows
            raise ValueError(f"limit must be an integer, not {params.get('limit')!r}") from exc
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
        ids = listing(params, "ids")
        get_query = as_get_query(params, lang)
        return _Query(
            collections, ids, bbox, start, end, predicate, min(limit, _MAX_LIMIT), key, get_query
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
            begin = parse_time(props.get("start_datetime") or props["datetime"])
            finish = parse_time(props.get("end_datetime") or props["datetime"])
            if q.start is not None and finish < q.start:
                return False
            if q.end is not None and begin > q.end:
                return False
        return q.predicate is None or q.predicate(item)

    def _scan(self, q: _Query, ci: int, pos: int) -> Iterator[tuple[int, int, dict[str, Any]]]:
        for c in range(ci, len(q.collections)):
            cid, start = q.collections[c], pos if c == ci else 0
            rows: Iterable[tuple[int, dict[str, Any]]] = self.catalog.iter_items(cid, start)
            if q.ids:  # the named generated items alone, then the added ones
                spec = self.catalog.specs[cid]
                indices = (self.catalog.index_of(cid, x) for x in q.ids)
                found = sorted({i for i in indices if i is not None and i >= start})
                named = ((p, self.catalog.item(cid, p)) for p in found)
                rows = chain(named, self.catalog.iter_items(cid, max(start, spec.count)))
            for p, item in rows:
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
        return await self._page(request, params, f"{self.root}search")

    async def next_page(self, request: web.Request) -> web.Response:
        """``page/{token}/search``: the ``rel=next`` of a POST search, whose token carries
        the whole search, so a plain GET of the href continues it as the POST would."""
        try:
            state = _untoken(request.match_info["token"])
            params: dict[str, Any] = {**state["q"], "token": request.match_info["token"]}
        except (ValueError, KeyError, TypeError):
            return error_response(400, "InvalidParameterValue", "invalid page token")
        return await self._page(request, params, f"{self.root}search", chain=True)

    async def _page(
        self,
        request: web.Request,
        params: dict[str, Any],
        href: str,
        *,
        chain: bool = False,
    ) -> web.Response:
        """One page of a search (or of a collection's items) from ``params``; ``href`` is
        where its ``rel=next`` link points. ``chain``: ``params`` came from a page token,
        as GET strings, and the next link carries the whole search again."""
        posted = request.method == "POST" and not chain
        try:
            q = self._parse_query(params, from_get=not posted)
            ci = pos = 0
            token = params.get("token")
            if token:
                state = _untoken(str(token))
                ci, pos = state["c"], state["p"]
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
            features.append(self._linked(item))
        features = self.results.page(q.key, (ci, pos), next_state, features)
        links: list[dict[str, Any]] = [
            _link("self", str(request.url), _GEOJSON),
            _link("root", self.root),
        ]
        if next_state is not None:
            links.append(_next_link(request, q, href, next_state, chain=posted or chain))
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


def _next_link(
    request: web.Request, q: _Query, href: str, state: tuple[int, int], *, chain: bool
) -> dict[str, Any]:
    """The ``rel=next`` link to the page from ``state`` (collection, position). A GET gets
    its own query with a new token. A POST gets a body to merge and an href of its own,
    ``page/{token}/search``, whose token carries the whole search: MAAP's clients follow
    its POST ``next`` links with a plain GET, so the link must work either way (and the
    href ends in ``/search``, as stac-api-validator expects of a search URL)."""
    position = {"c": state[0], "p": state[1]}
    if chain:
        token = _token({**position, "q": q.get_query})
        return {
            "rel": "next",
            "href": f"{_root_of(href)}page/{token}/search",
            "method": "POST",
            "body": {"token": token},
            "merge": True,
            "type": "application/geo+json",
        }
    query = {k: v for k, v in request.query.items() if k != "token"}
    query["token"] = _token(position)
    url = request.url.with_query(query)
    return {
        "rel": "next",
        "href": f"{href}?{url.raw_query_string}",
        "method": "GET",
        "type": "application/geo+json",
    }


def _token(state: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(state, sort_keys=True).encode()).decode()


def _untoken(token: str) -> dict[str, Any]:
    """A page token's state, or ValueError for one the sim never made: bad base64 or
    JSON, nested too deep, or a position that is no non-negative integer (a negative
    collection index would wrap around to the last collection)."""
    try:
        state = json.loads(base64.urlsafe_b64decode(token.encode()))
    except RecursionError:
        raise ValueError("invalid page token") from None
    if not isinstance(state, dict) or any(
        type(state.get(k)) is not int or state[k] < 0 for k in ("c", "p")
    ):
        raise ValueError("invalid page token")
    return state


def _root_of(search_href: str) -> str:
    """The catalogue root of a ``…/search`` href."""
    return search_href.removesuffix("search")


async def _search_params(request: web.Request) -> dict[str, Any] | web.Response:
    """A search's parameters (the JSON body of a POST, the query of a GET), or the 400."""
    if request.method == "POST":
        try:
            params = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            return error_response(400, "InvalidParameterValue", "request body is not JSON")
        if not isinstance(params, dict):
            return error_response(
                400, "InvalidParameterValue", "request body must be a JSON object"
            )
    else:
        params = dict(request.query)
    return params
