"""MAAP's queryables renamed in February 2026, and the hint a filter written with an old name gets.

MAAP moved its item properties to the STAC extensions' names (``productType`` became
``product:type``, ``orbitNumber`` ``sat:absolute_orbit`` …). A filter from an older notebook
still names the old ones, and the catalogue rejects it with a 400 that does not say why;
:func:`renamed_hint` names the new property for each old one the filter uses, and
:func:`renamed_pairs` says which of a collection's queryables replaced an old name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["RENAMED", "renamed_hint", "renamed_notes", "renamed_pairs"]

#: Old queryable → its name since February 2026.
RENAMED: Mapping[str, str] = {
    "productType": "product:type",
    "orbitNumber": "sat:absolute_orbit",
    "productVersion": "version",
    "orbitDirection": "sat:orbit_state",
    "instrument": "instruments",
}


def _names(value: Any) -> Iterable[str]:
    """Every property a CQL2-JSON filter names (``{"property": "x"}``), at any depth."""
    if isinstance(value, dict):
        if isinstance(value.get("property"), str):
            yield value["property"]
        for child in value.values():
            yield from _names(child)
    elif isinstance(value, list):
        for child in value:
            yield from _names(child)


def _used(text: str) -> list[str]:
    """The old names a filter uses: as CQL2-JSON properties, or as words of CQL2-text
    outside quoted strings (``'productType'`` is a value, ``"productType"`` a name)."""
    import json

    try:
        names = set(_names(json.loads(text)))
    except ValueError:
        bare = re.sub(r"'(?:[^']|'')*'", "''", text)
        names = _words(bare)
    return [old for old in RENAMED if old in names]


def _words(text: str) -> set[str]:
    """The names of a CQL2-text filter: bare words and double-quoted identifiers."""
    return {quoted or bare for quoted, bare in re.findall(r'"([^"]+)"|([A-Za-z_][\w:.]*)', text)}


def renamed_hint(text: str | None) -> str:
    """`` (… was renamed …)`` for a filter that names old queryables, else ``""``."""
    used = _used(text) if text else []
    if not used:
        return ""
    pairs = ", ".join(f"{old} is now {RENAMED[old]}" for old in used)
    return f" (MAAP renamed its queryables in February 2026: {pairs})"


def renamed_pairs(properties: Iterable[str]) -> list[tuple[str, str]]:
    """(old name, new name) for each renamed queryable of which ``properties`` hold either
    name (a catalogue listing the old names, as MAAP's queryables did into 2026, or the new)."""
    present = set(properties)
    return [(old, new) for old, new in RENAMED.items() if old in present or new in present]


def renamed_notes(properties: Iterable[str]) -> list[str]:
    """What ``stacpull queryables`` says of the renamed queryables among ``properties``:
    a line per pair listed under both names, one for those under the new names only and
    one for those under the old names only."""
    present = set(properties)
    pairs = renamed_pairs(present)
    notes = [
        f"{old} is the older name of {new} (MAAP renamed it in February 2026); "
        f"both are listed, prefer {new}"
        for old, new in pairs
        if old in present and new in present
    ]
    for listed, unlisted, then in (
        (1, 0, "a --filter with an old name is rejected"),
        (0, 1, "this catalogue still lists the old names"),
    ):
        one = [p for p in pairs if p[listed] in present and p[unlisted] not in present]
        if one:
            shown = ", ".join(f"{old} → {new}" for old, new in one)
            notes.append(f"renamed in February 2026: {shown}; {then}")
    return notes
