"""Listings for people and for programs: a table fitted to the terminal, or TSV records.

``collections``, ``search`` and ``queryables`` print listings whose ids, URLs, keys and
values are what the next command takes, so none is ever cut or wrapped. On a terminal the
table fits its width by folding, then dropping, the least useful columns (titles); a
terminal too narrow for even the whole values gets two lines per record instead. Anywhere
else (a pipe, a file, a notebook's ``!stacpull``) each record is one line of tab-separated
whole values, with no header and no markup, as ``gh`` prints when piped: grep, cut and awk
work on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    # rich is loaded when a table is drawn: the commands declare their columns on import,
    # and ``--help`` should not pay for rich (benchmarks/startup.py).
    from rich.console import Console, RenderableType
    from rich.text import Text

__all__ = ["Cell", "Column", "fit_table", "print_listing", "printable", "tsv_line"]

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


# A tab or line break inside a value becomes a space (each record stays one line of the
# same fields); any other control character (ESC, BEL: a catalogue's id could clear the
# screen or retitle the terminal) is shown as its escape, e.g. ``\x1b``.
_CONTROLS = {
    **{c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))},
    **{ord(c): " " for c in "\t\r\n"},
}


def printable(value: str) -> str:
    """``value`` safe to print on one line: no control character reaches the terminal."""
    return value.translate(_CONTROLS)


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
