"""A cluster mirror attacked as a hostile world, or an unattended night's bad luck, would:
a coordinator that crashed while its workers went on, planted links under
``DEST/.stacpull/shards``, secrets on their way to the workers, a hostile layout. No Dask:
what Dask does (run a task, lose a coordinator) is done here with :func:`run_unit`."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from stacpull.api import build_config
from stacpull.audit import read_status, verify_dest
from stacpull.cluster.tokenfile import write_token
from stacpull.config import Config, Secret
from stacpull.engine import conclude, plan_jobs, run
from stacpull.errors import StacpullError, StorageError
from stacpull.runtypes import RunOptions
from stacpull.shards.coordinator import open_shards, unit_specs
from stacpull.shards.jobfiles import JobFiles
from stacpull.shards.layout import Layout
from stacpull.shards.unit import UnitSpec, config_values, run_unit
from stacpull.sim import SimServer

from .conftest import L1A, L1C, cli, files_under, until
from .test_shards import sim_config, token_file

#: The write batch of these tests (download.chunk_size caps it, as in tests/test_cluster.py).
BATCH = 65_536
HELD = "enclosure_i_abs_tiff"


def crashed_coordinator(
    config: Config,
    tmp: Path,
    *,
    buckets: int = 1,
    work: Callable[[list[UnitSpec]], Any] | None = None,
) -> list[UnitSpec]:
    """A cluster run whose coordinator died after dispatch: the search planned, the job
    files written, the bucket journals seeded, ``work`` done by the workers (nothing by
    default), nothing merged back; the DEST lock gone with the coordinator."""
    files: list[JobFiles] = []

    def on_open(state: Any) -> Callable[..., None]:
        files.append(open_shards(state, buckets))
        return files[0].add

    async def main() -> list[UnitSpec]:
        plan = await plan_jobs(config, RunOptions(kind="mirror"), on_open)
        assert plan.state is not None
        files[0].close()
        specs = unit_specs(plan.state, files[0], 1, token_file=token_file(tmp))
        if work is not None:
            await anyio.to_thread.run_sync(work, specs)
        await conclude(plan.state, fatal="the coordinator was killed")  # the lock let go
        return specs

    return anyio.run(main)


def _mirror(config: Config, **options: Any) -> Any:
    return anyio.run(functools.partial(run, config, options=RunOptions(kind="mirror", **options)))


def test_a_plain_mirror_after_a_crashed_coordinator_stops_its_orphan_worker_first(
    sim: SimServer, tmp_path: Path
) -> None:
    # The coordinator died; a worker it had dispatched (a tcp:// cluster outlives it) is
    # still writing a file when the user runs a plain `mirror --prune` on the same DEST.
    # The plain run must take the buckets (the orphan stops at its next heartbeat) before
    # it transfers anything: otherwise both write one .part, and the file is sent twice.
    dest = tmp_path / "dest"
    assets = [HELD, "quicklook_png"]
    config = sim_config(sim, dest, collections=[L1C], assets=assets, chunk_size=BATCH)
    (spec,) = crashed_coordinator(config, tmp_path)
    iid = str(sim.catalog.item(L1C, 1)["id"])
    size = len(sim.catalog.static_body(L1C, 1, HELD))
    sim.hold(iid, HELD, 3 * BATCH + 1000)
    box: dict[str, Any] = {}
    orphan = threading.Thread(
        target=lambda: box.update(run_unit(dataclasses.replace(spec, owner="orphan:1")))
    )
    orphan.start()
    try:
        assert sim.wait_held(iid, HELD, 10.0)
        until(lambda: any(p.stat().st_size >= 3 * BATCH for p in dest.rglob("*.tiff.part")))
        result = _mirror(config, prune=True)
    finally:
        sim.release(iid, HELD)
        orphan.join(30.0)
    assert box["outcome"] == "superseded", box
    assert result.ok and verify_dest(dest).ok
    assert sim.bytes_sent_for(iid, HELD) <= size + BATCH


def test_status_and_verify_after_a_crashed_coordinator_see_what_its_workers_did(
    sim: SimServer, tmp_path: Path
) -> None:
    # Every unit completed, then the coordinator died before merging a bucket: the files
    # are on disk and recorded in the bucket journals. `status` and `verify` must tell
    # them (not "15 pending", "0 checked") before any later run merges them.
    dest = tmp_path / "dest"

    def work(specs: list[UnitSpec]) -> None:
        assert all(run_unit(s)["outcome"] == "complete" for s in specs)

    crashed_coordinator(sim_config(sim, dest), tmp_path, buckets=4, work=work)
    on_disk = len(files_under(dest))
    assert on_disk == 15
    code, out, _ = cli("status", "--json", str(dest))
    assert code == 0 and json.loads(out)["by_status"]["done"]["files"] == on_disk, out
    code, out, _ = cli("verify", "--json", str(dest))
    assert code == 0 and json.loads(out)["checked"] == on_disk, out
    assert read_status(dest).by_status["done"]["files"] == on_disk


def _outside_bucket(tmp: Path) -> Path:
    """A directory outside DEST shaped as a shards directory with one bucket journal."""
    outside = tmp / "outside"
    (outside / "b000").mkdir(parents=True)
    db = sqlite3.connect(outside / "b000" / "journal.sqlite")
    db.execute("CREATE TABLE planted (x)")
    db.close()
    return outside


def test_a_link_planted_at_the_shards_directory_is_refused(sim: SimServer, tmp_path: Path) -> None:
    # DEST/.stacpull/shards -> a directory elsewhere: no run opens, merges from or writes
    # a bucket journal there (its rows would come home into the main journal).
    dest = tmp_path / "dest"
    _mirror(sim_config(sim, dest))
    outside = _outside_bucket(tmp_path)
    before = sorted(p.name for p in outside.rglob("*"))
    (dest / ".stacpull" / "shards").symlink_to(outside, target_is_directory=True)
    with pytest.raises(StacpullError, match="shards"):
        _mirror(sim_config(sim, dest))
    assert sorted(p.name for p in outside.rglob("*")) == before
    with pytest.raises(StorageError, match="shards"):
        Layout.read(dest / ".stacpull")


def test_no_password_or_header_value_in_a_units_repr_or_its_catalogue_url(
    tmp_path: Path,
) -> None:
    # A unit's spec crosses the wire to the scheduler and the workers, and Dask logs a
    # task's arguments; the catalogue's password is not needed there (workers do not
    # search), and no credential may show in the spec's repr.
    config = build_config(
        catalog="https://user:hunter2@stac.example.org/stac",
        collections=[L1A],
        dest=str(tmp_path),
        token="t0ken-value",
        headers=["X-Api-Key: s3cr3t-header"],
    )
    values = config_values(config)
    assert "hunter2" not in repr(values)
    spec = UnitSpec(str(tmp_path), values, 1, 0, (0,), 1)
    assert "hunter2" not in repr(spec) and "s3cr3t-header" not in repr(spec)
    assert "t0ken-value" not in repr(values)


@pytest.mark.parametrize(
    "text",
    [
        '{"version": 1, "buckets": 0, "hash": "sha256-8/v1"}',
        '{"version": 1, "buckets": -3, "hash": "sha256-8/v1"}',
        '{"version": 1, "buckets": "64", "hash": "sha256-8/v1"}',
        '{"version": 1, "buckets": 64, "hash": "md5/v9"}',
        '{"version": 2, "buckets": 64, "hash": "sha256-8/v1"}',
        "[64]",
        "not json",
    ],
)
def test_a_hostile_layout_is_refused_with_its_path(tmp_path: Path, text: str) -> None:
    # held: every shape a hand-edited layout.json can take is a StorageError naming it
    state = tmp_path / ".stacpull"
    (state / "shards").mkdir(parents=True)
    (state / "shards" / "layout.json").write_text(text)
    with pytest.raises(StorageError, match="layout"):
        Layout.ensure(state, None)


@pytest.mark.parametrize(
    "hostile",
    [
        "../escape.bin",
        "a/../../x.bin",
        ".stacpull/journal.sqlite",
        # Variants no one named: an absolute path beside DEST, a NUL, DEST itself.
        "{outside}/abs.bin",
        "a\x00b.bin",
        ".",
    ],
)
def test_a_job_file_edited_between_runs_writes_nothing_outside_dest_or_in_its_state(
    sim: SimServer, tmp_path: Path, hostile: str
) -> None:
    # A job file is read back by a worker on another node: a path there that the planner
    # would have refused (outside DEST, or stacpull's own journal) must stop the unit.
    dest = tmp_path / "dest"
    (spec,) = crashed_coordinator(sim_config(sim, dest), tmp_path)
    jobs = dest / ".stacpull" / "shards" / "b000" / "jobs-1.jsonl"
    lines = [json.loads(line) for line in jobs.read_text().splitlines()]
    lines[0]["dest"] = hostile.format(outside=tmp_path)
    jobs.write_text("".join(json.dumps(line) + "\n" for line in lines))
    journal = (dest / ".stacpull" / "journal.sqlite").read_bytes()[:16]
    out = run_unit(spec)
    assert out["outcome"] != "complete" and "jobs-1.jsonl" in (out["fatal"] or ""), out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest", "token"]
    assert (dest / ".stacpull" / "journal.sqlite").read_bytes()[:16] == journal
    assert read_status(dest).by_status  # the main journal still opens


def test_a_link_planted_at_the_layouts_temporary_name_is_not_followed(tmp_path: Path) -> None:
    # shards/.layout-<pid>.json is a name anyone who can write the shards directory can
    # guess: the layout is recorded through a fresh file, never through a link there.
    state = tmp_path / ".stacpull"
    (state / "shards").mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    (state / "shards" / f".layout-{os.getpid()}.json").symlink_to(victim)
    assert Layout.ensure(state, 4) == Layout(4)
    assert victim.read_text() == "keep me\n"
    assert Layout.read(state) == Layout(4)


def test_the_workers_token_file_is_private_and_never_written_through_a_link(
    tmp_path: Path,
) -> None:
    # held: 0600 whatever the umask, replaced whole; a link planted at its name refused
    path = tmp_path / ".stacpull" / "token"
    write_token(path, Secret("first-token"))
    write_token(path, Secret("second-token"))
    assert path.read_text() == "second-token\n" and path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["token"]  # no temporary left
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    path.unlink()
    path.symlink_to(victim)
    with pytest.raises(StorageError, match="token"):
        write_token(path, Secret("third-token"))
    assert victim.read_text() == "keep me\n"


def test_a_corrupt_bucket_journal_or_lease_is_a_clear_error_naming_it(
    sim: SimServer, tmp_path: Path
) -> None:
    # held: no traceback, no silent loss of the bucket's rows; the file is named
    dest = tmp_path / "dest"
    crashed_coordinator(sim_config(sim, dest), tmp_path)
    bucket = dest / ".stacpull" / "shards" / "b000"
    (bucket / "lease.sqlite").write_bytes(b"not a database " * 64)
    code, _, err = cli("status", "--shards", str(dest))
    assert code == 2 and "b000/lease.sqlite" in err
    for name in ("journal.sqlite-wal", "journal.sqlite-shm"):
        (bucket / name).unlink(missing_ok=True)
    (bucket / "journal.sqlite").write_bytes(b"not a database " * 64)
    code, _, err = cli("status", str(dest))
    assert code == 2 and "b000/journal.sqlite" in err


def test_a_link_planted_at_a_bucket_directory_is_refused_before_anything_is_made_there(
    sim: SimServer, tmp_path: Path
) -> None:
    # shards/b000 -> elsewhere: refused, and no lock or journal file made through it first
    dest = tmp_path / "dest"
    crashed_coordinator(sim_config(sim, dest), tmp_path)
    outside = _outside_bucket(tmp_path) / "b000"
    before = sorted(p.name for p in outside.iterdir())
    bucket = dest / ".stacpull" / "shards" / "b000"
    for path in bucket.iterdir():
        path.unlink()
    bucket.rmdir()
    bucket.symlink_to(outside, target_is_directory=True)
    with pytest.raises(StorageError, match="b000"):
        _mirror(sim_config(sim, dest))
    assert sorted(p.name for p in outside.iterdir()) == before
