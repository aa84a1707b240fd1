"""No hang: a silent catalogue, Ctrl-C in every phase, a looping ``rel=next``, junk items.

A catalogue that accepts connections and never answers (a raw asyncio server), a STAC
API whose next link loops (aiohttp), and ItemCollections whose fields are anything but
what STAC says: each ends in a one-line error, a per-item refusal or exit 130, never in
a run that waits forever or a traceback. Whatever could hang on today's code runs in a
subprocess with a timeout, or under ``anyio.fail_after``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp.web
import anyio
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stacpull
from stacpull.cli import main
from stacpull.config import SearchConfig
from stacpull.errors import ConfigError, SearchError
from stacpull.export import item_row, saved_pages
from stacpull.plan import PlanRules, plan_item
from stacpull.runtypes import STOP_GRACE
from stacpull.search import CollectionQuery, list_collections, search_pages
from stacpull.sim import SimServer

from .conftest import L1A, TOKEN
from .hostile import SearchApi, feature, serve_api

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

#: Bound on any one subprocess here: today's code never ends, the fixed code in seconds.
HANG = 30.0


_GEOJSON = "application/geo+json"


def _landing(base: str) -> dict[str, Any]:
    return {
        "type": "Catalog",
        "id": "hostile",
        "description": "a hostile catalogue",
        "stac_version": "1.0.0",
        "conformsTo": [
            "https://api.stacspec.org/v1.0.0/core",
            "https://api.stacspec.org/v1.0.0/item-search",
            "https://api.stacspec.org/v1.0.0/collections",
        ],
        "links": [
            {"rel": "self", "href": base},
            {"rel": "root", "href": base},
            {"rel": "search", "href": base + "search", "type": _GEOJSON, "method": "GET"},
            {"rel": "search", "href": base + "search", "type": _GEOJSON, "method": "POST"},
            {"rel": "data", "href": base + "collections"},
        ],
    }


class SilentCatalog:
    """A raw asyncio server on 127.0.0.1 that accepts every connection and never answers;
    with ``landing=True`` it answers the landing page and hangs on everything else; with
    ``trickle=True`` it answers that with headers and then a byte every 0.05 s, for ever."""

    def __init__(self, *, landing: bool = False, trickle: bool = False) -> None:
        self.landing = landing or trickle
        self.trickle = trickle
        self.hung = threading.Event()  # set once a request is being held unanswered
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def __enter__(self) -> SilentCatalog:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()
        tasks = asyncio.all_tasks(self._loop)
        for task in tasks:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self._loop.run_until_complete(server.wait_closed())
        self._loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line, *headers = head.decode("latin-1").split("\r\n")
                length = next(
                    (
                        int(h.split(":", 1)[1])
                        for h in headers
                        if h.lower().startswith("content-length:")
                    ),
                    0,
                )
                if length:
                    await reader.readexactly(length)
                path = line.split(" ")[1]
                if not (self.landing and path == "/"):
                    self.hung.set()
                    if self.trickle:
                        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
                        while True:
                            await writer.drain()
                            await asyncio.sleep(0.05)
                            writer.write(b" ")
                    await asyncio.sleep(3600)  # accepted, read, never answered
                body = json.dumps(_landing(self.url)).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


@pytest.fixture(params=[False, True], ids=["silent", "landing-then-silent"])
def silent(request: pytest.FixtureRequest) -> Iterator[SilentCatalog]:
    with SilentCatalog(landing=request.param) as server:
        yield server


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "STACPULL_TOKEN": "",
        "STACPULL_OFFLINE_TOKEN": "",
        "STACPULL_TOKEN_FILE": "",
        "COLUMNS": "200",
    }


def _fast_config(tmp_path: Path, timeout: float = 0.3) -> Path:
    path = tmp_path / "fast.toml"
    path.write_text(f"[search]\ntimeout = {timeout}\n", encoding="utf-8")
    return path


def _command(url: str, tmp_path: Path, command: str, *extra: str) -> list[str]:
    base = [sys.executable, "-m", "stacpull", command, "--catalog", url, "--collection", "C1"]
    if command in ("download", "mirror"):
        base += ["--dest", str(tmp_path / "dest"), "--dashboard", "plain"]
    return base + list(extra)


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, capture_output=True, text=True, env=_env(), timeout=HANG, stdin=subprocess.DEVNULL
    )


# -- 1. every network wait has a timeout ---------------------------------------------------


@pytest.mark.parametrize(
    "command, extra",
    [("search", ()), ("download", ()), ("download", ("--dry-run",)), ("mirror", ())],
)
def test_a_silent_catalogue_ends_in_one_line_naming_the_timeout(
    silent: SilentCatalog, tmp_path: Path, command: str, extra: tuple[str, ...]
) -> None:
    config = _fast_config(tmp_path)
    done = _run(_command(silent.url, tmp_path, command, "--config", str(config), *extra))
    assert done.returncode == 2, done.stderr
    assert f"the catalogue at {silent.url}" in done.stderr
    assert "did not answer within 0.3 s" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("command", [["collections"], ["queryables", "C1"]])
def test_discovery_commands_time_out_on_a_silent_catalogue(
    tmp_path: Path, command: list[str]
) -> None:
    with SilentCatalog() as server:
        cmd = [sys.executable, "-m", "stacpull", *command, "--catalog", server.url]
        done = _run([*cmd, "--config", str(_fast_config(tmp_path))])
    assert done.returncode == 2, done.stderr
    assert "did not answer within 0.3 s" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_the_python_api_times_out_on_a_silent_catalogue(tmp_path: Path) -> None:
    # In a subprocess: today's code waits forever, and a thread stuck in a request would
    # keep this test process alive.
    code = (
        "import stacpull, sys\n"
        "from stacpull.errors import SearchError\n"
        "try:\n"
        f"    stacpull.download(catalog=sys.argv[1], collections=['C1'], dest={str(tmp_path)!r},"
        " timeout=0.3)\n"
        "except SearchError as exc:\n"
        "    print(exc)\n"
    )
    with SilentCatalog(landing=True) as server:
        done = _run([sys.executable, "-c", code, server.url])
    assert "did not answer within 0.3 s" in done.stdout, done.stderr


@pytest.mark.parametrize(
    "command", [["download"], ["search", "--collection", "C1"], ["collections"]]
)
def test_a_catalogue_that_trickles_for_ever_is_given_up_on(
    tmp_path: Path, command: list[str]
) -> None:
    # A byte every 0.05 s beats any read timeout: only a bound on the whole answer (ten
    # times search.timeout) ends this.
    with SilentCatalog(trickle=True) as server:
        cmd = [sys.executable, "-m", "stacpull", *command, "--catalog", server.url]
        if command[0] == "download":
            cmd += ["--collection", "C1", "--dest", str(tmp_path / "dest")]
        done = _run([*cmd, "--config", str(_fast_config(tmp_path, 0.2))])
    assert done.returncode == 2, done.stderr
    assert "did not answer within 2 s (10 × search.timeout)" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


# -- Ctrl-C (and SIGTERM) in every phase -------------------------------------------------


def _start(cmd: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=_env(),
    )


def _interrupt(
    proc: subprocess.Popen[str], server: SilentCatalog, signals: list[int], bound: float
) -> tuple[int, str]:
    """Wait until ``proc`` is stuck on ``server``, send ``signals``, and return its exit
    code and stderr once it ends within ``bound`` seconds (killed otherwise)."""
    try:
        assert server.hung.wait(HANG), "the command never reached the catalogue"
        time.sleep(0.3)  # let it settle into its wait
        for signum in signals:
            proc.send_signal(signum)
            time.sleep(0.1)
        try:
            _, err = proc.communicate(timeout=bound)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running {bound:g} s after {signals}") from None
        return proc.returncode, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)


@pytest.mark.parametrize("command", ["download", "mirror", "search"])
def test_one_ctrl_c_ends_a_run_stuck_on_a_silent_catalogue(
    silent: SilentCatalog, tmp_path: Path, command: str
) -> None:
    # The default search.timeout (60 s): only the signal can end this in time.
    proc = _start(_command(silent.url, tmp_path, command))
    code, err = _interrupt(proc, silent, [signal.SIGINT], STOP_GRACE + 8)
    assert code == 130, err
    assert "Traceback" not in err


def test_two_ctrl_c_end_a_run_stuck_on_a_silent_catalogue_at_once(tmp_path: Path) -> None:
    with SilentCatalog(landing=True) as server:
        proc = _start(_command(server.url, tmp_path, "download"))
        code, err = _interrupt(proc, server, [signal.SIGINT, signal.SIGINT], 5)
    # A second Ctrl-C that lands once Python is exiting (signal handlers already reset)
    # ends the process by the signal itself: the shell shows 130 for that too.
    assert code in (130, -signal.SIGINT), err
    assert "Traceback" not in err


def test_sigterm_ends_a_run_stuck_on_a_silent_catalogue(tmp_path: Path) -> None:
    with SilentCatalog(landing=True) as server:
        proc = _start(_command(server.url, tmp_path, "download"))
        code, err = _interrupt(proc, server, [signal.SIGTERM], STOP_GRACE + 8)
    assert code == 130, err


@pytest.mark.parametrize("extra", [["--dry-run"], ["--max-bytes", "1G"]], ids=["dry-run", "budget"])
def test_ctrl_c_ends_a_dry_run_stuck_on_a_silent_catalogue(
    tmp_path: Path, extra: list[str]
) -> None:
    # --max-bytes plans the whole search before the run starts, like --dry-run.
    with SilentCatalog(landing=True) as server:
        proc = _start(_command(server.url, tmp_path, "download", *extra))
        code, err = _interrupt(proc, server, [signal.SIGINT], STOP_GRACE + 8)
    assert code == 130, err
    assert "Traceback" not in err


# -- 2. a rel=next that repeats a page is a loop -------------------------------------------


class LoopingAPI(SearchApi):
    """A small STAC API whose ``rel=next`` misbehaves as ``mode`` says:

    - ``ok``: two pages of two items, then the end;
    - ``same``: page 1 links to itself;
    - ``cycle``: page a → b → a;
    - ``token``: a new token every time, the same two items on every page;
    - ``post``: a POST next link with the same body every time;
    - ``single``: one item per page, one item listed on two pages, then the end;
    - ``stall``: page 1, then page 2 never comes (until :attr:`release` is set).
    """

    def __init__(self) -> None:
        self.mode = "ok"
        self.requests = 0
        self.release = asyncio.Event()

    def app(self) -> aiohttp.web.Application:
        app = super().app()
        app.router.add_get("/collections", self.collections)
        return app

    async def collections(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        self.requests += 1
        link = {"rel": "next", "href": self.base + "collections?page=2"}  # and page 2 again
        body = {"collections": [{"id": "C1"}], "links": [link]}
        return aiohttp.web.json_response(body)

    async def landing(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.json_response(_landing(self.base))

    async def data(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.Response(body=request.match_info["name"].encode() * 10)

    def _page(self, ids: list[str], next_link: dict[str, Any] | None) -> aiohttp.web.Response:
        links = [next_link] if next_link else []
        return aiohttp.web.json_response(
            {
                "type": "FeatureCollection",
                "features": [feature(self.base, i) for i in ids],
                "links": links,
            }
        )

    async def search(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        self.requests += 1
        token = request.query.get("token", "")
        if request.method == "POST":
            token = (await request.json()).get("token", "")
        url = self.base + "search?token="

        def nxt(t: str) -> dict[str, Any]:
            return {"rel": "next", "href": url + t, "type": "application/geo+json"}

        if self.mode == "deep":
            deep = '{"a":' * 10_000 + "1" + "}" * 10_000
            text = '{"type": "FeatureCollection", "features": [{"id": "x", "properties": '
            return aiohttp.web.Response(text=text + deep + "}]}", content_type="application/json")
        if self.mode == "junk":
            here = json.loads(json.dumps(_ODD_ITEMS).replace("http://h/", self.base + "data/"))
            odd = [{**f, "links": "x"} for f in here]
            page = {"type": "FeatureCollection", "features": [*odd, feature(self.base, "a")]}
            return aiohttp.web.json_response({**page, "numberMatched": True, "context": []})
        if self.mode == "stall" and token:
            await self.release.wait()
        if self.mode in ("ok", "stall"):
            return self._page(["a", "b"], nxt("2")) if not token else self._page(["c", "d"], None)
        if self.mode == "same":
            return (
                self._page(["a", "b"], nxt("1")) if not token else self._page(["c", "d"], nxt("1"))
            )
        if self.mode == "cycle":
            if token == "b":
                return self._page(["c", "d"], nxt("a"))
            return self._page(["a", "b"] if not token else ["e", "f"], nxt("b"))
        if self.mode == "token":
            return self._page(["a", "b"], nxt(str(self.requests)))
        if self.mode == "post":
            link = {"rel": "next", "href": self.base + "search", "method": "POST"}
            return self._page(["a", "b"], {**link, "body": {"token": "x"}})
        # single: a, a, b, then the end (one item listed twice, as MAAP can)
        order = {"": (["a"], "1"), "1": (["a"], "2"), "2": (["b"], "")}
        ids, following = order[token]
        return self._page(ids, nxt(following) if following else None)


async def _collect(api: LoopingAPI, method: str = "GET") -> list[str]:
    config = SearchConfig(catalog=api.base, collections=("C1",), method=method)
    ids: list[str] = []
    with anyio.fail_after(10):  # today: an endless loop of pages
        async for features, _ in search_pages(config):
            ids += [f["id"] for f in features]
    return ids


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["same", "cycle", "token", "post"])
async def test_a_next_link_that_repeats_a_page_stops_the_search(mode: str) -> None:
    api = LoopingAPI()
    server = await serve_api(api)
    try:
        api.mode = mode
        with pytest.raises(SearchError, match="repeats a page") as caught:
            await _collect(api, "POST" if mode == "post" else "GET")
        assert len(str(caught.value).splitlines()) == 1
        assert api.requests <= 4
    finally:
        await server.close()


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["ok", "single"])
async def test_honest_paging_is_not_taken_for_a_loop(mode: str) -> None:
    api = LoopingAPI()
    server = await serve_api(api)
    try:
        api.mode = mode
        ids = await _collect(api)
    finally:
        await server.close()
    assert ids == (["a", "b", "c", "d"] if mode == "ok" else ["a", "a", "b"])


@pytest.mark.anyio
async def test_a_collections_next_link_that_repeats_a_page_is_an_error() -> None:
    api = LoopingAPI()
    server = await serve_api(api)
    try:
        config = SearchConfig(catalog=api.base)
        with pytest.raises(SearchError, match="repeats a page"):
            await anyio.to_thread.run_sync(list_collections, config, CollectionQuery())
    finally:
        await server.close()
    assert api.requests <= 3  # not 1000 pages of the same collection


@pytest.mark.anyio
async def test_a_looping_search_stops_a_mirror_before_anything_is_judged_gone(
    tmp_path: Path,
) -> None:
    api = LoopingAPI()
    server = await serve_api(api)
    try:
        options: dict[str, Any] = {"catalog": api.base, "collections": ["C1"], "assets": ["all"]}
        first = await stacpull.amirror(dest=str(tmp_path), **options)
        assert first.downloaded == 4
        api.mode = "same"  # page 1 (a, b) again, then c, d looping: nothing is gone
        with anyio.fail_after(10), pytest.raises(SearchError, match="repeats a page"):
            await stacpull.amirror(dest=str(tmp_path), prune=True, **options)
    finally:
        await server.close()
    kept = sorted(p.name for p in (tmp_path / "C1").rglob("*.bin"))
    assert kept == ["a.bin", "b.bin", "c.bin", "d.bin"]


async def _set_after(event: asyncio.Event, delay: float) -> None:
    await anyio.sleep(delay)
    event.set()


@pytest.mark.anyio
async def test_a_search_that_stalls_midway_stops_a_mirror_before_anything_is_judged_gone(
    tmp_path: Path,
) -> None:
    api = LoopingAPI()
    server = await serve_api(api)
    try:
        options: dict[str, Any] = {"catalog": api.base, "collections": ["C1"], "assets": ["all"]}
        assert (await stacpull.amirror(dest=str(tmp_path), **options)).downloaded == 4
        api.mode = "stall"  # page 1 (a, b), then silence where c, d were
        async with anyio.create_task_group() as tg:
            # Today's search waits forever in a thread nothing can cancel: end the silence
            # after 15 s, so that this test fails instead of hanging.
            tg.start_soon(_set_after, api.release, 15.0)
            with pytest.raises(SearchError, match="did not answer within"):
                await stacpull.amirror(dest=str(tmp_path), prune=True, timeout=0.2, **options)
            tg.cancel_scope.cancel()
    finally:
        api.release.set()
        await server.close()
    kept = sorted(p.name for p in (tmp_path / "C1").rglob("*.bin"))
    assert kept == ["a.bin", "b.bin", "c.bin", "d.bin"]


@pytest.mark.anyio
async def test_odd_items_on_a_search_page_are_refused_and_the_run_goes_on(tmp_path: Path) -> None:
    api = LoopingAPI()
    server = await serve_api(api)
    try:
        api.mode = "junk"
        with anyio.fail_after(20):
            result = await stacpull.adownload(
                catalog=api.base,
                collections=["C1"],
                assets=["all"],
                dest=str(tmp_path),
                retries=0,  # the odd items' served "x.zip" is no zip: failed, at once
            )
        api.mode = "deep"
        with anyio.fail_after(20), pytest.raises(SearchError, match="search failed") as caught:
            await _collect(api)
        assert len(str(caught.value).splitlines()) == 1
    finally:
        await server.close()
    assert result.downloaded == 1 and result.refused >= 10 and result.fatal is None
    assert (tmp_path / "C1" / "a" / "a.bin").is_file()


def test_the_cli_says_the_search_loops_in_one_line(tmp_path: Path) -> None:
    api = LoopingAPI()
    api.mode = "cycle"

    async def serve(started: threading.Event, stop: threading.Event) -> None:
        server = await serve_api(api)
        started.set()
        await anyio.to_thread.run_sync(stop.wait)
        await server.close()

    started, stop = threading.Event(), threading.Event()
    thread = threading.Thread(target=lambda: anyio.run(serve, started, stop), daemon=True)
    thread.start()
    try:
        assert started.wait(10)
        done = _run(_command(api.base, tmp_path, "search", "-o", str(tmp_path / "i.geojson")))
    finally:
        stop.set()
        thread.join(10)
    assert done.returncode == 2, done.stderr
    assert "repeats a page" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "i.geojson").exists()  # no saved search that looks complete


# -- 3. junk items: a refusal per item, or one line for a file that is no ItemCollection ----

_ODD_STRINGS = ["http://[::1", "http://h/a.zip", "http://h:99999/a.zip", "http:///a.zip", "../x"]
_ODD_STRINGS += ["/etc/x", "a/b.png", "\udc80.zip", ""]
_JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
    | st.sampled_from(_ODD_STRINGS),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=12,
)
_ASSET = st.one_of(
    _JSONISH,
    st.fixed_dictionaries(
        {},
        optional={
            "href": _JSONISH,
            "type": _JSONISH,
            "roles": _JSONISH,
            "title": _JSONISH,
            "file:size": _JSONISH,
            "file:checksum": _JSONISH,
            "file:local_path": _JSONISH,
        },
    ),
)
_ITEM = st.fixed_dictionaries(
    {},
    optional={
        "type": st.just("Feature") | _JSONISH,
        "id": st.text(min_size=1, max_size=8) | _JSONISH,
        "collection": st.text(max_size=8) | _JSONISH,
        "bbox": _JSONISH,
        "properties": _JSONISH
        | st.fixed_dictionaries(
            {}, optional={"datetime": _JSONISH, "updated": _JSONISH, "start_datetime": _JSONISH}
        ),
        "assets": _JSONISH | st.dictionaries(st.text(max_size=8), _ASSET, max_size=4),
        "links": _JSONISH | st.lists(st.dictionaries(st.sampled_from(["rel", "href"]), _JSONISH)),
    },
)
_RULES = [
    PlanRules(("maap",)),
    PlanRules(("all",), "{collection}/{year}/{month}/{day}/{item}/{key}/{name}"),
    PlanRules(("role:data", "type:image/*", "enclosure_*")),
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(item=_ITEM)
def test_planning_a_junk_item_only_ever_refuses(item: dict[str, Any]) -> None:
    for rules in _RULES:
        jobs, refusals = plan_item(item, rules)
        assert all(isinstance(r.reason, str) and r.reason for r in refusals)
        assert all(job.url.startswith(("http://", "https://")) for job in jobs)
    row = item_row(item)  # `search -o items.csv` writes this for every item
    assert set(row) >= {"id", "download_url"}


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(document=_JSONISH | st.lists(_ITEM, max_size=3).map(lambda f: {"features": f}))
def test_reading_a_junk_saved_search_refuses_in_one_line_or_yields_dicts(
    tmp_path: Path, document: Any
) -> None:
    path = tmp_path / "junk.geojson"
    path.write_text(json.dumps(document), encoding="utf-8")
    try:
        saved = saved_pages(path)
    except ConfigError as exc:
        assert len(str(exc).splitlines()) == 1
        return

    async def read() -> list[Any]:
        return [f async for features, _ in saved.pages() for f in features]

    assert all(isinstance(f, dict) for f in anyio.run(read))


_ODD_ITEMS: list[dict[str, Any]] = [
    {"id": "props-list", "properties": [1, 2], "assets": {"a": {"href": "http://h/x.zip"}}},
    {"id": "props-str", "properties": "nope", "assets": {"a": {"href": "http://h/x.zip"}}},
    {"id": "assets-list", "assets": [{"href": "http://h/x.zip"}]},
    {"id": "href-number", "assets": {"a": {"href": 12}}},
    {"id": "href-missing", "assets": {"a": {"type": "image/png"}}},
    {"id": "href-port", "assets": {"a": {"href": "http://127.0.0.1:99999/x.zip"}}},
    {"id": "href-no-host", "assets": {"a": {"href": "http:///x.zip"}}},
    {"id": "href-idna", "assets": {"a": {"href": "http://xn--/x.zip"}}},
    {"id": "name-surrogate", "assets": {"a": {"href": "http://h/\udc80.zip"}}},
    {"id": "href-bad-ipv6", "assets": {"a": {"href": "http://[::1/x.zip", "roles": ["data"]}}},
    {
        "id": "self-bad",
        "links": [{"rel": "self", "href": "http://[x"}],
        "assets": {"a": {"href": "y.zip"}},
    },
    {"assets": {"a": {"href": "http://h/x.zip"}}},
    {"id": 7, "assets": {"a": {"href": "http://h/x.zip"}}},
    {"id": ["n", ["e", ["s", ["t"]]]], "assets": {}},
    {"id": "bbox-str", "bbox": ["a", "b", "c", "d"], "assets": {"a": {"href": "http://h/x.zip"}}},
    {"id": "huge", "assets": {"a": {"href": "http://h/x.zip", "file:size": 10**400}}},
    {"id": "links-int", "links": 5, "assets": {"a": {"href": "http://h/x.zip"}}},
    {"id": "props-dt", "properties": {"datetime": 5, "updated": []}, "assets": {}},
]


def _cli(*args: str) -> tuple[int, str, BaseException | None]:
    env = {"STACPULL_TOKEN": TOKEN, "STACPULL_OFFLINE_TOKEN": "", "STACPULL_TOKEN_FILE": ""}
    result = CliRunner().invoke(main, list(args), env=env)
    return result.exit_code, result.stderr, result.exception


def test_odd_items_in_a_saved_search_are_refused_one_by_one(sim: SimServer, tmp_path: Path) -> None:
    good = sim.catalog.item(L1A, 0)
    saved = tmp_path / "odd.geojson"
    saved.write_text(
        json.dumps({"type": "FeatureCollection", "features": [*_ODD_ITEMS, good]}),
        encoding="utf-8",
    )
    code, err, exc = _cli(
        "download", "--from", str(saved), "--catalog", sim.catalog_url,
        "--dest", str(tmp_path / "dest"), "--dashboard", "none",
    )  # fmt: skip
    assert isinstance(exc, SystemExit), f"{exc!r}\n{err}"
    assert code == 1, err  # the odd ones refused, the good item downloaded
    assert "Traceback" not in err
    assert (tmp_path / "dest" / L1A / good["id"]).is_dir()


@pytest.mark.parametrize(
    "text",
    [
        "[" * 10_000 + "]" * 10_000,
        '{"type": "FeatureCollection", "features": ' + "[" * 10_000 + "]" * 10_000 + "}",
        '{"features": [{"id": "x", "properties": ' + '{"a":' * 10_000 + "1" + "}" * 10_001 + "]}",
        '{"features": [{"id": "x", "file:size": 1' + "0" * 5000 + "}]}",
        '{"features": "not a list"}',
        "42",
    ],
    ids=["deep-list", "deep-features", "deep-properties", "huge-int", "features-str", "number"],
)
def test_a_file_that_is_no_item_collection_is_one_line_exit_2(tmp_path: Path, text: str) -> None:
    saved = tmp_path / "junk.geojson"
    saved.write_text(text, encoding="utf-8")
    code, err, exc = _cli("download", "--from", str(saved), "--dest", str(tmp_path / "d"))
    assert isinstance(exc, SystemExit), f"{exc!r}\n{err}"
    assert code == 2, err
    assert err.startswith("stacpull: --from:") and len(err.strip().splitlines()) == 1
