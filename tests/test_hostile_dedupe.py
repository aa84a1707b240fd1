"""Two jobs never share a destination: duplicate items are planned once, colliding paths
are refused with both names, the first job planned for a path keeps it (issue 16)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import stacpull
from stacpull.claims import RunClaims
from stacpull.destpaths import path_key
from stacpull.events import JobRefused
from stacpull.models import Holder
from stacpull.plan import PlanRules, plan_item
from stacpull.sim import SimServer

from .conftest import L1A, L1C, TOKEN, Recorder, cli, files_under, pull


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _thumb(sim: SimServer, index: int) -> bytes:
    return sim.catalog.static_body(L1A, index, "thumbnail")


def _item(sim: SimServer, item_id: str, assets: dict[str, tuple[int, str, str]]) -> dict[str, Any]:
    """A hand-written L1A item: asset key -> (donor index, donor asset key, file:local_path)."""
    donor = sim.catalog.item(L1A, 0)
    made: dict[str, Any] = {}
    for key, (index, donor_key, local) in assets.items():
        source = sim.catalog.item(L1A, index)["assets"][donor_key]
        made[key] = {**source, "file:local_path": local}
    return {**donor, "id": item_id, "assets": made}


def _rows(dest: Path) -> dict[str, tuple[str, str, str]]:
    db = sqlite3.connect(dest / ".stacpull" / "journal.sqlite")
    try:
        return {
            p: (i, k, s)
            for p, i, k, s in db.execute("SELECT path, item_id, asset_key, status FROM transfers")
        }
    finally:
        db.close()


def _refusals(dest: Path) -> list[tuple[str, str, str]]:
    db = sqlite3.connect(dest / ".stacpull" / "journal.sqlite")
    try:
        return list(db.execute("SELECT item_id, asset_key, reason FROM refusals ORDER BY item_id"))
    finally:
        db.close()


def _mirror_thumbnails(sim: SimServer, dest: Path, **kw: Any) -> stacpull.RunResult:
    """``stacpull.mirror`` of L1A's thumbnails into ``dest``, all in one folder per
    collection (so names meet); ``kw`` adds config keys."""
    return stacpull.mirror(
        catalog=sim.catalog_url,
        collections=[L1A],
        dest=str(dest),
        token=TOKEN,
        assets=["thumbnail"],
        template="{collection}/{name}",
        backoff=0.01,
        **kw,
    )


def _no_part(dest: Path) -> None:
    assert not [p for p in dest.rglob("*.part") if ".stacpull" not in p.parts]


@pytest.mark.parametrize("concurrency", [1, 8])
@pytest.mark.parametrize("page_size", [2, 100])
def test_an_item_listed_twice_is_planned_once(
    sim: SimServer, tmp_path: Path, recorder: Recorder, concurrency: int, page_size: int
) -> None:
    sim.catalog.add_item(L1A, sim.catalog.item(L1A, 1))  # on a later page with page_size 2
    sim.catalog.add_item(L1A, sim.catalog.item(L1A, 4))
    result = pull(sim, tmp_path, recorder, concurrency=concurrency, page_size=page_size)
    assert result.exit_code == 0 and result.ok, result
    assert result.downloaded == 15 and result.refused == 0
    assert result.duplicates == 2
    assert len(files_under(tmp_path)) == 15
    assert all(row[2] == "done" for row in _rows(tmp_path).values())
    _no_part(tmp_path)


@pytest.mark.parametrize(("concurrency", "page_size"), [(1, 1), (8, 100)])  # 1: two pages
@pytest.mark.parametrize(
    ("first", "second"), [("shared.png", "shared.png"), ("Shared.png", "sHARED.PNG")]
)
def test_two_items_on_one_path_the_first_keeps_it_the_second_is_refused(
    sim: SimServer,
    tmp_path: Path,
    recorder: Recorder,
    concurrency: int,
    page_size: int,
    first: str,
    second: str,
) -> None:
    sim.catalog.add_item(L1A, _item(sim, "DUP_A", {"thumbnail": (0, "thumbnail", first)}))
    sim.catalog.add_item(L1A, _item(sim, "DUP_B", {"thumbnail": (1, "thumbnail", second)}))
    result = pull(
        sim,
        tmp_path,
        recorder,
        concurrency=concurrency,
        page_size=page_size,
        assets=["thumbnail"],
        template="{collection}/{name}",
    )
    assert result.exit_code == 1 and result.refused == 1 and result.failed == 0
    assert result.downloaded == 6  # the five generated items and DUP_A
    (refused,) = recorder.of_type(JobRefused)
    assert (refused.refusal.item_id, refused.refusal.asset_key) == ("DUP_B", "thumbnail")
    reason = refused.refusal.reason
    assert "DUP_A/thumbnail" in reason and "DUP_B/thumbnail" in reason, reason
    kept = tmp_path / L1A / first
    assert _sha(kept.read_bytes()) == _sha(_thumb(sim, 0))
    if first != second:
        assert not (tmp_path / L1A / second).exists()
    rows = _rows(tmp_path)
    assert rows[f"{L1A}/{first}"] == ("DUP_A", "thumbnail", "done")
    assert not [r for r in rows.values() if r[0] == "DUP_B"]
    assert all(r[2] == "done" for r in rows.values())
    assert [r[:2] for r in _refusals(tmp_path)] == [("DUP_B", "thumbnail")]
    _no_part(tmp_path)


def test_the_same_id_in_two_collections_is_two_items_that_collide(
    sim: SimServer, tmp_path: Path, recorder: Recorder
) -> None:
    a = _item(sim, "SAME_ID", {"thumbnail": (0, "thumbnail", "t.png")})
    sim.catalog.add_item(L1A, a)
    b = _item(sim, "SAME_ID", {"thumbnail": (1, "thumbnail", "t.png")})
    sim.catalog.add_item(L1C, {**b, "collection": L1C})
    result = pull(
        sim,
        tmp_path,
        recorder,
        collections=[L1A, L1C],
        assets=["thumbnail"],
        template="{item}/{name}",
    )
    assert result.duplicates == 0 and result.refused == 1, result
    (refused,) = recorder.of_type(JobRefused)
    reason = refused.refusal.reason
    assert f"SAME_ID/thumbnail ({L1A})" in reason and f"SAME_ID/thumbnail ({L1C})" in reason
    kept = 1 if refused.refusal.collection == L1A else 0  # the first searched keeps it
    assert _sha((tmp_path / "SAME_ID" / "t.png").read_bytes()) == _sha(_thumb(sim, kept))
    _no_part(tmp_path)


def test_assets_of_one_item_whose_names_differ_by_case_only(
    sim: SimServer, tmp_path: Path, recorder: Recorder
) -> None:
    # As for two equal names (MAAP's thumbnail and quicklook_jpeg share an href), the
    # later asset gets its key appended; when that name is taken too, it is refused.
    item = _item(
        sim,
        "CASES",
        {
            "a": (0, "thumbnail", "Thumb.png"),
            "b": (1, "thumbnail", "thumb_c.png"),
            "c": (2, "thumbnail", "thumb.PNG"),
            "d": (3, "thumbnail", "THUMB.png"),
        },
    )
    sim.catalog.add_item(L1A, item)
    result = pull(sim, tmp_path, recorder, ids=["CASES"], assets=["all"], concurrency=8)
    assert result.refused == 1 and result.downloaded == 3, result
    (refused,) = recorder.of_type(JobRefused)
    assert refused.refusal.asset_key == "c"
    assert "CASES/c" in refused.refusal.reason and "CASES/b" in refused.refusal.reason
    folder = tmp_path / L1A / "CASES"
    assert sorted(p.name for p in folder.iterdir()) == ["THUMB_d.png", "Thumb.png", "thumb_c.png"]
    for name, index in (("Thumb.png", 0), ("thumb_c.png", 1), ("THUMB_d.png", 3)):
        assert _sha((folder / name).read_bytes()) == _sha(_thumb(sim, index))
    _no_part(tmp_path)


def test_an_asset_named_like_another_assets_part_file(
    sim: SimServer, tmp_path: Path, recorder: Recorder
) -> None:
    item = _item(
        sim, "PARTS", {"x": (0, "thumbnail", "x.png"), "y": (1, "thumbnail", "x.png.part")}
    )
    sim.catalog.add_item(L1A, item)
    result = pull(sim, tmp_path, recorder, ids=["PARTS"], assets=["all"])
    assert result.refused == 1 and result.downloaded == 1, result
    assert _sha((tmp_path / L1A / "PARTS" / "x.png").read_bytes()) == _sha(_thumb(sim, 0))
    _no_part(tmp_path)


def test_a_companion_png_name_that_another_item_already_has(
    sim: SimServer, tmp_path: Path, recorder: Recorder
) -> None:
    # DUP_K's quicklook is saved as `foo_ql.png`, the name its KMZ refers to; DUP_T's
    # thumbnail declares that very name. Both are in one collection directory.
    sim.catalog.add_item(
        L1A,
        _item(
            sim,
            "DUP_K",
            {
                "quicklook": (0, "quicklook", "q.png"),
                "quicklook_1": (0, "quicklook_1", "foo_map.kmz"),
            },
        ),
    )
    sim.catalog.add_item(L1A, _item(sim, "DUP_T", {"thumbnail": (2, "thumbnail", "foo_ql.png")}))
    result = pull(
        sim,
        tmp_path,
        recorder,
        ids=["DUP_K", "DUP_T"],
        assets=["maap", "thumbnail"],
        template="{collection}/{name}",
    )
    assert result.refused == 1 and result.downloaded == 2, result
    (refused,) = recorder.of_type(JobRefused)
    assert (
        "DUP_K/quicklook" in refused.refusal.reason and "DUP_T/thumbnail" in refused.refusal.reason
    )
    png = sim.catalog.static_body(L1A, 0, "quicklook")
    assert _sha((tmp_path / L1A / "foo_ql.png").read_bytes()) == _sha(png)
    _no_part(tmp_path)


def test_a_saved_item_collection_that_lists_an_item_twice(sim: SimServer, tmp_path: Path) -> None:
    items = [sim.catalog.item(L1A, i) for i in (0, 1, 0, 2, 1)]
    saved = tmp_path / "items.geojson"
    saved.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    dest = tmp_path / "dest"
    code, out, err = cli(
        "download",
        "--from",
        str(saved),
        "--catalog",
        sim.catalog_url,
        "--dest",
        str(dest),
        "--assets",
        "thumbnail",
        "--dashboard",
        "none",
        token=TOKEN,
    )
    assert code == 0, out + err
    assert "2 duplicate item" in out, out
    assert len(files_under(dest)) == 3
    for i in range(3):
        iid = sim.catalog.item(L1A, i)["id"]
        got = dest / L1A / iid / f"{iid.lower()}_thumb.png"
        assert _sha(got.read_bytes()) == _sha(_thumb(sim, i))


@pytest.mark.parametrize(("concurrency", "name"), [(1, "shared.png"), (8, "SHARED.png")])
def test_a_mirror_keeps_a_path_for_the_item_the_journal_records(
    sim: SimServer, tmp_path: Path, concurrency: int, name: str
) -> None:
    def mirror(prune: bool = False) -> stacpull.RunResult:
        return _mirror_thumbnails(sim, tmp_path, concurrency=concurrency, prune=prune)

    owner = _item(sim, "OWNER", {"thumbnail": (0, "thumbnail", "shared.png")})
    sim.catalog.add_item(L1A, owner)
    first = mirror()
    assert first.ok and first.downloaded == 6
    shared = tmp_path / L1A / "shared.png"
    assert _sha(shared.read_bytes()) == _sha(_thumb(sim, 0))

    # A newcomer listed *before* the owner wants the same path: the owner keeps it.
    newcomer = _item(sim, "NEWCOMER", {"thumbnail": (1, "thumbnail", name)})
    sim.catalog.knobs.extra[L1A].insert(0, newcomer)
    second = mirror()
    assert second.refused == 1 and second.downloaded == 0 and second.skipped == 6, second
    assert _sha(shared.read_bytes()) == _sha(_thumb(sim, 0))
    (refusal,) = [r for r in _refusals(tmp_path) if r[0] == "NEWCOMER"]
    assert "OWNER/thumbnail" in refusal[2] and "NEWCOMER/thumbnail" in refusal[2]
    assert _rows(tmp_path)[f"{L1A}/shared.png"] == ("OWNER", "thumbnail", "done")
    assert second.gone == ()

    # The owner leaves: its file stays the owner's until --prune deletes it...
    sim.catalog.knobs.extra[L1A].remove(owner)
    third = mirror(prune=True)
    assert third.refused == 1 and third.downloaded == 0 and third.pruned == 1, third
    assert not shared.exists()
    # ... then the newcomer has the name.
    fourth = mirror()
    assert fourth.ok and fourth.downloaded == 1, fourth
    got = tmp_path / L1A / name
    assert _sha(got.read_bytes()) == _sha(_thumb(sim, 1))
    assert _rows(tmp_path)[f"{L1A}/{name}"] == ("NEWCOMER", "thumbnail", "done")
    assert [r for r in _refusals(tmp_path) if r[0] == "NEWCOMER"] == []  # no longer refused
    _no_part(tmp_path)


def test_a_renamed_asset_key_of_the_same_item_is_no_collision(
    sim: SimServer, tmp_path: Path
) -> None:
    sim.catalog.add_item(L1A, _item(sim, "DRIFT", {"quicklook": (0, "thumbnail", "q.png")}))
    assert pull(sim, tmp_path, ids=["DRIFT"], assets=["all"]).downloaded == 1
    sim.catalog.knobs.extra[L1A][-1] = _item(
        sim, "DRIFT", {"quicklook_png": (0, "thumbnail", "q.png")}
    )
    again = pull(sim, tmp_path, ids=["DRIFT"], assets=["all"])
    assert again.ok and again.refused == 0 and again.skipped == 1, again


def test_path_keys_fold_case_and_unicode_forms() -> None:
    assert path_key("A/B.TIF") == path_key("a/b.tif")
    assert path_key("caf\u00e9.png") == path_key("cafe\u0301.png") == path_key("CAF\u00c9.PNG")
    assert path_key("a/b.tif") != path_key("a/b.tiff")


@given(st.text(min_size=1, max_size=40))
def test_a_path_key_ignores_case_and_unicode_form(name: str) -> None:
    key = path_key(name)
    assert path_key(key) == key
    for variant in (name.upper(), name.lower(), name.swapcase(), name.casefold()):
        if variant.casefold() == name.casefold():  # not so for a few: 'İ'.lower()...
            assert path_key(variant) == key
    for form in ("NFC", "NFD"):
        assert path_key(unicodedata.normalize(form, name)) == key


def test_claims_plan_an_item_once_and_name_both_jobs_of_a_clash() -> None:
    rules = PlanRules(("all",), "{name}")
    base = {"href": "http://h/x.png", "type": "image/png"}
    one = {"id": "one", "collection": "c", "assets": {"k": {**base, "file:local_path": "X.png"}}}
    two = {"id": "two", "collection": "c", "assets": {"k": {**base, "file:local_path": "x.png"}}}
    claims = RunClaims(run=7)
    assert claims.first_listing(one) and claims.first_listing(two)
    assert not claims.first_listing(dict(one)) and claims.duplicates == 1
    (a,), _ = plan_item(one, rules)
    (b,), _ = plan_item(two, rules)
    kept, refused = claims.settle([a, b], {})
    assert kept == [a] and [r.item_id for r in refused] == ["two"]
    assert "one/k" in refused[0].reason and "two/k" in refused[0].reason
    # A holder from an earlier run keeps its name against another item, not the same one.
    earlier = {path_key("x.png"): [Holder("X.png", "c", "one", "old_key", run=3)]}
    assert claims.settle([a], earlier) == ([a], [])
    kept, refused = claims.settle([b], earlier)
    assert kept == [] and "one/old_key" in refused[0].reason and "--prune" in refused[0].reason


@pytest.mark.parametrize(
    ("concurrency", "inner"), [(1, "x.png.part/inner.png"), (8, "X.png.PART/inner.png")]
)
def test_a_directory_named_like_another_assets_part_file(
    sim: SimServer, tmp_path: Path, recorder: Recorder, concurrency: int, inner: str
) -> None:
    item = _item(sim, "PARTDIR", {"x": (0, "thumbnail", "x.png"), "y": (1, "thumbnail", inner)})
    sim.catalog.add_item(L1A, item)
    result = pull(sim, tmp_path, recorder, ids=["PARTDIR"], assets=["all"], concurrency=concurrency)
    assert result.refused == 1 and result.downloaded == 1 and result.fatal is None, result
    (refused,) = recorder.of_type(JobRefused)
    assert refused.refusal.asset_key == "y" and ".part" in refused.refusal.reason
    assert _sha((tmp_path / L1A / "PARTDIR" / "x.png").read_bytes()) == _sha(_thumb(sim, 0))
    _no_part(tmp_path)


def test_a_dry_run_counts_an_item_listed_twice_once(sim: SimServer, tmp_path: Path) -> None:
    sim.catalog.add_item(L1A, sim.catalog.item(L1A, 3))
    summary = stacpull.dry_run(
        catalog=sim.catalog_url, collections=[L1A], dest=str(tmp_path), assets=["thumbnail"]
    )
    assert summary.items == 6 and summary.files == 5


def test_claims_remember_every_item_of_a_long_search() -> None:
    claims = RunClaims(run=1)
    items = [{"id": f"item-{i}", "collection": f"c{i % 3}"} for i in range(20_000)]
    assert all(claims.first_listing(item) for item in items)
    assert not any(claims.first_listing(dict(item)) for item in items[::7])
    assert claims.duplicates == len(items[::7])
    assert claims.first_listing({"id": "item-1", "collection": "c0"})  # another collection


def test_a_journal_from_before_path_keys_still_protects_its_files(
    sim: SimServer, tmp_path: Path, recorder: Recorder
) -> None:
    sim.catalog.add_item(L1A, _item(sim, "OWNER", {"thumbnail": (0, "thumbnail", "a.png")}))
    opts: dict[str, Any] = {"assets": ["thumbnail"], "template": "{collection}/{name}"}
    assert pull(sim, tmp_path, **opts).downloaded == 6
    db = sqlite3.connect(tmp_path / ".stacpull" / "journal.sqlite")
    db.execute("DROP INDEX transfers_fold")
    db.execute("ALTER TABLE transfers DROP COLUMN fold")  # as 0.3.0 left it
    db.commit()
    db.close()
    sim.catalog.knobs.extra[L1A].insert(
        0, _item(sim, "LATE", {"thumbnail": (1, "thumbnail", "A.PNG")})
    )
    again = pull(sim, tmp_path, recorder, **opts)
    assert again.refused == 1 and again.skipped == 6, again
    (refused,) = recorder.of_type(JobRefused)
    assert (
        "OWNER/thumbnail" in refused.refusal.reason and "LATE/thumbnail" in refused.refusal.reason
    )


def test_a_file_renamed_by_case_only_is_never_pruned_as_gone(
    sim: SimServer, tmp_path: Path
) -> None:
    """On a case-insensitive disk the old and the new name are one file: pruning the old
    name would delete the new download. The item is still listed, so nothing is gone."""

    def mirror() -> stacpull.RunResult:
        return _mirror_thumbnails(sim, tmp_path, prune=True)

    sim.catalog.add_item(L1A, _item(sim, "RENAMED", {"thumbnail": (0, "thumbnail", "Shared.png")}))
    assert mirror().ok
    sim.catalog.knobs.extra[L1A][-1] = _item(
        sim, "RENAMED", {"thumbnail": (0, "thumbnail", "shared.png")}
    )
    again = mirror()
    assert again.ok and again.gone == () and again.pruned == 0, again
    assert (tmp_path / L1A / "Shared.png").read_bytes() == _thumb(sim, 0)
    assert (tmp_path / L1A / "shared.png").read_bytes() == _thumb(sim, 0)
