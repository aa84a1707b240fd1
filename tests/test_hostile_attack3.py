"""Attacks on issue 16's secrets, hangs and dedupe points, each against a loopback server.

A catalogue whose ``rel=next`` loops in ways the first guard did not see (the same items in
another order, pages of junk under a new token each time), and one whose answer never ends.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import random
import sqlite3
import threading
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp.web
import anyio
import pytest
from aiohttp.test_utils import TestServer
from click.testing import CliRunner

import stacpull
from stacpull import search as search_module
from stacpull.cli import main
from stacpull.config import SearchConfig
from stacpull.errors import SearchError
from stacpull.search import search_pages
from stacpull.sim import SimServer

from .conftest import cli, pull
from .hostile import SearchApi, feature, serve_api


class Hostile(SearchApi):
    """A STAC API whose search misbehaves as :attr:`mode` says:

    - ``shuffle``: the same ten items on every page, in a new order, under a new href;
    - ``junk``: every page holds only features that are not objects, under a new href;
    - ``full``, ``hole``: three pages, the second one empty in ``hole``;
    - ``none``, ``zero``: no item at all, numberMatched 0 in ``zero`` (absent in ``none``);
    - ``empties``: empty pages, each with a rel=next to another, for ever;
    - ``one``: one item whose data answers 400 with a reason phrase that quotes a header;
    - ``endless``: the first page's JSON never ends (until :attr:`cap` bytes were sent).
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.variant = ""
        self.requests = 0
        self.sent = 0
        self.cap = 256 << 20

    async def data(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        if self.mode in ("hole", "full", "empties", "broken", "dup", "dup2"):
            return aiohttp.web.Response(body=request.match_info["name"].encode() * 10)
        # A reason phrase that quotes a header, as a proxy echoing the request might.
        return aiohttp.web.Response(status=400, reason='Bad Request (Authorization: "x")')

    async def search(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        self.requests += 1
        n = self.requests
        link = {"rel": "next", "href": f"{self.base}search?page={n}", "type": "application/json"}
        if self.mode == "endless":
            return await self._endless(request)
        if self.mode in ("full", "hole"):
            # No numberMatched (it is optional). "hole": page 2 comes back empty, with a
            # rel=next to page 3, as a server that filters after paging (or a backend
            # glitch under load) answers; "full": page 2 holds its item.
            page_no = int(request.query.get("page", "1"))
            ids = {1: ["a", "b"], 2: [] if self.mode == "hole" else ["x"], 3: ["c"]}[page_no]
            nxt = f"{self.base}search?page={page_no + 1}"
            links = [{"rel": "next", "href": nxt}] if page_no < 3 else []
            features = [feature(self.base, i) for i in ids]
            return aiohttp.web.json_response({"features": features, "links": links})
        if self.mode == "echo":
            # The catalogue knows its own password (HTTP Basic) and writes it into an id.
            leak = feature(self.base, f"leak-{CAT_PASSWORD}")
            return aiohttp.web.json_response({"features": [leak, leak]})
        if self.mode in ("dup", "dup2"):
            # "dup": item a with two assets; "dup2": a listed twice, first without "extra".
            a = feature(self.base, "a")
            a["assets"]["extra"] = {"href": f"{self.base}data/extra.bin", "roles": ["data"]}
            first = {**a, "assets": {"data": a["assets"]["data"]}}
            features = [a] if self.mode == "dup" else [first, a]
            return aiohttp.web.json_response({"features": features, "numberMatched": 1})
        if self.mode == "broken":
            # Item b comes back broken (a glitch, an edit): it is still in the catalogue.
            b = feature(self.base, "b")
            if self.variant == "port":
                b["assets"]["data"]["href"] = "http://127.0.0.1:99999/data/b.bin"  # no port
            else:
                b["assets"]["data"] = "not an object"
            page = {"features": [feature(self.base, "a"), b], "numberMatched": 2}
            return aiohttp.web.json_response(page)
        if self.mode in ("none", "zero"):
            page = {"type": "FeatureCollection", "features": []}
            return aiohttp.web.json_response(
                {**page, "numberMatched": 0} if self.mode == "zero" else page
            )
        if self.mode == "empties":
            return aiohttp.web.json_response({"features": [], "links": [link]})
        if self.mode == "one":
            a = feature(self.base, "a")
            if self.variant == "quoted":  # a field of the job quotes a header too
                a["properties"]["updated"] = 'Authorization: "x"'
            page = {"type": "FeatureCollection", "features": [a]}
            return aiohttp.web.json_response(page)
        if self.mode == "shuffle":
            ids = [f"i{k}" for k in range(10)]
            random.Random(n).shuffle(ids)  # unordered results: no sortby on MAAP
            features: list[Any] = [feature(self.base, i) for i in ids]
        else:
            features = [None, "x", 1]
        page = {"type": "FeatureCollection", "features": features, "links": [link]}
        return aiohttp.web.json_response(page)

    async def _endless(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        resp = aiohttp.web.StreamResponse(headers={"Content-Type": "application/geo+json"})
        await resp.prepare(request)
        await resp.write(b'{"type": "FeatureCollection", "features": [')
        chunk = json.dumps(feature(self.base, "x")).encode() + b","
        block = chunk * max(1, (64 << 10) // len(chunk))
        try:
            while self.sent < self.cap:
                await resp.write(block)
                self.sent += len(block)
        except (ConnectionError, RuntimeError):
            pass  # the client gave up: what we want
        return resp


async def _mirror_then_prune(
    dest: Path, start: str, downloaded: int, /, *, quiet: bool = False, **then: str
) -> stacpull.RunResult:
    """Mirror a :class:`Hostile` API in mode ``start`` into ``dest`` (``downloaded`` files), set
    its attributes ``then`` and mirror again with --prune: the second run's result
    (``quiet``: warnings ignored during it)."""
    api = Hostile(start)
    server = await serve_api(api)
    try:
        options: dict[str, Any] = {"catalog": api.base, "collections": ["C1"], "assets": ["all"]}
        first = await stacpull.amirror(dest=str(dest), **options)
        assert first.downloaded == downloaded
        for name, value in then.items():
            setattr(api, name, value)
        with anyio.fail_after(10), warnings.catch_warnings():
            if quiet:  # pystac-client: "numberMatched ... not in response"
                warnings.simplefilter("ignore")
            return await stacpull.amirror(dest=str(dest), prune=True, **options)
    finally:
        await server.close()


async def _pages(config: SearchConfig) -> AsyncIterator[int]:
    async for features, _ in search_pages(config):
        yield len(features)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["shuffle", "junk"])
async def test_a_next_link_that_repeats_its_items_in_disguise_stops_the_search(mode: str) -> None:
    api = Hostile(mode)
    server = await serve_api(api)
    try:
        config = SearchConfig(catalog=api.base, collections=("C1",), timeout=5)
        with pytest.raises(SearchError, match="repeats a page"):
            with anyio.fail_after(10):  # today: pages for ever
                async for _ in _pages(config):
                    pass
        assert api.requests <= 4
    finally:
        await server.close()


@pytest.mark.anyio
async def test_a_search_answer_that_never_ends_is_refused_once_too_large(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(search_module, "MAX_ANSWER", 4 << 20)
    api = Hostile("endless")
    api.cap = 64 << 20  # today: all of it is read into memory, until the answer deadline
    server = await serve_api(api)
    try:
        config = SearchConfig(catalog=api.base, collections=("C1",), timeout=5)
        with pytest.raises(SearchError, match="larger than") as caught:
            with anyio.fail_after(20):
                async for _ in _pages(config):
                    pass
        assert len(str(caught.value).splitlines()) == 1
        assert api.sent < 16 << 20
    finally:
        await server.close()


# -- secrets ---------------------------------------------------------------------------

OLD_PASSWORD = "old-cat-pw"
CAT_PASSWORD = "cat-password-long"
OLD_TOKEN = "eyJold.access-token.sig"


def test_stacpull_report_shows_no_password_kept_by_a_report_written_before_scrubbing(
    sim: SimServer, tmp_path: Path
) -> None:
    """Reports written before issue 16 kept the catalogue URL whole (and a server's words
    as they came): ``stacpull report`` runs without any config, so nothing is registered
    to take them out; it must take out what it can find by shape."""
    pull(sim, tmp_path)
    last = tmp_path / ".stacpull" / "last-report.json"
    data = json.loads(last.read_text())
    data["query"]["catalog"] = f"http://cat-user:{OLD_PASSWORD}@127.0.0.1:9/catalogue/"
    data["fatal"] = f"got 500 from http://u:{OLD_PASSWORD}@h/x?access_token={OLD_TOKEN}"
    data["errors"] = [{"class": "AuthError", "count": 1, "last": f"echo: Bearer {OLD_TOKEN}"}]
    last.write_text(json.dumps(data))
    code, out, err = cli("report", str(tmp_path))
    assert code == 1, err  # the run it describes was stopped (fatal)
    assert "catalog=" in out
    assert OLD_PASSWORD not in out + err
    assert OLD_TOKEN not in out + err


@pytest.mark.anyio
async def test_an_empty_page_with_a_next_link_is_not_the_end_of_the_listing(
    tmp_path: Path,
) -> None:
    """pystac-client takes an empty page for the end, whatever its rel=next says: a mirror
    then judged every item after it gone, and --prune deleted its files."""
    # x is not listed (it left, or a glitch emptied its page); c is there, after the hole
    second = await _mirror_then_prune(tmp_path, "full", 4, mode="hole")
    kept = sorted(p.name for p in (tmp_path / "C1").rglob("*.bin"))
    # This catalogue ignores ids and counts nothing: looked up, x came back as a and b (the
    # lookup cut at twice the ids asked for), which proves nothing of x; x is kept too.
    assert kept == ["a.bin", "b.bin", "c.bin", "x.bin"]
    assert second.gone == () and "looked up" in (second.not_judged or "")


@pytest.mark.anyio
@pytest.mark.parametrize("variant", ["port", "junk"])
async def test_an_item_refused_in_a_mirror_keeps_its_files(tmp_path: Path, variant: str) -> None:
    """An item the search lists but that cannot be planned this time is still in the
    catalogue: its files are not gone, and --prune keeps them."""
    second = await _mirror_then_prune(tmp_path, "full", 4, mode="broken", variant=variant)
    kept = sorted(p.name for p in (tmp_path / "C1").rglob("*.bin"))
    assert "b.bin" in kept
    assert second.refused == (1 if variant == "port" else 0)


@pytest.mark.anyio
async def test_an_item_listed_twice_keeps_the_files_its_first_listing_lacks(
    tmp_path: Path,
) -> None:
    """The README: --prune deletes files whose *items* left the catalogue. An item listed
    twice (MAAP can), the first time without one asset, is planned from its first listing;
    the other asset's file was judged gone and deleted, to come back the next night."""
    second = await _mirror_then_prune(tmp_path, "dup", 2, mode="dup2")
    assert sorted(p.name for p in (tmp_path / "C1").rglob("*.bin")) == ["a.bin", "extra.bin"]
    assert second.gone == ()
    assert second.duplicates == 1


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["none", "zero"])
async def test_a_search_that_lists_nothing_empties_a_mirror_only_when_it_says_so(
    tmp_path: Path, mode: str
) -> None:
    """One empty answer (200, no features, no numberMatched) made --prune delete the whole
    mirror; a catalogue that says numberMatched 0 is believed."""
    second = await _mirror_then_prune(tmp_path, "full", 4, quiet=True, mode=mode)
    kept = sorted(p.name for p in (tmp_path / "C1").rglob("*.bin"))
    if mode == "none":
        assert kept == ["a.bin", "b.bin", "c.bin", "x.bin"]
        assert second.not_judged is not None and "did not say" in second.not_judged
    else:
        assert kept == []
        assert second.pruned == 4


@pytest.mark.anyio
async def test_empty_pages_linking_on_for_ever_stop_the_search() -> None:
    api = Hostile("empties")
    server = await serve_api(api)
    try:
        config = SearchConfig(catalog=api.base, collections=("C1",), timeout=5)
        with pytest.raises(SearchError, match="empty pages"):
            with anyio.fail_after(10):
                async for _ in _pages(config):
                    pass
        assert api.requests <= 20
    finally:
        await server.close()


@contextlib.contextmanager
def _in_thread(api: Hostile) -> Iterator[None]:
    """Serve ``api`` from a loop of its own, so the command line runs in the test's thread
    (it installs signal handlers)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = asyncio.run_coroutine_threadsafe(serve_api(api), loop).result(10)
    try:
        yield
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_a_reason_quoting_an_authorization_header_leaves_every_json_output_readable(
    tmp_path: Path,
) -> None:
    """Scrubbing JSON text cut ``Authorization: \\"x\\"`` after the backslash: the outcome
    lines, hence the report's files, and the event log were no JSON any more."""
    api = Hostile("one")
    events = tmp_path / "events.jsonl"
    dest = tmp_path / "dest"
    with _in_thread(api):
        args = ("download", "--catalog", api.base, "--collection", "C1", "--dest", str(dest))
        code, _, err = cli(
            *args,
            "--assets",
            "all",
            "--retries",
            "0",
            "--log-json",
            str(events),
            "--dashboard",
            "none",
        )
    assert code == 1, err
    report = json.loads((dest / ".stacpull" / "last-report.json").read_text())
    assert [f["item"] for f in report["files"]] == ["a"]
    assert 'Authorization: "***"' in report["failed"][0]["error"]
    for line in events.read_text().splitlines():
        json.loads(line)
    code, out, err = cli("report", str(dest))
    assert code == 1, err  # the run it describes has a failed file
    assert 'Authorization: "***"' in out


def test_metadata_quoting_an_authorization_header_leaves_the_journal_readable(
    tmp_path: Path,
) -> None:
    """The journal keeps each job as JSON, scrubbed as text: an item whose ``updated``
    reads ``Authorization: "x"`` left a job no JSON could read, and --retry-failed (or the
    next page's collision check) ended in a JSONDecodeError traceback."""
    api = Hostile("one")
    api.variant = "quoted"
    dest = tmp_path / "dest"
    with _in_thread(api):
        args = ("download", "--catalog", api.base, "--collection", "C1", "--dest", str(dest))
        common = ("--assets", "all", "--retries", "0", "--dashboard", "none")
        code, _, err = cli(*args, *common)
        assert code == 1, err
        env = {"STACPULL_TOKEN": "", "STACPULL_OFFLINE_TOKEN": "", "STACPULL_TOKEN_FILE": ""}
        result = CliRunner().invoke(main, [*args, *common, "--retry-failed"], env=env)
    assert result.exit_code == 1, result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert (
        json.loads((dest / ".stacpull" / "last-report.json").read_text())["totals"]["failed"] == 1
    )


@pytest.mark.parametrize("as_json", [False, True])
def test_stacpull_status_shows_no_token_kept_by_a_journal_written_before_scrubbing(
    sim: SimServer, tmp_path: Path, as_json: bool
) -> None:
    """A journal written before issue 16 kept a server's words as they came (a reason
    echoing the bearer header): ``stacpull status`` has no config, nothing is registered."""
    pull(sim, tmp_path)
    with sqlite3.connect(tmp_path / ".stacpull" / "journal.sqlite") as db:
        db.execute(
            "UPDATE transfers SET status = 'failed', error_class = 'AuthError', error = ?",
            (f"HTTP 401 (you sent Authorization: Bearer {OLD_TOKEN}) (http://h/x)",),
        )
    code, out, err = cli("status", str(tmp_path), *(["--json"] if as_json else []))
    assert code == 0, err
    assert "AuthError" in (out if as_json else err)  # piped, the reasons are notes: stderr
    assert OLD_TOKEN not in out + err


@pytest.mark.anyio
async def test_a_library_users_log_handler_gets_no_password_from_the_engine(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The Python API under the caller's own logging: the engine's records, and those of
    the catalogue client (pystac-client logs each request's headers: HTTP Basic from the
    catalogue's userinfo), are scrubbed before they reach any handler."""
    api = Hostile("echo")
    server = await serve_api(api)
    try:
        catalog = api.base.replace("http://", f"http://cat:{CAT_PASSWORD}@")
        with caplog.at_level(logging.DEBUG), anyio.fail_after(10):
            await stacpull.adownload(
                catalog=catalog, collections=["C1"], dest=str(tmp_path), assets=["all"]
            )
    finally:
        await server.close()
    # The data is fetched (a selector matching nothing now stops before planning), so
    # the test server's own access log, which is not the engine's, is left out.
    text = "\n".join(r.getMessage() for r in caplog.records if r.name != "aiohttp.access")
    assert "listed more than once" in text
    assert CAT_PASSWORD not in text
    basic = base64.b64encode(f"cat:{CAT_PASSWORD}".encode()).decode()
    assert "Authorization" in text  # pystac-client logs every request's headers
    assert basic not in text


@pytest.mark.anyio
async def test_a_short_catalogue_password_echoed_with_its_user_is_scrubbed() -> None:
    """A password under errors._Scrubber.MIN_LENGTH (``user:pass``, the issue's own example) is
    too common to take out of every text alone; echoed with its user it is taken out."""

    async def landing(request: aiohttp.web.Request) -> aiohttp.web.Response:
        body = {"description": "bad credentials for cat:pw12"}
        return aiohttp.web.json_response(body, status=401)

    app = aiohttp.web.Application()
    app.router.add_get("/", landing)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        base = str(server.make_url("/")).replace("http://", "http://cat:pw12@")
        config = SearchConfig(catalog=base, collections=("C1",), timeout=5)
        with pytest.raises(SearchError) as caught, anyio.fail_after(10):
            async for _ in _pages(config):
                pass
    finally:
        await server.close()
    assert "bad credentials for ***" in str(caught.value)
    assert "pw12" not in str(caught.value)
