"""End-to-end transfers against the simulated catalogue on 127.0.0.1 (no HTTP mocks)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import zipfile
from pathlib import Path
from typing import Any

import pytest

from stacpull.events import SearchProgress, TransferRetried
from stacpull.journal import Journal
from stacpull.models import Status
from stacpull.sim import SimServer

from .conftest import FLEX, L1A, L1C, Recorder, cli, crash_before_rename, files_under, pull


def _item_id(sim: SimServer, collection: str, index: int) -> str:
    return str(sim.catalog.item(collection, index)["id"])


def test_every_selected_asset_arrives_verified(
    sim: SimServer, tmp_path: Path, recorder: Recorder
) -> None:
    result = pull(sim, tmp_path, recorder, collections=[L1A, L1C, FLEX])
    assert result.ok and result.exit_code == 0
    assert result.downloaded == 5 * 3 + 5 * 3 + 5 * 2
    files = files_under(tmp_path)
    assert len(files) == result.downloaded
    assert not [f for f in files if f.name.endswith(".part")]
    for f in files:
        if f.suffix.upper() in (".ZIP", ".KMZ"):
            with zipfile.ZipFile(f) as zf:
                assert zf.testzip() is None
        if f.suffix == ".png":
            assert f.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    # the KMZ's KML names the PNG that was saved beside it
    iid = _item_id(sim, L1A, 0)
    folder = tmp_path / L1A / iid
    kml = zipfile.ZipFile(folder / f"{iid.lower()}_map.kmz").read("doc.kml").decode()
    assert f"<href>{iid.lower()}_ql.png</href>" in kml
    assert (folder / f"{iid.lower()}_ql.png").is_file()
    report = result.report
    assert report is not None and report.is_file()


def test_a_second_run_skips_everything_without_data_requests(
    sim: SimServer, tmp_path: Path
) -> None:
    first = pull(sim, tmp_path, collections=[L1A, L1C])
    assert first.ok
    before = len(sim.requests)
    second = pull(sim, tmp_path, collections=[L1A, L1C])
    assert second.ok and second.downloaded == 0 and second.skipped == first.downloaded
    assert len(sim.requests) == before


def test_a_finished_file_that_no_longer_matches_is_downloaded_again(
    sim: SimServer, tmp_path: Path
) -> None:
    pull(sim, tmp_path, collections=[L1C], assets=["enclosure_i_abs_tiff"])
    target = next(tmp_path.rglob("*_i_abs.tiff"))
    good = target.read_bytes()
    target.write_bytes(b"x" * len(good))  # same size, rotten content
    result = pull(sim, tmp_path, collections=[L1C], assets=["enclosure_i_abs_tiff"])
    assert result.ok and result.downloaded == 1 and result.skipped == 4
    assert target.read_bytes() == good


def test_paging_through_more_items_than_one_page(tmp_path: Path, recorder: Recorder) -> None:
    from stacpull.sim import SimCatalog, default_collections

    with SimServer(SimCatalog(default_collections(count=23, product_size=20_000))) as sim:
        result = pull(sim, tmp_path, recorder, page_size=4, assets=["thumbnail"])
        assert result.ok and result.items == 23 and result.downloaded == 23
        progress = recorder.of_type(SearchProgress)
        assert progress[-1].done and progress[-1].pages == 6 and progress[-1].matched == 23
        post = pull(
            sim, tmp_path / "post", page_size=5, assets=["thumbnail"], method="POST", max_items=12
        )
        assert post.items == 12 and post.downloaded == 12


def test_an_interrupted_transfer_resumes_with_range_and_if_range(
    sim: SimServer, tmp_path: Path, recorder: Recorder
) -> None:
    iid = _item_id(sim, L1C, 2)
    sim.catalog.cut(iid, "enclosure_i_abs_tiff", 100_000)
    result = pull(
        sim, tmp_path, recorder, collections=[L1C], ids=[iid], assets=["enclosure_i_abs_tiff"]
    )
    assert result.ok and result.retries == 1
    outcome = next(iter(recorder.outcomes().values()))
    assert outcome.resumed_from == 100_000
    ranged = [r for r in sim.requests if r["range"]]
    assert (
        ranged and ranged[-1]["range"] == "bytes=100000-" and ranged[-1]["if_range"].startswith('"')
    )
    body = sim.catalog.static_body(L1C, 2, "enclosure_i_abs_tiff")
    assert next(tmp_path.rglob("*_i_abs.tiff")).read_bytes() == body
    assert outcome.bytes_downloaded == len(body)  # the first 100 000 bytes were not fetched twice


def test_a_part_left_by_an_earlier_run_is_resumed(
    sim: SimServer, tmp_path: Path, recorder: Recorder
) -> None:
    iid = _item_id(sim, L1A, 1)
    sim.catalog.cut(iid, "quicklook", 20_000)
    failed = pull(sim, tmp_path, collections=[L1A], ids=[iid], assets=["quicklook"], retries=0)
    assert failed.failed == 1 and failed.exit_code == 1
    part = next(tmp_path.rglob("*.part"))
    assert part.stat().st_size == 20_000
    result = pull(sim, tmp_path, recorder, collections=[L1A], ids=[iid], assets=["quicklook"])
    assert result.ok
    outcome = next(iter(recorder.outcomes().values()))
    assert outcome.resumed_from == 20_000
    assert not part.exists()
    final = part.with_name(part.name.removesuffix(".part"))
    assert final.read_bytes() == sim.catalog.static_body(L1A, 1, "quicklook")


def test_a_whole_part_left_before_its_rename_is_sealed_without_fetching_again(
    sim: SimServer, tmp_path: Path, recorder: Recorder
) -> None:
    # The state a crash between the last write and the rename leaves: every byte in the
    # .part, the journal still saying active.
    iid = _item_id(sim, L1C, 1)
    assert pull(sim, tmp_path, collections=[L1C], ids=[iid], assets=["enclosure_i_abs_tiff"]).ok
    final = next(tmp_path.rglob("*_i_abs.tiff"))
    crash_before_rename(tmp_path, final)
    sim.requests.clear()
    result = pull(
        sim, tmp_path, recorder, collections=[L1C], ids=[iid], assets=["enclosure_i_abs_tiff"]
    )
    assert result.ok and result.bytes_downloaded == 0
    size = final.stat().st_size
    (outcome,) = recorder.outcomes().values()
    assert outcome.resumed_from == size
    assert [r["range"] for r in sim.requests] == [f"bytes={size}-"]  # answered 416, no body
    assert final.read_bytes() == sim.catalog.static_body(L1C, 1, "enclosure_i_abs_tiff")
    assert not list(tmp_path.rglob("*.part"))


def test_a_file_changed_on_the_server_restarts_instead_of_splicing(
    sim: SimServer, tmp_path: Path, recorder: Recorder
) -> None:
    iid = _item_id(sim, L1A, 3)
    old = sim.catalog.static_body(L1A, 3, "quicklook")
    sim.catalog.cut(iid, "quicklook", 20_000)
    pull(sim, tmp_path, collections=[L1A], ids=[iid], assets=["quicklook"], retries=0)
    assert next(tmp_path.rglob("*.part")).read_bytes() == old[:20_000]
    sim.catalog.bump(iid, "quicklook")  # new bytes, new ETag: the If-Range validator is stale
    new = sim.catalog.static_body(L1A, 3, "quicklook")
    assert new[:20_000] != old[:20_000]
    result = pull(sim, tmp_path, recorder, collections=[L1A], ids=[iid], assets=["quicklook"])
    assert result.ok
    outcome = next(iter(recorder.outcomes().values()))
    assert outcome.resumed_from == 0 and any("restarted" in n for n in outcome.notes)
    assert sim.requests[-1]["if_range"] is not None
    assert next(f for f in files_under(tmp_path)).read_bytes() == new


def test_the_zipper_restarts_a_broken_product_from_zero(
    sim: SimServer, tmp_path: Path, recorder: Recorder
) -> None:
    iid = _item_id(sim, L1A, 0)
    sim.catalog.cut(iid, "product", 150_000)
    result = pull(sim, tmp_path, recorder, ids=[iid], assets=["product"])
    assert result.ok
    outcome = next(iter(recorder.outcomes().values()))
    assert outcome.attempts == 2 and outcome.resumed_from == 0
    zipper = [r for r in sim.requests if "/zipper/" in r["path"]]
    assert len(zipper) == 2 and zipper[1]["range"] is None  # no validator: nothing to resume
    with zipfile.ZipFile(tmp_path / L1A / iid / f"{iid}.ZIP") as zf:
        assert zf.testzip() is None


@pytest.mark.parametrize("mode", ["truncate", "corrupt"])
def test_a_truncated_or_corrupt_zip_is_never_accepted(
    sim: SimServer, tmp_path: Path, recorder: Recorder, mode: str
) -> None:
    iid = _item_id(sim, L1A, 2)
    sim.catalog.tamper(iid, "product", mode)
    result = pull(sim, tmp_path, recorder, ids=[iid], assets=["product"])
    assert result.failed == 1 and result.exit_code == 1
    outcome = next(iter(recorder.outcomes().values()))
    assert outcome.status is Status.FAILED and outcome.error_class == "CorruptZipError"
    assert outcome.attempts == 6  # retried from zero like a cut stream, then given up
    assert files_under(tmp_path) == []  # neither the final name nor a .part


@pytest.mark.parametrize(
    ("mode", "error"), [("checksum", "ChecksumMismatchError"), ("size", "VerificationError")]
)
def test_a_catalogue_that_lies_about_the_file_gets_no_file(
    sim: SimServer, tmp_path: Path, recorder: Recorder, mode: str, error: str
) -> None:
    iid = _item_id(sim, L1C, 1)
    sim.catalog.tamper(iid, "enclosure_i_abs_tiff", mode)
    result = pull(sim, tmp_path, recorder, collections=[L1C], assets=["enclosure_i_abs_tiff"])
    assert result.failed == 1 and result.downloaded == 4
    failed = [o for o in recorder.outcomes().values() if o.status is Status.FAILED]
    assert [o.job.item_id for o in failed] == [iid] and failed[0].error_class == error
    assert not (tmp_path / L1C / iid).exists() or files_under(tmp_path / L1C / iid) == []


def test_checksums_are_verified_for_each_multihash_function(sim: SimServer, tmp_path: Path) -> None:
    result = pull(sim, tmp_path, collections=[L1C], assets=["enclosure_*"])
    assert result.ok and result.downloaded == 25  # md5, sha2-512 and sha2-256 assets
    journal = Journal(tmp_path)
    try:
        assert journal.counts() == {"done": 25}
    finally:
        journal.close()


@pytest.mark.parametrize(
    ("name", "prefix", "fn"), [("blake3", "1e20", None), ("sha2-256", "1220", hashlib.sha256)]
)
def test_files_without_a_checksum_get_the_record_hash_digest(
    sim: SimServer, tmp_path: Path, name: str, prefix: str, fn: Any
) -> None:
    from blake3 import blake3

    options = {} if fn is None else {"record_hash": name}
    result = pull(sim, tmp_path, assets=["thumbnail"], **options)
    assert result.ok and result.downloaded == 5
    db = sqlite3.connect(tmp_path / ".stacpull" / "journal.sqlite")
    try:
        rows = db.execute("SELECT path, checksum, digest FROM transfers").fetchall()
    finally:
        db.close()
    assert len(rows) == 5
    for path, checksum, digest in rows:
        assert checksum is None  # the sim's thumbnails carry no file:checksum
        body = (tmp_path / path).read_bytes()
        assert digest == prefix + (fn or blake3)(body).hexdigest()
    # `stacpull verify` checks each file against the digest its run recorded
    (tmp_path / rows[0][0]).write_bytes(b"rot" + (tmp_path / rows[0][0]).read_bytes()[3:])
    code, out, _ = cli("verify", str(tmp_path), "--json")
    assert code == 1 and [p["kind"] for p in json.loads(out)["problems"]] == ["checksum"]


def test_a_symlink_in_dest_that_leads_outside_is_refused(sim: SimServer, tmp_path: Path) -> None:
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    (dest / L1A).symlink_to(outside, target_is_directory=True)  # the collection's directory
    result = pull(sim, dest, assets=["thumbnail"])
    assert result.refused == 5 and result.downloaded == 0 and result.exit_code == 1
    assert list(outside.iterdir()) == []  # not even a directory was made through the link
    db = sqlite3.connect(dest / ".stacpull" / "journal.sqlite")
    try:
        rows = db.execute("SELECT status, error_class FROM transfers").fetchall()
    finally:
        db.close()
    assert rows == [("failed", "UnsafePathError")] * 5


def test_a_slow_disk_moves_the_looks_off_the_event_loop(
    sim: SimServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every look counts as slow here: the first three run on the event loop (the main
    thread), three slow looks in a row being the proof of a slow disk, and every later
    one in a worker thread."""
    from stacpull.transfer import skip

    on_loop: list[bool] = []
    real = skip._look_now

    def spy(root: Path, job: Any) -> Any:
        on_loop.append(threading.current_thread() is threading.main_thread())
        return real(root, job)

    monkeypatch.setattr(skip, "_look_now", spy)
    monkeypatch.setattr(skip, "LOOK_INLINE_LIMIT", 0.0)
    result = pull(sim, tmp_path, assets=["thumbnail"])
    assert result.ok and result.downloaded == 5
    assert on_loop == [True, True, True, False, False]


def test_hostile_metadata_is_refused_and_the_run_goes_on(
    sim: SimServer, tmp_path: Path, recorder: Recorder
) -> None:
    donor = sim.catalog.item(L1A, 0)
    evil = {
        **donor,
        "id": "EVIL_ITEM",
        "assets": {
            "product": {**donor["assets"]["product"], "file:local_path": "../../../etc/passwd"},
            "quicklook": {**donor["assets"]["quicklook"], "title": "/tmp/evil.png"},
            "quicklook_1": {**donor["assets"]["quicklook_1"], "title": "x\x1b[2J_map.kmz"},
        },
    }
    sim.catalog.add_item(L1A, evil)
    dest = tmp_path / "dest"
    result = pull(sim, dest, recorder)
    assert result.refused == 3 and result.downloaded == 15 and result.exit_code == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest"]
    assert not Path("/tmp/evil.png").exists()
    assert all(dest in f.parents for f in files_under(dest))


def test_retries_are_reported_as_events(sim: SimServer, tmp_path: Path, recorder: Recorder) -> None:
    iid = _item_id(sim, L1A, 4)
    sim.catalog.cut(iid, "quicklook_1", 10)
    result = pull(sim, tmp_path, recorder, ids=[iid], assets=["quicklook_1"])
    assert result.ok
    retried = recorder.of_type(TransferRetried)
    assert len(retried) == 1 and retried[0].error_class == "TruncatedError"


def test_missing_or_wrong_token_fails_with_a_clear_reason(
    sim: SimServer, tmp_path: Path, recorder: Recorder
) -> None:
    result = pull(sim, tmp_path, recorder, token="wrong", assets=["product", "thumbnail"])
    outcomes = recorder.outcomes().values()
    assert result.failed == 5 and result.downloaded == 5  # thumbnails are public
    assert {o.error_class for o in outcomes if o.status is Status.FAILED} == {"AuthError"}
    assert all(
        "refused" in (o.error or "") and "wrong" not in (o.error or "") for o in outcomes if o.error
    )


def test_downloaded_bytes_match_the_server(sim: SimServer, tmp_path: Path) -> None:
    pull(sim, tmp_path, collections=[L1C], assets=["quicklook_png"])
    for index in range(5):
        iid = _item_id(sim, L1C, index)
        path = tmp_path / L1C / iid / f"{iid.lower()}_ql_pauli.png"
        want = sim.catalog.static_body(L1C, index, "quicklook_png")
        assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(want).digest()
