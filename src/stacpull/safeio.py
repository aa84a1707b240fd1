"""Files stacpull writes or reads for itself, never through a link: its state in
``DEST/.stacpull`` and the outputs a user names (``search -o``, ``--log-json``,
``report --plot``).

Where stacpull expects a regular file of its own, a symbolic link, device, FIFO, socket or
directory is refused, never written through (OpenSSH's and rsync's habit: ``O_NOFOLLOW``,
``O_EXCL``, refuse special files): a service account mirroring beside other data must not
be steered into overwriting it. Files are written under a temporary name created afresh
with ``O_EXCL | O_NOFOLLOW`` and renamed over their final name, which a rename replaces
(a link included) without following it; the final name is checked again just before.
Errors are :class:`OSError` whose ``strerror`` says what was found, for the callers' own
one-line messages (``ConfigError`` for a user's output, ``StorageError`` for DEST). The
no-follow open, the exclusive create and the names of file kinds are
:mod:`stacpull.safepath`'s; this module is the policy for files named by a path.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Literal, overload

from .safepath import NONBLOCK, create_fresh, kind_of, open_directory, open_nofollow

__all__ = [
    "create_new",
    "ensure_directory",
    "keep_private",
    "not_regular",
    "open_append",
    "open_regular",
    "read_regular",
    "regular_fd",
    "replace_regular",
]


def not_regular(path: Path) -> str | None:
    """What ``path`` is when it exists and is not a regular file ("a symbolic link", "a
    FIFO"...), looked at without following a link; ``None`` when it is absent or regular."""
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    return kind_of(mode)


def _refused(path: Path, kind: str, expected: str = "a regular file") -> OSError:
    if kind == "a symbolic link":
        code = errno.ELOOP
    elif expected == "a directory":
        code = errno.ENOTDIR
    else:
        code = errno.EISDIR if kind == "a directory" else errno.EINVAL
    return OSError(code, f"{kind}, not {expected}", str(path))


def ensure_directory(path: Path, *, create: bool) -> bool:
    """Make sure ``path`` is a real directory (not a link to one); ``create`` makes it when
    absent (its parent must exist), with no access for others whatever the umask (see
    :func:`keep_private`). Returns whether it exists; raises :class:`OSError` when
    something else is there."""
    if create:
        with contextlib.suppress(FileExistsError):
            path.mkdir(0o770)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return False
    if not stat.S_ISDIR(mode):
        raise _refused(path, kind_of(mode) or "a file", "a directory")
    return True


def keep_private(directory: Path) -> None:
    """Take others' access (not the group's) to ``directory``, a real directory of ours,
    if they have any. Reading is enough to hold a shared ``flock`` (the DEST lock) or a
    POSIX read lock (SQLite's ``-shm``) for ever: any local user who can open stacpull's
    state could refuse every run of a service account. Best effort."""
    try:
        fd = open_directory(directory)
    except OSError:
        return
    try:
        st = os.fstat(fd)
        if st.st_uid == os.getuid() and st.st_mode & 0o007:
            os.fchmod(fd, stat.S_IMODE(st.st_mode) & ~0o007)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def _links_refused(path: Path) -> Iterator[None]:
    """A link at ``path`` that refused an open (``ELOOP``) reported as one."""
    try:
        yield
    except OSError as exc:
        if exc.errno == errno.ELOOP and path.is_symlink():
            raise _refused(path, "a symbolic link") from None
        raise


def _open(path: Path, flags: int) -> int:
    """:func:`~stacpull.safepath.open_nofollow`; a link at the name is reported as one."""
    with _links_refused(path):
        return open_nofollow(path, flags)


def _check_regular(fd: int, path: Path) -> None:
    kind = kind_of(os.fstat(fd).st_mode)
    if kind is not None:
        os.close(fd)
        raise _refused(path, kind)


@overload
def create_new(path: Path, *, binary: Literal[False] = False) -> IO[str]: ...
@overload
def create_new(path: Path, *, binary: Literal[True]) -> IO[bytes]: ...
def create_new(path: Path, *, binary: bool = False) -> IO[str] | IO[bytes]:
    """Create ``path`` as a new regular file for writing; whatever had the name (a stale
    temporary file, a link planted there) is removed first, never followed."""
    with _links_refused(path):
        fd = create_fresh(path, os.O_WRONLY)
    if binary:
        return os.fdopen(fd, "wb")
    return os.fdopen(fd, "w", encoding="utf-8", newline="")


def open_append(path: Path, *, replace_special: bool = False) -> IO[str]:
    """Open ``path`` to append text, creating it; a link, FIFO or device there is refused
    (or, with ``replace_special``, for stacpull's own files, removed and replaced)."""
    kind = not_regular(path)
    if kind is not None:
        if not replace_special or kind == "a directory":
            raise _refused(path, kind)
        path.unlink()
    fd = _open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | NONBLOCK)
    _check_regular(fd, path)  # it changed since the look above
    os.set_blocking(fd, True)
    return os.fdopen(fd, "a", encoding="utf-8")


def regular_fd(path: Path, flags: int = os.O_RDONLY) -> int:
    """A descriptor of ``path`` opened with ``flags``, a regular file reached without
    following a link at its name (never blocking on a FIFO: the descriptor is
    non-blocking, which a regular file ignores)."""
    fd = _open(path, flags | NONBLOCK)
    _check_regular(fd, path)
    return fd


def open_regular(path: Path) -> IO[bytes]:
    """``path`` opened to read, a regular file reached without following a link at its name."""
    fd = regular_fd(path)
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_regular(path: Path) -> bytes:
    """The bytes of ``path`` (see :func:`open_regular`)."""
    with open_regular(path) as f:
        return f.read()


def replace_regular(part: Path, final: Path) -> None:
    """Rename ``part`` over ``final`` unless ``final`` is now something other than a
    regular file (a rename would replace a device node or a user's link); ``part`` is
    removed then."""
    kind = not_regular(final)
    if kind is not None:
        part.unlink(missing_ok=True)
        raise _refused(final, kind)
    part.replace(final)
