"""The persistent split state of a ``.part`` filled by parallel ranges: its layout
(:class:`SegmentState`, journalled as JSON), the per-batch progress record in the
journal's directory (:class:`RangeRecord`, written by the thread that writes the batch:
:func:`write_range`), and discarding a ``.part`` with both (:func:`discard`). Fetching the
ranges is :mod:`.segments`'s."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import struct
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread

from ..errors import scrubbed_logger
from ..safepath import NONBLOCK, create_fresh, is_regular, open_directory, open_nofollow
from .partfile import part_bytes, remove_part, write_blocks

if TYPE_CHECKING:
    from ..journal import JournalRow
    from ..models import Job
    from .context import FetchContext

__all__ = [
    "RANGE_RECORDS",
    "RangeRecord",
    "Segment",
    "SegmentState",
    "close_record",
    "discard",
    "save_segments",
    "saved_segments",
    "write_range",
]

#: The transfer's messages keep the name fetch.py gave them (``--debug`` prints it, users
#: set its level); every module of the package shares the logger and its one filter.
log = scrubbed_logger("stacpull.fetch")


#: A split file has up to this many rounds of ranges per parallel connection (each at
#: least ``download.segment_size``). Connections take them in file order, so the file
#: fills from the front and its hash can follow while the rest arrives: when the last
#: ranges end, only what they held is left to hash, not the whole file. Each further
#: range costs its connection one round trip.
_RANGES_PER_LANE = 4

#: The last round is cut in halves up to this many times (never below
#: ``download.segment_size``): b/2, b/4, b/8, b/8 instead of b. The connections of a split
#: file join as host slots free up, so how many run is not known when the file is laid
#: out; with small ranges at the end, whichever connections run end within a small
#: range of each other, and a late joiner still finds work.
_TAPER = 3


@dataclass(slots=True)
class Segment:
    """One range of a split file: bytes ``[start, end)``, ``done`` of them on disk."""

    start: int
    end: int  # exclusive
    done: int = 0

    @property
    def left(self) -> int:
        """Bytes of the range still to fetch."""
        return self.end - self.start - self.done


def _round_units(rounds: int, room: int) -> list[int]:
    """Each round's range length, in units: ``rounds`` rounds, the last one halved as
    often as :data:`_TAPER` allows while a unit (a ``room``-th of a full range, at least
    ``segment_size`` long) stays whole: 3 rounds, room 4: ``[4, 4, 2, 1, 1]``."""
    halvings = min(_TAPER, max(0, room.bit_length() - 1))
    full = 1 << halvings
    taper = [full >> i for i in range(1, halvings + 1)]
    return [full] * (rounds - 1) + ([*taper, 1] if halvings else [full])


@dataclass(slots=True)
class SegmentState:
    """A ``.part`` filled by parallel ranges: bytes ``[0, prefix)`` came from the first
    stream, each segment fills its own range (``parts`` in file order). Journalled as
    JSON."""

    total: int
    validator: str
    prefix: int
    parts: list[Segment]
    saved_at: float = 0.0
    record: RangeRecord | None = None  # the ranges' progress after every batch, if open

    @classmethod
    def split(
        cls, total: int, validator: str, prefix: int, *, segments: int, segment_size: int
    ) -> SegmentState:
        """The bytes after ``prefix`` as ranges of at least ``segment_size`` for up to
        ``segments`` connections, in rounds of one range per connection, the last round
        tapered (see :data:`_TAPER`). Every round's ranges are the same length, so when
        all the connections run they all end together: with 19 ranges on 16 connections,
        three would fetch a second range while thirteen sat idle, and the file would take
        nearly twice as long. When fewer run (the others wait for host slots), the small
        ranges at the end keep the last ones from ending far apart."""
        rest = total - prefix
        lanes = max(1, min(segments, rest // segment_size))
        rounds = max(1, min(_RANGES_PER_LANE, rest // (lanes * segment_size)))
        units = _round_units(rounds, rest // (lanes * rounds * segment_size))
        whole = lanes * sum(units)
        steps = itertools.accumulate(u for u in units for _ in range(lanes))
        bounds = [prefix, *(prefix + rest * step // whole for step in steps)]
        parts = [Segment(a, b) for a, b in itertools.pairwise(bounds)]
        return cls(total, validator, prefix, parts)

    @property
    def received(self) -> int:
        """Bytes of the file on disk: the prefix and every range's."""
        return self.prefix + sum(p.done for p in self.parts)

    @property
    def filled(self) -> int:
        """How many bytes from the start of the file are on disk without a gap."""
        for p in self.parts:
            if p.left > 0:
                return p.start + p.done
        return self.total

    def to_json(self) -> str:
        """The journal's text of the layout and each range's progress."""
        return json.dumps(
            {
                "total": self.total,
                "validator": self.validator,
                "prefix": self.prefix,
                "parts": [[p.start, p.end, p.done] for p in self.parts],
            }
        )

    @classmethod
    def from_json(cls, text: str) -> SegmentState:
        """The layout :meth:`to_json` wrote; ValueError, KeyError or TypeError when not."""
        data = json.loads(text)
        parts = [Segment(int(a), int(b), int(d)) for a, b, d in data["parts"]]
        return cls(int(data["total"]), str(data["validator"]), int(data["prefix"]), parts)


#: The directory, inside the journal's, of the split files' progress records.
RANGE_RECORDS = "ranges"
_RECORD_MAGIC = b"stpl-rg1"
#: magic, layout digest, boot id, number of ranges; then each range's bytes on disk.
_RECORD_HEAD = struct.Struct("<8s16s16sQ")
_RECORD_DONE = struct.Struct("<Q")


def _boot_id() -> bytes:
    """This boot of the machine (Linux), or zeros where it cannot be told: the page cache,
    which makes a progress record true after a crash of the process, lasts one boot."""
    try:
        return uuid.UUID(Path("/proc/sys/kernel/random/boot_id").read_text().strip()).bytes
    except (OSError, ValueError):
        return bytes(16)


_BOOT_ID = _boot_id()


def _record_dir(directory: Path, *, make: bool) -> int:
    """A descriptor of the progress records' directory, never reached through a link at
    its own name (``make``: created, and a link there replaced by a directory). Blocking."""
    if make:
        with contextlib.suppress(FileExistsError):
            directory.mkdir(0o700)
    try:
        return open_directory(directory)
    except OSError:
        if not (make and directory.is_symlink()):
            raise
    directory.unlink()  # a link in stacpull's own directory: removed, never followed
    directory.mkdir(0o700)
    return open_directory(directory)


class RangeRecord:
    """How far each range of a split ``.part`` has reached the disk, rewritten in place
    right after each batch's ``pwritev``, by the same worker thread (one 8-byte ``pwrite``
    per batch of up to ``segments._RANGE_BATCH``, never an fsync). The data is written before the
    number that claims it, so after ``kill -9`` (the page cache keeps both) the record
    never claims a byte that is not in the ``.part``: a resume re-fetches only the batches
    that were in flight, as a single stream resumes at the ``.part``'s size. The journal's
    segment JSON stays the authority for the layout and is the fallback for the numbers.

    Why this and not the alternatives: a journal record per batch is a SQLite transaction
    per megabyte, and an uncommitted group is lost to ``kill -9`` anyway; ``SEEK_DATA`` on
    the sparse ``.part`` depends on the file system and is block-granular; a trailer in the
    ``.part`` would change its size, which the retry loop reads as progress.

    The record lives in the journal's directory (``ranges/<digest of the path>.ranges``),
    not beside the ``.part``: any name beside it could be another asset's name or ``.part``
    (hostile metadata names files), and may exceed NAME_MAX where a long name's ``.part``
    does not. It is replaced by rename (never written through a link: ``O_NOFOLLOW``, a
    new name created ``O_EXCL``), removed when the ranges are complete or the ``.part``
    is discarded, and ignored (the journal's numbers used) unless it names the journalled
    layout and this boot, and every claim lies within its range and the ``.part``'s size.
    After a power loss neither the data nor the record is durable (no fsync until the
    seal): on Linux the new boot id makes the resume fall back to the journal, as before;
    where the boot cannot be told, the record is trusted as the journal is."""

    __slots__ = ("_fd",)

    def __init__(self, fd: int) -> None:
        self._fd = fd

    @staticmethod
    def path(journal_dir: Path, job: Job) -> Path:
        """Where ``job``'s record lives in the journal's directory ``journal_dir``."""
        name = hashlib.blake2b(job.dest.encode("utf-8", "surrogateescape"), digest_size=16)
        return journal_dir / RANGE_RECORDS / f"{name.hexdigest()}.ranges"

    @staticmethod
    def _layout(job: Job, state: SegmentState) -> bytes:
        """A digest of what the record's numbers are about: the URL and the journalled
        layout (size, validator, prefix, every range's bounds)."""
        bounds = [[p.start, p.end] for p in state.parts]
        text = json.dumps([job.url, state.total, state.validator, state.prefix, bounds])
        return hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=16).digest()

    @classmethod
    def create(cls, path: Path, job: Job, state: SegmentState) -> RangeRecord | None:
        """Write a record of ``state`` as it is now at ``path`` and keep it open for
        :meth:`mark`; None (progress is then journalled only) when it cannot be written.
        Blocking."""
        head = _RECORD_HEAD.pack(_RECORD_MAGIC, cls._layout(job, state), _BOOT_ID, len(state.parts))
        body = b"".join(_RECORD_DONE.pack(p.done) for p in state.parts)
        temp = f"{path.name}.new"
        try:
            dir_fd = _record_dir(path.parent, make=True)
        except OSError as exc:
            log.debug("no progress record for %s: %s", job.dest, exc)
            return None
        try:
            fd = create_fresh(temp, os.O_RDWR, 0o600, dir_fd=dir_fd)
            try:
                os.pwrite(fd, head + body, 0)
                # Atomic, and never through a link: the old record (a resume's claims)
                # stays whole until the new one, claiming at least as much, replaces it.
                os.rename(temp, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except OSError:
                os.close(fd)
                raise
        except OSError as exc:
            log.debug("no progress record for %s: %s", job.dest, exc)
            return None
        finally:
            os.close(dir_fd)
        return cls(fd)

    @classmethod
    def read(cls, path: Path, job: Job, state: SegmentState, part: Path) -> list[int] | None:
        """Each range's bytes on disk as recorded at ``path``, or None when there is no
        record or it does not fit ``state`` (another layout, boot or size, a claim beyond
        its range or the ``.part``'s end, not a regular file, reached through a link).
        Blocking."""
        size = _RECORD_HEAD.size + _RECORD_DONE.size * len(state.parts)
        try:
            dir_fd = _record_dir(path.parent, make=False)
        except OSError:
            return None
        try:
            fd = open_nofollow(path.name, os.O_RDONLY | NONBLOCK, dir_fd=dir_fd)
        except OSError:
            return None
        finally:
            os.close(dir_fd)
        try:
            info = os.fstat(fd)
            if not is_regular(info) or info.st_size != size:
                return None
            data = os.pread(fd, size, 0)
            part_size = part_bytes(part)  # 0 unless a file of ours: then every claim is refused
        except OSError:
            return None
        finally:
            os.close(fd)
        if len(data) != size:
            return None
        magic, layout, boot, count = _RECORD_HEAD.unpack_from(data)
        if (
            magic != _RECORD_MAGIC
            or layout != cls._layout(job, state)
            or boot != _BOOT_ID
            or count != len(state.parts)
        ):
            return None
        done = [
            _RECORD_DONE.unpack_from(data, _RECORD_HEAD.size + _RECORD_DONE.size * i)[0]
            for i in range(count)
        ]
        for p, d in zip(state.parts, done, strict=True):
            if d > p.end - p.start or (d and p.start + d > part_size):
                return None
        return done

    def mark(self, index: int, done: int) -> None:
        """Range ``index`` has ``done`` bytes on disk (written just before). Blocking."""
        try:
            os.pwrite(
                self._fd, _RECORD_DONE.pack(done), _RECORD_HEAD.size + _RECORD_DONE.size * index
            )
        except OSError as exc:  # the record lags, which is safe: the journal still follows
            log.debug("progress record not updated: %s", exc)

    def close(self) -> None:
        """Close the record (it stays on disk for a resume)."""
        os.close(self._fd)

    @staticmethod
    def remove(path: Path) -> None:
        """Forget the record at ``path`` (the ranges are complete, or the ``.part`` gone),
        removed relative to its directory, never through a link at the directory's name."""
        try:
            dir_fd = _record_dir(path.parent, make=False)
        except OSError:
            return  # no records directory (or a link there): nothing of ours to remove
        try:
            os.unlink(path.name, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.debug("progress record %s not removed: %s", path, exc)
        finally:
            os.close(dir_fd)


def write_range(
    fd: int,
    blocks: list[bytes],
    position: int,
    record: RangeRecord | None,
    index: int,
    done: int,
) -> None:
    """One range batch: the data, then the record that claims it. In a worker thread."""
    write_blocks(fd, blocks, position)
    if record is not None:
        record.mark(index, done)


async def discard(part: Path, job: Job, ctx: FetchContext) -> int:
    """Throw a ``.part`` away and forget its validators; return the bytes discarded."""
    size = remove_part(ctx.root, part)
    # A split .part's progress record goes with it.
    RangeRecord.remove(RangeRecord.path(ctx.journal.directory, job))
    await ctx.journal.forget_part(job)
    return size


async def saved_segments(
    job: Job, part: Path, row: JournalRow | None, ctx: FetchContext
) -> SegmentState | None:
    """The journalled ranges of ``part``, when ``row`` says they describe this very file
    (``row`` is only read for a ``.part`` that has bytes, so the file is there)."""
    if row is None or not row.segments or not row.same_url(job.url):
        return None
    try:
        state = SegmentState.from_json(row.segments)
    except (ValueError, KeyError, TypeError):
        await discard(part, job, ctx)
        return None
    if job.size is not None and state.total != job.size:
        await discard(part, job, ctx)
        return None
    # The record says how far each range got after its last batch; the journal, as of
    # its last record (up to segments._SEGMENT_JOURNAL_EVERY older), is the fallback.
    record = RangeRecord.path(ctx.journal.directory, job)
    done = await anyio.to_thread.run_sync(RangeRecord.read, record, job, state, part)
    if done is None:
        log.debug("%s: no usable progress record; resuming from the journal's", job.dest)
    else:
        for p, d in zip(state.parts, done, strict=True):
            p.done = max(p.done, d)
    return state


async def save_segments(job: Job, state: SegmentState, ctx: FetchContext) -> None:
    """Journal ``state``'s layout and progress (the record's fallback)."""
    state.saved_at = time.monotonic()
    await ctx.journal.segmented(job, state=state.to_json(), received=state.received)


async def close_record(state: SegmentState) -> None:
    """Close ``state``'s progress record (every write to it has returned)."""
    if state.record is not None:
        record, state.record = state.record, None
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(record.close)
