"""Issue 20: search results as the real MAAP returns them. Unordered pages and items listed
again (the sim's ``shuffle`` and ``duplicates`` knobs) are planned once and counted; a
listing whose distinct items miss ``numberMatched`` is warned of in the summary and the
report; the queryables renamed in February 2026 are shown in pairs and named in the hint
a rejected filter gets; ``--filter-lang cql2-json`` is sent as the server expects."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import pytest
from aiohttp import web

from stacpull.claims import listing_gap
from stacpull.renames import renamed_hint
from stacpull.sim import SimCatalog, SimServer, default_collections
from stacpull.sim.results import ResultOrder
from stacpull.sim.server import SimOptions

from .conftest import L1A, cli, files_under, sim_download
from .hostile import ThreadedApp, feature, landing


def _sim(**order: Any) -> SimServer:
    catalog = SimCatalog(default_collections(count=5, product_size=50_000))
    return SimServer(catalog, options=SimOptions(results=ResultOrder(**order)))


@pytest.fixture
def repeating() -> Iterator[SimServer]:
    """Pages of 2 where each page after the first lists the previous page's last item
    again in the place of one no page lists: L1A's 5 items come as [0 1] [1 3] [3]."""
    with _sim(duplicates=1) as server:
        yield server


def _ids(sim: SimServer, query: str) -> list[list[str]]:
    """The item ids of each page of a GET search, following rel=next."""
    url: str | None = f"{sim.catalog_url}search?{query}"
    pages = []
    while url:
        with urlopen(url) as answer:
            page = json.load(answer)
        pages.append([f["id"] for f in page["features"]])
        url = next((link["href"] for link in page["links"] if link["rel"] == "next"), None)
    return pages


def test_the_sim_lists_an_item_again_in_the_place_of_another(repeating: SimServer) -> None:
    pages = _ids(repeating, f"collections={L1A}&limit=2")
    ids = [repeating.catalog.item_id(repeating.catalog.specs[L1A], i) for i in range(5)]
    assert pages == [[ids[0], ids[1]], [ids[1], ids[3]], [ids[3]]]


def test_the_sim_shuffles_each_page_and_loses_nothing(tmp_path: Path) -> None:
    with _sim(shuffle=True, seed=3) as sim:
        pages = _ids(sim, f"collections={L1A}&limit=5")
        spec = sim.catalog.specs[L1A]
        ordered = [sim.catalog.item_id(spec, i) for i in range(5)]
        assert sorted(pages[0]) == sorted(ordered) and pages[0] != ordered
        code, _, err = sim_download(sim, tmp_path, "--page-size", "2")
    assert code == 0, err
    assert len(files_under(tmp_path)) == 15


def test_an_item_listed_again_is_planned_once_and_the_gap_is_warned_of(
    repeating: SimServer, tmp_path: Path
) -> None:
    code, out, err = sim_download(
        repeating, tmp_path, "--page-size", "2", "--json", command="mirror"
    )
    assert code == 0, err
    summary = json.loads(out)
    totals = summary["totals"]
    assert (totals["matched"], totals["listed"], totals["duplicates"]) == (5, 3, 2)
    assert totals["downloaded"] == 9  # 3 distinct items, 3 assets each
    fetched = Counter(r["path"] for r in repeating.requests)
    assert len(fetched) == 9 and set(fetched.values()) == {1}  # every file asked for once
    assert "3 distinct items of the 5" in summary["listing"]
    assert "2 never listed, 2 listed again" in summary["listing"]
    assert "warning: the search listed 3 distinct items of the 5" in err
    assert "listed 3 of 5 matching items" in summary["not_judged"]  # nothing judged gone
    report = json.loads((tmp_path / ".stacpull" / "last-report.json").read_text())
    assert report["listing"] == summary["listing"] and report["totals"]["listed"] == 3


def test_a_whole_listing_and_a_cut_one_are_not_warned_of(sim: SimServer, tmp_path: Path) -> None:
    code, out, err = sim_download(sim, tmp_path / "a", "--json", command="mirror")
    assert code == 0 and json.loads(out)["listing"] is None and "warning" not in err
    code, out, err = sim_download(sim, tmp_path / "b", "--max-items", "2", "--json")
    assert code == 0 and json.loads(out)["listing"] is None and "warning" not in err


def test_listing_gap_says_which_way_the_count_is_off() -> None:
    assert listing_gap(5, 5) is None and listing_gap(5, None) is None
    assert "more than the 4" in str(listing_gap(5, 4))
    short = str(listing_gap(3, 5))
    assert "2 never listed)" in short and "in their place" not in short and "--window" in short


# -- queryables renamed in February 2026 ---------------------------------------------------


class Catalogue(ThreadedApp):
    """A STAC API with filter support: its queryables are ``queryables``; a search whose
    filter names ``productType`` is refused with MAAP's terse 400; every search is kept."""

    def __init__(self, queryables: dict[str, Any]) -> None:
        super().__init__()
        self.queryables = queryables
        self.searches: list[tuple[str, dict[str, str], Any]] = []
        self.paths: list[str] = []
        self.features = 1  # items each search answers (0: none match)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.paths.append(request.path)
        if request.path == "/":
            page = landing(self.base)
            page["conformsTo"] += [
                "https://api.stacspec.org/v1.0.0-rc.2/item-search#filter",
                "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
                "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
                "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
            ]
            search = {"rel": "search", "href": self.base + "search", "method": "POST"}
            page["links"].append({**search, "type": "application/geo+json"})
            return web.json_response(page)
        if request.path.endswith("/queryables"):
            return web.json_response(self.queryables)
        if request.path == "/search":
            body = await request.json() if request.method == "POST" else None
            self.searches.append((request.method, dict(request.query), body))
            sent = json.dumps(body) if body else request.query.get("filter", "")
            if "productType" in sent:
                return web.json_response(
                    {"code": "InvalidParameterValue", "description": "Invalid filter"}, status=400
                )
            found = [feature(self.base, f"i{n}") for n in range(self.features)]
            page = {"type": "FeatureCollection", "features": found, "links": []}
            return web.json_response({**page, "numberMatched": len(found)})
        return web.json_response({"code": "NotFound"}, status=404)


NEW_NAMES = {
    "type": "object",
    "properties": {
        name: {"type": "string"} for name in ("product:type", "sat:absolute_orbit", "version")
    },
}


@pytest.fixture
def renamed() -> Iterator[Catalogue]:
    with Catalogue(NEW_NAMES) as server:
        yield server


def test_queryables_show_the_renamed_pairs(renamed: Catalogue, sim: SimServer) -> None:
    code, out, err = cli("queryables", "C1", "--catalog", renamed.base)
    assert code == 0, err
    assert "productType → product:type" in err and "orbitNumber → sat:absolute_orbit" in err
    assert "productVersion → version" in err and "old name is rejected" in err
    assert "→" not in out  # the listing itself stays whole and plain
    code, out, err = cli("queryables", "C1", "--catalog", renamed.base, "--json")
    by_name = {q["name"]: q for q in json.loads(out)}
    assert by_name["sat:absolute_orbit"]["renamed_from"] == "orbitNumber"
    assert by_name["version"]["renamed_to"] is None
    # The sim lists both names of two of them: each pair is said once.
    code, _, err = cli("queryables", L1A, "--catalog", sim.catalog_url)
    assert "instrument is the older name of instruments" in err


def test_real_queryables_with_the_old_names_are_paired(real_maap: Path) -> None:
    path = real_maap / "queryables-earthcare-2026-02" / "EarthCAREL2Validated_MAAP_queryables.json"
    with Catalogue(json.loads(path.read_text())) as real:
        code, out, err = cli("queryables", "EarthCAREL2Validated_MAAP", "--catalog", real.base)
        assert code == 0, err
        assert "productType → product:type" in err and "still lists the old names" in err
        code, out, _ = cli(
            "queryables", "EarthCAREL2Validated_MAAP", "--catalog", real.base, "--json"
        )
    by_name = {q["name"]: q for q in json.loads(out)}
    assert by_name["productType"]["renamed_to"] == "product:type"


def test_a_filter_with_an_old_name_gets_a_hint_when_rejected(renamed: Catalogue) -> None:
    base = ("search", "--catalog", renamed.base, "--collection", "C1")
    code, _, err = cli(*base, "--filter", "productType='ATL_NOM_1B' and version='BA'")
    assert code != 0
    assert "Invalid filter" in err and "productType is now product:type" in err
    assert "version is now" not in err  # only the old names it used
    code, _, err = cli(*base, "--filter", "product:type='ATL_NOM_1B'")
    assert code == 0 and "renamed" not in err, err


def test_renamed_hint_reads_names_not_values() -> None:
    assert renamed_hint("product:type='productType'") == ""
    assert "orbitNumber is now" in renamed_hint('"orbitNumber" > 3')
    as_json = '{"op": "=", "args": [{"property": "orbitDirection"}, "ASCENDING"]}'
    assert "orbitDirection is now sat:orbit_state" in renamed_hint(as_json)


# -- --filter-lang cql2-json ----------------------------------------------------------------

JSON_FILTER = {"op": "=", "args": [{"property": "product:type"}, "ATL_NOM_1B"]}


def test_a_cql2_json_filter_is_sent_as_each_method_expects(
    renamed: Catalogue, tmp_path: Path
) -> None:
    text = json.dumps(JSON_FILTER)
    base = ("search", "--catalog", renamed.base, "--collection", "C1", "--filter-lang", "cql2-json")
    code, _, err = cli(*base, "--filter", text)
    assert code == 0, err
    method, query, _ = renamed.searches[-1]
    assert method == "GET" and query["filter-lang"] == "cql2-json"
    assert json.loads(query["filter"]) == JSON_FILTER
    saved = tmp_path / "filter.json"
    saved.write_text(json.dumps(JSON_FILTER, indent=2))
    code, _, err = cli(*base, "--filter", f"@{saved}", "--method", "POST")
    assert code == 0, err
    method, _, body = renamed.searches[-1]
    assert method == "POST" and body["filter"] == JSON_FILTER  # an object, not text
    assert body["filter-lang"] == "cql2-json"


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("product:type='x'", "not CQL2-JSON"),
        ('["op"]', 'an object with an "op"'),
        ("@/nonexistent/filter.json", "cannot read"),
    ],
)
def test_a_bad_cql2_json_filter_is_refused_before_any_search(value: str, says: str) -> None:
    code, _, err = cli(
        "search", "--catalog", "http://127.0.0.1:9/", "--filter-lang", "cql2-json",
        "--filter", value,
    )  # fmt: skip
    assert code == 2 and says in err, err


def test_empty_windows_do_not_each_look_up_the_collections(renamed: Catalogue) -> None:
    """An empty search looks up whether its collection id is wrong; of a windowed search
    only the first window does, not each of the (many) empty days."""
    renamed.features = 0
    code, _, err = cli(
        "search", "--catalog", renamed.base, "--collection", "C1",
        "--datetime", "2025-01-01/2025-01-10", "--window", "1d",
    )  # fmt: skip
    assert code == 0 and "0 item(s) matched" in err, err
    windows = {query["datetime"] for _, query, _ in renamed.searches}
    assert len(windows) == 10 and min(windows).startswith("2025-01-01T00:00:00Z/")
    assert renamed.paths.count("/collections") == 1
