"""A mirror on a Dask cluster (issue 21): ``--cluster local:N | tcp://…``, ``mirror(client=…)``,
the coordinator's driver, and the simulator's hold knob its kill test needs.

One LocalCluster of two worker processes serves the whole module (it starts in about a
second, and the runs share it as a real cluster's clients would); the tests that need no
Dask (the address parser, the config, the hold knob, the import check) never start it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

from stacpull.config.cluster import ClusterConfig
from stacpull.defaults import DEFAULT_CLUSTER_RETRIES
from stacpull.errors import ConfigError
from stacpull.sim import SimCatalog, SimServer, default_collections

from .conftest import L1C, TOKEN

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
        try:
            _get(item["assets"]["enclosure_i_abs_tiff"]["href"], got)
        except OSError:
            pass  # the server went away mid-body: what this test allows

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

    example = Path(__file__).resolve().parents[1] / "config.example.toml"
    text = example.read_text()
    table = tomllib.loads(text)["cluster"]
    assert set(table) == {"per_host", "retries"}  # the others are unset by default
    cluster = text.split("\n[cluster]\n", 1)[1].split("\n[", 1)[0]
    assert "\n# address = " in cluster and "\n# buckets = 64\n" in cluster
    assert ClusterConfig().retries == table["retries"] == DEFAULT_CLUSTER_RETRIES


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
