"""The Python API from notebooks and type checkers: sync calls inside a running event loop
(Jupyter), async twins, typed keyword options checked against the config schema, one
did-you-mean, the files a run wrote, and the same environment and config file as the CLI."""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import sqlite3
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import FrozenInstanceError, fields
from pathlib import Path
from typing import Any

import pytest

import stacpull
from stacpull import api
from stacpull.config import Config, load_config
from stacpull.errors import ConfigError
from stacpull.events import BytesReceived, Event, JobFinished
from stacpull.models import Status
from stacpull.sim import Faults, SimCatalog, SimOptions, SimServer, default_collections

from .conftest import L1A, TOKEN, Recorder, files_under, pull

FAST = {"backoff": 0.01, "max_backoff": 0.05, "not_found_delay": 0.05}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No STACPULL_* variable of the machine, and a working directory without stacpull.toml."""
    for name in list(os.environ):
        if name.startswith("STACPULL_") and name != "STACPULL_UVLOOP":
            monkeypatch.delenv(name)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


# -- 1. sync calls inside a running event loop, async twins ------------------------------


def test_every_sync_function_works_inside_a_running_event_loop(
    sim: SimServer, tmp_path: Path
) -> None:
    cat = sim.catalog_url
    recorder = Recorder()
    threads: set[str] = set()

    def sink(event: Event) -> None:
        threads.add(threading.current_thread().name)
        recorder(event)

    async def notebook_cell() -> dict[str, Any]:
        # As in Jupyter: a loop is running in this thread while the sync API is called.
        return {
            "download": stacpull.download(
                catalog=cat,
                collections=L1A,
                dest=str(tmp_path / "d"),
                token=TOKEN,
                sink=sink,
                **FAST,
            ),
            "mirror": stacpull.mirror(
                catalog=cat, collections=[L1A], dest=str(tmp_path / "m"), token=TOKEN, **FAST
            ),
            "items": stacpull.search_items(catalog=cat, collections=[L1A], max_items=2),
            "collections": stacpull.collections(catalog=cat, platform="FLEX"),
            "queryables": stacpull.queryables(L1A, catalog=cat),
            "plan": stacpull.dry_run(catalog=cat, collections=[L1A], dest=str(tmp_path / "p")),
        }

    out = asyncio.run(notebook_cell())
    assert out["download"].ok and out["download"].downloaded == 15
    assert out["mirror"].ok and out["mirror"].downloaded == 15
    assert len(out["items"]) == 2
    assert [c["id"] for c in out["collections"]] == ["FLEXL1CommissioningProducts10"]
    assert "properties" in out["queryables"]
    assert (out["plan"].items, out["plan"].files) == (5, 15)
    # the sink was called for every job, from the worker thread that ran the loop
    assert len(recorder.of_type(JobFinished)) == 15
    assert threading.current_thread().name not in threads


def test_errors_inside_a_running_loop_keep_their_type_and_message(sim: SimServer) -> None:
    async def cell() -> None:
        stacpull.download(catalog=sim.catalog_url, collections=[L1A], token=TOKEN)

    with pytest.raises(ConfigError, match="no destination directory"):
        asyncio.run(cell())
    assert not [t for t in threading.enumerate() if t.name.startswith("stacpull-api")]


@pytest.fixture
def slow_sim() -> Iterator[SimServer]:
    """Two items of 600 kB sent at 100 kB/s: a run that lasts until it is stopped."""
    catalog = SimCatalog(default_collections(count=2, product_size=600_000))
    with SimServer(catalog, options=SimOptions(faults=Faults(rate_limit=100_000))) as server:
        yield server


def _jupyter(cell: Coroutine[Any, Any, None]) -> None:
    """Run ``cell`` as ipykernel does: on a loop of this thread, Python's own SIGINT handler."""
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(cell)
    finally:
        loop.close()


@pytest.mark.parametrize("runner", [_jupyter, asyncio.run], ids=["jupyter", "asyncio.run"])
def test_ctrl_c_during_a_sync_call_in_a_running_loop_stops_the_run(
    slow_sim: SimServer, tmp_path: Path, runner: Callable[[Coroutine[Any, Any, None]], None]
) -> None:
    main = threading.main_thread().ident
    assert main == threading.get_ident()
    sent: list[bool] = []

    def sink(event: Event) -> None:
        if isinstance(event, BytesReceived) and not sent:
            sent.append(True)
            assert main is not None
            signal.pthread_kill(main, signal.SIGINT)  # what Jupyter's "interrupt" does

    async def cell() -> None:
        stacpull.download(
            catalog=slow_sim.catalog_url,
            collections=[L1A],
            dest=str(tmp_path),
            token=TOKEN,
            sink=sink,
            **FAST,
        )

    with pytest.raises(KeyboardInterrupt):
        runner(cell())
    assert sent
    # the run was cancelled and ended cleanly: recorded as aborted, report written, no thread
    db = sqlite3.connect(tmp_path / ".stacpull" / "journal.sqlite")
    try:
        (outcome,) = db.execute("SELECT outcome FROM runs ORDER BY id DESC LIMIT 1").fetchone()
    finally:
        db.close()
    assert outcome == "aborted"
    assert list((tmp_path / ".stacpull").glob("report-*"))
    assert not [t for t in threading.enumerate() if t.name.startswith("stacpull-api")]


def test_every_sync_function_has_an_async_twin_exported() -> None:
    plain = ("build_config", "option_keys")  # no I/O, nothing to await
    sync = [n for n in api.__all__ if not n.startswith("a") and n not in plain]
    assert {"download", "mirror", "search_items", "collections", "queryables", "dry_run"} <= set(
        sync
    )
    for name in sync:
        if not inspect.isfunction(getattr(api, name)):
            continue
        twin = getattr(stacpull, "a" + name, None)
        assert twin is not None and inspect.iscoroutinefunction(twin), name
        assert "a" + name in stacpull.__all__, name
        assert name in stacpull.__all__, name
        # same keyword parameters as the sync function
        assert inspect.signature(twin).parameters.keys() == (
            inspect.signature(getattr(api, name)).parameters.keys()
        ), name


@pytest.mark.anyio
async def test_the_async_twins_discover_and_plan(sim: SimServer, tmp_path: Path) -> None:
    cat = sim.catalog_url
    found = await stacpull.acollections(catalog=cat, platform="FLEX")
    assert [c["id"] for c in found] == ["FLEXL1CommissioningProducts10"]
    schema = await stacpull.aqueryables(L1A, catalog=cat)
    assert "properties" in schema
    plan = await stacpull.adry_run(catalog=cat, collections=[L1A], dest=str(tmp_path / "p"))
    assert (plan.items, plan.files, plan.to_fetch_files) == (5, 15, 15)


# -- 2. typed keyword options, checked against the config schema -------------------------


#: The keywords that are not their config key's own name: ``[auth] hosts``, and the
#: [cluster] keys (two of them share their names with [download] keys; issue 21).
_KEYWORD_OF = {
    "auth.hosts": "auth_hosts",
    "cluster.address": "cluster",
    "cluster.per_host": "cluster_per_host",
    "cluster.retries": "cluster_retries",
}


def _config_keys() -> set[str]:
    """Every config key as its API keyword."""
    config = Config()
    return {
        _KEYWORD_OF.get(f"{section.name}.{f.name}", f.name)
        for section in fields(config)
        for f in fields(getattr(config, section.name))
    }


def test_the_typed_options_name_every_config_key() -> None:
    typed = set(api.Options.__optional_keys__) | set(api.Options.__required_keys__)
    keys = _config_keys()
    missing = keys - typed
    assert not missing, f"config keys missing from stacpull.api.Options: {sorted(missing)}"
    assert typed - keys == {"profile"}  # the only option that is not a config key
    assert not api.Options.__required_keys__
    # every option is accepted at run time, and every config key reaches its section
    assert set(api.option_keys()) == typed - {"profile"}


def test_every_keyword_option_reaches_its_config_section(clean_env: Path) -> None:
    config = api.build_config(
        catalog="http://127.0.0.1:9/",
        collections="C1",
        max_items=3,
        concurrency=2,
        auth_hosts=["data.example.org"],
        token_url="https://iam.example.org/token",
        report=False,
        verbosity="quiet",
        dest=Path("some/where"),
        log_json=Path("events.jsonl"),
    )
    assert config.search.collections == ("C1",) and config.search.max_items == 3
    assert config.download.concurrency == 2 and config.download.dest == "some/where"
    assert config.auth.hosts == ("data.example.org",)
    assert config.output.report is False and config.output.verbosity == "quiet"
    assert config.output.log_json == "events.jsonl"


# -- 3. one did-you-mean, nearest real key ------------------------------------------------


@pytest.mark.parametrize(
    ("wrong", "right"),
    [
        ("maxitems", "max_items"),
        ("max-items", "max_items"),
        ("MaxItems", "max_items"),
        ("colections", "collections"),
        ("concurency", "concurrency"),
        ("perhost", "per_host"),
        ("maxbytes", "max_bytes"),
        ("offline_tokenfile", "offline_token_file"),
        ("hosts", "auth_hosts"),
    ],
)
def test_a_misspelt_keyword_names_the_nearest_option(
    clean_env: Path, wrong: str, right: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        api.build_config(**{wrong: 3})
    message = str(caught.value)
    assert "\n" not in message
    assert f"unknown option {wrong!r}" in message
    assert f"did you mean {right!r}?" in message


def test_a_misspelt_keyword_fails_the_sync_call_in_one_line(clean_env: Path) -> None:
    with pytest.raises(ConfigError, match=r"did you mean 'max_items'\?"):
        stacpull.search_items(maxitems=3)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("toml", "hint"),
    [
        ("[search]\nmaxitems = 3\n", "did you mean 'max_items'?"),
        ("[search]\nmax-items = 3\n", "did you mean 'max_items'?"),
        ("[download]\nconcurency = 3\n", "did you mean 'concurrency'?"),
        ("[download]\nmax_items = 3\n", "did you mean [search] max_items?"),
        ("[download]\nmaxitems = 3\n", "did you mean [search] max_items?"),
        ("[auth]\nofline_token_file = 'x'\n", "did you mean 'offline_token_file'?"),
        ("[profiles.p]\nmaxitems = 3\n", "did you mean 'max_items'?"),
        ("[serch]\ncatalog = 'http://x/'\n", "did you mean [search]?"),
    ],
)
def test_a_misspelt_config_file_key_names_the_nearest_key(
    tmp_path: Path, toml: str, hint: str
) -> None:
    path = tmp_path / "stacpull.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert hint in str(caught.value) and "\n" not in str(caught.value)


# -- 4. the files a run wrote ------------------------------------------------------------


def test_run_result_lists_the_files_it_wrote(sim: SimServer, tmp_path: Path) -> None:
    dest = tmp_path / "d"
    first = pull(sim, dest)
    records = first.files()
    assert isinstance(records, Iterator)  # read from the run's outcome log, not kept in memory
    listed = list(records)
    assert len(listed) == 15 and {r.status for r in listed} == {Status.DOWNLOADED}
    on_disk = set(files_under(dest))
    assert {r.path for r in listed} == on_disk
    for record in listed:
        assert record.path is not None and record.path.is_absolute()
        assert record.size == record.path.stat().st_size == record.bytes_downloaded
        assert record.collection == L1A and record.item_id and record.asset_key
        assert record.error is None
    with pytest.raises(FrozenInstanceError):
        listed[0].size = 0  # type: ignore[misc]
    assert first.dest == dest.resolve()
    again = pull(sim, dest)
    skipped = list(again.files())
    assert {r.status for r in skipped} == {Status.SKIPPED}
    assert {r.path for r in skipped} == on_disk
    assert all(r.bytes_downloaded == 0 and r.size for r in skipped)
    assert sorted(r.path for r in first.files()) == sorted(on_disk)  # each run its own list


def test_run_result_lists_failed_files_with_their_reason(sim: SimServer, tmp_path: Path) -> None:
    sim.set_faults(Faults(burst_probability=1.0, burst_length=1000, burst_statuses=(500,)))
    result = pull(sim, tmp_path, retries=1)
    failed = [r for r in result.files() if r.status is Status.FAILED]
    assert len(failed) == result.failed > 0
    assert all(r.error and r.path is not None and not r.path.exists() for r in failed)


# -- 5. the same environment and config file as the CLI ---------------------------------


def test_the_api_sends_stacpull_token_from_the_environment(
    sim: SimServer, tmp_path: Path, clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STACPULL_TOKEN", TOKEN)
    result = stacpull.download(
        catalog=sim.catalog_url, collections=[L1A], dest=str(tmp_path / "d"), **FAST
    )
    assert result.ok and result.downloaded == 15
    assert sim.requests and all(r["token_ok"] for r in sim.requests)


def test_the_api_reads_stacpull_toml_the_environment_and_keywords_win(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (clean_env / "stacpull.toml").write_text(
        "[download]\nconcurrency = 3\nper_host = 4\n[search]\npage_size = 7\n"
    )
    config = api.build_config()
    assert (config.download.concurrency, config.download.per_host) == (3, 4)
    monkeypatch.setenv("STACPULL_CONCURRENCY", "5")
    config = api.build_config(per_host=2)
    assert (config.download.concurrency, config.download.per_host) == (5, 2)
    assert api.build_config(concurrency=6).download.concurrency == 6
    assert config.search.page_size == 7
    # a Config passed in is the whole base: neither the file nor the environment apply
    assert (
        api.build_config(Config(), per_host=1).download.concurrency == Config().download.concurrency
    )
    # a profile named by keyword or STACPULL_PROFILE, and a config file by path
    monkeypatch.delenv("STACPULL_CONCURRENCY")
    other = clean_env / "other.toml"
    other.write_text("[profiles.mine]\nconcurrency = 9\n")
    assert api.build_config(other, profile="mine").download.concurrency == 9
    monkeypatch.setenv("STACPULL_PROFILE", "maap-preop")
    assert "preop" in api.build_config().search.catalog
