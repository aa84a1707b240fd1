"""The producer side: STAC item search, paged lazily. The only importer of pystac_client.

pystac-client is synchronous; each page is fetched in a worker thread (one ``next()`` on
``pages_as_dicts()`` per call), so the event loop keeps transferring meanwhile and only
one page is ever held in memory. The load balancer's 429/5xx are retried by the
underlying ``requests`` session with backoff and ``Retry-After``.

No wait is endless: every catalogue request has ``search.timeout`` to connect and per
read, and one answer (the landing page, one page, retries included) gets
:data:`ANSWER_TIMEOUTS` times that in all, so a catalogue that trickles a byte now and then
is given up on too; a stop abandons the thread of a request still waiting (it cannot be
interrupted, and it is a daemon, so it never keeps the process alive); a ``rel=next`` that
repeats a page stops the search with a :class:`SearchError` instead of paging forever.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import threading
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread

from .config import Config, SearchConfig
from .errors import ConfigError, ScrubFilter, SearchError

__all__ = [
    "ANSWER_TIMEOUTS",
    "MAX_ANSWER",
    "MAX_EMPTY_PAGES",
    "CatalogueHeaders",
    "CollectionQuery",
    "ItemPages",
    "Page",
    "check_collections",
    "count_items",
    "list_collections",
    "load_geojson_geometry",
    "open_client",
    "queryables",
    "search_pages",
]

_SENTINEL: Any = object()
_T = TypeVar("_T")

#: One catalogue answer (retries and their waits included) may take this many
#: ``search.timeout`` in all: ten minutes by default, far more than a page needs, even
#: after a few 503s with ``Retry-After``.
ANSWER_TIMEOUTS = 10

#: Empty search pages in a row whose rel=next is followed before the search is an error.
MAX_EMPTY_PAGES = 10

#: The most bytes one catalogue answer may hold (decoded): a page of a thousand MAAP items
#: is 5-20 MB; a catalogue that streams a body without end is refused here, before the
#: answer deadline, instead of filling memory with it. Parsed, JSON takes up to 25 times
#: its size (``[{},{},…]``): 64 MiB stays under 2 GB whatever the catalogue sends.
MAX_ANSWER = 64 << 20

#: One page of a search: its items, and ``numberMatched`` when the server says.
Page = tuple[list[dict[str, Any]], int | None]
#: An async source of pages: the search itself, or a saved search (``--from``).
ItemPages = Callable[[], AsyncIterator[Page]]


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


def _origin(url: str) -> tuple[str, str, int | None]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return (
        parts.scheme.lower(),
        (parts.hostname or "").lower(),
        port
        or {
            "http": 80,
            "https": 443,
        }.get(parts.scheme.lower()),
    )


def _same_site(catalog: str, url: str) -> bool:
    """Whether ``url`` is the catalogue's own origin (or its http→https upgrade)."""
    want, got = _origin(catalog), _origin(url)
    upgrade = (want[0], want[2], got[0], got[2]) == ("http", 80, "https", 443)
    return bool(got[1]) and want[1] == got[1] and (want == got or upgrade)


def _stac_io(config: SearchConfig, extra: CatalogueHeaders | None = None) -> Any:
    # Imported here, like pystac-client: a download --from a saved search never needs
    # them, and every run would pay their import (about 25 ms) at startup.
    from urllib3.util.retry import Retry

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
    stac_io = _catalogue_io()(timeout=config.timeout, max_retries=retry)
    stac_io.session.hooks["response"].append(_capped)
    stac_io.catalogue = config.catalog
    stac_io.extra = extra or CatalogueHeaders()
    if stac_io.extra.headers:
        _strip_on_leaving(stac_io.session, config.catalog, stac_io.extra)
    return stac_io


#: Headers that are credentials: even with ``header_all_hosts`` they stay on the catalogue.
_CREDENTIALS = frozenset({"authorization", "proxy-authorization"})


def _headers_for(catalog: str, url: str, extra: CatalogueHeaders) -> dict[str, str]:
    """The configured headers one request to ``url`` carries (as fetch's ``_user_headers``)."""
    if _same_site(catalog, url):
        return dict(extra.headers)
    if extra.all_hosts:
        return {n: v for n, v in extra.headers if n.lower() not in _CREDENTIALS}
    return {}


def _strip_on_leaving(session: Any, catalog: str, extra: CatalogueHeaders) -> None:
    """A redirect away from the catalogue's origin drops ``download.headers`` (all of
    them, or only the credentials with ``all_hosts``): requests itself drops only
    ``Authorization``, and only on a new host."""
    rebuild = session.rebuild_auth
    keep = {name.lower() for name in _headers_for(catalog, "", extra)}  # another host's

    def rebuild_auth(prepared: Any, response: Any) -> None:
        rebuild(prepared, response)
        if not _same_site(catalog, prepared.url):
            for name, _ in extra.headers:
                if name.lower() not in keep:
                    prepared.headers.pop(name, None)

    session.rebuild_auth = rebuild_auth


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
                headers = {**_headers_for(self.catalogue, href, self.extra), **(headers or {})}
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
            guard = _LoopGuard()
            page: Any = self.read_json(url, method=method, parameters=parameters)
            empty = 0
            while True:
                if not isinstance(page, dict):
                    raise SearchError(f"a search page of {url} is not a JSON object")
                if page.get("features") or page.get("collections"):
                    empty = 0
                    guard.page(page)
                    yield page
                else:
                    # pystac-client ends at an empty page, but its rel=next says there is
                    # more (a server that filters after paging): a mirror would judge every
                    # later item gone. Followed, a few in a row at most.
                    empty += 1
                link = _next_link(page)
                if link is None:
                    return
                if empty > MAX_EMPTY_PAGES:
                    raise SearchError(
                        f"search stopped: {empty} empty pages in a row, each with a rel=next "
                        f"({_shown(link['href'])}); the listing cannot be completed"
                    )
                guard.link(link)
                page = self.read_json(Link.from_dict(link), parameters=parameters)

    return CatalogueIO


def _next_link(page: dict[str, Any]) -> dict[str, Any] | None:
    links = page.get("links")
    for link in links if isinstance(links, list) else []:
        if isinstance(link, dict) and link.get("rel") == "next":
            if not isinstance(link.get("href"), str):
                raise SearchError("a search page's rel=next link has no href")
            return link
    return None


def _key(value: Any) -> bytes | None:
    try:
        text = json.dumps(value, sort_keys=True, default=repr)
    except (ValueError, TypeError, RecursionError):
        return None
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class _LoopGuard:
    """What one search has paged through, as 16-byte digests: every next link followed
    (href, method, body, headers) and every page's item ids, in any order. A link followed twice, or a
    page of items seen before (under a new token), is a loop: the same request would bring
    the same answer forever. A one-item page may come back once: an item a catalogue lists
    twice (MAAP can) is not a loop on its own."""

    def __init__(self) -> None:
        self._links: set[bytes] = set()
        self._pages: dict[bytes, int] = {}

    def link(self, link: dict[str, Any]) -> None:
        key = _key(
            [
                link.get("href"),
                str(link.get("method") or "GET").upper(),
                link.get("body"),
                link.get("headers"),
                link.get("merge"),
            ]
        )
        if key is None:
            return
        if key in self._links:
            raise SearchError(
                f"search stopped: the catalogue's rel=next repeats a page "
                f"({_shown(link['href'])}); it would page forever"
            )
        self._links.add(key)

    def page(self, page: dict[str, Any]) -> None:
        features = page.get("features")
        if not isinstance(features, list):
            return
        # In any order (nothing sorts MAAP's results), junk features by their value.
        ids = [f.get("id") if isinstance(f, dict) else f for f in features]
        digests = [_key(i) for i in ids]
        key = None if None in digests else _key(sorted(d.hex() for d in digests if d))
        if key is None or not ids:
            return
        seen = self._pages.get(key, 0) + 1
        self._pages[key] = seen
        if seen > (1 if len(ids) > 1 else 2):
            shown = ", ".join(_shown(i) for i in ids[:3]) + (", …" if len(ids) > 3 else "")
            raise SearchError(
                f"search stopped: the catalogue's rel=next repeats a page (items {shown} "
                "again); it would page forever"
            )


def _shown(value: Any, limit: int = 120) -> str:
    """A foreign string for a one-line message: quoted, escaped, cut; other values by type."""
    text = repr(value) if isinstance(value, str) else f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _timed_out(exc: BaseException) -> bool:
    """Whether ``exc`` (a pystac-client, requests or urllib3 error, wrapped however deep)
    comes from a connect or read timeout rather than a refusal or an error answer."""
    import requests
    import urllib3.exceptions

    todo: list[BaseException] = [exc]
    seen: set[int] = set()
    while todo:
        err = todo.pop()
        if id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, urllib3.exceptions.NewConnectionError):
            continue  # urllib3 files "connection refused" under ConnectTimeoutError
        if isinstance(
            err, requests.exceptions.Timeout | urllib3.exceptions.TimeoutError | TimeoutError
        ):
            return True
        if isinstance(err, urllib3.exceptions.MaxRetryError) and err.reason is not None:
            todo.append(err.reason)
        todo += [a for a in err.args if isinstance(a, BaseException)]
        todo += [c for c in (err.__cause__, err.__context__) if c is not None]
    return False


def _silent(url: str, timeout: float) -> str:
    return f"the catalogue at {url} did not answer within {timeout:g} s (search.timeout)"


def _slow(url: str, timeout: float) -> SearchError:
    return SearchError(
        f"the catalogue at {url} did not answer within {timeout * ANSWER_TIMEOUTS:g} s "
        f"({ANSWER_TIMEOUTS} × search.timeout): it sends too slowly or never ends"
    )


async def _ask(config: SearchConfig, func: Callable[..., _T], *args: Any) -> _T:
    """:func:`_blocking`, given up on after :data:`ANSWER_TIMEOUTS` × ``search.timeout``."""
    with anyio.move_on_after(config.timeout * ANSWER_TIMEOUTS):
        return await _blocking(func, *args)
    raise _slow(config.catalog, config.timeout) from TimeoutError()  # see _timed_out


def _within(limit: float, func: Callable[..., _T], *args: Any) -> _T | None:
    """``func(*args)`` (blocking) in a daemon thread, abandoned after ``limit`` seconds
    (then ``None``); Ctrl-C interrupts the wait."""
    done = threading.Event()
    outcome: list[tuple[bool, Any]] = []

    def call() -> None:
        try:
            outcome.append((True, func(*args)))
        except BaseException as exc:  # raised in the caller's thread
            outcome.append((False, exc))
        finally:
            done.set()

    threading.Thread(target=call, name="stacpull-catalogue", daemon=True).start()
    if not done.wait(limit):
        return None
    ok, value = outcome[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


async def _blocking(func: Callable[..., _T], *args: Any) -> _T:
    """``func(*args)`` (a blocking catalogue call) in a daemon thread of its own; a
    cancellation (Ctrl-C) stops the wait at once and abandons the call.

    A requests call cannot be interrupted, so waiting for it on a stop could take as long
    as the catalogue stays silent; anyio's worker threads would also keep the process
    alive at exit. The thread here is a daemon: it ends with the process.
    """
    done = threading.Event()
    outcome: list[tuple[bool, Any]] = []

    def call() -> None:
        try:
            outcome.append((True, func(*args)))
        except BaseException as exc:  # handed to the awaiting task, raised there
            outcome.append((False, exc))
        finally:
            done.set()

    threading.Thread(target=call, name="stacpull-catalogue", daemon=True).start()
    try:
        await anyio.to_thread.run_sync(done.wait, abandon_on_cancel=True)
    finally:
        done.set()  # cancelled: free the worker that waits; the call's thread is abandoned
    ok, value = outcome[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


def open_client(config: SearchConfig, extra: CatalogueHeaders | None = None) -> Any:
    """Open the catalogue (blocking). Raises :class:`SearchError` with a readable reason."""
    from pystac_client import Client
    from pystac_client.exceptions import APIError

    try:
        return Client.open(config.catalog, stac_io=_stac_io(config, extra), timeout=config.timeout)
    except APIError as exc:
        if _timed_out(exc):
            raise SearchError(_silent(config.catalog, config.timeout)) from exc
        raise SearchError(
            f"cannot open the catalogue {config.catalog}: {_api_reason(exc)}"
        ) from exc
    except Exception as exc:  # requests/urllib3/json errors: unreachable or not a STAC API
        if _timed_out(exc):
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
        kwargs["filter"] = config.filter
        kwargs["filter_lang"] = "cql2-text"
    if config.max_items is not None:
        kwargs["max_items"] = config.max_items
    return kwargs


def _page_iterator(
    config: SearchConfig, extra: CatalogueHeaders | None = None
) -> tuple[Iterator[dict[str, Any]], Any]:
    from pystac_client.exceptions import APIError

    client = open_client(config, extra)
    try:
        search = client.search(**_search_kwargs(config))
    except APIError as exc:
        raise SearchError(f"search rejected: {_api_reason(exc)}") from exc
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
        if _timed_out(exc):
            raise SearchError(_silent(config.catalog, config.timeout)) from exc
        if isinstance(exc, APIError):
            raise SearchError(f"search failed: {_api_reason(exc)}") from exc
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
    ``extra``: the configured headers, sent to the catalogue."""
    pages, search = await _ask(config, _page_iterator, config, extra)
    matched: int | None = None
    first = True
    seen = 0
    while True:
        try:
            page = await _ask(config, _next_page, pages, config)
        except SearchError as exc:
            if first and config.collections and not _timed_out(exc):
                # A rejected first page: name the collection id that is wrong, if one is.
                with contextlib.suppress(SearchError):
                    await _ask(config, check_collections, config, config.collections, extra)
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
            if not features and config.collections:
                # Nothing matched: say so if it is because a collection id is wrong (and
                # say nothing if the collections cannot be listed: the search did work).
                with contextlib.suppress(SearchError):
                    await _ask(config, check_collections, config, config.collections, extra)
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
        text = _within(stac_io.timeout * ANSWER_TIMEOUTS, stac_io.request, url, "GET", None, params)
        if text is None:
            raise _slow(url, stac_io.timeout) from TimeoutError()
        return json.loads(text)
    except SearchError:
        raise
    except Exception as exc:
        if _timed_out(exc):
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
        key = _key([url, params])
        if key is not None and key in followed:
            raise SearchError(
                f"the catalogue's collections rel=next repeats a page ({_shown(url)}); "
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


def check_collections(
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
        if not _timed_out(exc):  # a silent catalogue would only be waited for twice
            check_collections(config, (collection,), extra)
        raise
    if not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict):
        raise SearchError(f"the queryables of {collection} are not a JSON Schema")
    return schema
