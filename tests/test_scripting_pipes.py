"""Items in through pipes (``--from -``, items one per line, stac-geoparquet), the catalogue
a saved file names (and whom the token may reach), and honest empty runs (issue 17)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from click.testing import CliRunner

from stacpull.cli import main
from stacpull.sim import SimServer

from .conftest import L1A, TOKEN, files_under
from .hostile import ThreadedApp

_ENV = {"STACPULL_TOKEN": TOKEN, "STACPULL_OFFLINE_TOKEN": "", "STACPULL_TOKEN_FILE": ""}


def _run(*args: str, stdin: str | bytes | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), input=stdin, env=_ENV)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def _items(sim: SimServer, count: int = 2) -> list[dict[str, Any]]:
    return [sim.catalog.item(L1A, i) for i in range(count)]


def _stac_client_output(items: list[dict[str, Any]]) -> str:
    """What ``stac-client search`` prints: a FeatureCollection with no catalogue field."""
    return json.dumps({"type": "FeatureCollection", "features": items})


def _download(*args: str, stdin: str | bytes | None = None) -> tuple[int, str, str]:
    return _run("download", "--dashboard", "none", *args, stdin=stdin)


class _Recorder(ThreadedApp):
    """Another host (``localhost``, not the sim's 127.0.0.1): answers every path with a few
    bytes and records the Authorization header each request carried."""

    def __init__(self) -> None:
        super().__init__()
        self.auth: list[str | None] = []

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.auth.append(request.headers.get("Authorization"))
        return web.Response(body=b"other host", content_type="application/octet-stream")

    @property
    def base(self) -> str:
        return f"http://localhost:{self.port}/"


@pytest.fixture
def other() -> Any:
    with _Recorder() as server:
        yield server


def _pointing_at(item: dict[str, Any], base: str, *, root: str | None = None) -> dict[str, Any]:
    """``item`` with one asset on ``base`` (and its root link replaced by ``root``)."""
    item = json.loads(json.dumps(item))
    item["assets"] = {"data": {"href": f"{base}data/{item['id']}.bin", "roles": ["data"]}}
    if root is not None:
        item["links"] = [
            {"rel": "root", "href": root} if link["rel"] == "root" else link
            for link in item["links"]
        ]
    return item


# --- 1. items in through standard input -------------------------------------------------


@pytest.mark.parametrize("shape", ["collection", "ndjson", "single-item", "collections-ndjson"])
def test_download_from_stdin_reads_what_stac_client_prints(
    sim: SimServer, tmp_path: Path, shape: str
) -> None:
    items = _items(sim, 2)
    text = {
        "collection": _stac_client_output(items),
        "ndjson": "\n".join(json.dumps(i) for i in items) + "\n",
        "single-item": "\ufeff" + json.dumps(items[0], indent=2),  # a BOM, as some tools write
        "collections-ndjson": "\n".join(_stac_client_output([i]) for i in items),
    }[shape]
    dest = tmp_path / "d"
    code, out, err = _download("--from", "-", "--dest", str(dest), stdin=text)
    assert code == 0, out + err
    assert len(files_under(dest)) == (3 if shape == "single-item" else 6)
    # no --catalog: the items' own root link named the catalogue, whose host got the token
    assert sim.requests and all(r["auth"] for r in sim.requests)


def test_mirror_and_dry_run_read_stdin_too(sim: SimServer, tmp_path: Path) -> None:
    text = _stac_client_output(_items(sim, 2))
    dest = tmp_path / "d"
    code, out, err = _run("mirror", "--from", "-", "--dest", str(dest), "--dry-run", stdin=text)
    assert code == 0, out + err
    assert "items:        2" in err and not dest.exists()  # piped: the notes are on stderr
    code, out, err = _run(
        "mirror", "--from", "-", "--dest", str(dest), "--dashboard", "none", stdin=text
    )
    assert code == 0, out + err
    assert len(files_under(dest)) == 6


def test_search_piped_into_download_through_a_real_pipe(sim: SimServer, tmp_path: Path) -> None:
    dest = tmp_path / "d"
    env = {**os.environ, **_ENV}
    search = subprocess.Popen(
        [sys.executable, "-m", "stacpull", "search", "--catalog", sim.catalog_url,
         "--collection", L1A, "--max-items", "2", "-o", "-"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    download = subprocess.run(
        [sys.executable, "-m", "stacpull", "download", "--from", "-", "--dest", str(dest),
         "--dashboard", "none"],
        stdin=search.stdout, capture_output=True, env=env, timeout=60,
    )  # fmt: skip
    assert search.stdout is not None
    search.stdout.close()
    assert search.wait(30) == 0
    assert download.returncode == 0, download.stderr.decode()
    assert len(files_under(dest)) == 6
    assert b"Traceback" not in download.stderr


def test_a_terminal_or_garbage_on_stdin_is_one_line_exit_2(tmp_path: Path) -> None:
    for text in ("not json at all\nnor this\n", '{"type": "Feature"}\n{oops\n', ""):
        code, _, err = _download("--from", "-", "--dest", str(tmp_path / "d"), stdin=text)
        assert code == 2, err
        assert err.startswith("stacpull: --from") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "d").exists()


# --- 2. the catalogue a file names, and whom the token may reach ------------------------


def test_items_agreeing_on_their_root_send_the_token_there_only(
    sim: SimServer, other: _Recorder, tmp_path: Path
) -> None:
    """All items' root is the sim: it gets the token; assets on another host get none."""
    items = [*_items(sim, 2), _pointing_at(sim.catalog.item(L1A, 2), other.base)]
    dest = tmp_path / "d"
    code, out, err = _download(
        "--from", "-", "--assets", "all", "--dest", str(dest), stdin=_stac_client_output(items)
    )
    assert code == 0, out + err
    assert other.auth and all(a is None for a in other.auth)
    assert sim.requests and all(r["auth"] for r in sim.requests)


@pytest.mark.parametrize("where", ["one-item", "file-root"])
def test_a_file_naming_a_second_catalogue_trusts_neither(
    sim: SimServer, other: _Recorder, tmp_path: Path, where: str
) -> None:
    """A hostile file: one item (or the file's own root link) names another host as the
    catalogue, with assets there. Nobody may get the token on its word: a warning, and
    the token goes to neither host."""
    items = _items(sim, 2)
    doc: dict[str, Any]
    if where == "one-item":
        items.append(_pointing_at(sim.catalog.item(L1A, 2), other.base, root=other.base))
        doc = {"type": "FeatureCollection", "features": items}
    else:
        items.append(_pointing_at(sim.catalog.item(L1A, 2), other.base))
        doc = {"type": "FeatureCollection", "links": [{"rel": "root", "href": other.base}]}
        doc["features"] = items
    dest = tmp_path / "d"
    code, _, err = _download(
        "--from", "-", "--assets", "all", "--dest", str(dest), stdin=json.dumps(doc)
    )
    assert "catalogues" in err and "none of them is trusted" in err, err
    assert other.auth and all(a is None for a in other.auth)
    assert all(not r["auth"] for r in sim.requests)
    assert code != 0  # the sim's own data needs the token it was refused


def test_the_root_link_is_believed_for_its_host_only(
    sim: SimServer, other: _Recorder, tmp_path: Path
) -> None:
    """Items agree on a root whose URL carries a password and a query: stacpull trusts the
    host, never sends what the link carries, and --catalog still wins over the file."""
    root = sim.base_url.replace("//", "//user:pw@") + "/catalogue/?token=x"
    items = [_pointing_at(i, sim.base_url + "/", root=root) for i in _items(sim, 1)]
    items[0]["assets"] = sim.catalog.item(L1A, 0)["assets"]
    code, out, err = _download(
        "--from", "-", "--dest", str(tmp_path / "d"), stdin=_stac_client_output(items)
    )
    assert code == 0, out + err
    assert "pw" not in err
    code, out, err = _download(
        "--from", "-", "--catalog", other.base, "--dest", str(tmp_path / "e"),
        stdin=_stac_client_output(_items(sim, 1)),
    )  # fmt: skip
    assert code != 0 and all(not r["auth"] for r in list(sim.requests)[3:])


# --- 3. stac-geoparquet in, CSV and the notebook's Parquet refused ----------------------


def _write_geoparquet(items: list[dict[str, Any]], path: Path) -> None:
    """A stac-geoparquet file as the spec lays it out, written by another tool (pyarrow,
    not stacpull's rustac): one row per item, the item's fields as columns (assets a
    struct, links a list of structs, bbox a struct, geometry WKB named by the GeoParquet
    ``geo`` metadata), the properties as top-level columns, datetimes as timestamps."""
    import struct
    from datetime import datetime

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for item in items:
        props = dict(item["properties"])
        for key in ("datetime", "updated", "start_datetime", "end_datetime"):
            if isinstance(props.get(key), str):
                props[key] = datetime.fromisoformat(props[key].replace("Z", "+00:00"))
        w, s, e, n = item["bbox"]
        ring = [(w, s), (e, s), (e, n), (w, n), (w, s)]
        wkb = struct.pack("<BIII", 1, 3, 1, len(ring)) + b"".join(
            struct.pack("<dd", *point) for point in ring
        )  # a little-endian WKB polygon of one ring
        rows.append(
            {
                "type": "Feature",
                "stac_version": item["stac_version"],
                "stac_extensions": item["stac_extensions"],
                "id": item["id"],
                "geometry": wkb,
                "bbox": {"xmin": w, "ymin": s, "xmax": e, "ymax": n},
                "links": item["links"],
                "assets": item["assets"],
                "collection": item["collection"],
                **{k: v for k, v in props.items() if not isinstance(v, (dict, list))},
            }
        )
    geo = {"version": "1.1.0", "primary_column": "geometry", "columns": {"geometry": {}}}
    geo["columns"]["geometry"] = {"encoding": "WKB", "geometry_types": ["Polygon"]}
    table = pa.Table.from_pylist(rows)
    pq.write_table(table.replace_schema_metadata({"geo": json.dumps(geo)}), path)


def test_download_from_stac_geoparquet(sim: SimServer, tmp_path: Path) -> None:
    saved = tmp_path / "items.parquet"
    items = _items(sim, 2)
    # assets differ between items: the struct column holds nulls for the absent ones
    del items[1]["assets"][sorted(items[1]["assets"])[0]]
    _write_geoparquet(items, saved)
    dest = tmp_path / "d"
    code, out, err = _download("--from", str(saved), "--assets", "all", "--dest", str(dest))
    assert code == 0, out + err
    expected = sum(len(i["assets"]) for i in items)
    assert len(files_under(dest)) == expected
    # and from standard input too
    code, out, err = _download(
        "--from", "-", "--dest", str(tmp_path / "e"), stdin=saved.read_bytes()
    )
    assert code == 0, out + err


def test_csv_and_a_flat_parquet_table_are_refused_in_one_line(
    sim: SimServer, tmp_path: Path
) -> None:
    """The notebook's columns, as CSV or (as stacpull wrote .parquet before it wrote
    stac-geoparquet) as a flat Parquet table, cannot drive a download."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from stacpull.export import item_row

    search = ("search", "--catalog", sim.catalog_url, "--collection", L1A, "--max-items", "2")
    assert _run(*search, "-o", str(tmp_path / "items.csv"))[0] == 0
    rows = [item_row(item) for item in _items(sim, 2)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "items.parquet")
    for name in ("items.csv", "items.parquet"):
        code, _, err = _download("--from", str(tmp_path / name), "--dest", str(tmp_path / "d"))
        assert code == 2, err
        assert len(err.strip().splitlines()) == 1 and "the metadata a download needs" in err
    csv_text = (tmp_path / "items.csv").read_text()
    code, _, err = _download("--from", "-", "--dest", str(tmp_path / "d"), stdin=csv_text)
    assert code == 2 and "is CSV" in err
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 this is not parquet")
    code, _, err = _download("--from", str(tmp_path / "broken.parquet"), "--dest", "d")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Parquet" in err
    assert not (tmp_path / "d").exists()


def test_parquet_without_rustac_is_one_clear_line(
    sim: SimServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved = tmp_path / "items.parquet"
    _write_geoparquet(_items(sim, 1), saved)
    monkeypatch.setitem(sys.modules, "rustac", None)
    code, _, err = _download("--from", str(saved), "--dest", str(tmp_path / "d"))
    assert code == 2
    assert err.strip() == (
        f"stacpull: --from: {saved} is Parquet, which needs rustac: pip install 'stacpull[parquet]'"
    )


# --- 4. query flags with --from are named as ignored ------------------------------------


@pytest.mark.parametrize("command", ["download", "mirror"])
def test_query_flags_with_from_are_warned_ignored(
    sim: SimServer, tmp_path: Path, command: str
) -> None:
    text = _stac_client_output(_items(sim, 1))
    code, out, err = _run(
        command, "--from", "-", "--dest", str(tmp_path / "d"), "--dry-run",
        "--collection", "Other", "--filter", "a='b'", "--bbox", "0,0,1,1",
        "--datetime", "2025-01-01T00:00:00Z/..", "--ids", "x", "--max-items", "3",
        stdin=text,
    )  # fmt: skip
    assert code == 0, out + err
    line = next(x for x in err.splitlines() if "ignored" in x)
    for flag in ("--collection", "--filter", "--bbox", "--datetime", "--ids", "--max-items"):
        assert flag in line
    code, out, err = _run(command, "--from", "-", "--dest", "d", "--dry-run", stdin=text)
    assert "ignored" not in err


# --- 5. nothing matched, nothing selected: say so, make no DEST -------------------------


@pytest.mark.parametrize("command", ["download", "mirror"])
@pytest.mark.parametrize("dry", [False, True])
def test_no_match_says_so_and_makes_no_dest(
    sim: SimServer, tmp_path: Path, command: str, dry: bool
) -> None:
    dest = tmp_path / "d"
    args = [command, "--catalog", sim.catalog_url, "--collection", L1A, "--ids", "NOPE"]
    args += ["--dest", str(dest), "--dashboard", "none"] + (["--dry-run"] if dry else [])
    code, out, err = _run(*args)
    assert code == 0, out + err
    line = next(x for x in err.splitlines() if "0 items matched" in x)
    assert L1A in line and "NOPE" in line and "not created" in line
    assert not dest.exists()
    # an empty saved search, too
    code, out, err = _run(
        command, "--from", "-", "--dest", str(dest), stdin=_stac_client_output([])
    )
    assert code == 0 and "0 items in standard input" in err and not dest.exists()


@pytest.mark.parametrize("command", ["download", "mirror"])
@pytest.mark.parametrize("dry", [False, True])
def test_a_selector_matching_no_asset_exits_2_naming_the_keys(
    sim: SimServer, tmp_path: Path, command: str, dry: bool
) -> None:
    dest = tmp_path / "d"
    args = [command, "--catalog", sim.catalog_url, "--collection", L1A, "--assets", "nosuch*"]
    args += ["--dest", str(dest), "--dashboard", "none"] + (["--dry-run"] if dry else [])
    code, out, err = _run(*args)
    assert code == 2, out + err
    assert len(err.strip().splitlines()) == 1
    assert "--assets nosuch* selects no asset of the 5 item(s)" in err
    for key in sim.catalog.item(L1A, 0)["assets"]:
        assert key in err
    assert not dest.exists()


def test_a_mirror_matching_nothing_keeps_its_dest_as_it_was(sim: SimServer, tmp_path: Path) -> None:
    """DEST of another query: no file is judged gone by a query that lists nothing (an
    existing mirror whose own catalogue says 0 match is tested in test_hostile_attack3)."""
    dest = tmp_path / "d"
    base = ("mirror", "--catalog", sim.catalog_url, "--dest", str(dest), "--dashboard", "none")
    code, out, err = _run(*base, "--collection", L1A)
    assert code == 0, out + err
    before = files_under(dest)
    code, out, err = _run(*base, "--collection", L1A, "--ids", "NOPE", "--prune")
    assert code == 0, out + err
    assert "0 items matched" in err and "not created" not in err
    assert files_under(dest) == before


def test_odd_root_links_never_vote_and_many_are_named_briefly(
    sim: SimServer, tmp_path: Path
) -> None:
    """Roots that are no http(s) URL of a plain host (an escape sequence, javascript:, a
    relative path) name no catalogue; a file naming many is summed up in one short line."""
    odd = ["http://\x1b[31mevil/", "javascript:alert(1)", "../up", "file:///etc/passwd"]
    items = _items(sim, len(odd))
    for item, root in zip(items, odd, strict=True):
        item["links"] = [{"rel": "root", "href": root}]
    items[0]["links"].append({"rel": "self", "href": f"{sim.base_url}/catalogue/x"})
    code, out, err = _download(
        "--from", "-", "--dest", str(tmp_path / "d"), stdin=_stac_client_output(items)
    )
    assert code == 0, out + err
    assert "\x1b" not in err and "warning" not in err
    many = [_pointing_at(i, sim.base_url + "/", root=f"http://h{n}.test/") for n, i in
            enumerate(_items(sim, 5) + _items(sim, 4))]  # fmt: skip
    code, _, err = _download(
        "--from", "-", "--dest", str(tmp_path / "e"), "--dry-run", stdin=_stac_client_output(many)
    )
    line = next(x for x in err.splitlines() if "catalogues" in x)
    assert "names 9 catalogues" in line and "and 4 more" in line and "h8.test" not in line
