"""The ``.part`` file, the one place bytes of a transfer reach the disk: how it is
opened (never through a link: :mod:`stacpull.safepath`), written (``pwritev`` calls of at
most 1 MiB, then ``sync_file_range`` to start the writeback early),
hashed (the hash tee), sealed (checks, fsync, verified atomic rename) and removed; and
what an OSError there means for the run (:func:`storage_error`). Blocking code, run in
worker threads: the event loop side (batching, thread hops) is :mod:`.stream`'s.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import cast

from ..errors import PlanError, RangeError, StorageError, UnsafePathError
from ..safepath import (
    NONBLOCK,
    create_fresh,
    dup_opener,
    is_ours,
    is_regular,
    lstat_at,
    open_below,
    open_dir,
    open_nofollow,
    too_many_files,
    unlink_below,
)
from ..verify import Hasher, Multihash, Opener, ZipFollower, check_digest, hash_range

__all__ = [
    "PartFile",
    "Tee",
    "hash_blocks",
    "hash_part",
    "open_for_ranges",
    "part_bytes",
    "part_path",
    "remove_part",
    "storage_error",
    "write_blocks",
]


def part_path(final: Path) -> Path:
    """Where the bytes of ``final`` are written until they are verified: beside it."""
    return final.with_name(final.name + ".part")


#: OSErrors that concern one destination (its name, or what lies at it or on its way),
#: not DEST as a whole: that file is refused and the run goes on. Any other (disk full, a
#: read-only or unwritable DEST, an I/O error) stops the run.
_ONE_PATH_ERRNOS = frozenset(
    {
        errno.ENAMETOOLONG,
        errno.ELOOP,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.EEXIST,
        errno.ENOTEMPTY,
        errno.ENOENT,
        errno.ENXIO,
        errno.EFBIG,
        errno.EMLINK,
        errno.ETXTBSY,
        errno.EINVAL,  # a name this filesystem cannot hold (":" or "?" on vfat, exFAT, SMB)
        errno.EILSEQ,  # a name that is not valid on a filesystem that insists on UTF-8
    }
)


def storage_error(exc: OSError, path: Path) -> StorageError | PlanError:
    """What an OSError at ``path`` becomes: a :class:`PlanError` (this file is refused, the
    run goes on) when it concerns this one path, else a :class:`StorageError` (the run
    stops)."""
    if exc.errno in _ONE_PATH_ERRNOS:
        return PlanError(f"cannot write {path}: {exc.strerror or exc}")
    if exc.errno == errno.ENOSPC:
        return StorageError(f"disk full while writing {path}; free space and re-run to resume")
    if exc.errno in (errno.EMFILE, errno.ENFILE):
        return StorageError(too_many_files(path))
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StorageError(f"cannot write {path}: {exc.strerror}")
    return StorageError(f"cannot write {path}: {exc}")


def hash_part(
    root: Path, hasher: Hasher, path: Path, start: int = 0, end: int | None = None
) -> None:
    """:func:`hash_range` of a file in DEST, opened without following a link (blocking)."""
    try:
        hash_range(hasher, path, start, end, opener=functools.partial(open_below, root))
    except OSError as exc:
        raise storage_error(exc, path) from exc


def part_bytes(path: Path) -> int:
    """Bytes in the ``.part`` at ``path``: 0 when there is none or it is not a file of ours
    (a link, a hard link, a FIFO), which is replaced, never resumed."""
    try:
        st = path.lstat()
    except OSError:
        return 0
    return st.st_size if is_ours(st) else 0


def remove_part(root: Path, part: Path) -> int:
    """Remove the ``.part`` at ``part`` (a link there is removed itself, never its target;
    nothing is removed through a link on the way); return its size."""
    try:
        st = unlink_below(root, part)
    except OSError as exc:
        raise storage_error(exc, part) from exc
    return st.st_size if is_regular(st) else 0


#: pwritev takes at most IOV_MAX (1024 on Linux) blocks per call.
_IOV_GROUP = 512

#: The most bytes one pwritev carries. Copying into the page cache costs several times
#: the system CPU per byte in calls of 2 MiB and more (ext4's large folios: on the
#: benchmark machine 400 MB took 0.3-1.1 s in 4 MiB calls, 0.13-0.18 s in 1 MiB ones)
#: while the calls saved past 1 MiB are too few to matter (four a 4 MiB batch).
_WRITE_SPAN = 1 << 20


def _open_part(dir_fd: int, name: str, offset: int) -> int:
    """The ``.part`` ``name`` in the directory ``dir_fd``, for writing from ``offset``.
    From zero, whatever lies at the name (a link, a hard link to a file elsewhere, a FIFO)
    is removed and a new file made (``O_EXCL``); a resume opens only the regular file of
    ours already there, never through a link. Opened for reading too: the zip check reads
    this very file back through it (see :meth:`PartFile.seal`)."""
    if not offset:
        return create_fresh(name, os.O_RDWR, dir_fd=dir_fd)
    # No O_CREAT: a .part gone since its bytes were hashed must not come back empty, its
    # old bytes zeros under a digest that still counts them.
    fd = open_nofollow(name, os.O_RDWR | NONBLOCK, dir_fd=dir_fd)
    if not is_ours(os.fstat(fd)):
        os.close(fd)
        raise UnsafePathError(f"{name!r} is not a file of stacpull's (a hard link?): not resumed")
    return fd


def write_blocks(fd: int, blocks: list[bytes], position: int) -> None:
    """Write ``blocks`` back to back at ``position`` in calls of at most
    :data:`_WRITE_SPAN` bytes (no joined copy: a block larger than that is written in
    slices of it), then ask it to start writing them back: by the time the
    transfer ends and fsyncs, little is left dirty, so the fsync does not stall the end of
    a large file for the seconds a gigabyte of page cache takes to reach the disk."""
    start = position
    views: list[memoryview] = []
    for block in blocks:  # a slice of each block only where it is larger than a call
        view = memoryview(block)
        if len(view) <= _WRITE_SPAN:
            views.append(view)
        else:
            views.extend(view[at : at + _WRITE_SPAN] for at in range(0, len(view), _WRITE_SPAN))
    first = 0
    while first < len(views):
        last, span = first + 1, len(views[first])  # at most _WRITE_SPAN bytes a call
        while last < len(views) and last - first < _IOV_GROUP:
            if (span := span + len(views[last])) > _WRITE_SPAN:
                break
            last += 1
        n = os.pwritev(fd, views[first:last], position)
        position += n
        while first < len(views) and n >= len(views[first]):
            n -= len(views[first])
            first += 1
        if n:  # a short write ended inside a block: the rest of it goes next
            views[first] = views[first][n:]
    _start_writeback(fd, start, position - start)


def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """Linux's sync_file_range(2), which Python's os module lacks; None elsewhere."""
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return cast(Callable[[int, int, int, int], int], function)


_SYNC_FILE_RANGE = _sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2


def _start_writeback(fd: int, start: int, length: int) -> None:
    # SYNC_FILE_RANGE_WRITE starts writing the dirty pages without waiting, and keeps
    # them cached (posix_fadvise(DONTNEED) would start it too, but then drops the pages
    # that a zip check or the hash of a segmented file reads back). ctypes releases the
    # GIL for the call. Where it is missing, the fsync at the end does all the work.
    if length and _SYNC_FILE_RANGE is not None:
        _SYNC_FILE_RANGE(fd, start, length, _SYNC_FILE_RANGE_WRITE)


class Tee:
    """The hash and a :class:`ZipFollower` fed together. Every path that feeds a file's
    hash (the stream, a resume's catch-up, the follower of a split file's front) feeds its
    zip check too, each byte once and in order."""

    __slots__ = ("_follower", "_hasher")

    def __init__(self, hasher: Hasher, follower: ZipFollower) -> None:
        self._hasher, self._follower = hasher, follower

    def update(self, data: bytes | memoryview, /) -> None:
        self._hasher.update(data)
        self._follower.update(data)

    def digest(self) -> bytes:
        return self._hasher.digest()


def hash_blocks(hasher: Hasher, blocks: list[bytes]) -> None:
    """Feed one batch to the hash, in a worker thread (hashlib releases the GIL)."""
    for block in blocks:
        hasher.update(block)


class PartFile:
    """A ``.part`` as worker threads write it: opened by the thread hop that writes the
    first batch, sealed by one more (the last batch, the checks, fsync, close, rename to
    the final name, fsync of the directory). A body that fits in one batch is written by
    the sealing hop: a small file costs one thread hop."""

    def __init__(self, path: Path, root: Path, url: str) -> None:
        self.path = path
        self.root = root  # DEST, resolved: the .part's directory must stay inside it
        self.url = url  # for error messages
        self.offset = 0  # where this attempt's bytes start
        self.fd: int | None = None
        #: Its directory, opened from DEST without following a link: the .part is made,
        #: renamed and made durable relative to it. Open exactly while ``fd`` is.
        self.dir_fd: int | None = None
        #: The body's last batch, received but not yet written: the seal writes it.
        self.tail: list[bytes] = []
        self.tail_at = 0  # where it goes

    def _opened(self) -> int:
        if self.fd is None:
            dir_fd = open_dir(self.root, self.path.parent, create=True)
            if dir_fd is None:  # never, with create
                raise FileNotFoundError(errno.ENOENT, "no directory", str(self.path.parent))
            try:
                self.fd = _open_part(dir_fd, self.path.name, self.offset)
            except FileNotFoundError:
                os.close(dir_fd)
                raise RangeError(  # retried from zero, as a range that does not fit is
                    "the partial file vanished before the resume opened it; restarting from zero",
                    url=self.url,
                ) from None
            except BaseException:
                os.close(dir_fd)
                raise
            self.dir_fd = dir_fd
        return self.fd

    def catch_up(self, hasher: Hasher, end: int) -> None:
        """Open the ``.part`` to resume it and feed its first ``end`` bytes to ``hasher``,
        read through the descriptor the new bytes are then written through: the bytes
        hashed are the bytes kept, whatever happens to the name meanwhile (blocking)."""
        hash_range(hasher, self.path, 0, end, opener=dup_opener(self._opened()))

    def read(self, start: int, length: int) -> bytes:
        """Up to ``length`` bytes of the ``.part`` from ``start``, read through the
        descriptor a resume then writes through (blocking): a resume without a validator
        compares them with the server's."""
        fd, chunks = self._opened(), []
        while length > 0 and (chunk := os.pread(fd, length, start)):
            chunks.append(chunk)
            start, length = start + len(chunk), length - len(chunk)
        return b"".join(chunks)

    def write(self, blocks: list[bytes], position: int, hasher: Hasher | None = None) -> None:
        """Write (and with ``hasher``, hash) one batch; in a worker thread."""
        write_blocks(self._opened(), blocks, position)
        if hasher is not None:
            hash_blocks(hasher, blocks)

    def seal(
        self,
        final: Path,
        hasher: Hasher,
        expect: Multihash | None,
        check: Callable[[Opener], object] | None,
    ) -> tuple[int, bytes]:
        """Write and hash the tail; check the digest against ``expect`` (the
        ``file:checksum``) and run ``check`` (a zip's CRCs); make the bytes durable and
        move them to ``final`` atomically. Returns the file's mtime and digest. In a worker
        thread. An empty body still leaves an (empty) file; a segmented file's ranges,
        written through other descriptors, are made durable by the same fsync (it is per
        file, not per descriptor)."""
        fd = self._opened()
        if self.tail:
            blocks, self.tail = self.tail, []
            write_blocks(fd, blocks, self.tail_at)
            hash_blocks(hasher, blocks)
        digest = hasher.digest()
        if expect is not None:
            check_digest(digest, expect, url=self.url)
        if check is not None:
            check(dup_opener(fd))  # the bytes written, not whatever the name leads to now
        os.fsync(fd)
        written = os.fstat(fd)  # a rename keeps the mtime
        dir_fd, self.fd, self.dir_fd = self.dir_fd, None, None
        os.close(fd)
        assert dir_fd is not None and final.parent == self.path.parent
        try:
            # Only the file this transfer wrote moves: a .part replaced meanwhile (by a
            # link, say) is refused, not renamed into place.
            now = lstat_at(dir_fd, self.path.name)
            if now is None:
                raise RangeError(
                    "the partial file was removed while written; restarting from zero",
                    url=self.url,
                )
            if (now.st_dev, now.st_ino) != (written.st_dev, written.st_ino):
                raise UnsafePathError(f"{self.path} was replaced while written: not renamed")
            os.replace(self.path.name, final.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return written.st_mtime_ns, digest

    def close(self) -> None:
        """Close without sealing (the attempt failed or was stopped); in a worker thread."""
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)
        if self.dir_fd is not None:
            dir_fd, self.dir_fd = self.dir_fd, None
            os.close(dir_fd)


def open_for_ranges(root: Path, part: Path) -> int:
    """The ``.part`` a split file's ranges are written into: the regular file already
    there, reached without following a link (blocking)."""
    fd = open_below(root, part, os.O_WRONLY)
    if not is_ours(os.fstat(fd)):
        os.close(fd)
        raise UnsafePathError(f"{part} is not a file of stacpull's (a hard link?): not written")
    return fd
