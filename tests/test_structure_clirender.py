"""The command line's printing, discovery, state and sim commands, by structure.

* one table fitter in the package, in ``cli/render.py``, and every CLI table drawn there;
* the render functions are usable alone: data and a :class:`~rich.console.Console` in,
  lines out, with no command, server or journal behind them;
* ``cli/discovery.py`` never pages search results itself (one search loop);
* ``sim serve`` derives its fault options from :class:`~stacpull.sim.Faults`' fields, so its
  ``--help`` shows each default as the dataclass declares it;
* help texts do not restate a default :mod:`stacpull.config` names;
* the size targets (function length, parameter count, module length) in these modules.
"""

from __future__ import annotations

import ast
import dataclasses
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from rich.console import Console

import stacpull
from stacpull.audit import Problem, StatusReport, VerifyReport
from stacpull.dryrun import AssetPlan, PlanSummary
from stacpull.sim import Faults, OIDCOptions, SimOptions, SimServer

from .conftest import L1A, TOKEN

SRC = Path(stacpull.__file__).parent
#: The modules this part of the CLI owns.
OWNED = ("render.py", "discovery.py", "state.py", "setup.py", "sim.py")


def _owned() -> list[Path]:
    paths = [SRC / "cli" / name for name in OWNED]
    missing = [str(p) for p in paths if not p.is_file()]
    assert not missing, f"missing modules: {missing}"
    return paths


#: Every module of the package, parsed once on import (CPython 3.11's parser can fail a
#: later ``ast.parse`` with "recursion depth mismatch" when a test left the stack deep).
_TREES = {path: ast.parse(path.read_text(), filename=str(path)) for path in SRC.rglob("*.py")}


def _tree(path: Path) -> ast.Module:
    return _TREES[path]


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def _terminal(width: int = 100) -> Console:
    """A terminal of ``width`` columns whose output is kept."""
    return Console(
        file=io.StringIO(),
        force_terminal=True,
        color_system=None,
        width=width,
        record=True,
        soft_wrap=True,
    )


def _piped() -> tuple[Console, io.StringIO]:
    """A console writing to a pipe (not a terminal), and what it wrote."""
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=False, width=100), buffer


# -- one table fitter -------------------------------------------------------------------


def test_exactly_one_table_fitter_in_the_package() -> None:
    """Two fitters (``cli._whole_table`` for status and the plan, ``listing.fit_table`` for
    the listings) fitted tables to the terminal by two sets of rules: one remains."""
    fitters = []
    for path in sorted(SRC.rglob("*.py")):
        for fn in _functions(_tree(path)):
            if "table" in fn.name and ("fit" in fn.name or "whole" in fn.name):
                fitters.append(f"{path.relative_to(SRC)}:{fn.name}")
    assert fitters == ["cli/render.py:fit_table"]


def test_in_the_cli_only_render_draws_tables() -> None:
    """rich's Table and Text are imported, within ``stacpull.cli``, by the render module
    alone, and the commands take from it only its render functions (``print_*``, the
    plan's verdicts, :func:`fail`), never its columns, fitter or records: every table,
    listing, plan, status and report goes through it."""
    drawing, borrowing = set(), set()
    allowed = {"fail", "budget_verdict", "plan_fits"}
    for path in sorted((SRC / "cli").glob("*.py")):
        for node in ast.walk(_tree(path)):
            if not isinstance(node, ast.ImportFrom) or node.module is None:
                continue
            if node.module in ("rich.table", "rich.text") or "listing" in node.module:
                drawing.add(path.name)
            if node.module == "render" and node.level == 1:
                names = {a.name for a in node.names}
                borrowing |= {f"{path.name}:{n}" for n in names - allowed if "print_" not in n}
    assert drawing == {"render.py", "render_shards.py"}  # status --shards (issue 21)
    assert not borrowing
    assert not (SRC / "listing.py").exists()


# -- render functions usable alone --------------------------------------------------------


def test_the_status_table_renders_alone() -> None:
    from stacpull.cli.render import print_status

    report = StatusReport(
        dest="/data",
        by_status={"done": {"files": 13, "bytes": 2_000_000}, "failed": {"files": 2, "bytes": 0}},
        failures={"HTTPError": [("L1A/a/b.zip", "HTTP 403")]},
        failure_counts={"HTTPError": 2},
        refused=[("item-1", "bad/key", "unsafe name")],
        last_run={"kind": "download", "outcome": "complete", "summary": {"downloaded": 13}},
        high_water_mark=None,
        partial_bytes=0,
    )
    screen = _terminal()
    print_status(screen, report, "/data")
    text = screen.export_text()
    assert "stacpull status · /data" in text and "bytes on disk" in text
    assert "done" in text and "13" in text and "2.0 MB" in text
    assert "HTTPError: 2" in text and "L1A/a/b.zip: HTTP 403" in text
    assert "refused item-1/bad/key: unsafe name" in text
    assert "last run: download, complete — 13 downloaded, 0 skipped, 0 failed" in text
    pipe, records = _piped()
    print_status(pipe, report, "/data", note=_terminal())
    assert records.getvalue().splitlines()[:3] == [
        "done\t13\t2000000",
        "failed\t2\t0",
        "refused\t1\t0",
    ]


def test_the_plan_renders_alone_and_drops_columns_on_a_narrow_terminal() -> None:
    from stacpull.cli.render import print_plan

    summary = PlanSummary(
        dest="/data",
        items=3,
        matched=3,
        free_bytes=10**12,
        assets={
            "product": AssetPlan("product", files=3, on_disk=1, known_bytes=3_000_000),
            "quicklook": AssetPlan("quicklook", files=3, unknown=3, estimated_bytes=90_000),
        },
    )
    wide = _terminal(120)
    print_plan(wide, summary, 0)
    text = wide.export_text()
    assert "dry run: nothing was downloaded; DEST /data" in text
    assert "no size (est.)" in text and "on disk" in text and "3 (~90.0 kB)" in text
    assert "free at DEST: " in text and "fits" in text and "budget" not in text
    narrow = _terminal(40)
    print_plan(narrow, summary, 1_000, yes=False)
    text = narrow.export_text()
    assert "no size (est.)" not in text and "to fetch" in text and "quicklook" in text
    assert "budget:" in text and "exceeded: a run needs --yes" in text
    pipe, records = _piped()
    print_plan(pipe, summary, 0, note=_terminal())
    assert records.getvalue().splitlines() == [
        "product\t3\t1\t2\t3000000\t0",
        "quicklook\t3\t0\t3\t0\t3",
    ]


def test_verify_and_report_render_alone() -> None:
    from stacpull.cli.render import print_report, print_verify

    found = VerifyReport(dest="/d", checked=4, bytes=4096, hashed=3, zip_only=1)
    found.problems.append(Problem("L1A/x/a.zip", "checksum", "sha256 differs", earlier=True))
    screen = _terminal()
    print_verify(screen, found)
    text = screen.export_text()
    assert "checked 4 file(s), 4.1 kB: 3 hashed, 1 by zip CRCs only, 0 by size only" in text
    assert "checksum L1A/x/a.zip: sha256 differs (found by an earlier verify" in text
    assert "1 damaged file(s) marked failed" in text
    pipe, records = _piped()
    print_verify(pipe, found, note=_terminal())
    assert records.getvalue().startswith("checksum\tL1A/x/a.zip\tsha256 differs (found by")

    view: dict[str, Any] = {
        "started": "2026-01-01T00:00:00Z",
        "finished": "2026-01-01T00:01:00Z",
        "seconds": 60.0,
        "outcome": "complete",
        "fatal": None,
        "query": {"collections": ["L1A"], "ids": None},
        "totals": {"failed": 3, "refused": 0},
        "errors": [{"class": "HTTPError", "count": 3, "last": "HTTP 500"}],
        "failed": [{"item": f"i{n}", "asset": "product", "error": "HTTP 500"} for n in range(3)],
        "report": "/d/.stacpull/last-report.json",
    }
    screen = _terminal()
    print_report(screen, view, summary="(the totals table)", failures=1, dest="/d")
    text = screen.export_text()
    assert "run 2026-01-01T00:00:00Z → 2026-01-01T00:01:00Z (60 s): complete, 3 failed" in text
    assert "query: collections=['L1A']" in text and "(the totals table)" in text
    assert "HTTPError ×3: HTTP 500" in text and "failed i0/product: HTTP 500" in text
    assert "failed i1/" not in text and "… and 2 more failures (stacpull status /d)" in text


def test_the_listings_render_alone() -> None:
    from stacpull.cli.render import print_collections, print_items, print_queryables

    items = [
        {
            "id": "BIO_1",
            "collection": "L1A",
            "properties": {"datetime": "2025-09-29T00:00:00.000Z", "product:type": "S1"},
            "assets": {"product": {"file:size": 4_000_000}, "quicklook": {}},
        }
    ]
    screen = _terminal()
    print_items(screen, items)
    text = screen.export_text()
    assert "BIO_1" in text and "2025-09-29T00:00:00Z" in text and "product 4.0 MB" in text
    pipe, records = _piped()
    print_items(pipe, items)
    assert records.getvalue() == "BIO_1\tL1A\t2025-09-29T00:00:00.000Z\tS1\tproduct,quicklook\n"

    found = [
        {
            "id": "L1A",
            "title": "Level 1a",
            "extent": {"temporal": {"interval": [["2025-01-01T00:00:00Z", None]]}},
        }
    ]
    screen = _terminal()
    print_collections(screen, found, {"L1A": 7}, summary="1 collection(s)")
    text = screen.export_text()
    assert "L1A" in text and "Level 1a" in text and "2025-01-01/.." in text and "7" in text
    assert text.rstrip().endswith("1 collection(s)")
    pipe, records = _piped()
    print_collections(pipe, found, {})
    assert records.getvalue() == "L1A\tLevel 1a\t2025-01-01T00:00:00Z/..\t\n"

    listed: list[dict[str, Any]] = [
        {
            "name": "product:type",
            "type": "string",
            "format": None,
            "title": "Product type",
            "enum": ["S1", "S2"],
        },
        {"name": "productType", "type": "string", "format": None, "title": None, "enum": None},
    ]
    screen = _terminal()
    print_queryables(screen, listed, note=screen)
    text = screen.export_text()
    assert "product:type" in text and "S1, S2" in text and "Product type" in text
    assert "productType is the older name of product:type" in text
    assert "e.g. --filter \"product:type='S1'\"" in text


# -- one search loop ------------------------------------------------------------------------


def test_the_discovery_commands_do_not_page_search_results() -> None:
    """The search loop (pages, the first N items, -o written as pages arrive) is written
    once, outside the CLI: ``cli/discovery.py`` neither iterates pages nor imports the
    pager."""
    tree = _tree(SRC / "cli" / "discovery.py")
    pagers = [
        n.lineno
        for n in ast.walk(tree)
        if isinstance(n, ast.AsyncFor)
        or (isinstance(n, ast.ImportFrom) and any(a.name == "search_pages" for a in n.names))
        or (isinstance(n, ast.Name) and n.id == "search_pages")
    ]
    assert not pagers, f"cli/discovery.py pages search results at lines {pagers}"


# -- sim serve: Faults' own defaults --------------------------------------------------------


def _serve() -> click.Command:
    from stacpull.cli import main

    group = main.commands["sim"]
    assert isinstance(group, click.Group)
    return group.commands["serve"]


def _squash(text: str) -> str:
    return " ".join(text.split())


def test_sim_serve_help_shows_every_fault_default_as_faults_declares_it() -> None:
    serve = _serve()
    help_text = _squash(CliRunner().invoke(serve, ["--help"], terminal_width=100).output)
    ctx = click.Context(serve, info_name="serve")
    options = {p.name: p for p in serve.get_params(ctx) if isinstance(p, click.Option)}
    # burst_statuses has no flag (a tuple of statuses is for the tests and benchmarks).
    exposed = [f for f in dataclasses.fields(Faults) if f.name != "burst_statuses"]
    for f in exposed:
        option = options.get(f.name)
        assert option is not None, f"no option for Faults.{f.name}"
        assert option.default == f.default, f.name
        record = option.get_help_record(ctx)
        assert record is not None
        shown = f.default
        if option.is_bool_flag and option.secondary_opts:  # --x/--no-x: click names the one on
            shown = (option.opts if f.default else option.secondary_opts)[0].lstrip("-")
        assert f"[default: {shown}]" in _squash(record[1]), (f.name, record)
        assert _squash(record[1]) in help_text
    assert "burst_statuses" not in options


def test_sim_serve_takes_the_server_and_identity_defaults_from_their_dataclasses() -> None:
    serve = _serve()
    ctx = click.Context(serve, info_name="serve")
    options = {p.name: p for p in serve.get_params(ctx) if isinstance(p, click.Option)}
    assert options["latency"].default == SimOptions().latency
    assert options["tokens"].default == tuple(sorted(SimOptions().tokens))
    assert options["offline_tokens"].default == tuple(sorted(OIDCOptions().offline_tokens))
    assert options["token_lifetime"].default == OIDCOptions().lifetime


def test_sim_serve_source_restates_no_fault_default() -> None:
    """No ``default=`` literal in ``cli/sim.py`` equal to a Faults field's declared default
    next to that field's flag: the options are built from the fields themselves."""
    text = (SRC / "cli" / "sim.py").read_text()
    for f in dataclasses.fields(Faults):
        assert f'"--{f.name.replace("_", "-")}"' not in text, f.name


# -- help texts and config's defaults -------------------------------------------------------


def _config_defaults() -> set[object]:
    from stacpull import config

    return {
        value
        for name, value in vars(config).items()
        if name.startswith("DEFAULT_")
        and isinstance(value, int | float | str)
        and not isinstance(value, bool)
    }


def test_help_texts_restate_no_default_that_config_names() -> None:
    """A click ``default=`` literal (or a ``[N]`` in a help text) equal to a DEFAULT_* of
    config.py is that constant restated: it goes stale when config changes."""
    named = _config_defaults()
    restated = []
    for path in _owned():
        for node in ast.walk(_tree(path)):
            if not isinstance(node, ast.keyword) or not isinstance(node.value, ast.Constant):
                continue
            value = node.value.value
            if node.arg == "default" and not isinstance(value, bool) and value in named:
                restated.append(f"{path.name}:{node.value.lineno} default={value!r}")
            if node.arg == "help" and isinstance(value, str):
                for shown in named:
                    if f"[{shown}]" in value:
                        restated.append(f"{path.name}:{node.value.lineno} help [{shown}]")
    assert not restated


def test_demo_help_shows_configs_concurrency() -> None:
    from stacpull.cli import main
    from stacpull.config import shown_setting
    from stacpull.defaults import DEFAULT_CONCURRENCY

    result = CliRunner().invoke(main, ["demo", "--help"], terminal_width=100)
    default = shown_setting("download.concurrency", DEFAULT_CONCURRENCY)  # "auto"
    assert f"[default: {default}]" in _squash(result.output)


# -- size targets -------------------------------------------------------------------------


def test_the_owned_modules_meet_the_size_targets() -> None:
    long, wide, big = [], [], []
    for path in _owned():
        text = path.read_text()
        if len(text.splitlines()) > 600:
            big.append(path.name)
        for fn in _functions(_tree(path)):
            assert fn.end_lineno is not None
            if fn.end_lineno - fn.lineno + 1 > 60:
                long.append(f"{path.name}:{fn.name}")
            a = fn.args
            names = [x.arg for x in [*a.posonlyargs, *a.args, *a.kwonlyargs]]
            count = len([n for n in names if n not in ("self", "cls")])
            count += (a.vararg is not None) + (a.kwarg is not None)
            if count > 6:
                wide.append(f"{path.name}:{fn.name} ({count})")
    assert (big, long, wide) == ([], [], [])


# -- search -o - to a closed pipe ---------------------------------------------------------


def test_search_to_a_closed_stdout_does_not_say_it_wrote_the_items(sim: SimServer) -> None:
    """``stacpull search -o - | head -0``: the items met a closed pipe; stderr must not
    claim they were written."""
    env = {**os.environ, "STACPULL_TOKEN": TOKEN, "STACPULL_NO_USER_CONFIG": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stacpull",
            "search",
            "--catalog",
            sim.catalog_url,
            "--collection",
            L1A,
            "-o",
            "-",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader went away before the first byte
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(60) == 0, err
    assert "item(s) matched" in err and "Traceback" not in err
    assert "wrote" not in err, err


@pytest.mark.parametrize("flag", ["-o", "--json"])
def test_search_to_an_open_stdout_still_says_it_wrote_them(flag: str, sim: SimServer) -> None:
    from .conftest import cli

    args = [flag, "-"] if flag == "-o" else [flag]
    code, out, err = cli("search", "--catalog", sim.catalog_url, "--collection", L1A, *args)
    assert code == 0, err
    assert '"FeatureCollection"' in out and "wrote 5 item(s) to - (geojson)" in err
