"""The final review of issue 16: holes left where the merged branches meet, each against a
loopback catalogue."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp.web
import anyio
import pytest

import stacpull

from .hostile import SearchApi, feature, serve_api


class Catalogue(SearchApi):
    """A STAC API listing :attr:`ids`; a search by ``ids`` (a mirror's lookup of what it
    did not list) is answered with :attr:`lookup` when set."""

    def __init__(self, ids: list[str]) -> None:
        self.ids = ids
        self.lookup: list[Any] | None = None
        self.locations: dict[str, str] = {}

    async def search(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        body = await request.json() if request.method == "POST" else dict(request.query)
        if body.get("ids") and self.lookup is not None:
            features = self.lookup
        else:
            features = [feature(self.base, i) for i in self.ids]
        return aiohttp.web.json_response(
            {"type": "FeatureCollection", "features": features, "numberMatched": len(features)}
        )

    async def data(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        name = request.match_info["name"]
        if name.startswith("moved"):  # a redirect to where no URL can lead
            return aiohttp.web.Response(status=302, headers={"Location": self.locations[name]})
        return aiohttp.web.Response(body=name.encode() * 10)


async def _mirror_twice(api: Catalogue, dest: Path, password: str = "") -> stacpull.RunResult:
    """Mirror ``api``'s two items into ``dest``, then again with --prune (the catalogue
    reached with ``password`` when given): the second run's result."""
    server = await serve_api(api)
    try:
        catalog = api.base.replace("http://", f"http://cat:{password}@") if password else api.base
        options: dict[str, Any] = {"catalog": catalog, "collections": ["C1"], "assets": ["all"]}
        first = await stacpull.amirror(dest=str(dest), **options)
        assert first.downloaded == 2, first
        with anyio.fail_after(10):
            return await stacpull.amirror(dest=str(dest), prune=True, **options)
    finally:
        await server.close()


@pytest.mark.anyio
@pytest.mark.parametrize("junk", [[], {"a": 1}, None])
async def test_a_lookup_answering_an_item_whose_id_is_no_string_ends_no_mirror(
    tmp_path: Any, junk: Any
) -> None:
    """The mirror's lookup by id of an unlisted item meets a hostile answer: a feature
    whose id is a list or an object ended the run with a TypeError traceback."""
    api = Catalogue(["a", "b"])
    server = await serve_api(api)
    try:
        options: dict[str, Any] = {"catalog": api.base, "collections": ["C1"], "assets": ["all"]}
        first = await stacpull.amirror(dest=str(tmp_path), **options)
        assert first.downloaded == 2
        api.ids = ["a"]
        api.lookup = [feature(api.base, junk)]
        with anyio.fail_after(10):
            second = await stacpull.amirror(dest=str(tmp_path), prune=True, **options)
    finally:
        await server.close()
    assert second.gone == ("C1/b/b.bin",)
    assert second.pruned == 1


@pytest.mark.anyio
@pytest.mark.parametrize("item", ["tile;key=12", "tile&sig=0042"])
async def test_an_item_id_the_scrubber_would_change_is_not_its_own_collider(
    tmp_path: Any, item: str
) -> None:
    """The journal keeps item ids scrubbed; an id that looks like a credential by its shape
    (``;key=…``) came back as ``;key=***`` and the next run refused the item's own file as
    held by another item, and a mirror judged it gone."""
    second = await _mirror_twice(Catalogue([item, "plain"]), tmp_path)
    assert second.refused == 0
    assert second.gone == ()
    assert sorted(p.name for p in (tmp_path / "C1").rglob("*.bin")) == sorted(
        [f"{item}.bin", "plain.bin"]
    )


@pytest.mark.anyio
async def test_an_item_id_holding_the_catalogues_password_is_not_its_own_collider(
    tmp_path: Any,
) -> None:
    """The journal keeps no known secret, so an item whose id holds the catalogue's
    password (a catalogue that echoes it) is kept as ``leak-***``: the next run refused the
    item's own file as another item's, and a mirror judged it gone and pruned it."""
    password = "review-cat-password"
    second = await _mirror_twice(Catalogue([f"leak-{password}", "plain"]), tmp_path, password)
    assert second.refused == 0
    assert second.gone == ()
    assert len(list((tmp_path / "C1").rglob("*.bin"))) == 2


@pytest.mark.anyio
async def test_a_redirect_to_a_location_no_url_can_hold_fails_that_file_alone(
    tmp_path: Any,
) -> None:
    """A server's Location that yarl cannot take (a broken IPv6 literal, a port out of
    range or not a number) ended the whole run with a
    ValueError traceback; it fails that file with its reason."""
    bad = ["http://[::1/x", "http://h:99999/x", "http://h:port/x"]
    api = Catalogue(["a", *(f"moved{i}" for i in range(len(bad)))])
    api.locations = {f"moved{i}.bin": loc for i, loc in enumerate(bad)}
    server = await serve_api(api)
    try:
        options: dict[str, Any] = {"catalog": api.base, "collections": ["C1"], "assets": ["all"]}
        with anyio.fail_after(10):
            result = await stacpull.adownload(dest=str(tmp_path), retries=0, **options)
    finally:
        await server.close()
    assert result.downloaded == 1
    assert result.failed == len(bad)
    assert result.fatal is None


def test_a_range_record_is_never_removed_through_a_linked_records_directory(
    tmp_path: Path,
) -> None:
    """``.stacpull/ranges`` turned into a link: forgetting a record removes nothing in the
    link's target."""
    from stacpull.transfer.ranges import RangeRecord

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "abc.ranges").write_bytes(b"keep")
    state = tmp_path / "dest" / ".stacpull"
    state.mkdir(parents=True)
    (state / "ranges").symlink_to(outside)
    RangeRecord.remove(state / "ranges" / "abc.ranges")
    assert (outside / "abc.ranges").read_bytes() == b"keep"


def test_a_prune_after_dest_vanished_is_a_storage_error_not_a_traceback(tmp_path: Path) -> None:
    from stacpull.engine import _prune
    from stacpull.errors import StorageError
    from stacpull.journal import Journal

    dest = tmp_path / "dest"
    journal = Journal(dest)
    try:
        with pytest.raises(StorageError, match="cannot prune"):
            _prune(tmp_path / "gone", journal, ["C/item/file.bin"])
    finally:
        journal.close()
