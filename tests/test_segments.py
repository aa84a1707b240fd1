"""Segmented downloads: a large file on a slow (capped) connection is continued as
parallel ranges, written in place, journalled range by range, verified once (the hash
following the front of the file as it fills)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from stacpull.api import build_config
from stacpull.engine import run
from stacpull.events import Event
from stacpull.runtypes import RunOptions, StopSignal
from stacpull.sim import Faults, SimCatalog, SimOptions, SimServer, default_collections
from stacpull.transfer import partfile, segments
from stacpull.transfer.ranges import SegmentState

from .conftest import L1C, Recorder, files_under, pull

SIZE = 6_000_000
KEY = "enclosure_i_abs_tiff"  # carries file:size and a sha2-512 checksum
SPLIT = {"segments": 4, "segment_size": 1_000_000, "segment_below": 10_000_000}


@pytest.fixture
def big() -> Iterator[SimServer]:
    """One L1c item whose tiff is 6 MB, each response capped at 1.5 MB/s."""
    spec = next(s for s in default_collections(1, 50_000) if s.id == L1C)
    catalog = SimCatalog([dataclasses.replace(spec, enclosure_size=SIZE)])
    options = SimOptions(faults=Faults(rate_limit=1_500_000))
    with SimServer(catalog, options=options) as server:
        yield server


def _requests(sim: SimServer) -> list[Any]:
    return [r["range"] for r in sim.requests if r["path"].endswith("_abs.tiff")]


def test_a_slow_large_file_is_split_into_parallel_ranges(
    big: SimServer, tmp_path: Path, recorder: Recorder
) -> None:
    result = pull(big, tmp_path, recorder, collections=[L1C], assets=[KEY], **SPLIT)
    assert result.ok and result.downloaded == 1, recorder.outcomes()
    ranges = _requests(big)
    assert ranges[0] is None  # the single stream that ran for a moment
    assert len(ranges) >= 5 and all(r.startswith("bytes=") for r in ranges[1:])
    _assert_tiles(ranges[1:])
    assert 2 <= big.peak_sending <= 4  # in parallel, never more than `segments` at once
    (path,) = files_under(tmp_path)
    assert path.stat().st_size == SIZE  # and its checksum was verified before the rename
    outcome = next(iter(recorder.outcomes().values()))
    assert outcome.bytes_downloaded == SIZE  # nothing fetched twice


def _assert_tiles(ranges: list[str]) -> None:
    """The ranges cover the rest of the file exactly: no gap, no byte twice."""
    spans = sorted(tuple(int(v) for v in r[6:].split("-")) for r in ranges)
    assert spans[-1][1] == SIZE - 1
    assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(spans))


def test_more_ranges_than_connections_are_taken_in_file_order(
    big: SimServer, tmp_path: Path, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two connections share eight ranges, the hash following the filled front in small
    steps: a range hashed twice or skipped would fail the sha3 check."""
    monkeypatch.setattr(segments, "FOLLOW_STEP", 64 * 1024)
    hashed: list[tuple[int, int]] = []
    real = partfile.hash_range

    def spy(hasher: Any, part: Path, start: int, end: int, **kw: Any) -> None:
        hashed.append((start, end))
        real(hasher, part, start, end, **kw)

    monkeypatch.setattr(partfile, "hash_range", spy)
    options = {"segments": 2, "segment_size": 500_000, "segment_below": 10_000_000}
    result = pull(big, tmp_path, recorder, collections=[L1C], assets=[KEY], **options)
    assert result.ok and result.downloaded == 1, recorder.outcomes()
    ranges = _requests(big)[1:]
    assert 4 < len(ranges) <= 8 and big.peak_sending == 2  # eight unless the split came late
    _assert_tiles(ranges)
    firsts = [int(r[6:].split("-")[0]) for r in ranges]
    assert sorted(firsts[:2]) == sorted(firsts)[:2]  # the front of the file first
    assert len(hashed) > 2  # the hash followed in steps, not once at the end...
    assert all(a[1] == b[0] for a, b in itertools.pairwise(hashed))  # ...back to back
    assert hashed[-1][1] == SIZE


def test_a_fast_connection_is_never_split(tmp_path: Path) -> None:
    spec = next(s for s in default_collections(1, 50_000) if s.id == L1C)
    with SimServer(SimCatalog([dataclasses.replace(spec, enclosure_size=SIZE)])) as sim:
        result = pull(sim, tmp_path, collections=[L1C], assets=[KEY], **SPLIT)
        assert result.ok and _requests(sim) == [None]


def test_cut_ranges_resume_where_they_were_cut(tmp_path: Path, recorder: Recorder) -> None:
    spec = next(s for s in default_collections(1, 50_000) if s.id == L1C)
    catalog = SimCatalog([dataclasses.replace(spec, enclosure_size=SIZE)])
    faults = Faults(rate_limit=1_500_000, cut_probability=0.3, seed=3)
    with SimServer(catalog, options=SimOptions(faults=faults)) as sim:
        result = pull(sim, tmp_path, recorder, collections=[L1C], assets=[KEY], **SPLIT)
        assert result.ok and result.downloaded == 1, recorder.outcomes()
        assert sim.fault_counts.get("cuts", 0) >= 1
        outcome = next(iter(recorder.outcomes().values()))
        assert outcome.bytes_downloaded < SIZE * 1.3  # cut ranges resumed, not restarted


def test_a_stopped_segmented_download_resumes_every_range(big: SimServer, tmp_path: Path) -> None:
    config = build_config(
        catalog=big.catalog_url, collections=[L1C], dest=str(tmp_path), assets=[KEY], **SPLIT
    ).with_values({"auth.token": "sim-token"})
    stop = StopSignal()

    def sink(event: Event) -> None:
        if len(big.requests) >= 5 and not stop.requested:  # the ranges are under way
            stop.request("test")

    result = anyio.run(lambda: run(config, sink=sink, stop=stop, options=RunOptions(grace=0.3)))
    assert result.interrupted
    db = sqlite3.connect(tmp_path / ".stacpull" / "journal.sqlite")
    (state,) = db.execute("SELECT segments FROM transfers WHERE segments IS NOT NULL").fetchone()
    db.close()
    saved = json.loads(state)
    assert saved["prefix"] > 0 and len(saved["parts"]) >= 4
    assert saved["parts"][0][0] == saved["prefix"] and saved["parts"][-1][1] == SIZE
    before = len(_requests(big))
    recorder = Recorder()
    again = pull(big, tmp_path, recorder, collections=[L1C], assets=[KEY], **SPLIT)
    assert again.ok and again.downloaded == 1
    resumed = _requests(big)[before:]
    assert resumed and all(r is not None for r in resumed)  # only ranges, no full restart
    outcome = next(iter(recorder.outcomes().values()))
    assert 0 < outcome.bytes_downloaded < SIZE
    assert files_under(tmp_path)[0].stat().st_size == SIZE


@pytest.mark.parametrize(
    ("rest", "segments", "ranges"),
    [
        (160_000_000, 16, 16),  # 19 ranges of 8 MiB would leave 13 connections idle at the end
        (58_000_000, 16, 6),  # fewer connections than asked: each range ≥ segment_size
        (2**30, 32, 128),  # four ranges per connection, so the hash can follow the front
        (2**30, 8, 48),  # 32, 32, 32, then the last round tapered: 16, 8, 8 MiB
        (2**30, 16, 80),  # 16, 16, 16, then 8, 8 MiB
        (20_000_000, 1, 2),  # one connection, two ranges of at least 8 MiB
    ],
)
def test_ranges_share_out_evenly_over_the_connections(
    rest: int, segments: int, ranges: int
) -> None:
    """Rounds of one range per connection, each round's ranges the same length (all the
    connections end together), shorter towards the end (fewer connections, joining late,
    end close together too), none shorter than segment_size."""
    size = 8 << 20
    state = SegmentState.split(1000 + rest, "v", 1000, segments=segments, segment_size=size)
    parts = state.parts
    lanes = min(segments, rest // size)
    assert len(parts) == ranges and len(parts) % lanes == 0
    assert parts[0].start == 1000 and parts[-1].end == 1000 + rest
    assert all(a.end == b.start for a, b in itertools.pairwise(parts))  # no gap, no overlap
    lengths = [p.end - p.start for p in parts]
    assert min(lengths) >= size
    rounds = [lengths[i : i + lanes] for i in range(0, len(lengths), lanes)]
    assert all(max(r) - min(r) <= 1 for r in rounds)
    assert all(a[0] + 1 >= b[0] for a, b in itertools.pairwise(rounds))  # never longer later
