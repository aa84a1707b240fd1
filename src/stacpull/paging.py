"""What keeps a paged listing finite: ``rel=next`` followed until it ends, never in a loop.

A catalogue's ``rel=next`` may repeat a page (unordered offset paging, a token that never
moves) or lead through empty pages without end; :func:`pages` follows a search's links and
stops with a :class:`~stacpull.errors.SearchError` instead of paging forever. Pure: the
request for the next page is the caller's (:mod:`stacpull.search`, through pystac-client).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from typing import Any

from .errors import SearchError

__all__ = ["digest", "pages", "shown"]

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
