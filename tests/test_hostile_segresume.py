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

from stacpull.api import build_config
from stacpull.engine import run
from stacpull.events import Event
from stacpull.plan import PlanRules, plan_item
from stacpull.runtypes import RunOptions, StopSignal
from stacpull.sim import Faults, SimCatalog, SimOptions, SimServer, default_collections
from stacpull.transfer import ranges
from stacpull.verify import file_digest, parse_multihash

from .conftest import L1C, TOKEN, Recorder, files_under, pull

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

KEY = "enclosure_i_abs_tiff"  # carries file:size and a checksum


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
#: What a kill may leave on the disk of one range unrecorded: the batch being written
#: (a batch ends with the chunk that fills it, so it may be longer than BATCH).
UNRECORDED = BATCH + (192 << 10)
#: What the server may have sent one range that the killed process had not read yet:
#: a child starved of CPU on a loaded machine falls behind its sockets (half a second of
#: the cap). Only the server's total needs it; the bytes re-fetched from the disk do not.
ON_THE_WIRE = 512 << 10
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


def _on_disk(part: Path, body: bytes, start: int, end: int) -> int:
    """How many bytes of the range ``[start, end)`` are in ``part`` from its start on (the
    file's own bytes; a hole reads as zeros, which the sim's random bytes are not)."""
    with part.open("rb") as f:
        f.seek(start)
        data = f.read(end - start)
    step = 1 << 16
    good = 0
    while good < len(data) and data[good : good + step] == body[start + good : start + good + step]:
        good += step
    good = min(good, len(data))
    while good < len(data) and data[good] == body[start + good]:
        good += 1
    return good


def _layout(dest: Path) -> list[tuple[int, int]]:
    db = sqlite3.connect(dest / ".stacpull" / "journal.sqlite")
    try:
        (state,) = db.execute(
            "SELECT segments FROM transfers WHERE segments IS NOT NULL"
        ).fetchone()
    finally:
        db.close()
    return [(a, b) for a, b, _ in json.loads(state)["parts"]]


def test_kill_9_while_split_resumes_every_range_from_the_disk(
    capped: SimServer, tmp_path: Path
) -> None:
    """Killed three times while its ranges run, a 24 MB split file resumes every range
    where its bytes reached the disk (less at most the batch that was being written), not
    where the journal last recorded it (every 2 s); the server sends no more than the
    file plus, per kill and connection, that batch and what was on the wire; the resumed
    file's hash, re-read from the disk, verifies."""
    dest = tmp_path / "dest"
    cmd = _command(capped, dest, _config(tmp_path / "stacpull.toml"))
    env = {**os.environ, "STACPULL_TOKEN": "", "COLUMNS": "200"}
    rolls = random.Random(16)
    body = b""
    kills: list[tuple[int, list[int]]] = []  # (requests before the next run, bytes on disk)
    for _ in range(KILLS):
        _kill_while_ranges_run(capped, cmd, dest, rolls.randrange(2_500_000, 3_500_000), env)
        if not body:
            path = next(r["path"] for r in capped.requests if r["path"].endswith("_abs.tiff"))
            resolved = capped.catalog.resolve(path)
            assert resolved is not None
            body = resolved[1].body
            layout = _layout(dest)
        (part,) = dest.glob("*.part")
        kills.append((len(_ranges(capped)), [_on_disk(part, body, a, b) for a, b in layout]))

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

    # Each range, when next asked for after a kill, starts within one batch of its bytes
    # on disk (never after them); a range that was complete is never asked for again.
    ranges = _ranges(capped)
    again = 0  # bytes that were on the disk at a kill and were fetched once more
    for seen, disk in kills:
        starts = sorted(_starts(ranges[seen:]))
        for (a, b), have in zip(layout, disk, strict=True):
            later = next((s for s in starts if a <= s < b), None)
            if have == b - a:
                assert later is None, (a, b)
            elif have:
                assert later is not None, (a, b)
                assert a + have - UNRECORDED <= later <= a + have, (a, b, have, later - a)
                again += a + have - later
    assert again <= KILLS * LANES * UNRECORDED
    bound = KILL_SIZE + SPLIT_SLACK + KILLS * LANES * (UNRECORDED + ON_THE_WIRE)
    assert capped.bytes_sent <= bound, (
        f"{capped.bytes_sent - KILL_SIZE} bytes sent twice, at most {bound - KILL_SIZE} allowed"
    )


# -- the record is trusted only when it fits ------------------------------------------------

SIZE = 6_000_000
SPLIT: dict[str, Any] = {"segments": 4, "segment_size": 1_000_000, "segment_below": 10_000_000}


@pytest.fixture
def big() -> Iterator[SimServer]:
    """One L1c item whose tiff is 6 MB, each response capped at 1.5 MB/s."""
    with SimServer(_catalog(SIZE), options=SimOptions(faults=Faults(rate_limit=1_500_000))) as s:
        yield s


def _stop_mid_ranges(sim: SimServer, dest: Path) -> list[list[int]]:
    """Run until the four ranges have received about 1.6 MB between them, stop, and
    return the journalled ``[start, end, done]`` of each range."""
    config = build_config(
        catalog=sim.catalog_url,
        collections=[L1C],
        dest=str(dest),
        assets=[KEY],
        template="{name}",
        **SPLIT,
    ).with_values({"auth.token": TOKEN})
    stop = StopSignal()
    began: list[int] = []

    def sink(event: Event) -> None:
        if len(_ranges(sim)) >= 4 and not began:
            began.append(sim.bytes_sent)
        if began and sim.bytes_sent - began[0] > 1_600_000 and not stop.requested:
            stop.request("test")

    result = anyio.run(lambda: run(config, sink=sink, stop=stop, options=RunOptions(grace=0.3)))
    assert result.interrupted
    parts: list[list[int]] = json.loads(_journal_segments(dest))["parts"]
    # Trusted or not, the record must make a difference (a range of at least 2 bytes, so
    # half differs), and the last range must be short (its whole length is then a claim
    # past the .part's end).
    assert len(parts) == 4 and sum(0 < d < b - a for a, b, d in parts) >= 2, parts
    assert parts[-1][2] < parts[-1][1] - parts[-1][0], parts
    return parts


def _journal_segments(dest: Path, replace: str | None = None) -> str:
    """The journalled segment JSON (``replace``: after writing this instead)."""
    db = sqlite3.connect(dest / ".stacpull" / "journal.sqlite")
    try:
        if replace is not None:
            db.execute("UPDATE transfers SET segments = ? WHERE segments IS NOT NULL", (replace,))
            db.commit()
        (state,) = db.execute(
            "SELECT segments FROM transfers WHERE segments IS NOT NULL"
        ).fetchone()
        return str(state)
    finally:
        db.close()


def _record(dest: Path) -> Path:
    (path,) = (dest / ".stacpull" / ranges.RANGE_RECORDS).iterdir()
    return path


def _claims(data: bytes) -> list[int]:
    head, done = ranges._RECORD_HEAD, ranges._RECORD_DONE
    count = head.unpack_from(data)[3]
    return [done.unpack_from(data, head.size + done.size * i)[0] for i in range(count)]


def _with_claims(data: bytes, claims: list[int]) -> bytes:
    head, done = ranges._RECORD_HEAD, ranges._RECORD_DONE
    return data[: head.size] + b"".join(done.pack(c) for c in claims)


def _tamper(case: str, dest: Path, outside: Path, parts: list[list[int]]) -> None:
    """Make the progress record of ``dest`` wrong (or unreachable) in the way ``case`` says."""
    path = _record(dest)
    data = path.read_bytes()
    lengths = [b - a for a, b, _ in parts]
    if case == "another layout":
        path.write_bytes(data[:8] + bytes(16) + data[24:])
    elif case == "a claim past its range":
        path.write_bytes(_with_claims(data, [lengths[0] + 1, *_claims(data)[1:]]))
    elif case == "a claim past the .part's end":  # the last range, still short, claimed whole
        path.write_bytes(_with_claims(data, [*_claims(data)[:-1], lengths[-1]]))
    elif case == "cut short":
        path.write_bytes(data[:-8])
    elif case == "a symlink to a good copy":
        (outside / "copy").write_bytes(data)
        path.unlink()
        path.symlink_to(outside / "copy")
    elif case == "its directory a symlink":
        (outside / path.name).write_bytes(data)
        path.unlink()
        path.parent.rmdir()
        path.parent.symlink_to(outside, target_is_directory=True)
    else:
        assert case in ("as written", "another boot"), case


@pytest.mark.parametrize(
    "case",
    [
        "as written",
        "another layout",
        "another boot",
        "a claim past its range",
        "a claim past the .part's end",
        "cut short",
        "a symlink to a good copy",
        "its directory a symlink",
    ],
)
def test_a_resume_trusts_the_record_only_when_it_fits(
    case: str, big: SimServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record is ahead of the journal (here: the journal is set back to half of every
    range). Used as written, it is where every range resumes; when it names another
    layout or boot, claims more than its range or the ``.part`` holds, is short, or is
    reached through a link, the journal's numbers are used and nothing outside DEST is
    read or written. Either way the file verifies, and no record is left."""
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    outside.mkdir()
    parts = _stop_mid_ranges(big, dest)
    record = _record(dest)
    assert _claims(record.read_bytes()) == [d for _, _, d in parts]  # it followed every batch
    state = json.loads(_journal_segments(dest))
    state["parts"] = [[a, b, d // 2] for a, b, d in parts]
    _journal_segments(dest, replace=json.dumps(state))
    _tamper(case, dest, outside, parts)
    if case == "another boot":
        monkeypatch.setattr(ranges, "_BOOT_ID", b"\xff" * 16)
    left_outside = {p.name: p.read_bytes() for p in outside.iterdir()}

    big.set_faults(Faults())
    before = len(_ranges(big))
    recorder = Recorder()
    result = pull(big, dest, recorder, collections=[L1C], assets=[KEY], template="{name}", **SPLIT)
    assert result.ok and result.downloaded == 1, recorder.outcomes()
    trusted = case == "as written"
    used = [d if trusted else d // 2 for _, _, d in parts]
    wanted = {a + u for (a, b, _), u in zip(parts, used, strict=True) if a + u < b}
    assert _starts(_ranges(big)[before:]) == wanted
    (outcome,) = recorder.outcomes().values()
    assert outcome.bytes_downloaded == SIZE - state["prefix"] - sum(used)
    _assert_verified(big, dest)
    assert {p.name: p.read_bytes() for p in outside.iterdir()} == left_outside


def test_a_discarded_split_file_leaves_no_record(big: SimServer, tmp_path: Path) -> None:
    """The file changed on the server while its ranges were stopped: the resumed range is
    answered 200, the ``.part`` is discarded, and its progress record with it."""
    _stop_mid_ranges(big, tmp_path)
    assert _record(tmp_path).is_file()
    item = big.catalog.item(L1C, 0)
    big.catalog.bump(item["id"], KEY)
    result = pull(
        big,
        tmp_path,
        collections=[L1C],
        assets=[KEY],
        template="{name}",
        retries=0,
        **SPLIT,
    )
    assert result.failed == 1
    assert not list(tmp_path.glob("*.part"))
    assert not list((tmp_path / ".stacpull" / ranges.RANGE_RECORDS).iterdir())
