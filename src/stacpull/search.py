"""The producer side: STAC item search, paged lazily. The only importer of pystac_client.

pystac-client is synchronous; each page is fetched in a worker thread (one ``next()`` on
``pages_as_dicts()`` per call), so the event loop keeps transferring meanwhile and only
one page is ever held in memory. The load balancer's 429/5xx are retried by the
underlying ``requests`` session with backoff and ``Retry-After``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio.to_thread
from urllib3.util.retry import Retry

from .config import SearchConfig
from .errors import ConfigError, SearchError

__all__ = ["load_geojson_geometry", "open_client", "search_pages"]

_SENTINEL: Any = object()


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


def open_client(config: SearchConfig) -> Any:
    """Open the catalogue (blocking). Raises :class:`SearchError` with a readable reason."""
    from pystac_client import Client
    from pystac_client.exceptions import APIError
    from pystac_client.stac_api_io import StacApiIO

    retry = Retry(
        total=8,
        connect=2,  # a refused connection is rarely fixed by waiting: say so quickly
        read=2,
        status=5,  # MAAP's load balancer answers 429/5xx under load: those are worth waiting for
        backoff_factor=0.5,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=None,  # POST searches are idempotent here
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    stac_io = StacApiIO(timeout=config.timeout, max_retries=retry)
    try:
        return Client.open(config.catalog, stac_io=stac_io)
    except APIError as exc:
        raise SearchError(
            f"cannot open the catalogue {config.catalog}: {_api_reason(exc)}"
        ) from exc
    except Exception as exc:  # requests/urllib3/json errors: unreachable or not a STAC API
        raise SearchError(f"cannot open the catalogue {config.catalog}: {exc}") from exc


def _api_reason(exc: Exception) -> str:
    text = str(exc).strip()
    try:
        body = json.loads(text)
    except ValueError:
        return text[:500] or type(exc).__name__
    if isinstance(body, dict):
        return str(body.get("description") or body.get("detail") or body.get("code") or body)[:500]
    return text[:500]


def _search_kwargs(config: SearchConfig) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"method": config.method, "limit": config.page_size}
    if config.collections:
        kwargs["collections"] = list(config.collections)
    if config.ids:
        kwargs["ids"] = list(config.ids)
    if config.bbox is not None:
        kwargs["bbox"] = list(config.bbox)
    if config.intersects is not None:
        kwargs["intersects"] = config.intersects
    if config.datetime is not None:
        kwargs["datetime"] = config.datetime
    if config.filter:
        kwargs["filter"] = config.filter
        kwargs["filter_lang"] = "cql2-text"
    if config.max_items is not None:
        kwargs["max_items"] = config.max_items
    return kwargs


def _page_iterator(config: SearchConfig) -> tuple[Iterator[dict[str, Any]], Any]:
    from pystac_client.exceptions import APIError

    client = open_client(config)
    try:
        search = client.search(**_search_kwargs(config))
    except APIError as exc:
        raise SearchError(f"search rejected: {_api_reason(exc)}") from exc
    except (ValueError, TypeError) as exc:
        raise SearchError(f"invalid search: {exc}") from exc
    return search.pages_as_dicts(), search


def _next_page(pages: Iterator[dict[str, Any]]) -> Any:
    from pystac_client.exceptions import APIError

    try:
        return next(pages, _SENTINEL)
    except APIError as exc:
        raise SearchError(f"search failed: {_api_reason(exc)}") from exc
    except Exception as exc:
        raise SearchError(f"search failed: {exc}") from exc


def _matched(search: Any) -> int | None:
    try:
        value = search.matched()
    except Exception:  # matched() is optional in STAC API; never fail a run over it
        return None
    return value if isinstance(value, int) else None


async def search_pages(
    config: SearchConfig,
) -> AsyncIterator[tuple[list[dict[str, Any]], int | None]]:
    """Yield (items of one page, numberMatched) lazily; ``max_items`` is honoured exactly."""
    pages, search = await anyio.to_thread.run_sync(_page_iterator, config)
    matched: int | None = None
    first = True
    seen = 0
    while True:
        page = await anyio.to_thread.run_sync(_next_page, pages)
        if page is _SENTINEL:
            return
        if first:
            raw = page.get("numberMatched", page.get("context", {}).get("matched"))
            matched = (
                raw if isinstance(raw, int) else await anyio.to_thread.run_sync(_matched, search)
            )
            first = False
        features = [f for f in page.get("features") or [] if isinstance(f, dict)]
        if config.max_items is not None:
            features = features[: max(0, config.max_items - seen)]
        seen += len(features)
        yield features, matched
        if config.max_items is not None and seen >= config.max_items:
            return
