"""The Python API: ``stacpull.download(...)``, ``mirror``, ``search_items``, ``collections``,
``queryables``, ``dry_run`` (blocking) and their ``a``-prefixed coroutines; ``run``/``arun``,
the general form of a download or mirror for a caller with a view and a stop button of its
own (:class:`RunControl`), the one place that starts the engine.

The command line is a thin layer over these (its runs go through :func:`run`, its plans
through :func:`adry_run`). Keyword arguments are the config keys of
every section (``collections=``, ``dest=``, ``concurrency=``, ``offline_token_file=``…),
typed by :class:`Options` so a type checker catches ``colections=`` or
``concurrency="eight"``; at run time a misspelt one raises
:class:`~stacpull.errors.ConfigError` naming the nearest key. Values come, highest first,
from these keywords, the ``STACPULL_*`` environment, the profile and the config file
(``./stacpull.toml``, or the path given as ``config``), as for the CLI; a
:class:`~stacpull.config.Config` passed as ``config`` replaces the environment and the
files. ``tokens=`` takes a ready :class:`~stacpull.auth.TokenProvider` (shared by several
runs, or with its own clock).

A run whose config names a cluster (``cluster="local:4"``, ``[cluster] address``), or a
mirror given a ``distributed.Client`` (``client=``), searches and plans here and transfers
on the cluster's workers (:mod:`stacpull.cluster`; ``pip install 'stacpull[dask]'``);
without either, nothing of Dask is imported.

The blocking functions also work where an event loop already runs (Jupyter): the run then
has a loop of its own in a worker thread, the caller's thread waits for it, its sink is
called from that worker thread, and a Ctrl-C (the notebook's interrupt) cancels the run,
which records itself as aborted, before ``KeyboardInterrupt`` reaches the caller.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, Unpack

import anyio
import anyio.from_thread

from .catalogue import blocking as _blocking
from .config import Config, load_config, parse_bbox, parse_datetime_range
from .dryrun import PlanSummary
from .dryrun import dry_run as _dry_run
from .engine import run as _engine_run
from .errors import ConfigError, RunAborted, first_error
from .events import Event, EventSink
from .export import ItemWriter
from .keywords import CollectionOptions, MirrorOptions, Options, option_keys
from .keywords import dotted_values as _dotted_values
from .runtypes import RunOptions, RunResult, StopSignal, loop_options
from .search import CatalogueHeaders, CollectionQuery, ItemPages, list_collections
from .search import queryables as _queryables
from .search_walk import walk_items
from .stats import RunStats
from .tokens import TokenProvider

if TYPE_CHECKING:
    from .cluster.driver import Client

__all__ = [
    "Options",
    "RunControl",
    "RunOptions",
    "RunResult",
    "StopSignal",
    "acollections",
    "adownload",
    "adry_run",
    "amirror",
    "aqueryables",
    "arun",
    "asearch_items",
    "build_config",
    "collections",
    "download",
    "dry_run",
    "mirror",
    "option_keys",
    "queryables",
    "run",
    "search_items",
]

_T = TypeVar("_T")


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
    "mirror": (*_RUN_KEYWORDS, "prune", "client"),
    "collections": ("config", "q", "title", "platform", "organisation", "bbox", "datetime"),
    "queryables": ("config", "collection"),
    "search_items": ("config", "output", "fmt"),
    "dry_run": ("config", "pages"),
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


#: A task run beside a run (see :class:`RunControl`): given the run's stop signal and a
#: scope whose cancellation aborts the run.
_Beside = Callable[[StopSignal, anyio.CancelScope], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class RunControl:
    """How a caller that draws and steers a run itself takes part in it (the command line
    does; a script rarely needs to): ``stats`` the statistics its view draws (a
    :class:`~stacpull.report.RunStats`, also fed every event), ``stop`` the signal it may
    request a graceful stop on, ``pages`` a saved search's items in place of the search,
    ``beside`` a task run next to the run (the command line's Ctrl-C watcher), cancelled
    when the run ends; cancelling the scope it is given aborts the run, and the call then
    raises :class:`~stacpull.errors.RunAborted`."""

    stats: RunStats | None = None
    stop: StopSignal | None = None
    pages: ItemPages | None = None
    beside: _Beside | None = None


async def arun(
    config: Config,
    options: RunOptions | None = None,
    *,
    sink: EventSink | None = None,
    tokens: TokenProvider | None = None,
    control: RunControl | None = None,
    client: Client | None = None,
) -> RunResult:
    """One run of a ready :class:`Config`, of the kind ``options`` names (a download, a
    mirror, a retry of the failures), asynchronously: what :func:`adownload` and
    :func:`amirror` do once they have built the config; see :func:`run`. With ``client``
    (a ``distributed.Client``) or ``config.cluster.address``, on a Dask cluster."""
    steer = control or RunControl()
    stop = steer.stop if steer.stop is not None or steer.beside is None else StopSignal()

    if steer.pages is not None:
        options = replace(options or RunOptions(), pages=steer.pages)

    async def engine() -> RunResult:
        if client is not None or config.cluster.address is not None:
            from .cluster.driver import ClusterCall, run_cluster  # Dask: only here

            call = ClusterCall(client, sink=sink, tokens=tokens, stats=steer.stats, stop=stop)
            return await run_cluster(config, options, call)
        return await _engine_run(
            config,
            sink=sink,
            tokens=tokens,
            stats=steer.stats,
            options=options,
            stop=stop,
        )

    if steer.beside is None or stop is None:
        return await engine()
    result: RunResult | None = None
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(steer.beside, stop, tg.cancel_scope)
            result = await engine()
            tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise first_error(group) from None
    if result is None:
        raise RunAborted("the run was aborted")
    return result


def run(
    config: Config,
    options: RunOptions | None = None,
    *,
    sink: EventSink | None = None,
    tokens: TokenProvider | None = None,
    control: RunControl | None = None,
    client: Client | None = None,
) -> RunResult:
    """One run of a ready :class:`Config` (see :func:`build_config`), of the kind
    ``options`` names (``RunOptions("mirror", prune=True)``; a download by default), with
    the caller's :class:`RunControl`: the general form of :func:`download` and
    :func:`mirror`, for a caller with a view and a stop button of its own; on a Dask
    cluster with ``client`` or ``config.cluster.address``."""
    escaped: list[BaseException] = []
    guarded = _guarded(sink, escaped)
    return _call(
        lambda: arun(config, options, sink=guarded, tokens=tokens, control=control, client=client),
        escaped,
    )


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
    return await arun(
        _build(config, options, _OWN["download"]),
        RunOptions("download", retry_failed=retry_failed, yes=yes),
        sink=sink,
        tokens=tokens,
    )


async def amirror(
    config: Config | str | os.PathLike[str] | None = None,
    *,
    sink: EventSink | None = None,
    tokens: TokenProvider | None = None,
    retry_failed: bool = False,
    yes: bool = False,
    **options: Unpack[MirrorOptions],
) -> RunResult:
    """Mirror a collection or query incrementally, asynchronously; see :func:`mirror`."""
    prune = bool(options.pop("prune", False))
    client = options.pop("client", None)
    return await arun(
        _build(config, options, _OWN["mirror"]),
        RunOptions("mirror", retry_failed=retry_failed, prune=prune, yes=yes),
        sink=sink,
        tokens=tokens,
        client=client,
    )


def mirror(
    config: Config | str | os.PathLike[str] | None = None,
    *,
    sink: EventSink | None = None,
    tokens: TokenProvider | None = None,
    retry_failed: bool = False,
    yes: bool = False,
    **options: Unpack[MirrorOptions],
) -> RunResult:
    """Bring ``dest`` up to date with a collection (or query): new and changed files are
    fetched, unchanged ones kept without re-hashing; ``RunResult.gone`` lists files whose
    items left the catalogue (deleted when ``prune=True``), judged only after a complete
    search (``RunResult.not_judged`` says why not, e.g. with ``retry_failed``).

    On a Dask cluster with ``cluster="local:4"`` (N worker processes here) or
    ``"tcp://scheduler:8786"``, or ``client=`` a ``distributed.Client`` of your own (left
    open): the search and the verdict stay here, the transfers run on the workers, and
    DEST must be at the same path on every one of them.

    >>> result = stacpull.mirror(catalog=url, collections=["BiomassLevel1aIOC"],
    ...                          dest="/data/l1a", token="…")             # doctest: +SKIP
    """
    escaped: list[BaseException] = []
    return _call(
        lambda: amirror(
            config,
            sink=_guarded(sink, escaped),
            tokens=tokens,
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


_FILTERS = ("q", "title", "platform", "organisation", "bbox", "datetime")


def _collection_query(options: dict[str, Any]) -> CollectionQuery:
    """Pop :func:`collections`' filters out of its keywords."""
    q, title, platform, organisation, bbox, datetime = (options.pop(k, None) for k in _FILTERS)
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
    **options: Unpack[CollectionOptions],
) -> list[dict[str, Any]]:
    """The catalogue's collections, asynchronously; see :func:`collections`."""
    rest: dict[str, Any] = dict(options)
    query = _collection_query(rest)
    cfg = _build(config, rest, _OWN["collections"])
    return (await _blocking(list_collections, cfg.search, query, CatalogueHeaders.of(cfg)))[0]


def collections(
    config: Config | str | os.PathLike[str] | None = None,
    **options: Unpack[CollectionOptions],
) -> list[dict[str, Any]]:
    """The catalogue's collections matching the filters ``q`` (free text), ``title``,
    ``platform``, ``organisation``, ``bbox`` and ``datetime`` (server-side when the
    catalogue supports collection search, else filtered here), as STAC Collection dicts;
    the other keywords are the options.

    >>> [c["id"] for c in stacpull.collections(platform="FLEX")]   # doctest: +SKIP
    """
    rest: dict[str, Any] = dict(options)
    query = _collection_query(rest)
    cfg = _build(config, rest, _OWN["collections"])
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
    writer = ItemWriter(Path(output), fmt, catalog=cfg.search.catalog) if output else None
    return (await walk_items(cfg, writer=writer)).items


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
    config: Config | str | os.PathLike[str] | None = None,
    *,
    pages: ItemPages | None = None,
    **options: Unpack[Options],
) -> PlanSummary:
    """What :func:`adownload` would fetch, asynchronously; see :func:`dry_run`."""
    return await _dry_run(_build(config, options, _OWN["dry_run"]), pages=pages)


def dry_run(
    config: Config | str | os.PathLike[str] | None = None,
    *,
    pages: ItemPages | None = None,
    **options: Unpack[Options],
) -> PlanSummary:
    """What :func:`download` with the same arguments would fetch: items, files, bytes
    known and estimated, what is already on disk, free space; nothing is transferred.
    ``pages`` plans a saved search's items instead of searching."""
    cfg = _build(config, options, _OWN["dry_run"])  # a bad option raises before any loop starts
    return _call(lambda: _dry_run(cfg, pages=pages))
