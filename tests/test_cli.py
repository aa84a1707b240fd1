"""The command line, end to end against the simulated catalogue."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from stacpull.cli import main
from stacpull.sim import SimServer

from .conftest import L1A, L1C, TOKEN, files_under


def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env={"STACPULL_TOKEN": "", **(env or {})})
    return result.exit_code, result.output


def test_download_through_the_cli(sim: SimServer, tmp_path: Path) -> None:
    code, out = _run(
        "download",
        "--catalog",
        sim.catalog_url,
        "--collection",
        L1A,
        "--collection",
        L1C,
        "--filter",
        "productType<>'S3_SCS__1S'",
        "--datetime",
        "2025-01-01T00:00:00Z/..",
        "--dest",
        str(tmp_path),
        "-j",
        "4",
        env={"STACPULL_TOKEN": TOKEN},
    )
    assert code == 0, out
    assert "downloaded" in out and "\x1b" not in out
    assert len(files_under(tmp_path)) == 3 * 4 + 3 * 5  # one L1a item is S3_SCS__1S
    report = json.loads((tmp_path / ".stacpull" / "last-report.json").read_text())
    assert report["totals"]["downloaded"] == 27 and report["totals"]["failed"] == 0
    assert TOKEN not in json.dumps(report)


def test_catalog_from_the_environment_and_token_file(sim: SimServer, tmp_path: Path) -> None:
    token_file = tmp_path / "tok"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    code, out = _run(
        "download",
        "--collection",
        L1A,
        "--ids",
        str(sim.catalog.item(L1A, 0)["id"]),
        "--dest",
        str(tmp_path / "d"),
        "--token-file",
        str(token_file),
        env={"STACPULL_CATALOG": sim.catalog_url},
    )
    assert code == 0, out
    assert len(files_under(tmp_path / "d")) == 3


def test_a_refused_fixed_token_gives_exit_code_3(sim: SimServer, tmp_path: Path) -> None:
    code, out = _run(
        "download",
        "--catalog",
        sim.catalog_url,
        "--collection",
        L1A,
        "--dest",
        str(tmp_path),
        "--assets",
        "product",
        "--token",
        "wrong-token-value",
    )
    # A fixed token refused on every file stops the run once (exit 3), files left pending.
    assert code == 3
    assert "refused by the server" in out and "wrong-token-value" not in out


def test_bad_input_gets_a_message_and_exit_code_2(sim: SimServer, tmp_path: Path) -> None:
    cases = [
        (["--bbox", "1,2,3"], "expected 4 numbers"),
        (["--datetime", "yesterday"], "is not a date or date-time"),
        (["--filter", "productType ="], "invalid filter"),
        (["--collection", "NoSuchCollection"], "unknown collection 'NoSuchCollection'"),
        (["--intersects", str(tmp_path / "none.geojson")], "does not exist"),
        (["--assets", "size:3"], "unknown selector kind"),
    ]
    for extra, message in cases:
        args = ["download", "--catalog", sim.catalog_url, "--dest", str(tmp_path / "x")]
        if "--collection" not in extra:
            args += ["--collection", L1A]
        code, out = _run(*args, *extra)
        assert code == 2, (extra, out)
        assert message in out, (extra, out)
        assert "Traceback" not in out


def test_unreachable_catalogue_and_missing_dest(tmp_path: Path) -> None:
    code, out = _run(
        "download",
        "--catalog",
        "http://127.0.0.1:9/catalogue/",
        "--collection",
        "X",
        "--dest",
        str(tmp_path),
    )
    assert code == 2 and "cannot open the catalogue" in out
    code, out = _run("download", "--catalog", "http://127.0.0.1:9/catalogue/", "--collection", "X")
    assert code == 2 and "--dest" in out


def _demo(dest: Path, dashboard: str) -> subprocess.CompletedProcess[str]:
    """``python -m stacpull demo`` as a real process, without the caller's STACPULL_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STACPULL_")}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "stacpull",
            "demo",
            "--items",
            "3",
            "--product-size",
            "200000",
            "--dest",
            str(dest),
            "--dashboard",
            dashboard,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_demo_runs_as_a_real_process(tmp_path: Path) -> None:
    proc = _demo(tmp_path / "demo", "plain")
    assert proc.returncode == 0, proc.stderr
    assert "downloaded" in proc.stdout and "\x1b" not in proc.stdout + proc.stderr
    # BIOMASS L1a and L1c: zip, quicklook, KMZ; FLEX: zip, quicklook; EarthCARE: h5, HDR, jpeg
    assert len(files_under(tmp_path / "demo")) == 3 * 3 + 3 * 3 + 3 * 2 + 3 * 3
    again = _demo(tmp_path / "demo", "none")
    assert again.returncode == 0 and "skipped" in again.stdout


def test_bbox_and_intersects_select_items_by_area(sim: SimServer, tmp_path: Path) -> None:
    west, south, east, north = sim.catalog.item(L1A, 0)["bbox"]
    geojson = tmp_path / "aoi.geojson"
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    geojson.write_text(
        json.dumps({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]}})
    )
    common = [
        "download",
        "--catalog",
        sim.catalog_url,
        "--collection",
        L1A,
        "--assets",
        "thumbnail",
    ]
    code, out = _run(*common, "--intersects", str(geojson), "--dest", str(tmp_path / "a"))
    assert code == 0, out
    assert [p.parent.name for p in files_under(tmp_path / "a")] == [sim.catalog.item(L1A, 0)["id"]]
    code, out = _run(
        *common, "--bbox", f"{west},{south},{east},{north}", "--dest", str(tmp_path / "b")
    )
    assert code == 0, out
    assert len(files_under(tmp_path / "b")) == 1


def test_sim_serve_rejects_impossible_fault_knobs() -> None:
    code, out = _run("sim", "serve", "--port", "0", "--cut-probability", "1.5")
    assert code == 2 and "cut_probability must lie in [0, 1]" in out
    code, out = _run("sim", "serve", "--port", "0", "--latency", "-1")
    assert code == 2 and "--latency must be ≥ 0" in out
