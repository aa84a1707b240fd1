"""``--filter-lang cql2-json`` end to end against the simulator, whose filters the ``cql2``
library evaluates: the JSON form of a filter finds the same items as its text form, by GET
and by POST, and a value compared in another case matches as MAAP's does."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stacpull.sim import SimServer

from .conftest import L1A, cli


def _ids(sim: SimServer, *args: str) -> list[str]:
    code, out, err = cli(
        "search", "--catalog", sim.catalog_url, "--collection", L1A, "--json", "--page-size", "3",
        *args,
    )  # fmt: skip
    assert code == 0, err
    return sorted(f["id"] for f in json.loads(out)["features"])


def _types(sim: SimServer) -> list[str]:
    code, out, err = cli("search", "--catalog", sim.catalog_url, "--collection", L1A, "--json")
    assert code == 0, err
    return sorted({f["properties"]["product:type"] for f in json.loads(out)["features"]})


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_json_filter_finds_what_its_text_form_finds(sim: SimServer, method: str) -> None:
    types = _types(sim)
    assert len(types) >= 2, types  # else the filter would select everything
    wanted = types[:1]
    text = f"\"product:type\" IN ('{wanted[0]}')"
    as_json: dict[str, Any] = {
        "op": "in", "args": [{"property": "product:type"}, wanted],
    }  # fmt: skip
    by_text = _ids(sim, "--filter", text, "--method", method)
    by_json = _ids(sim, "--filter-lang", "cql2-json", "--filter", json.dumps(as_json),
                   "--method", method)  # fmt: skip
    everything = _ids(sim)
    assert by_text and by_json == by_text and len(by_text) < len(everything)


def test_a_value_in_another_case_matches_as_maaps_does(sim: SimServer) -> None:
    wanted = _types(sim)[0]
    exact = _ids(sim, "--filter", f"\"product:type\" = '{wanted}'")
    folded = _ids(sim, "--filter", f"\"product:type\" = '{wanted.swapcase()}'")
    assert exact and folded == exact
