"""Text safe to print on one line: what any printer of a catalogue's values (the CLI's
listings, the dashboard) passes them through, so no control character reaches a terminal.

A leaf of its own, importing nothing, so both the command line and the dashboard use it
without importing each other.
"""

from __future__ import annotations

__all__ = ["printable"]

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
