"""Search results as MAAP returns them: unordered, and an item listed again on a later page.

MAAP's item search pages by offset over results it does not sort, so a page may hold items
in any order and an item of one page can come back on the next, in the place of another
that is then never listed (clients de-duplicate by id). :class:`ResultOrder` reshapes the
simulator's pages that way; both knobs are off by default, so the sim's listings stay
ordered and whole unless a test asks otherwise.
"""

from __future__ import annotations

import hashlib
import random
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ResultOrder"]

#: Pages whose last items are remembered for a later page to list again: enough for the
#: searches a test or a demo runs at once, bounded for a long-running ``sim serve``.
_REMEMBERED = 1024

#: Where a page starts: (collection index, position), as the sim's paging tokens say.
_State = tuple[int, int]


@dataclass
class ResultOrder:
    """``shuffle``: each page's items in a seeded random order; ``duplicates``: each page
    after the first begins with this many items of the previous page again, in the place
    of as many items that no page then lists (``numberMatched`` still counts them)."""

    shuffle: bool = False
    duplicates: int = 0
    seed: int = 0
    _last: OrderedDict[tuple[str, _State], list[dict[str, Any]]] = field(
        default_factory=OrderedDict, repr=False
    )

    def __post_init__(self) -> None:
        if self.duplicates < 0:
            raise ValueError("duplicates must be ≥ 0")

    def page(
        self, query: str, start: _State, following: _State | None, items: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """The page of ``query`` that starts at ``start`` as it is served: ``items`` (in
        the sim's order) reshaped; ``following``: where the next page starts, if any."""
        if self.duplicates and start != (0, 0):
            again = self._last.get((query, start), [])
            items = again + items[len(again) :]
        if self.duplicates and following is not None and len(items) > self.duplicates:
            self._last[(query, following)] = items[-self.duplicates :]
            while len(self._last) > _REMEMBERED:
                self._last.popitem(last=False)
        if self.shuffle:
            key = hashlib.sha256(f"{self.seed}|{query}|{start}".encode()).digest()
            items = list(items)
            random.Random(key).shuffle(items)
        return items
