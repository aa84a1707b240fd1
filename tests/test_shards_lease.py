"""Bucket leases: a new owner supersedes the old one, which stops at its next journal commit
(or heartbeat) while the new one finishes from what is on disk; the same unit run twice at
once, in two processes, transfers each file once. No Dask: Dask's reruns are these."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from stacpull.audit import verify_dest
from stacpull.events import BytesReceived, Event, JobFinished
from stacpull.journal import Journal
from stacpull.models import Job
from stacpull.shards.layout import bucket_dir
from stacpull.shards.lease import LEASE_FILE, BucketBusy, Lease, LeaseRow, Superseded, read_lease
from stacpull.shards.unit import UnitSpec, run_unit
from stacpull.sim import SimCatalog, SimOptions, SimServer, default_collections
from stacpull.transfer.context import FetchContext

from .conftest import L1A, files_under
from .test_shards import coordinate, sim_config, token_file


def _sizes(dest: Path) -> tuple[int, int]:
    """(total, largest) size of the files of ``dest``: each file's body, once."""
    sizes = [p.stat().st_size for p in files_under(dest)]
    assert len(sizes) == 15
    return sum(sizes), max(sizes)


def test_a_lease_is_superseded_by_the_next_owner(tmp_path: Path) -> None:
    directory = bucket_dir(tmp_path, 3)
    directory.mkdir(parents=True)
    first = Lease.take(directory, 3, "a:1", wait=1.0)
    assert first.epoch == 1 and (directory / LEASE_FILE).is_file()
    first.check()
    first.beat(2, 100)
    row = read_lease(directory, 3)
    assert isinstance(row, LeaseRow) and (row.owner, row.files, row.bytes, row.state) == (
        "a:1",
        2,
        100,
        "running",
    )
    second = Lease.supersede(directory, 3, "b:2")
    assert second.epoch == 2
    with pytest.raises(Superseded, match="taken over by b:2"):
        first.check()
    with pytest.raises(Superseded):
        first.beat(3, 200)
    with pytest.raises(BucketBusy):
        second.hold(0.1)  # the first still holds the owner lock
    third = Lease.supersede(directory, 3, "c:3")
    with pytest.raises(Superseded):
        second.hold(5.0)  # a later owner took it meanwhile: no waiting out the 5 s
    first.release("superseded", 3, 200)
    third.hold(1.0)
    third.release("complete", 4, 400)
    row = read_lease(directory, 3)
    assert row is not None and (row.epoch, row.owner, row.state, row.files) == (
        3,
        "c:3",
        "complete",
        4,
    )
    second.close()


def test_a_superseded_journal_records_until_its_owner_lets_go(tmp_path: Path) -> None:
    directory = bucket_dir(tmp_path / ".stacpull", 0)
    directory.mkdir(parents=True)
    lease = Lease.take(directory, 0, "a:1")
    journal = Journal(tmp_path, directory=directory, guard=lease.guard)
    job = Job("item", L1A, "product", "http://x/a.zip", "a.zip")
    new = Lease.supersede(directory, 0, "b:2")

    async def write() -> None:
        await journal.paused(job, partial=1)
        # superseded, but still holding the owner lock: the new owner waits for it, and
        # reads what it recorded (a file it had in hand at the takeover is not lost)
        await journal.done(job, size=5, digest=None, mtime_ns=1)
        with pytest.raises(BucketBusy):
            new.hold(0.1)
        lease.close()  # let go: nothing more is recorded
        with pytest.raises(Superseded, match="let go"):
            await journal.failed(job, error_class="X", error="late", partial=0)

    anyio.run(write)
    assert [(r.status, r.bytes) for r in journal.rows()] == [("done", 5)]
    journal.close()
    new.hold(1.0)
    new.close()


def _take_over_after_first_file(spec: UnitSpec) -> Callable[[FetchContext], FetchContext]:
    """A context hook: once the unit's first file ended, another owner takes its buckets
    (as a Dask rerun of the task would)."""

    def adjust(ctx: FetchContext) -> FetchContext:
        emit = ctx.emit
        taken: list[bool] = []

        def watching(event: Event) -> None:
            emit(event)
            if isinstance(event, JobFinished) and not taken:
                taken.append(True)
                for bucket in spec.buckets:
                    Lease.supersede(
                        bucket_dir(ctx.root / ".stacpull", bucket), bucket, "new:1"
                    ).close()

        return dataclasses.replace(ctx, emit=watching)

    return adjust


def test_a_superseded_owner_stops_at_its_next_heartbeat_and_the_new_one_finishes(
    tmp_path: Path,
) -> None:
    seen: dict[str, Any] = {}

    def run(specs: list[UnitSpec]) -> list[dict[str, Any]]:
        (spec,) = specs
        old = run_unit(
            dataclasses.replace(spec, owner="old:1", context=_take_over_after_first_file(spec))
        )
        seen["old"] = old
        return [run_unit(dataclasses.replace(spec, owner="new:2"))]

    dest = tmp_path / "dest"
    # 0.2 s before each response, one at a time: 15 files take the old owner at least 3 s,
    # and its heartbeat (every second) stops it long before
    catalog = SimCatalog(default_collections(count=5, product_size=300_000))
    with SimServer(catalog, options=SimOptions(latency=0.2)) as sim:
        config = sim_config(sim, dest, concurrency=1)
        result, (new,) = coordinate(config, token_file(tmp_path), buckets=1, workers=1, run=run)
        sent = sim.bytes_sent
    old = seen["old"]
    assert old["outcome"] == "superseded" and "taken over" in old["fatal"]
    assert 1 <= old["stats"]["downloaded"] < 15
    assert new["outcome"] == "complete" and new["epochs"] == {0: 3}
    assert new["stats"]["downloaded"] + new["stats"]["skipped"] == 15
    assert result.ok and verify_dest(dest).ok
    total, largest = _sizes(dest)
    assert sent <= total + largest  # at most the response the old owner cut
    row = read_lease(bucket_dir(dest / ".stacpull", 0), 0)
    assert row is not None and (row.owner, row.state) == ("new:2", "complete")


_CHILD = (
    "import json, pickle, sys\n"
    "from stacpull.shards.unit import run_unit\n"
    "spec = pickle.loads(open(sys.argv[1], 'rb').read())\n"
    "print(json.dumps(run_unit(spec)))\n"
)


def _twice_at_once(specs: list[UnitSpec], tmp: Path) -> list[dict[str, Any]]:
    """Every unit run by two processes at once (Dask running one task twice)."""
    results: list[dict[str, Any]] = []
    env = {**os.environ, "STACPULL_NO_USER_CONFIG": "1"}
    for spec in specs:
        path = tmp / f"spec-{spec.unit}.pickle"
        path.write_bytes(pickle.dumps(spec))
        children = [
            subprocess.Popen(
                [sys.executable, "-c", _CHILD, str(path)], stdout=subprocess.PIPE, env=env
            )
            for _ in range(2)
        ]
        outs = [json.loads(child.communicate(timeout=60)[0]) for child in children]
        assert sorted(o["outcome"] for o in outs) in (
            ["complete", "complete"],  # one after the other: the second found all verified
            ["complete", "superseded"],
        ), outs
        results.extend(o for o in outs if o["outcome"] == "complete")
    return results


def test_the_same_unit_run_twice_at_once_transfers_each_file_once(tmp_path: Path) -> None:
    catalog = SimCatalog(default_collections(count=5, product_size=300_000))
    with SimServer(catalog, options=SimOptions(latency=0.02)) as sim:
        config = sim_config(sim, tmp_path / "dest", concurrency=2)
        result, done = coordinate(
            config,
            token_file(tmp_path),
            buckets=1,
            workers=1,
            run=lambda specs: _twice_at_once(specs, tmp_path),
        )
        assert result.ok and verify_dest(tmp_path / "dest").ok
        assert sum(d["stats"]["downloaded"] + d["stats"]["skipped"] for d in done) >= 15
        total, largest = _sizes(tmp_path / "dest")
        # each file once: at most the responses a superseded owner had in flight (2) again
        assert sim.bytes_sent <= total + 2 * largest


def test_a_takeover_resumes_the_part_a_superseded_owner_left_mid_file(tmp_path: Path) -> None:
    catalog = SimCatalog(default_collections(count=5, product_size=300_000))
    with SimServer(catalog) as sim:
        item = sim.catalog.item(L1A, 0)
        # the quicklook (served with validators: resumable) pauses after 30 000 bytes
        sim.catalog.stall(str(item["id"]), "quicklook", 30_000, 3.0)
        dest, parts = tmp_path / "dest", []

        def take_over_mid_file(spec: UnitSpec) -> Callable[[FetchContext], FetchContext]:
            def adjust(ctx: FetchContext) -> FetchContext:
                emit, got = ctx.emit, [0]

                def watching(event: Event) -> None:
                    emit(event)
                    job = getattr(event, "job", None)
                    if isinstance(event, BytesReceived) and job is not None:
                        if (job.item_id, job.asset_key) != (item["id"], "quicklook"):
                            return
                        got[0] += event.n
                        if got[0] == 30_000:  # held there by the server: take the bucket
                            for b in spec.buckets:
                                state = ctx.root / ".stacpull"
                                Lease.supersede(bucket_dir(state, b), b, "new:1").close()

                return dataclasses.replace(ctx, emit=watching)

            return adjust

        def run(specs: list[UnitSpec]) -> list[dict[str, Any]]:
            (spec,) = specs
            old = run_unit(
                dataclasses.replace(spec, owner="old:1", context=take_over_mid_file(spec))
            )
            assert old["outcome"] == "superseded", old  # its heartbeat saw it: it stopped
            parts.extend(p.stat().st_size for p in dest.rglob("*.part"))
            return [run_unit(dataclasses.replace(spec, owner="new:2"))]

        config = sim_config(sim, dest, concurrency=2)
        result, _ = coordinate(config, token_file(tmp_path), buckets=1, workers=1, run=run)
        assert result.ok and verify_dest(dest).ok
        assert parts == [30_000]  # the .part stayed as the old owner left it...
        ranges = [
            r.get("range")
            for r in sim.requests
            if "_ql" in r["path"] and item["id"].lower() in r["path"].lower()
        ]
        assert ranges[-1] == "bytes=30000-"  # ...and the new owner resumed it
        total, largest = _sizes(dest)
        assert sim.bytes_sent <= total + largest


class _SupersededAt:
    """A bucket journal whose first ``started`` (a response in flight, its validators not
    yet recorded) or first ``done`` (the file renamed into place, not yet recorded) comes
    just after another owner took the bucket: the two moments a takeover meets a file the
    old owner has in hand."""

    def __init__(self, journal: Any, moment: str, take: Callable[[], None], hit: list[Job]) -> None:
        self._journal, self._moment, self._take, self.hit = journal, moment, take, hit

    def __getattr__(self, name: str) -> Any:
        return getattr(self._journal, name)

    def _first(self, job: Job) -> None:
        if not self.hit:
            self.hit.append(job)
            self._take()

    async def started(self, job: Job, **kw: Any) -> None:
        if self._moment == "started":
            self._first(job)
        await self._journal.started(job, **kw)

    async def done(self, job: Job, **kw: Any) -> None:
        if self._moment == "done":
            self._first(job)
        await self._journal.done(job, **kw)


@pytest.mark.parametrize("moment", ["started", "done"])
def test_a_file_the_old_owner_had_in_hand_at_the_takeover_is_sent_once(
    sim: SimServer, tmp_path: Path, moment: str
) -> None:
    """Superseded with a response in flight (``started``) or with the file renamed into
    place (``done``): the old owner still holds the bucket (the new one waits for it to
    let go), so it finishes and records that file, and the new owner finds it done."""
    dest, hit = tmp_path / "dest", []

    def superseded_at(spec: UnitSpec) -> Callable[[FetchContext], FetchContext]:
        def take() -> None:
            for b in spec.buckets:
                Lease.supersede(bucket_dir(dest / ".stacpull", b), b, "new:1").close()

        def adjust(ctx: FetchContext) -> FetchContext:
            journal = _SupersededAt(ctx.journal, moment, take, hit)
            return dataclasses.replace(ctx, journal=journal)

        return adjust

    def run(specs: list[UnitSpec]) -> list[dict[str, Any]]:
        (spec,) = specs
        old = run_unit(dataclasses.replace(spec, owner="old:1", context=superseded_at(spec)))
        assert old["outcome"] == "superseded", old
        return [run_unit(dataclasses.replace(spec, owner="new:2"))]

    config = sim_config(sim, dest, concurrency=1)
    result, (new,) = coordinate(config, token_file(tmp_path), buckets=1, workers=1, run=run)
    assert result.ok and verify_dest(dest).ok, result
    (job,) = hit
    assert new["stats"]["downloaded"] + new["stats"]["skipped"] == 15
    # one request for that file: the takeover did not fetch it again
    name = Path(job.url).name
    assert len([r for r in sim.requests if r["path"].endswith(name)]) == 1
    body = (dest / job.dest).stat().st_size
    assert sim.bytes_sent_for(job.item_id, job.asset_key) == body
