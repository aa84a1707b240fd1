"""One walk over a search's pages: how many items match, the first few of them, and every
item saved as it arrives.

``stacpull search`` and :func:`stacpull.search_items` are the same loop: page through the
matches, keep the first ``keep`` items (all of them without a bound), hand each one to an
:class:`~stacpull.export.ItemWriter` as its page arrives. Written once here, it decides
once when the output opens (with the first page, so a query the catalogue refuses leaves
``-o -`` empty rather than half an ItemCollection) and when the walk may stop early (it
saves nothing and has its ``keep`` items). An item the catalogue lists again (MAAP's
unordered offset paging can) is kept and saved once, and counted in ``repeats``.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .claims import RunClaims
from .search import CatalogueHeaders, search_pages

if TYPE_CHECKING:
    from .config import Config
    from .export import ItemWriter

__all__ = ["Walked", "walk_items"]


@dataclass(slots=True)
class Walked:
    """What a walk found: ``matched`` as the catalogue counts it (``None`` when it does not
    say), ``seen`` distinct items listed, and the first of them, as many as were to be kept."""

    matched: int | None = None
    seen: int = 0
    items: list[dict[str, Any]] = field(default_factory=list)
    repeats: int = 0  # items listed again (not counted in seen, not saved twice)

    @property
    def total(self) -> int:
        """How many items match: the catalogue's count, else the items listed."""
        return self.matched if self.matched is not None else self.seen


async def walk_items(
    config: Config, *, keep: int | None = None, writer: ItemWriter | None = None
) -> Walked:
    """Page through the search of ``config``, keeping the first ``keep`` items (every one
    when ``None``) and writing each to ``writer``; without a writer the walk stops once it
    has ``keep`` items. The writer is entered with the first page (an empty search still
    writes a valid, empty output) and left when the walk ends."""
    walked = Walked()
    claims = RunClaims(0)
    started = False
    with ExitStack() as opened:
        async for features, matched in search_pages(config.search, CatalogueHeaders.of(config)):
            if writer is not None and not started:
                opened.enter_context(writer)
                started = True
            walked.matched = matched
            for item in features:
                if not claims.first_listing(item):
                    walked.repeats += 1
                    continue
                walked.seen += 1
                if keep is None or walked.seen <= keep:
                    walked.items.append(item)
                if writer is not None:
                    writer.write(item)
            if writer is None and keep is not None and walked.seen >= keep:
                break
        if writer is not None and not started:  # no page at all: still a valid, empty output
            opened.enter_context(writer)
    return walked
