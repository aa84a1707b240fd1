"""The link-safe primitives: every file or directory stacpull opens without following a
link is opened here, and every "is this a file of ours" is decided here.

Two layers, both OpenSSH's and rsync's habit (``O_NOFOLLOW``, ``O_EXCL``, refuse special
files):

- **one name** (:func:`open_nofollow`, :func:`open_directory`, :func:`create_fresh`,
  :func:`lstat_at`): a file or directory opened, created or looked at by its name (or
  relative to a directory descriptor) with ``O_NOFOLLOW``, so a link at the name is refused,
  never followed; :func:`is_ours` and :func:`kind_of` say what was found.
  :mod:`stacpull.safeio` (stacpull's own state and the outputs a user names) and
  :mod:`stacpull.destlock` build on this layer.
- **a path below DEST** (:class:`Descent`, :func:`open_dir`, :func:`open_below`,
  :func:`lstat_below`, :func:`unlink_below`): every directory from DEST down is opened
  relative to the one before it, and the file at the end is opened (or stat'ed, removed)
  relative to its directory's descriptor. A component that is a link, to anywhere, is
  refused, not followed; a component replaced by a link while a descriptor is open changes
  nothing, the descriptor still names the directory that was opened. The transfer
  (:mod:`stacpull.transfer`), ``stacpull verify`` (:mod:`stacpull.audit`) and the dry run
  (:mod:`stacpull.dryrun`) all go through here, so none of them reads or writes anything
  through a link inside DEST; :class:`Descent` is the walk the mirror's prune needs too
  (every directory kept open, the empty ones removed on the way back).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TypeGuard

from .errors import PlanError, StorageError, UnsafePathError

__all__ = [
    "DIR_FLAGS",
    "NONBLOCK",
    "PATH_MAX",
    "Descent",
    "create_fresh",
    "dup_opener",
    "is_ours",
    "is_regular",
    "kind_of",
    "lstat_at",
    "lstat_below",
    "open_below",
    "open_dir",
    "open_directory",
    "open_nofollow",
    "too_many_files",
    "unlink_below",
]

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
#: Never wait for a FIFO's writer or reader (a regular file ignores it).
NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
#: A directory on the way to a file: never a link (O_DIRECTORY and O_NOFOLLOW refuse one).
DIR_FLAGS = os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC
#: PATH_MAX on Linux: a longer path cannot be stat'ed or opened by name.
PATH_MAX = 4096

_KINDS = {
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}

# -- one name ---------------------------------------------------------------------------


def kind_of(mode: int) -> str | None:
    """What a ``st_mode`` that is not a regular file's is, for a message ("a symbolic
    link", "a FIFO"...); None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def is_regular(st: os.stat_result | None) -> TypeGuard[os.stat_result]:
    """Whether ``st`` (an ``lstat`` or ``fstat``; None: nothing there) is a regular file's."""
    return st is not None and stat.S_ISREG(st.st_mode)


def is_ours(st: os.stat_result | None) -> TypeGuard[os.stat_result]:
    """Whether ``st`` (an ``lstat`` or ``fstat``) is a file stacpull may resume or write
    into: a regular file with no other name (a hard link would carry the writes
    elsewhere)."""
    return st is not None and stat.S_ISREG(st.st_mode) and st.st_nlink == 1


def open_nofollow(
    name: str | os.PathLike[str], flags: int, mode: int = 0o644, *, dir_fd: int | None = None
) -> int:
    """``os.open`` that never follows a link at ``name`` (``O_NOFOLLOW`` and ``O_CLOEXEC``
    added; ``dir_fd``: relative to that directory). The one place stacpull asks for
    ``O_NOFOLLOW``: a link there raises :class:`OSError` ``ELOOP`` (``ENOTDIR`` with
    ``O_DIRECTORY``)."""
    return os.open(name, flags | _NOFOLLOW | _CLOEXEC, mode, dir_fd=dir_fd)


def open_directory(name: str | os.PathLike[str], *, dir_fd: int | None = None) -> int:
    """A descriptor of the directory ``name`` (in ``dir_fd``), never a link at the name
    (``ENOTDIR`` or ``ELOOP`` for a link or a file)."""
    return os.open(name, DIR_FLAGS, dir_fd=dir_fd)


def create_fresh(
    name: str | os.PathLike[str], flags: int, mode: int = 0o644, *, dir_fd: int | None = None
) -> int:
    """A new regular file at ``name`` (in ``dir_fd``), opened with ``flags``: whatever had
    the name (a stale file, a link or a hard link planted there, a FIFO) is removed first,
    never followed, and the file is made with ``O_EXCL``, so it is the one just made."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=dir_fd)  # a link itself, not its target; a directory raises
    return open_nofollow(name, flags | os.O_CREAT | os.O_EXCL, mode, dir_fd=dir_fd)


def lstat_at(dir_fd: int, name: str) -> os.stat_result | None:
    """What lies at ``name`` in the directory ``dir_fd`` (a link reported as the link);
    None when nothing does."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def dup_opener(fd: int) -> Callable[[str, int], int]:
    """An :func:`open` ``opener`` that opens nothing by name: each call hands over a
    duplicate of ``fd``, so what is read is the very file ``fd`` names (its offset is
    shared: every reader here seeks before it reads)."""

    def opener(_path: str, _flags: int) -> int:
        return os.dup(fd)

    return opener


# -- a path below DEST ------------------------------------------------------------------


def _made(dir_fd: int, name: str) -> int:
    """The directory ``name`` in ``dir_fd``, made first (it was missing)."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, 0o777, dir_fd=dir_fd)
    return open_directory(name, dir_fd=dir_fd)


class Descent:
    """A walk down from a directory descriptor, one directory at a time, each opened
    relative to the last and never through a link: the one walk below DEST.

    ``keep_path``: every directory entered stays open until :meth:`close`, so the empty ones
    can be removed on the way back (:meth:`remove_empty`, the mirror's prune), and the
    starting descriptor stays the caller's. Without it only the deepest is open (the
    outer one is closed as the walk goes down, the start included: it is the walk's)."""

    __slots__ = ("_fds", "_keep", "_names")

    def __init__(self, start: int, *, keep_path: bool = False) -> None:
        self._fds = [start]
        self._names: list[str] = []
        self._keep = keep_path

    @property
    def fd(self) -> int:
        """The deepest directory entered (the start before any)."""
        return self._fds[-1]

    def enter(self, name: str, *, create: bool = False) -> bool:
        """Go down into ``name`` (made when missing and ``create``); False when it is
        missing. A link there (or a loop) raises :class:`OSError` ``ENOTDIR`` or ``ELOOP``,
        as a file does (blocking)."""
        fds = self._fds
        try:  # open_directory, inline: this runs for every component of every file
            inner = os.open(name, DIR_FLAGS, dir_fd=fds[-1])
        except FileNotFoundError:
            if not create:
                return False
            inner = _made(fds[-1], name)
        if self._keep:
            self._fds.append(inner)
            self._names.append(name)
        else:
            outer, fds[-1] = fds[-1], inner
            os.close(outer)
        return True

    def detach(self) -> int:
        """Hand over the deepest descriptor (the walk no longer closes it); without
        ``keep_path`` only."""
        assert not self._keep
        fd, self._fds = self._fds[-1], []
        return fd

    def remove_empty(self) -> None:
        """Remove the directories entered, deepest first, up to the first that is not empty
        (``rmdir`` never follows a link, nor removes a non-empty directory)."""
        for depth in range(len(self._names), 0, -1):
            try:
                os.rmdir(self._names[depth - 1], dir_fd=self._fds[depth - 1])
            except OSError:
                break

    def close(self) -> None:
        """Close what the walk opened (idempotent)."""
        owned = self._fds[1:] if self._keep else self._fds
        self._fds, self._names = self._fds[:1] if self._keep else [], []
        for fd in owned:
            os.close(fd)

    def __enter__(self) -> Descent:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _link_refused(rel: str) -> UnsafePathError:
    return UnsafePathError(
        f"{rel!r} in DEST is a symbolic link: stacpull never writes or reads through links"
    )


def _not_a_directory(root: Path, here: Path, dir_fd: int) -> PlanError:
    """Why ``here``, on the way to a destination, could not be opened as a directory."""
    rel = here.relative_to(root).as_posix()
    try:
        found = lstat_at(dir_fd, here.name)
    except OSError:
        found = None
    if found is not None and stat.S_ISLNK(found.st_mode):
        return _link_refused(rel)
    return PlanError(f"{rel!r} in DEST is a file, not a directory (another asset's file?)")


def too_many_files(path: Path | str) -> str:
    """The message for EMFILE/ENFILE: the limit is the process's (or the system's), not
    DEST's fault, and the run resumes once it is raised."""
    import resource

    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return (
        f"too many open files while writing {path} (this process may open {soft}; "
        "ulimit -n): raise the limit or lower download.per_host (--per-host), and re-run "
        "to resume"
    )


def _open_root(root: Path) -> int:
    """DEST itself. Its being gone (removed, unmounted) or no directory any more is a
    fault of the whole run, not of the one file that noticed: :class:`StorageError`."""
    try:
        return os.open(root, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.EMFILE, errno.ENFILE):
            raise StorageError(too_many_files(root)) from exc
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
    with Descent(_open_root(root)) as walk:
        here = root
        for name in directory.relative_to(root).parts:
            here = here / name
            try:
                if not walk.enter(name, create=create):
                    return None
            except NotADirectoryError:
                raise _not_a_directory(root, here, walk.fd) from None
        return walk.detach()


def open_below(root: Path, path: str | os.PathLike[str], flags: int) -> int:
    """Open ``path``, a file in DEST, with ``flags``, following no link on the way nor at
    it (never blocking on a FIFO either); usable as :func:`open`'s ``opener``."""
    target = Path(path)
    dir_fd = open_dir(root, target.parent, create=False)
    if dir_fd is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(target))
    try:
        return open_nofollow(target.name, flags | NONBLOCK, dir_fd=dir_fd)
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
        return lstat_at(dir_fd, path.name)
    finally:
        os.close(dir_fd)


def unlink_below(root: Path, path: Path) -> os.stat_result | None:
    """Remove what lies at ``path`` in DEST (a link there is removed itself, never its
    target; nothing is removed through a link on the way); return its ``lstat``, None when
    nothing was there. A link on the way raises :class:`UnsafePathError` (blocking)."""
    dir_fd = open_dir(root, path.parent, create=False)
    if dir_fd is None:
        return None
    try:
        st = os.stat(path.name, dir_fd=dir_fd, follow_symlinks=False)
        os.unlink(path.name, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    finally:
        os.close(dir_fd)
    return st
