"""The command line's printing: listings for people and for programs (a table fitted to the
terminal, or TSV records), the whole-value tables, the search table's cells, the one-line
failure (:func:`fail`) and where the lines for people go (:func:`people`).

``collections``, ``search`` and ``queryables`` print listings whose ids, URLs, keys and
values are what the next command takes, so none is ever cut or wrapped. On a terminal the
table fits its width by folding, then dropping, the least useful columns (titles); a
terminal too narrow for even the whole values gets two lines per record instead. Anywhere
else (a pipe, a file, a notebook's ``!stacpull``) each record is one line of tab-separated
whole values, with no header and no markup, as ``gh`` prints when piped: grep, cut and awk
work on it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NoReturn

import click

from ..errors import scrub
from ..printable import printable
from ..units import human_bytes

if TYPE_CHECKING:
    # rich is loaded when a table is drawn: the commands declare their columns on import,
    # and ``--help`` should not pay for rich (benchmarks/startup.py).
    from rich.console import Console, RenderableType
    from rich.text import Text

__all__ = [
    "SEARCH_COLUMNS",
    "Cell",
    "Column",
    "fail",
    "fit_table",
    "item_cells",
    "people",
    "print_listing",
    "tsv_line",
    "whole_table",
]

Cell = str | Sequence[str]
"""A ``whole``/``text`` column's cell is a string; a ``values`` column's, its values."""

_GAP = 2  # spaces between two columns
_TEXT_MIN = 12  # a title narrower than this says too little: the column is dropped


@dataclass(frozen=True)
class Column:
    """One column of a listing.

    ``whole``: one value never cut nor wrapped (an id, a date, a count). ``values``: a list
    of whole values, packed several to a line and never split. ``text``: prose (a title)
    that may fold onto more lines and is dropped first when the terminal is narrow.
    """

    header: str
    kind: Literal["whole", "values", "text"] = "whole"
    justify: Literal["left", "right"] = "left"


def tsv_line(fields: Sequence[object]) -> str:
    """One record as a line of tab-separated fields; a tab or line break inside a field
    (a title, say) becomes a space, so every record stays one line of the same fields."""
    return "\t".join(printable("" if f is None else str(f)) for f in fields)


def _printable_cell(cell: Cell) -> Cell:
    return printable(cell) if isinstance(cell, str) else [printable(str(v)) for v in cell]


def print_listing(
    console: Console,
    columns: Sequence[Column],
    rows: Sequence[Sequence[Cell]],
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


def _words(cell: Cell) -> list[str]:
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


def _text(cell: Cell) -> str:
    return cell if isinstance(cell, str) else ", ".join(cell)


def _span(column: Column, cells: Sequence[Cell]) -> tuple[int, int]:
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


def fit_table(
    columns: Sequence[Column], rows: Sequence[Sequence[Cell]], width: int
) -> RenderableType:
    """A table of ``rows`` no wider than ``width`` whose ``whole`` and ``values`` cells are
    all whole: ``text`` columns fold, then go (the last first); too narrow even so, one
    record on two lines (the first cell, then the others), which a terminal may wrap but
    nothing cuts: print it with ``soft_wrap=True`` (else rich would fold those lines)."""
    from rich.table import Table
    from rich.text import Text

    spans = [_span(c, [row[i] for row in rows]) for i, c in enumerate(columns)]
    active = list(range(len(columns)))
    while True:
        need = sum(spans[i][0] for i in active) + _GAP * (len(active) - 1)
        if need <= width:
            break
        texts = [i for i in active if columns[i].kind == "text"]
        if not texts:
            return _blocks(columns, rows)
        active.remove(texts[-1])
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


def _blocks(columns: Sequence[Column], rows: Sequence[Sequence[Cell]]) -> RenderableType:
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


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one unwrapped line (users grep and paste these) and exit. A reason quoting a
    server's answer keeps to that line: its line breaks become spaces and its control
    characters (a terminal's escapes) are shown, never sent."""
    click.echo(f"stacpull: {printable(scrub(message))}", err=True)
    sys.exit(code)


def people(out: Console) -> Console:
    """Where the lines for people go (tallies, verdicts, hints): beside the listing on a
    terminal; on stderr when stdout is a pipe or a file, whose lines are then the records
    alone (one rule for every command, so ``cmd | awk`` never meets a sentence)."""
    from rich.console import Console

    if out.is_terminal:
        return out
    return Console(stderr=True, highlight=False, soft_wrap=True)


def _asset_summary(item: dict[str, Any]) -> list[str]:
    """Each asset of ``item`` as ``key size`` (or its key), sorted: a search table's cell."""
    parts = []
    assets = item.get("assets")
    for key, asset in sorted(assets.items() if isinstance(assets, dict) else ()):
        size = asset.get("file:size") if isinstance(asset, dict) else None
        parts.append(f"{key} {human_bytes(size)}" if isinstance(size, int) else key)
    return parts


SEARCH_COLUMNS = (
    Column("id"),
    Column("datetime"),
    Column("product type"),
    Column("assets", "values"),
)


def item_cells(item: dict[str, Any]) -> tuple[list[Cell], list[object]]:
    """One item as a search table row and as its TSV record (id, collection, datetime,
    product type, asset keys): the record keeps each value whole, as the item has it."""
    props = item.get("properties")
    props = props if isinstance(props, dict) else {}
    when = str(props.get("datetime") or props.get("start_datetime") or "")
    kind = str(props.get("product:type") or props.get("productType") or "")
    assets = item.get("assets")
    keys = sorted(assets) if isinstance(assets, dict) else []
    row: list[Cell] = [str(item.get("id")), when[:19] + "Z" if when else "", kind]
    row.append(_asset_summary(item))
    record: list[object] = [item.get("id"), item.get("collection"), when, kind, ",".join(keys)]
    return row, record


def whole_table(
    out: Console,
    headers: tuple[str, ...],
    rows: list[tuple[str, ...]],
    *,
    records: list[tuple[str, ...]] | None = None,
    drop: tuple[int, ...] = (),
    right: tuple[int, ...] = (),
) -> None:
    """A listing whose values (keys, paths, ids) are never cut nor wrapped.

    Piped (stdout not a terminal): one record per line, tab-separated, no header, no
    markup, with ``records`` (raw numbers) in place of ``rows`` when given, so ``grep``,
    ``cut`` and ``awk`` work. On a terminal: a table; when it is wider than the terminal,
    the columns in ``drop`` go first, least useful first; when the values alone are wider,
    one record per line.
    """
    from rich.table import Table
    from rich.text import Text

    if not out.is_terminal:
        for record in records if records is not None else rows:
            click.echo(tsv_line(record))
        return
    rows = [tuple(printable(cell) for cell in row) for row in rows]  # no escape reaches it
    keep = list(range(len(headers)))

    def width(columns: list[int]) -> int:
        return sum(
            max(Text(headers[c]).cell_len, *(Text(r[c]).cell_len for r in rows)) + 2
            for c in columns
        )

    for column in drop:
        if width(keep) <= out.width:
            break
        keep.remove(column)
    if width(keep) > out.width:
        for row in rows:
            out.print(
                "  ".join(row[c] for c in keep), markup=False, highlight=False, soft_wrap=True
            )
        return
    table = Table(box=None, padding=(0, 1), header_style="dim")
    for c in keep:
        table.add_column(headers[c], justify="right" if c in right else "left", no_wrap=True)
    for row in rows:
        table.add_row(*(Text(row[c]) for c in keep))
    out.print(table)
