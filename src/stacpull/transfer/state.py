"""One download's state (:class:`Transfer`, as pip's ``_FileDownload``): the job, its paths,
the bytes on disk, the validators of the last response, the hash, the attempts, the split,
and the one place that turns all that into the job's :class:`~stacpull.models.Outcome`.

The retry loop, the single stream and the ranges pass a Transfer (and the run's
:class:`~.context.FetchContext`) to each other instead of the same handful of values.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..events import JobFinished
from ..models import Job, Outcome, Status
from .http import TokenUse
from .partfile import PartFile, part_path

if TYPE_CHECKING:
    from ..journal import JournalRow
    from ..verify import Hasher, Multihash, Opener
    from .context import FetchContext

__all__ = ["Transfer"]


@dataclass(slots=True)
class Transfer:
    """Everything one file's download knows, from the look at its destination to its end.

    Fields that last the whole download come first; ``had``, ``overlap``, ``row``, ``pf``,
    ``hasher`` and ``check`` are set again by every attempt."""

    job: Job
    final: Path  # where the verified file goes
    part: Path  # where its bytes arrive
    started: float  # time.monotonic() when the download began
    expect: Multihash | None = None  # the catalogue's file:checksum, parsed
    host: str = ""  # the URL's host: its limiter slot and throttling
    attempts: int = 0
    streak: int = 0  # failed attempts in a row that kept no new bytes
    best: int = 0  # the most bytes the .part held: only bytes past it are progress
    restarts: int = 0  # times the .part was thrown away to start again from zero
    received: int = 0  # bytes received over the network, every attempt and range
    resumed_from: int = 0
    #: The last response's bytes can be resumed: it had a validator, or a length and ranges
    #: (a resume without a validator then proves its bytes by an overlap, see stream.py).
    resumable: bool = False
    validator: str | None = None  # the strong validator of the last response, for ranges
    total: int | None = None  # the size the last response announced
    can_split: bool = False  # that response may be continued as parallel ranges
    split_at: int | None = None  # where the single stream stopped to split
    token: TokenUse = field(default_factory=TokenUse)  # what the token did on the request
    notes: list[str] = field(default_factory=list)
    had: int = 0  # bytes in the .part when this attempt began
    overlap: int = 0  # bytes before ``had`` this attempt's range asks for again, to compare
    row: JournalRow | None = None  # the journal's record of the .part, read by this attempt
    pf: PartFile = field(init=False)  # this attempt's .part as it is written
    hasher: Hasher = field(init=False)  # the hash every byte of the file goes through
    check: Callable[[Opener], object] | None = None  # a zip's check at the seal

    @classmethod
    def begin(cls, job: Job, root: Path) -> Transfer:
        """The state of ``job``'s download into DEST ``root``, started now."""
        final = root / job.dest
        return cls(job, final, part_path(final), time.monotonic())

    def finish(
        self,
        ctx: FetchContext,
        status: Status,
        *,
        size: int | None = None,
        digest: str | None = None,
        error: Exception | None = None,
    ) -> Outcome:
        """The job's :class:`Outcome`, announced (:class:`JobFinished`). A file skipped
        (already verified) or refused (its destination cannot be written) ends before any
        transfer, so its outcome says no more than that."""
        if status is Status.REFUSED:
            assert error is not None
            outcome = Outcome(self.job, status, error=str(error), error_class=type(error).__name__)
        elif status is Status.SKIPPED:
            outcome = Outcome(self.job, status, size=size, notes=tuple(self.notes))
        else:
            outcome = Outcome(
                self.job,
                status,
                bytes_downloaded=self.received,
                size=size,
                seconds=time.monotonic() - self.started,
                attempts=self.attempts,
                digest=digest,
                error=None if error is None else str(error),
                error_class=None if error is None else type(error).__name__,
                resumed_from=self.resumed_from,
                notes=tuple(self.notes),
            )
        ctx.emit(JobFinished(outcome))
        return outcome
