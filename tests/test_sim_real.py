"""The simulator's catalogue content is shaped like the real MAAP's (issue 20).

Two kinds of test: those comparing sim items with what public sources record of the real
catalogue (``shared/real-maap``, through the ``real_maap`` fixture: skipped where it is
absent, as in CI), and fixture-free ones pinning the same shapes on the sim alone: EarthCARE
items (LineString, 2026 property names, ``enclosure_h5``, one ``/public/`` href under two
keys, ``metadata_*`` catalogue records the sim serves), BIOMASS's 2026 keys, ``auth:schemes``
and the platforms as MAAP spells them.
"""

from __future__ import annotations

import io
import json
import re
import xml.etree.ElementTree as ET
import zipfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from stacpull.destpaths import companion_png_name
from stacpull.sim import CollectionSpec, SimCatalog, SimServer, default_collections

from .conftest import FLEX, L1A, L1C, TOKEN, http_get, http_json, pull

EC_L1 = "EarthCAREL1Validated_MAAP"
EC_L2 = "EarthCAREL2Validated_MAAP"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
#: The queryables renamed on 2026-02-13 (shared/real-maap/README.md).
RENAMED = {
    "productType": "product:type",
    "orbitNumber": "sat:absolute_orbit",
    "productVersion": "version",
    "orbitDirection": "sat:orbit_state",
    "instrument": "instruments",
}
CATALOG = SimCatalog(default_collections(count=16, product_size=20_000))


def _template(href: str, item_id: str) -> str:
    """An href with its host gone, its item id as ``{id}`` and its day as ``{date}``: the
    shape two catalogues' hrefs share when they name their files alike."""
    parts = urlsplit(href)
    path = re.sub(r"/\d{4}/\d{2}/\d{2}/", "/{date}/", parts.path.replace(item_id, "{id}"))
    return path + (f"?{parts.query}" if parts.query else "")


def _real_earthcare(real_maap: Path) -> dict[str, Any]:
    (path,) = real_maap.glob("earthcare-item-*.reconstructed.json")
    item: dict[str, Any] = json.loads(path.read_text())
    return item


def _sim_like(item: dict[str, Any]) -> dict[str, Any]:
    """The sim's EarthCARE L2 item of the same product type as ``item``."""
    ptype = item["properties"]["product:type"]
    return next(
        it for _, it in CATALOG.iter_items(EC_L2) if it["properties"]["product:type"] == ptype
    )


# -- against the recorded real catalogue --------------------------------------------------


def test_earthcare_item_has_the_real_keys_roles_media_types_and_property_names(
    real_maap: Path,
) -> None:
    real = _real_earthcare(real_maap)
    sim = _sim_like(real)
    assert list(sim["assets"]) == list(real["assets"])  # the same keys, in the same order
    for key, asset in real["assets"].items():
        assert sim["assets"][key]["roles"] == asset["roles"], key
        assert sim["assets"][key]["type"] == asset["type"], key
    assert set(sim["properties"]) == set(real["properties"])
    for name, value in real["properties"].items():
        assert type(sim["properties"][name]) is type(value), name
    same = ["platform", "constellation", "version", "processing:facility", "processing:level"]
    same += ["product:type", "product:acquisition_type", "eofeos:mission_phase"]
    assert {k: sim["properties"][k] for k in same} == {k: real["properties"][k] for k in same}
    assert set(sim["properties"]["auth:schemes"]) == set(real["properties"]["auth:schemes"])
    assert sim["collection"] == real["collection"] and sim["stac_version"] == "1.1.0"


def test_earthcare_hrefs_have_the_real_paths_and_queries(real_maap: Path) -> None:
    """Every href, host aside, is the real one with the sim's id and day: the zipper's
    product, the h5 and HDR two folders deep, the one ``/public/`` JPEG, and the catalogue
    records with their query strings."""
    real = _real_earthcare(real_maap)
    sim = _sim_like(real)
    for key, asset in real["assets"].items():
        assert _template(sim["assets"][key]["href"], sim["id"]) == _template(
            asset["href"], real["id"]
        ), key
    assert _template(sim["links"][0]["href"], sim["id"]) == _template(
        real["links"][0]["href"], real["id"]
    )


def test_earthcare_ids_carry_orbit_and_frame_as_the_real_ones_do(real_maap: Path) -> None:
    """``ECA_EXBA_<type>_<start>_<made>_<orbit><frame>``: the orbit is sat:absolute_orbit,
    and grid:code names orbit and frame, in the five recorded items and in the sim's."""
    recorded = json.loads(next(real_maap.glob("earthcare-5-items-*.json")).read_text())
    shape = re.compile(r"ECA_EXBA_[A-Z0-9_]{10}_\d{8}T\d{6}Z_\d{8}T\d{6}Z_(\d{5})([A-H])")
    sims = [it for _, it in CATALOG.iter_items(EC_L2)]
    for item in recorded + sims:
        match = shape.fullmatch(item["id"])
        assert match, item["id"]
        props = item["properties"]
        assert props["sat:absolute_orbit"] == int(match[1])
        assert props["grid:code"] == f"WRS-{int(match[1])}-{match[2]}"
        assert props["title"] == item["id"]
    keys = {tuple(item["asset_keys"]) for item in recorded}
    assert keys == {tuple(it["assets"]) for it in sims}
    assert {frozenset(item["properties"]) for item in recorded + sims} == {
        frozenset(recorded[0]["properties"])
    }


def test_earthcare_queryables_use_the_2026_names_for_what_the_real_ones_list(
    real_maap: Path,
) -> None:
    """The real documents (2026-02, old names) list productType, orbitNumber…; the sim
    answers with the new names only, and its values are among the real ones."""
    for cid in (EC_L1, EC_L2):
        real = json.loads(
            (real_maap / "queryables-earthcare-2026-02" / f"{cid}_queryables.json").read_text()
        )["properties"]
        mine = CATALOG.queryables(cid)
        for old, new in RENAMED.items():
            assert old in real and old not in mine and new in mine, (cid, old)
        assert set(mine["product:type"]["enum"]) <= set(real["productType"]["enum"])
        assert set(mine["version"]["enum"]) <= set(real["productVersion"]["enum"])
        assert set(mine["instruments"]["enum"]) <= set(real["instrument"]["enum"])
        assert mine["platform"]["enum"] == real["platform"]["enum"] == ["EarthCARE"]
        assert mine["sat:absolute_orbit"]["type"] == real["orbitNumber"]["type"] == "integer"
        directions = {d.lower() for d in real["orbitDirection"]["enum"]}
        assert set(mine["sat:orbit_state"]["enum"]) == directions


def test_biomass_and_maap_items_share_the_real_shapes(real_maap: Path) -> None:
    """The real BIOMASS L1a product (zipper href, ``<id>.ZIP``) and TropForest's
    ``auth:schemes`` (OpenID Connect), against the sim's BIOMASS items."""
    features = json.loads(
        (real_maap / "itemcollection-real-items-for-dry-run.geojson").read_text()
    )["features"]
    biomass = next(f for f in features if f["collection"] == L1A)
    sim = CATALOG.item(L1A, 0)
    real_product, sim_product = biomass["assets"]["product"], sim["assets"]["product"]
    assert _template(sim_product["href"], sim["id"]) == _template(
        real_product["href"], biomass["id"]
    )
    assert real_product["file:local_path"] == f"{biomass['id']}.ZIP"
    assert sim_product["file:local_path"] == f"{sim['id']}.ZIP"
    assert sim["id"][:15] == biomass["id"][:15] and len(sim["id"]) == len(biomass["id"])
    tropforest = next(f for f in features if f["collection"] == "TropForest")
    oidc = tropforest["properties"]["auth:schemes"]["oidc"]
    for cid in CATALOG.specs:
        scheme = CATALOG.item(cid, 0)["properties"]["auth:schemes"]["oidc"]
        assert set(scheme) == set(oidc) and scheme["type"] == oidc["type"]
        assert set(tropforest["stac_extensions"]) <= set(CATALOG.item(cid, 0)["stac_extensions"])


# -- the same shapes on the sim alone (CI) ---------------------------------------------------


def test_earthcare_items_are_line_strings_with_frames_orbits_and_directions() -> None:
    items = [it for _, it in CATALOG.iter_items(EC_L2)]
    assert len(items) == 16 and len({it["id"] for it in items}) == 16
    for item in items:
        geometry, (west, south, east, north) = item["geometry"], item["bbox"]
        assert geometry["type"] == "LineString" and len(geometry["coordinates"]) >= 2
        xs = [p[0] for p in geometry["coordinates"]]
        ys = [p[1] for p in geometry["coordinates"]]
        assert (west, south, east, north) == (min(xs), min(ys), max(xs), max(ys))
        assert -180 <= west < east <= 180 and -90 <= south < north <= 90
        props = item["properties"]
        frame = item["id"][-1]
        expected = "ascending" if frame in "ABCH" else "descending"
        assert props["sat:orbit_state"] == expected
        assert props["platform"] == props["constellation"] == "EarthCARE"
        assert isinstance(props["sat:absolute_orbit"], int) and props["instruments"]
        start, anx = (
            datetime.fromisoformat(props[k].replace("Z", "+00:00"))
            for k in ("start_datetime", "sat:anx_datetime")
        )
        assert start - anx == timedelta(seconds=695) * "ABCDEFGH".index(frame)
        assert "productType" not in props and "orbitNumber" not in props
    # two product types per frame, eight frames per orbit: 16 items, one orbit, frames A-H
    assert sorted({it["id"][-1] for it in items}) == list("ABCDEFGH")
    assert len({it["properties"]["sat:absolute_orbit"] for it in items}) == 1
    for index, item in enumerate(items):
        assert CATALOG.index_of(EC_L2, item["id"]) == index


def test_earthcare_assets_shared_href_and_file_fields() -> None:
    item = CATALOG.item(EC_L2, 3)
    assets = item["assets"]
    assert assets["thumbnail"]["href"] == assets["quicklook_jpeg"]["href"]
    assert "/public/" in assets["thumbnail"]["href"] and "auth:refs" not in assets["thumbnail"]
    h5 = assets["enclosure_h5"]
    assert h5["file:local_path"] == f"{item['id']}.h5"
    assert h5["file:size"] == len(CATALOG.static_body(EC_L2, 3, "enclosure_h5"))
    assert assets["enclosure_hdr"]["file:size"] > 0 and "file:checksum" not in h5
    product = assets["product"]
    assert product["roles"] == ["data", "metadata", "archive"]
    assert "file:size" not in product and "/data/zipper/" in product["href"]
    metadata = {k: a for k, a in assets.items() if k.startswith("metadata_")}
    assert len(metadata) == 3
    for asset in metadata.values():
        assert asset["roles"] == ["metadata"] and urlsplit(asset["href"]).query
    shared = CATALOG.static_body(EC_L2, 3, "quicklook_jpeg")
    assert shared == CATALOG.static_body(EC_L2, 3, "thumbnail")


def test_the_sim_serves_every_earthcare_asset(sim: SimServer) -> None:
    """The h5 and HDR with the token (ranges on), the JPEG without, the zipper's zip with
    no length, each catalogue record in its own format."""
    item = sim.catalog.item(EC_L2, 1)
    assets, iid = item["assets"], item["id"]
    h5 = assets["enclosure_h5"]["href"]
    assert http_get(h5)[0] == 401
    status, headers, body = http_get(h5, AUTH)
    assert status == 200 and body.startswith(b"\x89HDF\r\n\x1a\n")
    assert int(headers["Content-Length"]) == assets["enclosure_h5"]["file:size"] == len(body)
    status, _, part = http_get(h5, {**AUTH, "Range": "bytes=100-"})
    assert status == 206 and part == body[100:]
    status, _, hdr = http_get(assets["enclosure_hdr"]["href"], AUTH)
    header = ET.fromstring(hdr)
    assert status == 200 and header.find(".//{*}File_Name").text == iid  # type: ignore[union-attr]
    status, headers, jpeg = http_get(assets["quicklook_jpeg"]["href"])  # public: no token
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    assert jpeg.startswith(b"\xff\xd8") and jpeg.endswith(b"\xff\xd9")
    status, headers, zipped = http_get(assets["product"]["href"], AUTH)
    assert status == 200 and "Content-Length" not in headers
    names = zipfile.ZipFile(io.BytesIO(zipped)).namelist()
    assert f"{iid}/{iid}.h5" in names and f"{iid}/{iid}.HDR" in names
    for key in ("metadata_ogc_10_157r4", "metadata_iso_19139"):
        status, headers, body = http_get(assets[key]["href"])
        assert status == 200 and headers["Content-Type"] == assets[key]["type"], key
        assert iid in ET.tostring(ET.fromstring(body), encoding="unicode"), key
    status, headers, body = http_get(assets["metadata_ogc_17_003r2"]["href"])
    assert headers["Content-Type"] == assets["metadata_ogc_17_003r2"]["type"]
    record = json.loads(body)
    assert record["type"] == "Feature" and record["properties"]["identifier"] == iid
    assert record["geometry"] == item["geometry"]
    plain = http_json(f"{sim.catalog_url}collections/{EC_L2}/items/{iid}?unrelated=1")
    assert plain["id"] == iid and plain["assets"] == assets  # no record's query: the item


def test_jpeg_quicklooks_decode(sim: SimServer) -> None:
    image = pytest.importorskip("PIL.Image")
    body = sim.catalog.static_body(EC_L2, 0, "quicklook_jpeg")
    with image.open(io.BytesIO(body)) as picture:
        picture.load()
        assert picture.format == "JPEG" and picture.size == (96, 384)
        low, high = picture.getextrema()
        assert high - low > 64  # a gradient, not a flat grey


def test_earthcare_search_and_queryables_over_http(sim: SimServer) -> None:
    base = f"{sim.catalog_url}search?collections={EC_L2}"
    page = http_json(base + "&limit=50")
    assert page["numberMatched"] == 5
    assert {f["geometry"]["type"] for f in page["features"]} == {"LineString"}
    msi = http_json(base + "&filter=" + quote("product:type='MSI_COP_2A'"))
    assert msi["numberMatched"] == 3
    first = page["features"][0]
    west, south, east, north = first["bbox"]
    box = f"{west + 1},{south + 1},{east - 1},{north - 1}"
    assert first["id"] in {f["id"] for f in http_json(base + f"&bbox={box}")["features"]}
    queryables = http_json(f"{sim.catalog_url}collections/{EC_L2}/queryables")["properties"]
    assert set(RENAMED.values()) <= set(queryables)
    assert not set(RENAMED) & set(queryables)
    old = base + "&filter=" + quote("productType='MSI_COP_2A'")
    assert http_get(old)[0] == 400  # an old name is no queryable here: the client gets the 400


def test_a_download_of_the_files_earthcare_users_take(sim: SimServer, tmp_path: Path) -> None:
    keys = ["enclosure_h5", "enclosure_hdr", "quicklook_jpeg"]
    result = pull(sim, tmp_path, collections=[EC_L2], assets=keys)
    assert result.ok and result.downloaded == 15
    iid = sim.catalog.item(EC_L2, 2)["id"]
    h5 = next(tmp_path.rglob(f"{iid}.h5"))
    assert h5.read_bytes() == sim.catalog.static_body(EC_L2, 2, "enclosure_h5")


def test_biomass_2026_items_have_the_real_l1a_keys() -> None:
    item = CATALOG.item(L1C, 0)
    keys = set(item["assets"])
    wanted = {"enclosure_i_abs_tiff", "enclosure_i_phase_tiff", "enclosure_annot_xml"}
    assert wanted | {"enclosure_orb_xml", "enclosure_kml"} <= keys
    assert not {"enclosure_abs_tiff", "enclosure_lut_nc"} & keys  # they never existed
    for key in keys - {"product"}:
        asset = item["assets"][key]
        assert (
            asset["file:size"] == len(CATALOG.static_body(L1C, 0, key)) and asset["file:checksum"]
        ), key
    kml = item["assets"]["enclosure_kml"]
    assert kml["type"] == "application/vnd.google-earth.kml+xml"
    document = ET.fromstring(CATALOG.static_body(L1C, 0, "enclosure_kml"))
    icon = document.find(".//{*}Icon/{*}href")
    assert icon is not None and icon.text == companion_png_name(kml["href"])
    assert ET.fromstring(CATALOG.static_body(L1C, 0, "enclosure_orb_xml")) is not None


def test_every_item_names_its_auth_scheme_and_platform_as_maap_spells_it() -> None:
    platforms = {cid: CATALOG.item(cid, 0)["properties"]["platform"] for cid in CATALOG.specs}
    assert platforms == {
        L1A: "Biomass",
        L1C: "Biomass",
        FLEX: "FLEX",
        EC_L1: "EarthCARE",
        EC_L2: "EarthCARE",
    }
    for cid in CATALOG.specs:
        item = CATALOG.item(cid, 1)
        schemes = item["properties"]["auth:schemes"]
        assert schemes["oidc"]["type"] == "openIdConnect"
        refs = {r for a in item["assets"].values() for r in a.get("auth:refs", [])}
        assert refs <= set(schemes)  # every ref names a scheme the item declares
        assert any("authentication" in ext for ext in item["stac_extensions"])


def test_every_asset_href_of_every_collection_resolves_to_its_own_file() -> None:
    """The data server finds each file from its path alone, whatever the mission's
    folder layout (EarthCARE's has no collection id in it)."""
    base = CATALOG.base_url
    for cid in CATALOG.specs:
        for index in (0, 7):
            item = CATALOG.item(cid, index)
            for key, asset in item["assets"].items():
                if not asset["href"].startswith(f"{base}/data/"):
                    continue
                found = CATALOG.resolve(asset["href"][len(base) :])
                assert found is not None, (cid, key)
                slot, file = found
                assert slot.split("/")[0] == item["id"]
                if file.kind == "static":
                    assert file.body == CATALOG.static_body(cid, index, key), (cid, key)


def test_a_collection_of_an_unknown_kind_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unknown collection kind 'sentinel'"):
        CollectionSpec("X", "sentinel", 1)
