"""The default ``maap`` profile per mission (issue 20): which assets it takes from BIOMASS,
EarthCARE, FLEX and unknown items, and why; role selectors that do not surprise; one
download for one href under two keys; catalogue metadata URLs named by their media type.

Hand-built items (so CI covers it), the real catalogue's recorded items through the
``real_maap`` fixture, and a dry run against the simulator.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from stacpull.config import Config, DownloadConfig, SearchConfig
from stacpull.dryrun import RulePlan, dry_run
from stacpull.plan import PlanRules, plan_item
from stacpull.selection import ProfileChoice, choose_assets, profile_choice
from stacpull.sim import CollectionSpec, SimCatalog, SimServer, default_collections

from .conftest import FLEX, L1A, L1C, cli

EC = "EarthCAREL2Validated_MAAP"
EC_ID = "ECA_EXBA_MSI_COP_2A_20251020T132215Z_20251020T162940Z_07929E"
EC_FOLDER = f"earthcare-pdgs-01/EarthCARE/MSI_COP_2A/BA/2025/10/20/{EC_ID}"
EC_TRIO = ["enclosure_h5", "enclosure_hdr", "quicklook_jpeg"]


def earthcare_item(
    base: str = "https://catalog.maap.eo.esa.int", item_id: str = EC_ID
) -> dict[str, Any]:
    """An EarthCARE item shaped as ESA's notebook printed the real one (keys, hrefs, media
    types and roles), with the asset extras other clients read (file:size, local path)."""
    folder = EC_FOLDER.replace(EC_ID, item_id)
    data = f"{base}/data/{folder}"
    record = f"{base}/catalogue/collections/{EC}/items/{item_id}"
    jpeg = f"{data}/public/{item_id}.BID_1.jpeg"
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": item_id,
        "collection": EC,
        "geometry": {"type": "LineString", "coordinates": [[2.3, -22.7], [12.5, 22.6]]},
        "bbox": [2.265359, -22.686682, 12.536523, 22.561153],
        "properties": {
            "datetime": "2025-10-20T13:22:15.000Z",
            "platform": "EarthCARE",
            "constellation": "EarthCARE",
            "instruments": ["MSI"],
            "product:type": "MSI_COP_2A",
        },
        "assets": {
            "thumbnail": {"href": jpeg, "type": "image/jpeg", "roles": ["thumbnail"]},
            "product": {
                "href": f"{base}/data/zipper/{folder}/{item_id}",
                "type": "application/zip",
                "roles": ["data", "metadata", "archive"],
            },
            "metadata_ogc_10_157r4": {
                "href": f"{record}?httpAccept=application/gml%2Bxml&recordSchema=om",
                "type": 'application/gml+xml;profile="http://www.opengis.net/spec/EOMPOM/1.1"',
                "roles": ["metadata"],
            },
            "enclosure_h5": {
                "href": f"{data}/{item_id}/{item_id}.h5",
                "type": "application/x-hdf5",
                "roles": ["data"],
                "file:local_path": f"{item_id}.h5",
                "file:size": 4096,
            },
            "metadata_ogc_17_003r2": {
                "href": f"{record}?mode=owc",
                "type": 'application/geo+json;profile="http://www.opengis.net/spec/eo-geojson/1.0"',
                "roles": ["metadata"],
            },
            "metadata_iso_19139": {
                "href": f"{record}?httpAccept=application/vnd.iso.19139%2Bxml",
                "type": "application/vnd.iso.19139+xml",
                "roles": ["metadata"],
            },
            "quicklook_jpeg": {"href": jpeg, "type": "image/jpeg", "roles": ["overview"]},
            "enclosure_hdr": {
                "href": f"{data}/{item_id}/{item_id}.HDR",
                "type": "image/vnd.radiance",
                "roles": ["data"],
            },
        },
        "links": [{"rel": "self", "href": record, "type": "application/geo+json"}],
    }


def _biomass_item(**properties: Any) -> dict[str, Any]:
    base = "https://h/data"
    return {
        "id": "BIO1",
        "collection": "SomeCollection",
        "properties": {"datetime": "2026-02-10T00:00:00Z", **properties},
        "assets": {
            "product": {
                "href": f"{base}/zipper/BIO1",
                "type": "application/zip",
                "roles": ["data"],
            },
            "enclosure_ql_pauli_png": {"href": f"{base}/bio1_ql.png", "type": "image/png"},
            "enclosure_kml": {
                "href": f"{base}/bio1_map.kmz",
                "type": "application/vnd.google-earth.kmz",
            },
            "enclosure_i_abs_tiff": {
                "href": f"{base}/abs.tiff",
                "type": "image/tiff",
                "roles": ["data"],
            },
        },
        "links": [],
    }


def _keys(item: dict[str, Any], *selectors: str) -> list[str]:
    jobs, refusals = plan_item(item, PlanRules(selectors or ("maap",)))
    assert not refusals, refusals
    return [j.asset_key for j in jobs]


# -- the rule per mission ------------------------------------------------------------------


def test_earthcare_takes_h5_hdr_and_quicklook_never_the_zip() -> None:
    item = earthcare_item()
    assert profile_choice(item) == ProfileChoice(
        "earthcare", "enclosure_h5 present, platform EarthCARE", tuple(EC_TRIO)
    )
    assert _keys(item) == EC_TRIO


def test_earthcare_is_known_by_its_assets_or_its_collection_alone() -> None:
    by_assets = earthcare_item()
    del by_assets["properties"]["platform"], by_assets["properties"]["constellation"]
    by_assets["collection"] = "Elsewhere"
    assert profile_choice(by_assets).rule == "earthcare"
    assert profile_choice(by_assets).why == "enclosure_h5 present"
    by_collection = earthcare_item()
    by_collection["properties"] = {}
    del by_collection["assets"]["enclosure_h5"]
    choice = profile_choice(by_collection)
    assert (choice.rule, choice.why) == ("earthcare", f"collection {EC}")
    assert list(choice.keys) == ["enclosure_hdr", "quicklook_jpeg"]  # still not the zip


def test_biomass_keeps_todays_rule_under_2026_keys() -> None:
    choice = profile_choice(_biomass_item(platform="BIOMASS"))
    assert (choice.rule, choice.why) == ("biomass", "platform BIOMASS")
    assert list(choice.keys) == ["product", "enclosure_ql_pauli_png", "enclosure_kml"]


def test_the_platform_outweighs_the_collection_name() -> None:
    item = _biomass_item(platform="Biomass")
    item["collection"] = "FLEXL2Products10"
    assert profile_choice(item).rule == "biomass"
    item["properties"] = {"mission": ["flex"]}
    assert (profile_choice(item).rule, profile_choice(item).why) == ("flex", "mission flex")


def test_flex_takes_product_and_quicklook_only() -> None:
    item = _biomass_item()
    item["collection"] = "FLEXL1CommissioningProducts10"
    choice = profile_choice(item)
    assert (choice.rule, choice.why) == ("flex", "collection FLEXL1CommissioningProducts10")
    assert list(choice.keys) == ["product", "enclosure_ql_pauli_png"]


def test_an_unknown_item_keeps_the_generic_rule() -> None:
    item = {
        "id": "X",
        "collection": "TropForest",
        "properties": {"platform": "ALOS"},
        "assets": {
            "enclosure": {"href": "https://h/x.ZIP", "type": "application/zip", "roles": ["data"]},
            "thumbnail": {"href": "https://h/x.png", "type": "image/png", "roles": ["thumbnail"]},
        },
    }
    choice = profile_choice(item)
    assert (choice.rule, list(choice.keys)) == ("generic", ["enclosure"])
    assert "no mission" in choice.why
    item["assets"]["granule"] = {"href": "https://h/g.h5", "type": "application/x-hdf5"}
    assert profile_choice(item).rule == "generic"  # an HDF5 file alone is not EarthCARE


@pytest.mark.parametrize(
    ("collection", "rule"), [(L1A, "biomass"), (L1C, "biomass"), (FLEX, "flex")]
)
def test_sim_items_get_their_missions_rule(collection: str, rule: str) -> None:
    catalog = SimCatalog(default_collections(count=2, product_size=20_000))
    choice = profile_choice(catalog.item(collection, 0))
    assert choice.rule == rule
    assert "product" in choice.keys


# -- role selectors, shared hrefs, names ---------------------------------------------------


def test_role_metadata_passes_over_the_data_zip() -> None:
    assets = earthcare_item()["assets"]
    assert choose_assets(assets, ["role:metadata"]) == [
        "metadata_iso_19139",
        "metadata_ogc_10_157r4",
        "metadata_ogc_17_003r2",
    ]
    assert choose_assets(assets, ["role:data"]) == ["enclosure_h5", "enclosure_hdr", "product"]
    assert choose_assets(assets, ["role:archive"]) == ["product"]  # not a describing role
    assert choose_assets(assets, ["role:overview"]) == ["quicklook_jpeg"]


def test_one_href_under_two_keys_is_one_job_with_the_other_key_noted() -> None:
    jobs, refusals = plan_item(earthcare_item(), PlanRules(("all",)))
    assert not refusals
    urls = [j.url for j in jobs]
    assert len(urls) == len(set(urls)) == 7  # eight assets, seven files
    (shared,) = [j for j in jobs if j.url.endswith(".BID_1.jpeg")]
    assert (shared.asset_key, shared.also) == ("quicklook_jpeg", ("thumbnail",))
    assert not any(j.asset_key == "thumbnail" for j in jobs)


def test_one_href_asked_for_as_two_files_stays_two_jobs() -> None:
    """Keys whose ``file:local_path`` name two files are two files, whatever their href."""
    item = earthcare_item()
    item["assets"]["thumbnail"]["file:local_path"] = "thumb.jpeg"
    jobs, _ = plan_item(item, PlanRules(("thumbnail", "quicklook_jpeg")))
    assert [(j.asset_key, j.also) for j in jobs] == [("thumbnail", ()), ("quicklook_jpeg", ())]


def test_metadata_urls_are_named_by_media_type_and_key() -> None:
    jobs, _ = plan_item(earthcare_item(), PlanRules(("metadata_*", "product")))
    names = {j.asset_key: j.dest.rsplit("/", 1)[-1] for j in jobs}
    assert names == {
        "metadata_iso_19139": f"{EC_ID}_metadata_iso_19139.xml",
        "metadata_ogc_10_157r4": f"{EC_ID}_metadata_ogc_10_157r4.xml",
        "metadata_ogc_17_003r2": f"{EC_ID}_metadata_ogc_17_003r2.json",
        "product": f"{EC_ID}.ZIP",  # the data zip keeps MAAP's <id>.ZIP
    }


# -- the dry run ---------------------------------------------------------------------------


def _pages(items: list[dict[str, Any]]) -> Any:
    async def pages() -> Any:
        yield items, len(items)

    return pages


def test_dry_run_counts_items_per_rule_and_why(tmp_path: Path) -> None:
    items = [
        earthcare_item(),
        earthcare_item(item_id=EC_ID[:-1] + "F"),
        _biomass_item(platform="BIOMASS"),
    ]
    config = Config(search=SearchConfig(), download=DownloadConfig(dest=str(tmp_path / "d")))
    summary = anyio.run(lambda: dry_run(config, pages=_pages(items)))
    assert {r.rule: r.items for r in summary.rules.values()} == {"earthcare": 2, "biomass": 1}
    assert summary.rules["earthcare"] == RulePlan(
        "earthcare", 2, {"enclosure_h5 present, platform EarthCARE": 2}, dict.fromkeys(EC_TRIO, 2)
    )
    assert "enclosure_h5" in summary.assets and "product" in summary.assets  # BIOMASS zip
    assert summary.assets["product"].files == 1


def test_dry_run_with_all_notes_the_shared_href(tmp_path: Path) -> None:
    config = Config(
        search=SearchConfig(), download=DownloadConfig(dest=str(tmp_path / "d"), assets=("all",))
    )
    summary = anyio.run(lambda: dry_run(config, pages=_pages([earthcare_item()])))
    assert summary.rules == {}  # no maap selector, no rule
    assert summary.same_file == {("thumbnail", "quicklook_jpeg"): 1}
    assert summary.files == 7


@pytest.fixture
def earthcare_sim() -> Any:
    """A simulator with BIOMASS L1a and an EarthCARE collection of two items shaped as
    the real one (hand-built here: the sim's own EarthCARE collections may not exist)."""
    specs = [*default_collections(count=2, product_size=20_000), CollectionSpec(EC, "flex", 0)]
    catalog = SimCatalog(specs)
    with SimServer(catalog) as server:
        base = server.catalog_url.split("/catalogue")[0]
        for suffix in "EF":
            catalog.add_item(EC, earthcare_item(base, EC_ID[:-1] + suffix))
        yield server


def test_cli_dry_run_against_the_sim_says_which_rule_chose_what(
    earthcare_sim: SimServer, tmp_path: Path
) -> None:
    args = ["download", "--catalog", earthcare_sim.catalog_url, "--collection", EC]
    args += ["--collection", L1A, "--dest", str(tmp_path / "d"), "--dry-run"]
    code, out, err = cli(*args, "--json")
    assert code == 0, err
    plan = json.loads(out)
    rules = {r["rule"]: r for r in plan["rules"]}
    assert rules["earthcare"]["items"] == 2
    assert rules["earthcare"]["why"] == {"enclosure_h5 present, platform EarthCARE": 2}
    assert rules["earthcare"]["assets"] == dict.fromkeys(EC_TRIO, 2)
    assert rules["biomass"]["items"] == 2
    keys = {a["key"] for a in plan["assets"]}
    assert {"enclosure_h5", "enclosure_hdr", "quicklook_jpeg", "product"} <= keys
    code, out, err = cli(*args)
    assert code == 0, err
    text = out + err
    assert "earthcare: 2 items (enclosure_h5 present, platform EarthCARE)" in text
    assert "biomass: 2 items" in text


# -- the real catalogue's recorded items -------------------------------------------------


def test_real_earthcare_item_takes_the_h5_trio(real_maap: Path) -> None:
    (path,) = real_maap.glob("earthcare-item-*.reconstructed.json")
    item = json.loads(path.read_text())
    choice = profile_choice(item)
    assert (choice.rule, list(choice.keys)) == ("earthcare", EC_TRIO)
    assert choose_assets(item["assets"], ["role:metadata"]) == [
        k for k in sorted(item["assets"]) if k.startswith("metadata_")
    ]
    jobs, refusals = plan_item(item, PlanRules(("all",)))
    assert not refusals and len(jobs) == len(item["assets"]) - 1
    names = [j.dest for j in jobs]
    assert len(set(names)) == len(names) and not any(n.endswith(".bin") for n in names)


def test_real_itemcollection_dry_run_names_each_rule(real_maap: Path, tmp_path: Path) -> None:
    source = real_maap / "itemcollection-real-items-for-dry-run.geojson"
    rules = {
        f["id"][:3]: profile_choice(f).rule for f in json.loads(source.read_text())["features"]
    }
    assert rules == {"ECA": "earthcare", "AL1": "generic", "BIO": "biomass"}
    code, out, err = cli(
        "download", "--from", str(source), "--dest", str(tmp_path / "d"), "--dry-run", "--json"
    )
    assert code == 0, err
    plan = json.loads(out)
    assert {r["rule"]: r["items"] for r in plan["rules"]} == {
        "earthcare": 1,
        "generic": 1,
        "biomass": 1,
    }
    assert {a["key"] for a in plan["assets"]} == {*EC_TRIO, "enclosure", "product"}


def test_a_hostile_platform_reaches_the_terminal_escaped(tmp_path: Path) -> None:
    item = earthcare_item()
    item["properties"]["platform"] = "EarthCARE\x1b]0;owned\x07"
    source = tmp_path / "items.geojson"
    source.write_text(json.dumps({"type": "FeatureCollection", "features": [item]}))
    code, out, err = cli(
        "download", "--from", str(source), "--dest", str(tmp_path / "d"), "--dry-run"
    )
    assert code == 0, err
    assert "\x1b" not in out + err and "platform EarthCARE\\x1b]0;owned\\x07" in out + err


def test_the_csv_row_names_what_the_profile_downloads() -> None:
    from stacpull.export import item_row

    row = item_row(earthcare_item())
    assert row["download_url"].endswith(".h5")  # the HDF5 file, not the zip
    assert row["product_name"].endswith(".h5")
    assert row["quicklook_url"].endswith(".jpeg") and row["kmz_url"] == ""
