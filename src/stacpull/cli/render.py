"""The command line's printing: every table, listing, plan, status and report, each a
function of its data and a :class:`~rich.console.Console` (testable alone), over one table
fitter (:func:`fit_table`); the one-line failure (:func:`fail`).

Ids, URLs, keys and paths are what the next command takes: none is ever cut or wrapped. On
a terminal a table folds, then drops, its prose columns, then the ranked whole ones; too
narrow even so, two lines per record. Piped, each record is one line of tab-separated whole
values, no header, no markup (as ``gh`` prints), and the lines for people go to stderr.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NoReturn

import click

from ..errors import scrub
from ..printable import printable
from ..renames import renamed_notes
from ..units import human_bytes

if TYPE_CHECKING:
    # rich is loaded when a table is drawn: ``--help`` should not pay for it.
    from rich.console import Console, RenderableType

    from ..audit import StatusReport, VerifyReport
    from ..dryrun import PlanSummary
    from ..search_walk import Walked

__all__ = [
    "Column",
    "budget_verdict",
    "fail",
    "fit_table",
    "plan_fits",
    "print_collections",
    "print_items",
    "print_plan",
    "print_queryables",
    "print_report",
    "print_search",
    "print_status",
    "print_verify",
    "tsv_line",
]

_Cell = str | Sequence[str]
"""A ``whole``/``text`` column's cell is a string; a ``values`` column's, its values."""

_GAP = 2  # spaces between two columns
_TEXT_MIN = 12  # a title narrower than this says too little: the column is dropped


@dataclass(frozen=True)
class Column:
    """One column of a listing.

    ``whole``: one value never cut nor wrapped (an id, a date, a count). ``values``: a list
    of whole values, packed several to a line and never split. ``text``: prose (a title)
    that may fold onto more lines and is dropped first when the terminal is narrow.
    ``drop``: a whole column that may go next, the lowest rank first.
    """

    header: str
    kind: Literal["whole", "values", "text"] = "whole"
    justify: Literal["left", "right"] = "left"
    drop: int | None = None


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one unwrapped line (users grep and paste these) and exit. A reason quoting a
    server's answer keeps to that line: its line breaks become spaces and its control
    characters (a terminal's escapes) are shown, never sent."""
    click.echo(f"stacpull: {printable(scrub(message))}", err=True)
    sys.exit(code)


def _people(out: Console) -> Console:
    """Where the lines for people go (tallies, verdicts, hints): beside the listing on a
    terminal; on stderr when stdout is a pipe or a file, whose lines are then the records
    alone (one rule for every command, so ``cmd | awk`` never meets a sentence)."""
    from rich.console import Console

    if out.is_terminal:
        return out
    return Console(stderr=True, highlight=False, soft_wrap=True)


def tsv_line(fields: Sequence[object]) -> str:
    """One record as a line of tab-separated fields; a tab or line break inside a field
    (a title, say) becomes a space, so every record stays one line of the same fields."""
    return "\t".join(printable("" if f is None else str(f)) for f in fields)


# -- the table fitter -------------------------------------------------------------------


def _printable_cell(cell: _Cell) -> _Cell:
    return printable(cell) if isinstance(cell, str) else [printable(str(v)) for v in cell]


def _print_listing(
    console: Console,
    columns: Sequence[Column],
    rows: Sequence[Sequence[_Cell]],
    records: Sequence[Sequence[object]],
) -> None:
    """``rows`` as a fitted table when ``console`` is a terminal, else ``records`` as TSV
    lines (plain text, straight to its file: no markup, no colour, no width)."""
    if console.is_terminal:
        if rows:
            shown = [[_printable_cell(cell) for cell in row] for row in rows]
            console.print(fit_table(columns, shown, console.width), soft_wrap=True)
        return
    for record in records:
        console.file.write(tsv_line(record) + "\n")
    console.file.flush()


def _words(cell: _Cell) -> list[str]:
    """A ``values`` cell as the words a line may break between: each value but the last
    keeps its comma."""
    values = [cell] if isinstance(cell, str) else [str(v) for v in cell]
    return [v + "," for v in values[:-1]] + values[-1:]


def _pack(words: Sequence[str], width: int) -> str:
    """Words greedily on lines of at most ``width`` cells, a word never split."""
    from rich.cells import cell_len

    lines: list[str] = []
    for word in words:
        if lines and cell_len(lines[-1]) + 1 + cell_len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return "\n".join(lines)


def _text(cell: _Cell) -> str:
    return cell if isinstance(cell, str) else ", ".join(cell)


def _span(column: Column, cells: Sequence[_Cell]) -> tuple[int, int]:
    """The (narrowest, natural) width of a column holding ``cells``."""
    from rich.cells import cell_len

    head = cell_len(column.header)
    if column.kind == "values":
        words = [w for c in cells for w in _words(c)]
        natural = max([head, *(cell_len(" ".join(_words(c))) for c in cells)])
        narrowest = max([*(cell_len(w) for w in column.header.split()), *map(cell_len, words)])
        return narrowest, natural
    natural = max([head, *(cell_len(_text(c)) for c in cells)])
    if column.kind == "text":
        return min(natural, _TEXT_MIN), natural
    return natural, natural


def _droppable(columns: Sequence[Column]) -> list[int]:
    """The columns a narrow terminal loses, in order: prose (the last first), then the
    ranked whole columns (the lowest rank first)."""
    texts = [i for i in reversed(range(len(columns))) if columns[i].kind == "text"]
    ranked = sorted((c.drop, i) for i, c in enumerate(columns) if c.drop is not None)
    return texts + [i for _, i in ranked]


def fit_table(
    columns: Sequence[Column], rows: Sequence[Sequence[_Cell]], width: int
) -> RenderableType:
    """A table of ``rows`` no wider than ``width``, every ``whole`` and ``values`` cell whole:
    ``text`` columns fold, then go (the last first), then the ``drop`` ones; too narrow even
    so, two lines per record: print it with ``soft_wrap=True`` (else rich would fold them)."""
    from rich.table import Table
    from rich.text import Text

    spans = [_span(c, [row[i] for row in rows]) for i, c in enumerate(columns)]
    active = list(range(len(columns)))
    droppable = _droppable(columns)
    while (need := sum(spans[i][0] for i in active) + _GAP * (len(active) - 1)) > width:
        if not droppable:
            kept = [i for i, c in enumerate(columns) if c.drop is None]
            return _blocks([[row[i] for i in kept] for row in rows])
        active.remove(droppable.pop(0))
    widths = {i: spans[i][0] for i in active}
    spare = width - need
    # Whole values first get their natural width (already theirs), then lists, then prose.
    for kind in ("values", "text"):
        for i in active:
            if columns[i].kind == kind and spare > 0:
                grow = min(spare, spans[i][1] - widths[i])
                widths[i] += grow
                spare -= grow
    table = Table(box=None, padding=(0, 1), pad_edge=False, header_style="bold")
    for i in active:
        column = columns[i]
        table.add_column(
            column.header,
            width=widths[i],
            justify=column.justify,
            no_wrap=column.kind != "text",
            overflow="fold",
        )
    for row in rows:
        cells = []
        for i in active:
            cell = row[i]
            kind = columns[i].kind
            cells.append(Text(_pack(_words(cell), widths[i]) if kind == "values" else _text(cell)))
        table.add_row(*cells)
    return table


def _blocks(rows: Sequence[Sequence[_Cell]]) -> RenderableType:
    """Two lines per record, for a terminal narrower than its longest whole value: the
    first cell, then the others (two spaces apart), indented."""
    from rich.console import Group
    from rich.text import Text

    lines: list[Text] = []
    for row in rows:
        lines.append(Text(_text(row[0]), style="bold"))
        rest = [_text(cell) for cell in row[1:] if _text(cell)]
        if rest:
            lines.append(Text("  " + "  ".join(rest)))
    return Group(*lines)


# -- discovery: search, collections, queryables -------------------------------------------

_SEARCH_COLUMNS = (
    Column("id"),
    Column("datetime"),
    Column("product type"),
    Column("assets", "values"),
)


def _asset_summary(item: Mapping[str, Any]) -> list[str]:
    """Each asset of ``item`` as ``key size`` (or its key), sorted: a search table's cell."""
    parts = []
    assets = item.get("assets")
    for key, asset in sorted(assets.items() if isinstance(assets, dict) else ()):
        size = asset.get("file:size") if isinstance(asset, dict) else None
        parts.append(f"{key} {human_bytes(size)}" if isinstance(size, int) else key)
    return parts


def _item_cells(item: Mapping[str, Any]) -> tuple[list[_Cell], list[object]]:
    """One item as a search table row and as its TSV record (id, collection, datetime,
    product type, asset keys): the record keeps each value whole, as the item has it."""
    props = item.get("properties")
    props = props if isinstance(props, dict) else {}
    when = str(props.get("datetime") or props.get("start_datetime") or "")
    kind = str(props.get("product:type") or props.get("productType") or "")
    assets = item.get("assets")
    keys = sorted(assets) if isinstance(assets, dict) else []
    row: list[_Cell] = [str(item.get("id")), when[:19] + "Z" if when else "", kind]
    row.append(_asset_summary(item))
    record: list[object] = [item.get("id"), item.get("collection"), when, kind, ",".join(keys)]
    return row, record


def print_items(out: Console, items: Sequence[Mapping[str, Any]]) -> None:
    """Items as the search table (id, datetime, product type, assets and their sizes), or
    piped, one record each: id, collection, datetime, product type, asset keys."""
    cells = [_item_cells(item) for item in items]
    _print_listing(out, _SEARCH_COLUMNS, [row for row, _ in cells], [rec for _, rec in cells])


def print_search(out: Console, walked: Walked, show: int, *, wrote: str | None = None) -> None:
    """``stacpull search``'s answer: how many items match, the first ``show`` of them, and
    ``wrote``, the line saying where they were saved (``None``: not saved, so the hint
    that -o saves them all; empty: saved, with nothing to claim)."""
    note = _people(out)
    note.print(f"{walked.total} item(s) matched", soft_wrap=True)
    print_items(out, walked.items)
    more = walked.seen > show or (walked.matched is not None and walked.matched > show)
    if wrote is None and more:
        note.print(
            f"(the first {min(show, walked.seen)} shown; -o FILE saves them all)", soft_wrap=True
        )
    if wrote:
        note.print(wrote, soft_wrap=True, markup=False)
    if walked.repeats:  # MAAP's unordered offset paging lists some items twice
        note.print(f"{walked.repeats} item(s) listed again by the catalogue: kept once")


def _extent(col: Mapping[str, Any], whole: bool = False) -> str:
    """A collection's first temporal interval as START/END ('..' for an open end): dates in
    a table, the collection's own timestamps when ``whole``."""
    extent = col.get("extent")
    temporal = extent.get("temporal") if isinstance(extent, dict) else None
    intervals = temporal.get("interval") if isinstance(temporal, dict) else None
    first = intervals[0] if isinstance(intervals, list) and intervals else None
    ends = [*(first if isinstance(first, list) else []), None, None][:2]
    return "/".join((str(t) if whole else str(t)[:10]) if t else ".." for t in ends)


_COLLECTION_COLUMNS = (
    Column("id"),
    Column("title", "text"),
    Column("temporal extent"),
    Column("items", justify="right"),
)


def print_collections(
    out: Console,
    found: Sequence[Mapping[str, Any]],
    counts: Mapping[str, int | None],
    *,
    summary: str = "",
    note: Console | None = None,
) -> None:
    """Collections as a table of id, title, temporal extent and item count (from
    ``counts``, blank where not counted), or piped, one record each; then ``summary``."""
    rows: list[list[_Cell]] = []
    records: list[list[object]] = []
    for col in found:
        cid = str(col.get("id"))
        items = counts.get(cid)
        shown = "" if items is None else str(items)
        rows.append([cid, str(col.get("title") or ""), _extent(col), shown])
        records.append([cid, col.get("title") or "", _extent(col, whole=True), shown])
    _print_listing(out, _COLLECTION_COLUMNS, rows, records)
    if summary:
        (note or _people(out)).print(summary, soft_wrap=True)


def print_queryables(
    out: Console, listed: Sequence[Mapping[str, Any]], *, note: Console | None = None
) -> None:
    """Queryables (as ``queryables --json`` lists them) as a table of property, type,
    allowed values and, where it says more than the name, title; piped, one record each
    (name, type, format, values, title); then a hint for ``--filter``."""
    titled = any(q["title"] and q["title"] != q["name"] for q in listed)  # worth a column
    columns = [Column("property"), Column("type"), Column("allowed values", "values")]
    if titled:
        columns.append(Column("title", "text"))
    rows: list[list[_Cell]] = []
    records: list[list[object]] = []
    for q in listed:
        kind = (q["type"] or "?") + (f" ({q['format']})" if q["format"] else "")
        values = [str(v) for v in q["enum"] or []]
        title = str(q["title"] or "")
        rows.append([q["name"], kind, values, *([title] if titled else [])])
        records.append([q["name"], q["type"] or "", q["format"] or "", ",".join(values), title])
    _print_listing(out, columns, rows, records)
    note = note or _people(out)
    names = {q["name"]: q for q in listed}
    for line in renamed_notes(names):  # MAAP's February 2026 names beside the old ones
        note.print(line, soft_wrap=True, markup=False)
    example = next((n for n in ("product:type", "productType") if n in names), None)
    if example and names[example]["enum"]:
        value = names[example]["enum"][0]
        note.print(f"e.g. --filter \"{example}='{value}'\"", soft_wrap=True, markup=False)


# -- state: status, verify, report ------------------------------------------------------

_STATUS_COLUMNS = (
    Column("status"),
    Column("files", justify="right"),
    Column("bytes on disk", justify="right"),
)


def print_status(
    out: Console, report: StatusReport, dest: str, *, note: Console | None = None
) -> None:
    """What the journal of ``dest`` knows: files and bytes by status (records when piped),
    failures by reason, refusals, partial bytes, the newest item and the last run."""
    from rich.markup import escape

    note = note or _people(out)  # piped: the status records alone on stdout
    if out.is_terminal:
        note.print(f"[bold]stacpull status[/] · {escape(dest)}")
    rows: list[list[_Cell]] = []
    records: list[list[object]] = []
    for name in ("done", "pending", "active", "failed"):
        row = report.by_status.get(name)
        if row:
            rows.append([name, str(row["files"]), human_bytes(row["bytes"])])
            records.append([name, row["files"], row["bytes"]])
    if report.refused:
        rows.append(["refused", str(len(report.refused)), "-"])
        records.append(["refused", len(report.refused), 0])
    _print_listing(out, _STATUS_COLUMNS, rows, records)
    if report.failure_counts:
        note.print("[red]failed[/], by reason:")
        for kind, count in sorted(report.failure_counts.items(), key=lambda kv: -kv[1]):
            note.print(f"  {printable(kind)}: {count}", markup=False)
            for path, message in report.failures[kind]:
                note.print(f"    {printable(f'{path}: {message}')}", markup=False)
    for item_id, key, reason in report.refused[:5]:  # refused for what these ids hold
        note.print(f"[magenta]refused[/] {escape(printable(f'{item_id}/{key}: {reason}'))}")
    if report.partial_bytes:
        note.print(f"partial files to resume: {human_bytes(report.partial_bytes)}")
    if report.high_water_mark:
        note.print(f"newest item `updated` on disk: {report.high_water_mark}", markup=False)
    last = report.last_run
    if last is not None:
        summary = last.get("summary") or {}
        tally = (
            f" — {summary.get('downloaded', 0)} downloaded, {summary.get('skipped', 0)} "
            f"skipped, {summary.get('failed', 0)} failed"
        )
        outcome = last.get("outcome") or "running or killed"
        note.print(f"last run: {last['kind']}, {outcome}{tally if summary else ''}", markup=False)


def print_verify(out: Console, report: VerifyReport, *, note: Console | None = None) -> None:
    """What ``verify`` found: files checked and how, each problem (records when piped:
    kind, path, detail), and the verdict."""
    from rich.markup import escape

    note = note or _people(out)  # piped: the problem records alone on stdout
    note.print(
        f"checked {report.checked} file(s), {human_bytes(report.bytes)}: {report.hashed} "
        f"hashed, {report.zip_only} by zip CRCs only, {report.size_only} by size only"
    )
    for problem in report.problems:
        detail = problem.detail
        if problem.earlier:
            detail += " (found by an earlier verify; not fetched again yet)"
        if out.is_terminal:
            note.print(f"[red]{problem.kind}[/] {escape(printable(f'{problem.path}: {detail}'))}")
        else:
            out.file.write(tsv_line((problem.kind, problem.path, detail)) + "\n")
            out.file.flush()
    if report.problems:
        note.print(
            f"[red]{len(report.problems)} damaged file(s)[/] marked failed; fetch them again "
            "with the same download/mirror command or with --retry-failed"
        )
    else:
        note.print("[green]no rot found[/]")


def _ending(view: Mapping[str, Any]) -> str:
    """How the reported run ended, in colour: stopped, interrupted or complete (and how)."""
    from rich.markup import escape

    if view["outcome"] == "stopped":
        return f"[red]stopped: {escape(str(view['fatal']))}[/]"
    if view["outcome"] == "interrupted":
        return "[yellow]interrupted[/]"
    totals = view["totals"]
    bad = [f"{n} {what}" for what in ("failed", "refused") if (n := totals.get(what))]
    return f"[red]complete, {', '.join(bad)}[/]" if bad else "[green]complete[/]"


def print_report(
    out: Console, view: Mapping[str, Any], *, summary: RenderableType, failures: int, dest: str
) -> None:
    """The last run of ``dest`` (``view`` as ``report --json`` prints it): when, how it
    ended, the query, ``summary`` (the run's totals table), errors by class and the first
    ``failures`` failed files. The report quotes the catalogue (ids, keys, errors): its
    control characters are shown as escapes, never sent to the terminal."""
    from rich.markup import escape

    started, finished = escape(str(view["started"] or "?")), escape(str(view["finished"] or "?"))
    out.print(f"run {started} → {finished} ({view['seconds']:.0f} s): {_ending(view)}")
    query = {k: v for k, v in view["query"].items() if v not in (None, [], "")}
    out.print("query: " + printable(" ".join(f"{k}={v}" for k, v in query.items())), markup=False)
    out.print(summary)
    for group in view["errors"]:
        last = escape(printable(group["last"]))
        out.print(f"[red]{escape(printable(group['class']))}[/] ×{group['count']}: {last}")
    failed = view["failed"]
    for row in failed[:failures]:
        out.print(
            printable(f"failed {row['item']}/{row['asset']}: {row.get('error')}"), markup=False
        )
    if len(failed) > failures:
        out.print(f"… and {len(failed) - failures} more failures (stacpull status {dest})")
    out.print(f"report: {view['report']}", markup=False)


# -- the dry run's plan -----------------------------------------------------------------


def budget_verdict(summary: PlanSummary, budget: int) -> str | None:
    """``within``, ``exceeded`` or ``unknown`` (files of unknown size and the rest within
    it): the dry run's answer about ``--max-bytes``; ``None`` without a budget."""
    from ..dryrun import budget_error

    if not budget:
        return None
    if budget_error(summary, budget) is not None:
        return "exceeded"
    return "unknown" if summary.unguessed else "within"


def plan_fits(summary: PlanSummary) -> bool | None:
    """Whether DEST has room: ``None`` when files of unknown size may not fit."""
    if not summary.fits:
        return False
    return None if summary.unguessed else True


#: A narrow terminal keeps the asset and what is left to fetch.
_PLAN_COLUMNS = (
    Column("asset"),
    Column("files", justify="right", drop=2),
    Column("on disk", justify="right", drop=1),
    Column("to fetch", justify="right"),
    Column("bytes known", justify="right", drop=3),
    Column("no size (est.)", justify="right", drop=0),
)


def _plan_rows(summary: PlanSummary) -> tuple[list[list[_Cell]], list[list[object]]]:
    """The plan's table rows (sizes for people) and records (raw numbers), one per asset."""
    rows: list[list[_Cell]] = []
    records: list[list[object]] = []
    for plan in summary.assets.values():
        estimate = f" (~{human_bytes(plan.estimated_bytes)})" if plan.estimated_bytes else ""
        counts = [str(plan.files), str(plan.on_disk), str(plan.files - plan.on_disk)]
        unknown = f"{plan.unknown}{estimate}" if plan.unknown else "0"
        rows.append([plan.key, *counts, human_bytes(plan.known_bytes), unknown])
        records.append([plan.key, *counts, plan.known_bytes, plan.unknown])
    return rows, records


def _to_download(summary: PlanSummary) -> str:
    """The plan's ``to download`` line: known bytes, then the estimated and unknown rest."""
    line = f"to download:  {summary.to_fetch_files} files, {human_bytes(summary.known_bytes)} known"
    if estimated := summary.unknown_files - summary.unguessed:
        line += (
            f" + ~{human_bytes(summary.estimated_bytes)} estimated for {estimated} file(s) "
            "without file:size (from the files earlier runs verified in DEST)"
        )
    if summary.unguessed:
        line += (
            f" + {summary.unguessed} file(s) of unknown size (no file:size, no earlier run "
            "to estimate from; download a few first, e.g. --max-items 2, and the dry run "
            "estimates the rest from them)"
        )
    return line


def _verdicts(summary: PlanSummary, budget: int, yes: bool) -> list[str]:
    """The plan's last lines: whether DEST has room and, with a budget, whether it holds."""
    fits = plan_fits(summary)
    room = (
        "[green]fits[/]"
        if fits
        else f"[yellow]unknown[/] ({summary.unguessed} file(s) of unknown size; the rest fits)"
        if fits is None
        else f"[red]does not fit[/] with download.min_free ({human_bytes(summary.min_free)}) to spare"
    )
    lines = [f"free at DEST: {human_bytes(summary.free_bytes)}: {room}"]
    answer = budget_verdict(summary, budget)
    if answer is not None:
        text = {
            "within": "[green]within[/]",
            "unknown": f"[yellow]unknown[/]: {summary.unguessed} file(s) of unknown size, "
            f"{human_bytes(summary.to_fetch_bytes)} known and estimated",
            "exceeded": "[red]exceeded[/]: "
            + ("--yes lets the run start" if yes else "a run needs --yes"),
        }[answer]
        lines.append(f"budget:       {human_bytes(budget)}: {text}")
    return lines


def print_plan(
    out: Console,
    summary: PlanSummary,
    budget: int,
    yes: bool = False,
    *,
    note: Console | None = None,
) -> None:
    """The dry run's answer: what would be fetched, what is there, whether it fits (and,
    with a ``budget``, whether it stays within it); piped, the asset records alone."""
    from rich.markup import escape

    note = note or _people(out)  # piped: the asset records alone on stdout
    matched = f" of {summary.matched} matched" if summary.matched is not None else ""
    note.print(f"[bold]dry run[/]: nothing was downloaded; DEST {escape(summary.dest)}")
    note.print(f"items:        {summary.items}{matched}")
    refused = f" ({summary.refused} refused: unsafe names)" if summary.refused else ""
    note.print(f"files:        {summary.files}{refused}")
    for line in summary.notes():  # the maap profile's rules, hrefs under two keys
        note.print(printable(line), markup=False)
    _print_listing(out, _PLAN_COLUMNS, *_plan_rows(summary))
    note.print(
        f"on disk:      {summary.on_disk_files} files, {human_bytes(summary.on_disk_bytes)} "
        "(a real run skips them)"
    )
    note.print(_to_download(summary))
    for line in _verdicts(summary, budget, yes):
        note.print(line)
