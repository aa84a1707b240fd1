"""Hostile review of issue 20: a hostile server, hostile metadata and a hostile world
against the per-mission profile, the simulator's new API and its cql2 filters."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web

from stacpull.config import Config, DownloadConfig, SearchConfig
from stacpull.dryrun import dry_run
from stacpull.errors import ConfigError
from stacpull.paging import time_windows
from stacpull.plan import PlanRules, plan_item
from stacpull.selection import profile_choice
from stacpull.sim import SimCatalog, SimServer, default_collections

from .conftest import cli
from .test_profiles import _pages, earthcare_item
from .test_results import Catalogue


def _token(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


def _request(url: str, body: bytes | None = None) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    req = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture(scope="module")
def small_sim() -> Iterator[SimServer]:
    with SimServer(SimCatalog(default_collections(count=3, product_size=1000))) as server:
        yield server


# -- the simulator's page tokens and bodies: hostile input is a 400, never a 500 ----------

_HOSTILE_TOKENS = {
    "infinite position": _token(b'{"q": {"limit": "1"}, "c": 1e400, "p": 0}'),
    "negative collection": _token(b'{"q": {"limit": "1"}, "c": -1, "p": 0}'),
    "negative position": _token(b'{"q": {"limit": "1"}, "c": 0, "p": -3}'),
    "position a bool": _token(b'{"q": {"limit": "1"}, "c": 0, "p": true}'),
    "nested too deep": _token(b'{"q": ' + b"[" * 3000 + b"]" * 3000 + b"}"),
}


@pytest.mark.parametrize("token", _HOSTILE_TOKENS.values(), ids=_HOSTILE_TOKENS.keys())
def test_a_hostile_page_token_is_a_400(small_sim: SimServer, token: str) -> None:
    status, body = _request(f"{small_sim.catalog_url}page/{token}/search")
    assert status == 400, body[:200]
    status, body = _request(f"{small_sim.catalog_url}search?token={token}")
    assert status == 400, body[:200]


def test_a_post_body_nested_too_deep_is_a_400(small_sim: SimServer) -> None:
    body = b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    status, text = _request(f"{small_sim.catalog_url}search", body)
    assert status == 400, text[:200]


def test_a_deeply_nested_cql2_filter_does_not_crash_the_simulator() -> None:
    """cql2's parser recurses on the native stack: a few kilobytes of parentheses (or a
    long chain of ANDs) crashed the whole simulator process with SIGSEGV. Run in a child
    process, so the crash it used to be cannot take the test run with it."""
    script = textwrap.dedent(
        """
        import json, urllib.error, urllib.parse, urllib.request
        from stacpull.sim import SimCatalog, SimServer, default_collections
        def status(url, body=None):
            headers = {"Content-Type": "application/json"} if body else {}
            try:
                with urllib.request.urlopen(urllib.request.Request(url, body, headers)) as r:
                    return r.status
            except urllib.error.HTTPError as exc:
                return exc.code
        with SimServer(SimCatalog(default_collections(count=1, product_size=100))) as s:
            deep = "(" * 2500 + "id = 'x'" + ")" * 2500
            chain = " AND ".join(["id = 'x'"] * 40000)
            nots = "NOT " * 6000 + "id = 'x'"
            tree = {"op": "=", "args": [{"property": "id"}, "x"]}
            for _ in range(450):
                tree = {"op": "not", "args": [tree]}
            got = [status(s.catalog_url + "search?filter=" + urllib.parse.quote(deep))]
            for text in (deep, chain, nots):
                body = json.dumps({"filter": text, "filter-lang": "cql2-text"}).encode()
                got.append(status(s.catalog_url + "search", body))
            body = json.dumps({"filter": tree, "filter-lang": "cql2-json"}).encode()
            got.append(status(s.catalog_url + "search", body))
            print(json.dumps(got))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == [400] * 5


# -- the per-mission profile against hostile metadata -------------------------------------


def test_an_earthcare_zip_under_the_enclosure_h5_key_is_never_taken() -> None:
    """The EarthCARE rule promises never the zip; a catalogue that puts the zipper's URL
    under ``enclosure_h5`` must not make the profile take a zip after all."""
    item = earthcare_item()
    item["assets"]["enclosure_h5"] = {
        "href": "https://catalog.maap.eo.esa.int/data/zipper/x/y",
        "type": "application/zip",
        "roles": ["data"],
    }
    choice = profile_choice(item)
    assert choice.rule == "earthcare"
    assert "enclosure_h5" not in choice.keys
    assert set(choice.keys) == {"enclosure_hdr", "quicklook_jpeg"}


def test_one_href_under_two_keys_with_contradicting_sizes_is_not_merged() -> None:
    """Two keys with one href are one download only when they claim the same file: with
    ``file:size`` (or ``file:checksum``) that differ, one claim would be dropped silently
    and the file verified against the other."""
    item = earthcare_item()
    item["assets"]["quicklook_jpeg"]["file:size"] = 10
    item["assets"]["thumbnail"]["file:size"] = 20
    jobs, refusals = plan_item(item, PlanRules(("all",)))
    assert not refusals
    sizes = {j.asset_key: j.size for j in jobs}
    assert sizes["quicklook_jpeg"] == 10 and sizes["thumbnail"] == 20
    assert not any(j.also for j in jobs)
    same = earthcare_item()
    same["assets"]["quicklook_jpeg"]["file:size"] = 10
    same["assets"]["thumbnail"]["file:size"] = 10
    jobs, _ = plan_item(same, PlanRules(("all",)))
    assert [j.also for j in jobs if j.also] == [("thumbnail",)]


def test_hostile_platforms_keep_the_dry_runs_rule_line_short(tmp_path: Path) -> None:
    """A catalogue whose items each name another huge platform ("EarthCARE" + 1000 bytes
    of noise) made one rule line of 200 kB: every reason quoted the value in full."""
    items: list[dict[str, Any]] = []
    for i in range(200):
        item = earthcare_item(item_id=f"EC{i:04d}")
        item["properties"]["platform"] = f"EarthCARE{'y' * 1000}{i}"
        items.append(item)
    config = Config(search=SearchConfig(), download=DownloadConfig(dest=str(tmp_path / "d")))
    summary = anyio.run(lambda: dry_run(config, pages=_pages(items)))
    plan = summary.rules["earthcare"]
    assert plan.items == 200
    assert sum(plan.why.values()) == 200
    assert len(plan.line()) < 2000
    assert len(json.dumps(plan.record())) < 4000


# -- search windows ---------------------------------------------------------------------


def test_a_window_shorter_than_a_microsecond_is_a_clear_error() -> None:
    """``--window 0.0000001s`` parsed as a duration above zero, then divided by a
    zero-width timedelta: a ZeroDivisionError traceback instead of a message."""
    with pytest.raises(ConfigError, match=r"search\.window"):
        time_windows("2025-01-01/2025-01-02", 1e-7)
    code, _, err = cli(
        "mirror", "--catalog", "http://127.0.0.1:9/catalogue/", "--collection", "X",
        "--datetime", "2025-01-01/2025-01-02", "--window", "0.0000001s",
        "--dest", "/nonexistent/d", "--dry-run",
    )  # fmt: skip
    assert code != 0 and "search.window" in err and "Traceback" not in err


def test_a_window_longer_than_any_timedelta_is_one_window() -> None:
    """``--window 10000000000d`` overflowed timedelta (OverflowError traceback): a window
    longer than the range is simply the whole range."""
    assert time_windows("2025-01-01/2025-01-02", 10_000_000_000 * 86400.0) == [
        "2025-01-01T00:00:00Z/2025-01-02T23:59:59.999999Z"
    ]


def test_windows_of_early_years_are_stamped_with_four_digit_years() -> None:
    """strftime's %Y writes year 1 as ``1``: the window ``1-01-01T00:00:00Z/…`` was then
    refused as no date at all, for a range the user gave as 0001-01-01/0001-01-02."""
    windows = time_windows("0001-01-01/0001-01-02", 86400.0)
    assert windows[0] == "0001-01-01T00:00:00Z/0001-01-02T00:00:00Z"
    assert windows[-1].endswith("/0001-01-02T23:59:59.999999Z")


# -- --filter-lang cql2-json with hostile JSON ---------------------------------------------


@pytest.mark.parametrize("depth", [400, 5000])
def test_a_cql2_json_filter_nested_too_deep_is_a_clear_config_error(depth: int) -> None:
    """5000 nested arrays made json.loads raise RecursionError (a traceback); 400 nested
    NOTs passed the check, then pystac-client's deepcopy failed with "maximum recursion
    depth exceeded" as the search's error. Both are the filter's fault: say so."""
    if depth > 1000:
        text = "[" * depth + "]" * depth
    else:
        tree: dict[str, Any] = {"op": "=", "args": [{"property": "id"}, "x"]}
        for _ in range(depth):
            tree = {"op": "not", "args": [tree]}
        text = json.dumps(tree)
    with pytest.raises(ConfigError, match=r"search\.filter: .*nest"):
        SearchConfig(filter=text, filter_lang="cql2-json")


# -- stac-geoparquet read back from a corrupt file ---------------------------------------


def test_a_corrupt_parquet_footer_is_a_config_error_never_a_rust_panic(tmp_path: Path) -> None:
    """rustac panics on some corrupt footers (``Unexpected bitwidth and signed``, ``Type
    NONE not supported``); pyo3's PanicException is a BaseException, so ``--from`` crashed
    with a traceback instead of saying the file is not readable stac-geoparquet."""
    rustac = pytest.importorskip("rustac")
    from stacpull.export import saved_pages

    catalog = SimCatalog(default_collections(count=2, product_size=100))
    collection = default_collections(count=1)[0].id
    good_path = tmp_path / "good.parquet"
    rustac.write_sync(str(good_path), [catalog.item(collection, i) for i in range(2)])
    good = good_path.read_bytes()
    leaked: list[str] = []
    for back in range(9, min(700, len(good))):
        data = bytearray(good)
        data[-back] = 0x35
        try:
            saved_pages("bad.parquet", data=bytes(data))
        except ConfigError:
            pass
        except BaseException as exc:
            leaked.append(f"{back}: {type(exc).__name__}")
    assert not leaked, leaked[:5]


def test_a_parquet_part_planted_as_a_link_is_never_followed(tmp_path: Path) -> None:
    pytest.importorskip("rustac")
    from stacpull.export import ItemWriter, saved_pages

    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    out = tmp_path / "items.parquet"
    (tmp_path / "items.parquet.part").symlink_to(victim)
    item = earthcare_item()
    with ItemWriter(out) as writer:
        writer.write(item)
    assert victim.read_bytes() == b"precious"
    assert not (tmp_path / "items.parquet.part").exists()
    read = saved_pages(out)
    assert read.count == 1


# -- the renamed-queryables hint against hostile error bodies ------------------------------


class _Rejecting(Catalogue):
    """tests/test_results.py's catalogue, whose search answers 400 with ``body`` (bytes, as
    a hostile server may send them)."""

    def __init__(self, body: bytes) -> None:
        super().__init__({"type": "object", "properties": {}})
        self.body = body

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path != "/search":
            return await super()._handle(request)
        return web.Response(status=400, body=self.body, content_type="application/json")


_BODIES = {
    "escape in description": json.dumps(
        {"code": "x", "description": "unknown \x1b]0;owned\x07 productType"}
    ).encode(),
    "description an object": json.dumps({"description": {"a": ["\x1b[2J"] * 3}}).encode(),
    "huge": b'{"description": "' + b"A" * 2_000_000 + b'"}',
    "not utf-8": b"\xff\xfe\x1b[31m bad",
    "a list": b'["\\u001b[2J", 1, null]',
}


@pytest.mark.parametrize("body", _BODIES.values(), ids=_BODIES.keys())
def test_a_hostile_400_keeps_the_hint_and_the_terminal_clean(body: bytes) -> None:
    with _Rejecting(body) as api:
        code, out, err = cli(
            "search", "--catalog", api.base, "--collection", "C",
            "--filter", "productType = 'X'",
        )  # fmt: skip
    assert code != 0 and "Traceback" not in err
    assert "productType is now product:type" in err
    assert "\x1b" not in out + err and "\x07" not in out + err
    assert len(err) < 5000


@pytest.mark.parametrize("limit", [b"Infinity", b"-Infinity", b"NaN"])
def test_a_post_limit_that_is_no_number_is_a_400(small_sim: SimServer, limit: bytes) -> None:
    """Python's JSON reads ``Infinity``: int() of it raised OverflowError, a 500."""
    status, body = _request(f"{small_sim.catalog_url}search", b'{"limit": ' + limit + b"}")
    assert status == 400, body[:200]
