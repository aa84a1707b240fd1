"""The journal: one SQLite database per DEST, the source of truth for every transfer.

It lives at ``DEST/.stacpull/journal.sqlite`` (WAL) and holds one row per destination
path: the planned job (item id, asset key, URL, expected size and checksum, the item's
``updated``), its status, the validators (ETag, Last-Modified) of the response that wrote
the ``.part`` and the length it announced, the bytes on disk, the digest computed while
downloading, attempts, and the last error class and message. Refused assets, runs and
the mirror's scope live beside it. Each row also carries its path key
(:func:`~stacpull.destpaths.path_key`: case folded, NFC), indexed, so a run finds at once which
rows would be one file on a case-insensitive disk.

**Statuses.** ``pending`` (planned, or stopped with a ``.part`` kept), ``active`` (a
response is being written), ``done`` (verified, under its final name), ``failed`` (gave up
in some run, or found rotten by ``stacpull verify``), plus the ``refusals`` table.

**Crash consistency.** Each write is one transaction, made *before* the disk state it
describes is relied on: validators are recorded before the first byte of a response is
written to the ``.part``, ``done`` after the atomic rename. A ``kill -9`` between any two
steps leaves either a ``.part`` whose validators are known (resumed with ``If-Range``), a
``.part`` whose validators are not (discarded, unless the server sent none and announced a
length: then resumed with an overlap it must send unchanged), or a verified file whose
row still says ``active`` (re-checked, then skipped). ``synchronous=NORMAL`` in WAL mode loses nothing
on a process crash; a power cut may lose the last transactions, which the rules above
also survive.

**Off the event loop, in group commits.** A coroutine queues its statement and waits for
it; one worker thread at a time runs everything queued so far as one transaction, so a
thousand small files a second cost a few commits a second, not two thousand thread hops
that each wait for the GIL behind the event loop (which made the journal the bottleneck of
small-file runs). A statement's own error fails only that statement. A page of planned
jobs is one statement. ``Journal(dest, lock=True)`` takes an exclusive ``flock`` so two
runs never share a DEST, nor run at once on nested DESTs (:mod:`stacpull.destlock`).

One concern per module: :mod:`~stacpull.journal.store` (the file, its schema and
migrations, one statement at a time), :mod:`~stacpull.journal.commit` (group commits),
:mod:`~stacpull.journal.rows` (:class:`JournalRow` and a job's columns),
:mod:`~stacpull.journal.queries` (the :class:`Journal` and its statements),
:mod:`~stacpull.journal.protocol` (what one transfer needs of a journal),
:mod:`~stacpull.journal.fs` (whether DEST's file system shares SQLite's WAL index).
"""

from __future__ import annotations

from .protocol import TransferJournal
from .queries import Journal
from .rows import JournalRow
from .store import JOURNAL_DIR

__all__ = ["JOURNAL_DIR", "Journal", "JournalRow", "TransferJournal"]
