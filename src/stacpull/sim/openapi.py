"""The simulated catalogue's ``service-desc``: an OpenAPI 3.0 document naming the routes
:mod:`.stac_api` serves and the parameters each reads, built from the routes' own table so
the description cannot promise a route the server lacks."""

from __future__ import annotations

from typing import Any

__all__ = ["openapi_document"]

_SEARCH_PARAMS = ("bbox", "datetime", "limit", "ids", "collections", "intersects", "filter")
_ITEMS_PARAMS = ("bbox", "datetime", "limit", "filter")

# path (below the catalogue root) -> (summary, methods, query parameters)
_ROUTES: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "": ("Landing page", ("get",), ()),
    "conformance": ("Conformance classes", ("get",), ()),
    "api": ("This OpenAPI document", ("get",), ()),
    "queryables": ("Queryables of a search over every collection", ("get",), ()),
    "collections": (
        "Collections (MAAP's collection search)",
        ("get",),
        ("q", "bbox", "datetime", "filter"),
    ),
    "collections/{collectionId}": ("One collection", ("get",), ()),
    "collections/{collectionId}/queryables": ("A collection's queryables", ("get",), ()),
    "collections/{collectionId}/items": ("A collection's items", ("get",), _ITEMS_PARAMS),
    "collections/{collectionId}/items/{featureId}": ("One item", ("get",), ()),
    "search": ("Item search", ("get", "post"), _SEARCH_PARAMS),
}


def _operation(summary: str, method: str, params: tuple[str, ...], path: str) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in ("collectionId", "featureId")
        if "{" + name + "}" in path
    ]
    if method == "get":
        parameters += [
            {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
            for name in params + (("filter-lang", "token") if "filter" in params else ())
        ]
    op: dict[str, Any] = {
        "summary": summary,
        "parameters": parameters,
        "responses": {"200": {"description": "OK"}, "400": {"description": "Bad request"}},
    }
    if method == "post":
        op["requestBody"] = {
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    return op


def openapi_document(root: str, collections: list[str]) -> dict[str, Any]:
    """The OpenAPI 3.0 document of the catalogue at ``root`` (ends with ``/``)."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Simulated ESA MAAP STAC API (stacpull.sim)",
            "version": "1.0.0",
            "description": f"Collections: {', '.join(collections) or 'none'}.",
        },
        "servers": [{"url": root}],
        "paths": {
            "/" + path: {method: _operation(summary, method, params, path) for method in methods}
            for path, (summary, methods, params) in _ROUTES.items()
        },
    }
