"""``-o items.parquet`` writes stac-geoparquet (issue 20): every item whole (geometry, bbox,
assets, links, properties), readable back with ``--from``; the notebook's flat table stays
available as CSV; clear lines without the ``parquet`` extra and for what it cannot hold."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from stacpull.errors import ConfigError
from stacpull.export import ItemWriter, saved_pages
from stacpull.sim import SimCatalog, SimServer, default_collections

from .conftest import L1A, L1C, TOKEN, cli, files_under

pytest.importorskip("rustac")

_TIMES = ("datetime", "start_datetime", "end_datetime", "created", "updated", "published")


def _cli(*args: str) -> tuple[int, str, str]:
    return cli(*args, token=TOKEN)


def _earthcare_item(frame: str, orbit: int) -> dict[str, Any]:
    """An item shaped like MAAP's EarthCARE ones (see shared/real-maap): a LineString, the
    zipper product with three roles, the HDF5 enclosure, one href under two keys, and
    catalogue URLs with query strings as metadata assets."""
    item_id = f"ECA_EXBA_MSI_COP_2A_20251020T132215Z_20251020T162940Z_0{orbit}{frame}"
    base = "http://127.0.0.1:9/data"
    public = f"{base}/public/earthcare/{item_id}.jpg"
    query = f"http://127.0.0.1:9/catalogue/collections/EarthCAREL2Validated_MAAP/items/{item_id}"
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": ["https://stac-extensions.github.io/file/v2.1.0/schema.json"],
        "id": item_id,
        "collection": "EarthCAREL2Validated_MAAP",
        "geometry": {
            "type": "LineString",
            "coordinates": [[2.27, -22.69], [7.4, 0.0], [12.54, 22.56]],
        },
        "bbox": [2.265359, -22.686682, 12.536523, 22.561153],
        "properties": {
            "datetime": "2025-10-20T13:22:15.000Z",
            "start_datetime": "2025-10-20T13:22:15.000Z",
            "end_datetime": "2025-10-20T13:33:50.000Z",
            "platform": "EarthCARE",
            "instruments": ["MSI"],
            "product:type": "MSI_COP_2A",
            "sat:absolute_orbit": orbit,
            "version": "BA",
            "processing:software": {"M-CLD": "11.30"},
            "auth:schemes": {"oidc": {"type": "openIdConnect", "openIdConnectUrl": "https://x/"}},
        },
        "links": [
            {"rel": "self", "href": query, "type": "application/geo+json"},
            {"rel": "root", "href": "http://127.0.0.1:9/catalogue/", "type": "application/json"},
        ],
        "assets": {
            "product": {
                "href": f"{base}/zipper/earthcare/{item_id}",
                "type": "application/zip",
                "roles": ["data", "metadata", "archive"],
            },
            "enclosure_h5": {
                "href": f"{base}/earthcare/{item_id}/{item_id}.h5",
                "type": "application/x-hdf5",
                "roles": ["data"],
                "file:local_path": f"{item_id}/{item_id}.h5",
                "file:size": 12_345_678 + orbit,
            },
            "enclosure_hdr": {
                "href": f"{base}/earthcare/{item_id}/{item_id}.HDR",
                "type": "application/xml",
                "roles": ["metadata"],
            },
            "quicklook_jpeg": {"href": public, "type": "image/jpeg", "roles": ["overview"]},
            "thumbnail": {"href": public, "type": "image/jpeg", "roles": ["thumbnail"]},
            "metadata_gml": {
                "href": f"{query}?httpAccept=application/gml%2Bxml",
                "roles": ["metadata"],
            },
            "metadata_iso": {
                "href": f"{query}?httpAccept=application/vnd.iso.19139%2Bxml&mode=owc",
                "type": "application/vnd.iso.19139+xml",
                "roles": ["metadata"],
            },
        },
    }


def _same_item(read: dict[str, Any], item: dict[str, Any]) -> None:
    """``read`` is ``item`` again: the fields a download and a map need, exactly; the
    properties with their times compared as instants (Parquet stores timestamps)."""
    for key in ("id", "collection", "geometry", "bbox", "assets", "links"):
        assert read[key] == item[key], key
    props, expected = read["properties"], item["properties"]
    assert set(props) == set(expected)
    for key, value in expected.items():
        if key in _TIMES and isinstance(value, str):
            got = datetime.fromisoformat(props[key].replace("Z", "+00:00"))
            assert got == datetime.fromisoformat(value.replace("Z", "+00:00")), key
        else:
            assert props[key] == value, key


def _write(path: Path, items: list[dict[str, Any]]) -> None:
    with ItemWriter(path, catalog="http://127.0.0.1:9/catalogue/") as writer:
        for item in items:
            writer.write(item)


def test_items_unlike_each_other_round_trip_through_stac_geoparquet(tmp_path: Path) -> None:
    """Items whose assets and properties differ (one lacks the zip and a property) come
    back as written: nothing another item had is added to them."""
    first, second = _earthcare_item("E", 7929), _earthcare_item("F", 7930)
    del second["assets"]["product"], second["properties"]["processing:software"]
    second["geometry"] = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}
    saved = tmp_path / "items.parquet"
    _write(saved, [first, second])
    assert saved.read_bytes().startswith(b"PAR1") and not (tmp_path / "items.parquet.part").exists()
    back = saved_pages(saved)
    assert back.count == 2 and back.catalog == "http://127.0.0.1:9/catalogue/"

    async def features() -> list[dict[str, Any]]:
        return [f async for page, _ in back.pages() for f in page]

    import anyio

    read = anyio.run(features)
    _same_item(read[0], first)
    _same_item(read[1], second)
    # and from standard input, as bytes
    piped = saved_pages("-", data=saved.read_bytes())
    assert piped.count == 2


def test_the_file_is_geoparquet_another_reader_understands(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    saved = tmp_path / "items.parquet"
    _write(saved, [_earthcare_item("E", 7929)])
    geo = json.loads(pq.read_metadata(saved).metadata[b"geo"])  # the file's key-value metadata
    table = pq.read_table(saved)
    assert geo["primary_column"] == "geometry" and geo["columns"]["geometry"]["encoding"] == "WKB"
    assert {"id", "geometry", "bbox", "assets", "links", "collection", "product:type"} <= set(
        table.column_names
    )  # the properties are top-level columns, as stac-geoparquet lays them out
    assert table.column("assets").to_pylist()[0]["enclosure_h5"]["file:size"] == 12_345_678 + 7929


@pytest.fixture
def small_sim() -> Iterator[SimServer]:
    """The sim's collections with small products: this file downloads every asset twice."""
    with SimServer(SimCatalog(default_collections(count=5, product_size=20_000))) as server:
        yield server


def test_search_parquet_reads_back_as_the_geojson_does(
    small_sim: SimServer, tmp_path: Path
) -> None:
    sim = small_sim
    query = ("search", "--catalog", sim.catalog_url, "--collection", f"{L1A},{L1C}")
    code, _, err = _cli(*query, "-o", str(tmp_path / "items.geojson"), "--show", "0")
    assert code == 0, err
    code, _, err = _cli(*query, "-o", str(tmp_path / "items.parquet"), "--show", "0")
    assert code == 0, err
    assert "wrote 10 item(s)" in err and "(parquet)" in err
    items = json.loads((tmp_path / "items.geojson").read_text())["features"]
    read = saved_pages(tmp_path / "items.parquet")
    assert read.count == 10 and str(read.catalog).startswith(sim.catalog_url.rstrip("/"))

    async def features() -> list[dict[str, Any]]:
        return [f async for page, _ in read.pages() for f in page]

    import anyio

    for got, item in zip(anyio.run(features), items, strict=True):
        _same_item(got, item)
    # --from the Parquet downloads every file --from the GeoJSON plans: afterwards a dry
    # run of the GeoJSON into the same DEST finds each of them on disk
    dest = tmp_path / "data"
    code, _, err = _cli("download", "--from", str(tmp_path / "items.parquet"), "--dest", str(dest))
    assert code == 0, err
    assert len(files_under(dest)) == 30
    code, out, err = _cli(
        "download", "--from", str(tmp_path / "items.geojson"), "--dest", str(dest),
        "--dry-run", "--json",
    )  # fmt: skip
    assert code == 0, err
    plan = json.loads(out)
    assert plan["files"] == 30 and plan["on_disk"]["files"] == 30, plan


def test_the_notebook_table_stays_available_as_csv(sim: SimServer, tmp_path: Path) -> None:
    import csv

    query = ("search", "--catalog", sim.catalog_url, "--collection", L1C)
    code, _, err = _cli(*query, "-o", str(tmp_path / "table.txt"), "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader((tmp_path / "table.txt").read_text().splitlines()))
    assert len(rows) == 5 and "download_url" in rows[0] and "kmz_name" in rows[0]
    code, _, err = _cli(*query, "-o", str(tmp_path / "items.out"), "--format", "parquet")
    assert code == 0, err
    assert saved_pages(tmp_path / "items.out").count == 5
    code, out, _ = _cli("search", "--help")
    flat = " ".join(out.split())
    assert "stac-geoparquet" in flat and "csv (the notebook's flat table)" in flat


def test_without_the_parquet_extra_each_side_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved = tmp_path / "items.parquet"
    _write(saved, [_earthcare_item("E", 7929)])
    monkeypatch.setitem(sys.modules, "rustac", None)
    with pytest.raises(ConfigError) as written:
        ItemWriter(tmp_path / "other.parquet")
    assert str(written.value) == (
        f"-o {tmp_path / 'other.parquet'}: stac-geoparquet needs rustac: "
        "pip install 'stacpull[parquet]' (or save .geojson, or .csv for the notebook's table)"
    )
    with pytest.raises(ConfigError) as read:
        saved_pages(saved)
    assert str(read.value) == (
        f"--from: {saved} is Parquet, which needs rustac: pip install 'stacpull[parquet]'"
    )
    assert not (tmp_path / "other.parquet").exists()


def test_what_stac_geoparquet_cannot_hold_is_refused_by_name(tmp_path: Path) -> None:
    """No geometry, no time, a field that is a number in one item and text in another:
    the file is not written (no guess fills it: the library would stamp the time of the
    write on an item without one), and the line names the item and the way out."""
    saved = tmp_path / "items.parquet"
    cases: list[tuple[dict[str, Any], str]] = []
    item = _earthcare_item("E", 7929)
    item["geometry"] = None
    cases.append((item, f"item {item['id']} has no geometry"))
    item = _earthcare_item("E", 7929)
    item["properties"] = {"title": "no time"}
    cases.append((item, f"item {item['id']} has no datetime"))
    for bad, says in cases:
        with pytest.raises(ConfigError) as refused:
            _write(saved, [_earthcare_item("F", 1), bad])
        assert says in str(refused.value) and ".geojson" in str(refused.value)
        assert not saved.exists() and not (tmp_path / "items.parquet.part").exists()
    mixed = _earthcare_item("F", 2)
    mixed["properties"]["version"] = 3
    huge = _earthcare_item("F", 3)  # a size no 64-bit column holds
    huge["assets"]["enclosure_h5"]["file:size"] = 10**30
    for bad, says in ((mixed, "version"), (huge, "out of range")):
        with pytest.raises(ConfigError) as refused:
            _write(saved, [_earthcare_item("E", 1), bad])
        message = str(refused.value)
        assert "not written as stac-geoparquet" in message and says in message
        assert "\n" not in message and not saved.exists()


def test_an_empty_search_to_parquet_says_why_no_file(sim: SimServer, tmp_path: Path) -> None:
    out = tmp_path / "items.parquet"
    code, _, err = _cli(
        "search", "--catalog", sim.catalog_url, "--collection", L1A, "--ids", "nothing-like-it",
        "-o", str(out),
    )  # fmt: skip
    assert code == 2, err
    assert "no item to write" in err and ".geojson" in err and "Traceback" not in err
    assert not out.exists() and not (tmp_path / "items.parquet.part").exists()


def test_a_flat_parquet_table_is_refused_in_one_line(tmp_path: Path) -> None:
    """The notebook's columns in Parquet (what ``-o items.parquet`` wrote before) cannot
    drive a download: refused with what to use instead."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    flat = tmp_path / "flat.parquet"
    pq.write_table(pa.table({"id": ["a"], "download_url": ["http://h/a.zip"]}), flat)
    with pytest.raises(ConfigError) as refused:
        saved_pages(flat)
    message = str(refused.value)
    assert "not stac-geoparquet" in message and "the metadata a download needs" in message
    assert "\n" not in message


def test_the_real_items_round_trip(real_maap: Path, tmp_path: Path) -> None:
    """The real-shaped ItemCollection (EarthCARE, TropForest, BIOMASS). Its items were
    printed without geometry: each is given the LineString of its bbox, as MAAP serves."""
    items = json.loads((real_maap / "itemcollection-real-items-for-dry-run.geojson").read_text())
    features = items["features"]
    for item in features:
        w, s, e, n = item.get("bbox") or (0.0, 0.0, 1.0, 1.0)
        item["geometry"] = item.get("geometry") or {
            "type": "LineString",
            "coordinates": [[w, s], [e, n]],
        }
        item.setdefault("links", [])
        if not any(k in item["properties"] for k in ("datetime", "start_datetime")):
            item["properties"]["datetime"] = "2009-01-06T04:17:47Z"
    saved = tmp_path / "real.parquet"
    _write(saved, features)

    async def read() -> list[dict[str, Any]]:
        return [f async for page, _ in saved_pages(saved).pages() for f in page]

    import anyio

    back = anyio.run(read)
    assert [f["id"] for f in back] == [f["id"] for f in features]
    for got, item in zip(back, features, strict=True):
        item.pop("stac_version")  # written as STAC 1.1.0, the version rustac writes
        got.pop("stac_version")
        for key in ("geometry", "assets", "links"):
            assert got[key] == item[key], (item["id"], key)
        if "bbox" in item:
            assert got["bbox"] == item["bbox"]
