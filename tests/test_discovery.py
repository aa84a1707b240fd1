"""Discovery and planning: the dry run, the download budget (and, as they land, search,
collections, queryables, export and profiles), against the simulated catalogue."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from click.testing import CliRunner

import stacpull
from stacpull.api import build_config
from stacpull.cli import main
from stacpull.config import parse_size
from stacpull.dryrun import dry_run
from stacpull.errors import ConfigError
from stacpull.sim import SimServer

from .conftest import L1A, L1C, TOKEN, cli, files_under, pull


def _cli(*args: str) -> tuple[int, str, str]:
    return cli(*args, token=TOKEN)


def test_a_dry_run_plans_without_writing_anything(sim: SimServer, tmp_path: Path) -> None:
    dest = tmp_path / "never-created"
    config = build_config(catalog=sim.catalog_url, collections=[L1A, L1C], dest=str(dest))
    summary = anyio.run(lambda: dry_run(config))
    assert not dest.exists() and not sim.requests  # no data request, no DEST, no journal
    assert (summary.items, summary.matched, summary.files) == (10, 10, 30)
    assert summary.on_disk_files == 0 and summary.free_bytes > 0
    # L1c's 2026 assets carry file:size; L1a's 2025 ones and every zipper product do not.
    sized = [
        asset["file:size"]
        for i in range(5)
        for key, asset in sim.catalog.item(L1C, i)["assets"].items()
        if key in ("quicklook_png", "quicklook_kml")  # what the maap profile takes there
    ]
    assert len(sized) == 10 and summary.known_bytes == sum(sized) > 0
    assert summary.unknown_files == 20 and summary.unguessed == 20
    assert summary.assets["product"].unknown == 10


def test_a_dry_run_counts_what_is_on_disk_and_estimates_from_earlier_runs(
    sim: SimServer, tmp_path: Path
) -> None:
    pull(sim, tmp_path, collections=[L1A], max_items=2)
    code, out, err = _cli(
        "download",
        "--catalog",
        sim.catalog_url,
        "--collection",
        f"{L1A},{L1C}",
        "--dest",
        str(tmp_path),
        "--dry-run",
    )
    assert code == 0, err
    out = err  # piped, the dry run's notes go to stderr (stdout: its asset records)
    assert "dry run: nothing was downloaded" in out
    assert "items:        10 of 10 matched" in out
    assert "on disk:      6 files" in out  # the two items of the earlier run
    assert "estimated for 9 file(s) without file:size" in out  # 3 L1a items × 3 assets
    assert "5 file(s) of unknown size" in out  # L1c products: no L1c product was ever fetched
    assert "fits" in out
    assert len(files_under(tmp_path)) == 6  # nothing more was downloaded


def test_a_run_over_budget_refuses_to_start_without_yes(sim: SimServer, tmp_path: Path) -> None:
    pull(sim, tmp_path / "seed", collections=[L1C], max_items=1)  # no estimate needed below
    args = ("download", "--catalog", sim.catalog_url, "--collection", L1C)
    before = len(sim.requests)
    code, _, err = _cli(*args, "--dest", str(tmp_path / "a"), "--max-bytes", "10kB")
    assert code == 2 and "more than the budget of 10.0 kB" in err and "--yes" in err
    assert not (tmp_path / "a").exists() and len(sim.requests) == before  # nothing fetched
    code, _, err = _cli(*args, "--dest", str(tmp_path / "a"), "--max-bytes", "10kB", "--yes")
    assert code == 0, err
    assert len(files_under(tmp_path / "a")) == 15
    code, _, err = _cli(*args, "--dest", str(tmp_path / "b"), "--max-bytes", "1GB")
    assert code == 0 and len(files_under(tmp_path / "b")) == 15
    with pytest.raises(ConfigError, match="budget"):
        stacpull.download(
            catalog=sim.catalog_url, collections=[L1C], dest=str(tmp_path / "c"), max_bytes=1
        )
    code, _, err = _cli(*args, "--dest", str(tmp_path / "d"), "--max-bytes", "lots")
    assert code == 2 and "expected a size such as 500MB" in err


def test_sizes() -> None:
    assert parse_size("50GB") == 50 * 10**9
    assert parse_size("1.5 TiB") == int(1.5 * 2**40)
    assert parse_size("500m") == 500 * 10**6
    assert parse_size(42) == 42
    with pytest.raises(ConfigError, match="expected a size"):
        parse_size("-5MB")


def test_search_lists_matches_and_fetches_only_what_it_shows(sim: SimServer) -> None:
    code, out, err = _cli(
        "search", "--catalog", sim.catalog_url, "--collection", f"{L1A},{L1C}", "--show", "3"
    )
    assert code == 0, err
    assert "10 item(s) matched" in err and "the first 3 shown" in err  # piped: tallies on stderr
    assert out.count("BIO_S") == 3 and "S1_SCS__1S" in out  # product type column
    assert "product" in out and "\x1b" not in out
    assert not sim.requests  # search only: no data request


def test_search_saves_geojson_csv_and_parquet_and_download_from_reads_it_back(
    sim: SimServer, tmp_path: Path
) -> None:
    import csv
    import json

    query = ("search", "--catalog", sim.catalog_url, "--collection", L1C)
    code, _, err = _cli(*query, "-o", str(tmp_path / "items.geojson"), "--show", "0")
    assert code == 0, err
    assert "wrote 5 item(s)" in err
    saved = json.loads((tmp_path / "items.geojson").read_text())
    assert saved["type"] == "FeatureCollection" and len(saved["features"]) == 5
    code, _, err = _cli(*query, "-o", str(tmp_path / "items.csv"))
    assert code == 0, err
    rows = list(csv.DictReader((tmp_path / "items.csv").read_text().splitlines()))
    assert len(rows) == 5 and list(rows[0]) == [
        "id",
        "collection",
        "datetime",
        "product_type",
        "download_url",
        "product_name",
        "quicklook_url",
        "quicklook_name",
        "kmz_url",
        "kmz_name",
        "last_modified",
    ]
    first = rows[0]
    assert first["product_name"].endswith(".ZIP") and "/zipper/" in first["download_url"]
    assert first["quicklook_name"].endswith("_ql.png")  # the name its KMZ expects
    assert first["kmz_name"].endswith(".kmz") and first["product_type"] == "S1_STA__1S"
    code, _, err = _cli(*query, "-o", str(tmp_path / "items.parquet"))
    assert code == 0, err
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "items.parquet")
    assert table.num_rows == 5 and table.column("id").to_pylist() == [r["id"] for r in rows]
    code, _, err = _cli(*query, "-o", str(tmp_path / "items.txt"))
    assert code == 2 and "cannot tell the format" in err

    dest = tmp_path / "data"
    code, _, err = _cli(
        "download", "--catalog", sim.catalog_url, "--from", str(tmp_path / "items.geojson"),
        "--dest", str(dest), "--dry-run",
    )  # fmt: skip
    assert code == 0 and "items:        5 of 5 matched" in err  # piped: notes on stderr
    searches = len(sim.requests)
    code, _, err = _cli("download", "--from", str(tmp_path / "items.geojson"), "--dest", str(dest))
    assert code == 0, err
    assert len(files_under(dest)) == 15 and len(sim.requests) > searches
    code, _, err = _cli("download", "--from", str(tmp_path / "items.csv"), "--dest", str(dest))
    assert code == 2 and "is CSV" in err


@pytest.mark.parametrize("server_side", [True, False])
def test_collections_with_and_without_collection_search(tmp_path: Path, server_side: bool) -> None:
    from stacpull.sim import SimCatalog, SimOptions, default_collections

    options = SimOptions(collection_search=server_side)
    with SimServer(SimCatalog(default_collections(4, 50_000)), options=options) as sim:
        base = ("collections", "--catalog", sim.catalog_url)
        code, out, err = _cli(*base, "--count")
        assert code == 0, err
        earthcare = ("EarthCAREL1Validated_MAAP", "EarthCAREL2Validated_MAAP")
        assert all(c in out for c in (L1A, L1C, "FLEXL1Commissi", *earthcare))
        assert "5 collection(s)" in err
        assert "\t2025-09-29T00:00:00Z/2025-09-29T" in out and out.count("\t4\n") == 5
        where = "by the catalogue" if server_side else "here: this catalogue has no collection"
        for flags, expected in (
            (("--platform", "FLEX"), ["FLEXL1Commissi"]),
            (("--q", "biomass"), [L1A, L1C]),
            (("--title", "BIOMASS Level 1c (IOC)"), [L1C]),
            (("--organisation", "ESA MAAP", "--datetime", "2026-01-01/.."), [L1C]),
            (("--bbox", "0,0,10,10", "--datetime", "2025-09-29"), [L1A]),
        ):
            code, out, err = _cli(*base, *flags)
            assert code == 0, err
            assert f"{len(expected)} collection(s); filtered {where}" in err, (flags, err)
            assert all(e in out for e in expected), (flags, out)
        code, out, err = _cli(*base, "--platform", "FLEX", "--json")
        import json

        data = json.loads(out)
        assert [c["id"] for c in data] == ["FLEXL1CommissioningProducts10"]
        assert f"filtered {where}" in err


def test_queryables_show_types_values_and_both_product_type_names(sim: SimServer) -> None:
    code, out, err = _cli("queryables", L1A, "--catalog", sim.catalog_url)
    assert code == 0, err
    assert "product:type" in out and "productType" in out and "S1_SCS__1S" in out
    assert "older name of product:type" in err and "string\tdate-time" in out
    assert "e.g. --filter \"product:type='S1_SCS__1S'\"" in err
    code, out, _ = _cli("queryables", L1A, "--catalog", sim.catalog_url, "--json")
    assert code == 0 and '"enum"' in out
    code, _, err = _cli("queryables", "BiomassLevel1aIOX", "--catalog", sim.catalog_url)
    assert code == 2 and "unknown collection 'BiomassLevel1aIOX'" in err
    assert "did you mean BiomassLevel1aIOC" in err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--collection", "BiomassLevel1aIOX"), "unknown collection 'BiomassLevel1aIOX'"),
        (("--collection", L1A, "--bbox", "0,10,1"), "bbox"),
        (("--collection", L1A, "--datetime", "2025-13-01"), "datetime"),
        (("--collection", L1A, "--filter", "product:type = = 'x'"), "invalid filter"),
    ],
)
def test_bad_input_is_exit_2_with_a_message(
    sim: SimServer, tmp_path: Path, flags: tuple[str, ...], message: str
) -> None:
    for command in ("search", "download"):
        extra = ("--dest", str(tmp_path)) if command == "download" else ()
        code, out, err = _cli(command, "--catalog", sim.catalog_url, *flags, *extra)
        assert code == 2, (command, out, err)
        assert message in err and "Traceback" not in err + out
    code, _, err = _cli("search", "--catalog", "http://127.0.0.1:9/catalogue/", "--collection", L1A)
    assert code == 2 and "cannot open the catalogue" in err


def test_profiles_layer_between_the_file_and_the_environment(tmp_path: Path) -> None:
    from stacpull.config import load_config, resolve_config

    path = tmp_path / "stacpull.toml"
    path.write_text(
        "[download]\nconcurrency = 3\n\n"
        "[profiles.lab]\ncatalog = 'https://lab.example.org/stac/'\nconcurrency = 12\n"
        "assets = ['all']\noffline_token_file = '~/lab-token'\n"
    )
    assert load_config(path, env={}).download.concurrency == 3
    config, origins = resolve_config(path, env={}, profile="lab")
    assert config.search.catalog == "https://lab.example.org/stac/"
    assert config.download.concurrency == 12 and config.download.assets == ("all",)
    assert config.auth.offline_token_file == "~/lab-token"
    assert origins["download.concurrency"] == "profile lab"
    env = {"STACPULL_PROFILE": "lab", "STACPULL_CONCURRENCY": "5"}
    config, origins = resolve_config(path, env=env, flags={"download.assets": ["maap"]})
    assert config.download.concurrency == 5 and origins["download.concurrency"] == (
        "env STACPULL_CONCURRENCY"
    )
    assert config.download.assets == ("maap",) and origins["download.assets"] == "flag"
    preop = load_config(path, env={}, profile="maap-preop")  # built in
    assert preop.search.catalog == "https://catalog.preop.esa-maap.org/catalogue/"
    with pytest.raises(ConfigError, match="unknown profile 'lba' \\(did you mean 'lab'\\?\\)"):
        load_config(path, env={}, profile="lba")


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[download]\nretries = 2\nconcurrency = 'x'\n", "line 3: download.concurrency"),
        ("[search]\npage_size = 5\n\n[download]\nconcurency = 2\n", "line 5: unknown key"),
        ("[profiles.x]\ncolections = ['a']\n", "unknown key [profiles.x] colections"),
        ("[profiles.x]\noffline_token = 'abc'\n", "must not be stored in a config file"),
        ("[download]\nconcurrency = \n", "not valid TOML"),
    ],
)
def test_config_errors_name_the_key_and_the_line(tmp_path: Path, toml: str, message: str) -> None:
    from stacpull.config import load_config

    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert message in str(info.value) and str(path) in str(info.value)


def test_config_show_prints_the_merged_configuration_with_secrets_masked(
    tmp_path: Path,
) -> None:
    import json

    path = tmp_path / "stacpull.toml"
    path.write_text("[download]\nconcurrency = 3\n[auth]\nclient_secret = 'file-secret-123'\n")
    result = CliRunner().invoke(
        main,
        ["config", "show", "--config", str(path), "--profile", "maap-preop"],
        env={"STACPULL_OFFLINE_TOKEN": "offline-secret-456", "STACPULL_TOKEN": ""},
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert 'catalog = "https://catalog.preop.esa-maap.org/catalogue/"' in out
    assert "# profile maap-preop" in out and f"# {path} line 2" in out
    assert 'offline_token = "***"' in out and "# env STACPULL_OFFLINE_TOKEN" in out
    assert "secret-123" not in out and "secret-456" not in out
    result = CliRunner().invoke(
        main, ["config", "show", "--config", str(path), "--json"], env={"STACPULL_TOKEN": ""}
    )
    data = json.loads(result.output)
    assert data["download"]["concurrency"] == 3 and data["auth"]["client_secret"] == "***"
    result = CliRunner().invoke(main, ["config", "show", "--profile", "nope"])
    assert result.exit_code == 2 and "unknown profile 'nope'" in result.stderr


def test_commands_take_a_profile(sim: SimServer, tmp_path: Path) -> None:
    path = tmp_path / "stacpull.toml"
    path.write_text(f"[profiles.sim]\ncatalog = '{sim.catalog_url}'\n")
    code, out, err = _cli("collections", "--config", str(path), "--profile", "sim")
    assert code == 0 and L1A in out, err
    code, out, err = _cli("search", "--config", str(path), "--profile", "sim", "--collection", L1A)
    assert code == 0 and "5 item(s) matched" in err, err


def test_the_python_api_does_discovery_and_planning_too(sim: SimServer, tmp_path: Path) -> None:
    cat = sim.catalog_url
    assert [c["id"] for c in stacpull.collections(catalog=cat, platform="FLEX")] == [
        "FLEXL1CommissioningProducts10"
    ]
    schema = stacpull.queryables(L1A, catalog=cat)
    assert {"product:type", "productType"} <= set(schema["properties"])
    items = stacpull.search_items(
        catalog=cat, collections=[L1A], max_items=3, output=tmp_path / "items.csv"
    )
    assert len(items) == 3 and (tmp_path / "items.csv").read_text().count("\n") == 4
    plan = stacpull.dry_run(catalog=cat, collections=[L1A], dest=str(tmp_path / "d"))
    assert (plan.items, plan.files, plan.to_fetch_files) == (5, 15, 15)


def test_mirror_dry_run_and_search_format_flag(sim: SimServer, tmp_path: Path) -> None:
    pull(sim, tmp_path, collections=[L1A])
    code, _, err = _cli(
        "mirror", "--catalog", sim.catalog_url, "--collection", L1A, "--dest", str(tmp_path),
        "--dry-run",
    )  # fmt: skip
    assert code == 0, err
    assert "on disk:      15 files" in err and "to download:  0 files" in err  # piped
    target = tmp_path / "items.out"
    code, _, err = _cli(
        "search", "--catalog", sim.catalog_url, "--collection", L1A, "-o", str(target),
        "--format", "csv",
    )  # fmt: skip
    assert code == 0 and target.read_text().startswith("id,collection,datetime"), err
