"""Issue 17, attacked from the command line as a script, a cron job, a pipeline and a
hostile input would use it: one stdout rule for every command (records or JSON only when
piped), ``--json`` that parses whole in every case, values never cut, and a one-line
reason (never a traceback) for every bad value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiohttp import web

from stacpull.sim import SimServer

from .conftest import L1A, L1C, TOKEN, cli, sim_download
from .hostile import ThreadedApp, feature, landing


def _cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    return cli(*args, env=env, token=TOKEN)


def _one_line_refusal(code: int, out: str, err: str, code_wanted: int = 2) -> None:
    """Exit 2 (or ``code_wanted``), nothing on stdout, one ``stacpull:`` line on stderr."""
    assert "Traceback" not in out + err
    assert code == code_wanted, (code, err)
    assert out == "" and err.count("\n") == 1 and err.startswith("stacpull: "), err


# -- bad values: one line, exit 2 -------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--max-bytes", "1e999"),  # float('inf') bytes: int() raised OverflowError
        ("--bwlimit", "1e999"),
        ("--page-size", "99999999999999999999999"),  # pystac-client raised a bare Exception
        ("--page-size", "10001"),
        ("--stall-timeout", "nan"),  # NaN passed `<= 0` and was taken
        ("--stall-timeout", "inf"),
        ("--progress-interval", "nan"),  # NaN printed a progress line at every event
        ("--concurrency", "99999999999999999999"),  # spawned 2e20 workers: a hang
        ("--per-host", "99999999999999999999"),
    ],
)
def test_a_bad_number_is_one_line_and_exit_2(
    flag: str, value: str, sim: SimServer, tmp_path: Path
) -> None:
    dest = tmp_path / "d"
    args = ("--catalog", sim.catalog_url, "--collection", L1A, "--dest", str(dest), flag, value)
    _one_line_refusal(*_cli("download", *args, "--dry-run"))
    assert not dest.exists()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("STACPULL_DOWNLOAD_MAX_BYTES", "1e999"),
        ("STACPULL_DOWNLOAD_BWLIMIT", "1e999"),
        ("STACPULL_SEARCH_PAGE_SIZE", "99999999999"),
        ("STACPULL_DOWNLOAD_STALL_TIMEOUT", "nan"),
        ("STACPULL_DOWNLOAD_CONCURRENCY", "99999999999999999999"),
    ],
)
def test_a_bad_environment_variable_is_one_line_for_every_command(
    key: str, value: str, sim: SimServer, tmp_path: Path
) -> None:
    env = {key: value}
    _one_line_refusal(*_cli("config", "show", env=env))
    _one_line_refusal(*_cli("collections", "--catalog", sim.catalog_url, env=env))
    dest = str(tmp_path / "d")
    _one_line_refusal(*sim_download(sim, dest, "--dry-run", dashboard=None, env=env))


# -- one stdout rule: piped, stdout holds records only; notes go to stderr ----------------


def _records_only(out: str) -> None:
    """Every stdout line is a tab-separated record: no note, no table, no markup."""
    notes = [line for line in out.splitlines() if "\t" not in line]
    assert notes == [], notes
    assert "\x1b" not in out and "┏" not in out and "━" not in out


def test_piped_every_command_keeps_notes_and_tallies_off_stdout(
    sim: SimServer, tmp_path: Path
) -> None:
    dest = tmp_path / "d"
    query = ("--catalog", sim.catalog_url, "--collection", L1A, "--max-items", "2")
    run = (*query, "--dest", str(dest), "--dashboard", "none")
    for args, wanted in (
        (("collections", "--catalog", sim.catalog_url), "collection(s)"),
        (("search", *query), "item(s) matched"),
        (("queryables", L1A, "--catalog", sim.catalog_url), "e.g. --filter"),
        (("download", *run, "--dry-run"), "dry run: nothing was downloaded"),
        (("mirror", *run, "--dry-run"), "to download:"),
        (("download", *run), ""),
        (("mirror", *run, "--json"), ""),
        (("status", str(dest)), "last run: mirror"),
        (("verify", str(dest)), "no rot found"),
    ):
        code, out, err = _cli(*args)
        assert code == 0, (args, err)
        if args[0] in ("download", "mirror") and "--dry-run" not in args:
            continue  # a run's final summary is its result, on stdout (or as --json)
        _records_only(out)
        assert wanted in err, (args, err)
    png = next((dest / L1A).rglob("*.png"))
    png.write_bytes(b"rot")
    code, out, err = _cli("verify", str(dest))
    assert code == 1
    _records_only(out)
    assert out.startswith("size\t") and "damaged file(s)" in err and "checked" in err


# -- hostile values: whole, one line, and never a terminal escape ------------------------

_EVIL_ID = "EVIL\x1b]0;pwned\x07\x1b[2J\x1b[31mred"


@pytest.mark.parametrize("env", [{}, {"TTY_COMPATIBLE": "1", "COLUMNS": "30"}])
def test_a_catalogues_control_characters_never_reach_the_terminal(
    env: dict[str, str], sim: SimServer
) -> None:
    """An item id (or product type) holding ESC sequences would clear the screen and retitle
    the terminal of whoever lists it, on a terminal or through ``| less -R``/``| cat``."""
    import copy

    item = copy.deepcopy(sim.catalog.item(L1C, 0))
    item["id"] = _EVIL_ID
    item["properties"]["product:type"] = "PT\x1b[5mblink\nnext"
    sim.catalog.add_item(L1C, item)
    code, out, err = _cli(
        "search", "--catalog", sim.catalog_url, "--collection", L1C, "--show", "100", env=env
    )
    assert code == 0, err
    for sequence in ("\x1b]", "\x1b[2J", "\x1b[31m", "\x1b[5m", "\x07"):
        assert sequence not in out + err
    assert "EVIL\\x1b]0;pwned\\x07\\x1b[2J\\x1b[31mred" in out  # shown, whole, as escapes
    if not env:
        line = next(line for line in out.splitlines() if line.startswith("EVIL"))
        assert line.split("\t")[3] == "PT\\x1b[5mblink next"  # one record, one line


class _EvilErrors(ThreadedApp):
    """A catalogue whose every answer but the landing page is a 400 with a body of several
    lines holding terminal escapes."""

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        base = f"http://127.0.0.1:{self.port}/"
        if request.path == "/":
            return web.json_response(landing(base))
        body = "bad\x1b[2J\x1b]0;pwned\x07 request\nline two\r\nline three"
        return web.Response(status=400, text=body, content_type="text/plain")


def test_a_servers_error_body_is_quoted_on_one_line_without_its_escapes(
    tmp_path: Path,
) -> None:
    with _EvilErrors() as app:
        url = f"http://127.0.0.1:{app.port}/"
        dest = ("--dest", str(tmp_path / "d"), "--dashboard", "none")
        for args in (
            ("search", "--catalog", url, "--collection", "C1"),
            ("download", "--catalog", url, "--collection", "C1", *dest),
            ("download", "--catalog", url, "--collection", "C1", *dest, "--dry-run"),
            ("collections", "--catalog", url),
            ("queryables", "C1", "--catalog", url),
        ):
            code, out, err = _cli(*args)
            _one_line_refusal(code, out, err)
            assert "\x1b" not in err and "\x07" not in err and "line three" in err, err


class _Uncounted(ThreadedApp):
    """A catalogue whose search gives no numberMatched: two items on one page."""

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        base = f"http://127.0.0.1:{self.port}/"
        if request.path == "/":
            return web.json_response(landing(base))
        page = {"type": "FeatureCollection", "features": [feature(base, "a"), feature(base, "b")]}
        return web.json_response(page)


def test_a_catalogue_without_counts_leaves_stderr_to_stacpulls_own_lines() -> None:
    """pystac-client warned ``UserWarning: numberMatched or context.matched not in
    response`` with its source path and line: two lines of Python on a script's stderr."""
    import warnings

    with _Uncounted() as app, warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")  # every warning recorded (outside pytest: printed)
        url = f"http://127.0.0.1:{app.port}/"
        code, out, err = _cli("search", "--catalog", url, "--collection", "C1", "--json")
        assert code == 0, err
        assert [f["id"] for f in json.loads(out)["features"]] == ["a", "b"]
        assert [str(w.message) for w in shown] == [] and "Warning" not in err, err


def test_debug_after_the_subcommand_works_for_every_command(sim: SimServer, tmp_path: Path) -> None:
    """``stacpull search ... --debug`` said "No such option: --debug": only download and
    mirror took it after the subcommand."""
    code, out, err = _cli("collections", "--catalog", sim.catalog_url, "--debug", "--json")
    assert code == 0, err
    assert out == _cli("--debug", "collections", "--catalog", sim.catalog_url, "--json")[1]
    for args in (
        ("search", "--catalog", sim.catalog_url, "--collection", L1A, "--show", "1"),
        ("queryables", L1A, "--catalog", sim.catalog_url),
        ("auth", "check", "--catalog", sim.catalog_url),
        ("status", str(tmp_path)),
        ("verify", str(tmp_path)),
        ("report", str(tmp_path)),
    ):
        code, _, err = _cli(*args, "--debug")
        assert "No such option" not in err and code in (0, 2), (args, err)


@pytest.mark.parametrize("args", [("--port", "99999"), ("--port", "-1"), ("--items", "-1")])
def test_sim_serve_refuses_a_port_or_item_count_that_cannot_be(args: tuple[str, str]) -> None:
    """``sim serve --port 99999`` was an OverflowError traceback from bind(); ``--items -1``
    served a catalogue."""
    code, out, err = _cli("sim", "serve", *args)
    assert code == 2 and out == "" and "Traceback" not in err
    assert f"Invalid value for '{args[0]}'" in err


def test_through_a_real_pipe_a_dry_runs_stdout_is_awk_ready(sim: SimServer, tmp_path: Path) -> None:
    """``stacpull download --dry-run ... | awk -F'\\t' '{print $1}'`` gave the asset keys
    mixed with "dry run: nothing was downloaded; DEST ...", "items: ..." and the verdicts."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "STACPULL_TOKEN": TOKEN, "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    env.pop("TTY_COMPATIBLE", None)
    env.pop("FORCE_COLOR", None)
    proc = subprocess.run(
        [sys.executable, "-m", "stacpull", "download", "--catalog", sim.catalog_url,
         "--collection", L1A, "--max-items", "2", "--dest", str(tmp_path / "d"), "--dry-run"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    _records_only(proc.stdout)
    assert [line.split("\t")[0] for line in proc.stdout.splitlines()] == [
        "product",
        "quicklook",
        "quicklook_1",
    ]
    assert "dry run: nothing was downloaded" in proc.stderr and "free at DEST" in proc.stderr
