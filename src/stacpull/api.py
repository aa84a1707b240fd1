"""The Python API: ``stacpull.download(...)`` / ``stacpull.mirror(...)`` (blocking) and their
``a``-prefixed coroutines.

The command line is a thin layer over these. Keyword arguments are config keys of the
``[search]``, ``[download]`` and ``[auth]`` sections (``collections=``, ``dest=``,
``concurrency=``, ``offline_token_file=``…); a :class:`~stacpull.config.Config` may be
passed instead, and ``tokens=`` a ready :class:`~stacpull.auth.TokenProvider` (shared by
several runs, or with its own clock).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import anyio

from .auth import TokenProvider
from .config import (
    AuthConfig,
    Config,
    SearchConfig,
    load_config,
    parse_bbox,
    parse_datetime_range,
)
from .dryrun import PlanSummary
from .dryrun import dry_run as _dry_run
from .engine import RunOptions, RunResult, loop_options, run
from .events import EventSink
from .export import ItemWriter
from .search import CollectionQuery, list_collections, search_pages
from .search import queryables as _queryables

__all__ = [
    "adownload",
    "amirror",
    "asearch_items",
    "build_config",
    "collections",
    "download",
    "dry_run",
    "mirror",
    "queryables",
    "search_items",
]

_SECTION_OF: dict[str, str] = {
    **dict.fromkeys(SearchConfig.__dataclass_fields__, "search"),
    **dict.fromkeys(AuthConfig.__dataclass_fields__, "auth"),
    "auth_hosts": "auth",
}


def build_config(config: Config | None = None, **options: Any) -> Config:
    """A :class:`Config` from keyword options (``catalog=``, ``dest=``, ``token=``…)."""
    base = config if config is not None else load_config(env={})
    values: dict[str, Any] = {}
    for name, value in options.items():
        if name == "catalog":
            values["search.catalog"] = value
            continue
        section = _SECTION_OF.get(name, "download")
        key = "hosts" if name == "auth_hosts" else name
        if isinstance(value, str) and name in ("collections", "ids", "assets"):
            value = [value]
        values[f"{section}.{key}"] = value
    return base.with_values(values)


async def adownload(
    config: Config | None = None,
    *,
    sink: EventSink | None = None,
    tokens: TokenProvider | None = None,
    retry_failed: bool = False,
    yes: bool = False,
    **options: Any,
) -> RunResult:
    """Search and download, asynchronously; see :func:`download`."""
    return await run(
        build_config(config, **options),
        sink=sink,
        tokens=tokens,
        options=RunOptions("download", retry_failed=retry_failed, yes=yes),
    )


async def amirror(
    config: Config | None = None,
    *,
    sink: EventSink | None = None,
    tokens: TokenProvider | None = None,
    prune: bool = False,
    retry_failed: bool = False,
    yes: bool = False,
    **options: Any,
) -> RunResult:
    """Mirror a collection or query incrementally, asynchronously; see :func:`mirror`."""
    return await run(
        build_config(config, **options),
        sink=sink,
        tokens=tokens,
        options=RunOptions("mirror", retry_failed=retry_failed, prune=prune, yes=yes),
    )


def mirror(
    config: Config | None = None,
    *,
    sink: EventSink | None = None,
    tokens: TokenProvider | None = None,
    prune: bool = False,
    retry_failed: bool = False,
    yes: bool = False,
    **options: Any,
) -> RunResult:
    """Bring ``dest`` up to date with a collection (or query): new and changed files are
    fetched, unchanged ones kept without re-hashing; ``RunResult.gone`` lists files whose
    items left the catalogue (deleted when ``prune``), judged only after a complete search
    (``RunResult.not_judged`` says why not, e.g. with ``retry_failed``).

    >>> result = stacpull.mirror(catalog=url, collections=["BiomassLevel1aIOC"],
    ...                          dest="/data/l1a", token="…")             # doctest: +SKIP
    """
    return anyio.run(
        lambda: amirror(
            config,
            sink=sink,
            tokens=tokens,
            prune=prune,
            retry_failed=retry_failed,
            yes=yes,
            **options,
        ),
        backend_options=loop_options(),
    )


def download(
    config: Config | None = None,
    *,
    sink: EventSink | None = None,
    tokens: TokenProvider | None = None,
    retry_failed: bool = False,
    yes: bool = False,
    **options: Any,
) -> RunResult:
    """Search a STAC API and download the selected assets into ``dest``, verified.

    >>> result = stacpull.download(catalog=url, collections=["BiomassLevel1aIOC"],
    ...                            dest="data",
    ...                            offline_token_file="~/.maap/credentials.txt")  # doctest: +SKIP
    >>> result.ok, result.downloaded, result.mb_per_s                   # doctest: +SKIP
    """
    return anyio.run(
        lambda: adownload(
            config, sink=sink, tokens=tokens, retry_failed=retry_failed, yes=yes, **options
        ),
        backend_options=loop_options(),
    )


# -- discovery and planning -------------------------------------------------------------


def collections(
    config: Config | None = None,
    *,
    q: str | None = None,
    title: str | None = None,
    platform: str | None = None,
    organisation: str | None = None,
    bbox: tuple[float, ...] | list[float] | None = None,
    datetime: str | None = None,
    **options: Any,
) -> list[dict[str, Any]]:
    """The catalogue's collections matching the filters (server-side when the catalogue
    supports collection search, else filtered here), as STAC Collection dicts.

    >>> [c["id"] for c in stacpull.collections(platform="FLEX")]   # doctest: +SKIP
    """
    cfg = build_config(config, **options)
    query = CollectionQuery(
        q=q,
        title=title,
        platform=platform,
        organisation=organisation,
        bbox=parse_bbox(list(bbox)) if bbox is not None else None,
        datetime=parse_datetime_range(datetime) if datetime else None,
    )
    return list_collections(cfg.search, query)[0]


def queryables(collection: str, config: Config | None = None, **options: Any) -> dict[str, Any]:
    """The JSON Schema of what a ``filter`` may use on ``collection``."""
    return _queryables(build_config(config, **options).search, collection)


async def asearch_items(
    config: Config | None = None,
    *,
    output: str | Path | None = None,
    fmt: str | None = None,
    **options: Any,
) -> list[dict[str, Any]]:
    """Every item the query matches (bound it with ``max_items=``); with ``output``, also
    saved as GeoJSON, CSV or Parquet (by its extension, or ``fmt``)."""
    cfg = build_config(config, **options)
    items: list[dict[str, Any]] = []
    writer = ItemWriter(Path(output), fmt, catalog=cfg.search.catalog) if output else None
    with writer if writer is not None else contextlib.nullcontext():
        async for features, _ in search_pages(cfg.search):
            items.extend(features)
            if writer is not None:
                for item in features:
                    writer.write(item)
    return items


def search_items(
    config: Config | None = None,
    *,
    output: str | Path | None = None,
    fmt: str | None = None,
    **options: Any,
) -> list[dict[str, Any]]:
    """Search and return the matching items (see :func:`asearch_items`).

    >>> items = stacpull.search_items(collections=["BiomassLevel1aIOC"], max_items=50,
    ...                               output="items.csv")            # doctest: +SKIP
    """
    return anyio.run(lambda: asearch_items(config, output=output, fmt=fmt, **options))


def dry_run(config: Config | None = None, **options: Any) -> PlanSummary:
    """What :func:`download` with the same arguments would fetch: items, files, bytes
    known and estimated, what is already on disk, free space; nothing is transferred."""
    cfg = build_config(config, **options)
    return anyio.run(lambda: _dry_run(cfg))
