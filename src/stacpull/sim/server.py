"""The simulated MAAP catalogue as a real aiohttp server.

* ``/catalogue/``: STAC API 1.1 (landing page, an OpenAPI ``service-desc`` at ``api``,
  conformance, collections, queryables, ``/collections/{id}/items``, item search by GET and
  POST with opaque ``rel=next`` tokens that also work as a plain GET, ``numberMatched``,
  CQL2 text and JSON through the ``cql2`` library; pages unordered and items listed again
  when :class:`~.results.ResultOrder` says, as MAAP's are). The slashless ``/catalogue``
  answers 503, as MAAP's load balancer does.
* ``/data/zipper/...``: product zips built on the fly, chunked, no ``Content-Length``, no
  ranges. ``/data/...``: static files with ``ETag``, ``Last-Modified``, ``Range``,
  ``If-Range`` (ETag or date; a stale validator gets the full 200) and 416; with the
  ``validators`` fault knob off (``sim serve --no-validators``), ranges without ``ETag``
  or ``Last-Modified``, so an ``If-Range`` never matches (nobody recorded which MAAP's
  static files do).
  Paths with a ``public`` segment need no token; the rest need ``Authorization: Bearer``.
* ``/go?to=URL``: a 302 to ``URL``, for redirect tests.
* ``/realms/sim/protocol/openid-connect/token``: the OIDC endpoint of :mod:`.oidc`; data
  requests accept its access tokens until they expire (401 ``invalid_token`` after).

:class:`SimServer` runs it on 127.0.0.1 in a background thread with its own event loop,
so a test, a benchmark or ``stacpull demo`` can point any client at it.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .catalog import SimCatalog, default_collections
from .faults import Faults, FaultState, Holds
from .files import DataFiles
from .oidc import TOKEN_PATH, OIDCOptions, SimIdentity
from .results import ResultOrder
from .stac_api import StacApi

__all__ = ["SimOptions", "SimServer", "SimState"]


@dataclass
class SimOptions:
    """Server behaviour: who may download (a fixed ``tokens`` set, or access tokens from the
    ``oidc`` endpoint), what is recorded, what goes wrong (``faults``)."""

    tokens: set[str] = field(default_factory=lambda: {"sim-token"})
    require_auth: bool = True
    log_size: int = 10_000
    latency: float = 0.0  # seconds before each data response starts, like a distant server
    faults: Faults = field(default_factory=Faults)
    oidc: OIDCOptions = field(default_factory=OIDCOptions)
    collection_search: bool = True  # False: /collections ignores q/filter/bbox/datetime
    results: ResultOrder = field(default_factory=ResultOrder)  # shuffle, duplicates: as MAAP's


class SimState:
    """What the server's handlers share and the tests read: the log of data requests, the
    fault dice, the token endpoint, and the byte and connection counters."""

    def __init__(self, catalog: SimCatalog, options: SimOptions) -> None:
        self.catalog = catalog
        self.options = options
        self.requests: deque[dict[str, Any]] = deque(maxlen=options.log_size)
        self.faults = FaultState(options.faults)
        self.identity = SimIdentity(options.oidc)
        self.bytes_sent = 0  # body bytes written by the data server, for soak figures
        self.bytes_by_file: dict[str, int] = {}  # the same per file ("item/key"), all responses
        self.holds = Holds()  # files whose next body pauses mid-way until the test says
        self.sending = 0  # data response bodies being written now
        self.peak_sending = 0  # the most at once
        self.connections = 0  # data requests in flight, from arrival (before the latency)
        self.peak_connections = 0  # the most at once: how many connections a client used


def _build_app(
    catalog: SimCatalog, options: SimOptions | None = None
) -> tuple[web.Application, SimState]:
    """The aiohttp application and its state (``state.requests`` records data requests)."""
    state = SimState(catalog, options or SimOptions())
    api = StacApi(
        catalog, collection_search=state.options.collection_search, results=state.options.results
    )
    files = DataFiles(state)
    app = web.Application()
    app.router.add_get("/catalogue", api.slashless)
    app.router.add_get("/catalogue/", api.landing)
    app.router.add_get("/catalogue/conformance", api.conformance)
    app.router.add_get("/catalogue/api", api.openapi)
    app.router.add_get("/catalogue/api.html", api.openapi_html)
    app.router.add_get("/catalogue/queryables", api.root_queryables)
    app.router.add_get("/catalogue/collections", api.collections)
    app.router.add_get("/catalogue/collections/{cid}", api.collection)
    app.router.add_get("/catalogue/collections/{cid}/queryables", api.queryables)
    app.router.add_get("/catalogue/collections/{cid}/items", api.items)
    app.router.add_get("/catalogue/collections/{cid}/items/{iid}", api.item)
    app.router.add_route("*", "/catalogue/search", api.search)
    app.router.add_route("*", "/catalogue/page/{token}/search", api.next_page)
    app.router.add_get("/go", files.redirect)
    app.router.add_get("/data/{tail:.*}", files.data)
    app.router.add_post(TOKEN_PATH, state.identity.endpoint)
    return app, state


class SimServer:
    """The simulated catalogue on 127.0.0.1, served from a background thread.

    >>> with SimServer() as sim:            # doctest: +SKIP
    ...     print(sim.catalog_url)          # http://127.0.0.1:PORT/catalogue/
    """

    def __init__(
        self,
        catalog: SimCatalog | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        options: SimOptions | None = None,
    ) -> None:
        self.host = host
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self._sock.listen(256)
        self.port: int = self._sock.getsockname()[1]
        self.catalog = catalog or SimCatalog(default_collections())
        self.catalog.base_url = f"http://{host}:{self.port}"
        self.options = options or SimOptions()
        self._app, self.state = _build_app(self.catalog, self.options)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    @property
    def base_url(self) -> str:
        return self.catalog.base_url

    @property
    def catalog_url(self) -> str:
        """The STAC API root, with its trailing slash."""
        return f"{self.base_url}/catalogue/"

    def set_faults(self, faults: Faults) -> None:
        """Change the fault knobs of a running server (the network calms down, or worsens)."""
        self.options.faults = faults
        self.state.faults = FaultState(faults)

    @property
    def fault_counts(self) -> dict[str, int]:
        """Faults injected so far: cuts, status_503, status_429 (of bursts),
        over_concurrency (429s of ``max_concurrent``), not_ready, changes…"""
        return dict(self.state.faults.counts)

    @property
    def peak_sending(self) -> int:
        """The most data response bodies this server was writing at once (after the
        latency wait; :attr:`peak_connections` counts from arrival)."""
        return self.state.peak_sending

    @property
    def peak_connections(self) -> int:
        """The most data requests in flight at once, each from its arrival (before the
        latency wait) to its last byte, refused ones included: the connections a client
        used."""
        return self.state.peak_connections

    @property
    def over_concurrency(self) -> int:
        """The 429s ``max_concurrent`` answered (also in :attr:`fault_counts`)."""
        return self.state.faults.counts.get("over_concurrency", 0)

    @property
    def bytes_sent(self) -> int:
        """Body bytes the data server has written (for re-download figures)."""
        return self.state.bytes_sent

    def bytes_sent_for(self, item_id: str, key: str) -> int:
        """Body bytes sent for the file of ``item_id``'s asset ``key``, over every response
        (what a resumed or repeated transfer cost the server)."""
        return self.state.bytes_by_file.get(self._slot(item_id, key), 0)

    @staticmethod
    def _slot(item_id: str, key: str) -> str:
        """The server's name of a file (a file listed under two keys goes by its first)."""
        return f"{item_id}/{key}"

    def hold(self, item_id: str, key: str, after: int) -> None:
        """The next response for ``item_id``'s asset ``key`` pauses after ``after`` body
        bytes until :meth:`release` (one-shot; counted in :attr:`held`)."""
        self.state.holds.hold(self._slot(item_id, key), after)

    def release(self, item_id: str, key: str) -> None:
        """Let the file's held response go on (or its next one pass its hold)."""
        self.state.holds.release(self._slot(item_id, key))

    def wait_held(self, item_id: str, key: str, timeout: float = 30.0) -> bool:
        """Wait until a response for the file reached its hold; ``False`` after ``timeout``."""
        return self.state.holds.wait_reached(self._slot(item_id, key), timeout)

    @property
    def held(self) -> dict[str, int]:
        """Responses that reached their hold, per file (``item/key``)."""
        return dict(self.state.holds.reached)

    @property
    def requests(self) -> deque[dict[str, Any]]:
        """Data requests received: method, path, range, if_range, auth, token_ok, token, at
        (``time.monotonic()`` on arrival)."""
        return self.state.requests

    @property
    def token_url(self) -> str:
        """The OIDC token endpoint (``--token-url``)."""
        return f"{self.base_url}{TOKEN_PATH}"

    @property
    def identity(self) -> SimIdentity:
        """The token endpoint's state: ``revoke()``, ``grant()``, ``expire_access_tokens()``,
        ``log`` of token requests."""
        return self.state.identity

    async def serve(self) -> None:
        """Serve on the current event loop until cancelled (``stacpull sim serve``)."""
        runner = web.AppRunner(self._app, access_log=None, handler_cancellation=True)
        await runner.setup()
        site = web.SockSite(runner, self._sock)
        await site.start()
        self._stop = asyncio.Event()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self.serve())
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._ready.set()
        finally:
            loop.close()

    def start(self) -> SimServer:
        """Start serving in a daemon thread; returns once the socket accepts requests."""
        self._thread = threading.Thread(target=self._thread_main, name="stacpull-sim", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise RuntimeError(f"simulated catalogue failed to start: {self._error}")
        return self

    def stop(self) -> None:
        """Stop serving and join the thread."""
        self.state.holds.release_all()  # a held handler must not keep the loop from ending
        if self._loop is not None and self._stop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)
        self._sock.close()

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
