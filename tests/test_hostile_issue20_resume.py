"""Hostile review of issue 20's resume without validators: servers whose validators come
and go, weak ones, lengths that change, and an overlap that never matches."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stacpull.models import Status
from stacpull.sim import SimServer
from stacpull.transfer.stream import OVERLAP

from .hostile import serve
from .test_resume_overlap import (
    CUT,
    FILE,
    OVERLAP_AT,
    RANGES,
    Hostile,
    Request,
    _pull_hostile,
    cut_then,
)


@pytest.fixture
def raw() -> Iterator[Hostile]:
    yield from serve(Request)


def test_an_overlap_that_never_matches_gives_up_after_bounded_attempts(
    sim: SimServer, raw: Hostile, tmp_path: Path
) -> None:
    """Every first answer is cut at CUT, every resume sends other bytes in the window: the
    download restarts from zero each time, is given up on after a bounded number of
    attempts (no loop), and no spliced file appears under its final name."""
    generation = [0]

    async def shifting(req: Request) -> None:
        generation[0] += 1
        version = bytes((b + generation[0]) % 256 for b in FILE)
        if req.range_start is None:
            await req.send(200, version[:CUT], {RANGES: "bytes"}, length=len(FILE))
        else:
            await req.ranged(version)

    raw.routes["/f.tif"] = shifting
    outcome, ranges = _pull_hostile(sim, raw, tmp_path)
    assert outcome.status is Status.FAILED
    assert 2 <= len(ranges) <= 40
    assert OVERLAP_AT in ranges
    assert not (tmp_path / outcome.job.dest).exists()


def test_an_etag_that_disappears_on_the_resume_restarts_from_zero(
    sim: SimServer, raw: Hostile, tmp_path: Path
) -> None:
    """The first answer had an ETag (so the resume asks If-Range with it); the 206 comes
    without one: not proof of the same version, so the file starts over and is whole."""
    raw.routes["/f.tif"] = cut_then(FILE, {"ETag": '"v1"'})
    outcome, ranges = _pull_hostile(sim, raw, tmp_path)
    assert outcome.status is Status.DOWNLOADED, outcome.error
    assert ranges == [None, f"bytes={CUT}-", None] and outcome.resumed_from == 0
    assert (tmp_path / outcome.job.dest).read_bytes() == FILE


def test_a_weak_etag_is_no_validator_the_overlap_decides(
    sim: SimServer, raw: Hostile, tmp_path: Path
) -> None:
    async def weak(req: Request) -> None:
        if req.number == 0:
            await req.send(200, FILE[:CUT], {RANGES: "bytes", "ETag": 'W/"v1"'}, length=len(FILE))
        else:
            await req.ranged(FILE, {"ETag": 'W/"v1"'})

    raw.routes["/f.tif"] = weak
    outcome, ranges = _pull_hostile(sim, raw, tmp_path)
    assert outcome.status is Status.DOWNLOADED, outcome.error
    assert ranges == [None, OVERLAP_AT] and outcome.resumed_from == CUT
    assert (tmp_path / outcome.job.dest).read_bytes() == FILE


def test_a_length_that_changes_with_the_same_window_restarts(
    sim: SimServer, raw: Hostile, tmp_path: Path
) -> None:
    """The window's bytes are the same, but the file grew: never spliced."""
    grown = FILE + b"more"
    raw.routes["/f.tif"] = cut_then(grown)
    outcome, ranges = _pull_hostile(sim, raw, tmp_path)
    assert outcome.status is Status.DOWNLOADED, outcome.error
    assert ranges == [None, OVERLAP_AT, None] and outcome.resumed_from == 0
    assert (tmp_path / outcome.job.dest).read_bytes() == grown
    assert OVERLAP < CUT
