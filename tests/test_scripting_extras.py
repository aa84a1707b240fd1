"""Issue 17, the flags stac-client users reach for: ``--header`` reaches the STAC API
(search, collections, queryables, the Python API) but never a second host unless
``--header-all-hosts``; ``-q``/``-v`` after any subcommand, as before it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from aiohttp import web
from click.testing import CliRunner

import stacpull
from stacpull.cli import main

from .hostile import ThreadedApp, feature, landing

GATE = ("X-Gateway", "letmein")
SECRET = "s3cr3t-v4lue-9f2c"


class Elsewhere(ThreadedApp):
    """Another host (another port of 127.0.0.1: another origin) that the catalogue's
    rel=next links and redirects point to; it records what it is sent and answers
    whatever is asked, so a header it receives is a header leaked."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, dict[str, str]]] = []

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.path, {k.lower(): v for k, v in request.headers.items()}))
        if request.path.endswith("/queryables"):
            return web.json_response({"type": "object", "properties": {"b": {"type": "string"}}})
        if request.path == "/collections":
            return web.json_response({"collections": [_collection("C2")], "links": []})
        return web.json_response(
            {"type": "FeatureCollection", "features": [feature(self.base, "i2")], "links": []}
        )


class Gated(ThreadedApp):
    """A STAC API behind a gateway: every request without ``X-Gateway: letmein`` is
    refused with 401 (its body echoes the request's headers, as a careless gateway
    might); the second page of a search and of the collections lives on ``other``."""

    def __init__(self, other: Elsewhere) -> None:
        super().__init__()
        self.other = other
        self.seen: list[tuple[str, dict[str, str]]] = []

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.seen.append((request.path, headers))
        if headers.get(GATE[0].lower()) != GATE[1]:
            return web.json_response({"code": "401", "description": repr(headers)}, status=401)
        base, there = self.base, self.other.base
        if request.path == "/":
            page = landing(base)
            page["conformsTo"].append("https://api.stacspec.org/v1.0.0/collections")
            page["links"].append({"rel": "data", "href": base + "collections"})
            return web.json_response(page)
        if request.path == "/search":
            next_link = {"rel": "next", "href": there + "search?page=2", "method": "GET"}
            return web.json_response(
                {
                    "type": "FeatureCollection",
                    "features": [feature(base, "i1")],
                    "links": [next_link],
                }
            )
        if request.path == "/collections":
            link = {"rel": "next", "href": there + "collections", "method": "GET"}
            return web.json_response({"collections": [_collection("C1")], "links": [link]})
        if request.path == "/collections/C1/queryables":
            return web.json_response({"type": "object", "properties": {"a": {"type": "string"}}})
        if request.path.startswith("/data/"):
            return web.Response(body=b"x", status=206, headers={"Content-Range": "bytes 0-0/1"})
        if request.path == "/collections/MOVED/queryables":
            raise web.HTTPFound(there + "collections/MOVED/queryables")
        return web.json_response({"code": "404"}, status=404)


def _collection(cid: str) -> dict[str, Any]:
    return {
        "type": "Collection",
        "id": cid,
        "stac_version": "1.0.0",
        "description": cid,
        "license": "other",
        "extent": {
            "spatial": {"bbox": [[-180, -90, 180, 90]]},
            "temporal": {"interval": [[None, None]]},
        },
        "links": [],
    }


@pytest.fixture
def gated() -> Iterator[Gated]:
    with Elsewhere() as other, Gated(other) as catalogue:
        yield catalogue


def _with_gate(seen: list[tuple[str, dict[str, str]]]) -> list[str]:
    return [path for path, headers in seen if GATE[0].lower() in headers]


def _cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


HEADER = f"{GATE[0]}: {GATE[1]}"


# -- --header reaches the catalogue, never another host --------------------------------


def test_search_sends_header_to_catalogue_but_not_to_next_host(gated: Gated) -> None:
    result = _cli("search", "--catalog", gated.base, "--collection", "C1", "--json",
                  "--header", HEADER)  # fmt: skip
    assert result.exit_code == 0, result.output
    ids = [f["id"] for f in json.loads(result.stdout)["features"]]
    assert ids == ["i1", "i2"]
    assert gated.seen and len(_with_gate(gated.seen)) == len(gated.seen)
    assert gated.other.seen and _with_gate(gated.other.seen) == []


def test_search_header_all_hosts_reaches_next_host(gated: Gated) -> None:
    result = _cli("search", "--catalog", gated.base, "--collection", "C1", "--json",
                  "--header", HEADER, "--header-all-hosts")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert _with_gate(gated.other.seen) == ["/search"]


def test_header_all_hosts_never_sends_a_credential_header_elsewhere(gated: Gated) -> None:
    # As for data requests: Authorization and Proxy-Authorization stay with the catalogue.
    for command in (["search", "--collection", "C1"], ["queryables", "MOVED"]):
        gated.other.seen.clear()
        result = _cli(*command, "--catalog", gated.base, "--header", HEADER, "--header-all-hosts",
                      "--header", f"Authorization: Bearer {SECRET}",
                      "--header", f"Proxy-Authorization: Basic {SECRET}")  # fmt: skip
        assert result.exit_code == 0, result.output
        assert gated.other.seen and _with_gate(gated.other.seen)
        for _, headers in gated.other.seen:
            assert "authorization" not in headers and "proxy-authorization" not in headers
    assert any(h.get("authorization") == f"Bearer {SECRET}" for _, h in gated.seen)


def test_search_without_header_is_refused_in_one_line(gated: Gated) -> None:
    result = _cli("search", "--catalog", gated.base, "--collection", "C1")
    assert result.exit_code == 2
    assert "cannot open the catalogue" in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


def test_credential_header_never_printed_when_refused(gated: Gated) -> None:
    # The gateway echoes every header in its 401 body: the value is scrubbed all the same.
    for command in (
        ["search", "--collection", "C1"],
        ["collections"],
        ["queryables", "C1"],
    ):
        result = _cli(*command, "--catalog", gated.base, "--header", f"X-Api-Key: {SECRET}")
        assert result.exit_code == 2, result.output
        assert SECRET not in result.output
        assert any(h.get("x-api-key") == SECRET for _, h in gated.seen)


def test_collections_sends_header_to_catalogue_not_to_next_host(gated: Gated) -> None:
    result = _cli("collections", "--catalog", gated.base, "--json", "--header", HEADER)
    assert result.exit_code == 0, result.output
    assert [c["id"] for c in json.loads(result.stdout)] == ["C1", "C2"]
    assert len(_with_gate(gated.seen)) == len(gated.seen)
    assert gated.other.seen and _with_gate(gated.other.seen) == []


def test_collections_count_sends_header(gated: Gated) -> None:
    result = _cli("collections", "--catalog", gated.base, "--count", "--header", HEADER)
    assert result.exit_code == 0, result.output
    assert "/search" in _with_gate(gated.seen)


def test_queryables_sends_header_and_a_redirect_elsewhere_drops_it(gated: Gated) -> None:
    result = _cli("queryables", "C1", "--catalog", gated.base, "--json", "--header", HEADER)
    assert result.exit_code == 0, result.output
    assert "/collections/C1/queryables" in _with_gate(gated.seen)
    result = _cli("queryables", "MOVED", "--catalog", gated.base, "--json", "--header", HEADER,
                  "--header", f"X-Api-Key: {SECRET}")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert [path for path, _ in gated.other.seen] == ["/collections/MOVED/queryables"]
    leaked = gated.other.seen[0][1]
    assert "x-gateway" not in leaked and "x-api-key" not in leaked


def test_redirect_keeps_header_with_header_all_hosts(gated: Gated) -> None:
    result = _cli("queryables", "MOVED", "--catalog", gated.base, "--header", HEADER,
                  "--header-all-hosts")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert _with_gate(gated.other.seen) == ["/collections/MOVED/queryables"]


def test_bad_header_is_one_line_naming_the_flag(gated: Gated) -> None:
    for command in (["search", "--collection", "C1"], ["collections"], ["queryables", "C1"]):
        result = _cli(*command, "--catalog", gated.base, "--header", "no colon here")
        assert result.exit_code == 2
        assert "--header" in result.stderr and "Traceback" not in result.output
    assert gated.seen == []


def test_header_from_config_file_reaches_catalogue(gated: Gated, tmp_path: Path) -> None:
    config = tmp_path / "stacpull.toml"
    config.write_text(f'[download]\nheaders = ["{HEADER}"]\n', encoding="utf-8")
    result = _cli("collections", "--catalog", gated.base, "--config", str(config))
    assert result.exit_code == 0, result.output
    assert len(_with_gate(gated.seen)) == len(gated.seen)


def test_python_api_sends_headers_to_catalogue_only(gated: Gated) -> None:
    items = stacpull.search_items(catalog=gated.base, collections="C1", headers=[HEADER])
    assert [i["id"] for i in items] == ["i1", "i2"]
    assert len(_with_gate(gated.seen)) == len(gated.seen)
    assert gated.other.seen and _with_gate(gated.other.seen) == []
    found = stacpull.collections(catalog=gated.base, headers={GATE[0]: GATE[1]})
    assert [c["id"] for c in found] == ["C1", "C2"]
    schema = stacpull.queryables("C1", catalog=gated.base, headers=[HEADER])
    assert "a" in schema["properties"]
    assert _with_gate(gated.other.seen) == []


def test_python_api_header_all_hosts(gated: Gated) -> None:
    stacpull.search_items(
        catalog=gated.base, collections="C1", headers=[HEADER], header_all_hosts=True
    )
    assert _with_gate(gated.other.seen) == ["/search"]


def test_auth_check_probe_carries_header_to_trusted_host_only(gated: Gated) -> None:
    check = ["auth", "check", "--catalog", gated.base, "--token", "not-a-jwt", "--header", HEADER]
    result = _cli(*check, "--url", gated.base + "data/f.bin")
    assert result.exit_code == 0, result.output
    assert "/data/f.bin" in _with_gate(gated.seen)
    assert any(h.get("authorization") == "Bearer not-a-jwt" for _, h in gated.seen)
    # Another host (the token's TrustPolicy trusts the catalogue's host on any port).
    elsewhere = f"http://localhost:{gated.other.port}/data/f.bin"
    result = _cli(*check, "--url", elsewhere)
    assert result.exit_code == 0, result.output
    assert gated.other.seen and _with_gate(gated.other.seen) == []
    gated.other.seen.clear()
    result = _cli(*check, "--url", elsewhere, "--header-all-hosts",
                  "--header", f"Authorization: Bearer {SECRET}")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert _with_gate(gated.other.seen) == ["/data/f.bin"]
    assert "authorization" not in gated.other.seen[0][1]
    assert SECRET not in result.output


# -- -q/-v after every subcommand --------------------------------------------------------


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name)


def _cheap_args(tmp_path: Path, catalogue: str) -> dict[tuple[str, ...], list[str]]:
    """One quick invocation per command (a real one where it is cheap; else a bad input
    that fails the same way, or --help)."""
    empty = str(tmp_path / "empty")
    Path(empty).mkdir(exist_ok=True)
    return {
        ("search",): ["--catalog", catalogue, "--collection", "C1", "--header", HEADER],
        ("collections",): ["--catalog", catalogue, "--header", HEADER],
        ("queryables",): ["C1", "--catalog", catalogue, "--header", HEADER],
        ("download",): ["--catalog", catalogue, "--collection", "C1"],  # no --dest: exit 2
        ("mirror",): ["--catalog", catalogue, "--collection", "C1"],
        ("report",): [empty],
        ("status",): [empty],
        ("verify",): [empty],
        ("config", "show"): [],
        ("auth", "check"): ["--token", "not-a-jwt"],
        ("demo",): ["--help"],
        ("sim", "serve"): ["--help"],
    }


@pytest.mark.parametrize("flag", ["-v", "--verbose", "-q", "--quiet"])
def test_quiet_and_verbose_after_every_command(gated: Gated, tmp_path: Path, flag: str) -> None:
    table = _cheap_args(tmp_path, gated.base)
    assert set(_commands(main)) == set(table), "a new command: give it a cheap invocation here"
    for path, args in table.items():
        before = _cli(flag, *path, *args)
        after = _cli(*path, *args, flag)
        for result in (before, after):
            assert "No such option" not in result.output, (path, result.output)
            assert "Traceback" not in result.output, (path, result.output)
        assert before.exit_code == after.exit_code, (path, before.output, after.output)


def test_quiet_and_verbose_together_after_download_contradict() -> None:
    for args in (["-q", "download", "-v"], ["download", "-q", "-v"], ["-v", "-q", "download"]):
        result = _cli(
            *args, "--collection", "C1", "--dest", "x", "--catalog", "http://127.0.0.1:9/"
        )
        assert result.exit_code == 2
        assert "contradict" in result.stderr
