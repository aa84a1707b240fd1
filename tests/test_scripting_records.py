"""Issue 17, records: status, verify, report, auth check, the final summary and the dry
run, as scripts read them: whole values when piped or narrow, ``--json`` everywhere, honest
verdicts and exit codes, and a one-line error for every bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from stacpull.sim import SimServer

from .conftest import L1A, L1C, TOKEN, cli, pull, sim_download

_LONG_KEY = "enclosure_" + "very_long_asset_key_" * 4 + "tiff"  # 94 characters
_NARROW = {"TTY_COMPATIBLE": "1", "COLUMNS": "40"}  # a forced terminal, 40 columns wide
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    return cli(*args, env=env, token=TOKEN)


def _plain(text: str) -> str:
    return _ANSI.sub("", text)


def _saved_items(sim: SimServer, path: Path) -> Path:
    """An ItemCollection of one L1c item whose geotiff asset has a 94-character key."""
    item = sim.catalog.item(L1C, 0)
    item["assets"][_LONG_KEY] = item["assets"].pop("enclosure_i_abs_tiff")
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [item]}))
    return path


def _dry(sim: SimServer, dest: Path, *extra: str, env: dict[str, str] | None = None) -> Any:
    return _cli(
        "download", "--catalog", sim.catalog_url, "--dest", str(dest), "--dry-run", *extra, env=env
    )


def _download(sim: SimServer, dest: Path, *extra: str) -> tuple[int, str, str]:
    return sim_download(sim, dest, *extra)


def _fail_every_file_of_one_item(sim: SimServer) -> None:
    item = str(sim.catalog.item(L1A, 0)["id"])
    for key in sim.catalog.item(L1A, 0)["assets"]:
        sim.catalog.tamper(item, key, "login")


# -- 1. whole values ----------------------------------------------------------------------


def test_a_piped_dry_run_lists_each_asset_key_whole_as_tab_separated_records(
    sim: SimServer, tmp_path: Path
) -> None:
    items = _saved_items(sim, tmp_path / "items.geojson")
    code, out, err = _dry(sim, tmp_path / "d", "--from", str(items), "--assets", "all")
    assert code == 0, err
    records = [line.split("\t") for line in out.splitlines() if "\t" in line]
    keys = [r[0] for r in records]
    assert _LONG_KEY in keys and "…" not in out and "\x1b" not in out
    long_row = records[keys.index(_LONG_KEY)]
    assert long_row == [_LONG_KEY, "1", "0", "1", "262144", "0"]  # files, on disk, to fetch…
    assert not any(r[0] == "asset" for r in records)  # no header


def test_a_narrow_terminal_keeps_asset_keys_whole_and_drops_columns(
    sim: SimServer, tmp_path: Path
) -> None:
    items = _saved_items(sim, tmp_path / "items.geojson")
    code, out, err = _dry(sim, tmp_path / "d", "--from", str(items), "--assets", "all", env=_NARROW)
    assert code == 0, err
    text = _plain(out)
    assert _LONG_KEY in text and "…" not in text
    assert "enclosure_annot_xml" in text  # a short key, in a table row
    row = next(line for line in text.splitlines() if line.startswith("enclosure_annot_xml"))
    assert len(row) <= 40  # columns were dropped, none cut


def test_status_and_verify_never_wrap_a_line_piped_or_narrow(
    sim: SimServer, tmp_path: Path
) -> None:
    dest = tmp_path / ("a-rather-long-directory-name-" * 3) / "dest"
    item = str(sim.catalog.item(L1A, 1)["id"])
    sim.catalog.tamper(item, "quicklook", "login")
    assert _download(sim, dest, "--retries", "0")[0] == 1
    png = next(p for p in (dest / L1A / str(sim.catalog.item(L1A, 0)["id"])).iterdir())
    png.write_bytes(b"rot")
    for env in ({"COLUMNS": "30"}, _NARROW):
        code, out, err = _cli("status", str(dest), env=env)
        assert code == 0, err
        text = _plain(out + err)  # piped, the notes are on stderr; on a terminal, stdout
        assert env is not _NARROW or str(dest) in text  # the path whole on one line
        assert "last run: download, complete — 14 downloaded, 0 skipped, 1 failed" in text
        code, out, err = _cli("verify", str(dest), env=env)
        assert code == 1, err
        text = _plain(out + err)
        assert (
            re.search(r"checked 1[34] file\(s\), \S+ \S+: ", text)
            and str(png.relative_to(dest)) in text
        )
        assert (
            "1 damaged file(s) marked failed; fetch them again with the same download/mirror "
            "command or with --retry-failed" in text
        )
    code, out, _ = _cli("status", str(dest))  # piped: the counts are records
    assert "done\t13\t" in out and "failed\t2\t" in out and "┏" not in out
    code, out, _ = _cli("verify", str(dest))
    assert f"size\t{png.relative_to(dest)}\t" in out


# -- 2. JSON ------------------------------------------------------------------------------


def test_download_json_is_the_final_summary_alone_on_stdout(sim: SimServer, tmp_path: Path) -> None:
    item = str(sim.catalog.item(L1A, 1)["id"])
    sim.catalog.tamper(item, "quicklook", "login")
    code, out, err = _download(sim, tmp_path, "--retries", "0", "--json", "--max-items", "2")
    assert code == 1, err
    data = json.loads(out)
    assert data["command"] == "download" and data["exit_code"] == 1
    assert data["outcome"] == "complete" and data["dest"] == str(tmp_path)
    assert data["totals"]["downloaded"] == 5 and data["totals"]["failed"] == 1
    assert [f["item"] for f in data["failed"]] == [item]
    assert set(data["failed"][0]) == {"path", "item", "collection", "asset", "error_class", "error"}
    assert Path(data["report"]).is_file()
    assert "file(s) failed" in err  # the notes for people went to stderr
    # again: nothing to do, still one JSON document
    code, out, err = _cli(
        "mirror", "--catalog", sim.catalog_url, "--collection", L1A, "--dest", str(tmp_path),
        "--max-items", "1", "--json", "--dashboard", "none",
    )  # fmt: skip
    assert code == 0, err
    data = json.loads(out)
    assert data["command"] == "mirror" and data["totals"]["skipped"] == 3
    assert data["failed"] == [] and data["gone"] == []


def test_dry_run_json_is_the_plan(sim: SimServer, tmp_path: Path) -> None:
    code, out, err = _dry(sim, tmp_path / "d", "--collection", L1C, "--json")
    assert code == 0, err
    plan = json.loads(out)
    assert plan["command"] == "download" and plan["dry_run"] is True
    assert plan["items"] == 5 and plan["files"] == 15 and plan["to_fetch"]["files"] == 15
    assert plan["to_fetch"]["unknown_size_files"] == 5  # L1c products: no file:size
    assert plan["fits"] is None and plan["budget"] is None
    assert {a["key"] for a in plan["assets"]} == {"product", "quicklook_png", "quicklook_kml"}
    assert not (tmp_path / "d").exists()


def test_status_and_verify_json_have_a_fixed_schema(sim: SimServer, tmp_path: Path) -> None:
    pull(sim, tmp_path, max_items=1)
    code, out, _ = _cli("status", str(tmp_path), "--json")
    status = json.loads(out)
    assert set(status["by_status"]) == {"done", "pending", "active", "failed"}
    assert status["by_status"]["failed"] == {"files": 0, "bytes": 0}
    assert status["failed_files"] == []
    code, out, _ = _cli("verify", str(tmp_path), "--json")
    result = json.loads(out)
    assert code == 0 and result["ok"] is True and result["dest"] == str(tmp_path)
    assert set(result) == {
        "dest", "ok", "checked", "bytes", "hashed", "zip_only", "size_only", "problems",
    }  # fmt: skip


def test_report_json_and_auth_check_json(sim: SimServer, tmp_path: Path) -> None:
    _fail_every_file_of_one_item(sim)
    assert _download(sim, tmp_path, "--retries", "0", "--max-items", "1")[0] == 1
    code, out, err = _cli("report", str(tmp_path), "--json")
    assert code == 1, err
    data = json.loads(out)
    assert data["outcome"] == "complete" and data["exit_code"] == 1
    assert data["totals"]["failed"] == 3 and len(data["failed"]) == 3
    assert data["report"].endswith("last-report.json")
    code, out, err = _cli("auth", "check", "--token", "sim-token", "--json")
    assert code == 0, err
    found = json.loads(out)
    assert found == {
        "credentials": "--token/STACPULL_TOKEN",
        "kind": "static",
        "ok": None,
        "status": "unknown",
        "detail": found["detail"],
        "expires_in": None,
        "expires_at": None,
        "token_url": None,
    }
    assert "sim-token" not in out


# -- 3. honest records --------------------------------------------------------------------


def test_report_on_a_run_where_every_file_failed_says_so_and_exits_1(
    sim: SimServer, tmp_path: Path
) -> None:
    _fail_every_file_of_one_item(sim)
    assert _download(sim, tmp_path, "--retries", "0", "--max-items", "1")[0] == 1
    code, out, err = _cli("report", str(tmp_path), env={"TTY_COMPATIBLE": "1"})
    assert code == 1, err
    assert "\x1b[31mcomplete, 3 failed" in out  # in the failure colour
    assert "complete, 3 failed" in _cli("report", str(tmp_path))[1]


def test_verify_keeps_reporting_what_it_marked_failed_until_it_is_fetched(
    sim: SimServer, tmp_path: Path
) -> None:
    pull(sim, tmp_path, max_items=1)
    png = next((tmp_path / L1A / str(sim.catalog.item(L1A, 0)["id"])).glob("*.png"))
    png.write_bytes(b"rot")
    assert _cli("verify", str(tmp_path))[0] == 1
    code, out, _ = _cli("verify", str(tmp_path), "--json")
    assert code == 1  # a second pass: still damaged, still reported
    problems = json.loads(out)["problems"]
    assert [(Path(p["path"]).name, p["kind"], p["earlier"]) for p in problems] == [
        (png.name, "size", True)
    ]
    code, out, err = _cli("verify", str(tmp_path))
    assert code == 1 and "no rot found" not in err and png.name in out
    pull(sim, tmp_path, max_items=1)  # fetched again
    code, out, err = _cli("verify", str(tmp_path))
    assert code == 0 and "no rot found" in err  # piped: the verdict is on stderr


def test_a_dry_run_says_unknown_when_sizes_are_unknown_and_exits_2_over_budget(
    sim: SimServer, tmp_path: Path
) -> None:
    # L1a's 2025 assets carry no file:size and nothing was fetched before: nobody knows
    code, out, err = _dry(sim, tmp_path / "a", "--collection", L1A, "--max-bytes", "1GB")
    assert code == 0, err
    # piped, the dry run's notes are on stderr; its stdout holds the asset records alone
    assert "within" not in err and "budget:       1.0 GB: unknown" in err
    code, out, err = _dry(sim, tmp_path / "a", "--collection", L1C, "--max-bytes", "10kB")
    assert code == 2 and "exceeded" in err
    assert err.strip().splitlines()[-1].startswith("stacpull: ")  # the reason: one line, last
    assert err.count("stacpull: ") == 1 and "more than the budget of 10.0 kB" in err
    code, out, err = _dry(sim, tmp_path / "a", "--collection", L1C, "--max-bytes", "10kB", "--yes")
    assert code == 0, err
    code, out, err = _dry(
        sim, tmp_path / "a", "--collection", L1C, "-q", "--max-bytes", "1", "--json"
    )
    assert code == 2 and json.loads(out)["budget"]["verdict"] == "exceeded"


# -- 4. no traceback ----------------------------------------------------------------------


def test_report_refuses_a_plot_format_it_cannot_draw_before_any_work(
    sim: SimServer, tmp_path: Path
) -> None:
    pull(sim, tmp_path, max_items=1)
    code, out, err = _cli("report", str(tmp_path), "--plot", str(tmp_path / "x.txt"))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "--plot" in err and ".png" in err
    assert not (tmp_path / "x.txt").exists()
    code, _, err = _cli("report", str(tmp_path), "--plot", str(tmp_path / "run.svg"))
    assert code == 0, err
    assert (tmp_path / "run.svg").read_text().lstrip().startswith("<?xml")


@pytest.mark.parametrize("command", ["report", "status", "verify"])
def test_a_dest_that_is_not_a_stacpull_dest_or_has_broken_state_is_one_line(
    command: str, tmp_path: Path
) -> None:
    def one_line(*args: str) -> str:
        code, out, err = _cli(*args)
        assert code == 2 and out == "" and err.count("\n") == 1, err
        assert "Traceback" not in err
        return err

    assert "not a directory" in one_line(command, str(tmp_path / "nowhere"))
    (tmp_path / "file").write_text("x")
    code, out, err = _cli(command, str(tmp_path / "file"))  # click's own usage error
    assert code == 2 and out == "" and "is a file" in err and "Traceback" not in err
    one_line(command, str(tmp_path))  # no .stacpull at all
    state = tmp_path / ".stacpull"
    state.mkdir()
    (state / "journal.sqlite").write_bytes(b"not a database" * 100)
    (state / "last-report.json").write_text('{"totals": "none", "seconds": "long"}')
    one_line(command, str(tmp_path))
    (state / "last-report.json").write_text("[1, 2]")
    one_line(command, str(tmp_path))
    code, out, err = _cli(command, str(tmp_path), "--json")
    assert code == 2 and out == "" and err.count("\n") == 1


def test_download_json_is_valid_when_the_run_is_refused_or_nothing_matches(
    sim: SimServer, tmp_path: Path
) -> None:
    code, out, err = _cli(
        "download", "--catalog", sim.catalog_url, "--collection", L1C, "--dest", str(tmp_path / "a"),
        "--max-bytes", "1", "--json", "--dashboard", "none",
    )  # fmt: skip
    assert code == 2 and "budget" in err
    data = json.loads(out)
    assert data["outcome"] == "error" and data["exit_code"] == 2 and "budget" in data["error"]
    assert data["totals"]["downloaded"] == 0
    code, out, err = _cli(
        "mirror", "--catalog", sim.catalog_url, "--collection", L1A, "--dest", str(tmp_path / "b"),
        "--filter", "product:type='NOTHING'", "--json", "--dry-run",
    )  # fmt: skip
    assert code == 0, err
    plan = json.loads(out)
    assert plan["command"] == "mirror" and plan["items"] == 0 and plan["assets"] == []
