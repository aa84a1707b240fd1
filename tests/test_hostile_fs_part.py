"""Hostile files in DEST and hostile names in metadata, against the simulated catalogue.

A link (dangling, to a file outside DEST, or a hard link) at a ``.part`` name, a link at a
final name, an item's directory turned into a link between runs, a name that addresses
stacpull's own state, a name that is another asset's directory, names over NAME_MAX or
PATH_MAX, a symlink loop, a FIFO at a ``.part`` name: nothing outside DEST is read,
written, renamed or deleted; each bad file is refused alone with its path named, and the
rest of the run downloads.
"""

from __future__ import annotations

import os
import sqlite3
import unicodedata
import zipfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stacpull.errors import PlanError, UnsafePathError
from stacpull.events import JobRefused
from stacpull.models import Status
from stacpull.plan import PlanRules, plan_item
from stacpull.sim import SimServer
from stacpull.transfer import partfile
from stacpull.verify import record_hash

from .conftest import L1A, TOKEN, Recorder, cli, pull

EVIL = "EVIL_ITEM"
EVIL2 = "EVIL_ITEM_2"
OLD_NS = 1_500_000_000 * 10**9  # an mtime that a write would change


def _donor(sim: SimServer) -> dict[str, Any]:
    return sim.catalog.item(L1A, 0)


def _donor_id(sim: SimServer) -> str:
    return str(_donor(sim)["id"])


def _thumb(sim: SimServer) -> bytes:
    """The bytes every hostile asset here serves (the donor's thumbnail)."""
    return sim.catalog.static_body(L1A, 0, "thumbnail")


def _add(
    sim: SimServer, item_id: str, names: dict[str, str], **fields: Any
) -> dict[str, dict[str, Any]]:
    """An item whose assets (key → ``file:local_path``) all serve the donor's thumbnail."""
    donor = _donor(sim)
    thumb = donor["assets"]["thumbnail"]
    assets = {key: {**thumb, "file:local_path": name, **fields} for key, name in names.items()}
    sim.catalog.add_item(L1A, {**donor, "id": item_id, "assets": assets})
    return assets


def _dirs(tmp_path: Path) -> tuple[Path, Path]:
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    return dest, outside


def _victim(outside: Path, name: str = "victim", body: bytes = b"outside data") -> Path:
    victim = outside / name
    victim.write_bytes(body)
    os.utime(victim, ns=(OLD_NS, OLD_NS))
    return victim


def _snapshot(root: Path) -> dict[str, tuple[str, bytes, int]]:
    """Every entry under ``root`` (links not followed): kind, bytes or link target, mtime."""
    seen: dict[str, tuple[str, bytes, int]] = {}
    for top, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            path = Path(top, name)
            st = path.lstat()
            if path.is_symlink():
                seen[str(path)] = ("link", os.fsencode(path.readlink()), st.st_mtime_ns)
            elif path.is_dir():
                seen[str(path)] = ("dir", b"", st.st_mtime_ns)
            else:
                seen[str(path)] = ("file", path.read_bytes(), st.st_mtime_ns)
    return seen


def _ends(recorder: Recorder) -> dict[str, tuple[Status, str]]:
    """Every job's end by label: planning refusals and transfer outcomes alike."""
    ends = {
        label: (o.status, o.error or "") for label, o in recorder.outcomes().items()
    }  # fmt: skip
    for event in recorder.of_type(JobRefused):
        r = event.refusal
        ends[f"{r.item_id}/{r.asset_key}"] = (Status.REFUSED, r.reason)
    return ends


def _path_of(length: int) -> str:
    """A relative path of ``length`` bytes, in segments of 100."""
    segments = []
    while length > 100:
        segments.append("p" * 99)
        length -= 100
    return "/".join([*segments, "x" * (length - 4) + ".png"])


def _no_traceback(ends: dict[str, tuple[Status, str]]) -> None:
    assert all("Traceback" not in error for _, error in ends.values())


# -- 1. a link at a .part name ------------------------------------------------------------


def test_a_link_at_a_part_name_is_never_written_through(
    sim: SimServer, tmp_path: Path, recorder: Recorder
) -> None:
    dest, outside = _dirs(tmp_path)
    _add(sim, EVIL, {"a": "a.png", "b": "b.png", "c": "c.png"})
    folder = dest / L1A / EVIL
    folder.mkdir(parents=True)
    victim = _victim(outside)
    hard = _victim(outside, "hard", b"shared inode")
    (folder / "a.png.part").symlink_to(outside / "created")  # dangling
    (folder / "b.png.part").symlink_to(victim)
    os.link(hard, folder / "c.png.part")  # a hard link: truncating it would reach outside
    before = _snapshot(outside)
    result = pull(
        sim, dest, recorder, ids=[EVIL, _donor_id(sim)], assets=["thumbnail", "a", "b", "c"]
    )
    assert result.downloaded == 4 and result.exit_code == 0, _ends(recorder)
    assert _snapshot(outside) == before
    for name in ("a.png", "b.png", "c.png"):
        final = folder / name
        assert not final.is_symlink() and final.read_bytes() == _thumb(sim)
    assert not list(folder.glob("*.part"))


@pytest.mark.parametrize("kind", ["symlink", "hardlink"])
def test_a_part_replaced_by_a_link_between_runs_is_not_resumed_through(
    sim: SimServer, tmp_path: Path, kind: str
) -> None:
    """The journal holds the .part's validators, so the next run would resume it: the
    bytes it holds must not be read from, nor the rest written into, a file outside."""
    dest, outside = _dirs(tmp_path)
    _add(sim, EVIL, {"a": "a.png"})
    sim.catalog.cut(_donor_id(sim), "thumbnail", 1000)
    first = pull(sim, dest, ids=[EVIL], assets=["a"], retries=0)
    part = dest / L1A / EVIL / "a.png.part"
    assert first.failed == 1 and part.stat().st_size == 1000
    victim = _victim(outside, body=b"V" * 1000)  # as long as the .part: resumed at its end
    part.unlink()
    if kind == "symlink":
        part.symlink_to(victim)
    else:
        os.link(victim, part)
    before = _snapshot(outside)
    recorder = Recorder()
    second = pull(sim, dest, recorder, ids=[EVIL], assets=["a"])
    assert second.downloaded == 1 and second.exit_code == 0, _ends(recorder)
    assert _snapshot(outside) == before
    final = dest / L1A / EVIL / "a.png"
    assert not final.is_symlink() and final.read_bytes() == _thumb(sim)
    assert recorder.outcomes()[f"{EVIL}/a"].resumed_from == 0


# -- 1. a link at a final name ------------------------------------------------------------


def test_a_final_name_linked_outside_is_replaced_not_verified(
    sim: SimServer, tmp_path: Path, recorder: Recorder
) -> None:
    """A zip that verifies and a file of the right ``file:size`` wait outside DEST, linked
    from the final names: neither proves anything about DEST, neither is kept."""
    dest, outside = _dirs(tmp_path)
    donor = _donor(sim)
    thumb = _thumb(sim)
    assets = {
        "z": {**donor["assets"]["product"], "file:local_path": "z.zip"},
        "t": {**donor["assets"]["thumbnail"], "file:local_path": "t.png", "file:size": len(thumb)},
    }
    sim.catalog.add_item(L1A, {**donor, "id": EVIL, "assets": assets})
    good_zip = outside / "good.zip"
    with zipfile.ZipFile(good_zip, "w") as zf:
        zf.writestr("inside.txt", "a valid zip outside DEST")
    os.utime(good_zip, ns=(OLD_NS, OLD_NS))
    sized = _victim(outside, "sized", b"x" * len(thumb))
    folder = dest / L1A / EVIL
    folder.mkdir(parents=True)
    (folder / "z.zip").symlink_to(good_zip)
    (folder / "t.png").symlink_to(sized)
    before = _snapshot(outside)
    result = pull(sim, dest, recorder, ids=[EVIL], assets=["z", "t"])
    ends = _ends(recorder)
    assert ends[f"{EVIL}/z"][0] is Status.DOWNLOADED and ends[f"{EVIL}/t"][0] is Status.DOWNLOADED
    assert result.exit_code == 0
    assert _snapshot(outside) == before
    assert not (folder / "z.zip").is_symlink() and zipfile.is_zipfile(folder / "z.zip")
    assert not (folder / "t.png").is_symlink() and (folder / "t.png").read_bytes() == thumb


# -- 2. a component of an item's directory turned into a link between runs --------------


def test_an_item_directory_turned_into_a_link_between_runs_is_left_alone(
    sim: SimServer, tmp_path: Path, recorder: Recorder
) -> None:
    dest, outside = _dirs(tmp_path)
    _add(sim, EVIL, {"a": "a.png", "b": "b.png"})
    sim.catalog.cut(_donor_id(sim), "thumbnail", 1000)  # one of the two keeps a .part
    first = pull(sim, dest, ids=[EVIL], assets=["a", "b"], retries=0)
    assert first.downloaded == 1 and first.failed == 1
    folder = dest / L1A / EVIL
    moved = outside / EVIL
    folder.rename(moved)
    folder.symlink_to(moved, target_is_directory=True)
    # The server's file changes: the .part's validator is stale (a resume would discard
    # it) and the finished file would be fetched again.
    sim.catalog.bump(_donor_id(sim), "thumbnail")
    before = _snapshot(outside)
    second = pull(sim, dest, recorder, ids=[EVIL, _donor_id(sim)], assets=["thumbnail", "a", "b"])
    assert _snapshot(outside) == before
    ends = _ends(recorder)
    _no_traceback(ends)
    for key in ("a", "b"):
        status, error = ends[f"{EVIL}/{key}"]
        assert status is Status.REFUSED and f"{L1A}/{EVIL}" in error and "link" in error
    assert ends[f"{_donor_id(sim)}/thumbnail"][0] is Status.DOWNLOADED
    assert second.exit_code == 1 and second.downloaded == 1


def test_a_collection_directory_linked_inside_dest_is_not_followed_either(
    sim: SimServer, tmp_path: Path, recorder: Recorder
) -> None:
    """Only real directories are walked: a link that stays inside DEST is refused too,
    so no check can be raced by retargeting it."""
    dest, _ = _dirs(tmp_path)
    (dest / "elsewhere").mkdir()
    (dest / L1A).symlink_to(dest / "elsewhere", target_is_directory=True)
    result = pull(sim, dest, recorder, assets=["thumbnail"])
    assert result.refused == 5 and result.downloaded == 0
    assert list((dest / "elsewhere").iterdir()) == []
    assert all("symbolic link" in error for _, error in _ends(recorder).values())


def test_a_directory_swapped_for_a_link_mid_transfer_redirects_nothing(
    sim: SimServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the first write and the rename, the item's directory is moved aside and a
    link to a directory outside put in its place, with a decoy .part there: the rename
    happens in the directory the .part was made in, the decoy is not touched."""
    dest, outside = _dirs(tmp_path)
    _add(sim, EVIL, {"a": "a.png"})
    folder = dest / L1A / EVIL
    target = outside / "target"
    target.mkdir()
    _victim(target, "a.png.part", b"decoy")
    real = partfile.PartFile.seal

    def swap_then_seal(self: Any, *args: Any) -> Any:
        if self.fd is not None and not folder.is_symlink():  # opened by an earlier batch
            folder.rename(folder.with_name(EVIL + ".aside"))
            folder.symlink_to(target, target_is_directory=True)
        return real(self, *args)

    monkeypatch.setattr(partfile.PartFile, "seal", swap_then_seal)
    before = _snapshot(outside)
    result = pull(sim, dest, ids=[EVIL], assets=["a"], chunk_size=1024)
    assert folder.is_symlink()  # the swap happened
    assert _snapshot(outside) == before
    assert not result.fatal
    assert (dest / L1A / (EVIL + ".aside") / "a.png").read_bytes() == _thumb(sim)


# -- 3. metadata cannot address stacpull's own state -------------------------------------


@pytest.mark.parametrize(
    ("name", "template", "collection"),
    [
        (".stacpull/journal.sqlite", "{name}", "C"),
        (".STACPULL/journal.sqlite", "{name}", "C"),
        (".Stacpull/lock", "{name}", "C"),
        (".stacpull", "{name}", "C"),
        (".stacpull./x", "{name}", "C"),  # Windows and SMB drop trailing dots
        (".\uff53tacpull/x", "{name}", "C"),  # a fullwidth s, NFKC-equal
        (".\u017ftacpull/x", "{name}", "C"),  # a long s, case-folded to s
        ("x.png", "{collection}/{item}/{name}", ".StacPull"),
        ("journal.sqlite", "{collection}/{name}", ".stacpull"),
    ],
)
def test_a_destination_inside_stacpulls_state_is_refused(
    name: str, template: str, collection: str
) -> None:
    item = {
        "id": "I",
        "collection": collection,
        "assets": {"a": {"href": "http://h/x.png", "file:local_path": name}},
    }
    jobs, refusals = plan_item(item, PlanRules(selectors=("a",), template=template))
    assert jobs == [] and len(refusals) == 1
    assert ".stacpull" in refusals[0].reason and "state" in refusals[0].reason


_PIECES = [
    ".stacpull",
    ".STACPULL",
    ".Stacpull.",
    "\u017f",
    "s",
    "tacpull",
    "x",
    "/",
    ".",
    "e" * 130,
]


@given(st.lists(st.sampled_from(_PIECES), min_size=1, max_size=40))
def test_every_planned_destination_stays_out_of_the_state_and_fits_the_filesystem(
    pieces: list[str],
) -> None:
    name = "".join(pieces)
    item = {
        "id": "I",
        "collection": "C",
        "assets": {"a": {"href": "http://h/x.png", "file:local_path": name}},
    }
    jobs, refusals = plan_item(item, PlanRules(selectors=("a",), template="{name}"))
    assert len(jobs) + len(refusals) == 1
    for job in jobs:
        first = unicodedata.normalize("NFKC", job.dest.split("/")[0]).casefold().rstrip(".")
        assert first != ".stacpull"
        assert len(job.dest.rsplit("/", 1)[-1].encode()) + len(".part") <= 255
        assert len(job.dest.encode()) + len("/.part") < 4096


def test_a_stacpull_directory_deeper_down_is_refused_too() -> None:
    """It may be the state of a DEST nested below (tests/test_hostile_attack2.py)."""
    item = {"id": "I", "collection": "C", "assets": {"a": {"href": "http://h/x.png"}}}
    rules = PlanRules(selectors=("a",), template="{collection}/.stacpull/{name}")
    jobs, refusals = plan_item(item, rules)
    assert jobs == [] and "state directory" in refusals[0].reason


def test_the_journal_survives_a_local_path_into_it_through_the_cli(
    sim: SimServer, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    _add(sim, EVIL, {"a": ".stacpull/journal.sqlite", "b": ".STACPULL/lock", "c": "fine.png"})
    args = ["download", "--catalog", sim.catalog_url, "--collection", L1A, "--ids", EVIL]
    args += ["--assets", "a,b,c", "--dest", str(dest), "--template", "{name}"]
    code, out, err = cli(*args, token=TOKEN)
    assert code == 1, out + err
    assert "Traceback" not in out + err
    assert (dest / "fine.png").read_bytes() == _thumb(sim)
    db = sqlite3.connect(dest / ".stacpull" / "journal.sqlite")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = dict(db.execute("SELECT path, status FROM transfers").fetchall())
    finally:
        db.close()
    assert rows.get("fine.png") == "done"
    assert not (dest / ".stacpull" / "journal.sqlite.part").exists()
    # and the run can be repeated: the journal is still the journal
    code, out, err = cli(*args, token=TOKEN)
    assert code == 1 and "Traceback" not in out + err


# -- 4. a name that is another asset's directory; names too long; a symlink loop ---------


@pytest.mark.parametrize(
    ("names", "concurrency", "across_items"),
    [
        ({"a": "conflict", "b": "conflict/inner.bin"}, 1, False),  # the file first
        ({"a": "conflict/inner.bin", "b": "conflict"}, 1, False),  # the directory first
        ({"a": "conflict", "b": "conflict/inner.bin"}, 8, False),  # both in flight
        ({"a": "conflict", "b": "conflict/inner.bin"}, 1, True),  # in two items
    ],
)
def test_a_name_that_is_another_assets_directory_fails_alone(
    sim: SimServer,
    tmp_path: Path,
    names: dict[str, str],
    concurrency: int,
    across_items: bool,
) -> None:
    dest, _ = _dirs(tmp_path)
    if across_items:
        _add(sim, EVIL, {"a": names["a"]})
        _add(sim, EVIL2, {"b": names["b"]})
        template, labels = "{collection}/{name}", [f"{EVIL}/a", f"{EVIL2}/b"]
    else:
        _add(sim, EVIL, names)
        template, labels = "{collection}/{item}/{name}", [f"{EVIL}/a", f"{EVIL}/b"]
    for _ in range(2):  # the second run meets the first one's files on disk
        recorder = Recorder()
        result = pull(
            sim,
            dest,
            recorder,
            ids=[EVIL, EVIL2, _donor_id(sim)],
            assets=["thumbnail", "a", "b"],
            template=template,
            concurrency=concurrency,
        )
        ends = _ends(recorder)
        _no_traceback(ends)
        statuses = sorted(ends[label][0] for label in labels)
        kept = [s for s in statuses if s in (Status.DOWNLOADED, Status.SKIPPED)]
        lost = [ends[label] for label in labels if ends[label][0] is Status.REFUSED]
        assert len(kept) == 1 and len(lost) == 1, ends
        assert "conflict" in lost[0][1] and "director" in lost[0][1], lost
        assert ends[f"{_donor_id(sim)}/thumbnail"][0] in (Status.DOWNLOADED, Status.SKIPPED)
        assert result.exit_code == 1 and not result.fatal


def test_names_and_paths_too_long_for_the_filesystem_fail_alone(
    sim: SimServer, tmp_path: Path, recorder: Recorder
) -> None:
    dest, _ = _dirs(tmp_path)
    deep_dirs = "/".join(["d" * 200] * 25)
    names = {
        "a": "n" * 300 + ".png",  # over NAME_MAX
        "b": "e" * 247 + ".png",  # 251 bytes: fits NAME_MAX, its .part does not
        "c": "\u00e9" * 124 + ".png",  # 252 bytes in UTF-8, 128 characters
        "d": deep_dirs + "/x.png",  # a 5 000-byte path
        "e": _path_of(4080 - len(f"{L1A}/{EVIL}/")),  # fits the plan, not with DEST
        "f": "fine.png",
    }
    _add(sim, EVIL, names)
    result = pull(sim, dest, recorder, ids=[EVIL, _donor_id(sim)], assets=["thumbnail", *names])
    ends = _ends(recorder)
    _no_traceback(ends)
    for key in "abcde":
        status, error = ends[f"{EVIL}/{key}"]
        assert status is Status.REFUSED and "long" in error, (key, error)
    assert ends[f"{EVIL}/f"][0] is Status.DOWNLOADED
    assert ends[f"{_donor_id(sim)}/thumbnail"][0] is Status.DOWNLOADED
    assert result.exit_code == 1 and not result.fatal


@pytest.mark.parametrize(
    "name",
    ["n" * 300, "e" * 247 + ".png", "/".join(["d" * 200] * 25) + "/x.png"],
    ids=["name-over-NAME_MAX", "part-over-NAME_MAX", "path-over-PATH_MAX"],
)
def test_too_long_names_are_refused_when_planned(name: str) -> None:
    item = {"id": "I", "collection": "C", "assets": {"a": {"href": "http://h/x.png"}}}
    item["assets"]["a"]["file:local_path"] = name
    jobs, refusals = plan_item(item, PlanRules(selectors=("a",)))
    assert jobs == [] and "long" in refusals[0].reason


def test_a_symlink_loop_on_the_path_fails_that_item_alone(
    sim: SimServer, tmp_path: Path, recorder: Recorder
) -> None:
    dest, _ = _dirs(tmp_path)
    _add(sim, EVIL, {"a": "a.png"})
    _add(sim, EVIL2, {"b": "loop/b.png"})
    (dest / L1A / EVIL2).mkdir(parents=True)
    (dest / L1A / EVIL).symlink_to(dest / L1A / EVIL)  # DEST/a -> DEST/a
    (dest / L1A / EVIL2 / "loop").symlink_to("loop")
    result = pull(
        sim, dest, recorder, ids=[EVIL, EVIL2, _donor_id(sim)], assets=["thumbnail", "a", "b"]
    )
    ends = _ends(recorder)
    _no_traceback(ends)
    assert ends[f"{EVIL}/a"][0] is Status.REFUSED and f"{L1A}/{EVIL}" in ends[f"{EVIL}/a"][1]
    assert ends[f"{EVIL2}/b"][0] is Status.REFUSED and "loop" in ends[f"{EVIL2}/b"][1]
    assert ends[f"{_donor_id(sim)}/thumbnail"][0] is Status.DOWNLOADED
    assert result.exit_code == 1 and not result.fatal


def test_a_fifo_at_a_part_name_is_replaced_not_opened(sim: SimServer, tmp_path: Path) -> None:
    """Opening a FIFO for writing would wait for a reader forever."""
    dest, _ = _dirs(tmp_path)
    _add(sim, EVIL, {"a": "a.png"})
    folder = dest / L1A / EVIL
    folder.mkdir(parents=True)
    os.mkfifo(folder / "a.png.part")
    result = pull(sim, dest, ids=[EVIL], assets=["a"])
    assert result.downloaded == 1
    assert (folder / "a.png").read_bytes() == _thumb(sim)


# -- the segmented writer and the readers, each opener alone -----------------------------


def test_the_range_writer_and_the_part_reader_never_follow_a_link(tmp_path: Path) -> None:
    root, outside = _dirs(tmp_path)
    victim = _victim(outside, body=b"V" * 100)
    (root / "C" / "item").mkdir(parents=True)
    part = root / "C" / "item" / "f.bin.part"
    part.symlink_to(victim)
    (root / "L").symlink_to(outside, target_is_directory=True)
    (outside / "g.bin.part").write_bytes(b"G" * 100)
    before = _snapshot(outside)
    hasher = record_hash("sha2-256").new()
    for path in (part, root / "L" / "g.bin.part"):
        with pytest.raises(PlanError):
            partfile.open_for_ranges(root, path)
        with pytest.raises(PlanError):
            partfile.hash_part(root, hasher, path, 0, 100)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        partfile.hash_part(root, hasher, root / "L" / "g.bin.part", 0, 100)
    assert _snapshot(outside) == before


def test_the_plan_knows_where_the_journal_lives() -> None:
    from stacpull import plan
    from stacpull.journal import JOURNAL_DIR

    assert plan._STATE_DIR == JOURNAL_DIR
