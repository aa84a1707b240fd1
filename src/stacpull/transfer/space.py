"""The free-space budget of DEST: what transfers in flight will still write, reserved
before a file of known size starts, so a full disk stops the run cleanly instead of
halfway through a product."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from ..errors import StorageError, TooLargeError

__all__ = ["SpaceBudget"]


class SpaceBudget:
    """Free space at DEST, minus what transfers in flight will still write.

    Before a file of known size starts, the bytes it still needs are reserved; a file that
    would leave less than ``min_free`` bytes free stops the run (:class:`StorageError`)
    instead of filling the disk halfway through a product.

    The free space is read at most every ``REREAD`` seconds (a ``statvfs`` per file cost
    as much as the rest of a small file's bookkeeping); between readings the bytes of
    every finished reservation count as written, so the estimate errs on the safe side.
    """

    REREAD = 1.0

    def __init__(self, min_free: int) -> None:
        self.min_free = min_free
        self.reserved = 0
        self._free: int | None = None  # the last reading
        self._read_at = 0.0
        self._since = 0  # bytes of reservations finished since that reading

    def _free_now(self, where: Path) -> int | None:
        # One reading serves every directory of DEST: they share its filesystem (a mount
        # point inside DEST is the exception; ENOSPC still stops the run cleanly there).
        # A reading that fails skips the check, so ``where`` must exist: fetch passes DEST
        # itself, never a file's directory (which is only made with its .part).
        now = time.monotonic()
        if self._free is None or now - self._read_at >= self.REREAD:
            try:
                self._free = shutil.disk_usage(where).free
            except OSError:
                return None
            self._read_at, self._since = now, 0
        return self._free - self._since

    def reserve(self, where: Path, need: int, *, url: str = "") -> int:
        """Reserve ``need`` bytes at ``where`` (a directory); return what to release later.

        A file larger than all the free space (nothing else in flight, nothing kept
        free) is a lie or a mistake of its metadata (``Content-Length: 10^13``), not a
        full disk: it fails alone (:class:`TooLargeError`) and the run goes on."""
        if need <= 0:
            return 0
        free = self._free_now(where)
        if free is None:
            return 0
        if need > free:
            raise TooLargeError(
                f"the file needs {_human(need)}, only {_human(free)} are free in {where}",
                url=url,
            )
        if free - self.reserved - need < self.min_free:
            raise StorageError(
                f"not enough free space in {where}: the next file needs {need:,} bytes, "
                f"{max(0, free - self.reserved):,} are free and {self.min_free:,} must stay "
                "free (download.min_free); free some space and re-run to resume"
            )
        self.reserved += need
        return need

    def release(self, amount: int) -> None:
        """Give back a reservation (its bytes are now on disk, or were never written)."""
        self.reserved -= amount
        self._since += amount


def _human(n: int) -> str:
    """``n`` bytes in decimal units, for a message (``10.0 TB``)."""
    if n < 1000:
        return f"{n} bytes"
    value = float(n)
    for unit in ("kB", "MB", "GB"):
        value /= 1000
        if value < 1000:
            return f"{value:.1f} {unit}"
    return f"{value / 1000:.1f} TB"
