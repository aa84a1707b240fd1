"""Review of issue 20's merge: what the review found wanting, each shown against the sim.

* a window that cannot be split says so in the words of the config and the API, never
  naming a command-line flag (the API raises the same ConfigError);
* ``stacpull search -o`` of a catalogue that lists items again says so, as a mirror does;
* ``stacpull demo`` shows the third mission too: EarthCARE's HDF5 file, header and quicklook;
* ``sim serve --enclosure-size`` says which files it sizes (EarthCARE's HDF5 files too).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import stacpull
from stacpull.claims import listing_gap
from stacpull.errors import ConfigError
from stacpull.paging import time_windows
from stacpull.sim import SimCatalog, SimServer, default_collections
from stacpull.sim.results import ResultOrder
from stacpull.sim.server import SimOptions

from .conftest import L1A, cli, files_under


@pytest.mark.parametrize("span", [None, "../2025-10-01T00:00:00Z"], ids=["no range", "open start"])
def test_a_window_that_cannot_be_split_names_no_flag(span: str | None) -> None:
    with pytest.raises(ConfigError) as raised:
        time_windows(span, 86400)
    message = str(raised.value)
    assert message.startswith("search.window: ") and "--" not in message


def test_the_api_is_told_of_a_window_without_a_range_in_its_own_words() -> None:
    with pytest.raises(ConfigError) as raised:
        stacpull.search_items(
            catalog="http://127.0.0.1:9/catalogue/", collections=[L1A], window="1d"
        )
    assert "--" not in str(raised.value) and "datetime" in str(raised.value)


def test_the_listing_gap_names_the_setting_beside_the_flag() -> None:
    gap = listing_gap(3, 5, 2)
    assert gap is not None and "search.window" in gap


@pytest.fixture
def repeating() -> Iterator[SimServer]:
    """Pages of 2, each after the first listing the previous page's last item again in
    the place of one that no page lists: L1A's 5 items come as [0 1] [1 3] [3]."""
    catalog = SimCatalog(default_collections(count=5, product_size=50_000))
    options = SimOptions(results=ResultOrder(duplicates=1))
    with SimServer(catalog, options=options) as server:
        yield server


def test_a_saved_search_says_when_the_catalogue_listed_items_again(
    repeating: SimServer, tmp_path: Path
) -> None:
    out_file = tmp_path / "items.geojson"
    code, _out, err = cli(
        "search", "--catalog", repeating.catalog_url, "--collection", L1A,
        "--page-size", "2", "-o", str(out_file),
    )  # fmt: skip
    assert code == 0, err
    assert len(json.loads(out_file.read_text())["features"]) == 3
    assert "2 item(s) listed again by the catalogue: kept once" in err
    assert "warning: the search listed 3 distinct items of the 5" in err


def test_a_whole_saved_search_gets_no_warning(repeating: SimServer, tmp_path: Path) -> None:
    code, _out, err = cli(
        "search", "--catalog", repeating.catalog_url, "--collection", L1A,
        "--page-size", "10", "-o", str(tmp_path / "items.geojson"),
    )  # fmt: skip
    assert code == 0, err
    assert "warning" not in err and "listed again" not in err


def test_the_demo_downloads_earthcare_files_too(tmp_path: Path) -> None:
    dest = tmp_path / "demo"
    code, out, err = cli(
        "demo", "--items", "1", "--product-size", "10000", "--dest", str(dest),
        "--dashboard", "none",
    )  # fmt: skip
    assert code == 0, out + err
    names = [p.name for p in files_under(dest)]
    assert [n for n in names if n.endswith(".h5")] and [n for n in names if n.endswith(".HDR")]
    assert not [n for n in names if n.startswith("ECA_") and n.endswith(".ZIP")]


def test_enclosure_size_help_names_the_earthcare_files() -> None:
    code, out, _err = cli("sim", "serve", "--help")
    assert code == 0
    flat = " ".join(out.split())
    assert "HDF5" in flat[flat.index("--enclosure-size") :][:200]
