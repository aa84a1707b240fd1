"""Frozen value types shared by every layer: what to fetch and how it ended."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = ["Holder", "Job", "Outcome", "Refusal", "Status"]


class Status(enum.StrEnum):
    """How one job ended in one run."""

    DOWNLOADED = "downloaded"
    SKIPPED = "skipped"  # already present and verified
    FAILED = "failed"
    REFUSED = "refused"  # could not be planned safely; nothing was requested


@dataclass(frozen=True, slots=True)
class Job:
    """One asset of one item, planned: where it comes from and where it goes.

    ``dest`` is relative to DEST, POSIX-style, already sanitised by :mod:`stacpull.plan`.
    ``checksum`` is a hex multihash (``file:checksum``) or ``None``.
    """

    item_id: str
    collection: str
    asset_key: str
    url: str
    dest: str
    media_type: str | None = None
    roles: tuple[str, ...] = ()
    size: int | None = None
    checksum: str | None = None
    item_updated: str | None = None
    zip_check: bool = False  # verify the zip's central directory and CRCs after transfer
    also: tuple[str, ...] = ()  # other keys of the item with this href (fetched once, here)

    @property
    def label(self) -> str:
        """Short human name for dashboards and logs."""
        return f"{self.item_id}/{self.asset_key}"


@dataclass(frozen=True, slots=True)
class Refusal:
    """An asset that planning refused (unsafe path, no usable href…)."""

    item_id: str
    collection: str
    asset_key: str
    reason: str


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a destination, as the journal or this run's plan records it: the item and
    asset whose file goes (or went) there, and the run that last planned it."""

    path: str
    collection: str
    item_id: str
    asset_key: str
    run: int | None = None

    @property
    def label(self) -> str:
        """``item/asset``, as :attr:`Job.label` names a job."""
        return f"{self.item_id}/{self.asset_key}"


@dataclass(frozen=True, slots=True)
class Outcome:
    """The end of one job in one run."""

    job: Job
    status: Status
    bytes_downloaded: int = 0  # bytes received over the network in this run
    size: int | None = None  # final size on disk when present
    seconds: float = 0.0
    attempts: int = 0
    digest: str | None = None  # hex multihash computed while streaming, if any
    error: str | None = None
    error_class: str | None = None
    resumed_from: int = 0
    notes: tuple[str, ...] = field(default=())
