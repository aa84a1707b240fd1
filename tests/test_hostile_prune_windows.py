"""Issue 20, attacks on ``mirror --prune`` now that a search can run window by window
(``--window``) and results come unordered with items listed again (the sim's
:class:`~stacpull.sim.results.ResultOrder`): every file of an item still in the catalogue
survives, and an item is pruned only after a listing that is provably complete.

Real runs against the simulated catalogue; a small reverse proxy in this file plays a
catalogue that lies about one window (its count, its items, a failing page) or answers
its lookups by id differently.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from aiohttp import web

import stacpull
from stacpull.paging import windowed
from stacpull.sim import SimCatalog, SimServer, default_collections
from stacpull.sim.results import ResultOrder
from stacpull.sim.server import SimOptions

from .conftest import L1A, TOKEN, files_under, sim_download
from .hostile import SimProxy

#: Four hour-long windows on a day the sim's own L1A items do not touch: only the items a
#: test adds (:func:`_add`) match it.
DAY = "2025-10-01T"
SPAN = f"{DAY}00:00:00Z/{DAY}04:00:00Z"
WINDOWS = [f"{DAY}0{h}:00:00Z/{DAY}0{h + 1}:00:00Z" for h in range(4)]


def _sim(**order: Any) -> SimServer:
    catalog = SimCatalog(default_collections(count=5, product_size=20_000))
    return SimServer(catalog, options=SimOptions(results=ResultOrder(**order)))


def _add(sim: SimServer, item_id: str, start: str, end: str | None = None) -> None:
    """An L1A item ``item_id`` over ``start``..``end`` (times of :data:`DAY`), a copy of the
    sim's first item; added items are listed after the sim's own, in the order added."""
    donor = sim.catalog.item(L1A, 0)
    first, last = DAY + start + "Z", DAY + (end or start) + "Z"
    properties = {
        **donor["properties"],
        "datetime": first,
        "start_datetime": first,
        "end_datetime": last,
    }
    sim.catalog.add_item(L1A, {**donor, "id": item_id, "properties": properties})


def _drop(sim: SimServer, item_id: str) -> None:
    """An added item leaves the catalogue (``remove_item`` takes the sim's own items)."""
    extra = sim.catalog.knobs.extra[L1A]
    extra[:] = [item for item in extra if item["id"] != item_id]


def _mirror(catalog: SimServer | str, dest: Path, *extra: str) -> dict[str, Any]:
    code, out, err = sim_download(
        catalog, dest, "--datetime", SPAN, "--retries", "1", "--json", *extra, command="mirror"
    )
    assert code == 0, out + err
    summary: dict[str, Any] = json.loads(out)
    return summary


def _items(dest: Path) -> set[str]:
    return {p.name for p in (dest / L1A).iterdir()} if (dest / L1A).is_dir() else set()


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in files_under(root)}


# -- 1. an edge item listed twice in the next window --------------------------------------


def _page(*ids: str) -> list[dict[str, Any]]:
    return [{"id": i, "collection": "C"} for i in ids]


@pytest.mark.anyio
async def test_an_edge_item_listed_twice_in_the_next_window_is_left_out_once() -> None:
    """Window 2 matches e (the edge), z and b, but lists e twice and z never (MAAP's
    unordered paging): numberMatched is 2 + 3 less the one edge item, 4, and the listing
    must come up one short of it, never "complete" with z unseen."""
    answers = {
        "w1": [(_page("a", "e"), 2)],
        "w2": [(_page("e", "b"), 3), (_page("e"), 3)],  # e again, in z's place
    }

    async def search(span: str) -> AsyncGenerator[tuple[list[dict[str, Any]], int | None], None]:
        for page in answers[span]:
            yield page

    pages = [page async for page in windowed(["w1", "w2"], search)]
    assert pages[-1][1] == 4  # 2 + 3 - 1: e is one item on the edge, however often listed
    passed = [item["id"] for items, _ in pages for item in items]
    assert sorted(set(passed)) == ["a", "b", "e"]  # z never listed: 3 distinct of 4


def _edges(sim: SimServer) -> None:
    """Seven items over the four windows of :data:`SPAN`, added in an order where each
    window's first page of 2 ends with the item it shares with the window before: with
    ``duplicates=1`` that item comes back on the next page in place of the window's last
    one (h2, h3, h4), which no page of the windowed search then lists."""
    _add(sim, "p4", "03:30:00")
    _add(sim, "e4", "02:50:00", "03:10:00")
    _add(sim, "e3", "01:50:00", "02:10:00")
    _add(sim, "e2", "00:50:00", "01:10:00")
    _add(sim, "h2", "01:30:00")
    _add(sim, "h3", "02:30:00")
    _add(sim, "h4", "03:40:00")


@pytest.mark.parametrize("shuffle", [False, True])
def test_edge_items_listed_again_never_get_a_hidden_item_pruned(
    tmp_path: Path, shuffle: bool
) -> None:
    """A first mirror without windows (one page: nothing repeated) fetches all seven items;
    the same mirror in windows of 1 h, pages of 2, lists four: the three it never listed
    are still in the catalogue, so nothing is pruned and the gap is said."""
    with _sim(duplicates=1, shuffle=shuffle) as sim:
        _edges(sim)
        first = _mirror(sim, tmp_path, "--page-size", "10")
        assert first["totals"]["listed"] == 7
        before = _tree(tmp_path)
        summary = _mirror(sim, tmp_path, "--window", "1h", "--page-size", "2", "--prune")
    assert _items(tmp_path) == {"p4", "e4", "e3", "e2", "h2", "h3", "h4"}
    assert _tree(tmp_path) == before
    assert summary["totals"]["listed"] == 4 and summary["totals"]["matched"] == 7
    assert "4 distinct items of the 7" in summary["listing"]
    assert summary["not_judged"] and "listed 4 of 7" in summary["not_judged"]


# -- 2. a window that lies, and the lookups by id that must catch it ----------------------


class _Catalogue(SimProxy):
    """A reverse proxy in front of the sim's STAC API (GET searches) that lies about some
    windows: searches whose datetime is a key of ``less`` answer a numberMatched that
    much lower (or ``matched[span]`` in its place: too high, missing, a string); items of
    ``hidden`` are left out of every search not by id, those of ``hidden_in[span]`` out of
    that window's; a later page of a window in
    ``failing`` answers 500. ``ids`` says how a lookup by id is answered: "honest",
    "ignored" (the ``ids`` parameter dropped: the whole range comes back), "uncounted" (no
    numberMatched), or both, or "refused" (a 400: too long a range for one search). Data
    requests go to the sim itself."""

    def __init__(self, sim: SimServer) -> None:
        super().__init__(sim)
        self.less: dict[str, int] = {}
        self.matched: dict[str, Any] = {}
        self.hidden: set[str] = set()
        self.hidden_in: dict[str, set[str]] = {}
        self.failing: set[str] = set()
        self.ids = "honest"
        self.lookups = 0

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        query = {k: v[0] for k, v in parse_qs(request.query_string).items()}
        span = query.get("datetime", "")
        if not request.path.endswith("/search") or request.method != "GET":
            return self.answer(*reversed(await self.forward(request, body)))
        lookup = "ids" in query
        if lookup:
            self.lookups += 1
            if self.ids == "refused":
                refusal = {"code": "Bad", "description": "range too long"}
                return web.json_response(refusal, status=400)
            if "ignored" in self.ids:
                query.pop("ids")
                request = request.clone(rel_url=request.rel_url.with_query(query))
        elif "token" in query and span in self.failing:
            return web.json_response({"code": "Bad", "description": "window lost"}, status=500)
        status, text = await self.forward(request, body)
        if status == 200 and lookup and "uncounted" in self.ids:
            page = json.loads(text)
            del page["numberMatched"]
            text = json.dumps(page)
        elif status == 200 and not lookup:
            page = json.loads(text)
            hidden = self.hidden | self.hidden_in.get(span, set())
            page["features"] = [f for f in page["features"] if f["id"] not in hidden]
            if span in self.less:
                page["numberMatched"] -= self.less[span]
            if span in self.matched:
                page["numberMatched"] = self.matched[span]
            if page.get("numberMatched", 0) is None:
                del page["numberMatched"]
            text = json.dumps(page)
        return self.answer(text, status)


@pytest.fixture
def catalogue() -> Iterator[_Catalogue]:
    """The proxy in front of a sim that lists each item once, in order."""
    with _sim() as sim, _Catalogue(sim) as proxy:
        yield proxy


@pytest.fixture
def repeating() -> Iterator[_Catalogue]:
    """The proxy in front of a sim whose pages after the first each list the previous
    page's last item again in the place of another (MAAP's unordered offset paging)."""
    with _sim(duplicates=1) as sim, _Catalogue(sim) as proxy:
        yield proxy


def _quiet_window(sim: SimServer) -> None:
    """Two items in each window but the second, which holds u1, u2, u3: a window lists
    one page (no repeats), while a search of the whole range pages, u1.. after the rest."""
    for n, start in enumerate(["00:10:00", "00:20:00", "02:10:00", "02:20:00"]):
        _add(sim, f"z{n}", start)
    _add(sim, "a", "03:10:00")
    _add(sim, "b", "03:20:00")
    for n in (1, 2, 3):
        _add(sim, f"u{n}", f"01:{10 * n}:00")


@pytest.mark.parametrize("ids", ["honest", "ignored", "uncounted", "ignored-uncounted"])
def test_a_window_counting_low_never_gets_items_pruned_that_a_lookup_by_id_misses(
    repeating: _Catalogue, tmp_path: Path, ids: str
) -> None:
    """The second window hides u1..u3 and counts three fewer, so the listing adds up; the
    lookup by id of the three then comes back in pages of 2 with one item repeated in the
    place of another (or, the ``ids`` ignored, as the whole range cut at twice the ids
    asked for). A lookup that lists fewer distinct items than it counts proves nothing
    gone: every item stays."""
    _quiet_window(repeating.sim)
    assert _mirror(repeating.url, tmp_path, "--page-size", "20")["totals"]["listed"] == 9
    before = _tree(tmp_path)
    repeating.hidden = {"u1", "u2", "u3"}
    repeating.less = {WINDOWS[1]: 3}
    repeating.ids = ids
    summary = _mirror(repeating.url, tmp_path, "--window", "1h", "--page-size", "2", "--prune")
    assert repeating.lookups > 0
    assert {"u1", "u2", "u3"} <= _items(tmp_path), "an item still in the catalogue was pruned"
    assert _tree(tmp_path) == before
    assert summary["not_judged"] and "looked up" in summary["not_judged"]


def test_a_lookup_that_ignores_the_ids_and_counts_nothing_proves_nothing_gone(
    catalogue: _Catalogue, tmp_path: Path
) -> None:
    """No repeats this time: the lookup answers the whole range without a count, cut at
    twice the ids asked for, items that were not asked for among them. Nothing it did not
    list is gone on its word."""
    _quiet_window(catalogue.sim)
    assert _mirror(catalogue.url, tmp_path, "--page-size", "20")["totals"]["listed"] == 9
    before = _tree(tmp_path)
    catalogue.hidden = {"u1", "u2", "u3"}
    catalogue.less = {WINDOWS[1]: 3}
    catalogue.ids = "ignored-uncounted"
    summary = _mirror(catalogue.url, tmp_path, "--window", "1h", "--page-size", "2", "--prune")
    assert catalogue.lookups > 0
    assert {"u1", "u2", "u3"} <= _items(tmp_path), "an item still in the catalogue was pruned"
    assert _tree(tmp_path) == before
    assert summary["not_judged"] and "looked up" in summary["not_judged"]


@pytest.mark.parametrize("order", [{}, {"duplicates": 1}, {"shuffle": True, "duplicates": 1}])
def test_an_item_gone_from_a_windowed_mirror_is_still_pruned(
    tmp_path: Path, order: dict[str, Any]
) -> None:
    """The other side: a complete windowed listing (one page a window, however the sim
    orders and repeats), an item that left, its lookup by id empty: pruned, the rest kept;
    then the same mirror without windows prunes the next one that leaves."""
    with _sim(**order) as sim:
        _quiet_window(sim)
        assert _mirror(sim, tmp_path, "--window", "1h", "--page-size", "3")["not_judged"] is None
        _drop(sim, "u2")
        summary = _mirror(sim, tmp_path, "--window", "1h", "--page-size", "3", "--prune")
        assert summary["not_judged"] is None and summary["pruned"] == 3
        assert _items(tmp_path) == {"z0", "z1", "z2", "z3", "a", "b", "u1", "u3"}
        _drop(sim, "z1")  # and the same mirror without windows (one page: no repeats)
        summary = _mirror(sim, tmp_path, "--page-size", "20", "--prune")
    assert summary["not_judged"] is None and summary["pruned"] == 3
    assert _items(tmp_path) == {"z0", "z2", "z3", "a", "b", "u1", "u3"}


# -- 3. windows that fail, miscount, or list an item late ---------------------------------


def test_a_window_whose_later_page_fails_judges_nothing_gone(
    catalogue: _Catalogue, tmp_path: Path
) -> None:
    from stacpull.retry import testing

    _quiet_window(catalogue.sim)
    _mirror(catalogue.url, tmp_path, "--page-size", "20")
    before = _tree(tmp_path)
    _drop(catalogue.sim, "a")  # left the catalogue: still not pruned after a broken search
    catalogue.failing = {WINDOWS[1]}  # its second page of 2 answers 500
    with testing():
        code, out, err = sim_download(
            catalogue.url, tmp_path, "--datetime", SPAN, "--window", "1h", "--page-size", "2",
            "--retries", "1", "--prune", command="mirror",
        )  # fmt: skip
    assert code == 2 and "window lost" in err, out + err
    assert catalogue.lookups == 0 and _tree(tmp_path) == before


@pytest.mark.parametrize("matched", [99, None, "3", -1, True])
def test_a_window_miscounting_never_gets_a_listed_or_hidden_item_pruned(
    catalogue: _Catalogue, tmp_path: Path, matched: Any
) -> None:
    """The second window hides u1..u3 and says a count too high, none, or no count (a
    string, a negative, a bool); b left the catalogue. Too high: nothing is judged. No
    count: the lookup by id finds the u's, so only b's files go."""
    _quiet_window(catalogue.sim)
    _mirror(catalogue.url, tmp_path, "--page-size", "20")
    _drop(catalogue.sim, "b")
    catalogue.hidden_in = {WINDOWS[1]: {"u1", "u2", "u3"}}
    catalogue.matched = {WINDOWS[1]: matched}
    summary = _mirror(catalogue.url, tmp_path, "--window", "1h", "--page-size", "2", "--prune")
    everything = {"z0", "z1", "z2", "z3", "a", "b", "u1", "u2", "u3"}
    if matched == 99:
        assert summary["not_judged"] and "listed 5 of 104" in summary["not_judged"]
        assert _items(tmp_path) == everything
    else:
        assert summary["totals"]["matched"] is None and summary["not_judged"] is None
        assert summary["pruned"] == 3 and _items(tmp_path) == everything - {"b"}


def test_an_edge_item_listed_in_the_later_window_only_is_kept_and_nothing_judged(
    catalogue: _Catalogue, tmp_path: Path
) -> None:
    """e crosses the first edge; the first window counts it but leaves it out, the second
    lists it: its files stay, and the first window's gap keeps anything from being judged."""
    _quiet_window(catalogue.sim)
    _add(catalogue.sim, "e", "00:50:00", "01:10:00")
    _mirror(catalogue.url, tmp_path, "--page-size", "20")
    before = _tree(tmp_path)
    _drop(catalogue.sim, "a")
    catalogue.hidden_in = {WINDOWS[0]: {"e"}}
    summary = _mirror(catalogue.url, tmp_path, "--window", "1h", "--page-size", "5", "--prune")
    assert summary["totals"]["listed"] == 9 and summary["totals"]["matched"] == 10
    assert summary["not_judged"] and _tree(tmp_path) == before


def test_a_lookup_by_id_refused_over_the_whole_range_judges_nothing_gone(
    catalogue: _Catalogue, tmp_path: Path
) -> None:
    """Windows search an hour at a time; the lookup asks over the whole range at once,
    which this catalogue refuses: nothing is judged, the item that left is kept."""
    _quiet_window(catalogue.sim)
    _mirror(catalogue.url, tmp_path, "--page-size", "20")
    before = _tree(tmp_path)
    _drop(catalogue.sim, "a")
    catalogue.ids = "refused"
    summary = _mirror(catalogue.url, tmp_path, "--window", "1h", "--page-size", "5", "--prune")
    assert catalogue.lookups == 1 and _tree(tmp_path) == before
    assert "could not be looked up" in summary["not_judged"]


def test_windows_with_max_items_never_prune(tmp_path: Path) -> None:
    """--prune with --max-items is refused on the command line; through the API, a cut
    windowed mirror judges nothing gone, whatever left."""
    with _sim() as sim:
        _quiet_window(sim)
        _mirror(sim, tmp_path, "--page-size", "20")
        before = _tree(tmp_path)
        _drop(sim, "a")
        code, out, err = sim_download(
            sim, tmp_path, "--datetime", SPAN, "--window", "1h", "--max-items", "3", "--prune",
            command="mirror",
        )  # fmt: skip
        assert code == 2 and "--prune needs the complete search" in err, out + err
        result = stacpull.mirror(
            catalog=sim.catalog_url, collections=[L1A], dest=str(tmp_path), token=TOKEN,
            datetime=SPAN, window="1h", max_items=3, prune=True,
        )  # fmt: skip
    assert result.pruned == 0 and "--max-items" in (result.not_judged or "")
    assert _tree(tmp_path) == before
