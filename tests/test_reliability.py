"""Fault injection against the simulated catalogue: retries, stalls, throttling, disk full."""

from __future__ import annotations

import dataclasses
import zipfile
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest

from stacpull.errors import HTTPStatusError, StallError, StorageError
from stacpull.events import HostLimitChanged, TransferRetried
from stacpull.headers import parse_retry_after
from stacpull.journal import Journal
from stacpull.limits import HostLimiter
from stacpull.models import Job, Status
from stacpull.retry import RetryPolicy
from stacpull.sim import Faults, SimCatalog, SimOptions, SimServer, default_collections

from .conftest import L1A, L1C, Recorder, files_under, pull


def _server(faults: Faults, **options: Any) -> SimServer:
    catalog = SimCatalog(default_collections(count=5, product_size=300_000))
    return SimServer(catalog, options=SimOptions(faults=faults, **options))


@pytest.fixture
def faulty(request: pytest.FixtureRequest) -> Iterator[SimServer]:
    """A simulated catalogue with the ``Faults`` given by ``@pytest.mark.parametrize``."""
    with _server(request.param) as server:
        yield server


def _data_requests(sim: SimServer, fragment: str) -> list[dict[str, Any]]:
    return [r for r in sim.requests if fragment in r["path"]]


# -- the retry policy, decided per error ------------------------------------------------------
def test_retry_policy_per_error() -> None:
    policy = RetryPolicy(retries=3, backoff=1.0, jitter=False, not_found_delay=30.0)
    for status in (408, 429, 500, 502, 503, 504):
        assert policy.delay(1, HTTPStatusError("x", status=status)) == 1.0
    assert policy.delay(3, HTTPStatusError("x", status=503)) == 4.0
    assert policy.delay(4, HTTPStatusError("x", status=503)) is None
    for status in (400, 403, 410, 418):
        assert policy.delay(1, HTTPStatusError("x", status=status)) is None
    # 404: a few times over minutes, then give up
    delays = [policy.delay(n, HTTPStatusError("x", status=404)) for n in (1, 2, 3, 4)]
    assert delays == [30.0, 60.0, 120.0, None]
    # Retry-After wins over the backoff, in seconds or as an HTTP date
    assert policy.delay(1, HTTPStatusError("x", status=429, retry_after=7.0)) == 7.0
    when = datetime.now(UTC) + timedelta(seconds=90)
    seconds = parse_retry_after(format_datetime(when, usegmt=True))
    assert seconds is not None and 85 <= seconds <= 91
    assert policy.delay(1, StallError("x")) == 1.0


def test_a_404_is_retried_until_the_file_is_ready(tmp_path: Path, recorder: Recorder) -> None:
    with _server(Faults(not_ready_for=0.3)) as sim:
        result = pull(sim, tmp_path, recorder, max_items=1, not_found_delay=0.5)
        assert result.ok, recorder.outcomes()
        assert sim.fault_counts["not_ready"] == 3  # each of the three files, once
    retried = recorder.of_type(TransferRetried)
    assert retried and all("404" in r.error for r in retried)


def test_a_file_that_stays_404_fails_after_its_budget(sim: SimServer, tmp_path: Path) -> None:
    item = dict(sim.catalog.item(L1A, 0))
    item["id"] = "GHOST"
    item["assets"] = {
        "quicklook": {"href": f"{sim.base_url}/data/public/nowhere/ghost.png", "type": "image/png"}
    }
    sim.catalog.add_item(L1A, item)
    recorder = Recorder()
    result = pull(sim, tmp_path, recorder, ids=["GHOST"], not_found_retries=2)
    outcome = recorder.outcomes()["GHOST/quicklook"]
    assert outcome.status is Status.FAILED and outcome.attempts == 3
    assert outcome.error is not None and "not on the server" in outcome.error
    assert result.exit_code == 1


def test_other_4xx_fail_at_once_with_the_reason(sim: SimServer, tmp_path: Path) -> None:
    item = dict(sim.catalog.item(L1A, 0))
    item["id"] = "BADREQ"
    item["assets"] = {"quicklook": {"href": f"{sim.base_url}/go", "type": "image/png"}}
    sim.catalog.add_item(L1A, item)
    recorder = Recorder()
    pull(sim, tmp_path, recorder, ids=["BADREQ"])
    outcome = recorder.outcomes()["BADREQ/quicklook"]
    assert outcome.status is Status.FAILED and outcome.attempts == 1
    assert outcome.error is not None and "HTTP 400" in outcome.error


@pytest.mark.parametrize(
    "faulty",
    [Faults(burst_probability=0.3, burst_length=3, burst_statuses=(503, 429), seed=3)],
    indirect=True,
)
def test_503_and_429_bursts_are_retried_honouring_retry_after(
    faulty: SimServer, tmp_path: Path, recorder: Recorder
) -> None:
    result = pull(faulty, tmp_path, recorder, retries=15, max_items=3, per_host=8)
    assert result.ok
    counts = faulty.fault_counts
    assert counts.get("status_503", 0) + counts.get("status_429", 0) > 0
    retried = [
        r for r in recorder.of_type(TransferRetried) if "HTTP 5" in r.error or "429" in r.error
    ]
    assert retried and all(r.delay == 1.0 for r in retried)  # the server's Retry-After: 1
    # a host that says it is overloaded gets fewer connections
    limits = recorder.of_type(HostLimitChanged)
    assert limits and limits[0].reason == "throttled" and limits[0].limit == 4


@pytest.mark.parametrize(("concurrency", "per_host"), [(1, 4), (4, 1)])
def test_a_file_being_made_durable_holds_no_transfer_slot(
    sim: SimServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, concurrency: int, per_host: int
) -> None:
    # One transfer at a time (one run slot, or one slot of the host): the next file's
    # request must go out while the first file's local work (its seal, its journal record
    # here) is still under way. Held through it, the slot would keep that request back
    # until the wait below gave up. The request may go out before the record begins (while
    # the file is sealed: a slow fsync), so any request for another file counts.
    record = Journal.done
    waited: list[bool] = []  # the first record's wait: did another file's request go out?

    async def slow_done(self: Journal, job: Job, **kw: Any) -> None:
        if not waited:
            waited.append(False)
            mine = urlsplit(job.url).path
            for _ in range(1000):  # ten seconds at most
                if any(request["path"] != mine for request in sim.requests):
                    waited[0] = True
                    break
                await anyio.sleep(0.01)
        await record(self, job, **kw)

    monkeypatch.setattr(Journal, "done", slow_done)
    result = pull(sim, tmp_path, concurrency=concurrency, per_host=per_host, max_items=2)
    assert result.ok and waited == [True]
    assert result.downloaded == len(files_under(tmp_path)) > 1


@pytest.mark.anyio
async def test_the_host_window_halves_on_a_throttle_at_most_once_per_cooldown() -> None:
    """Issue 19: a host that keeps answering 429/503 (30 % of its last 20 answers) gets
    half the connections, at most once per 2 s; a stray 503 changes nothing
    (tests/test_limiter.py has the rest: pauses, steps undone, growth)."""
    now = [5.0]
    changes: list[tuple[str, int, str]] = []
    limiter = HostLimiter(8, clock=lambda: now[0], on_change=lambda *a: changes.append(a))
    for _ in range(20):
        limiter.succeeded("h")
    limiter.throttled("h", 503, None)
    limiter.throttled("h", 503, None)  # 2 of the last 20 answers: strays
    assert limiter.limit("h") == 8
    for _ in range(4):
        limiter.throttled("h", 503, None)  # now it keeps answering 503: one halving
    assert limiter.limit("h") == 4
    now[0] = 7.5
    limiter.throttled("h", 429, None)
    assert limiter.limit("h") == 2
    assert [c[1:] for c in changes] == [(4, "throttled"), (2, "throttled")]
    # slots: two fit, and are given back
    async with limiter.slot("h"), limiter.slot("h"):
        assert limiter.active("h") == 2
    assert limiter.active("h") == 0


@pytest.mark.parametrize("faulty", [Faults(cut_probability=0.5, seed=11)], indirect=True)
def test_cut_connections_resume_from_the_bytes_on_disk(
    faulty: SimServer, tmp_path: Path, recorder: Recorder
) -> None:
    # The random cuts fall on whichever responses the run's timing puts under the seeded
    # rolls; now and then none hit a range-capable file. One quicklook is cut for sure.
    faulty.catalog.cut(str(faulty.catalog.item(L1C, 0)["id"]), "quicklook_png", 20_000)
    result = pull(faulty, tmp_path, recorder, collections=[L1C], retries=20)
    assert result.ok and faulty.fault_counts["cuts"] > 3
    outcomes = recorder.outcomes().values()
    static = [o for o in outcomes if not o.job.zip_check]
    resumed = [o for o in static if o.resumed_from > 0]
    assert resumed
    # A range-capable file is never fetched twice: the bytes received over all its
    # attempts are exactly its size (what reached the disk before a cut is kept).
    for o in static:
        assert o.bytes_downloaded == o.size, o.job.label
    # Each retry asked for the rest only: a Range from the bytes already on disk.
    for o in resumed:
        name = o.job.url.rsplit("/", 1)[-1]
        ranges = [r["range"] for r in _data_requests(faulty, name)]
        assert ranges[0] is None and ranges[-1] == f"bytes={o.resumed_from}-"


def test_a_stalled_transfer_is_aborted_and_resumed(
    sim: SimServer, tmp_path: Path, recorder: Recorder
) -> None:
    iid = str(sim.catalog.item(L1C, 0)["id"])
    sim.catalog.stall(iid, "enclosure_i_abs_tiff", after=100_000, seconds=3.0)
    result = pull(
        sim,
        tmp_path,
        recorder,
        collections=[L1C],
        ids=[iid],
        assets=["enclosure_i_abs_tiff"],
        stall_timeout=0.5,
    )
    assert result.ok
    retried = recorder.of_type(TransferRetried)
    assert [r.error_class for r in retried] == ["StallError"]
    ranges = [r["range"] for r in _data_requests(sim, "_i_abs.tiff")]
    assert ranges[0] is None and ranges[1] is not None and ranges[1].startswith("bytes=")


def test_a_slow_but_moving_transfer_is_never_killed(tmp_path: Path, recorder: Recorder) -> None:
    with _server(Faults(rate_limit=250_000)) as sim:
        result = pull(sim, tmp_path, recorder, max_items=1, assets=["product"], stall_timeout=0.4)
    assert result.ok and result.retries == 0
    # by construction the transfer outlasted the stall timeout: more bytes than the
    # throttled server can send in 0.4 s (no clock involved)
    assert result.bytes_downloaded > 250_000 * 0.4 * 2


@pytest.mark.parametrize("faulty", [Faults(truncate_probability=0.5, seed=1)], indirect=True)
def test_a_truncating_zipper_never_gets_its_zip_accepted(
    faulty: SimServer, tmp_path: Path, recorder: Recorder
) -> None:
    result = pull(faulty, tmp_path, recorder, assets=["product"], retries=10)
    assert result.ok and faulty.fault_counts["truncations"] > 0
    restarts = [r for r in recorder.of_type(TransferRetried) if r.error_class == "CorruptZipError"]
    assert restarts and all(r.discarded > 0 for r in restarts)  # restarted from zero
    for f in files_under(tmp_path):
        with zipfile.ZipFile(f) as zf:
            assert zf.testzip() is None


@pytest.mark.parametrize(
    "faulty", [Faults(change_probability=0.5, cut_probability=0.5, seed=2)], indirect=True
)
def test_a_file_that_changes_between_attempts_is_never_spliced(
    faulty: SimServer, tmp_path: Path
) -> None:
    # 2025 quicklooks carry no checksum: only the validators protect them from splicing.
    result = pull(faulty, tmp_path, assets=["quicklook"], retries=20)
    assert result.ok and faulty.fault_counts["changes"] > 0
    for f in files_under(tmp_path):
        _assert_png_chunks_intact(f.read_bytes())


def _assert_png_chunks_intact(body: bytes) -> None:
    """Every chunk's CRC holds: bytes of two versions spliced together would break one."""
    assert body[:8] == b"\x89PNG\r\n\x1a\n"
    pos = 8
    while pos < len(body):
        length = int.from_bytes(body[pos : pos + 4], "big")
        kind = body[pos + 4 : pos + 8]
        data = body[pos + 8 : pos + 8 + length]
        crc = int.from_bytes(body[pos + 8 + length : pos + 12 + length], "big")
        assert zlib.crc32(kind + data) == crc, f"chunk {kind!r} at {pos} is corrupt"
        pos += 12 + length
    assert kind == b"IEND"


# -- the disk ------------------------------------------------------------------------------------
def test_a_file_that_would_fill_the_disk_stops_the_run_cleanly(
    sim: SimServer, tmp_path: Path
) -> None:
    with pytest.raises(StorageError, match="not enough free space"):
        pull(sim, tmp_path, collections=[L1C], assets=["enclosure_*"], min_free=10**18)
    journal = Journal(tmp_path)
    try:
        assert "active" not in journal.counts()  # settled: nothing claims to be in flight
    finally:
        journal.close()
    assert not [f for f in files_under(tmp_path) if not f.name.endswith(".part")]


def test_two_runs_cannot_share_a_dest(sim: SimServer, tmp_path: Path) -> None:
    holder = Journal(tmp_path, lock=True)
    try:
        with pytest.raises(StorageError, match="another stacpull run"):
            pull(sim, tmp_path)
    finally:
        holder.close()
    assert pull(sim, tmp_path).ok


def test_an_unwritable_dest_is_a_clear_error(sim: SimServer, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StorageError, match="cannot create DEST"):
        pull(sim, tmp_path / "file" / "sub")


def test_faults_are_validated() -> None:
    with pytest.raises(ValueError, match="cut_probability"):
        Faults(cut_probability=1.5)
    assert not Faults().active and Faults(rate_limit=1).active
    assert dataclasses.replace(Faults(), seed=4).active is False


@pytest.mark.parametrize("faulty", [Faults(cut_probability=1.0, cut_after=60_000)], indirect=True)
def test_attempts_that_move_the_file_forward_do_not_use_up_the_retries(
    faulty: SimServer, tmp_path: Path, recorder: Recorder
) -> None:
    iid = str(faulty.catalog.item(L1C, 0)["id"])
    result = pull(
        faulty,
        tmp_path,
        recorder,
        collections=[L1C],
        ids=[iid],
        assets=["enclosure_i_abs_tiff"],
        retries=1,
    )
    assert result.ok
    (outcome,) = recorder.outcomes().values()
    assert outcome.attempts >= 4 and outcome.bytes_downloaded == outcome.size


def test_a_login_page_instead_of_the_file_is_an_auth_error(
    sim: SimServer, tmp_path: Path, recorder: Recorder
) -> None:
    iid = str(sim.catalog.item(L1A, 0)["id"])
    sim.catalog.tamper(iid, "product", "login")
    sim.catalog.tamper(iid, "quicklook", "login")
    result = pull(sim, tmp_path, recorder, ids=[iid])
    failed = {k: o for k, o in recorder.outcomes().items() if o.status is Status.FAILED}
    assert sorted(failed) == [f"{iid}/product", f"{iid}/quicklook"]
    for o in failed.values():
        assert o.error_class == "AuthError" and o.attempts == 1
        assert o.error is not None and "HTML page instead of the file" in o.error
    assert result.exit_code == 1
    assert [f.name for f in files_under(tmp_path)] == [f"{iid.lower()}_map.kmz"]
