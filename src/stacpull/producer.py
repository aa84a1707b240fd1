"""The producer: search pages → planning → the journal → the bounded job stream.

A :class:`PageSource` plans each page of the search as it arrives, settles which job owns
each destination, journals the whole page, and only then queues its jobs: the send blocks
on a full stream, so memory stays flat however large the collection. A :class:`JobSource`
replays the journal's failed jobs instead (``--retry-failed``). Both say afterwards how
complete their listing was, which a mirror needs before it calls a file gone.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from typing import Protocol

from anyio.streams.memory import MemoryObjectSendStream

from .claims import RunClaims
from .destpaths import path_key
from .errors import scrubbed_logger
from .events import EventSink, JobQueued, JobRefused, SearchProgress
from .journal import Journal
from .models import Job, Refusal
from .plan import PlanRules, plan_item
from .search import ItemPages

__all__ = ["JobSource", "PageSource", "Source"]

log = scrubbed_logger("stacpull.engine")  # the run's messages, under the engine's name


class Source(Protocol):
    """Where jobs come from: a search (planned page by page) or the journal's failures.

    ``complete`` turns true once every job was sent; a mirror calls files it did not see
    gone only after a complete search that listed every match (see
    :func:`stacpull.gone.incomplete`).
    """

    complete: bool
    listed: int  # distinct items the search returned so far
    matched: int | None  # how many it said match (numberMatched), when it says
    repeats: int  # items it returned again (counted once in listed)
    listed_items: Container[tuple[str, str]]  # (collection, id): none of their files is gone

    async def produce(self, send: MemoryObjectSendStream[Job], emit: EventSink) -> None: ...


class PageSource:
    """Jobs planned from a search, page by page (see the module docstring)."""

    def __init__(
        self, pages: ItemPages, rules: PlanRules, journal: Journal, run_id: int, scope: str
    ) -> None:
        self.pages, self.rules, self.journal = pages, rules, journal
        self.run_id, self.scope = run_id, scope
        self.complete = False
        self.listed = 0
        self.matched: int | None = None
        self.repeats = 0
        # Every item listed (planned, refused or listed again): still in the catalogue,
        # so none of its files is judged gone.
        self.claims = RunClaims(run_id)
        self.listed_items: Container[tuple[str, str]] = self.claims

    async def produce(self, send: MemoryObjectSendStream[Job], emit: EventSink) -> None:
        pages = items = 0
        matched: int | None = None
        claims = self.claims
        async for features, matched in self.pages():
            pages += 1
            items += len(features)
            self.matched = matched
            emit(SearchProgress(pages, items, matched, duplicates=claims.duplicates))
            jobs: list[Job] = []
            refusals: list[Refusal] = []
            for item in features:
                if not claims.first_listing(item):
                    if claims.duplicates == 1:
                        log.info("item %s is listed more than once; planned once", item["id"])
                    continue
                planned, refused = plan_item(item, self.rules)
                jobs.extend(planned)
                refusals.extend(refused)
            # Distinct items: an unordered, offset-paged catalogue (MAAP) can list one item
            # twice in place of one it never lists; complete only if they reach matched.
            self.listed, self.repeats = items - claims.duplicates, claims.duplicates
            # Two jobs never share a destination (see RunClaims), in this page, with an
            # earlier page, or with a file the journal records for another item.
            holders = await self.journal.holders(
                (path_key(job.dest) for job in jobs), run=self.run_id
            )
            jobs, clashes = claims.settle(jobs, holders)
            refusals.extend(clashes)
            # The whole page is journalled before any of it is queued: `status` shows the
            # plan, `--retry-failed` can rebuild it, and a mirror knows what it has seen.
            await self.journal.plan(jobs, refusals, run=self.run_id, scope=self.scope)
            for refusal in refusals:
                emit(JobRefused(refusal))
            for job in jobs:
                emit(JobQueued(job))
                await send.send(job)
        emit(SearchProgress(pages, items, matched, done=True, duplicates=claims.duplicates))
        self.complete = True


class JobSource:
    """The journal's failed jobs, queued again (``--retry-failed``), or a cluster unit's
    jobs read from its job files: no search."""

    def __init__(self, jobs: Iterable[Job]) -> None:
        self.jobs = jobs
        self.complete = False
        self.listed = self.repeats = 0
        self.matched: int | None = None  # no search: never a complete listing
        self.listed_items: Container[tuple[str, str]] = frozenset()

    async def produce(self, send: MemoryObjectSendStream[Job], emit: EventSink) -> None:
        emit(SearchProgress(0, 0, None, done=True))
        for job in self.jobs:
            if "***" in job.url:  # the journal does not keep the credentials it needs
                reason = (
                    "its URL carried credentials, which the journal does not keep; run "
                    "without --retry-failed to search for it again"
                )
                emit(JobRefused(Refusal(job.item_id, job.collection, job.asset_key, reason)))
                continue
            emit(JobQueued(job))
            await send.send(job)
        self.complete = True
