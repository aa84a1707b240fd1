"""The Python API: ``stacpull.download(...)``, ``mirror``, ``search_items``, ``collections``,
``queryables``, ``dry_run`` (blocking) and their ``a``-prefixed coroutines.

The command line is a thin layer over these. Keyword arguments are the config keys of
every section (``collections=``, ``dest=``, ``concurrency=``, ``offline_token_file=``…),
typed by :class:`Options` so a type checker catches ``colections=`` or
``concurrency="eight"``; at run time a misspelt one raises
:class:`~stacpull.errors.ConfigError` naming the nearest key. Values come, highest first,
from these keywords, the ``STACPULL_*`` environment, the profile and the config file
(``./stacpull.toml``, or the path given as ``config``), as for the CLI; a
:class:`~stacpull.config.Config` passed as ``config`` replaces the environment and the
files. ``tokens=`` takes a ready :class:`~stacpull.auth.TokenProvider` (shared by several
runs, or with its own clock).

The blocking functions also work where an event loop already runs (Jupyter): the run then
has a loop of its own in a worker thread, the caller's thread waits for it, its sink is
called from that worker thread, and a Ctrl-C (the notebook's interrupt) cancels the run,
which records itself as aborted, before ``KeyboardInterrupt`` reaches the caller.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal, TypedDict, TypeVar, Unpack

import anyio
import anyio.from_thread

from .auth import TokenProvider
from .catalogue import blocking as _blocking
from .config import (
    Config,
    Secret,
    _closest,
    load_config,
    parse_bbox,
    parse_datetime_range,
)
from .dryrun import PlanSummary
from .dryrun import dry_run as _dry_run
from .engine import RunOptions, RunResult, loop_options, run
from .errors import ConfigError, RunAborted
from .events import Event, EventSink
from .export import ItemWriter
from .search import CatalogueHeaders, CollectionQuery, list_collections, search_pages
from .search import queryables as _queryables

__all__ = [
    "Options",
    "acollections",
    "adownload",
    "adry_run",
    "amirror",
    "aqueryables",
    "asearch_items",
    "build_config",
    "collections",
    "download",
    "dry_run",
    "mirror",
    "option_keys",
    "queryables",
    "search_items",
]

_T = TypeVar("_T")

#: A file name: a string or a :class:`~pathlib.Path`.
_PathArg = str | os.PathLike[str]
#: One value or several (``collections="C1"`` is ``collections=["C1"]``).
_Names = str | Sequence[str]


#: A time: seconds, or a string with units ("500ms", "30s", "2m", "1h30m").
_Duration = float | str
#: Extra request headers: "Name: value" strings, a mapping, or (name, value) pairs.
_Headers = Sequence[str] | Mapping[str, str] | Sequence[tuple[str, str]]


class _CatalogOptions(TypedDict, total=False):
    """Every option except the search's ``bbox`` and ``datetime``, which
    :func:`collections` takes as filters of its own. ``None`` leaves a key as the
    environment, config file or default set it."""

    # [search]
    catalog: str | None
    collections: _Names | None
    ids: _Names | None
    intersects: dict[str, Any] | None
    filter: str | None
    max_items: int | None
    page_size: int | None
    method: Literal["GET", "POST", "get", "post"] | None
    timeout: _Duration | None
    # [download]
    dest: _PathArg | None
    assets: _Names | None
    template: str | None
    concurrency: int | None
    per_host: int | None
    queue_size: int | None
    chunk_size: int | None
    stall_timeout: _Duration | None
    min_speed: int | str | None
    connect_timeout: _Duration | None
    retries: int | None
    backoff: _Duration | None
    max_backoff: _Duration | None
    not_found_retries: int | None
    not_found_delay: _Duration | None
    adaptive: bool | None
    min_free: int | str | None
    max_bytes: int | str | None
    segments: int | None
    segment_size: int | str | None
    segment_below: int | str | None
    record_hash: str | None
    bwlimit: int | str | None
    headers: _Headers | None
    header_all_hosts: bool | None
    # [auth]
    token: str | Secret | None
    token_file: _PathArg | None
    auth_hosts: _Names | None
    offline_token: str | Secret | None
    offline_token_file: _PathArg | None
    token_url: str | None
    client_id: str | None
    client_secret: str | Secret | None
    scope: str | None
    refresh_margin: _Duration | None
    # [output]
    progress_interval: _Duration | None
    dashboard: Literal["auto", "rich", "plain", "none"] | None
    verbosity: Literal["quiet", "normal", "verbose"] | None
    report: bool | None
    log_json: _PathArg | None
    log_file: _PathArg | None
    # not a config key: the config file's [profiles.NAME] to apply (else STACPULL_PROFILE)
    profile: str | None


class Options(_CatalogOptions, total=False):
    """The keyword options of the API: every config key, flat (key names are unique across
    sections; ``auth_hosts`` is ``[auth] hosts``), plus ``profile``. A test keeps this in
    step with the config dataclasses."""

    bbox: str | Sequence[float] | None
    datetime: str | None


#: API keywords that are not the config key's own name.
_ALIASES = {"auth_hosts": "hosts"}
#: Keys whose single string means a list of one.
_LISTS = frozenset({"collections", "ids", "assets", "auth_hosts"})


def option_keys() -> dict[str, str]:
    """Each keyword option that is a config key, and its dotted key (``max_items`` →
    ``search.max_items``), read from the config dataclasses themselves."""
    base = Config()
    names = {config: api for api, config in _ALIASES.items()}
    return {
        names.get(f.name, f.name): f"{section.name}.{f.name}"
        for section in fields(base)
        for f in fields(getattr(base, section.name))
    }


def _dotted_values(options: dict[str, Any], own: Sequence[str] = ()) -> dict[str, Any]:
    """Keyword options as dotted config keys; a misspelt one is a one-line ConfigError
    naming the nearest option or ``own`` keyword of the function called (``retry_faild``
    is ``retry_failed``, ``organization`` is ``organisation``)."""
    keys = option_keys()
    values: dict[str, Any] = {}
    for name, value in options.items():
        if name not in keys:
            hint = _closest(name, [*keys, "profile", *own])
            suggestion = f" (did you mean {hint!r}?)" if hint is not None else ""
            raise ConfigError(f"unknown option {name!r}{suggestion}")
        if isinstance(value, str) and name in _LISTS:
            value = [value]
        elif isinstance(value, os.PathLike):
            value = os.fspath(value)
        values[keys[name]] = value
    return values


def build_config(
    config: Config | str | os.PathLike[str] | None = None, **options: Unpack[Options]
) -> Config:
    """The :class:`Config` a call runs with: ``options`` over ``config`` when it is a
    :class:`Config`; else over the environment and config file, as the CLI loads them
    (``config`` may name that file; ``profile=`` a profile in it)."""
    return _build(config, options, ())


#: Each API function's own keywords, which a misspelt option may have meant.
_RUN_KEYWORDS = ("config", "sink", "tokens", "retry_failed", "yes")
_OWN: dict[str, tuple[str, ...]] = {
    "download": _RUN_KEYWORDS,
    "mirror": (*_RUN_KEYWORDS, "prune"),
    "collections": ("config", "q", "title", "platform", "organisation", "bbox", "datetime"),
    "queryables": ("config", "collection"),
    "search_items": ("config", "output", "fmt"),
    "dry_run": ("config",),
}


def _build(
    config: Config | str | os.PathLike[str] | None,
    options: Mapping[str, Any],
    own: Sequence[str],
) -> Config:
    """:func:`build_config` for an API function whose own keywords are ``own``."""
    raw: dict[str, Any] = dict(options)
    profile = raw.pop("profile", None)
    values = _dotted_values(raw, own)
    if isinstance(config, Config):
        if profile is not None:
            raise ConfigError("profile: applies to a config file, not to a Config passed in")
        return config.with_values(values)
    return load_config(config, flags=values, profile=profile)


def _guarded(sink: EventSink | None, escaped: list[BaseException]) -> EventSink | None:
    """``sink`` with a KeyboardInterrupt or SystemExit it raises kept in ``escaped`` and
    turned into an error the run ends on: in a worker thread's loop either would stop that
    loop itself and reach the caller as a bare CancelledError (see :func:`_call`)."""
    if sink is None:
        return None
    user_sink = sink

    def guarded(event: Event) -> None:
        try:
            user_sink(event)
        except (KeyboardInterrupt, SystemExit) as exc:
            escaped.append(exc)
            raise _Escaped from None

    return guarded


class _Escaped(RunAborted):
    """A KeyboardInterrupt or SystemExit of the caller's sink, on its way to the caller."""


def _call(make: Callable[[], Awaitable[_T]], escaped: Sequence[BaseException] = ()) -> _T:
    """Run the coroutine ``make()`` to its end from blocking code: in this thread, or in a
    worker thread with a loop of its own when this thread already runs one (Jupyter), since
    a loop cannot be started inside a running one."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        running = False
    else:
        running = True
    if not running:  # outside the except block: the run's errors get no RuntimeError context
        try:
            return anyio.run(make, backend_options=loop_options())
        except _Escaped:
            raise escaped[0] from None
    caller = asyncio.current_task()
    with anyio.from_thread.start_blocking_portal(
        backend_options=loop_options(), name="stacpull-api"
    ) as portal:
        future = portal.start_task_soon(make)
        try:
            # Short waits, so a Ctrl-C is handled at once whichever thread the signal hit.
            while not concurrent.futures.wait([future], timeout=0.1).done:
                if caller is not None and caller.cancelling():
                    # asyncio.run's Ctrl-C handler cancels the calling task instead of
                    # raising; that task cannot see it while this call blocks.
                    raise asyncio.CancelledError
        except BaseException:
            future.cancel()  # cancels the run; leaving the portal waits for its cleanup
            raise
        try:
            return future.result()
        except _Escaped:
            raise escaped[0] from None


# -- runs -------------------------------------------------------------------------------


async def adownload(
    config: Config | str | os.PathLike[str] | None = None,
    *,
    sink: EventSink | None = None,
    tokens: TokenProvider | None = None,
    retry_failed: bool = False,
    yes: bool = False,
    **options: Unpack[Options],
) -> RunResult:
    """Search and download, asynchronously; see :func:`download`."""
    return await run(
        _build(config, options, _OWN["download"]),
        sink=sink,
        tokens=tokens,
        options=RunOptions("download", retry_failed=retry_failed, yes=yes),
    )


async def amirror(
    config: Config | str | os.PathLike[str] | None = None,
    *,
    sink: EventSink | None = None,
    tokens: TokenProvider | None = None,
    prune: bool = False,
    retry_failed: bool = False,
    yes: bool = False,
    **options: Unpack[Options],
) -> RunResult:
    """Mirror a collection or query incrementally, asynchronously; see :func:`mirror`."""
    return await run(
        _build(config, options, _OWN["mirror"]),
        sink=sink,
        tokens=tokens,
        options=RunOptions("mirror", retry_failed=retry_failed, prune=prune, yes=yes),
    )


def mirror(
    config: Config | str | os.PathLike[str] | None = None,
    *,
    sink: EventSink | None = None,
    tokens: TokenProvider | None = None,
    prune: bool = False,
    retry_failed: bool = False,
    yes: bool = False,
    **options: Unpack[Options],
) -> RunResult:
    """Bring ``dest`` up to date with a collection (or query): new and changed files are
    fetched, unchanged ones kept without re-hashing; ``RunResult.gone`` lists files whose
    items left the catalogue (deleted when ``prune``), judged only after a complete search
    (``RunResult.not_judged`` says why not, e.g. with ``retry_failed``).

    >>> result = stacpull.mirror(catalog=url, collections=["BiomassLevel1aIOC"],
    ...                          dest="/data/l1a", token="…")             # doctest: +SKIP
    """
    escaped: list[BaseException] = []
    return _call(
        lambda: amirror(
            config,
            sink=_guarded(sink, escaped),
            tokens=tokens,
            prune=prune,
            retry_failed=retry_failed,
            yes=yes,
            **options,
        ),
        escaped,
    )


def download(
    config: Config | str | os.PathLike[str] | None = None,
    *,
    sink: EventSink | None = None,
    tokens: TokenProvider | None = None,
    retry_failed: bool = False,
    yes: bool = False,
    **options: Unpack[Options],
) -> RunResult:
    """Search a STAC API and download the selected assets into ``dest``, verified;
    ``RunResult.files()`` lists each file.

    >>> result = stacpull.download(catalog=url, collections=["BiomassLevel1aIOC"],
    ...                            dest="data",
    ...                            offline_token_file="~/.maap/credentials.txt")  # doctest: +SKIP
    >>> result.ok, result.downloaded, result.mb_per_s                   # doctest: +SKIP
    """
    escaped: list[BaseException] = []
    return _call(
        lambda: adownload(
            config,
            sink=_guarded(sink, escaped),
            tokens=tokens,
            retry_failed=retry_failed,
            yes=yes,
            **options,
        ),
        escaped,
    )


# -- discovery and planning -------------------------------------------------------------


def _collection_query(
    q: str | None,
    title: str | None,
    platform: str | None,
    organisation: str | None,
    bbox: str | Sequence[float] | None,
    datetime: str | None,
) -> CollectionQuery:
    return CollectionQuery(
        q=q,
        title=title,
        platform=platform,
        organisation=organisation,
        bbox=parse_bbox(bbox if isinstance(bbox, str) else list(bbox)) if bbox else None,
        datetime=parse_datetime_range(datetime) if datetime else None,
    )


async def acollections(
    config: Config | str | os.PathLike[str] | None = None,
    *,
    q: str | None = None,
    title: str | None = None,
    platform: str | None = None,
    organisation: str | None = None,
    bbox: str | Sequence[float] | None = None,
    datetime: str | None = None,
    **options: Unpack[_CatalogOptions],
) -> list[dict[str, Any]]:
    """The catalogue's collections, asynchronously; see :func:`collections`."""
    cfg = _build(config, options, _OWN["collections"])
    query = _collection_query(q, title, platform, organisation, bbox, datetime)
    return (await _blocking(list_collections, cfg.search, query, CatalogueHeaders.of(cfg)))[0]


def collections(
    config: Config | str | os.PathLike[str] | None = None,
    *,
    q: str | None = None,
    title: str | None = None,
    platform: str | None = None,
    organisation: str | None = None,
    bbox: str | Sequence[float] | None = None,
    datetime: str | None = None,
    **options: Unpack[_CatalogOptions],
) -> list[dict[str, Any]]:
    """The catalogue's collections matching the filters (server-side when the catalogue
    supports collection search, else filtered here), as STAC Collection dicts.

    >>> [c["id"] for c in stacpull.collections(platform="FLEX")]   # doctest: +SKIP
    """
    cfg = _build(config, options, _OWN["collections"])
    query = _collection_query(q, title, platform, organisation, bbox, datetime)
    return list_collections(cfg.search, query, CatalogueHeaders.of(cfg))[0]


async def aqueryables(
    collection: str,
    config: Config | str | os.PathLike[str] | None = None,
    **options: Unpack[Options],
) -> dict[str, Any]:
    """The queryables of ``collection``, asynchronously; see :func:`queryables`."""
    cfg = _build(config, options, _OWN["queryables"])
    return await _blocking(_queryables, cfg.search, collection, CatalogueHeaders.of(cfg))


def queryables(
    collection: str,
    config: Config | str | os.PathLike[str] | None = None,
    **options: Unpack[Options],
) -> dict[str, Any]:
    """The JSON Schema of what a ``filter`` may use on ``collection``."""
    cfg = _build(config, options, _OWN["queryables"])
    return _queryables(cfg.search, collection, CatalogueHeaders.of(cfg))


async def asearch_items(
    config: Config | str | os.PathLike[str] | None = None,
    *,
    output: str | Path | None = None,
    fmt: str | None = None,
    **options: Unpack[Options],
) -> list[dict[str, Any]]:
    """Every item the query matches (bound it with ``max_items=``); with ``output``, also
    saved as GeoJSON, CSV or Parquet (by its extension, or ``fmt``)."""
    cfg = _build(config, options, _OWN["search_items"])
    items: list[dict[str, Any]] = []
    writer = ItemWriter(Path(output), fmt, catalog=cfg.search.catalog) if output else None
    with writer if writer is not None else contextlib.nullcontext():
        async for features, _ in search_pages(cfg.search, CatalogueHeaders.of(cfg)):
            items.extend(features)
            if writer is not None:
                for item in features:
                    writer.write(item)
    return items


def search_items(
    config: Config | str | os.PathLike[str] | None = None,
    *,
    output: str | Path | None = None,
    fmt: str | None = None,
    **options: Unpack[Options],
) -> list[dict[str, Any]]:
    """Search and return the matching items (see :func:`asearch_items`).

    >>> items = stacpull.search_items(collections=["BiomassLevel1aIOC"], max_items=50,
    ...                               output="items.csv")            # doctest: +SKIP
    """
    return _call(lambda: asearch_items(config, output=output, fmt=fmt, **options))


async def adry_run(
    config: Config | str | os.PathLike[str] | None = None, **options: Unpack[Options]
) -> PlanSummary:
    """What :func:`adownload` would fetch, asynchronously; see :func:`dry_run`."""
    return await _dry_run(_build(config, options, _OWN["dry_run"]))


def dry_run(
    config: Config | str | os.PathLike[str] | None = None, **options: Unpack[Options]
) -> PlanSummary:
    """What :func:`download` with the same arguments would fetch: items, files, bytes
    known and estimated, what is already on disk, free space; nothing is transferred."""
    cfg = _build(config, options, _OWN["dry_run"])  # a bad option raises before any loop starts
    return _call(lambda: _dry_run(cfg))
