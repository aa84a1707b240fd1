"""`stacpull mirror`, `status`, `verify` and `--retry-failed` against the simulated catalogue."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path

from click.testing import CliRunner

import stacpull
from stacpull.cli import main
from stacpull.journal import Journal
from stacpull.sim import SimServer

from .conftest import L1A, L1C, TOKEN, files_under


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env={"STACPULL_TOKEN": TOKEN})
    return result.exit_code, result.output


def _mirror(sim: SimServer, dest: Path, *extra: str, collection: str = L1A) -> tuple[int, str]:
    return _cli(
        "mirror",
        "--catalog",
        sim.catalog_url,
        "--collection",
        collection,
        "--dest",
        str(dest),
        "--dashboard",
        "none",
        *extra,
    )


def _journal_rows(dest: Path) -> dict[str, tuple[str, str | None]]:
    db = sqlite3.connect(dest / ".stacpull" / "journal.sqlite")
    try:
        return {
            p: (s, e) for p, s, e in db.execute("SELECT path, status, error_class FROM transfers")
        }
    finally:
        db.close()


def test_a_complete_mirror_is_rerun_with_no_data_request(sim: SimServer, tmp_path: Path) -> None:
    code, out = _mirror(sim, tmp_path)
    assert code == 0, out
    assert len(files_under(tmp_path)) == 15
    before = len(sim.requests)
    code, out = _mirror(sim, tmp_path)
    assert code == 0, out
    assert len(sim.requests) == before
    assert "up to date" in out and "only the search" in out


def test_a_mirror_fetches_only_what_is_new_or_changed(sim: SimServer, tmp_path: Path) -> None:
    assert _mirror(sim, tmp_path)[0] == 0
    assert _mirror(sim, tmp_path, collection=L1C)[0] == 0
    # one new item, and one file replaced on the server in each collection (the item's
    # `updated` moves with it, as on MAAP)
    spec = sim.catalog.specs[L1A]
    sim.catalog.specs[L1A] = dataclasses.replace(spec, count=6)
    new = str(sim.catalog.item(L1A, 5)["id"])
    changed_a = str(sim.catalog.item(L1A, 1)["id"])
    changed_c = str(sim.catalog.item(L1C, 1)["id"])
    sim.catalog.bump(changed_a, "quicklook")
    sim.catalog.bump(changed_c, "quicklook_png")
    sim.requests.clear()
    assert _mirror(sim, tmp_path)[0] == 0
    fetched = [r["path"] for r in sim.requests]
    # L1A (2025 keys, no checksums): nothing proves the changed item's other files are
    # the same, so its three files come again with the new item's three
    assert len(fetched) == 6
    assert sum(new in p for p in fetched) == 3 and sum(changed_a in p for p in fetched) == 3
    png = next((tmp_path / L1A / changed_a).glob("*.png"))
    assert png.read_bytes() == sim.catalog.static_body(L1A, 1, "quicklook")
    # L1C (2026 keys): the KMZ's checksum still matches, so only the changed PNG and the
    # product (a zipper stream has no checksum) come again
    sim.requests.clear()
    assert _mirror(sim, tmp_path, collection=L1C)[0] == 0
    assert sorted(r["path"].rsplit("/", 1)[-1] for r in sim.requests) == [
        changed_c,
        f"{changed_c.lower()}_ql_pauli.png",
    ]
    assert next((tmp_path / L1C / changed_c).glob("*.png")).read_bytes() == (
        sim.catalog.static_body(L1C, 1, "quicklook_png")
    )


def test_files_whose_items_left_are_reported_then_pruned(sim: SimServer, tmp_path: Path) -> None:
    assert _mirror(sim, tmp_path)[0] == 0
    assert _mirror(sim, tmp_path / "other", collection=L1C)[0] == 0
    gone = str(sim.catalog.item(L1A, 3)["id"])
    sim.catalog.remove_item(gone)
    code, out = _mirror(sim, tmp_path)
    assert code == 0, out
    assert "3 file(s) belong to items no longer in the catalogue" in out
    assert (tmp_path / L1A / gone).is_dir()  # reported, kept
    # a mirror of another query into the same DEST never prunes this one's files
    code, out = _mirror(sim, tmp_path, "--prune", "--max-items", "1")
    assert code == 2 and "--prune needs the complete search" in out
    code, out = _mirror(sim, tmp_path, "--prune")
    assert code == 0 and "pruned 3 file(s)" in out, out
    assert not (tmp_path / L1A / gone).exists()
    assert len(files_under(tmp_path / L1A)) == 12
    assert not [p for p in _journal_rows(tmp_path) if gone in p]


def test_status_lists_done_failed_with_reasons_and_pending(sim: SimServer, tmp_path: Path) -> None:
    liar = str(sim.catalog.item(L1C, 1)["id"])
    sim.catalog.tamper(liar, "quicklook_png", "checksum")
    code, _ = _mirror(sim, tmp_path, collection=L1C)
    assert code == 1
    code, out = _cli("status", str(tmp_path), "--json")
    assert code == 0, out
    status = json.loads(out)
    assert status["by_status"]["done"]["files"] == 5 * 3 - 1
    assert status["failures"]["ChecksumMismatchError"]["count"] == 1
    path, message = status["failures"]["ChecksumMismatchError"]["examples"][0]
    assert liar in path and "differs from file:checksum" in message
    assert status["last_run"]["kind"] == "mirror" and status["last_run"]["outcome"] == "complete"
    code, out = _cli("status", str(tmp_path))
    assert code == 0 and "ChecksumMismatchError: 1" in out and "last run: mirror" in out
    code, out = _cli("status", str(tmp_path / "nowhere"))
    assert code == 2 and "not a directory" in out


def test_retry_failed_reruns_only_the_failures(sim: SimServer, tmp_path: Path) -> None:
    liar = str(sim.catalog.item(L1C, 2)["id"])
    sim.catalog.tamper(liar, "quicklook_png", "checksum")
    assert _mirror(sim, tmp_path, collection=L1C)[0] == 1
    del sim.catalog.knobs.tamper[f"{liar}/quicklook_png"]
    sim.requests.clear()
    # the journal kept the planned job (with the lying checksum): the retry fails the same way
    code, out = _mirror(sim, tmp_path, "--retry-failed", collection=L1C)
    assert code == 1
    assert [r["path"].rsplit("/", 1)[-1] for r in sim.requests] == [
        f"{liar.lower()}_ql_pauli.png"
    ] * 2
    # a new search plans it with the corrected checksum
    code, out = _mirror(sim, tmp_path, collection=L1C)
    assert code == 0, out
    assert all(s == "done" for s, _ in _journal_rows(tmp_path).values())


def test_verify_finds_rot_and_the_next_run_repairs_it(sim: SimServer, tmp_path: Path) -> None:
    assert _mirror(sim, tmp_path, collection=L1A)[0] == 0
    assert _mirror(sim, tmp_path, collection=L1C)[0] == 0
    code, out = _cli("verify", str(tmp_path))
    assert code == 0 and "no rot found" in out and "checked 30 file(s)" in out
    l1a, l1c = str(sim.catalog.item(L1A, 0)["id"]), str(sim.catalog.item(L1C, 0)["id"])
    # flip a byte, keeping size and mtime: the fast skip of a re-run cannot see it, verify can
    png = next((tmp_path / L1A / l1a).glob("*.png"))  # no file:checksum: the recorded digest
    png_c = next((tmp_path / L1C / l1c).glob("*.png"))  # file:checksum from the catalogue
    for f in (png, png_c):
        st = f.stat()
        body = bytearray(f.read_bytes())
        body[len(body) // 2] ^= 0xFF
        f.write_bytes(bytes(body))
        import os

        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    (tmp_path / L1A / l1a / f"{l1a}.ZIP").unlink()
    code, out = _cli("verify", str(tmp_path), "--json")
    assert code == 1
    problems = {Path(p["path"]).name: p["kind"] for p in json.loads(out)["problems"]}
    assert problems == {png.name: "checksum", png_c.name: "checksum", f"{l1a}.ZIP": "missing"}
    rows = _journal_rows(tmp_path)
    assert sorted(e for s, e in rows.values() if s == "failed") == ["RotError"] * 3
    sim.requests.clear()
    code, out = _cli(
        "download",
        "--retry-failed",
        "--dest",
        str(tmp_path),
        "--catalog",
        sim.catalog_url,
        "--dashboard",
        "none",
    )
    assert code == 0, out
    assert len(sim.requests) == 3
    code, out = _cli("verify", str(tmp_path))
    assert code == 0 and "no rot found" in out


def test_an_old_journal_is_upgraded_in_place(tmp_path: Path) -> None:
    state = tmp_path / ".stacpull"
    state.mkdir()
    db = sqlite3.connect(state / "journal.sqlite")
    db.execute(
        "CREATE TABLE transfers (path TEXT PRIMARY KEY, item_id TEXT NOT NULL, collection TEXT"
        " NOT NULL, asset_key TEXT NOT NULL, url TEXT NOT NULL, status TEXT NOT NULL,"
        " expected_size INTEGER, checksum TEXT, etag TEXT, last_modified TEXT, bytes INTEGER NOT"
        " NULL DEFAULT 0, digest TEXT, attempts INTEGER NOT NULL DEFAULT 0, error_class TEXT,"
        " error TEXT, item_updated TEXT, updated_at REAL NOT NULL)"
    )
    db.execute(
        "INSERT INTO transfers VALUES ('c/i/f.zip', 'i', 'c', 'product', 'http://x/f', 'failed',"
        " NULL, NULL, NULL, NULL, 0, NULL, 1, 'ConnectError', 'reset', NULL, 0)"
    )
    db.commit()
    db.close()
    journal = Journal(tmp_path)
    try:
        (row,) = list(journal.rows("failed"))
        job = row.planned_job()
        assert job.dest == "c/i/f.zip" and job.zip_check and job.url == "http://x/f"
    finally:
        journal.close()


def test_a_catalogue_that_moved_host_is_not_downloaded_again(tmp_path: Path) -> None:
    from stacpull.audit import verify_dest
    from stacpull.sim import SimCatalog, default_collections

    def pull() -> int:
        catalog = SimCatalog(default_collections(count=3, product_size=200_000))
        with SimServer(catalog) as moved:  # a new port each time: every URL differs
            result = stacpull.mirror(
                catalog=moved.catalog_url, collections=[L1A, L1C], dest=str(tmp_path), token=TOKEN
            )
            assert result.ok
            return result.downloaded

    assert pull() == 18
    assert pull() == 0  # checksums, recorded digests and zip CRCs vouch for every file
    report = verify_dest(tmp_path)
    assert report.ok and report.hashed == 18  # every file keeps a digest to verify against
