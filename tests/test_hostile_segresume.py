"""A split file resumes where its ranges reached the disk: after ``kill -9`` a segmented
download re-fetches only the batches that were still in flight, as a single stream does,
and a progress record that does not fit the journalled layout is never trusted."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from stacpull import fetch
from stacpull.api import build_config
from stacpull.engine import RunOptions, StopSignal, run
from stacpull.events import Event
from stacpull.plan import PlanRules, plan_item
from stacpull.sim import Faults, SimCatalog, SimOptions, SimServer, default_collections
from stacpull.verify import file_digest, parse_multihash

from .conftest import L1C, TOKEN, Recorder, files_under, pull

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

KEY = "enclosure_abs_tiff"  # carries file:size and a checksum


def _catalog(size: int) -> SimCatalog:
    spec = next(s for s in default_collections(1, 50_000) if s.id == L1C)
    return SimCatalog([dataclasses.replace(spec, enclosure_size=size)])


def _ranges(sim: SimServer) -> list[str]:
    """The Range headers of the requests for the tiff (ranged ones only)."""
    return [r["range"] for r in sim.requests if r["path"].endswith("_abs.tiff") and r["range"]]


def _starts(ranges: list[str]) -> set[int]:
    return {int(r[6:].split("-")[0]) for r in ranges}


def _assert_verified(sim: SimServer, dest: Path) -> None:
    """The tiff is under its final name with the catalogue's checksum, and no partial file
    or progress record is left behind."""
    (job,), _ = plan_item(sim.catalog.item(L1C, 0), PlanRules((KEY,), "{name}"))
    final = dest / job.dest
    assert job.checksum is not None
    mh = parse_multihash(job.checksum)
    assert mh.matches(file_digest(final, mh))
    assert [p.name for p in files_under(dest)] == [final.name]
    assert not list((dest / ".stacpull").glob("ranges/*"))


# -- kill -9 mid-transfer, several times ---------------------------------------------------

KILL_SIZE = 24_000_000
KILL_RATE = 1_000_000  # bytes/s per connection: four ranges at once move 4 MB/s
KILLS = 3
LANES = 4
BATCH = 64 << 10  # download.chunk_size: a range's write batch is at most this
#: What one kill may cost one range beyond its unwritten batch: the chunk that overshoots
#: it, and what the server had sent that the killed process had not read yet (a child
#: starved of CPU on a loaded machine falls behind its sockets).
SLACK = 192 << 10
#: What the first split costs once: the single stream's connection is dropped mid-body.
SPLIT_SLACK = 512 << 10


def _config(path: Path) -> Path:
    path.write_text(
        "[download]\n"
        f"segments = {LANES}\n"
        "segment_size = 1_000_000\n"
        "segment_below = 50_000_000\n"
        f"chunk_size = {BATCH}\n"
        "backoff = 0.01\n"
        "max_backoff = 0.05\n"
        "template = '{name}'\n",
        encoding="utf-8",
    )
    return path


def _command(sim: SimServer, dest: Path, config: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "stacpull",
        "download",
        "--config",
        str(config),
        "--catalog",
        sim.catalog_url,
        "--collection",
        L1C,
        "--assets",
        KEY,
        "--dest",
        str(dest),
        "--token",
        TOKEN,
        "-j",
        "1",
        "--dashboard",
        "none",
    ]


@pytest.fixture
def capped() -> Iterator[SimServer]:
    options = SimOptions(faults=Faults(rate_limit=KILL_RATE))
    with SimServer(_catalog(KILL_SIZE), options=options) as server:
        yield server


def _kill_while_ranges_run(
    sim: SimServer, cmd: list[str], dest: Path, moved: int, env: dict[str, str]
) -> None:
    """Start ``cmd``, wait until it has asked for new ranges and the server has sent them
    ``moved`` bytes (well inside the journal's 2 s between records), then SIGKILL it,
    asserting it was still transferring."""
    before = len(_ranges(sim))
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 20
        while len(_ranges(sim)) == before:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "no range request in 20 s"
            time.sleep(0.01)
        sent = sim.bytes_sent
        while sim.bytes_sent - sent < moved:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the ranges did not move in 20 s"
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert list(dest.glob("*.part"))


def test_kill_9_while_split_resumes_every_range_from_the_disk(
    capped: SimServer, tmp_path: Path
) -> None:
    """Killed four times while its ranges run, a 24 MB split file costs the server no more
    than its size plus, per kill, one batch per connection: every range goes on from the
    bytes that reached the page cache, not from the journal's last record (every 2 s),
    and the resumed file's hash, re-read from the disk, verifies."""
    dest = tmp_path / "dest"
    cmd = _command(capped, dest, _config(tmp_path / "stacpull.toml"))
    env = {**os.environ, "STACPULL_TOKEN": "", "COLUMNS": "200"}
    rolls = random.Random(16)
    for _ in range(KILLS):
        _kill_while_ranges_run(capped, cmd, dest, rolls.randrange(2_500_000, 3_500_000), env)

    capped.set_faults(Faults())  # the last run need not crawl
    recorder = Recorder()
    result = pull(
        capped,
        dest,
        recorder,
        collections=[L1C],
        assets=[KEY],
        template="{name}",
        segments=LANES,
        segment_size=1_000_000,
        chunk_size=BATCH,
    )
    assert result.ok and result.downloaded == 1, recorder.outcomes()
    (outcome,) = recorder.outcomes().values()
    assert outcome.attempts == 1 and not outcome.notes  # resumed, never discarded
    _assert_verified(capped, dest)
    bound = KILL_SIZE + SPLIT_SLACK + KILLS * LANES * (BATCH + SLACK)
    assert capped.bytes_sent <= bound, (
        f"{capped.bytes_sent - KILL_SIZE} bytes sent twice, at most {bound - KILL_SIZE} allowed"
    )
