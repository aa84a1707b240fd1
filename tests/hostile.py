"""A raw HTTP/1.1 server on 127.0.0.1 for the hostile tests: each path is answered by its
handler, which may say anything (aiohttp's own server will not ignore If-Range, send a
body longer than its length, nor announce a range past the file's end); every connection
closes after one answer. The test files subclass :class:`Request` with the ways they
answer."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from stacpull.sim import SimServer

from .conftest import L1A


@dataclass
class Request:
    """One request the server received: its path, headers (lower-case names), how many
    requests for that path came before it, and the stream to answer on."""

    path: str
    headers: dict[str, str]
    number: int
    writer: asyncio.StreamWriter

    @property
    def range_start(self) -> int | None:
        value = self.headers.get("range")
        return int(value.split("=")[1].split("-")[0]) if value else None


R = TypeVar("R", bound=Request)


@dataclass
class Hostile(Generic[R]):
    """The server, in its own thread; ``kind`` is the request type handlers receive."""

    routes: dict[str, Callable[[R], Awaitable[None]]]
    kind: type[R]
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    port: int = 0

    def __enter__(self) -> Hostile[R]:
        started = threading.Event()
        self._loop = asyncio.new_event_loop()

        async def main() -> None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]
            started.set()

        def runner() -> None:
            self._loop.run_until_complete(main())
            self._loop.run_forever()

        self._thread = threading.Thread(target=runner, daemon=True)
        self._thread.start()
        started.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            self._server.close()
            handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in handlers:
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def count(self, path: str) -> int:
        return sum(1 for p, _ in self.requests if p == path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            first, *lines = head.decode("latin-1").split("\r\n")
            path = first.split(" ")[1]
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(":") for line in lines if line)
            }
            number = self.count(path)
            self.requests.append((path, headers))
            await self.routes[path](self.kind(path, headers, number, writer))
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError, asyncio.CancelledError):
                await writer.wait_closed()


def serve(kind: type[R]) -> Iterator[Hostile[R]]:
    """A fixture body: a server with no routes yet, stopped after the test."""
    with Hostile[R]({}, kind) as server:
        yield server


class ThreadedApp:
    """An aiohttp application on 127.0.0.1 in a thread of its own, for servers that must
    answer while the test blocks in a synchronous call (the CLI, ``stacpull.mirror``);
    subclasses answer every path in :meth:`_handle` and may use ``self._session`` (an
    aiohttp client session of the server's loop) to pass requests on."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self.port = 0

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> web.AppRunner:
            self._session = aiohttp.ClientSession()
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._handle)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            return runner

        self._runner = self._loop.run_until_complete(start())
        self._started.set()
        self._loop.run_forever()

    def __enter__(self: T) -> T:
        self._thread.start()
        self._started.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            await self._runner.cleanup()
            await self._session.close()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


T = TypeVar("T", bound=ThreadedApp)


class SearchApi:
    """A STAC API at :attr:`base` (set by :func:`serve_api`): the landing page, ``/search``
    and ``/data/{name}``, the last two answered by subclasses."""

    base = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self.landing)
        app.router.add_route("*", "/search", self.search)
        app.router.add_get("/data/{name}", self.data)
        return app

    async def landing(self, request: web.Request) -> web.Response:
        return web.json_response(landing(self.base))

    async def search(self, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError

    async def data(self, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError


async def serve_api(api: SearchApi) -> TestServer:
    """``api`` started on 127.0.0.1, its :attr:`~SearchApi.base` set; the caller closes it."""
    server = TestServer(api.app(), host="127.0.0.1")
    await server.start_server()
    api.base = str(server.make_url("/"))
    return server


class SimProxy(ThreadedApp):
    """A reverse proxy in front of ``sim``'s STAC API, served at :attr:`url`; subclasses
    decide in :meth:`_handle` what to pass on (:meth:`forward`) and how to lie about it."""

    def __init__(self, sim: SimServer) -> None:
        super().__init__()
        self.sim = sim

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/catalogue/"

    async def forward(self, request: web.Request, body: bytes) -> tuple[int, str]:
        """The sim's answer to ``request`` (whose body is ``body``): (status, text)."""
        async with self._session.request(
            request.method,
            self.sim.base_url + request.path_qs,
            data=body or None,
            headers={"Content-Type": request.headers.get("Content-Type", "application/json")},
        ) as upstream:
            return upstream.status, await upstream.text()

    def answer(self, text: str, status: int) -> web.Response:
        """``text`` as a JSON answer, the sim's catalogue links turned into this proxy's."""
        text = text.replace(f"{self.sim.base_url}/catalogue/", self.url)
        return web.Response(text=text, status=status, content_type="application/json")


def feature(base: str, item: Any) -> dict[str, Any]:
    """A minimal STAC item of collection ``C1`` with one data asset under ``base``."""
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": item,
        "collection": "C1",
        "geometry": None,
        "properties": {"datetime": "2025-01-01T00:00:00Z"},
        "links": [],
        "assets": {"data": {"href": f"{base}data/{item}.bin", "roles": ["data"]}},
    }


def landing(base: str) -> dict[str, Any]:
    """A minimal STAC API landing page at ``base`` (core and item search)."""
    return {
        "type": "Catalog",
        "id": "hostile",
        "description": "a hostile catalogue",
        "stac_version": "1.0.0",
        "conformsTo": [
            "https://api.stacspec.org/v1.0.0/core",
            "https://api.stacspec.org/v1.0.0/item-search",
        ],
        "links": [
            {"rel": "self", "href": base, "type": "application/json"},
            {"rel": "root", "href": base, "type": "application/json"},
            {"rel": "search", "href": base + "search", "type": "application/geo+json"},
        ],
    }


def plant(
    sim: SimServer, server: Hostile[Any], item_id: str, assets: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Add to the sim's L1A a copy of its first item, ``item_id``, whose ``assets`` (key ->
    asset, ``href`` a path on ``server``) point at ``server``; the download options that
    fetch them beside the well-behaved thumbnail of the sim's second item."""
    donor = sim.catalog.item(L1A, 0)
    normal = str(sim.catalog.item(L1A, 1)["id"])
    item = {**donor, "id": item_id, "assets": {}}
    for key, asset in assets.items():
        item["assets"][key] = {**asset, "href": server.url(asset["href"])}
    sim.catalog.add_item(L1A, item)
    return {"ids": [item_id, normal], "assets": [*assets, "thumbnail"]}


def asset_at(path: str, name: str, media_type: str = "image/tiff", **extra: Any) -> dict[str, Any]:
    """A data asset at ``path`` (on the hostile server) saved as ``name``."""
    return {"href": path, "type": media_type, "roles": ["data"], "file:local_path": name, **extra}


def payload(size: int, seed: int) -> bytes:
    """``size`` bytes of a pattern set by ``seed``."""
    return bytes((i * 7 + seed) % 251 for i in range(size))


class BusyCatalogue(ThreadedApp):
    """A STAC API on 127.0.0.1 whose /search answers 503 with ``Retry-After: retry_after``
    ``busy`` times, then one page of ``items`` (ids); ``searches`` counts the requests."""

    def __init__(self, busy: int, *, retry_after: str = "30", items: tuple[str, ...] = ("A",)):
        super().__init__()
        self.busy, self.retry_after, self.items = busy, retry_after, items
        self.searches = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    async def _handle(self, request: web.Request) -> web.Response:
        if request.path != "/search":
            return web.json_response(landing(self.base))
        self.searches += 1
        if self.searches <= self.busy:
            busy = {"Retry-After": self.retry_after}
            return web.json_response({"code": "Busy"}, status=503, headers=busy)
        features = [feature(self.base, item) for item in self.items]
        page = {"type": "FeatureCollection", "features": features, "links": []}
        return web.json_response({**page, "numberMatched": len(features)})
