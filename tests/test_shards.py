"""The shard layer of a cluster mirror, without Dask: buckets and their layout, units, job
files, seed and merge, a whole cluster-shaped mirror coordinated in one process (what
:mod:`stacpull.cluster` does with Dask in between), `status --shards`, shared file systems."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

import stacpull
from stacpull.api import build_config
from stacpull.audit import read_status, verify_dest
from stacpull.cluster.replay import replay_outcomes
from stacpull.config import Config
from stacpull.engine import PlanOutcome, conclude, plan_jobs
from stacpull.errors import ConfigError
from stacpull.journal import Journal
from stacpull.journal.fs import (
    SHARED_FS_ENV,
    exclusive_locking,
    parse_mountinfo,
    shared_filesystem,
)
from stacpull.journal.rows import job_columns
from stacpull.models import Job
from stacpull.runtypes import RunOptions, RunResult
from stacpull.shards.coordinator import clear_jobs, merge_unit, open_shards, unit_specs
from stacpull.shards.jobfiles import JobFiles, job_file, read_jobs
from stacpull.shards.layout import (
    DEFAULT_BUCKETS,
    HASH,
    UNKNOWN_SIZE,
    Layout,
    Unit,
    bucket_of,
    job_bucket,
    planned_bytes,
    unit_count,
    units,
)
from stacpull.shards.sync import bucket_dirs, merge, seed
from stacpull.shards.unit import UnitSpec, config_values, run_unit, unit_config
from stacpull.sim import SimCatalog, SimOptions, SimServer, default_collections

from .conftest import L1A, TOKEN, cli, files_under, sim_options

Runner = Callable[[list[UnitSpec]], list[dict[str, Any]]]


def sim_config(sim: SimServer, dest: Path, **kw: Any) -> Config:
    return build_config(**sim_options(sim, dest, **kw))


def token_file(tmp: Path) -> str:
    path = tmp / "token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return str(path)


def in_process(specs: list[UnitSpec]) -> list[dict[str, Any]]:
    return [run_unit(spec) for spec in specs]


def coordinate(
    config: Config,
    tokens: str,
    *,
    buckets: int = 8,
    workers: int = 2,
    run: Runner = in_process,
    adjust: Callable[[UnitSpec], UnitSpec] | None = None,
) -> tuple[RunResult, list[dict[str, Any]]]:
    """One cluster-shaped mirror: every unit run by ``run``, merged, the run concluded."""
    files: list[JobFiles] = []

    def on_open(state: Any) -> Callable[..., None]:
        files.append(open_shards(state, buckets))
        return files[0].add

    async def main() -> tuple[RunResult, list[dict[str, Any]]]:
        plan: PlanOutcome = await plan_jobs(config, RunOptions(kind="mirror"), on_open)
        assert plan.state is not None and plan.jobs == sum(files[0].counts.values())
        state = plan.state
        try:
            files[0].close()
            specs = unit_specs(state, files[0], workers, token_file=tokens)
            if adjust is not None:
                specs = [adjust(spec) for spec in specs]
            results = await anyio.to_thread.run_sync(run, specs)
        except BaseException as exc:  # a failed assertion in ``run``: the run is closed
            await conclude(state, fatal=repr(exc))
            raise
        for result in results:
            settle(state, result)
        bad = [r["fatal"] for r in results if r["outcome"] != "complete"]
        if not bad:
            clear_jobs(state, files[0].counts)
        return await conclude(state, fatal=bad[0] if bad else None), results

    return anyio.run(main)


def settle(state: Any, result: dict[str, Any]) -> None:
    """A returned unit brought home as the driver does: merged, and a complete one's
    files told to the run (:func:`stacpull.cluster.replay.replay_outcomes`)."""
    merge_unit(state, result["buckets"])
    log = result.get("outcomes")
    if log and result["outcome"] == "complete":
        replay_outcomes(
            Path(log), state.journal.directory, result["buckets"], state.run_id, state.emit
        )
    elif log:
        Path(log).unlink(missing_ok=True)


def replace(spec: UnitSpec, **changes: Any) -> UnitSpec:
    return dataclasses.replace(spec, **changes)


# -- buckets, layout, units ----------------------------------------------------------------


def test_an_items_bucket_is_a_stable_hash_of_collection_and_id() -> None:
    # sha256("BiomassLevel1aIOC\0item-1")[:8] as a big-endian integer, modulo B
    digest = hashlib.sha256(b"BiomassLevel1aIOC\x00item-1").digest()
    assert bucket_of(L1A, "item-1", 64) == int.from_bytes(digest[:8], "big") % 64
    assert bucket_of(L1A, "item-1", 64) == 42  # pinned: a later version must not move it
    assert bucket_of(L1A, "item-1", 1) == 0
    job = Job("item-1", L1A, "product", "http://x/a.zip", "a/a.zip")
    other_asset = dataclasses.replace(job, asset_key="quicklook", dest="a/q.png")
    assert job_bucket(job, 64) == job_bucket(other_asset, 64) == 42  # files stay together


def test_the_bucket_count_is_recorded_and_another_one_refused(tmp_path: Path) -> None:
    state = tmp_path / ".stacpull"
    assert Layout.read(state) is None
    assert Layout.ensure(state, 16) == Layout(16)
    record = json.loads((state / "shards" / "layout.json").read_text())
    assert record == {"version": 1, "buckets": 16, "hash": HASH} and HASH == "sha256-8/v1"
    assert Layout.ensure(state) == Layout(16)  # the recorded B wins when none is asked
    with pytest.raises(ConfigError, match="made with 16 buckets"):
        Layout.ensure(state, 64)
    (tmp_path / "fresh").mkdir()
    assert Layout.ensure(tmp_path / "fresh" / ".stacpull").buckets == DEFAULT_BUCKETS


def test_units_are_balanced_and_come_largest_first() -> None:
    loads = dict(enumerate([90, 70, 60, 50, 40, 30, 20, 10, 5, 5]))
    made: list[Unit] = units(loads, 3)
    assert [u.number for u in made] == [0, 1, 2]
    assert [u.bytes for u in made] == sorted((u.bytes for u in made), reverse=True)
    assert sorted(b for u in made for b in u.buckets) == sorted(loads)
    assert sum(u.bytes for u in made) == sum(loads.values())
    # LPT: within 4/3 of the best possible largest unit (380 / 3, rounded up: 127)
    assert made[0].bytes <= 4 / 3 * 127
    assert max(u.bytes for u in made) - min(u.bytes for u in made) <= 10
    assert units({}, 4) == []
    assert len(units({1: 5, 2: 5}, 8)) == 2  # never more units than buckets with work
    assert unit_count(100, 2) == 8 and unit_count(3, 2) == 3


def test_planned_bytes_fall_back_to_typical_sizes_then_one_megabyte() -> None:
    job = Job("i", L1A, "product", "http://x/a.zip", "a.zip")
    assert planned_bytes(dataclasses.replace(job, size=123), {}) == 123
    assert planned_bytes(job, {(L1A, "product"): 456}) == 456
    assert planned_bytes(job, {}) == UNKNOWN_SIZE == 1 << 20


def test_job_files_keep_every_field_and_the_url_as_planned(tmp_path: Path) -> None:
    state = tmp_path / ".stacpull"
    layout = Layout.ensure(state, 4)
    jobs = [
        Job(f"item-{n}", L1A, "product", f"http://x/{n}.zip?X-Amz-Signature=s{n}", f"{n}.zip")
        for n in range(12)
    ]
    with JobFiles(state, layout, 7) as files:
        for job in jobs:
            files.add(job)
    back = [job for bucket in range(4) for job in read_jobs(state, bucket, 7)]
    assert sorted(back, key=lambda j: j.dest) == sorted(jobs, key=lambda j: j.dest)
    assert sum(files.counts.values()) == 12
    one = job_file(state, job_bucket(jobs[0], 4), 7)
    assert one.stat().st_mode & 0o777 == 0o600


# -- seed and merge --------------------------------------------------------------------------


def _row(journal: Journal, path: str) -> tuple[Any, ...]:
    return journal.blocking(
        lambda db: db.execute(
            "SELECT status, bytes, etag, updated_at, seen_run FROM transfers WHERE path = ?",
            (path,),
        ).fetchone()
    )


def _put(journal: Journal, path: str, status: str, size: int, at: float, **more: Any) -> None:
    job = Job("item", L1A, "product", "http://x/" + path, path)
    columns = {
        **job_columns(job),
        "status": status,
        "bytes": size,
        "updated_at": at,
        "seen_run": 1,
        **more,
    }
    sql = (
        f"INSERT OR REPLACE INTO transfers ({', '.join(columns)})"
        f" VALUES ({', '.join('?' * len(columns))})"
    )
    journal.blocking(lambda db: db.execute(sql, tuple(columns.values())))


def test_seed_and_merge_keep_the_newest_row(tmp_path: Path) -> None:
    main = Journal(tmp_path)
    directory = tmp_path / ".stacpull" / "shards" / "b001"
    directory.mkdir(parents=True)
    bucket = Journal(tmp_path, directory=directory)
    _put(main, "old-in-bucket", "done", 10, at=200.0, seen_run=2)
    _put(bucket, "old-in-bucket", "pending", 3, at=100.0)
    _put(main, "new-in-bucket", "pending", 0, at=100.0, seen_run=2)
    _put(bucket, "new-in-bucket", "active", 7, at=300.0, etag='"e1"')  # a killed worker's
    _put(main, "only-main", "pending", 0, at=100.0, seen_run=2)
    assert seed(main, bucket, ["old-in-bucket", "new-in-bucket", "only-main"]) == 2
    assert _row(bucket, "old-in-bucket")[:2] == ("done", 10)
    # the bucket's newer transfer is kept, the main journal's plan taken (seen_run)
    assert _row(bucket, "new-in-bucket") == ("active", 7, '"e1"', 300.0, 2)
    assert _row(bucket, "only-main")[0] == "pending"

    _put(bucket, "only-main", "done", 42, at=400.0)
    _put(bucket, "never-seen", "done", 5, at=400.0)  # a row the main journal never saw
    _put(bucket, "old-in-bucket", "failed", 0, at=150.0)  # older than main's: not merged
    assert merge(main, bucket) == 3
    assert _row(main, "only-main")[:2] == ("done", 42)
    assert _row(main, "only-main")[4] == 2  # the main journal keeps its own plan
    assert _row(main, "never-seen")[:2] == ("done", 5)
    assert _row(main, "new-in-bucket")[:3] == ("active", 7, '"e1"')
    assert _row(main, "old-in-bucket")[:2] == ("done", 10)
    bucket.close()
    main.close()


# -- a whole cluster-shaped mirror -------------------------------------------------------------


def test_a_sharded_mirror_gives_the_files_and_status_of_a_plain_one(
    sim: SimServer, tmp_path: Path
) -> None:
    plain = tmp_path / "plain"
    assert stacpull.mirror(sim_config(sim, plain)).ok
    sharded = tmp_path / "sharded"
    result, units_done = coordinate(sim_config(sim, sharded), token_file(tmp_path), buckets=8)
    assert result.ok and len(units_done) >= 2
    assert (result.downloaded, result.skipped) == (15, 0)
    assert result.bytes_on_disk == sum(p.stat().st_size for p in files_under(plain))
    assert sorted(str(f.path) for f in result.files()) == [str(p) for p in files_under(sharded)]
    report = json.loads((sharded / ".stacpull" / "last-report.json").read_text())
    assert report["totals"]["downloaded"] == 15
    assert all(u["outcome"] == "complete" for u in units_done)
    assert all(u["epochs"] == dict.fromkeys(u["buckets"], 1) for u in units_done)
    assert [p.relative_to(sharded) for p in files_under(sharded)] == [
        p.relative_to(plain) for p in files_under(plain)
    ]
    for p in files_under(plain):
        assert (sharded / p.relative_to(plain)).read_bytes() == p.read_bytes()
    a, b = read_status(plain).as_dict(), read_status(sharded).as_dict()
    assert a["by_status"] == b["by_status"] and b["by_status"]["done"]["files"] == 15
    assert not list((sharded / ".stacpull" / "shards").glob("b*/jobs-*.jsonl"))  # cleared
    assert verify_dest(sharded).ok
    # a second cluster run finds the same shards and has nothing to fetch
    sim.requests.clear()
    again, units_again = coordinate(sim_config(sim, sharded), token_file(tmp_path), buckets=8)
    assert again.ok and not sim.requests and again.skipped == 15
    assert all(u["stats"]["skipped"] > 0 for u in units_again)
    assert all(set(u["epochs"].values()) == {2} for u in units_again)


def test_status_shards_shows_owners_epochs_and_heartbeats(sim: SimServer, tmp_path: Path) -> None:
    code, out, _ = cli("status", "--shards", str(tmp_path))
    assert code == 0 and "no shards" in out
    coordinate(sim_config(sim, tmp_path), token_file(tmp_path), buckets=8)
    code, out, _ = cli("status", "--shards", "--json", str(tmp_path))
    assert code == 0, out
    view = json.loads(out)
    assert view["buckets"] == 8 and view["shards"]
    for row in view["shards"]:
        assert row["epoch"] == 1 and row["state"] == "complete"
        assert row["owner"].endswith(f":{os.getpid()}") and row["heartbeat"] is not None
    assert sum(row["files"] for row in view["shards"]) == 15
    code, out, _ = cli("status", "--shards", str(tmp_path))
    assert code == 0 and "8 buckets" in out
    first = view["shards"][0]
    assert f"b{first['bucket']:03d}" in out and first["owner"] in out and "complete" in out


# -- shared file systems ---------------------------------------------------------------------

MOUNTINFO = """\
22 1 0:21 / /proc rw,nosuid shared:5 - proc proc rw
25 1 253:0 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
40 25 0:45 / /data rw,relatime shared:20 - nfs4 server:/export rw,vers=4.2
41 40 0:46 / /data/local\\040disk rw - ext4 /dev/vdb1 rw
42 25 0:47 / /lustre/scratch rw - lustre 10.0.0.1@tcp:/scratch rw,flock
43 25 0:48 / /home/me/remote rw - fuse.sshfs me@host:/ rw
"""


def test_mountinfo_names_nfs_lustre_and_fuse_as_shared(tmp_path: Path) -> None:
    assert ("/data/local disk", "ext4") in parse_mountinfo(MOUNTINFO)
    assert shared_filesystem(Path("/data/mirror"), MOUNTINFO) == "nfs4"
    assert shared_filesystem(Path("/data"), MOUNTINFO) == "nfs4"
    assert shared_filesystem(Path("/data/local disk/x"), MOUNTINFO) is None  # the inner mount
    assert shared_filesystem(Path("/lustre/scratch/m"), MOUNTINFO) == "lustre"
    assert shared_filesystem(Path("/lustre/scratchy"), MOUNTINFO) is None
    assert shared_filesystem(Path("/home/me/remote/d"), MOUNTINFO) == "fuse.sshfs"
    assert shared_filesystem(Path("/srv"), MOUNTINFO) is None
    assert shared_filesystem(tmp_path, "garbage\n") is None


def test_a_shared_file_system_opens_journals_without_shared_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SHARED_FS_ENV, "1")
    assert exclusive_locking(tmp_path)
    directory = tmp_path / ".stacpull" / "shards" / "b000"
    directory.mkdir(parents=True)
    journal = Journal(tmp_path, directory=directory, exclusive=None)
    _put(journal, "a", "done", 1, at=1.0)
    assert journal.exclusive and (directory / "journal.sqlite-wal").exists()
    assert not (directory / "journal.sqlite-shm").exists()
    journal.close()
    monkeypatch.setenv("STACPULL_SHARED_FS", "0")
    plain = Journal(tmp_path / "other", exclusive=None)
    _put(plain, "a", "done", 1, at=1.0)
    assert not plain.exclusive and (tmp_path / "other/.stacpull/journal.sqlite-shm").exists()
    plain.close()


def test_a_sharded_mirror_on_a_shared_file_system(
    sim: SimServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STACPULL_SHARED_FS", "1")
    result, _ = coordinate(sim_config(sim, tmp_path), token_file(tmp_path), buckets=4)
    assert result.ok and verify_dest(tmp_path).ok
    assert not list((tmp_path / ".stacpull" / "shards").rglob("*-shm"))


def test_a_workers_config_is_the_runs_without_its_secrets(tmp_path: Path) -> None:
    config = build_config(
        catalog="http://127.0.0.1:1/stac",
        collections=[L1A],
        dest=str(tmp_path),
        token="secret-token",
        concurrency=3,
        assets=["product"],
        auth_hosts=["data.example"],
    )
    values = config_values(config)
    assert "secret-token" not in repr(values) and not any(k.startswith("auth.t") for k in values)
    spec = UnitSpec(str(tmp_path / "d"), values, 1, 0, (0,), 4, token_file="/x/token")
    again = unit_config(spec)
    assert again.search == config.search and again.auth.hosts == ("data.example",)
    assert again.download == dataclasses.replace(config.download, dest=str(tmp_path / "d"))
    assert again.auth.token is None and again.auth.token_file == "/x/token"


def test_a_plain_run_takes_in_what_a_crashed_cluster_run_never_merged(
    sim: SimServer, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    result, _ = coordinate(sim_config(sim, dest), token_file(tmp_path), buckets=2)
    assert result.ok
    # a worker's last write after the coordinator's last merge: a file it found failed
    (_, directory), *_ = bucket_dirs(dest)
    journal = Journal(dest, directory=directory)
    (path,) = journal.blocking(
        lambda db: db.execute("SELECT path FROM transfers LIMIT 1").fetchone()
    )
    journal.blocking(
        lambda db: db.execute(
            "UPDATE transfers SET status = 'failed', error_class = 'X', updated_at = ?"
            " WHERE path = ?",
            (time.time() + 1, path),
        )
    )
    journal.close()
    assert read_status(dest).as_dict()["by_status"]["failed"]["files"] == 0  # not merged yet
    again = stacpull.mirror(sim_config(sim, dest), retry_failed=True)
    assert (again.skipped, again.downloaded) == (1, 0)  # merged at open, then retried
    assert [f.path for f in again.files()] == [dest / path]
    assert read_status(dest).as_dict()["by_status"]["done"]["files"] == 15


def test_pruned_files_stay_forgotten_in_the_bucket_journals(sim: SimServer, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    assert coordinate(sim_config(sim, dest), token_file(tmp_path), buckets=2)[0].ok
    sim.catalog.remove_item(str(sim.catalog.item(L1A, 0)["id"]))
    pruned = stacpull.mirror(sim_config(sim, dest), prune=True)
    assert pruned.pruned == 3 and len(files_under(dest)) == 12
    again = stacpull.mirror(sim_config(sim, dest), prune=True)  # merges the buckets at open
    assert again.ok and not again.gone
    assert read_status(dest).as_dict()["by_status"]["done"]["files"] == 12


def test_a_unit_without_a_token_file_sends_no_token_of_its_own_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The coordinator had no credentials, so the workers have none: never the default
    ``token.txt`` of a worker's own working directory (another user's, another mission's)."""
    stray = tmp_path / "worker-cwd"
    stray.mkdir()
    (stray / "token.txt").write_text("a-workers-own-token\n")
    options = SimOptions(require_auth=False)
    with SimServer(SimCatalog(default_collections(count=2)), options=options) as sim:
        config = sim_config(sim, tmp_path / "dest", token=None)

        def in_the_workers_cwd(specs: list[UnitSpec]) -> list[dict[str, Any]]:
            assert all(spec.token_file is None for spec in specs)
            with monkeypatch.context() as patch:
                patch.chdir(stray)
                return in_process(specs)

        result, _ = coordinate(config, None, buckets=2, workers=1, run=in_the_workers_cwd)
        assert result.ok and result.downloaded > 0
        sent = [r["token"] for r in sim.requests if r["path"].startswith("/data")]
        assert sent and set(sent) == {None}
