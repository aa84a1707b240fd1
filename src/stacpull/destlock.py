"""The DEST lock: one run per DEST, and never two runs at once on nested DESTs.

A run holds an exclusive ``flock`` on ``DEST/.stacpull/lock`` while it runs. Two runs whose
DESTs are nested (one inside the other) would damage each other's files as surely as two
on one DEST (the outer run's paths cross the inner run's tree), so a run also refuses to
start while another holds a DEST that contains its own or lies inside it:

- **outer DESTs** are found by probing the ``.stacpull/lock`` of every parent directory:
  a shared, non-blocking ``flock`` taken and dropped at once fails while a run holds it.
  This sees any user's run whose lock file is readable (its DEST's group: others get
  no access to a ``.stacpull``, see :func:`stacpull.safeio.keep_private`), except one in a
  directory writable by all (``/tmp``) that belongs neither to us nor to the directory's
  owner: anyone could have planted it there to block every run below.
- **inner DESTs** cannot be found by walking DEST (a mirror may hold millions of files),
  so each run also registers in a per-user registry, ``$XDG_RUNTIME_DIR/stacpull/dests/``
  (else ``<tempdir>/stacpull-<uid>/dests/``): one file per running DEST, named by a hash of
  its real path, holding that path and ``flock``-held for the run. A starting run probes
  the entries whose path lies inside (or contains) its own. An entry nobody holds is
  stale (its run was killed) and is ignored; the next run on that DEST takes it over.

A run takes its own locks first and looks for the others afterwards, so of two runs
starting at once at least one sees the other. A probe holds a shared lock for an instant,
so taking the exclusive lock is retried for a quarter of a second: a probe is never taken
for a run. Not seen: another user's run on an inner DEST (the registry is per user), and
one directory reached through two different mounts. Without ``fcntl`` (Windows), nothing
is detected. Lock files and registry entries are opened with
:func:`stacpull.safepath.open_nofollow`, never through a link.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
import time
from pathlib import Path

from .errors import StorageError
from .safeio import regular_fd
from .safepath import NONBLOCK, is_regular, open_nofollow

try:  # POSIX; elsewhere a second run on the same DEST is not detected
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = ["DestLock", "refuse_nested"]

#: Seconds a run retries its exclusive lock while another process probes it.
_LOCK_WAIT = 0.25


def _held(fd: int) -> bool:
    """Whether some other open file holds an exclusive ``flock`` on ``fd``'s file."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


def _lock_exclusive(fd: int) -> bool:
    """Take an exclusive ``flock`` on ``fd``, waiting out probes (:data:`_LOCK_WAIT`)."""
    deadline = time.monotonic() + _LOCK_WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)


def _open_regular(path: Path, flags: int) -> int | None:
    """A descriptor of ``path`` when it is a regular file reached without a link at its
    name (``None`` otherwise: absent, unreadable, a link, a FIFO...)."""
    try:
        return regular_fd(path, flags)
    except OSError:
        return None


def _registry() -> Path | None:
    """The per-user directory of running DESTs, made if needed; ``None`` when it cannot be
    trusted (not ours, writable by others, a link) or made: then only outer DESTs are
    detected."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = (
        Path(runtime) / "stacpull"
        if runtime
        else Path(tempfile.gettempdir()) / f"stacpull-{os.getuid()}"
    )
    registry = base / "dests"
    for directory in (base, registry):
        with contextlib.suppress(OSError):
            directory.mkdir(0o700)
        try:
            st = os.lstat(directory)
        except OSError:
            return None
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
            return None
    return registry


def _planted(parent: os.stat_result, state: os.stat_result) -> bool:
    """Whether a state directory found in an ancestor could be anyone's: the ancestor is
    writable by all (``/tmp``) and the state is neither ours nor its owner's. Another
    user's lock there is no run on a DEST around ours (their run could not write into our
    directories) and must not refuse every run below it."""
    return bool(parent.st_mode & stat.S_IWOTH) and state.st_uid not in (
        os.getuid(),
        parent.st_uid,
    )


def _entry_name(real: Path) -> str:
    return hashlib.sha256(os.fsencode(real)).hexdigest()[:32]


def _nested(real: Path, other: Path) -> bool:
    return other != real and (other in real.parents or real in other.parents)


def _busy(real: Path, other: Path) -> StorageError:
    where = "which contains" if other in real.parents else "inside"
    return StorageError(
        f"another stacpull run is using {other}, {where} {real}; wait for it to finish "
        "(runs on nested DESTs must not overlap)"
    )


def refuse_nested(dest: Path, state_dir: str) -> None:
    """Raise :class:`StorageError` naming the other DEST when a run holds one that contains
    ``dest`` or lies inside it (``state_dir``: the name of a DEST's state directory)."""
    if fcntl is None:  # pragma: no cover
        return
    real = Path(os.path.realpath(dest))
    for parent in real.parents:
        state = parent / state_dir
        try:
            st = os.lstat(state)
            if not stat.S_ISDIR(st.st_mode) or _planted(os.lstat(parent), st):
                continue
        except OSError:
            continue
        fd = _open_regular(state / "lock", os.O_RDONLY)
        if fd is not None:
            try:
                if _held(fd):
                    raise _busy(real, parent)
            finally:
                os.close(fd)
    registry = _registry()
    if registry is None:
        return
    own = _entry_name(real)
    try:
        entries = [e for e in os.scandir(registry) if e.name != own]
    except OSError:
        return
    for entry in entries:
        fd = _open_regular(Path(entry.path), os.O_RDONLY)
        if fd is None:
            continue
        try:
            text = os.fsdecode(os.read(fd, 8192).removesuffix(b"\n"))  # as written
            other = Path(text)
            if text and other.is_absolute() and _nested(real, other) and _held(fd):
                raise _busy(real, other)
        finally:
            os.close(fd)


class DestLock:
    """DEST taken for one run: its ``.stacpull/lock`` and its registry entry, both held
    until :meth:`release`."""

    def __init__(self, lock_fd: int | None, entry: Path | None, entry_fd: int | None) -> None:
        self._lock_fd, self._entry, self._entry_fd = lock_fd, entry, entry_fd

    @classmethod
    def acquire(cls, dest: Path, state_dir: str) -> DestLock:
        """Take ``dest`` (whose state directory ``state_dir`` exists and is checked), or
        raise :class:`StorageError` naming the run that holds it or a nested DEST."""
        if fcntl is None:  # pragma: no cover
            return cls(None, None, None)
        real = Path(os.path.realpath(dest))
        path = real / state_dir / "lock"
        try:
            fd = open_nofollow(path, os.O_WRONLY | os.O_CREAT | NONBLOCK)
        except OSError as exc:
            raise StorageError(f"cannot create {path}: {exc.strerror or exc}") from exc
        if not is_regular(os.fstat(fd)):
            os.close(fd)
            raise StorageError(f"{path} is not a regular file; remove it")
        if not _lock_exclusive(fd):
            os.close(fd)
            raise StorageError(
                f"another stacpull run is using {real}; wait for it to finish "
                "(two runs must not share a DEST)"
            )
        lock = cls(fd, None, None)
        try:
            lock._register(real)
            refuse_nested(real, state_dir)
        except BaseException:
            lock.release()
            raise
        return lock

    def _register(self, real: Path) -> None:
        """Add ``real`` to the registry (best effort: without it, inner DESTs still see
        this run through its lock file)."""
        registry = _registry()
        if registry is None:
            return
        entry = registry / _entry_name(real)
        try:
            fd = open_nofollow(entry, os.O_RDWR | os.O_CREAT | NONBLOCK, 0o600)
        except OSError:
            return
        if not is_regular(os.fstat(fd)) or not _lock_exclusive(fd):
            os.close(fd)
            return
        try:
            os.ftruncate(fd, 0)
            os.write(fd, os.fsencode(real) + b"\n")
        except OSError:
            os.close(fd)
            return
        self._entry, self._entry_fd = entry, fd

    def release(self) -> None:
        """Leave the registry and unlock DEST (idempotent)."""
        if self._entry_fd is not None:
            if self._entry is not None:
                with contextlib.suppress(OSError):
                    self._entry.unlink()  # while still held: no run on DEST can start yet
            os.close(self._entry_fd)
            self._entry = self._entry_fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
