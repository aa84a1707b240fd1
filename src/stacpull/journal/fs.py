"""Which file system holds a journal, and whether SQLite may share its WAL index there.

SQLite's WAL mode keeps its index in a ``-shm`` file mapped into memory by every
connection; NFS, Lustre and the other network file systems do not share such a mapping
between machines, so two nodes' connections would each see their own index and corrupt
the database. A cluster run's journals there open in exclusive locking mode instead (the
index lives in the one connection's heap memory, no ``-shm`` file), which the shard
leases make possible: one connection per bucket journal at a time.

:func:`shared_filesystem` reads ``/proc/self/mountinfo`` (the longest mount point that
holds the path); ``STACPULL_SHARED_FS=1`` or ``0`` overrides it, for tests and for file
systems it does not know.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["SHARED_FS_ENV", "exclusive_locking", "parse_mountinfo", "shared_filesystem"]

SHARED_FS_ENV = "STACPULL_SHARED_FS"
#: File system types whose files other machines see: SQLite's shared memory is not shared.
_SHARED = frozenset(
    {
        "nfs",
        "nfs4",
        "lustre",
        "gpfs",
        "cifs",
        "smb3",
        "smbfs",
        "beegfs",
        "ceph",
        "cephfs",
        "9p",
        "afs",
        "glusterfs",
        "ocfs2",
        "gfs2",
    }
)
_MOUNTINFO = Path("/proc/self/mountinfo")


def _unescape(field: str) -> str:
    """A mountinfo path: spaces, tabs, newlines and backslashes come octal-escaped."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def parse_mountinfo(text: str) -> list[tuple[str, str]]:
    """(mount point, file system type) of each line of a ``/proc/self/mountinfo`` text.

    A line is ``id parent major:minor root mountpoint options [optional…] - fstype source
    superoptions``: the type is the first field after the lone ``-``."""
    mounts: list[tuple[str, str]] = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields[5:]:
            continue  # not a mountinfo line
        dash = fields.index("-", 5)
        if dash + 1 < len(fields):
            mounts.append((_unescape(fields[4]), fields[dash + 1]))
    return mounts


def _is_shared(fstype: str) -> bool:
    return fstype in _SHARED or fstype.startswith("fuse.")


def _within(path: str, mount: str) -> bool:
    return mount == "/" or path == mount or path.startswith(mount.rstrip("/") + "/")


def shared_filesystem(path: Path, mountinfo: str | None = None) -> str | None:
    """The type of the shared (network, cluster) file system holding ``path`` (nfs4,
    lustre, fuse.sshfs…), or None for a local one or when it cannot be told. ``mountinfo``
    replaces ``/proc/self/mountinfo`` (tests)."""
    if mountinfo is None:
        try:
            mountinfo = _MOUNTINFO.read_text()
        except OSError:
            return None  # not Linux: nothing to tell by
    target = os.path.realpath(path)
    best: tuple[int, str] | None = None
    for mount, fstype in parse_mountinfo(mountinfo):
        if _within(target, mount) and (best is None or len(mount) >= best[0]):
            best = (len(mount), fstype)  # the later of two mounts at one point covers it
    if best is None or not _is_shared(best[1]):
        return None
    return best[1]


def exclusive_locking(path: Path) -> bool:
    """Whether a journal at ``path`` must open in exclusive locking mode: on a shared file
    system, or when ``STACPULL_SHARED_FS=1`` says so (``0`` says not, whatever the mount)."""
    forced = os.environ.get(SHARED_FS_ENV, "").strip()
    if forced in ("1", "0"):
        return forced == "1"
    return shared_filesystem(path) is not None
