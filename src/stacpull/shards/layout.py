"""How a DEST's job space is cut into shards: buckets, their record, and units of them.

An item's bucket is a stable hash of (collection, item id) modulo B, so every file of an
item is in one bucket and a later run finds the same shards. B is fixed per DEST at its
first cluster run and recorded in ``DEST/.stacpull/shards/layout.json``; a later run
asking for another B is refused (the recorded one wins unless the shards are removed).

A run's buckets with work are grouped into units, largest planned bytes first onto the
least-loaded unit (LPT), so that no unit is a long tail; units are dispatched largest
first.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .. import safeio
from ..errors import ConfigError, StorageError
from ..models import Job

__all__ = [
    "DEFAULT_BUCKETS",
    "HASH",
    "SHARDS_DIR",
    "UNIT_FLOOR",
    "UNKNOWN_SIZE",
    "Layout",
    "Unit",
    "bucket_dir",
    "bucket_of",
    "job_bucket",
    "make_bucket_dir",
    "planned_bytes",
    "shards_dir",
    "unit_count",
    "units",
]

DEFAULT_BUCKETS = 64
#: The hash's name in layout.json: a later version may only read a layout it can compute.
HASH = "sha256-8/v1"
SHARDS_DIR = "shards"
#: Bytes counted for a file of unknown size with no typical size to go by.
UNKNOWN_SIZE = 1 << 20
#: Planned bytes a unit is given at least, while the run has more than one unit per
#: worker (:func:`unit_count`): enough for its window to ramp up and then stay busy.
UNIT_FLOOR = 1 << 30
_VERSION = 1


def bucket_of(collection: str, item_id: str, buckets: int) -> int:
    """The bucket of an item: the first 8 bytes of sha256(collection NUL id), modulo B."""
    digest = hashlib.sha256(f"{collection}\0{item_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % buckets


def job_bucket(job: Job, buckets: int) -> int:
    """The bucket of ``job``'s item (the asset does not count: an item's files stay together)."""
    return bucket_of(job.collection, job.item_id, buckets)


def bucket_dir(state: Path, bucket: int) -> Path:
    """``DEST/.stacpull/shards/b017``: a bucket's journal, lease and job files."""
    return state / SHARDS_DIR / f"b{bucket:03d}"


def shards_dir(state: Path) -> Path | None:
    """``DEST/.stacpull/shards`` when it is there (None when it is not), refused when it
    is anything but a real directory: a link planted there would have every run read,
    merge and write bucket journals (and their rows, paths and all) from elsewhere."""
    shards = state / SHARDS_DIR
    try:
        exists = safeio.ensure_directory(shards, create=False)
    except OSError as exc:
        raise StorageError(
            f"{shards} is {exc.strerror}; stacpull keeps a cluster run's shards only in a "
            "real directory inside DEST: remove it"
        ) from None
    return shards if exists else None


def make_bucket_dir(state: Path, bucket: int) -> Path:
    """:func:`bucket_dir`, made with ``shards/`` if missing (never through a link);
    raises OSError."""
    directory = bucket_dir(state, bucket)
    safeio.ensure_directory(directory.parent, create=True)
    safeio.ensure_directory(directory, create=True)
    return directory


def planned_bytes(job: Job, typical: Mapping[tuple[str, str], int]) -> int:
    """What ``job`` is likely to weigh: its announced size, else the average verified size
    of its (collection, asset key), else :data:`UNKNOWN_SIZE`."""
    if job.size is not None and job.size > 0:
        return job.size
    return typical.get((job.collection, job.asset_key), UNKNOWN_SIZE)


@dataclass(frozen=True, slots=True)
class Layout:
    """A DEST's shard layout: ``buckets`` (B), as recorded in ``shards/layout.json``."""

    buckets: int

    @staticmethod
    def path(state: Path) -> Path:
        return state / SHARDS_DIR / "layout.json"

    @classmethod
    def read(cls, state: Path) -> Layout | None:
        """The layout recorded under ``state`` (``DEST/.stacpull``), or None when none is."""
        path = cls.path(state)
        if shards_dir(state) is None:
            return None
        try:
            data = json.loads(safeio.read_regular(path))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise StorageError(f"cannot read the shard layout {path}: {exc}") from exc
        if (
            not isinstance(data, dict)
            or data.get("hash") != HASH
            or data.get("version") != _VERSION
        ):
            raise StorageError(
                f"{path}: not a shard layout this stacpull can read (hash {HASH}, version {_VERSION})"
            )
        buckets = data.get("buckets")
        if not isinstance(buckets, int) or buckets < 1:
            raise StorageError(f"{path}: buckets must be a positive integer, got {buckets!r}")
        return cls(buckets)

    @classmethod
    def ensure(cls, state: Path, buckets: int | None = None) -> Layout:
        """The DEST's layout: the recorded one, or ``buckets`` (default 64) recorded now.
        Raises :class:`ConfigError` when ``buckets`` differs from the recorded B."""
        if buckets is not None and buckets < 1:
            raise ConfigError(f"cluster.buckets: must be at least 1, got {buckets}")
        recorded = cls.read(state)
        if recorded is not None:
            if buckets is not None and buckets != recorded.buckets:
                raise ConfigError(
                    f"cluster.buckets: this DEST's shards were made with {recorded.buckets} "
                    f"buckets ({cls.path(state)}); run with {recorded.buckets}, or remove "
                    f"{state / SHARDS_DIR} (after a complete run) to use {buckets}"
                )
            return recorded
        layout = cls(buckets or DEFAULT_BUCKETS)
        layout._write(state)
        return layout

    def _write(self, state: Path) -> None:
        shards = state / SHARDS_DIR
        try:
            safeio.ensure_directory(state, create=True)
            safeio.ensure_directory(shards, create=True)
            record = {"version": _VERSION, "buckets": self.buckets, "hash": HASH}
            temporary = shards / f".layout-{os.getpid()}.json"
            with safeio.create_new(temporary) as handle:  # never through a link
                handle.write(json.dumps(record) + "\n")
            safeio.replace_regular(temporary, self.path(state))
        except OSError as exc:
            raise StorageError(f"cannot record the shard layout in {shards}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Unit:
    """One task's share of a run: ``buckets`` and their planned ``bytes``; ``number``
    orders units largest first."""

    number: int
    buckets: tuple[int, ...]
    bytes: int


def unit_count(buckets_with_work: int, workers: int, planned: int | None = None) -> int:
    """How many units a run cuts its buckets into: four per worker (the slack that lets a
    fast worker take more), never more than there are buckets with work.

    Given the run's ``planned`` bytes, a small run is cut into fewer units, down to one
    per worker: each unit is one engine run whose window starts small and ramps up, and a
    worker runs its units one after the other, so units of a few seconds each spend much
    of their time ramping (the WAN ``products`` row: 445 MB in 8 units took twice the
    transfer time of 2 units). A unit gets at least :data:`UNIT_FLOOR` bytes while the
    slack allows."""
    count = 4 * max(1, workers)
    if planned is not None:
        count = min(count, max(workers, planned // UNIT_FLOOR))
    return max(0, min(buckets_with_work, count))


def units(loads: Mapping[int, int], count: int) -> list[Unit]:
    """Group buckets (bucket → planned bytes) into ``count`` units: largest bucket first,
    each onto the least-loaded unit (LPT, within 4/3 of the best). Returned largest unit
    first, numbered in that order; a unit's buckets are sorted."""
    if not loads:
        return []
    count = max(1, min(count, len(loads)))
    heap: list[tuple[int, int]] = [(0, slot) for slot in range(count)]
    members: list[list[int]] = [[] for _ in range(count)]
    totals = [0] * count
    for bucket, size in sorted(loads.items(), key=lambda kv: (-kv[1], kv[0])):
        load, slot = heapq.heappop(heap)
        members[slot].append(bucket)
        totals[slot] = load + size
        heapq.heappush(heap, (totals[slot], slot))
    order = sorted(range(count), key=lambda s: (-totals[s], min(members[s])))
    return [
        Unit(number, tuple(sorted(members[slot])), totals[slot])
        for number, slot in enumerate(order)
        if members[slot]
    ]
