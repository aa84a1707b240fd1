"""Attacks on issue 17's Python API and transfer flags, as a notebook user, a library user
and a hostile server would try them: each test failed before the fix beside it."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from aiohttp import web

import stacpull
from stacpull import engine
from stacpull.api import build_config
from stacpull.config import Config, load_config
from stacpull.errors import ConfigError, StacpullError
from stacpull.events import BytesReceived, Event, JobFinished, RunFinished
from stacpull.limits import TokenBucket
from stacpull.models import Status
from stacpull.sim import Faults, SimCatalog, SimOptions, SimServer, default_collections

from .conftest import L1C, TOKEN, Recorder, cli, files_under, pull
from .hostile import ThreadedApp

SIZE = 3_000_000
KEY = "enclosure_i_abs_tiff"  # carries file:size and a sha2-512 checksum


@pytest.fixture
def capped() -> Iterator[SimServer]:
    """One L1c item whose tiff is 3 MB, each response capped at 1 MB/s: split when slow."""
    spec = next(s for s in default_collections(1, 20_000) if s.id == L1C)
    catalog = SimCatalog([dataclasses.replace(spec, enclosure_size=SIZE)])
    with SimServer(catalog, options=SimOptions(faults=Faults(rate_limit=1_000_000))) as server:
        yield server


class CountingBucket(TokenBucket):
    """The run's real bucket, counting what every taker took."""

    made: ClassVar[list[CountingBucket]] = []

    def __init__(self, rate: float, **kw: Any) -> None:
        super().__init__(rate, **kw)
        self.taken = 0
        CountingBucket.made.append(self)

    def charge(self, amount: int) -> float:
        self.taken += amount
        return super().charge(amount)


def test_bwlimit_counts_every_byte_of_a_split_file_once(
    capped: SimServer, tmp_path: Path, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    CountingBucket.made.clear()
    monkeypatch.setattr(engine, "TokenBucket", CountingBucket)
    result = pull(
        capped, tmp_path, recorder, collections=[L1C], assets=[KEY], bwlimit="1500k",
        segments=4, segment_size=300_000, segment_below=10_000_000,
    )  # fmt: skip
    assert result.ok and result.downloaded == 1, recorder.outcomes()
    ranges = [r["range"] for r in capped.requests if r["path"].endswith("_abs.tiff")]
    assert len(ranges) >= 3  # it was split
    (path,) = files_under(tmp_path)
    assert path.stat().st_size == SIZE
    received = sum(e.n for e in recorder.of_type(BytesReceived))
    (bucket,) = CountingBucket.made
    assert received == SIZE and bucket.taken == SIZE


# -- durations and sizes that are numbers to float() but not to a run ----------------------


@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-inf", "Infinity", "1e400", "1e999s"])
def test_a_duration_must_be_finite(text: str) -> None:
    with pytest.raises(ConfigError, match=r"download\.stall_timeout"):
        load_config(env={}, flags={"download.stall_timeout": text})


@pytest.mark.parametrize("key", ["search.timeout", "download.backoff", "output.progress_interval"])
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_float_duration_from_the_api_must_be_finite(key: str, value: float) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(env={}, flags={key: value})


def test_a_nan_search_timeout_is_one_line_not_a_traceback() -> None:
    code, _, err = cli(
        "search", "--catalog", "http://127.0.0.1:9/", "--collection", L1C,
        env={"STACPULL_SEARCH_TIMEOUT": "nan"},
    )  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and "STACPULL_SEARCH_TIMEOUT" in err, err


@pytest.mark.parametrize(
    ("flag", "env"),
    [("--bwlimit", None), ("--max-bytes", None), (None, "STACPULL_DOWNLOAD_MIN_FREE"),
     (None, "STACPULL_DOWNLOAD_SEGMENT_SIZE")],
)  # fmt: skip
def test_a_size_too_large_for_a_number_is_one_line_exit_2(
    flag: str | None, env: str | None, tmp_path: Path
) -> None:
    args = ["download", "--collection", L1C, "--dest", str(tmp_path)]
    code, _, err = cli(
        *args, *([flag, "1e400M"] if flag else []), env={env: "1e400M"} if env else None
    )
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert (flag or env or "").lstrip("-").replace("-", "_").lower().split("download_")[-1] in err


def test_a_bwlimit_under_one_byte_per_second_is_refused_not_unlimited() -> None:
    with pytest.raises(ConfigError, match=r"download\.bwlimit"):
        load_config(env={}, flags={"download.bwlimit": "0.5"})


# -- a sink of the caller's that raises ---------------------------------------------------


class SinkBroke(Exception):
    """The caller's own error, raised from its event sink."""


def _last_outcome(dest: Path) -> str:
    db = sqlite3.connect(dest / ".stacpull" / "journal.sqlite")
    try:
        (outcome,) = db.execute("SELECT outcome FROM runs ORDER BY id DESC LIMIT 1").fetchone()
    finally:
        db.close()
    return str(outcome)


@pytest.mark.parametrize("in_loop", [False, True], ids=["script", "notebook"])
def test_a_sink_that_raises_ends_the_run_not_as_complete(
    sim: SimServer, tmp_path: Path, in_loop: bool
) -> None:
    """The sink's own exception reaches the caller (its type kept across the worker
    thread), and the journal does not call a run with files left over complete."""
    finished: list[JobFinished] = []

    def sink(event: Event) -> None:
        if isinstance(event, JobFinished):
            finished.append(event)
            if len(finished) == 2:
                raise SinkBroke("the notebook's widget broke")

    def call() -> Any:
        return pull(sim, tmp_path, sink, concurrency=1)  # type: ignore[arg-type]

    async def cell() -> Any:
        return call()

    with pytest.raises(SinkBroke, match="widget broke"):
        asyncio.run(cell()) if in_loop else call()
    assert _last_outcome(tmp_path) != "complete"
    _, out, _ = cli("status", str(tmp_path))
    assert "complete" not in out.splitlines()[0], out


def test_a_sink_that_raises_on_run_finished_still_lets_the_run_be_recorded(
    sim: SimServer, tmp_path: Path
) -> None:
    def sink(event: Event) -> None:
        if isinstance(event, RunFinished):
            raise SinkBroke("the last event broke the widget")

    with pytest.raises(SinkBroke):
        pull(sim, tmp_path, sink)  # type: ignore[arg-type]
    assert _last_outcome(tmp_path) == "complete"  # every file was done
    assert list((tmp_path / ".stacpull").glob("report-*.json"))  # and its report written
    again = pull(sim, tmp_path)  # the DEST lock was let go
    assert again.ok and again.skipped == 15


def test_an_error_of_a_sync_call_is_not_chained_to_the_loop_probe(
    sim: SimServer, tmp_path: Path
) -> None:
    """A traceback in a script shows the run's error alone, not 'RuntimeError: no running
    event loop' and 'During handling of the above exception, another exception occurred'."""
    (tmp_path / "file").write_text("")
    with pytest.raises(StacpullError) as caught:
        pull(sim, tmp_path / "file" / "dest")
    assert caught.value.__context__ is None or not isinstance(
        caught.value.__context__, RuntimeError
    ), repr(caught.value.__context__)


# -- headers: what their values may reach -------------------------------------------------

HEADER_SECRET = "abcdef123456"


@pytest.mark.parametrize(
    "entry",
    [f"X-Api-Key {HEADER_SECRET}", f"X-Api-Key={HEADER_SECRET}", f"X-Api-Key {HEADER_SECRET}: x",
     ["X-Api-Key", 12], {"X-Api-Key": [HEADER_SECRET]}, [f"X-Api-Key {HEADER_SECRET}", "v"]],
)  # fmt: skip
def test_a_malformed_header_is_refused_without_echoing_its_value(entry: Any) -> None:
    """A typo in ``--header 'X-Api-Key=…'`` must not print the key to a cron job's mail."""
    value = entry if isinstance(entry, dict) else [entry]
    with pytest.raises(ConfigError) as caught:
        load_config(env={}, flags={"download.headers": value})
    message = str(caught.value)
    assert HEADER_SECRET not in message and "X-Api-Key" in message, message


def test_a_malformed_header_flag_is_one_line_without_its_value(tmp_path: Path) -> None:
    code, _, err = cli(
        "download", "--collection", L1C, "--dest", str(tmp_path),
        "--header", f"X-Api-Key={HEADER_SECRET}",
    )  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and HEADER_SECRET not in err, err


def test_config_show_masks_credential_headers_of_any_length(clean_cwd: Path) -> None:
    env = {"STACPULL_DOWNLOAD_HEADERS": '["X-Api-Key: k3y", "X-Credential: cred-abcdef123", '
           '"Authorization: Basic dXNlcjpwdw", "User-Agent: mytool"]'}  # fmt: skip
    for args in (["config", "show"], ["config", "show", "--json"]):
        code, out, err = cli(*args, env=env)
        assert code == 0, err
        assert "k3y" not in out and "cred-abcdef123" not in out and "dXNlcjpwdw" not in out, out
        assert "X-Api-Key" in out and "mytool" in out  # the names, and a harmless value


@pytest.fixture
def clean_cwd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A working directory without stacpull.toml."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


# -- the environment reaching the API: every error names its variable ----------------------


@pytest.mark.parametrize(
    ("var", "value"),
    [("STACPULL_PROFILE", "nope"), ("STACPULL_CONFIG", "/nonexistent/stacpull.toml"),
     ("STACPULL_DOWNLOAD_STALL_TIMEOUT", "inf")],
)  # fmt: skip
def test_a_bad_variable_reaching_the_api_is_named(
    var: str, value: str, clean_cwd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError, match=var):
        build_config(catalog="http://127.0.0.1:9/")


def test_a_bbox_keyword_replaces_an_intersects_from_the_environment(
    clean_cwd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keywords are the highest layer: one spatial filter replaces the other, instead of
    'bbox and intersects cannot be used together' naming neither source."""
    monkeypatch.setenv("STACPULL_SEARCH_INTERSECTS", '{"type": "Point", "coordinates": [0, 0]}')
    config = build_config(catalog="http://127.0.0.1:9/", bbox=[0, 0, 1, 1])
    assert config.search.bbox == (0, 0, 1, 1) and config.search.intersects is None
    monkeypatch.delenv("STACPULL_SEARCH_INTERSECTS")
    monkeypatch.setenv("STACPULL_SEARCH_BBOX", "0,0,1,1")
    point = {"type": "Point", "coordinates": [1, 1]}
    config = build_config(catalog="http://127.0.0.1:9/", intersects=point)
    assert config.search.intersects == point and config.search.bbox is None
    with pytest.raises(ConfigError, match="together"):  # within one layer, still an error
        build_config(Config(), bbox=[0, 0, 1, 1], intersects=point)


# -- did-you-mean knows each function's own keywords ----------------------------------------


@pytest.mark.parametrize(
    ("function", "typo", "meant"),
    [("download", "retry_faild", "retry_failed"), ("download", "sinks", "sink"),
     ("mirror", "purne", "prune"), ("collections", "organization", "organisation"),
     ("collections", "platfrom", "platform"), ("search_items", "out_put", "output"),
     ("dry_run", "maxitems", "max_items")],
)  # fmt: skip
def test_a_misspelt_keyword_of_the_function_itself_is_suggested(
    function: str, typo: str, meant: str, clean_cwd: Path
) -> None:
    with pytest.raises(ConfigError, match=rf"unknown option '{typo}' \(did you mean '{meant}'\?\)"):
        getattr(stacpull, function)(catalog="http://127.0.0.1:9/", **{typo: True})


@pytest.fixture
def fast_large() -> Iterator[SimServer]:
    """One L1c item whose tiff is 2.4 MB, served as fast as loopback goes."""
    spec = next(s for s in default_collections(1, 20_000) if s.id == L1C)
    catalog = SimCatalog([dataclasses.replace(spec, enclosure_size=2_400_000)])
    with SimServer(catalog) as server:
        yield server


def test_a_stream_held_back_by_the_bwlimit_is_not_split_as_slow(
    fast_large: SimServer, tmp_path: Path, recorder: Recorder
) -> None:
    """The split probe judges the server: time the run's own bucket held a stream back is
    not slowness, so a fast server under --bwlimit gets no extra connections."""
    result = pull(
        fast_large, tmp_path, recorder, collections=[L1C], assets=[KEY], bwlimit="1M",
        segments=4, segment_size=200_000, segment_below=10_000_000,
    )  # fmt: skip
    assert result.ok and result.downloaded == 1, recorder.outcomes()
    ranges = [r["range"] for r in fast_large.requests if r["path"].endswith("_abs.tiff")]
    assert ranges == [None], ranges  # one stream, never split


# -- RunResult.files(): this run's files only -----------------------------------------------


def test_files_of_two_runs_in_the_same_second_are_kept_apart(
    sim: SimServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both runs write one outcome log (named by the second); each lists its own files,
    also after the other appended, and also after a crash left a cut line between them."""
    frozen = time.gmtime()
    monkeypatch.setattr(time, "gmtime", lambda *_: frozen)
    first = pull(sim, tmp_path, assets=["product"])
    (log,) = (tmp_path / ".stacpull").glob("outcomes-*.jsonl")
    with log.open("a") as f:
        f.write('{"item": "CUT_BY_A_CRA')  # a run killed mid-line
    second = pull(sim, tmp_path, retry_failed=False)
    assert {r.status for r in first.files()} == {Status.DOWNLOADED}
    assert len(list(first.files())) == first.downloaded == 5
    again = list(second.files())
    assert len(again) == second.downloaded + second.skipped == 15
    assert sum(r.status is Status.SKIPPED for r in again) == 5
    assert all(r.item_id != "CUT_BY_A_CRA" for r in again)
    assert list(first.files()) == list(first.files())  # read again at each call, unchanged


# -- --log-file: why a run stopped is in the log --------------------------------------------


@pytest.mark.parametrize(
    ("extra", "reason"),
    [(["--collection", "NoSuchCollection"], "unknown collection"),
     (["--collection", L1C, "--assets", "zzz"], "selects no asset")],
)  # fmt: skip
def test_the_log_file_says_why_the_run_stopped(
    sim: SimServer, tmp_path: Path, extra: list[str], reason: str
) -> None:
    log = tmp_path / "run.log"
    code, _, err = cli(
        "download", "--catalog", sim.catalog_url, *extra, "--dest", str(tmp_path / "d"),
        "--log-file", str(log), "--dashboard", "none", token=TOKEN,
    )  # fmt: skip
    assert code == 2 and reason in err, err
    lines = log.read_text().splitlines()
    assert any(reason in line and "run stopped" in line for line in lines), lines
    assert lines[-1].endswith("run ended")


@pytest.mark.parametrize("in_loop", [False, True], ids=["script", "notebook"])
@pytest.mark.parametrize("kind", [KeyboardInterrupt, SystemExit])
def test_a_sink_raising_keyboardinterrupt_or_systemexit_reaches_the_caller_as_it_is(
    sim: SimServer, tmp_path: Path, in_loop: bool, kind: type[BaseException]
) -> None:
    """Not as a bare CancelledError from the worker thread's loop."""

    def sink(event: Event) -> None:
        if isinstance(event, JobFinished):
            raise kind

    def call() -> Any:
        return pull(sim, tmp_path, sink, concurrency=1)  # type: ignore[arg-type]

    async def cell() -> Any:
        return call()

    with pytest.raises(kind):
        asyncio.run(cell()) if in_loop else call()
    assert _last_outcome(tmp_path) == "aborted"


# -- --header across a hostile redirect chain ----------------------------------------------


class Bouncer(ThreadedApp):
    """A file server on 127.0.0.1 (the catalogue's host name) recording each request's
    headers: ``/out`` redirects to ``localhost`` (another host name), whose ``/back``
    redirects to ``127.0.0.1`` again, as a hostile mirror might to harvest headers."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, dict[str, str]] = {}

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.seen[f"{request.host.split(':')[0]}{request.path}"] = dict(request.headers)
        if request.path == "/out":
            raise web.HTTPFound(f"http://localhost:{self.port}/back")
        if request.path == "/back":
            raise web.HTTPFound(f"http://127.0.0.1:{self.port}/home.bin")
        return web.Response(body=b"x" * 1000, content_type="application/octet-stream")


@pytest.mark.parametrize("all_hosts", [False, True])
def test_headers_on_a_trusted_untrusted_trusted_redirect_chain(
    sim: SimServer, tmp_path: Path, all_hosts: bool
) -> None:
    with Bouncer() as server:
        sim.catalog.add_item(
            L1C,
            {"type": "Feature", "id": "BOUNCE", "collection": L1C,
             "properties": {"datetime": "2025-09-29T00:00:00Z"}, "bbox": [0, 0, 1, 1],
             "geometry": None, "links": [],
             "assets": {"data": {"href": f"http://127.0.0.1:{server.port}/out",
                                 "type": "application/octet-stream", "title": "bounce.bin"}}},
        )  # fmt: skip
        headers = ["X-Custom: yes", "Proxy-Authorization: Basic cHJveHk6c2VjcmV0MTIz",
                   "authorization: Basic dXNlcjpzZWNyZXQxMjM="]  # fmt: skip
        result = pull(
            sim, tmp_path, collections=[L1C], ids=["BOUNCE"], assets=["data"],
            headers=headers, header_all_hosts=all_hosts,
        )  # fmt: skip
        assert result.ok and result.downloaded == 1
    first, away, home = (
        server.seen[k] for k in ("127.0.0.1/out", "localhost/back", "127.0.0.1/home.bin")
    )
    assert first.get("X-Custom") == "yes" and first.get("Authorization", "").startswith("Basic")
    for hop in (away, home):  # once off the trusted host, no credential comes back
        assert "Authorization" not in hop and "Proxy-Authorization" not in hop, hop
    assert ("X-Custom" in away) is all_hosts and ("X-Custom" in home) is all_hosts


# -- --debug after any subcommand -----------------------------------------------------------


def test_debug_is_accepted_after_every_subcommand(sim: SimServer, tmp_path: Path) -> None:
    pull(sim, tmp_path)
    cat = ["--catalog", sim.catalog_url]
    for args in (
        ["collections", *cat], ["search", *cat, "--collection", L1C, "--max-items", "1"],
        ["queryables", L1C, *cat], ["status", str(tmp_path)], ["report", str(tmp_path)],
        ["verify", str(tmp_path)], ["config", "show"],
    ):  # fmt: skip
        before, _, _ = cli("--debug", *args)
        after, _, err = cli(*args, "--debug")
        assert after == before == 0, (args, err)


@pytest.mark.parametrize("value", ["a\x7fb", "a\x01b", "\x1b[31mred"])
def test_a_header_value_with_a_control_character_is_refused_up_front(value: str) -> None:
    """aiohttp refuses it only at the first request, with a ValueError traceback."""
    with pytest.raises(ConfigError, match="X-Name"):
        load_config(env={}, flags={"download.headers": [f"X-Name: {value}"]})
    assert load_config(env={}, flags={"download.headers": ["X-Name: a\tb café"]}).download.headers
