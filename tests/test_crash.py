"""The real process under hostile endings: SIGKILL mid-run, Ctrl-C once and twice, disk full.

Each test runs ``python -m stacpull download`` as a child process against a rate-limited
simulated catalogue in this process, interferes with it, then checks the files, the journal
and a re-run.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import stacpull
from stacpull.defaults import DEFAULT_TEMPLATE
from stacpull.plan import PlanRules, plan_item
from stacpull.sim import Faults, SimCatalog, SimOptions, SimServer, default_collections
from stacpull.verify import file_digest, parse_multihash

from .conftest import L1A, L1C, TOKEN, Recorder, files_under

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


@pytest.fixture
def slow_sim() -> Iterator[SimServer]:
    """4 items per collection; every response throttled to 400 kB/s."""
    catalog = SimCatalog(default_collections(count=4, product_size=3_000_000))
    with SimServer(catalog, options=SimOptions(faults=Faults(rate_limit=400_000))) as server:
        yield server


def _command(sim: SimServer, dest: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "stacpull",
        "download",
        "--catalog",
        sim.catalog_url,
        "--collection",
        L1C,
        "--assets",
        "all",
        "--dest",
        str(dest),
        "--token",
        TOKEN,
        "-j",
        "4",
        "--dashboard",
        "plain",
        *extra,
    ]


def _start(cmd: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "STACPULL_TOKEN": "", "COLUMNS": "200"},
    )


def _rerun(sim: SimServer, dest: Path, recorder: Recorder | None = None) -> stacpull.RunResult:
    """The same download as :func:`_command`, in this process."""
    return stacpull.download(
        catalog=sim.catalog_url,
        collections=[L1C],
        assets=["all"],
        dest=str(dest),
        token=TOKEN,
        sink=recorder,
    )


def _wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def _parts(dest: Path) -> dict[Path, int]:
    return {p: p.stat().st_size for p in dest.rglob("*.part")}


def _zip_under_way(dest: Path) -> bool:
    """A product zip's ``.part`` holds its first bytes, and little more."""
    return any(
        0 < n < 400_000 for p, n in _parts(dest).items() if p.name.lower().endswith(".zip.part")
    )


def _journal_statuses(dest: Path) -> dict[str, str]:
    db = sqlite3.connect(dest / ".stacpull" / "journal.sqlite")
    try:
        return dict(db.execute("SELECT path, status FROM transfers").fetchall())
    finally:
        db.close()


def _assert_final_files_verified(sim: SimServer, dest: Path) -> None:
    """No file under its final name that is not the catalogue's file."""
    rules = PlanRules(("all",), DEFAULT_TEMPLATE)
    expected = {}
    for index in range(4):
        jobs, _ = plan_item(sim.catalog.item(L1C, index), rules)
        expected.update({job.dest: job for job in jobs})
    for f in files_under(dest):
        if f.name.endswith(".part"):
            continue
        job = expected[f.relative_to(dest).as_posix()]
        if job.checksum is not None:
            mh = parse_multihash(job.checksum)
            assert mh.matches(file_digest(f, mh)), f
        else:
            with zipfile.ZipFile(f) as zf:
                assert zf.testzip() is None, f


def test_sigkill_mid_run_then_a_rerun_completes_resuming_from_disk(
    slow_sim: SimServer, tmp_path: Path
) -> None:
    proc = _start(_command(slow_sim, tmp_path))
    try:
        # wait until some files are done and several static files are half-way
        _wait_for(
            lambda: (
                sum(1 for p, n in _parts(tmp_path).items() if n > 0) >= 2
                and any(not f.name.endswith(".part") for f in files_under(tmp_path))
            )
        )
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    at_kill = _parts(tmp_path)
    _assert_final_files_verified(slow_sim, tmp_path)
    slow_sim.set_faults(Faults())  # the re-run need not crawl

    recorder = Recorder()
    result = _rerun(slow_sim, tmp_path, recorder)
    assert result.ok and result.failed == 0
    assert not list(tmp_path.rglob("*.part"))
    _assert_final_files_verified(slow_sim, tmp_path)
    assert set(_journal_statuses(tmp_path).values()) == {"done"}
    # A range-capable file re-downloads only what had not reached the disk at the kill.
    outcomes = {o.job.dest: o for o in recorder.outcomes().values()}
    resumed = 0
    for part, size in at_kill.items():
        rel = part.relative_to(tmp_path).as_posix().removesuffix(".part")
        o = outcomes[rel]
        if o.job.zip_check and o.job.checksum is None and o.job.size is None:
            continue  # a zipper product (no ranges) restarts from zero
        if size:
            assert o.resumed_from == size, rel
            assert o.bytes_downloaded == (o.size or 0) - size, rel
            resumed += 1
    assert resumed >= 1


def test_first_ctrl_c_stops_gracefully_second_aborts(slow_sim: SimServer, tmp_path: Path) -> None:
    # First Ctrl-C: no new transfers, in-flight ones get the grace period, journal settles.
    proc = _start(_command(slow_sim, tmp_path / "one"))
    # A product zip under way (its 3 MB take over 7 s at 400 kB/s, far past the 3 s grace):
    # L1c's small 2026 enclosures come first in key order and end within the grace.
    _wait_for(lambda: _zip_under_way(tmp_path / "one"))
    began = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    took = time.monotonic() - began
    assert proc.returncode == 130, (out, err)
    assert "stopping (Ctrl-C)" in err and "run the same command again" in out
    assert took < 10
    statuses = _journal_statuses(tmp_path / "one")
    assert "active" not in statuses.values()
    assert _parts(tmp_path / "one")  # the big products in flight keep their .part
    _assert_final_files_verified(slow_sim, tmp_path / "one")

    # Second Ctrl-C: out at once, still resumable.
    proc = _start(_command(slow_sim, tmp_path / "two"))
    _wait_for(lambda: any(n > 0 for n in _parts(tmp_path / "two").values()))
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    began = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, (out, err)
    assert "aborting" in err
    assert time.monotonic() - began < 2.5  # well inside the 3 s grace period

    slow_sim.set_faults(Faults())
    for dest in (tmp_path / "one", tmp_path / "two"):
        result = _rerun(slow_sim, dest)
        assert result.ok
        assert not list(dest.rglob("*.part"))


def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return False
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs root and unshare to mount a tmpfs")
def test_disk_full_stops_cleanly_and_a_rerun_with_space_resumes(tmp_path: Path) -> None:
    catalog = SimCatalog(default_collections(count=4, product_size=400_000))
    with SimServer(catalog) as sim:
        full = tmp_path / "full"
        saved = tmp_path / "saved"
        full.mkdir()
        saved.mkdir()
        cmd = _command(sim, full)
        cmd[cmd.index(L1C)] = L1A  # zipper products: no size known, so the disk really fills
        cmd[cmd.index("all")] = "product"
        script = (
            f"mount -t tmpfs -o size=900k tmpfs {full} && "
            f"{' '.join(cmd)}; rc=$?; cp -a {full}/. {saved}/; exit $rc"
        )
        done = subprocess.run(
            ["unshare", "-m", "sh", "-c", script],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "STACPULL_TOKEN": ""},
        )
        assert done.returncode == 3, (done.stdout, done.stderr)
        assert "disk full" in done.stderr or "No space left" in done.stderr, done.stderr
        # The journal could not be written either once the disk was full: rows of files in
        # flight may still say active (the next run resumes them), but none says done for
        # a file that is not complete, and every file under its final name is whole.
        statuses = _journal_statuses(saved)
        for rel, status in statuses.items():
            final = saved / rel
            if status == "done":
                assert final.is_file()
        for f in files_under(saved):
            if not f.name.endswith(".part"):
                with zipfile.ZipFile(f) as zf:
                    assert zf.testzip() is None
        assert list(saved.rglob("*.part"))  # partial products kept for the resume
        result = stacpull.download(
            catalog=sim.catalog_url,
            collections=[L1A],
            assets=["product"],
            dest=str(saved),
            token=TOKEN,
        )
        assert result.ok and len(files_under(saved)) == 4
