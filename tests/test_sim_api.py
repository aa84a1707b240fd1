"""The simulator's STAC API as clients and validators see it (issue 20): CQL2 text and JSON
through the ``cql2`` library with MAAP's case-insensitive values, POST ``next`` links that
also work as a plain GET, ``/collections/{id}/items``, an OpenAPI ``service-desc``, strict
bboxes and datetimes. Expected results are computed from the catalogue's own items, so the
tests hold whatever items the simulator carries."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from stacpull.sim import SimServer

from .conftest import L1A

Json = dict[str, Any]


def _call(url: str, body: Json | None = None) -> tuple[int, Json]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        raw = err.read()
        return err.code, json.loads(raw) if raw.startswith(b"{") else {"text": raw.decode()}


def _ok(url: str, body: Json | None = None) -> Json:
    status, doc = _call(url, body)
    assert status == 200, doc
    return doc


def _query(sim: SimServer, **params: Any) -> str:
    return f"{sim.catalog_url}search?{urllib.parse.urlencode(params)}"


def _items(sim: SimServer, cid: str) -> list[Json]:
    return [sim.catalog.item(cid, i) for i in range(sim.catalog.specs[cid].count)]


def _ids(sim: SimServer, cid: str, keep: Callable[[Json], bool]) -> set[str]:
    return {item["id"] for item in _items(sim, cid) if keep(item["properties"])}


def _walk_get(first: Json) -> list[str]:
    """Every id of a search, following each ``rel=next`` href with a plain GET."""
    page, seen = first, [f["id"] for f in first["features"]]
    while link := next((x for x in page["links"] if x["rel"] == "next"), None):
        page = _ok(link["href"])
        seen += [f["id"] for f in page["features"]]
    return seen


def _earthcare_like(sim: SimServer) -> Json:
    """A hand-written item with MAAP's numeric orbit and its upper-case version."""
    item = {
        **_items(sim, L1A)[0],
        "id": "ECA_EXBA_MSI_COP_2A_20251020T132215Z_20251020T162940Z_07929E",
    }
    item["properties"] = {
        **item["properties"],
        "sat:absolute_orbit": 7929,
        "version": "BA",
    }
    sim.catalog.add_item(L1A, item)
    return item


def test_between_and_maaps_own_case_insensitive_example(sim: SimServer) -> None:
    item = _earthcare_like(sim)
    for text in (
        "sat:absolute_orbit BETWEEN 7900 AND 8000",
        "\"sat:absolute_orbit\" IN (7929, 7930) AND version = 'ba'",
        "version LIKE 'b%'",
    ):
        got = _ok(_query(sim, filter=text, limit="100"))  # every collection: root queryables
        assert _in_l1a(got) == [item["id"]], text  # (the sim's EarthCARE items have orbits too)
    tree = {"op": "between", "args": [{"property": "sat:absolute_orbit"}, [7000, 7929]]}
    posted = _ok(
        f"{sim.catalog_url}search", {"filter": tree, "filter-lang": "cql2-json", "limit": 100}
    )
    assert _in_l1a(posted) == [item["id"]]  # the pre-1.0 [low, high]
    outside = _ok(_query(sim, filter="sat:absolute_orbit NOT BETWEEN 7900 AND 8000", limit="100"))
    assert _in_l1a(outside) == []  # items without an orbit are null: NOT of unknown is no match


def _in_l1a(page: Json) -> list[str]:
    return [f["id"] for f in page["features"] if f["collection"] == L1A]


def test_in_and_like_through_the_library(sim: SimServer) -> None:
    types = sorted({item["properties"]["product:type"] for item in _items(sim, L1A)})
    first, prefix = types[0], types[0][:3]
    cases = {
        f"\"product:type\" IN ('{first}', 'NO_SUCH')": lambda p: p["product:type"] == first,
        f"\"product:type\" LIKE '{prefix}%'": lambda p: p["product:type"].startswith(prefix),
        f"NOT \"product:type\" LIKE '{prefix}%'": lambda p: (
            not p["product:type"].startswith(prefix)
        ),
    }
    for text, keep in cases.items():
        doc = _ok(_query(sim, collections=L1A, filter=text, limit=100))
        assert {f["id"] for f in doc["features"]} == _ids(sim, L1A, keep), text
        assert doc["numberMatched"] == len(_ids(sim, L1A, keep)), text


def test_cql2_json_in_a_get_and_in_a_post(sim: SimServer) -> None:
    first = _items(sim, L1A)[0]["properties"]["product:type"]
    tree = {"op": "=", "args": [{"property": "product:type"}, first]}
    expected = _ids(sim, L1A, lambda p: p["product:type"] == first)
    got = _ok(_query(sim, collections=L1A, filter=json.dumps(tree), **{"filter-lang": "cql2-json"}))
    assert {f["id"] for f in got["features"]} == expected
    posted = _ok(f"{sim.catalog_url}search", {"collections": [L1A], "filter": tree, "limit": 50})
    assert {f["id"] for f in posted["features"]} == expected  # an object: cql2-json by default
    text = _ok(
        f"{sim.catalog_url}search",
        {"collections": [L1A], "filter": f"\"product:type\" = '{first}'", "limit": 50},
    )
    assert {f["id"] for f in text["features"]} == expected  # a string: cql2-text


def test_value_comparison_is_case_insensitive_as_on_maap(sim: SimServer) -> None:
    """MAAP matched ``version = 'ba'`` against ``BA``: here any property's value compares
    without case in =, <>, IN and LIKE; ids and collection ids stay exact."""
    first = _items(sim, L1A)[0]["properties"]["product:type"]
    expected = _ids(sim, L1A, lambda p: p["product:type"] == first)
    for text in (
        f"\"product:type\" = '{first.lower()}'",
        f"\"product:type\" IN ('{first.lower()}')",
        f"\"product:type\" LIKE '{first.lower()[:-1]}%'",
    ):
        got = _ok(_query(sim, collections=L1A, filter=text, limit=100))
        assert {f["id"] for f in got["features"]} >= expected, text
    others = _ok(_query(sim, collections=L1A, filter=f"\"product:type\" <> '{first.lower()}'"))
    assert not {f["id"] for f in others["features"]} & expected
    item_id = _items(sim, L1A)[0]["id"]
    assert _ok(_query(sim, collections=L1A, filter=f"id = '{item_id.lower()}'"))["features"] == []


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"filter": '"product:type" = '}, "not valid cql2-text"),
        ({"filter": '{"op": ', "filter-lang": "cql2-json"}, "not JSON"),
        ({"filter": json.dumps({"op": "=", "args": [1]}), "filter-lang": "cql2-json"}, "cql2-json"),
        ({"filter": "a = 1", "filter-lang": "cql-text"}, "cql2-text or cql2-json"),
        ({"filter": "productTypo = 'x'"}, "unknown queryable 'productTypo'"),
    ],
)
def test_a_filter_the_library_rejects_is_a_clear_400(
    sim: SimServer, params: dict[str, str], needle: str
) -> None:
    status, doc = _call(_query(sim, collections=L1A, **params))
    assert status == 400 and doc["code"] == "InvalidParameterValue", doc
    assert needle in doc["description"], doc


def test_a_search_over_every_collection_reads_the_permissive_root_queryables(
    sim: SimServer,
) -> None:
    root = _ok(f"{sim.catalog_url}queryables")
    assert root["$id"] == f"{sim.catalog_url}queryables" and root["additionalProperties"] is True
    doc = _ok(_query(sim, filter="eo:cloud_cover < 10"))  # no collection has it: no match
    assert doc["features"] == [] and doc["numberMatched"] == 0
    everything = _ok(_query(sim, filter="eo:cloud_cover IS NULL", limit=1))
    assert everything["numberMatched"] == sum(sim.catalog.count(c) for c in sim.catalog.specs)


def test_a_post_next_link_works_as_a_plain_get_and_as_a_merged_post(sim: SimServer) -> None:
    first = _items(sim, L1A)[0]["properties"]["product:type"]
    body = {"collections": [L1A], "filter": f"\"product:type\" <> '{first}'", "limit": 1}
    expected = _ids(sim, L1A, lambda p: p["product:type"] != first)
    page = _ok(f"{sim.catalog_url}search", body)
    link = next(x for x in page["links"] if x["rel"] == "next")
    assert link["method"] == "POST" and link["merge"] and link["href"].endswith("/search")
    via_get = _walk_get(page)
    assert len(via_get) == len(set(via_get)) and set(via_get) == expected
    seen = [f["id"] for f in page["features"]]
    while link := next((x for x in page["links"] if x["rel"] == "next"), None):
        page = _ok(link["href"], {**body, **link["body"]})
        seen += [f["id"] for f in page["features"]]
    assert seen == via_get


def test_collection_items_page_and_filter_like_a_search(sim: SimServer) -> None:
    url = f"{sim.catalog_url}collections/{L1A}/items"
    page = _ok(f"{url}?limit=2")
    assert page["type"] == "FeatureCollection" and len(page["features"]) == 2
    assert next(x for x in page["links"] if x["rel"] == "next")["href"].startswith(url + "?")
    assert any(x["rel"] == "self" for x in page["links"])
    seen = _walk_get(page)
    assert sorted(seen) == sorted(item["id"] for item in _items(sim, L1A))
    box = _items(sim, L1A)[0]["bbox"]
    near = _ok(f"{url}?bbox={','.join(str(v) for v in box)}")
    assert _items(sim, L1A)[0]["id"] in {f["id"] for f in near["features"]}
    stamp = _items(sim, L1A)[0]["properties"]["datetime"]
    at = _ok(f"{url}?datetime={urllib.parse.quote(stamp)}")
    assert _items(sim, L1A)[0]["id"] in {f["id"] for f in at["features"]}
    assert _call(f"{sim.catalog_url}collections/NoSuch/items")[0] == 404
    assert _call(f"{url}?bbox=0,10,1,5")[0] == 400


def test_an_item_links_its_parent_and_root(sim: SimServer) -> None:
    item_id = _items(sim, L1A)[0]["id"]
    item = _ok(f"{sim.catalog_url}collections/{L1A}/items/{item_id}")
    rels = {x["rel"]: x["href"] for x in item["links"]}
    assert rels["parent"] == f"{sim.catalog_url}collections/{L1A}" and rels["root"]


def test_the_service_desc_describes_the_routes_served(sim: SimServer) -> None:
    landing = _ok(sim.catalog_url)
    link = next(x for x in landing["links"] if x["rel"] == "service-desc")
    assert link["type"].startswith("application/vnd.oai.openapi+json")
    doc = _ok(link["href"])
    assert doc["openapi"].startswith("3.") and "/search" in doc["paths"]
    item_id = _items(sim, L1A)[0]["id"]
    for path in doc["paths"]:
        url = sim.catalog_url + path.lstrip("/")
        url = url.replace("{collectionId}", L1A).replace("{featureId}", item_id)
        request = urllib.request.Request(url)
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert resp.status == 200, path
    queryables = next(x for x in landing["links"] if x["rel"].endswith("/queryables"))
    assert _ok(queryables["href"])["type"] == "object"


@pytest.mark.parametrize(
    "params",
    [
        {"bbox": "100.0,1.0,105.0,0.0"},  # south north of north
        {"bbox": "1,2,3"},
        {"bbox": "0,0,1,1", "intersects": json.dumps({"type": "Point", "coordinates": [0, 0]})},
        {"datetime": "/"},
        {"datetime": "../.."},
        {"datetime": "1985-04-12"},  # a date alone is not RFC 3339
        {"datetime": "1985-12-12T23:20:50.52"},  # no offset
        {"datetime": "1937-01-01T12:00:27.87+0100"},  # offset without its colon
        {"datetime": "1986-04-12T23:20:50.52Z/1985-04-12T23:20:50.52Z"},  # start after end
        {"limit": "ten"},
    ],
)
def test_invalid_boxes_and_datetimes_are_400s(sim: SimServer, params: dict[str, str]) -> None:
    status, doc = _call(_query(sim, **params))
    assert status == 400 and doc["description"], doc


def test_a_post_box_must_be_an_array(sim: SimServer) -> None:
    status, doc = _call(f"{sim.catalog_url}search", {"bbox": "100.0, 0.0, 105.0, 1.0"})
    assert status == 400 and "array" in doc["description"]


@pytest.mark.parametrize(
    "stamp",
    [
        "2025-09-29t00:00:10z",
        "2025-09-29T00:00:10.5+00:00",
        "2025-09-29T00:00:10Z/..",
        "../2030-01-01T00:00:00Z",
    ],
)
def test_valid_datetimes_in_either_case_are_accepted(sim: SimServer, stamp: str) -> None:
    assert _ok(_query(sim, collections=L1A, datetime=stamp))["type"] == "FeatureCollection"


def test_pystac_client_searches_and_pages_the_sim(sim: SimServer) -> None:
    from pystac_client import Client

    client = Client.open(sim.catalog_url)
    first = _items(sim, L1A)[0]["properties"]["product:type"]
    search = client.search(
        collections=[L1A], filter=f"\"product:type\" = '{first}'", max_items=50, limit=1
    )
    assert {i.id for i in search.items()} == _ids(sim, L1A, lambda p: p["product:type"] == first)
    tree = {"op": "like", "args": [{"property": "product:type"}, first[:2] + "%"]}
    search = client.search(collections=[L1A], filter=tree, filter_lang="cql2-json", limit=2)
    assert {i.id for i in search.items()} == _ids(
        sim, L1A, lambda p: p["product:type"][:2] == first[:2]
    )
    collection = client.get_collection(L1A)
    assert len(list(collection.get_items())) == sim.catalog.specs[L1A].count


def test_the_slashless_root_answers_503(sim: SimServer) -> None:
    """Already so before issue 20 (also in test_sim.py); kept here beside its siblings."""
    assert _call(sim.catalog_url.rstrip("/"))[0] == 503


def test_cql2_lives_in_the_sim_filter_module_alone() -> None:
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "src" / "stacpull"
    users = {
        p.relative_to(src).as_posix()
        for p in src.rglob("*.py")
        if any(line.startswith(("import cql2", "from cql2")) for line in p.read_text().splitlines())
    }
    assert users == {"sim/cql2.py"}


def test_an_ids_search_finds_added_items_after_a_removal(sim: SimServer) -> None:
    """An added item is listed by ``ids`` even when generated items left before it (the
    positions of added items start at the spec's count whatever was removed)."""
    generated = _items(sim, L1A)
    sim.catalog.remove_item(generated[1]["id"])
    added = _earthcare_like(sim)
    wanted = [generated[0]["id"], generated[1]["id"], added["id"]]
    got = _ok(_query(sim, collections=L1A, ids=",".join(wanted)))
    assert [f["id"] for f in got["features"]] == [generated[0]["id"], added["id"]]
    assert got["numberMatched"] == 2


def test_a_spatial_filter_reads_the_items_geometry(sim: SimServer) -> None:
    """``S_INTERSECTS(geometry, …)`` (basic-spatial-operators, which the sim conforms to)
    matches an item by its footprint: the filter sees the item whole, geometry included."""
    first = _items(sim, L1A)[0]
    w, s, e, n = first["bbox"]
    text = f"S_INTERSECTS(geometry, BBOX({w - 0.01}, {s - 0.01}, {e + 0.01}, {n + 0.01}))"
    got = _ok(_query(sim, filter=text, limit="100"))  # every collection: root queryables
    assert first["id"] in _in_l1a(got)
