"""The benchmark suite refuses a misspelt scenario, tool or network before it runs
anything: a typo must not cost half a suite (it used to stop with a traceback after the
rows before it had run). It knows issue 19's names (stacpull at its defaults, the
products scenario, the capped link), and its table shows them."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SUITE = Path(__file__).resolve().parent.parent / "benchmarks" / "suite.py"


def _suite() -> ModuleType:
    if (loaded := sys.modules.get("bench_suite")) is not None:
        return loaded
    spec = importlib.util.spec_from_file_location("bench_suite", SUITE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_suite"] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--tools", "stacpull,wget", "unknown tool wget (choose from stacpull, stacpull-defaults"),
        ("--scenarios", "2mib,4gib", "unknown scenario 4gib (choose from 1gib, 2mib"),
        ("--networks", "lan", "unknown network lan (choose from loopback, wan, wan-link)"),
        ("--set", "aria2c.q=3", "want aria2c.KEY=N with KEY one of j, s, x"),
        ("--set", "stacpull-defaults.j=8", "tools with settings are stacpull, aria2c"),
    ],
)
def test_the_suite_refuses_unknown_names_before_running(
    tmp_path: Path, flag: str, value: str, message: str
) -> None:
    out = tmp_path / "suite.json"
    done = subprocess.run(
        [sys.executable, str(SUITE), flag, value, "--out", str(out), "--memory-items", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert message in done.stderr
    assert not out.exists()


def test_the_suite_accepts_issue_19s_names(monkeypatch: pytest.MonkeyPatch) -> None:
    suite = _suite()
    argv = ["suite.py", "--quick", "--scenarios", "products", "--networks", "wan,wan-link"]
    argv += ["--tools", "stacpull,stacpull-defaults,aria2c", "--set", "aria2c.j=32"]
    monkeypatch.setattr(sys, "argv", argv)
    args = suite._arguments()
    assert args.names == ["products"]
    assert args.network_list == ["wan", "wan-link"]
    assert args.tool_list == ["stacpull", "stacpull-defaults", "aria2c"]
    assert args.overrides == {"aria2c": {"j": 32}}
    products = args.all_scenarios["products"]
    # The scenario's own per-connection rate, and a link of two connections' worth.
    wan, link = (suite.network(n, products, args) for n in ("wan", "wan-link"))
    assert (wan.rate, wan.link_rate) == (10e6, 0.0)
    assert (link.rate, link.link_rate) == (10e6, 20e6)
    assert suite.network("wan", args.all_scenarios["2mib"], args).rate == 20e6


def test_the_products_scenario_is_issue_19s_archive(tmp_path: Path) -> None:
    suite = _suite()
    products = suite.scenarios(quick=False)["products"]
    assert products.networks == ("loopback", "wan", "wan-link")
    zips = [f for f in products.files if f.kind == "zip"]
    assert len(zips) == 80 and len(products.files) - len(zips) == 120
    assert all(2_000_000 <= f.size <= 8_000_000 for f in zips)
    digests = {f"products/{f.item}/{f.name}": (f.size, "ab" * 32) for f in products.files}
    inputs = suite.write_inputs(products, digests, "http://archive", tmp_path)
    assets = [a for item in json.loads(inputs["items"].read_text())["features"]
              for a in item["assets"].values()]  # fmt: skip
    products_assets = [a for a in assets if a["type"] == "application/zip"]
    assert len(products_assets) == 80
    assert not any("file:size" in a or "file:checksum" in a for a in products_assets)


def test_stacpull_at_its_defaults_takes_no_tuning_flags(tmp_path: Path) -> None:
    suite = _suite()
    inputs = {"items": tmp_path / "items.geojson"}
    assert suite._settings("stacpull-defaults", "products", "wan") == {}
    plain = suite.command("stacpull-defaults", inputs, tmp_path, "http://x", {})
    tuned = suite.command(
        "stacpull", inputs, tmp_path, "http://x", suite._settings("stacpull", "products", "wan")
    )
    assert not {"-j", "--per-host", "--segments"} & set(plain)
    assert {"-j", "--per-host", "--segments"} <= set(tuned)


def _row(tool: str, network: str, **extra: Any) -> dict[str, Any]:
    return {
        "scenario": "products", "network": network, "tool": tool, "correct": True,
        "mb_per_s": 18.0, "files_per_s": 10.0, "cpu": 2.0, "rss_mb": 80.0, **extra,
    }  # fmt: skip


def test_the_table_has_a_column_for_stacpull_at_its_defaults_and_the_link_rows() -> None:
    suite = _suite()
    proxy = {"busy_at_end": 3, "peak_busy": 9}
    link = {"rate": 10e6, "link_rate": 20e6, "link_share": 0.9, "proxy": proxy}
    rows = [
        _row("aria2c", "wan"),
        _row("stacpull-defaults", "wan"),
        _row("stacpull", "wan"),
        _row("stacpull-defaults", "wan-link", **link),
    ]
    text = suite.table({"rows": rows})
    lines = text.splitlines()
    assert lines[0] == "| scenario | network | stacpull | stacpull-defaults | aria2c |"
    assert lines[3] == (
        "| products | wan-link | – | 18 MB/s · 90% of link · 3 conns at end · 2 s CPU · 80 MB | – |"
    )
    assert "10 MB/s per connection, 20 MB/s for the whole link" in text


def test_only_the_notebook_on_a_capped_link_is_left_out() -> None:
    suite = _suite()
    capped = suite.Network("wan-link", 0.025, 10e6, 20e6)
    assert "one connection never meets its link cap" in suite._not_run("notebook", capped)
    for net in (suite.Network("loopback"), suite.Network("wan", 0.025, 10e6)):
        assert suite._not_run("notebook", net) is None
    assert suite._not_run("aria2c", capped) is None


def test_the_mirror_pair_differs_only_by_the_cluster(tmp_path: Path) -> None:
    suite = _suite()
    inputs = {"items": tmp_path / "items.geojson"}
    one = suite.command("stacpull-mirror", inputs, tmp_path, "http://x", {})
    two = suite.command("stacpull-cluster", inputs, tmp_path, "http://x", {})
    assert one[3] == two[3] == "mirror"
    assert [a for a in two if a not in one] == ["--cluster", "local:2"]
    assert "stacpull-cluster" not in suite.DEFAULT_TOOLS  # on demand: it needs the dask extra
