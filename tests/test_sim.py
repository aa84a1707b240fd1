"""The simulated catalogue behaves like MAAP: STAC API, CQL2, paging, ranges, validators, auth."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import pytest

from stacpull.headers import format_http_date
from stacpull.sim import SimServer
from stacpull.sim.cql2 import CQL2Error, parse_cql2

from .conftest import FLEX, L1A, L1C, TOKEN, http_get, http_json


def test_landing_conformance_collections_and_queryables(sim: SimServer) -> None:
    landing = http_json(sim.catalog_url)
    assert landing["id"] == "fedeo" and any("item-search" in c for c in landing["conformsTo"])
    assert http_get(sim.catalog_url.rstrip("/"))[0] == 503  # MAAP's slashless root
    ids = [c["id"] for c in http_json(sim.catalog_url + "collections")["collections"]]
    assert ids == [L1A, L1C, FLEX, "EarthCAREL1Validated_MAAP", "EarthCAREL2Validated_MAAP"]
    assert [c["id"] for c in http_json(sim.catalog_url + "collections?q=flex")["collections"]] == [
        FLEX
    ]
    queryables = http_json(f"{sim.catalog_url}collections/{L1A}/queryables")["properties"]
    assert "product:type" in queryables and "productType" in queryables


def test_search_filters_and_paging(sim: SimServer) -> None:
    base = f"{sim.catalog_url}search?collections={L1A}"
    page = http_json(base + "&limit=2")
    assert page["numberMatched"] == 5 and len(page["features"]) == 2
    seen = [f["id"] for f in page["features"]]
    while nxt := next((link for link in page["links"] if link["rel"] == "next"), None):
        page = http_json(nxt["href"])
        seen += [f["id"] for f in page["features"]]
    assert len(seen) == len(set(seen)) == 5
    one = http_json(
        base + "&filter=" + urllib.request.quote("productType='S1_SCS__1S' and instrument='P-SAR'")
    )
    assert one["numberMatched"] == 2
    window = http_json(base + "&datetime=2025-09-29T00:02:10Z/2025-09-29T00:04:05Z")
    assert window["numberMatched"] == 2  # items overlapping the interval, not starting in it


def test_cql2_errors_are_400s_naming_the_problem(sim: SimServer) -> None:
    status, _, body = http_get(
        f"{sim.catalog_url}search?collections={L1A}&filter=" + urllib.request.quote("nope='x'")
    )
    assert status == 400 and b"unknown queryable" in body


@pytest.mark.parametrize(
    ("text", "props", "expected"),
    [
        ("a='x' AND b<>'y'", {"a": "x", "b": "z"}, True),
        ("a='x' or a='z'", {"a": "z"}, True),
        ("n > 3 AND n < 5", {"n": 4}, True),
        ("t > TIMESTAMP('2025-05-23T00:00:00.000Z')", {"t": "2025-06-01T00:00:00Z"}, True),
        ("t > TIMESTAMP('2025-05-23T00:00:00.000Z')", {"t": "2025-01-01T00:00:00Z"}, False),
        ("NOT (a='x')", {"a": "x"}, False),
        ("product:type='S1'", {"product:type": "S1"}, True),
    ],
)
def test_cql2_subset(text: str, props: dict[str, Any], expected: bool) -> None:
    assert parse_cql2(text)(props) is expected


@pytest.mark.parametrize(
    "text", ["a =", "a = 'x' AND", "(a='x'", "a ~ 'x'", "TIMESTAMP(3) > a", ""]
)
def test_cql2_syntax_errors(text: str) -> None:
    with pytest.raises(CQL2Error):
        parse_cql2(text)


def test_static_files_serve_ranges_and_validators(sim: SimServer) -> None:
    href = sim.catalog.item(L1C, 0)["assets"]["quicklook_png"]["href"]
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert http_get(href)[0] == 401
    status, headers, body = http_get(href, auth)
    assert status == 200 and body.startswith(b"\x89PNG")
    etag, modified, size = headers["ETag"], headers["Last-Modified"], len(body)
    status, headers, part = http_get(href, {**auth, "Range": "bytes=10-", "If-Range": etag})
    assert (
        status == 206
        and part == body[10:]
        and headers["Content-Range"] == f"bytes 10-{size - 1}/{size}"
    )
    assert http_get(href, {**auth, "Range": "bytes=10-", "If-Range": modified})[0] == 206
    assert http_get(href, {**auth, "Range": "bytes=10-", "If-Range": '"stale"'})[0] == 200
    assert http_get(href, {**auth, "Range": "bytes=10-", "If-Range": format_http_date(0)})[0] == 200
    status, headers, _ = http_get(href, {**auth, "Range": f"bytes={size}-"})
    assert status == 416 and headers["Content-Range"] == f"bytes */{size}"


def test_zipper_streams_without_length_or_ranges_and_public_needs_no_token(sim: SimServer) -> None:
    item = sim.catalog.item(L1A, 0)
    status, headers, body = http_get(
        item["assets"]["product"]["href"],
        {"Authorization": f"Bearer {TOKEN}", "Range": "bytes=10-"},
    )
    assert (
        status == 200
        and "Content-Length" not in headers
        and headers.get("Transfer-Encoding") == "chunked"
    )
    assert body.startswith(b"PK\x03\x04")
    assert http_get(item["assets"]["thumbnail"]["href"])[0] == 200
    assert http_get(sim.base_url + "/data/nothing/here/at/all/x/y/z")[0] == 401
