"""Issue 20: ``--window`` splits a long datetime range into searches searched in order, an
item on a window's edge taken once, numberMatched summed so a mirror's listing still adds
up, and the journal's resume unchanged (pure windows arithmetic, then the sim)."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import stacpull
from stacpull.config import SearchConfig
from stacpull.errors import ConfigError
from stacpull.paging import time_windows, windowed
from stacpull.sim import SimServer

from .conftest import L1A, cli, files_under, pull, sim_download

#: The sim's L1A items start every 2 minutes from 2025-09-29T00:00 and last 21 s; windows
#: of 250 s have edges at 00:04:10 and 00:08:20, inside items 2 and 4.
SPAN = "2025-09-29T00:00:00Z/2025-09-29T00:10:00Z"


# -- the windows themselves ---------------------------------------------------------------


def test_a_range_is_cut_into_consecutive_windows_oldest_first() -> None:
    assert time_windows("2025-01-01T00:00:00Z/2025-01-03T00:00:00Z", 86400) == [
        "2025-01-01T00:00:00Z/2025-01-02T00:00:00Z",
        "2025-01-02T00:00:00Z/2025-01-03T00:00:00Z",
    ]
    assert time_windows("2025-01-01T06:00:00Z/2025-01-01T20:00:00Z", 6 * 3600) == [
        "2025-01-01T06:00:00Z/2025-01-01T12:00:00Z",
        "2025-01-01T12:00:00Z/2025-01-01T18:00:00Z",
        "2025-01-01T18:00:00Z/2025-01-01T20:00:00Z",  # the last ends where the range does
    ]


def test_a_date_end_covers_its_whole_day_and_an_instant_its_period() -> None:
    days = time_windows("2025-01-01/2025-01-02", 86400)
    assert days == [
        "2025-01-01T00:00:00Z/2025-01-02T00:00:00Z",
        "2025-01-02T00:00:00Z/2025-01-02T23:59:59.999999Z",
    ]
    month = time_windows("2025-02", 7 * 86400)
    assert len(month) == 4 and month[-1].endswith("/2025-02-28T23:59:59.999999Z")


def test_an_open_end_ends_now() -> None:
    now = datetime(2025, 1, 3, 12, tzinfo=UTC)
    assert time_windows("2025-01-01T00:00:00Z/..", 86400, now=now)[-1] == (
        "2025-01-03T00:00:00Z/2025-01-03T12:00:00Z"
    )


@pytest.mark.parametrize(
    ("span", "step", "says"),
    [
        (None, 86400.0, "needs a datetime range"),
        ("../2025-01-01", 86400.0, "open start"),
        ("2025-01-01/2026-01-01", 1.0, "longer window"),
        ("2025-01-01/2025-01-02", 0.0, "above zero"),
    ],
)
def test_a_range_that_cannot_be_split_says_why(span: str | None, step: float, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        time_windows(span, step)


def test_the_config_refuses_a_window_without_a_range_before_any_search() -> None:
    with pytest.raises(ConfigError, match=r"search\.window: a window needs a datetime"):
        SearchConfig(window="1d")
    assert SearchConfig(datetime="2025-01-01/2025-01-02", window="6h").window == 6 * 3600
    code, _, err = cli("search", "--catalog", "http://127.0.0.1:9/", "--window", "1d")
    assert code == 2 and "needs a datetime range" in err


def _item(item_id: str) -> dict[str, Any]:
    return {"id": item_id, "collection": "C"}


@pytest.mark.anyio
async def test_windowed_takes_an_edge_item_once_and_sums_matched_less_the_repeats() -> None:
    answers = {
        "w1": [([_item("a"), _item("b")], 3), ([_item("c")], 3)],
        "w2": [([_item("c"), _item("d")], 2)],  # c crosses the edge
        "w3": [([], 0)],
    }

    async def search(span: str) -> AsyncGenerator[tuple[list[dict[str, Any]], int | None], None]:
        for page in answers[span]:
            yield page

    pages = [page async for page in windowed(["w1", "w2", "w3"], search)]
    assert [[i["id"] for i in items] for items, _ in pages] == [["a", "b"], ["c"], ["d"], []]
    assert [matched for _, matched in pages] == [3, 3, 4, 4]  # 3 + 2 - 1, then + 0
    cut = [page async for page in windowed(["w1", "w2"], search, most=3)]
    assert sum(len(items) for items, _ in cut) == 3


@pytest.mark.anyio
async def test_a_window_without_a_count_leaves_matched_unknown() -> None:
    async def search(span: str) -> AsyncGenerator[tuple[list[dict[str, Any]], int | None], None]:
        yield [_item(span)], (None if span == "w2" else 1)

    pages = [page async for page in windowed(["w1", "w2", "w3"], search)]
    assert [matched for _, matched in pages] == [1, None, None]


# -- against the simulator ----------------------------------------------------------------


def test_search_in_windows_lists_each_item_once(sim: SimServer, tmp_path: Path) -> None:
    out = tmp_path / "items.geojson"
    whole = stacpull.search_items(catalog=sim.catalog_url, collections=[L1A], datetime=SPAN)
    windowed_items = stacpull.search_items(
        catalog=sim.catalog_url,
        collections=[L1A],
        datetime=SPAN,
        window="250s",
        page_size=2,
        output=str(out),
    )
    assert len(whole) == 5
    assert [i["id"] for i in windowed_items] == [i["id"] for i in whole]  # in window order
    saved = json.loads(out.read_text())
    assert sorted(f["id"] for f in saved["features"]) == sorted(i["id"] for i in whole)
    code, _, err = cli(
        "search", "--catalog", sim.catalog_url, "--collection", L1A, "--datetime", SPAN,
        "--window", "250s", "--page-size", "2",
    )  # fmt: skip
    assert code == 0 and "5 item(s) matched" in err, err


def test_a_windowed_mirror_is_whole_and_its_journal_resumes(sim: SimServer, tmp_path: Path) -> None:
    """A cut windowed mirror, then the same mirror whole: the second run fetches what the
    first did not, nothing twice; a third run without windows finds it all up to date
    (the windows are no part of the mirror's scope)."""
    window = ("--datetime", SPAN, "--window", "250s", "--page-size", "2")
    code, _, err = sim_download(sim, tmp_path, *window, "--max-items", "2", command="mirror")
    assert code == 0, err
    assert len(files_under(tmp_path)) == 6  # 2 items, 3 assets each
    code, out, err = sim_download(sim, tmp_path, *window, "--json", command="mirror")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["totals"]["matched"] == 5 and summary["totals"]["listed"] == 5
    assert summary["totals"]["duplicates"] == 0  # an edge item is no repeat
    assert summary["listing"] is None and summary["not_judged"] is None
    assert summary["totals"]["downloaded"] == 9 and summary["totals"]["skipped"] == 6
    assert len(files_under(tmp_path)) == 15
    before = len(sim.requests)
    code, out, err = sim_download(sim, tmp_path, "--datetime", SPAN, command="mirror")
    assert code == 0 and "up to date" in out, out + err
    assert len(sim.requests) == before


def test_a_windowed_download_through_the_api(sim: SimServer, tmp_path: Path) -> None:
    result = pull(sim, tmp_path, datetime=SPAN, window="250s")
    assert result.ok and result.items == 5 and result.duplicates == 0
    assert len(files_under(tmp_path)) == 15
