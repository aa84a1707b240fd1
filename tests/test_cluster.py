"""A mirror on a Dask cluster (issue 21): ``--cluster local:N | tcp://…``, ``mirror(client=…)``,
the coordinator's driver, and the simulator's hold knob its kill test needs.

One LocalCluster of two worker processes serves the whole module (it starts in about a
second, and the runs share it as a real cluster's clients would); the tests that need no
Dask (the address parser, the config, the hold knob, the import check) never start it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import stacpull
from stacpull.errors import ConfigError
from stacpull.sim import SimCatalog, SimServer, default_collections

from .conftest import L1A, L1C, TOKEN, Recorder, cli, files_under, local_dask_client, until
from .test_shards import settle

# -- the simulator's hold knob ----------------------------------------------------------


def _get(url: str, into: list[bytes]) -> None:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        into.append(answer.read())


def test_a_held_file_pauses_after_n_bytes_until_released(tmp_path: Path) -> None:
    with SimServer(SimCatalog(default_collections(count=2, product_size=600_000))) as sim:
        item = sim.catalog.item(L1C, 0)
        href = item["assets"]["enclosure_i_abs_tiff"]["href"]
        body = sim.catalog.static_body(L1C, 0, "enclosure_i_abs_tiff")
        sim.hold(item["id"], "enclosure_i_abs_tiff", 100_000)
        got: list[bytes] = []
        reader = threading.Thread(target=_get, args=(href, got))
        reader.start()
        assert sim.wait_held(item["id"], "enclosure_i_abs_tiff", timeout=30)
        # held: the server sent the bytes before the hold, and no more
        assert sim.bytes_sent_for(item["id"], "enclosure_i_abs_tiff") == 100_000
        assert got == [] and reader.is_alive()
        sim.release(item["id"], "enclosure_i_abs_tiff")
        reader.join(30)
        assert got == [body]
        assert sim.held == {f"{item['id']}/enclosure_i_abs_tiff": 1}
        # one-shot: the next response passes, and the per-file counter adds it
        _get(href, got)
        assert got[1] == body and sim.held[f"{item['id']}/enclosure_i_abs_tiff"] == 1
        assert sim.bytes_sent_for(item["id"], "enclosure_i_abs_tiff") == 2 * len(body)


def test_a_server_stopping_with_a_held_body_does_not_hang() -> None:
    sim = SimServer(SimCatalog(default_collections(count=1, product_size=600_000))).start()
    item = sim.catalog.item(L1C, 0)
    sim.hold(item["id"], "enclosure_i_abs_tiff", 10)
    got: list[bytes] = []

    def read() -> None:
        with contextlib.suppress(OSError):  # the server goes away mid-body: allowed here
            _get(item["assets"]["enclosure_i_abs_tiff"]["href"], got)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert sim.wait_held(item["id"], "enclosure_i_abs_tiff", timeout=30)
    sim.stop()  # releases the hold: the handler ends, the thread joins
    assert sim._thread is not None and not sim._thread.is_alive()


# -- addresses and config ---------------------------------------------------------------


def test_cluster_addresses_parse_into_a_local_cluster_or_a_scheduler() -> None:
    from stacpull.cluster import LocalAddress, RemoteAddress, parse_address

    assert parse_address("local:2") == LocalAddress(2)
    assert parse_address(" LOCAL:4 ") == LocalAddress(4)
    assert parse_address("local") == LocalAddress(None)
    assert parse_address("tcp://sched.example.org:8786") == RemoteAddress(
        "tcp://sched.example.org:8786"
    )
    assert parse_address("tls://10.0.0.5:8786") == RemoteAddress("tls://10.0.0.5:8786")
    assert parse_address("tcp://[::1]:8786") == RemoteAddress("tcp://[::1]:8786")


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("", "empty"),
        ("local:0", "from 1 to"),
        ("local:-2", "from 1 to"),
        ("local:two", "from 1 to"),
        ("local:99999", "from 1 to"),
        ("tcp://sched", "port"),
        ("tcp://:8786", "host"),
        ("tcp://sched:http", "port"),
        ("tcp://sched:99999", "port"),
        ("tcp://sched:8786/x", "path"),
        ("http://sched:8786", "tcp://"),
        ("sched:8786", "tcp://"),
        ("inproc://x", "tcp://"),
    ],
)
def test_bad_cluster_addresses_get_a_clear_error(value: str, says: str) -> None:
    from stacpull.cluster import parse_address

    with pytest.raises(ConfigError) as caught:
        parse_address(value)
    message = str(caught.value)
    assert message.startswith("cluster.address") and says in message, message


def test_the_cluster_section_is_config() -> None:
    from stacpull.config import Config

    config = Config().with_values(
        {"cluster.address": "local:2", "cluster.buckets": "16", "cluster.per_host": 4}
    )
    assert config.cluster.address == "local:2"
    assert config.cluster.buckets == 16 and config.cluster.per_host == 4
    assert config.cluster.retries == 2
    assert Config().cluster.address is None
    with pytest.raises(ConfigError, match=r"cluster\.address"):
        Config().with_values({"cluster.address": "tcp://nowhere"})
    with pytest.raises(ConfigError, match=r"cluster\.buckets"):
        Config().with_values({"cluster.buckets": 0})
    with pytest.raises(ConfigError, match=r"cluster\.retries"):
        Config().with_values({"cluster.retries": -1})
    with pytest.raises(ConfigError, match=r"did you mean 'buckets'"):
        Config().with_values({"cluster.bucket": 3})


def test_the_example_config_documents_the_cluster_section() -> None:
    import tomllib

    from stacpull.config.cluster import ClusterConfig
    from stacpull.defaults import DEFAULT_CLUSTER_RETRIES

    example = Path(__file__).resolve().parents[1] / "config.example.toml"
    text = example.read_text()
    table = tomllib.loads(text)["cluster"]
    assert set(table) == {"per_host", "retries"}  # the others are unset by default
    cluster = text.split("\n[cluster]\n", 1)[1].split("\n[", 1)[0]
    assert "\n# address = " in cluster and "\n# buckets = 64\n" in cluster
    assert ClusterConfig().retries == table["retries"] == DEFAULT_CLUSTER_RETRIES


def test_config_show_lists_the_cluster_section() -> None:
    code, out, _ = cli("config", "show", env={"STACPULL_CLUSTER_ADDRESS": "local:3"})
    assert code == 0, out
    cluster = out.split("\n[cluster]\n", 1)[1]
    assert 'address = "local:3"' in cluster and "env STACPULL_CLUSTER_ADDRESS" in cluster
    assert 'per_host = "auto"' in cluster and "retries = 2" in cluster
    code, out, _ = cli("config", "show", "--json")
    assert json.loads(out)["cluster"] == {
        "address": None,
        "buckets": None,
        "per_host": "auto",
        "retries": 2,
    }


def test_cluster_flags_and_keywords_reach_the_config() -> None:
    from stacpull.api import build_config, option_keys

    assert option_keys()["cluster"] == "cluster.address"
    config = build_config(cluster="local:3", buckets=8, dest="x")
    assert config.cluster.address == "local:3" and config.cluster.buckets == 8


def test_bad_cluster_flag_values_exit_2_with_one_line(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from stacpull.cli import main

    for value, says in (("local:0", "from 1 to"), ("tcp://host", "port"), ("x", "tcp://")):
        result = CliRunner().invoke(
            main,
            ["mirror", "--collection", L1C, "--dest", str(tmp_path), "--cluster", value],
            env={"STACPULL_TOKEN": TOKEN},
        )
        assert result.exit_code == 2, result.output
        assert "--cluster" in result.output and says in result.output, result.output


# -- nothing of Dask without --cluster --------------------------------------------------

_NO_DASK = """
import json, sys
import stacpull
import stacpull.cluster
from stacpull.cli import main
stacpull.cluster.parse_address("local:2")
try:
    main({args}, standalone_mode=False)
except SystemExit:
    pass
print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed'))))
"""


def test_a_run_without_cluster_imports_nothing_of_dask(tmp_path: Path) -> None:
    with SimServer(SimCatalog(default_collections(count=2, product_size=50_000))) as sim:
        args = ["mirror", "--catalog", sim.catalog_url, "--collection", L1C]
        args += ["--dest", str(tmp_path / "m"), "--dashboard", "none", "--token", TOKEN]
        code = _NO_DASK.format(args=json.dumps(args))
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
        )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
    assert list((tmp_path / "m").rglob("*.png")), done.stderr


# -- a mirror on a LocalCluster of two worker processes ---------------------------------


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """One LocalCluster of two worker processes (a second each to start) for the module."""
    with local_dask_client() as dask_client:
        yield dask_client


def _options(sim: SimServer, dest: Path, **kw: Any) -> dict[str, Any]:
    return {
        "catalog": sim.catalog_url,
        "collections": [L1A, L1C],
        "dest": str(dest),
        "token": TOKEN,
        "backoff": 0.01,
        "max_backoff": 0.05,
        "report": True,
        **kw,
    }


def _digests(dest: Path) -> dict[str, str]:
    return {
        str(p.relative_to(dest)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in files_under(dest)
    }


def _status(dest: Path) -> dict[str, Any]:
    """``status --json`` without what differs between any two runs (where, when, how long)."""
    code, out, _ = cli("status", str(dest), "--json")
    assert code == 0, out
    status = json.loads(out)
    del status["dest"]
    run = status["last_run"]
    for key in ("started", "ended"):
        del run[key]
    for key in ("seconds", "report"):
        del run["summary"][key]
    return dict(status)


def test_a_cluster_mirror_gives_the_same_dest_as_one_process(
    client: Any, sim: SimServer, tmp_path: Path
) -> None:
    plain = stacpull.mirror(**_options(sim, tmp_path / "plain"))
    seen = Recorder()
    clustered = stacpull.mirror(
        sink=seen, client=client, **_options(sim, tmp_path / "c", buckets=8)
    )
    assert plain.ok and clustered.ok, (plain, clustered)
    assert clustered.downloaded == plain.downloaded == 30
    assert clustered.bytes_on_disk == plain.bytes_on_disk
    assert clustered.bytes_downloaded == plain.bytes_downloaded
    assert _digests(tmp_path / "c") == _digests(tmp_path / "plain")
    assert _status(tmp_path / "c") == _status(tmp_path / "plain")
    # one report, and files() lists every file as a single run's does
    assert clustered.report is not None and clustered.report.exists()
    listed = {r.path: (r.status, r.size) for r in clustered.files()}
    assert sorted(listed) == files_under(tmp_path / "c")
    single = {r.path: (r.status, r.size) for r in plain.files()}
    assert sorted(listed.values(), key=str) == sorted(single.values(), key=str)
    assert len(seen.outcomes()) == 30  # the caller's sink saw every file
    layout = json.loads((tmp_path / "c" / ".stacpull" / "shards" / "layout.json").read_text())
    assert layout["buckets"] == 8
    # the workers read the token from the coordinator's file (0600), never from the config
    token = tmp_path / "c" / ".stacpull" / "token"
    assert token.read_text().strip() == TOKEN and token.stat().st_mode & 0o777 == 0o600


def test_a_cluster_mirror_judges_and_prunes_once_every_bucket_completed(
    client: Any, sim: SimServer, tmp_path: Path
) -> None:
    first = stacpull.mirror(client=client, cluster_per_host=2, **_options(sim, tmp_path, buckets=4))
    assert first.ok and first.downloaded == 30
    # one budget for the cluster: two workers, each window starting at 8, two at once
    assert sim.peak_connections <= 2
    gone = str(sim.catalog.item(L1A, 2)["id"])
    sim.catalog.remove_item(gone)
    sim.requests.clear()
    again = stacpull.mirror(client=client, prune=True, **_options(sim, tmp_path))
    assert again.ok and again.downloaded == 0 and again.skipped == 27
    assert sim.requests == deque() or not [r for r in sim.requests if gone not in r["path"]]
    assert len(again.gone) == 3 and again.pruned == 3
    assert not list(tmp_path.rglob(f"*{gone}*"))


def test_cli_cluster_local_2_mirrors(sim: SimServer, tmp_path: Path) -> None:
    args = ["mirror", "--catalog", sim.catalog_url, "--collection", L1C, "--dest", str(tmp_path)]
    code, out, err = cli(*args, "--cluster", "local:2", "--dashboard", "none", token=TOKEN)
    assert code == 0, out + err
    assert len(files_under(tmp_path)) == 15
    assert "downloaded" in out and "15" in out
    code, out, _ = cli("verify", str(tmp_path))
    assert code == 0, out


def _lease_owner(dest: Path, bucket: int) -> str | None:
    from stacpull.shards.layout import bucket_dir
    from stacpull.shards.lease import read_lease

    with contextlib.suppress(Exception):
        row = read_lease(bucket_dir(dest / ".stacpull", bucket), bucket)
        if row is not None and row.state == "running":
            return row.owner
    return None


#: The write batch of the tests below: download.chunk_size caps it (transfer.pace.Bodies).
BATCH = 65_536
HELD = "enclosure_i_abs_tiff"


def test_a_worker_killed_mid_file_leaves_everything_verified(
    client: Any, sim: SimServer, tmp_path: Path
) -> None:
    from stacpull.shards.layout import bucket_of

    item = sim.catalog.item(L1C, 1)
    iid = str(item["id"])
    size = len(sim.catalog.static_body(L1C, 1, HELD))
    sim.hold(iid, HELD, 3 * BATCH + 1000)  # three whole batches on disk, a part of one not
    workers = client.run(os.getpid)
    options = _options(
        sim, tmp_path, collections=[L1C], assets=[HELD, "quicklook_png"], chunk_size=BATCH
    )
    ended: list[Any] = []
    run = threading.Thread(
        target=lambda: ended.append(stacpull.mirror(client=client, buckets=4, **options))
    )
    run.start()
    try:
        assert sim.wait_held(iid, HELD, timeout=60)
        owner = until(lambda: _lease_owner(tmp_path, bucket_of(L1C, iid, 4)), "a lease owner")
        pid = int(owner.rpartition(":")[2])
        assert pid in workers.values()
        parts = lambda: list((tmp_path / L1C / iid).glob("*.tiff.part"))  # noqa: E731
        part = until(parts, "the held file's .part")[0]
        until(lambda: part.stat().st_size >= 3 * BATCH, "three batches on disk")
        os.kill(pid, signal.SIGKILL)
        run.join(120)
    finally:
        sim.release(iid, HELD)
        run.join(60)
    (result,) = ended
    assert result.ok, result
    assert len(files_under(tmp_path)) == 10
    code, out, _ = cli("verify", str(tmp_path))
    assert code == 0, out
    held = next((tmp_path / L1C / iid).glob("*_i_abs.tiff"))
    assert held.read_bytes() == sim.catalog.static_body(L1C, 1, HELD)
    assert sim.bytes_sent_for(iid, HELD) <= size + BATCH
    # the takeover resumed the .part the killed worker left, from what was on disk
    tiff = f"{iid.lower()}_i_abs.tiff"
    resumed = [r["range"] for r in sim.requests if r["path"].endswith(tiff) and r["range"]]
    assert resumed and int(resumed[-1].removeprefix("bytes=").rstrip("-")) >= 3 * BATCH
    assert pid not in client.run(os.getpid).values()  # its nanny started a new process


def test_the_same_unit_submitted_twice_transfers_once(
    client: Any, sim: SimServer, tmp_path: Path
) -> None:
    from stacpull.api import build_config
    from stacpull.engine import conclude, plan_jobs
    from stacpull.runtypes import RunOptions
    from stacpull.shards.coordinator import open_shards, unit_specs
    from stacpull.shards.unit import run_unit

    item = sim.catalog.item(L1C, 3)
    iid = str(item["id"])
    sim.hold(iid, HELD, 2 * BATCH)
    config = build_config(
        **_options(sim, tmp_path, collections=[L1C], assets=[HELD, "quicklook_png"])
    ).with_values({"download.chunk_size": BATCH})
    token = tmp_path / "token"
    token.write_text(TOKEN)
    token.chmod(0o600)
    shards: list[Any] = []

    def on_open(state: Any) -> Callable[[Any], None]:
        shards.append(open_shards(state, 1))  # one bucket: the whole run is one unit
        return lambda job: shards[0].add(job) and None

    async def coordinate() -> tuple[stacpull.RunResult, list[dict[str, Any]]]:
        plan = await plan_jobs(config, RunOptions("mirror"), on_open)
        state = plan.state
        assert state is not None
        shards[0].close()
        (spec,) = unit_specs(state, shards[0], 2, token_file=str(token))
        first = client.submit(run_unit, spec, key="twice-a", pure=False)
        assert await anyio.to_thread.run_sync(lambda: sim.wait_held(iid, HELD, timeout=60))
        # At once, the other files perhaps in flight: what the first owner has in hand at
        # the takeover it still records (the second waits for it to let go), so the second
        # never fetches again what the server already sent.
        second = client.submit(run_unit, spec, key="twice-b", pure=False)  # the same unit
        results = await anyio.to_thread.run_sync(lambda: client.gather([first, second]))
        for returned in results:
            settle(state, returned)  # merged; the complete one's files told to the run
        return await conclude(state), results

    try:
        result, (first, second) = anyio.run(coordinate)
    finally:
        sim.release(iid, HELD)
    assert first["outcome"] == "superseded" and second["outcome"] == "complete", (first, second)
    assert second["epochs"][0] > first["epochs"][0]
    # the second owner ends every file: fetched, or found whole (verified) where the first
    # had finished it before it stopped; what each file cost the server is checked below
    assert second["stats"]["downloaded"] + second["stats"]["skipped"] == 10, second
    assert result.ok
    code, out, _ = cli("verify", str(tmp_path))
    assert code == 0, out
    for index in range(5):
        other = str(sim.catalog.item(L1C, index)["id"])
        for key in (HELD, "quicklook_png"):
            body = sim.catalog.static_body(L1C, index, key)
            assert 0 < sim.bytes_sent_for(other, key) <= len(body) + BATCH, (other, key)


# -- the coordinator's per-worker view ---------------------------------------------------


def _row(bucket: int, epoch: int, owner: str, files: int, size: int) -> Any:
    from stacpull.shards.lease import LeaseRow

    return LeaseRow(bucket, epoch, owner, 0.0, 0.0, files, size, "running")


def test_the_heartbeats_become_one_line_per_worker_and_a_total() -> None:
    from stacpull.cluster.progress import Heartbeats, WorkerLine, WorkerLines, worker_job
    from stacpull.events import BytesReceived, TransferStarted
    from stacpull.stats import RunStats

    beats = Heartbeats()
    assert beats.read([_row(0, 1, "a:1", 1, 100), _row(1, 1, "b:2", 0, 50)]) == {
        "a:1": 100,
        "b:2": 50,
    }
    # the next reading: only what is new; a bucket taken over counts again from zero
    news = beats.read([_row(0, 1, "a:1", 2, 300), _row(1, 2, "a:1", 0, 10)])
    assert news == {"a:1": 210}
    assert beats.workers["a:1"] == WorkerLine("a:1", {0, 1}, 2, 310)
    assert beats.workers["b:2"] == WorkerLine("b:2", set(), 0, 50)
    assert beats.read([_row(0, 1, "a:1", 2, 300)]) == {}  # nothing new, nothing told
    assert beats.settle("a:1", 0, 1, 3, 400) == 100  # the unit's own final count
    assert beats.total == 460
    # the sinks: each worker a line of the active transfers, its bytes the run's
    stats, events = RunStats(), Recorder()
    lines = WorkerLines(lambda e: (stats(e), events(e)))
    lines.show({"a:1": 100})
    lines.show({"a:1": 20, "b:2": 5})
    assert [type(e) for e in events.events] == [
        TransferStarted,
        BytesReceived,
        BytesReceived,
        TransferStarted,
        BytesReceived,
    ]
    snap = stats.snapshot()
    assert snap.bytes_received == 125
    assert {t.job.label: t.received for t in snap.active} == {"a:1/worker": 120, "b:2/worker": 5}
    assert worker_job("a:1").dest == ""  # no file of DEST


def test_a_stop_takes_every_bucket_back_and_the_next_run_resumes(
    client: Any, sim: SimServer, tmp_path: Path
) -> None:
    from stacpull import api

    iid = str(sim.catalog.item(L1C, 2)["id"])
    size = len(sim.catalog.static_body(L1C, 2, HELD))
    sim.hold(iid, HELD, 2 * BATCH + 500)
    options = _options(sim, tmp_path, collections=[L1C], assets=[HELD], chunk_size=BATCH)
    config = api.build_config(buckets=2, **options)

    async def stop_when_held(stop: api.StopSignal, abort: anyio.CancelScope) -> None:
        await anyio.to_thread.run_sync(lambda: sim.wait_held(iid, HELD, timeout=60))
        stop.request("the test stops it")

    control = api.RunControl(beside=stop_when_held)
    try:
        stopped = api.run(config, api.RunOptions("mirror"), control=control, client=client)
    finally:
        sim.release(iid, HELD)
    assert stopped.interrupted and stopped.exit_code == 130
    assert list((tmp_path / L1C / iid).glob("*.part"))  # kept for the next run
    code, out, _ = cli("status", str(tmp_path), "--json")
    assert json.loads(out)["last_run"]["outcome"] == "interrupted"
    again = stacpull.mirror(client=client, **options)
    assert again.ok and again.downloaded + again.skipped == 5, (stopped, again)
    assert sim.bytes_sent_for(iid, HELD) <= size + BATCH
    code, out, _ = cli("verify", str(tmp_path))
    assert code == 0, out


def test_only_the_coordinator_exchanges_the_offline_token(client: Any, tmp_path: Path) -> None:
    from stacpull.sim import OIDCOptions, SimOptions

    # Rotating refresh tokens: a worker that refreshed too would retire the coordinator's.
    options = SimOptions(tokens=set(), oidc=OIDCOptions(rotate=True))
    catalog = SimCatalog(default_collections(count=3, product_size=100_000))
    with SimServer(catalog, options=options) as sim:
        run = _options(sim, tmp_path, collections=[L1C], token=None)
        run |= {"offline_token": "sim-offline-token", "token_url": sim.token_url}
        result = stacpull.mirror(client=client, client_secret="sim-client-secret", **run)
        grants = list(sim.identity.log)
        data = [r for r in sim.requests if r["path"].startswith("/data/")]
    assert result.ok and result.downloaded == 9, result
    assert [g["outcome"] for g in grants] == ["ok"]  # one exchange, the coordinator's
    assert data and all(r["token_ok"] for r in data)
    assert len({r["token"] for r in data}) == 1  # the workers sent the token of the file


def test_the_report_lists_the_data_hosts_as_a_single_run_does(client: Any, tmp_path: Path) -> None:
    """The windows of the hosts the workers downloaded from reach the coordinator's report
    (and ``stacpull report``); the workers themselves are no host of it."""
    from stacpull.sim import SimOptions
    from stacpull.sim.faults import Faults

    # 503/429 bursts throttle the data host's window, in each worker as in one process
    faults = Faults(burst_probability=0.3, burst_statuses=(503, 429), retry_after=0.2, seed=3)
    catalog = SimCatalog(default_collections(count=5, product_size=300_000))
    with SimServer(catalog, options=SimOptions(faults=faults)) as sim:
        options = _options(sim, tmp_path, collections=[L1C], retries=15)
        plain = stacpull.mirror(**{**options, "dest": str(tmp_path / "plain")})
        clustered = stacpull.mirror(
            client=client, buckets=4, **{**options, "dest": str(tmp_path / "c")}
        )
    assert plain.ok and clustered.ok
    assert plain.report is not None and clustered.report is not None
    hosts = set(json.loads(plain.report.read_text())["windows"])
    assert hosts == {"127.0.0.1"}
    windows = json.loads(clustered.report.read_text())["windows"]
    assert set(windows) == hosts and windows["127.0.0.1"]["throttles"] >= 1
    code, out, _ = cli("report", str(tmp_path / "c"))
    assert code == 0 and "window 127.0.0.1:" in out, out


def test_the_workers_retries_reach_the_result_and_the_report(client: Any, tmp_path: Path) -> None:
    """Every retry a worker made is counted on the coordinator, in its result and its
    report's totals and error groups, as a single run counts its own."""
    from stacpull.sim import SimOptions
    from stacpull.sim.faults import Faults

    faults = Faults(burst_probability=0.3, burst_statuses=(503,), retry_after=0.1, seed=5)
    catalog = SimCatalog(default_collections(count=5, product_size=200_000))
    with SimServer(catalog, options=SimOptions(faults=faults)) as sim:
        options = _options(sim, tmp_path, collections=[L1C], retries=15)
        result = stacpull.mirror(client=client, buckets=4, **{**options, "dest": str(tmp_path)})
        answered = sim.fault_counts.get("status_503", 0)
    assert result.ok and answered >= 1
    assert result.retries == answered  # each 503 answered was one retry, in some worker
    assert result.report is not None
    report = json.loads(result.report.read_text())
    assert report["totals"]["retries"] == answered, report["totals"]
    assert sum(g["count"] for g in report["errors"]) >= answered, report["errors"]


def test_a_cluster_without_workers_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scheduler no worker joins (a batch queue that never started them): a clear
    error naming what to do, not a bare TimeoutError from Dask, and the run recorded as
    stopped with its plan kept for the next run."""
    distributed = pytest.importorskip("distributed")
    from stacpull.cluster import driver

    monkeypatch.setattr(driver, "_WORKERS_WAIT", 0.5)
    catalog = SimCatalog(default_collections(count=2, product_size=20_000))
    with (
        SimServer(catalog) as sim,
        distributed.LocalCluster(
            n_workers=0, processes=False, dashboard_address="127.0.0.1:0"
        ) as cluster,
        distributed.Client(cluster) as empty,
        pytest.raises(stacpull.StacpullError, match="no worker") as caught,
    ):
        stacpull.mirror(client=empty, **_options(sim, tmp_path, collections=[L1C]))
    assert not isinstance(caught.value, TimeoutError)
    code, out, _ = cli("status", str(tmp_path), "--json")
    status = json.loads(out)
    assert code == 0 and status["last_run"]["outcome"] == "stopped", out
    assert status["by_status"]["pending"]["files"] > 0, out
