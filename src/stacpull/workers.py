"""The pool: one task group with the producer and the workers that share N transfer slots.

::

    producer ──▶ [bounded stream] ──▶ 2N+ worker tasks ──▶ N slots ──▶ fetch

A job waiting to retry gives its slot back, and so do a job whose host has no slot free
(a small window, a ``Retry-After`` pause) and a job whose bytes have all arrived; a
:class:`~stacpull.runtypes.StopSignal` stops the producer, ends the waits between
retries and, unless it drains, cancels what is still in flight after the grace.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import anyio
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream

from .errors import CredentialsError
from .events import EventSink, RunStopping
from .models import Job
from .producer import Source
from .runtypes import StopSignal
from .transfer.attempts import fetch
from .transfer.context import FetchContext

__all__ = ["PoolSize", "pump"]


@dataclass(frozen=True, slots=True)
class PoolSize:
    """How wide the pool is: ``concurrency`` transfer slots, ``queue_limit`` planned jobs
    waiting in the stream, and ``grace`` seconds for transfers in flight after a stop.
    Numbers, never auto's 0: the engine passes ``DownloadConfig.concurrency_limit``."""

    concurrency: int
    queue_limit: int
    grace: float


async def pump(
    source: Source, ctx: FetchContext, size: PoolSize, stop: StopSignal, emit: EventSink
) -> None:
    """Run the producer and the workers until every job ended or a stop took effect.

    ``size.concurrency`` transfer slots are shared by more worker tasks than that: a job
    waiting to retry (a 404 for minutes, a long ``Retry-After``) gives its slot back, so it
    does not hold up the files behind it; so does a job whose bytes have all arrived, while
    it is checked, fsynced, renamed and journalled (on a many-file WAN run that local work
    took a quarter of each file's time in its slot, with the network idle).
    """
    send, receive = anyio.create_memory_object_stream[Job](size.queue_limit)
    slots = anyio.Semaphore(size.concurrency)
    workers = size.concurrency + max(size.concurrency, 16)
    producer_scope = anyio.CancelScope()
    parked: set[anyio.CancelScope] = set()  # jobs waiting to retry: a stop ends their wait

    async def produce() -> None:
        with producer_scope:
            async with send:
                await source.produce(send, emit)

    async with anyio.create_task_group() as outer:
        async with anyio.create_task_group() as tg:

            def on_stop(reason: str, drain: bool) -> None:
                if outer.cancel_scope.cancel_called:
                    return  # every job already ended
                emit(RunStopping(reason, None if drain else size.grace))
                producer_scope.cancel()
                for scope in list(parked):
                    scope.cancel()
                if not drain:
                    outer.start_soon(_cancel_after, size.grace, tg.cancel_scope)

            stop.subscribe(on_stop)
            tg.start_soon(produce)
            for _ in range(workers):
                tg.start_soon(_work, receive.clone(), ctx, slots, stop, parked)
            receive.close()
        outer.cancel_scope.cancel()


async def _cancel_after(delay: float, scope: anyio.CancelScope) -> None:
    await anyio.sleep(delay)
    scope.cancel()


@dataclass(slots=True)
class _Held:
    """One worker's transfer slot, given back while its job waits (to retry, for a slot
    of its host) and once its bytes are in, taken again before its next request."""

    slots: anyio.Semaphore
    stop: StopSignal
    parked: set[anyio.CancelScope]
    held: bool = False
    job_scope: anyio.CancelScope = dataclasses.field(default_factory=anyio.CancelScope)

    def unwire(self) -> None:
        """The job's bytes are in, or it waits: its slot goes to the next transfer."""
        if self.held:
            self.slots.release()
            self.held = False

    async def rewire(self) -> None:
        """Take the job's slot again (after :meth:`unwire`, for a request of this job)."""
        if self.held:
            return
        await self.slots.acquire()
        self.held = True
        if self.stop.requested:  # asked while this job queued for its slot again
            self.job_scope.cancel()
            await anyio.lowlevel.checkpoint()

    async def park(self, delay: float) -> None:
        """Wait to retry without holding a slot; a stop cancels the job (it stays pending)."""
        self.unwire()
        self.parked.add(self.job_scope)
        try:
            if self.stop.requested:
                self.job_scope.cancel()
            await anyio.sleep(delay)
        finally:
            self.parked.discard(self.job_scope)
        await self.rewire()


async def _work(
    receive: MemoryObjectReceiveStream[Job],
    ctx: FetchContext,
    slots: anyio.Semaphore,
    stop: StopSignal,
    parked: set[anyio.CancelScope],
) -> None:
    """One worker: take a job, wait for a transfer slot, fetch it; the slot is given back
    while the job waits (to retry, for its host) and once its bytes are in (:class:`_Held`)."""
    slot = _Held(slots, stop, parked)
    mine = dataclasses.replace(ctx, sleep=slot.park, unwire=slot.unwire, rewire=slot.rewire)
    async with receive:
        try:
            async for job in receive:
                await slots.acquire()
                slot.held = True
                if stop.requested:
                    return  # the job stays pending in the journal
                slot.job_scope = anyio.CancelScope()
                try:
                    with slot.job_scope:
                        await fetch(job, mine)
                except CredentialsError as exc:
                    # No token can be had: start nothing new, let what is in flight finish.
                    stop.request(f"credentials: {exc}", drain=True, fatal=exc)
                slot.unwire()
        finally:
            slot.unwire()
