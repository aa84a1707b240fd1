"""Which item is planned, and which job holds each destination, within one run; and what a
listing with items repeated says against the catalogue's ``numberMatched``."""

from __future__ import annotations

from array import array
from collections.abc import Mapping, Sequence
from typing import Any

from .destpaths import path_key
from .errors import SECRETS
from .models import Holder, Job, Refusal

__all__ = ["RunClaims", "listing_gap"]


class _Hashes:
    """A set of 64-bit hashes at 8 to 32 bytes each (an open-addressing table in an array;
    a ``set`` of ints costs about 60): one per item of a million-item mirror."""

    def __init__(self) -> None:
        self._slots = array("q", bytes(8 * 1024))  # 0: an empty slot
        self._count = 0

    def add(self, value: int) -> bool:
        """Add ``value``; False when it was there already."""
        value = value or 1
        if not self._place(self._slots, value):
            return False
        self._count += 1
        if 2 * self._count > len(self._slots):
            old = self._slots
            self._slots = array("q", bytes(16 * len(old)))
            for held in old:
                if held:
                    self._place(self._slots, held)
        return True

    def __contains__(self, value: int) -> bool:
        value = value or 1
        mask = len(self._slots) - 1
        i = (value ^ (value >> 32)) & mask
        while (held := self._slots[i]) != 0:
            if held == value:
                return True
            i = (i + 1) & mask
        return False

    @staticmethod
    def _place(slots: array[int], value: int) -> bool:
        mask = len(slots) - 1
        i = (value ^ (value >> 32)) & mask
        while (held := slots[i]) != 0:
            if held == value:
                return False
            i = (i + 1) & mask
        slots[i] = value
        return True


def _kept(names: tuple[str, str]) -> tuple[str, str]:
    """``(collection, item id)`` as the journal keeps them: without any known secret."""
    return (SECRETS.scrub(names[0], shapes=False), SECRETS.scrub(names[1], shapes=False))


class RunClaims:
    """Which item is planned, and which job holds each destination, in one run: two jobs
    never share a destination.

    - An item listed again (same collection and id: MAAP's search, or a saved search, can
      list one twice, on one page or on two) is planned once; the first listing wins and
      later ones are only counted (:attr:`duplicates`).
    - Destinations are compared by :func:`path_key`, so names that differ only by case or
      Unicode form collide too. The first job planned in the run for a destination keeps
      it; a later job for it is refused, the reason naming both.
    - Across runs the journal's record keeps its destination: a job whose destination the
      journal records for *another item* is refused, whether that item is listed again
      (before or after it) or not, so the winner never depends on the order of results.
      An item whose file left the catalogue frees its name when ``mirror --prune`` deletes
      it; only then may another item's file take that name (never over bytes the journal
      attributes to someone else). The same item re-listed is no collision, also when an
      asset key changed (MAAP's keys drift) but its file name did not.

    Memory: one 64-bit hash per distinct item (2 to 4 MB for 100 000 items); destinations
    are looked up in the journal, which indexes them by key, so none is kept here.
    """

    def __init__(self, run: int) -> None:
        self.run = run
        self.duplicates = 0
        self._items = _Hashes()

    def first_listing(self, item: Mapping[str, Any]) -> bool:
        """Whether ``item`` is listed for the first time in this run (counted if not)."""
        item_id = item.get("id")
        if not isinstance(item_id, str):
            return True  # refused by plan_item anyway
        # Python's str hash is keyed per process (unless PYTHONHASHSEED fixes it): a
        # catalogue cannot aim at a collision; chance: one in ~10^9 for 100 000 items.
        listed = (str(item.get("collection") or "_no_collection"), item_id)
        if self._items.add(hash(listed)):
            # The journal keeps names without a known secret (an id echoing the
            # catalogue's password reads "leak-***" there): its rows find the item too.
            if (kept := _kept(listed)) != listed:
                self._items.add(hash(kept))
            return True
        self.duplicates += 1
        return False

    def __contains__(self, item: object) -> bool:
        """Whether ``(collection, item id)`` was listed in this run: its files are not
        gone, whatever was planned of it (a refused asset, a first listing that lacks one)."""
        return isinstance(item, tuple) and hash(item) in self._items

    def settle(
        self, jobs: Sequence[Job], holders: Mapping[str, Sequence[Holder]]
    ) -> tuple[list[Job], list[Refusal]]:
        """Split one page's jobs, in order, into those that keep their destination and
        refusals for the rest. ``holders``: the journal's holders by :func:`path_key`."""
        kept: list[Job] = []
        refused: list[Refusal] = []
        page: dict[str, Holder] = {}
        for job in jobs:
            key = path_key(job.dest)
            clash = page.get(key) or self._clash(job, holders.get(key, ()))
            if clash is None:
                page[key] = Holder(
                    job.dest, job.collection, job.item_id, job.asset_key, run=self.run
                )
                kept.append(job)
            else:
                refused.append(self._refusal(job, clash))
        return kept, refused

    def _clash(self, job: Job, holders: Sequence[Holder]) -> Holder | None:
        this_run = [h for h in holders if h.run == self.run]
        for h in this_run:
            if (h.collection, h.item_id, h.asset_key) != (
                job.collection,
                job.item_id,
                job.asset_key,
            ):
                return h
        mine = {(job.collection, job.item_id), _kept((job.collection, job.item_id))}
        for h in holders:
            if h.run != self.run and (h.collection, h.item_id) not in mine:
                return h
        return None

    def _refusal(self, job: Job, holder: Holder) -> Refusal:
        both = holder.collection != job.collection
        mine = job.label + (f" ({job.collection})" if both else "")
        theirs = holder.label + (f" ({holder.collection})" if both else "")
        same = (
            ""
            if holder.path == job.dest
            else f" (as {holder.path!r}: one name where case and accents are not told apart)"
        )
        when = (
            "planned first in this run"
            if holder.run == self.run
            else "recorded in the journal by an earlier run; once that item left the "
            "catalogue, `mirror --prune` of its search frees the name"
        )
        return Refusal(
            job.item_id,
            job.collection,
            job.asset_key,
            f"{mine}: destination {job.dest!r} is already {theirs}'s{same}, {when}; "
            "two files cannot share one destination",
        )


def listing_gap(listed: int, matched: int | None, repeats: int = 0) -> str | None:
    """Why the ``listed`` distinct items of a whole search are not the ``matched`` the
    catalogue counted (``None`` when they agree, or when it gave no count).

    MAAP pages its unordered results by offset: a page can list again an item of an earlier
    one in place of another that no page then lists, so a listing can come up short while
    every page looked whole; ``repeats`` (items listed again) says whether that happened."""
    if matched is None or listed == matched:
        return None
    if listed > matched:
        return (
            f"the search listed {listed} distinct items, more than the {matched} the "
            "catalogue counted (items added while it paged)"
        )
    again = f", {repeats} listed again in their place" if repeats else ""
    return (
        f"the search listed {listed} distinct items of the {matched} the catalogue counted "
        f"({matched - listed} never listed{again}): results that shift while they are paged "
        # The API's reports say this too: the setting, then the flag.
        "hide items; run it again, or in windows (search.window, --window), to pick up "
        "the rest"
    )
