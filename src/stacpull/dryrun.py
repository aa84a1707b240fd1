"""The dry run: what a download or mirror would fetch, without fetching anything.

The search runs and every item is planned exactly as a real run would; then each planned
file is compared with DEST, looked at as a real run does (never through a link): a file
already there with the size the catalogue gives (or the size the journal verified)
counts as on disk, as a real run would skip it; one the real run would refuse (a link on
its way) counts as refused. The bytes
still to fetch are ``file:size`` where the catalogue gives it; zipper products have none,
so they are estimated from the files of the same collection and asset key that earlier
runs into DEST verified (and reported as unknown when there were none). Nothing is
written, not even DEST or its journal.

With the ``maap`` profile it also says which rule (per mission) chose the assets of how
many items and why, so a user sees that EarthCARE items give their HDF5 file, not the zip;
and it counts the assets left out because another key of the item has the same href.
"""

from __future__ import annotations

import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio.to_thread

from .claims import RunClaims
from .config import Config
from .errors import ConfigError, PlanError
from .journal import JOURNAL_DIR, Journal
from .models import Job, Refusal
from .peek import peek
from .plan import PlanRules, plan_item
from .safepath import is_regular, lstat_below
from .search import CatalogueHeaders, ItemPages, search_pages
from .selection import profile_choice

__all__ = ["AssetPlan", "PlanSummary", "RulePlan", "budget_error", "dry_run"]


@dataclass(slots=True)
class AssetPlan:
    """The files of one asset key: how many, already on disk, and the bytes still to fetch."""

    key: str
    files: int = 0
    on_disk: int = 0
    on_disk_bytes: int = 0
    known_bytes: int = 0
    unknown: int = 0  # files to fetch without file:size
    estimated_bytes: int = 0  # the guess for those, from earlier runs
    unguessed: int = 0  # of those, files no earlier run can size

    def _count(
        self,
        job: Job,
        size_on_disk: int | None,
        verified: int | None,
        typical: dict[tuple[str, str], int],
    ) -> None:
        """Count ``job``: on disk when a regular file of the size the catalogue gives (or,
        without one, the size the journal ``verified``) is there, as a real run would skip
        it; otherwise its bytes to fetch, known, guessed from ``typical`` sizes, or neither."""
        self.files += 1
        expected = job.size if job.size is not None else verified
        if size_on_disk is not None and (expected is None or size_on_disk == expected):
            self.on_disk += 1
            self.on_disk_bytes += size_on_disk
        elif job.size is not None:
            self.known_bytes += job.size
        else:
            self.unknown += 1
            guess = typical.get((job.collection, job.asset_key))
            if guess is None:
                self.unguessed += 1
            else:
                self.estimated_bytes += guess


#: Distinct reasons a rule's line names; the rest are counted as "other reasons".
_MAX_REASONS = 8


@dataclass(slots=True)
class RulePlan:
    """The items one rule of the ``maap`` profile chose assets for: how many, why (each
    reason with its count of items) and the keys it took (each with its count)."""

    rule: str
    items: int = 0
    why: dict[str, int] = field(default_factory=dict)
    keys: dict[str, int] = field(default_factory=dict)

    def _count(self, why: str, keys: tuple[str, ...]) -> None:
        self.items += 1
        if why not in self.why and len(self.why) >= _MAX_REASONS:
            why = "other reasons"  # a catalogue's values are unbounded; the line is not
        self.why[why] = self.why.get(why, 0) + 1
        for key in keys:
            self.keys[key] = self.keys.get(key, 0) + 1

    def line(self) -> str:
        """``earthcare: 2 items (enclosure_h5 present, platform EarthCARE) → enclosure_h5, …``"""
        reasons = "; ".join(
            why if len(self.why) == 1 else f"{why}: {n}" for why, n in self.why.items()
        )
        plural = "item" if self.items == 1 else "items"
        taken = ", ".join(self.keys) or "nothing"
        return f"{self.rule}: {self.items} {plural} ({reasons}) → {taken}"

    def record(self) -> dict[str, Any]:
        return {"rule": self.rule, "items": self.items, "why": self.why, "assets": self.keys}


@dataclass(slots=True)
class PlanSummary:
    """What a run would do. Bytes to fetch = ``known_bytes + estimated_bytes``, plus
    ``unguessed`` files nobody can size before downloading them. The file and byte totals
    are the sums of ``assets``."""

    dest: str
    items: int = 0
    matched: int | None = None
    refused: int = 0
    free_bytes: int = 0
    min_free: int = 0
    assets: dict[str, AssetPlan] = field(default_factory=dict)
    rules: dict[str, RulePlan] = field(default_factory=dict)  # with the maap profile only
    #: (key left out, key whose job fetches the same href) → items
    same_file: dict[tuple[str, str], int] = field(default_factory=dict)

    def notes(self) -> list[str]:
        """The lines saying which profile rule chose what and which keys share a file."""
        lines = [f"rule:         {plan.line()}" for plan in self.rules.values()]
        lines += [
            f"same file:    {key} is {kept}'s href in {n} item(s): downloaded once, as {kept}"
            for (key, kept), n in self.same_file.items()
        ]
        return lines

    def records(self) -> dict[str, Any]:
        """The rules and shared files as ``--dry-run --json`` gives them."""
        return {
            "rules": [plan.record() for plan in self.rules.values()],
            "same_file": [
                {"key": key, "as": kept, "items": n} for (key, kept), n in self.same_file.items()
            ],
        }

    def _note(
        self, item: dict[str, Any], rules: PlanRules, jobs: list[Job], refusals: list[Refusal]
    ) -> None:
        """Count ``item`` under its profile rule (with ``maap``) and its shared hrefs; an
        item refused whole (no id, text no writer takes) is no rule's."""
        whole = any(r.asset_key == "*" for r in refusals) and not jobs
        if "maap" in rules.selectors and not whole:
            choice = profile_choice(item)
            plan = self.rules.setdefault(choice.rule, RulePlan(choice.rule))
            plan._count(choice.why, choice.keys)
        for job in jobs:
            for key in job.also:
                pair = (key, job.asset_key)
                self.same_file[pair] = self.same_file.get(pair, 0) + 1

    def _sum(self, name: str) -> int:
        return sum(getattr(plan, name) for plan in self.assets.values())

    @property
    def files(self) -> int:
        return self._sum("files")

    @property
    def on_disk_files(self) -> int:
        return self._sum("on_disk")

    @property
    def on_disk_bytes(self) -> int:
        return self._sum("on_disk_bytes")

    @property
    def known_bytes(self) -> int:
        return self._sum("known_bytes")

    @property
    def unknown_files(self) -> int:
        return self._sum("unknown")

    @property
    def estimated_bytes(self) -> int:
        return self._sum("estimated_bytes")

    @property
    def unguessed(self) -> int:
        return self._sum("unguessed")

    @property
    def to_fetch_files(self) -> int:
        return self.files - self.on_disk_files

    @property
    def to_fetch_bytes(self) -> int:
        """Known plus estimated bytes still to fetch (a lower bound while ``unguessed``)."""
        return self.known_bytes + self.estimated_bytes

    @property
    def fits(self) -> bool:
        """Whether DEST has room for it with ``download.min_free`` to spare."""
        return self.free_bytes - self.to_fetch_bytes >= self.min_free


def _free_space(root: Path) -> int:
    probe = root
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free
    except OSError:
        return 0


def _size_on_disk(root: Path, dest: str) -> int | None:
    """The size of the regular file at ``dest`` in DEST, looked at as a real run does,
    without following a link: None when there is none (or a link, a FIFO: the real run
    replaces it); :class:`PlanError` when the real run would refuse the destination (a
    link or a file on the way, a directory at the name)."""
    try:
        st = lstat_below(root, root / dest)
    except OSError:  # unreadable: the real run finds out
        return None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise PlanError(f"{dest!r} in DEST is a directory")
    return st.st_size if is_regular(st) else None


def _journal_view(root: Path) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    """Verified files (path → bytes) and typical sizes from DEST's journal, if it has one."""
    if not (root / JOURNAL_DIR / "journal.sqlite").is_file():
        return {}, {}
    journal = Journal(root, create=False)
    try:
        done = {row.path: row.bytes for row in journal.rows("done")}
        return done, journal.typical_sizes()
    finally:
        journal.close()


async def dry_run(config: Config, *, pages: ItemPages | None = None) -> PlanSummary:
    """Search and plan per ``config``; compare with DEST; transfer nothing."""
    if not config.download.dest:
        raise ConfigError("download.dest: no destination directory given (--dest DIR)")
    root = Path(config.download.dest).expanduser().resolve()
    rules = PlanRules(config.download.assets, config.download.template)
    done, typical = await anyio.to_thread.run_sync(_journal_view, root)
    summary = PlanSummary(
        str(root), free_bytes=_free_space(root), min_free=config.download.min_free
    )
    exists = root.is_dir()
    # As a real run: selectors that pick no asset of any item raise NothingSelected.
    peeked = await peek(
        pages
        if pages is not None
        else (lambda: search_pages(config.search, CatalogueHeaders.of(config))),
        rules.selectors,
    )
    source = peeked.pages()
    claims = RunClaims(run=0)  # an item listed twice is planned once, as in a real run
    async for features, matched in source:
        summary.matched = matched
        summary.items += len(features)
        for item in features:
            if not claims.first_listing(item):
                continue
            jobs, refusals = plan_item(item, rules)
            summary.refused += len(refusals)
            summary._note(item, rules, jobs, refusals)
            for job in jobs:
                try:
                    size_on_disk = _size_on_disk(root, job.dest) if exists else None
                except PlanError:  # a link or a file on the way: the real run refuses it
                    summary.refused += 1
                    continue
                plan = summary.assets.setdefault(job.asset_key, AssetPlan(job.asset_key))
                plan._count(job, size_on_disk, done.get(job.dest), typical)
    return summary


def budget_error(summary: PlanSummary, budget: int) -> str | None:
    """Why ``summary`` must not start under ``budget`` bytes (``None``: it may)."""
    if summary.to_fetch_bytes <= budget:
        return None
    from .units import human_bytes

    return (
        f"this run would download about {human_bytes(summary.to_fetch_bytes)} "
        f"({summary.to_fetch_files} files), more than the budget of {human_bytes(budget)} "
        "(--max-bytes, download.max_bytes); narrow the query, raise the budget, or add "
        "--yes to go ahead"
    )
