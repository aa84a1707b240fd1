"""Planning: asset selection across MAAP key generations, names, companions, sanitising."""

from __future__ import annotations

import os
import posixpath
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stacpull.destpaths import companion_png_name, sanitize_relpath
from stacpull.errors import ConfigError, UnsafePathError
from stacpull.plan import PlanRules, plan_item
from stacpull.selection import choose_assets
from stacpull.sim import SimCatalog, default_collections

from .conftest import FLEX, L1A, L1C

CATALOG = SimCatalog(default_collections(count=3, product_size=20_000))


def _item(**assets: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "ITEM1",
        "collection": "C",
        "properties": {"datetime": "2025-09-29T00:00:00Z"},
        "assets": assets,
        "links": [],
    }


def test_maap_profile_picks_product_quicklook_and_kmz_under_2025_keys() -> None:
    jobs, refusals = plan_item(CATALOG.item(L1A, 0), PlanRules())
    assert not refusals
    assert [j.asset_key for j in jobs] == ["product", "quicklook", "quicklook_1"]


def test_maap_profile_picks_the_same_under_2026_keys() -> None:
    jobs, _ = plan_item(CATALOG.item(L1C, 0), PlanRules())
    assert [j.asset_key for j in jobs] == ["product", "quicklook_png", "quicklook_kml"]
    by_key = {j.asset_key: j for j in jobs}
    assert by_key["quicklook_png"].size is not None and by_key["quicklook_png"].checksum
    assert by_key["product"].size is None  # the zipper never says


def test_maap_profile_on_flex_takes_product_and_quicklook() -> None:
    jobs, _ = plan_item(CATALOG.item(FLEX, 1), PlanRules())
    assert [j.asset_key for j in jobs] == ["product", "quicklook"]


def test_later_enclosure_keys_are_found_by_the_profile() -> None:
    item = _item(
        product={
            "href": "https://h/data/zipper/x/ITEM1",
            "type": "application/zip",
            "roles": ["data"],
        },
        enclosure_ql_pauli_png={"href": "https://h/data/x/ql_pauli.png", "type": "image/png"},
        enclosure_kml={
            "href": "https://h/data/x/item1_map.kmz",
            "type": "application/vnd.google-earth.kmz",
        },
        enclosure_i_abs_tiff={"href": "https://h/data/x/abs.tiff", "type": "image/tiff"},
    )
    jobs, _ = plan_item(item, PlanRules())
    assert [j.asset_key for j in jobs] == ["product", "enclosure_ql_pauli_png", "enclosure_kml"]


@pytest.mark.parametrize(
    ("selectors", "expected"),
    [
        (
            ("all",),
            [
                "enclosure_annot_xml",
                "enclosure_i_abs_tiff",
                "enclosure_i_phase_tiff",
                "enclosure_kml",
                "enclosure_orb_xml",
                "product",
                "quicklook_kml",
                "quicklook_png",
                "thumbnail",
            ],
        ),
        (
            ("enclosure_*",),
            [
                "enclosure_annot_xml",
                "enclosure_i_abs_tiff",
                "enclosure_i_phase_tiff",
                "enclosure_kml",
                "enclosure_orb_xml",
            ],
        ),
        (("role:metadata",), ["enclosure_annot_xml", "enclosure_orb_xml"]),
        (("type:image/png",), ["quicklook_png", "thumbnail"]),
        (("key:thumbnail", "product"), ["thumbnail", "product"]),
        (("no_such_key",), []),
    ],
)
def test_selectors(selectors: tuple[str, ...], expected: list[str]) -> None:
    assets = CATALOG.item(L1C, 0)["assets"]
    assert choose_assets(assets, selectors) == expected


def test_default_destination_and_names() -> None:
    item = CATALOG.item(L1A, 0)
    jobs, _ = plan_item(item, PlanRules())
    by_key = {j.asset_key: j for j in jobs}
    iid = item["id"]
    assert by_key["product"].dest == f"{L1A}/{iid}/{iid}.ZIP"  # file:local_path
    assert by_key["quicklook_1"].dest == f"{L1A}/{iid}/{iid.lower()}_map.kmz"  # title
    # The notebook's companion rule: the PNG is saved under the name the KMZ expects.
    assert by_key["quicklook"].dest == f"{L1A}/{iid}/{iid.lower()}_ql.png"
    assert by_key["product"].zip_check and by_key["quicklook_1"].zip_check


def test_name_falls_back_to_url_then_media_type() -> None:
    item = _item(
        a={"href": "https://h/files/a%20b.tif", "type": "image/tiff", "title": "Not a file name"},
        b={"href": "https://h/data/zipper/x/ITEM1", "type": "application/zip"},
    )
    jobs, _ = plan_item(item, PlanRules(("all",)))
    assert [j.dest for j in jobs] == ["C/ITEM1/a b.tif", "C/ITEM1/ITEM1.ZIP"]


def test_two_assets_with_one_name_get_distinct_destinations() -> None:
    item = _item(
        a={"href": "https://h/x/ITEM1", "type": "application/zip"},
        b={"href": "https://h/y/ITEM1", "type": "application/zip"},
    )
    jobs, refusals = plan_item(item, PlanRules(("all",)))
    assert not refusals
    assert len({j.dest for j in jobs}) == 2


def test_companion_name_rule() -> None:
    assert companion_png_name("bio_s1_x_01_d9uith_map.kmz") == "bio_s1_x_01_d9uith_ql.png"
    assert companion_png_name("overview.kmz") == "overview_ql.png"


@pytest.mark.parametrize(
    "local_path",
    [
        "../../etc/passwd",
        "/etc/passwd",
        "a/../../b",
        "evil\x1b[31m.zip",
        "nul\x00.zip",
        "C:\\x.zip",
        "a\\..\\b.zip",
        "",
        "x.zip.part",
        " lead.zip",
        "dir//x.zip",
        "./x.zip",
    ],
)
def test_hostile_local_paths_are_refused_and_the_rest_of_the_item_goes_on(local_path: str) -> None:
    item = _item(
        product={"href": "https://h/p", "type": "application/zip", "file:local_path": local_path},
        quicklook={"href": "https://h/q.png", "type": "image/png"},
    )
    jobs, refusals = plan_item(item, PlanRules())
    if local_path == "":  # an empty local path is just absent: the next source names it
        assert [j.asset_key for j in jobs] == ["product", "quicklook"]
        return
    assert [r.asset_key for r in refusals] == ["product"]
    assert [j.asset_key for j in jobs] == ["quicklook"]


def test_hostile_item_id_and_collection_are_refused() -> None:
    item = _item(product={"href": "https://h/p.zip", "type": "application/zip"})
    item["id"] = "../../x"
    _, refusals = plan_item(item, PlanRules())
    assert refusals and "item id" in refusals[0].reason
    item["id"], item["collection"] = "ok", "/abs"
    _, refusals = plan_item(item, PlanRules())
    assert refusals and "collection" in refusals[0].reason


def test_non_http_hrefs_are_refused() -> None:
    item = _item(product={"href": "file:///etc/passwd", "type": "application/zip"})
    jobs, refusals = plan_item(item, PlanRules())
    assert not jobs and "not an http" in refusals[0].reason


def test_relative_hrefs_resolve_against_the_self_link() -> None:
    item = _item(product={"href": "../files/p.zip", "type": "application/zip"})
    item["links"] = [{"rel": "self", "href": "https://h/cat/items/ITEM1"}]
    jobs, _ = plan_item(item, PlanRules())
    assert jobs[0].url == "https://h/cat/files/p.zip"


def test_template_fields_and_validation() -> None:
    item = CATALOG.item(L1A, 1)
    jobs, _ = plan_item(item, PlanRules(("product",), "{year}/{month}/{day}/{key}/{name}"))
    assert jobs[0].dest.startswith("2025/09/29/product/")
    with pytest.raises(ConfigError, match="template"):
        PlanRules(template="{nope}/{name}")
    with pytest.raises(ConfigError, match="selector kind"):
        PlanRules(selectors=("size:3",))


def _assert_safe_or_refused(raw: str) -> None:
    try:
        safe = sanitize_relpath(raw)
    except UnsafePathError:
        return
    assert not posixpath.isabs(safe)
    assert posixpath.normpath(safe) == safe
    assert ".." not in safe.split("/")
    assert all(ord(c) >= 32 and c != "\x7f" for c in safe)
    dest = "/srv/dest"
    assert os.path.normpath(f"{dest}/{safe}").startswith(dest + "/")


@given(st.text(min_size=0, max_size=60))
def test_sanitized_paths_never_escape_dest(raw: str) -> None:
    _assert_safe_or_refused(raw)


@given(st.lists(st.sampled_from(["a", "b.zip", "..", ".", "", "/", "\\", "\n", "c d"]), max_size=6))
def test_sanitized_paths_from_hostile_pieces(pieces: list[str]) -> None:
    _assert_safe_or_refused("/".join(pieces))
