"""Files and directories in DEST, reached without following a link.

Every directory from DEST down is opened with ``O_NOFOLLOW`` and the next one opened
relative to it; the file at the end is opened (or stat'ed, renamed, removed) relative to
its directory's descriptor, with ``O_NOFOLLOW`` too (OpenSSH's and rsync's habit). A
component that is a link, to anywhere, is refused, not followed; a component replaced
by a link while a descriptor is open changes nothing, the descriptor still names the
directory that was opened. The transfer (:mod:`stacpull.fetch`), ``stacpull verify``
(:mod:`stacpull.audit`) and the dry run (:mod:`stacpull.dryrun`) all go through here,
so none of them reads or writes anything through a link inside DEST.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path

from .errors import PlanError, StorageError, UnsafePathError

__all__ = [
    "CLOEXEC",
    "DIR_FLAGS",
    "PATH_MAX",
    "dup_opener",
    "is_ours",
    "lstat_below",
    "open_below",
    "open_dir",
]

CLOEXEC = getattr(os, "O_CLOEXEC", 0)
#: A directory on the way to a file: never a link (O_DIRECTORY and O_NOFOLLOW refuse one).
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | CLOEXEC
#: PATH_MAX on Linux: a longer path cannot be stat'ed or opened by name.
PATH_MAX = 4096


def is_ours(st: os.stat_result | None) -> bool:
    """Whether ``st`` (an ``lstat``) is a file stacpull may resume or write into: a regular
    file with no other name (a hard link would carry the writes elsewhere)."""
    return st is not None and stat.S_ISREG(st.st_mode) and st.st_nlink == 1


def _link_refused(rel: str) -> UnsafePathError:
    return UnsafePathError(
        f"{rel!r} in DEST is a symbolic link: stacpull never writes or reads through links"
    )


def _not_a_directory(root: Path, here: Path, dir_fd: int) -> PlanError:
    """Why ``here``, on the way to a destination, could not be opened as a directory."""
    rel = here.relative_to(root).as_posix()
    try:
        link = stat.S_ISLNK(os.stat(here.name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        link = False
    if link:
        return _link_refused(rel)
    return PlanError(f"{rel!r} in DEST is a file, not a directory (another asset's file?)")


def _open_step(dir_fd: int, name: str, create: bool) -> int | None:
    """The directory ``name`` in ``dir_fd``, made first when missing and ``create``."""
    try:
        return os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        if not create:
            return None
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, 0o777, dir_fd=dir_fd)
    return os.open(name, DIR_FLAGS, dir_fd=dir_fd)


def _open_root(root: Path) -> int:
    """DEST itself. Its being gone (removed, unmounted) or no directory any more is a
    fault of the whole run, not of the one file that noticed: :class:`StorageError`."""
    try:
        return os.open(root, os.O_RDONLY | os.O_DIRECTORY | CLOEXEC)
    except OSError as exc:
        raise StorageError(
            f"DEST {root} cannot be opened any more ({exc.strerror or exc}): was it "
            "removed or unmounted?"
        ) from exc


def open_dir(root: Path, directory: Path, *, create: bool) -> int | None:
    """A descriptor of ``directory`` (in DEST, ``root``), opened from DEST one component at a
    time, never through a link; with ``create``, missing components are made on the way.
    None: a component is missing. A component that is a link (to anywhere, or a loop)
    raises :class:`UnsafePathError`, one that is a file :class:`PlanError`; DEST gone,
    :class:`StorageError`. What is then opened, renamed or removed relative to the
    descriptor stays in that directory, even if a component is replaced by a link
    meanwhile (blocking)."""
    fd = _open_root(root)
    try:
        here = root
        for name in directory.relative_to(root).parts:
            here = here / name
            try:
                inner = _open_step(fd, name, create)
            except NotADirectoryError:
                raise _not_a_directory(root, here, fd) from None
            if inner is None:
                return None
            fd, outer = inner, fd
            os.close(outer)
        found, fd = fd, -1
        return found
    finally:
        if fd >= 0:
            os.close(fd)


def open_below(root: Path, path: str | os.PathLike[str], flags: int) -> int:
    """Open ``path``, a file in DEST, with ``flags``, following no link on the way nor at
    it (never blocking on a FIFO either); usable as :func:`open`'s ``opener``."""
    target = Path(path)
    dir_fd = open_dir(root, target.parent, create=False)
    if dir_fd is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(target))
    try:
        return os.open(target.name, flags | os.O_NOFOLLOW | os.O_NONBLOCK | CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _link_refused(target.relative_to(root).as_posix()) from None
        raise
    finally:
        os.close(dir_fd)


def lstat_below(root: Path, path: Path) -> os.stat_result | None:
    """What lies at ``path`` in DEST (an ``lstat``: a link is reported as the link), found
    without following a link on the way; None when it, or a directory on its way, is
    missing. A link on the way raises :class:`UnsafePathError` (blocking)."""
    dir_fd = open_dir(root, path.parent, create=False)
    if dir_fd is None:
        return None
    try:
        return os.stat(path.name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    finally:
        os.close(dir_fd)


def dup_opener(fd: int) -> Callable[[str, int], int]:
    """An :func:`open` ``opener`` that opens nothing by name: each call hands over a
    duplicate of ``fd``, so what is read is the very file ``fd`` names (its offset is
    shared: every reader here seeks before it reads)."""

    def opener(_path: str, _flags: int) -> int:
        return os.dup(fd)

    return opener
