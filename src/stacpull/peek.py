"""Before anything is made in DEST: does the search list an item, and do the selectors
pick an asset of any?

A run that matched nothing, or whose ``--assets`` pick no asset of any item, must leave
no DEST behind (not even its ``.stacpull`` journal) and say why. :func:`peek` reads the
search up to the first item with a selected asset and hands back pages that replay what
it read, then go on with the same search: nothing is searched twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError
from .search import ItemPages, Page
from .selection import choose_assets

__all__ = ["NothingSelected", "peek"]

_SHOWN_KEYS = 40


class NothingSelected(ConfigError):
    """The asset selectors pick no asset of any item the search listed (exit 2)."""


@dataclass(frozen=True, slots=True)
class _Peeked:
    """The search as read so far: ``pages`` replays it (once; later calls search anew);
    ``empty`` when it listed no item at all."""

    pages: ItemPages
    empty: bool


def _asset_keys(item: Any) -> dict[str, dict[str, Any]]:
    assets = item.get("assets") if isinstance(item, dict) else None
    if not isinstance(assets, dict):
        return {}
    return {k: v for k, v in assets.items() if isinstance(k, str) and isinstance(v, dict)}


def _nothing_selected(selectors: Sequence[str], items: int, keys: set[str]) -> NothingSelected:
    """The one-line reason for selectors that picked nothing, naming the keys there are."""
    chosen = ", ".join(selectors)
    if not keys:
        return NothingSelected(
            f"--assets {chosen}: the {items} item(s) listed have no assets at all; "
            "nothing to download"
        )
    shown = sorted(keys)
    more = f" and {len(shown) - _SHOWN_KEYS} more" if len(shown) > _SHOWN_KEYS else ""
    return NothingSelected(
        f"--assets {chosen} selects no asset of the {items} item(s) listed; their asset "
        f"keys: {', '.join(shown[:_SHOWN_KEYS])}{more} (--assets all takes every one)"
    )


async def peek(pages: ItemPages, selectors: Sequence[str]) -> _Peeked:
    """Read ``pages`` until an item has an asset ``selectors`` pick. Raises
    :class:`NothingSelected` when the whole search has none (and lists an item)."""
    source = pages().__aiter__()
    read: list[Page] = []
    items = 0
    keys: set[str] = set()
    found = finished = False
    while not found:
        try:
            page = await source.__anext__()
        except StopAsyncIteration:
            finished = True
            break
        read.append(page)
        for item in page[0]:
            items += 1
            assets = _asset_keys(item)
            if choose_assets(assets, selectors, item):
                found = True
                break
            keys.update(assets)
    if not found and items:
        raise _nothing_selected(selectors, items, keys)
    replayed = False

    async def replay() -> AsyncIterator[Page]:
        for page in read:
            yield page
        if not finished:
            async for page in source:
                yield page

    def again() -> AsyncIterator[Page]:
        nonlocal replayed
        if replayed:
            return pages()
        replayed = True
        return replay()

    return _Peeked(again, empty=items == 0)
