"""What one transfer needs of a journal (:class:`TransferJournal`): DEST's own
:class:`~stacpull.journal.Journal`, or a cluster worker's router over its buckets'
journals (:class:`stacpull.shards.router.UnitJournal`)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from ..models import Job
from .rows import JournalRow

__all__ = ["TransferJournal"]


class TransferJournal(Protocol):
    """The statements of one transfer's progress, and where its range records live."""

    @property
    def directory(self) -> Path:
        """DEST's state directory (``DEST/.stacpull``): split files' range records."""
        ...

    async def get(self, path: str) -> JournalRow | None: ...

    async def started(
        self,
        job: Job,
        *,
        etag: str | None,
        last_modified: str | None,
        offset: int,
        total: int | None = None,
    ) -> None: ...

    async def segmented(self, job: Job, *, state: str, received: int) -> None: ...

    async def done(self, job: Job, *, size: int, digest: str | None, mtime_ns: int) -> None: ...

    async def failed(self, job: Job, *, error_class: str, error: str, partial: int) -> None: ...

    async def paused(self, job: Job, *, partial: int) -> None: ...

    async def forget_part(self, job: Job) -> None: ...
