"""How a listing is paged: ``rel=next`` followed until it ends, never in a loop, and a long
datetime range searched window by window.

A catalogue's ``rel=next`` may repeat a page (unordered offset paging, a token that never
moves) or lead through empty pages without end; :func:`pages` follows a search's links and
stops with a :class:`~stacpull.errors.SearchError` instead of paging forever.

``--window 1d`` splits the search's datetime range into consecutive windows
(:func:`time_windows`), searched in order (:func:`windowed`): MAAP answers day-long
searches faster than a month at once, and a shorter listing gives its unordered offset
paging less time to shift. An item whose time span crosses a window's edge matches both
windows; it is passed on once, and ``numberMatched`` is summed over the windows less
those repeats, so a complete windowed listing still adds up.

Pure: the requests are the caller's (:mod:`stacpull.search`, through pystac-client).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncGenerator, Callable, Iterator
from contextlib import aclosing
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

from .errors import ConfigError, SearchError

__all__ = ["digest", "pages", "shown", "time_windows", "windowed"]

#: Empty search pages in a row whose rel=next is followed before the search is an error.
_MAX_EMPTY_PAGES = 10


def digest(value: Any) -> bytes | None:
    """16 bytes standing for a JSON value (``None`` when it is no JSON value)."""
    try:
        text = json.dumps(value, sort_keys=True, default=repr)
    except (ValueError, TypeError, RecursionError):
        return None
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def shown(value: Any, limit: int = 120) -> str:
    """A foreign string for a one-line message: quoted, escaped, cut; other values by type."""
    text = repr(value) if isinstance(value, str) else f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _next_link(page: dict[str, Any]) -> dict[str, Any] | None:
    links = page.get("links")
    for link in links if isinstance(links, list) else []:
        if isinstance(link, dict) and link.get("rel") == "next":
            if not isinstance(link.get("href"), str):
                raise SearchError("a search page's rel=next link has no href")
            return link
    return None


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
        key = digest(
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
                f"({shown(link['href'])}); it would page forever"
            )
        self._links.add(key)

    def page(self, page: dict[str, Any]) -> None:
        features = page.get("features")
        if not isinstance(features, list):
            return
        # In any order (nothing sorts MAAP's results), junk features by their value.
        ids = [f.get("id") if isinstance(f, dict) else f for f in features]
        digests = [digest(i) for i in ids]
        key = None if None in digests else digest(sorted(d.hex() for d in digests if d))
        if key is None or not ids:
            return
        seen = self._pages.get(key, 0) + 1
        self._pages[key] = seen
        if seen > (1 if len(ids) > 1 else 2):
            items = ", ".join(shown(i) for i in ids[:3]) + (", …" if len(ids) > 3 else "")
            raise SearchError(
                f"search stopped: the catalogue's rel=next repeats a page (items {items} "
                "again); it would page forever"
            )


def pages(
    url: str, first: Any, follow: Callable[[dict[str, Any]], Any]
) -> Iterator[dict[str, Any]]:
    """The pages of the listing at ``url`` that are not empty, from ``first`` on;
    ``follow(link)`` reads the page a ``rel=next`` link names."""
    guard = _LoopGuard()
    page = first
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
        if empty > _MAX_EMPTY_PAGES:
            raise SearchError(
                f"search stopped: {empty} empty pages in a row, each with a rel=next "
                f"({shown(link['href'])}); the listing cannot be completed"
            )
        guard.link(link)
        page = follow(link)


# -- windows: a datetime range searched a piece at a time --------------------------------

#: The most windows one search is split into (ten years of days is 3 653).
_MAX_WINDOWS = 100_000

#: One page: its items and ``numberMatched`` (``stacpull.search.Page``).
_Page = tuple[list[dict[str, Any]], int | None]


def _instant(text: str, *, last: bool, key: str) -> datetime:
    """One end of a canonical STAC datetime (``2025``, ``2025-09``, ``2025-09-29`` or a
    date-time with its offset) as a UTC instant; a date-only end covers its whole
    period, so as an end it stands for the period's last instant, as STAC servers read it."""
    parts = text.split("-") if "T" not in text.upper() else []
    if parts and len(parts) <= 3 and all(p.isdigit() for p in parts):
        year, month, day = (int(p) for p in parts + ["1"] * (3 - len(parts)))
        first = datetime(year, month, day, tzinfo=UTC)
        if not last:
            return first
        if len(parts) == 3:
            after = first + timedelta(days=1)
        elif len(parts) == 2:
            after = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
        else:
            after = datetime(year + 1, 1, 1, tzinfo=UTC)
        return after - timedelta(microseconds=1)
    try:
        stamp = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{key}: {text!r} is not a date-time") from None
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).astimezone(UTC)


def _stamp(moment: datetime) -> str:
    # The year by hand: strftime's %Y writes year 1 as "1", which no server reads as a date.
    rest = moment.strftime("-%m-%dT%H:%M:%S.%fZ" if moment.microsecond else "-%m-%dT%H:%M:%SZ")
    return f"{moment.year:04d}{rest}"


def _width(step: float, key: str) -> timedelta:
    """``step`` seconds as a timedelta: one longer than any timedelta is the longest (one
    window for any range); one shorter than a microsecond, which rounds to zero, an error."""
    try:
        width = timedelta(seconds=step)
    except OverflowError:
        return timedelta.max
    if not width:
        raise ConfigError(f"{key}: a window of {step:g} s is shorter than a microsecond")
    return width


def time_windows(
    span: str | None, step: float, *, now: datetime | None = None, key: str = "search.window"
) -> list[str]:
    """``span`` (a STAC datetime, as :func:`stacpull.config.parse_datetime_range` returns
    it) cut into consecutive windows of ``step`` seconds, oldest first, as STAC datetime
    intervals; the last one ends where ``span`` ends. An open end (``..``) ends ``now``;
    an open start cannot be split (where would the first window begin?), nor no range."""
    if span is None:
        # Said in the config's words: the API and a config file raise this too.
        raise ConfigError(
            f"{key}: a window needs a datetime range to split (search.datetime), e.g. "
            "2025-09-01/2025-10-01"
        )
    if not step > 0:
        raise ConfigError(f"{key}: expected a duration above zero such as 1d or 6h, got {step!r}")
    start_text, slash, end_text = span.partition("/")
    if start_text in ("", ".."):
        raise ConfigError(
            f"{key}: the datetime {span!r} has an open start; give the first instant to "
            "split from, e.g. 2025-09-01/.."
        )
    start = _instant(start_text, last=False, key=key)
    end_text = end_text if slash else start_text  # an instant: its whole period
    if end_text in ("", ".."):
        end = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    else:
        end = _instant(end_text, last=True, key=key)
    if end < start:
        raise ConfigError(f"{key}: the datetime {span!r} ends before it starts")
    width = _width(step, key)
    count = -(-(end - start) // width) if end > start else 1
    if count > _MAX_WINDOWS:
        raise ConfigError(
            f"{key}: {span!r} in windows of {step:g} s is {count} searches "
            f"(at most {_MAX_WINDOWS}); give a longer window"
        )
    edges = [start + i * width for i in range(count)] + [end]
    return [f"{_stamp(a)}/{_stamp(min(b, end))}" for a, b in pairwise(edges)]


async def windowed(
    spans: list[str], search: Callable[[str], AsyncGenerator[_Page, None]], most: int | None = None
) -> AsyncGenerator[_Page, None]:
    """The pages of ``search(span)`` for each of ``spans`` in turn, at most ``most`` items
    in all. An item (same collection and id) that the previous window listed too is left
    out once (it crosses the edge; listed again in the same window, it is passed on as the
    repeat it is); ``numberMatched``, summed over the windows started so far less the
    items left out, is ``None`` once a window does not say. Every window yields
    at least one page (perhaps empty), as :func:`stacpull.search.search_pages` does."""
    before: set[tuple[str, str]] = set()
    total: int | None = 0
    dropped = sent = 0
    for span in spans:
        seen: set[tuple[str, str]] = set()
        first = True
        async with aclosing(search(span)) as pages:
            async for features, matched in pages:
                if first:
                    total = None if total is None or matched is None else total + matched
                    first = False
                kept = []
                for item in features:
                    key = (str(item.get("collection")), str(item.get("id")))
                    # An edge item is left out once: listed again in this window (in the
                    # place of an item no page lists), it is a repeat the planner counts,
                    # or numberMatched would shrink by one per repeat and a short
                    # listing add up as if it were whole.
                    if key in before and key not in seen:
                        dropped += 1
                    else:
                        kept.append(item)
                    seen.add(key)
                if most is not None:
                    kept = kept[: max(0, most - sent)]
                sent += len(kept)
                yield kept, None if total is None else max(0, total - dropped)
                if most is not None and sent >= most:
                    return
        before = seen
