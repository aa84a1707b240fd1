"""The producer side: STAC item search, paged lazily. The only importer of pystac_client.

pystac-client is synchronous; each page is fetched in a worker thread (one ``next()`` on
``pages_as_dicts()`` per call), so the event loop keeps transferring meanwhile and only
one page is ever held in memory. The load balancer's 429/5xx are retried by the
underlying ``requests`` session, waiting as the one retry policy says (backoff with full
jitter, ``Retry-After`` honoured: :mod:`stacpull.catalogue`); ``rel=next`` is followed
through :mod:`stacpull.paging`, which stops a listing that would never end. The
discovery commands' requests (collections, queryables, counts) are made here too.

No wait is endless: every catalogue request has ``search.timeout`` to connect and per
read, and one answer (the landing page, one page, retries included) gets
:data:`_ANSWER_TIMEOUTS` times that in all, so a catalogue that trickles a byte now and then
is given up on too; a stop abandons the thread of a request still waiting (it cannot be
interrupted, and it is a daemon, so it never keeps the process alive); a ``rel=next`` that
repeats a page stops the search with a :class:`SearchError` instead of paging forever.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import warnings
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio

from .catalogue import (
    CATALOGUE_RETRY,
    blocking,
    headers_for,
    retries,
    strip_on_leaving,
    timed_out,
    within,
)
from .config import Config, SearchConfig
from .errors import ConfigError, ScrubFilter, SearchError
from .paging import digest, pages, shown, time_windows, windowed
from .renames import renamed_hint

__all__ = [
    "MAX_ANSWER",
    "CatalogueHeaders",
    "CollectionQuery",
    "ItemPages",
    "Page",
    "count_items",
    "list_collections",
    "queryables",
    "search_pages",
]

_SENTINEL: Any = object()
_T = TypeVar("_T")

#: One catalogue answer (retries and their waits included) may take this many
#: ``search.timeout`` in all: ten minutes by default, far more than a page needs, even
#: after a few 503s with ``Retry-After``.
_ANSWER_TIMEOUTS = 10

#: The most bytes one catalogue answer may hold (decoded): a page of a thousand MAAP items
#: is 5-20 MB; a catalogue that streams a body without end is refused here, before the
#: answer deadline, instead of filling memory with it. Parsed, JSON takes up to 25 times
#: its size (``[{},{},…]``): 64 MiB stays under 2 GB whatever the catalogue sends.
MAX_ANSWER = 64 << 20

#: One page of a search: its items, and ``numberMatched`` when the server says.
Page = tuple[list[dict[str, Any]], int | None]
#: An async source of pages: the search itself, or a saved search (``--from``).
ItemPages = Callable[[], AsyncIterator[Page]]


@dataclass(frozen=True, slots=True)
class CatalogueHeaders:
    """``download.headers`` as the catalogue's requests send them: to the catalogue's own
    origin (trusted by definition), and to another host (a ``rel=next`` elsewhere, a
    redirect) only with ``all_hosts`` (``--header-all-hosts``)."""

    headers: tuple[tuple[str, str], ...] = ()
    all_hosts: bool = False

    @classmethod
    def of(cls, config: Config) -> CatalogueHeaders:
        """The headers a run's config sends to its catalogue."""
        return cls(config.download.headers, config.download.header_all_hosts)


def _stac_io(config: SearchConfig, extra: CatalogueHeaders | None = None) -> Any:
    """A session for the catalogue: its timeout, retries through the one retry policy,
    answers capped at :data:`MAX_ANSWER`, the configured headers on its own origin."""
    extra = extra or CatalogueHeaders()
    stac_io = _catalogue_io()(timeout=config.timeout, max_retries=retries(CATALOGUE_RETRY))
    stac_io.session.hooks["response"].append(_capped)
    stac_io.catalogue = config.catalog
    stac_io.extra = extra
    if extra.headers:
        strip_on_leaving(stac_io.session, config.catalog, extra.headers, extra.all_hosts)
    return stac_io


def _capped(resp: Any, *args: Any, **kwargs: Any) -> Any:
    """A requests response hook: read the body here, at most :data:`MAX_ANSWER` bytes
    (requests would read all of it, however long it goes on)."""
    body = bytearray()
    for chunk in resp.iter_content(1 << 16):
        body += chunk
        if len(body) > MAX_ANSWER:
            resp.close()
            raise SearchError(
                f"the catalogue's answer from {resp.url} is larger than {MAX_ANSWER >> 20} MiB "
                "(search.page_size too large, or an answer that never ends)"
            )
    resp._content = bytes(body)  # what resp.content returns from now on
    return resp


@functools.cache
def _catalogue_io() -> type[Any]:
    """pystac-client's ``StacApiIO`` with a timeout nothing resets and paging that stops
    on a loop (built on first use: pystac-client is imported lazily)."""
    from pystac import Link
    from pystac_client.stac_api_io import StacApiIO

    # pystac-client logs every request with its headers (HTTP Basic from the catalogue's
    # userinfo) and URL, urllib3 its retries: scrubbed before any handler, the caller's too.
    for name in ("pystac_client.stac_api_io", "urllib3.connectionpool"):
        logging.getLogger(name).addFilter(ScrubFilter())

    class CatalogueIO(StacApiIO):
        catalogue: str = ""
        extra: CatalogueHeaders = CatalogueHeaders()

        def request(
            self,
            href: str,
            method: str | None = None,
            headers: dict[str, str] | None = None,
            parameters: dict[str, Any] | None = None,
        ) -> str:
            # download.headers on the catalogue's own requests only (a rel=next link may
            # name any host), unless --header-all-hosts; never in session.headers, which
            # requests would carry to every host.
            if self.extra.headers:
                wanted = headers_for(self.catalogue, href, self.extra.headers, self.extra.all_hosts)
                headers = {**wanted, **(headers or {})}
            return super().request(href, method, headers, parameters)

        def update(
            self,
            headers: dict[str, str] | None = None,
            parameters: dict[str, Any] | None = None,
            request_modifier: Any = None,
            timeout: Any = None,
        ) -> None:
            # Client.open passes timeout=None, which would wait forever for a silent server.
            super().update(
                headers, parameters, request_modifier, self.timeout if timeout is None else timeout
            )

        def get_pages(
            self, url: str, method: str | None = None, parameters: dict[str, Any] | None = None
        ) -> Iterator[dict[str, Any]]:
            def follow(link: dict[str, Any]) -> Any:
                return self.read_json(Link.from_dict(link), parameters=parameters)

            yield from pages(url, self.read_json(url, method=method, parameters=parameters), follow)

    return CatalogueIO


def _silent(url: str, timeout: float) -> str:
    return f"the catalogue at {url} did not answer within {timeout:g} s (search.timeout)"


def _slow(url: str, timeout: float) -> SearchError:
    return SearchError(
        f"the catalogue at {url} did not answer within {timeout * _ANSWER_TIMEOUTS:g} s "
        f"({_ANSWER_TIMEOUTS} × search.timeout): it sends too slowly or never ends"
    )


async def _ask(config: SearchConfig, func: Callable[..., _T], *args: Any) -> _T:
    """:func:`~stacpull.catalogue.blocking`, given up on after :data:`_ANSWER_TIMEOUTS` × ``search.timeout``."""
    with anyio.move_on_after(config.timeout * _ANSWER_TIMEOUTS):
        return await blocking(func, *args)
    raise _slow(config.catalog, config.timeout) from TimeoutError()  # see timed_out


def _open_client(config: SearchConfig, extra: CatalogueHeaders | None = None) -> Any:
    """Open the catalogue (blocking). Raises :class:`SearchError` with a readable reason."""
    from pystac_client import Client
    from pystac_client.exceptions import APIError

    try:
        return Client.open(config.catalog, stac_io=_stac_io(config, extra), timeout=config.timeout)
    except APIError as exc:
        if timed_out(exc):
            raise SearchError(_silent(config.catalog, config.timeout)) from exc
        raise SearchError(
            f"cannot open the catalogue {config.catalog}: {_api_reason(exc)}"
        ) from exc
    except Exception as exc:  # requests/urllib3/json errors: unreachable or not a STAC API
        if timed_out(exc):
            raise SearchError(_silent(config.catalog, config.timeout)) from exc
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
        # cql2-json: an object, which pystac-client sends in a POST body as it is and in a
        # GET query as JSON text, each with filter-lang=cql2-json.
        json_filter = config.filter_lang == "cql2-json"
        kwargs["filter"] = json.loads(config.filter) if json_filter else config.filter
        kwargs["filter_lang"] = config.filter_lang
    if config.max_items is not None:
        kwargs["max_items"] = config.max_items
    return kwargs


def _page_iterator(
    config: SearchConfig, extra: CatalogueHeaders | None = None
) -> tuple[Iterator[dict[str, Any]], Any]:
    from pystac_client.exceptions import APIError

    client = _open_client(config, extra)
    try:
        search = client.search(**_search_kwargs(config))
    except APIError as exc:
        hint = renamed_hint(config.filter)
        raise SearchError(f"search rejected: {_api_reason(exc)}{hint}") from exc
    except (ValueError, TypeError) as exc:
        raise SearchError(f"invalid search: {exc}") from exc
    return search.pages_as_dicts(), search


def _next_page(pages: Iterator[dict[str, Any]], config: SearchConfig) -> Any:
    from pystac_client.exceptions import APIError

    try:
        return next(pages, _SENTINEL)
    except SearchError:
        raise
    except Exception as exc:
        if timed_out(exc):
            raise SearchError(_silent(config.catalog, config.timeout)) from exc
        if isinstance(exc, APIError):
            hint = renamed_hint(config.filter)
            raise SearchError(f"search failed: {_api_reason(exc)}{hint}") from exc
        raise SearchError(f"search failed: {exc}") from exc


def _matched(search: Any) -> int | None:
    """The catalogue's count, or ``None``; pystac-client's warning about a catalogue that
    gives none is silenced (a multi-line Python warning on stderr, said here as ``None``)."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "numberMatched or context.matched not in response")
            value = search.matched()
    except Exception:  # matched() is optional in STAC API; never fail a run over it
        return None
    return _count(value)


def _count(value: Any) -> int | None:
    """``numberMatched`` when it is a count (not a bool, a string or a negative number)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


async def search_pages(
    config: SearchConfig, extra: CatalogueHeaders | None = None
) -> AsyncIterator[Page]:
    """Yield (items of one page, numberMatched) lazily; ``max_items`` is honoured exactly;
    ``extra``: the configured headers, sent to the catalogue. With ``search.window`` the
    datetime range is searched window by window (:func:`~stacpull.paging.windowed`)."""
    if config.window is None:
        async for page in _search_once(config, extra):
            yield page
        return
    spans = time_windows(config.datetime, config.window)
    part = dataclasses.replace(config, window=None)

    def one(span: str) -> AsyncGenerator[Page, None]:
        # An empty window is no sign of a wrong collection id: the first one checks.
        return _search_once(dataclasses.replace(part, datetime=span), extra, span == spans[0])

    async with contextlib.aclosing(windowed(spans, one, config.max_items)) as pages:
        async for page in pages:
            yield page


async def _search_once(
    config: SearchConfig, extra: CatalogueHeaders | None = None, check: bool = True
) -> AsyncGenerator[Page, None]:
    """:func:`search_pages` of one listing (its datetime range whole); ``check``: an empty
    listing looks up whether a collection id is wrong."""
    pages, search = await _ask(config, _page_iterator, config, extra)
    matched: int | None = None
    first = True
    seen = 0
    while True:
        try:
            page = await _ask(config, _next_page, pages, config)
        except SearchError as exc:
            if first and config.collections and not timed_out(exc):
                # A rejected first page: name the collection id that is wrong, if one is.
                with contextlib.suppress(SearchError):
                    await _ask(config, _check_collections, config, config.collections, extra)
            raise
        if page is _SENTINEL:
            if not first:
                return
            # Nothing listed (pystac-client passes no empty page on): one empty page all
            # the same, so the caller learns whether the catalogue said none match.
            page, last = {"features": []}, True
        else:
            last = False
        raw_features = page.get("features")
        features = (
            [f for f in raw_features if isinstance(f, dict)]
            if isinstance(raw_features, list)
            else []
        )
        if first:
            context = page.get("context")
            raw = page.get(
                "numberMatched", context.get("matched") if isinstance(context, dict) else None
            )
            matched = _count(raw)
            if matched is None and raw is None:
                matched = await _ask(config, _matched, search)
            first = False
            if not features and config.collections and check:
                # Nothing matched: say so if it is because a collection id is wrong (and
                # say nothing if the collections cannot be listed: the search did work).
                with contextlib.suppress(SearchError):
                    await _ask(config, _check_collections, config, config.collections, extra)
        if config.max_items is not None:
            features = features[: max(0, config.max_items - seen)]
        seen += len(features)
        yield features, matched
        if last or (config.max_items is not None and seen >= config.max_items):
            return


# -- discovery: collections and queryables (blocking; the CLI runs them directly) --------


@dataclass(frozen=True, slots=True)
class CollectionQuery:
    """``stacpull collections`` filters: free text, exact title, platform, organisation,
    and a bbox / datetime the collection's extent must overlap."""

    q: str | None = None
    title: str | None = None
    platform: str | None = None
    organisation: str | None = None
    bbox: tuple[float, ...] | None = None
    datetime: str | None = None

    def cql2(self) -> str | None:
        """The CQL2-text filter MAAP's /collections understands (title, platform, org)."""
        terms = [
            f"{name}='{value.replace(chr(39), chr(39) * 2)}'"
            for name, value in (
                ("title", self.title),
                ("platform", self.platform),
                ("organisationName", self.organisation),
            )
            if value
        ]
        return " and ".join(terms) or None

    def matches(self, col: dict[str, Any]) -> bool:
        """The same filters, applied here to a collection document (no server support)."""
        summaries = col.get("summaries") or {}
        platforms = [str(p).lower() for p in summaries.get("platform") or []]
        providers = [str(p.get("name", "")).lower() for p in col.get("providers") or []]
        title = str(col.get("title") or "")
        if self.q:
            haystack = " ".join(
                [str(col.get("id", "")), title, str(col.get("description") or "")]
                + [str(k) for k in col.get("keywords") or []]
                + platforms
            ).lower()
            if not all(word in haystack for word in self.q.lower().split()):
                return False
        if self.title and title.lower() != self.title.lower():
            return False
        if self.platform and self.platform.lower() not in platforms:
            return False
        if self.organisation and self.organisation.lower() not in providers:
            return False
        extent = col.get("extent") or {}
        if self.bbox is not None:
            boxes = (extent.get("spatial") or {}).get("bbox") or []
            if boxes and not _boxes_overlap(self.bbox, boxes[0]):
                return False
        if self.datetime is not None:
            intervals = (extent.get("temporal") or {}).get("interval") or []
            if intervals and not _times_overlap(self.datetime, intervals[0]):
                return False
        return True


def _boxes_overlap(a: tuple[float, ...], b: list[float]) -> bool:
    if len(b) < 4:
        return True
    w, s, e, n = a[0], a[1], a[-2], a[-1]
    bw, bs, be, bn = b[0], b[1], b[len(b) // 2], b[-1]
    return not (e < bw or w > be or n < bs or s > bn)


def _times_overlap(query: str, interval: list[Any]) -> bool:
    from datetime import UTC, datetime

    def parse(text: Any) -> datetime | None:
        if not isinstance(text, str) or text in ("", ".."):
            return None
        try:
            stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None  # an extent we cannot read does not exclude the collection
        return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)

    start, _, end = query.partition("/")
    q_start, q_end = parse(start), parse(end or start)
    c_start, c_end = parse(interval[0]), parse(interval[1] if len(interval) > 1 else None)
    if q_start and c_end and q_start > c_end:
        return False
    return not (q_end and c_start and q_end < c_start)


def _get_json(stac_io: Any, url: str, params: dict[str, Any] | None = None) -> Any:
    from pystac_client.exceptions import APIError

    try:
        text = within(stac_io.timeout * _ANSWER_TIMEOUTS, stac_io.request, url, "GET", None, params)
        if text is None:
            raise _slow(url, stac_io.timeout) from TimeoutError()
        return json.loads(text)
    except SearchError:
        raise
    except Exception as exc:
        if timed_out(exc):
            raise SearchError(_silent(url, stac_io.timeout)) from exc
        if isinstance(exc, APIError):
            raise SearchError(f"{url}: {_api_reason(exc)}") from exc
        if isinstance(exc, ValueError | RecursionError):
            raise SearchError(f"{url} did not answer JSON: {exc}") from exc
        raise SearchError(f"cannot reach {url}: {exc}") from exc  # requests/urllib3


def _link(doc: Any, rel: str) -> str | None:
    for link in doc.get("links") or [] if isinstance(doc, dict) else []:
        if (
            isinstance(link, dict)
            and link.get("rel") == rel
            and link.get("href")
            and str(link.get("method", "GET")).upper() == "GET"
        ):
            return str(link["href"])
    return None


def list_collections(
    config: SearchConfig, query: CollectionQuery, extra: CatalogueHeaders | None = None
) -> tuple[list[dict[str, Any]], bool]:
    """The catalogue's collections that match ``query``, and whether the server did the
    filtering (it conforms to STAC collection search) or stacpull did, here."""
    stac_io = _stac_io(config, extra)
    landing = _get_json(stac_io, config.catalog)
    if not isinstance(landing, dict):
        raise SearchError(f"{config.catalog} is not a STAC API: its landing page is no object")
    server = any("collection-search" in str(c) for c in landing.get("conformsTo") or [])
    params: dict[str, Any] = {}
    if server:
        if query.q:
            params["q"] = query.q
        if (cql2 := query.cql2()) is not None:
            params["filter"] = cql2
            params["filter-lang"] = "cql2-text"
        if query.bbox is not None:
            params["bbox"] = ",".join(f"{v:g}" for v in query.bbox)
        if query.datetime is not None:
            params["datetime"] = query.datetime
    url: str | None = _link(landing, "data") or config.catalog + "collections"
    found: list[dict[str, Any]] = []
    followed: set[bytes | None] = set()
    for _ in range(1000):  # pages of collections; a bound on a catalogue that never ends
        if url is None:
            break
        key = digest([url, params])
        if key is not None and key in followed:
            raise SearchError(
                f"the catalogue's collections rel=next repeats a page ({shown(url)}); "
                "it would page forever"
            )
        followed.add(key)
        page = _get_json(stac_io, url, params or None)
        listed = page.get("collections") if isinstance(page, dict) else None
        found += [c for c in listed if isinstance(c, dict)] if isinstance(listed, list) else []
        url, params = _link(page, "next"), {}
    if not server:
        found = [c for c in found if query.matches(c)]
    return found, server


def _check_collections(
    config: SearchConfig, wanted: tuple[str, ...], extra: CatalogueHeaders | None = None
) -> None:
    """Raise :class:`ConfigError` naming the closest ids when one of ``wanted`` is not a
    collection of the catalogue (a typo finds no item rather than an error, otherwise)."""
    import difflib

    ids = [str(c.get("id")) for c in list_collections(config, CollectionQuery(), extra)[0]]
    for collection in wanted:
        if collection not in ids:
            close = difflib.get_close_matches(collection, ids, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(f"unknown collection {collection!r}{hint}")


def count_items(
    config: SearchConfig, collection: str, extra: CatalogueHeaders | None = None
) -> int | None:
    """``numberMatched`` for one collection (one search request of one item)."""
    page = _get_json(
        _stac_io(config, extra), config.catalog + "search", {"collections": collection, "limit": 1}
    )
    if not isinstance(page, dict):
        return None
    context = page.get("context")
    return _count(
        page.get("numberMatched", context.get("matched") if isinstance(context, dict) else None)
    )


def queryables(
    config: SearchConfig, collection: str, extra: CatalogueHeaders | None = None
) -> dict[str, Any]:
    """The JSON Schema of what ``--filter`` may use on ``collection``. An unknown
    collection raises :class:`ConfigError` naming the closest ids."""
    stac_io = _stac_io(config, extra)
    try:
        schema = _get_json(stac_io, f"{config.catalog}collections/{collection}/queryables")
    except SearchError as exc:
        if not timed_out(exc):  # a silent catalogue would only be waited for twice
            _check_collections(config, (collection,), extra)
        raise
    if not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict):
        raise SearchError(f"the queryables of {collection} are not a JSON Schema")
    return schema
