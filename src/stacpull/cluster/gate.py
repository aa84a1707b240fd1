"""One politeness budget for a whole cluster (issue 21): per host, a ``distributed.Semaphore``
of ``cap`` leases that every worker's :class:`~stacpull.limits.HostLimiter` takes under its
own window's slots, and the ``Retry-After`` pauses one worker heard, published for all.

:class:`DaskGate` is the :class:`~stacpull.limits.HostGate` a cluster run installs
(``RunOptions(gate=…)``). Each window still finds its own host's pace; the gate only bounds
their sum: the server never sees more than ``cap`` connections from the cluster at once.

* **Whose loop.** Dask's objects speak on Dask's own event loop (the worker's, or a
  client's). The engine runs its own anyio loop in the task's thread, and called from there
  their methods take their blocking form and would stop the engine's loop for each round
  trip to the scheduler. So each call is a coroutine handed to Dask's loop
  (``asyncio.run_coroutine_threadsafe``) and awaited here as a future: no thread waits.
  That future is shielded: a transfer cancelled while it waits for a lease does not cancel
  the scheduler call half-way (a lease granted after the call was abandoned would be held
  by nobody until its timeout); a lease that comes anyway is given back when it comes.
* **Leases of the dead.** A worker's semaphore refreshes its leases at the scheduler every
  fifth of ``distributed.scheduler.locks.lease-timeout`` (30 s by default); a worker that
  was killed stops refreshing, and the scheduler frees its leases after that timeout.
* **Pauses.** The scheduler's metadata (``Client.set_metadata``: what a
  ``distributed.Variable`` would hold, but readable with a default while nothing was ever
  published, where a variable's read fails) keeps, per host, the wall-clock end of its
  latest pause (a cluster's clocks agree to well under a second with NTP; a pause lasts
  seconds). :meth:`DaskGate.pause` publishes one without waiting; every lease, once
  granted, reads the host's entry before its request goes, so a request never leaves
  during a pause published before its lease; the end it learns is kept here, and
  :meth:`DaskGate.paused_for` (which the limiter asks before each slot) is a dict look-up.
* **Pickling.** A gate travels to the workers as its ``cap`` and ``name`` alone; each copy
  binds to its process's Dask client at its first lease (:func:`distributed.get_client`:
  the worker's own client in a task, the default client elsewhere).

Only this package imports Dask, and only when a gate is used: a run without one imports
nothing of it. The semaphores' names hold ``cap`` (the scheduler refuses a name registered
again with another cap), so a later run with another ``cluster.per_host`` gets new ones.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import importlib
import logging
import math
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from ..errors import StacpullError

__all__ = ["DaskGate"]

log = logging.getLogger("stacpull.cluster")

_T = TypeVar("_T")

#: Seconds one wait for a lease lasts at the scheduler before it looks whether its
#: transfer still wants it (a cancelled wait ends within this).
_STEP = 2.0

#: What a lease request answers when it holds a lease: no pause is known to end later.
_LEASED = -math.inf


def _distributed() -> Any:
    """``distributed``, imported at first use (a run without a gate never imports it).
    Typed as ``Any``: its classes' methods carry no annotations for ``mypy --strict``."""
    return importlib.import_module("distributed")


class _Link:
    """This process's way to the scheduler: a Dask client and the asyncio loop it runs on."""

    __slots__ = ("client", "loop")

    def __init__(self, client: Any) -> None:
        self.client = client
        self.loop: asyncio.AbstractEventLoop = client.loop.asyncio_loop


class _Request:
    """One wait for a lease, which the transfer may abandon (it was cancelled)."""

    __slots__ = ("abandoned",)

    def __init__(self) -> None:
        self.abandoned = False


class DaskGate:
    """Per host, ``cap`` connections for the whole cluster, and shared ``Retry-After``
    pauses (see the module docstring). ``name`` is the run's own prefix of the scheduler's
    names (``stacpull-<DEST hash>``): runs that share it share one budget."""

    def __init__(self, cap: int, name: str) -> None:
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
            raise ValueError(f"a cluster gate needs a cap of at least 1 per host, not {cap!r}")
        if not name:
            raise ValueError("a cluster gate needs a name")
        self.cap = cap
        self.name = name
        self._reset()

    def _reset(self) -> None:
        self._link: _Link | None = None
        self._binding: anyio.Lock | None = None
        self._semaphores: dict[str, Any] = {}  # used on Dask's loop only
        self._pauses: dict[str, float] = {}  # host -> wall-clock end, as this process knows
        self._wall: Callable[[], float] = time.time
        #: Leases that waited for a pause first (in this process), for tests and reports.
        self.held_back = 0

    def __getstate__(self) -> tuple[int, str]:
        return self.cap, self.name

    def __setstate__(self, state: tuple[int, str]) -> None:
        self.cap, self.name = state
        self._reset()

    def __repr__(self) -> str:
        return f"DaskGate(cap={self.cap}, name={self.name!r})"

    def lease_name(self, host: str) -> str:
        """The scheduler's name of ``host``'s semaphore (its cap in it: see the module)."""
        return f"{self.name}-lease-{self.cap}-{host}"

    # -- the HostGate protocol, called on the engine's loop ---------------------------------

    async def acquire(self, host: str) -> None:
        """One of ``host``'s leases, outside any pause known here or at the scheduler."""
        link = await self._bound()
        while True:
            left = self.paused_for(host)
            if left > 0:
                self.held_back += 1
                await anyio.sleep(left)
                continue
            request = _Request()
            abandon = functools.partial(self._abandoned, host, request)
            try:
                end = await self._on_dask(link, self._take(host, request), abandon)
            except Exception as exc:  # Dask's, from the scheduler's side: one boundary
                raise StacpullError(
                    f"the cluster's scheduler gave no lease for {host}: {type(exc).__name__}: {exc}"
                ) from exc
            if end == _LEASED:
                return
            self._learn(host, end)

    def release(self, host: str) -> None:
        """Give back one lease of ``host`` (sent to the scheduler; nothing waits for it)."""
        link = self._link
        if link is not None:
            self._send(link, self._give(host))

    def pause(self, host: str, seconds: float) -> None:
        """Hold ``host`` for ``seconds`` here, and publish the pause for every worker."""
        end = self._wall() + seconds
        if not self._learn(host, end) or self._link is None:
            return
        self._send(self._link, self._publish(host, end))

    def paused_for(self, host: str) -> float:
        """Seconds left of the latest pause of ``host`` this process knows of."""
        end = self._pauses.get(host)
        return -math.inf if end is None else end - self._wall()

    # -- on the engine's loop --------------------------------------------------------------

    def _learn(self, host: str, end: float) -> bool:
        """Keep ``end`` as ``host``'s pause if it ends later than the one known."""
        if end <= self._pauses.get(host, -math.inf):
            return False
        self._pauses[host] = end
        return True

    async def _bound(self) -> _Link:
        """The link to the scheduler, made at the first lease. Making a worker's client may
        wait for the scheduler: it is made in a thread, not on the engine's loop."""
        if self._link is None:
            if self._binding is None:
                self._binding = anyio.Lock()
            async with self._binding:
                if self._link is None:
                    client = await anyio.to_thread.run_sync(_distributed().get_client)
                    self._link = _Link(client)
        return self._link

    @staticmethod
    async def _on_dask(
        link: _Link,
        work: Coroutine[Any, Any, _T],
        abandon: Callable[[concurrent.futures.Future[_T]], None],
    ) -> _T:
        """Run ``work`` on Dask's loop and wait for it here; when this wait is cancelled,
        ``work`` goes on (it is told so through ``abandon``, given its future)."""
        future = asyncio.run_coroutine_threadsafe(work, link.loop)
        try:
            return await asyncio.shield(asyncio.wrap_future(future))
        except BaseException:
            abandon(future)
            raise

    def _abandoned(
        self, host: str, request: _Request, future: concurrent.futures.Future[float]
    ) -> None:
        """The transfer stopped waiting: the lease request stops at its next step, and a
        lease it got all the same is given back."""
        request.abandoned = True

        def settle(done: concurrent.futures.Future[float]) -> None:
            if not done.cancelled() and done.exception() is None and done.result() == _LEASED:
                self.release(host)

        future.add_done_callback(settle)

    def _send(self, link: _Link, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` on Dask's loop without waiting; a failure is logged, not raised."""
        future = asyncio.run_coroutine_threadsafe(work, link.loop)
        future.add_done_callback(_log_failure)

    # -- on Dask's loop --------------------------------------------------------------------

    async def _semaphore(self, host: str) -> Any:
        semaphore = self._semaphores.get(host)
        if semaphore is None:
            assert self._link is not None
            client = self._link.client
            semaphore = _distributed().Semaphore(
                max_leases=self.cap,
                name=self.lease_name(host),
                scheduler_rpc=client.scheduler,
                loop=client.loop,
            )
            # Kept before it is registered: a second lease asked for meanwhile must take it
            # from the same instance, which alone refreshes and gives back its leases.
            self._semaphores[host] = semaphore
        await semaphore  # registered with the scheduler (once; the scheduler's is idempotent)
        return semaphore

    async def _take(self, host: str, request: _Request) -> float:
        """A lease of ``host`` (:data:`_LEASED`), or, when the host's published pause has
        not ended, no lease and that pause's end; or no lease (``-1``) once abandoned."""
        semaphore = await self._semaphore(host)
        while not await semaphore.acquire(timeout=_STEP):
            if request.abandoned:
                return -1.0
        end = await self._published(host)
        if end > self._wall():
            await semaphore.release()
            return end
        return _LEASED

    async def _give(self, host: str) -> None:
        await (await self._semaphore(host)).release()

    def _where(self, host: str) -> list[str]:
        """Where the scheduler keeps ``host``'s pause: its metadata, under the gate's name."""
        return [self.name, "pause", host]

    async def _published(self, host: str) -> float:
        """The end of ``host``'s latest published pause (``-inf``: none ever was)."""
        assert self._link is not None
        value = await self._link.client.get_metadata(self._where(host), default=None)
        return float(value) if isinstance(value, int | float) else -math.inf

    async def _publish(self, host: str, end: float) -> None:
        """Publish ``end`` unless a later pause is published already (another worker's:
        the two may race, and then the later write wins, both being pauses just heard)."""
        if await self._published(host) < end:
            assert self._link is not None
            await self._link.client.set_metadata(self._where(host), end)


def _log_failure(future: concurrent.futures.Future[None]) -> None:
    """A release or a publication that failed: the scheduler frees a lease at its timeout,
    and a pause not published is heard again by the others from the server."""
    if not future.cancelled() and (exc := future.exception()) is not None:
        log.warning("cluster gate: a call to the scheduler failed: %s", exc)
