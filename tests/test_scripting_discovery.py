"""Issue 17, discovery: ``collections``, ``search`` and ``queryables`` print whole values
for programs (TSV records when stdout is not a terminal, ``--json`` with one stable schema
each) and for people (a table fitted to any terminal width, nothing cut), and ``--help``
shows every command's summary uncut."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from stacpull.cli import main
from stacpull.cli.render import Column, fit_table, tsv_line
from stacpull.sim import SimCatalog, SimServer, default_collections

from .conftest import FLEX, L1A, L1C, TOKEN

_EARTHCARE = ("EarthCAREL1Validated_MAAP", "EarthCAREL2Validated_MAAP")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
COLLECTION_KEYS = {"id", "title", "description", "license", "keywords", "extent"}
QUERYABLE_KEYS = {
    *("collection", "name", "type", "format", "title", "description", "enum"),
    *("renamed_from", "renamed_to"),
}


@pytest.fixture(scope="module")
def catalog() -> Iterator[str]:
    """One read-only simulated catalogue for the module: 4 items per collection."""
    with SimServer(SimCatalog(default_collections(count=4, product_size=10_000))) as server:
        yield server.catalog_url


def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """The command line in-process, stdout not a terminal unless ``env`` forces one."""
    base = {
        "STACPULL_TOKEN": TOKEN,
        "STACPULL_OFFLINE_TOKEN": "",
        "STACPULL_TOKEN_FILE": "",
        "FORCE_COLOR": "",
        "TTY_COMPATIBLE": "",
    }
    result = CliRunner().invoke(main, list(args), env={**base, **(env or {})})
    return result.exit_code, result.stdout, result.stderr


def _terminal(width: int) -> dict[str, str]:
    """The environment of a (forced) terminal ``width`` columns wide."""
    return {"FORCE_COLOR": "1", "NO_COLOR": "1", "COLUMNS": str(width)}


def _records(out: str) -> list[list[str]]:
    return [line.split("\t") for line in out.splitlines()]


def _items(catalog: str, *collections: str) -> list[dict[str, object]]:
    code, out, err = _run(
        "search", "--catalog", catalog, "--collection", ",".join(collections), "--json"
    )
    assert code == 0, err
    features: list[dict[str, object]] = json.loads(out)["features"]
    return features


# --- point 1: whole values when stdout is not a terminal ---------------------------------


def test_piped_collections_are_whole_tab_separated_records(catalog: str) -> None:
    code, out, err = _run("collections", "--catalog", catalog, "--count")
    assert code == 0, err
    records = _records(out)
    assert [r[0] for r in records] == [L1A, L1C, FLEX, *_EARTHCARE]  # no header, ids whole
    assert all(len(r) == 4 for r in records)  # id, title, temporal extent, items
    flex = next(r for r in records if r[0] == FLEX)
    assert flex[1] == "FLEX L1 Commissioning Products" and flex[3] == "4"
    start, end = flex[2].split("/")
    assert start.startswith("2025-03-07T") and end.startswith("2025-03-07T")  # whole instants
    assert "\x1b" not in out and "…" not in out
    assert "5 collection(s)" in err and "collection(s)" not in out  # the tally is for people
    code, out, _ = _run("collections", "--catalog", catalog)
    assert [r[3] for r in _records(out)] == [""] * 5  # without --count: the field is empty


def test_piped_search_lists_every_item_id_whole(catalog: str) -> None:
    ids = [str(i["id"]) for i in _items(catalog, L1A, FLEX)]
    code, out, err = _run(
        "search", "--catalog", catalog, "--collection", f"{L1A},{FLEX}", "--show", "100"
    )
    assert code == 0, err
    records = _records(out)
    assert [r[0] for r in records] == ids and all(len(r) == 5 for r in records)
    first = records[0]  # id, collection, datetime, product type, asset keys
    assert first[1] == L1A and first[2] == "2025-09-29T00:00:00.000Z"
    assert first[3] == "S1_SCS__1S" and first[4] == "product,quicklook,quicklook_1,thumbnail"
    assert "8 item(s) matched" in err and "matched" not in out and "\x1b" not in out
    code, out, err = _run("search", "--catalog", catalog, "--collection", L1A, "--show", "1")
    assert len(_records(out)) == 1 and "(the first 1 shown" in err


def test_piped_queryables_keep_every_allowed_value(catalog: str) -> None:
    code, out, err = _run("queryables", L1A, "--catalog", catalog)
    assert code == 0, err
    records = {r[0]: r for r in _records(out)}  # name, type, format, allowed values, title
    assert all(len(r) == 5 for r in records.values())
    assert records["product:type"][1:4] == ["string", "", "S1_SCS__1S,S2_SCS__1S,S3_SCS__1S"]
    assert records["datetime"][1:3] == ["string", "date-time"]
    assert "older name of product:type" in err and "--filter" in err and "older" not in out


def test_tsv_fields_never_break_a_record() -> None:
    assert tsv_line(["a", "two\twords", "x\r\ny", None, 3]) == "a\ttwo words\tx  y\t\t3"


def test_a_real_pipe_gets_whole_records_at_any_terminal_width(catalog: str) -> None:
    env = {**os.environ, "COLUMNS": "40", "STACPULL_TOKEN": TOKEN}
    env.pop("FORCE_COLOR", None)
    env.pop("TTY_COMPATIBLE", None)
    done = subprocess.run(
        [sys.executable, "-m", "stacpull", "collections", "--catalog", catalog],
        capture_output=True,
        env=env,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert [line for line in done.stdout.splitlines() if FLEX in line] == [
        next(line for line in done.stdout.splitlines() if line.startswith(FLEX + "\t"))
    ]
    assert "5 collection(s)" in done.stderr


# --- point 1: a terminal of any width: fitted tables, nothing cut --------------------------


@pytest.mark.parametrize("width", [40, 60, 80, 120, 250])
def test_a_terminal_of_any_width_sees_whole_ids_and_values(catalog: str, width: int) -> None:
    term = _terminal(width)
    wanted = {
        ("collections", "--count"): [L1A, L1C, FLEX],
        ("search", "--collection", f"{L1A},{FLEX}"): [
            str(i["id"]) for i in _items(catalog, L1A, FLEX)
        ],
        ("queryables", L1A): ["product:type", "productType", "S1_SCS__1S", "S3_SCS__1S", "P-SAR"],
    }
    for args, values in wanted.items():
        code, out, err = _run(*args, "--catalog", catalog, env=term)
        assert code == 0, err
        text = ANSI.sub("", out)
        assert "…" not in text and "..." not in text, (args, text)
        words = {w.rstrip(",") for line in text.splitlines() for w in line.split()}
        missing = [v for v in values if v not in words]
        assert not missing, (args, width, missing, text)
        if re.search(r"^(id|property)  +\S", text, re.M):  # a table: it fits the width
            notes = re.compile(r"^(\d+ (item|collection)|\w+ is the older name|renamed in|e\.g\.)")
            rows = [line for line in text.splitlines() if not notes.match(line)]
            assert all(len(line.rstrip()) <= width for line in rows), (args, width, text)
    code, out, _ = _run("collections", "--catalog", catalog, env=_terminal(250))
    assert "FLEX L1 Commissioning Products" in ANSI.sub("", out)  # room: the title is shown


def test_a_narrow_table_folds_then_drops_the_title() -> None:
    columns = [Column("id"), Column("title", "text"), Column("n", justify="right")]
    rows = [["COLLECTION-ID-THAT-IS-LONG", "A title of several words", "12"]]

    def draw(width: int) -> list[str]:
        console = Console(file=io.StringIO(), force_terminal=True, color_system=None, width=width)
        console.print(fit_table(columns, rows, width), soft_wrap=True)
        return [line.rstrip() for line in console.file.getvalue().splitlines()]  # type: ignore[attr-defined]

    wide = draw(80)
    assert wide[1].split("  ")[0] == "COLLECTION-ID-THAT-IS-LONG" and "several words" in wide[1]
    folded = draw(50)
    assert "COLLECTION-ID-THAT-IS-LONG" in folded[1] and len(folded) > 2  # the title folds
    assert all(w in " ".join(folded) for w in ("A", "title", "of", "several", "words"))
    dropped = draw(32)
    assert dropped[0].split() == ["id", "n"] and dropped[1].split() == [
        "COLLECTION-ID-THAT-IS-LONG",
        "12",
    ]
    blocks = draw(20)  # narrower than the id: two lines per record, nothing cut
    assert blocks[0] == "COLLECTION-ID-THAT-IS-LONG" and blocks[1].split("  ")[1:] == [
        "A title of several words",
        "12",
    ]


@settings(max_examples=60, deadline=None)
@given(
    ids=st.lists(
        st.text("abcXYZ_:-0123456789[]/", min_size=1, max_size=30), min_size=1, max_size=4
    ),
    values=st.lists(st.text("ABCdef_-.", min_size=1, max_size=15), max_size=5),
    width=st.integers(20, 120),
)
def test_fitted_tables_never_cut_nor_split_a_value(
    ids: list[str], values: list[str], width: int
) -> None:
    columns = [Column("id"), Column("title", "text"), Column("values", "values")]
    rows = [[i, "Some title words here", values] for i in ids]
    console = Console(file=io.StringIO(), force_terminal=True, color_system=None, width=width)
    console.print(fit_table(columns, rows, width), soft_wrap=True)
    words = {w.rstrip(",") for line in console.file.getvalue().splitlines() for w in line.split()}  # type: ignore[attr-defined]
    assert set(ids) <= words and set(values) <= words


# --- point 2: --json, one stable schema per command -------------------------------------


def test_collections_json_is_an_array_with_stable_keys(catalog: str) -> None:
    code, out, err = _run("collections", "--catalog", catalog, "--json")
    assert code == 0, err
    listed = json.loads(out)
    assert [c["id"] for c in listed] == [L1A, L1C, FLEX, *_EARTHCARE]
    assert all(set(c) == COLLECTION_KEYS for c in listed)
    assert listed[0]["extent"]["temporal"]["interval"][0][0] == "2025-09-29T00:00:00Z"
    code, out, _ = _run("collections", "--catalog", catalog, "--json", "--count")
    counted = json.loads(out)
    assert all(set(c) == COLLECTION_KEYS | {"count"} for c in counted)
    assert [c["count"] for c in counted] == [4, 4, 4, 4, 4]
    code, out, err = _run("collections", "--catalog", catalog, "--json", "--q", "no-such-thing")
    assert code == 0 and json.loads(out) == [] and "0 collection(s)" in err


def test_search_json_is_the_whole_item_collection_on_stdout(catalog: str) -> None:
    code, out, err = _run(
        "search", "--catalog", catalog, "--collection", L1A, "--json", "--show", "1"
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["type"] == "FeatureCollection" and len(data["features"]) == 4  # not --show
    assert "4 item(s) matched" in err and "the first 1 shown" not in err
    code, same, _ = _run("search", "--catalog", catalog, "--collection", L1A, "-o", "-")
    assert json.loads(same) == data
    code, out, err = _run(
        "search", "--catalog", catalog, "--collection", L1A, "--filter", "product:type='none'",
        "--json",
    )  # fmt: skip
    assert code == 0 and json.loads(out)["features"] == [] and "0 item(s) matched" in err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--collection", "BiomassLevel1aIOX"), "unknown collection 'BiomassLevel1aIOX'"),
        (("--collection", L1A, "--filter", "product:type = = 'x'"), "invalid filter"),
        (("--collection", L1A, "-o", "items.geojson"), "not both"),
        (("--collection", L1A, "--format", "csv"), "--format csv needs -o FILE"),
    ],
)
def test_search_json_errors_go_to_stderr_and_leave_stdout_empty(
    catalog: str, flags: tuple[str, ...], message: str
) -> None:
    code, out, err = _run("search", "--catalog", catalog, *flags, "--json")
    assert code == 2 and out == "" and message in err, (out, err)


def test_queryables_json_is_one_object_per_property(catalog: str) -> None:
    code, out, err = _run("queryables", L1A, "--catalog", catalog, "--json")
    assert code == 0, err
    listed = json.loads(out)
    assert all(set(q) == QUERYABLE_KEYS for q in listed)
    assert [q["name"] for q in listed] == sorted(q["name"] for q in listed)
    by_name = {q["name"]: q for q in listed}
    assert by_name["product:type"] == {
        "collection": L1A,
        "name": "product:type",
        "type": "string",
        "format": None,
        "title": "product:type",
        "description": None,
        "enum": ["S1_SCS__1S", "S2_SCS__1S", "S3_SCS__1S"],
        "renamed_from": "productType",  # MAAP's name before February 2026
        "renamed_to": None,
    }
    assert by_name["datetime"]["format"] == "date-time" and by_name["datetime"]["enum"] is None
    code, out, err = _run("queryables", "BiomassLevel1aIOX", "--catalog", catalog, "--json")
    assert code == 2 and out == "" and "unknown collection" in err


# --- point 3: --help shows every command's summary, uncut --------------------------------


def _groups(
    group: click.Group, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Group]]:
    yield path, group
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _groups(command, (*path, name))


@pytest.mark.parametrize("width", [80, 100])
def test_help_lists_every_command_with_its_whole_summary(width: int) -> None:
    for path, group in _groups(main):
        code, out, err = _run(*path, "--help", env={"COLUMNS": str(width)})
        assert code == 0, err
        listing = out[out.index("Commands:") :]
        assert "..." not in listing, (path, out)
        for name, command in group.commands.items():
            summary = command.get_short_help_str(limit=10_000)
            assert summary and not summary.endswith("..."), (path, name)
            assert re.search(rf"^  {re.escape(name)} +{re.escape(summary)}$", out, re.M), (
                path,
                name,
                summary,
                out,
            )
