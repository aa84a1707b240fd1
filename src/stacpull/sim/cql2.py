"""The simulated catalogue's item filter: CQL2 text or JSON, parsed and matched by the
``cql2`` library (the OGC grammar whole: IN, LIKE, BETWEEN, IS NULL, S_INTERSECTS,
T_INTERSECTS, CASEI…), so the simulator accepts what a real STAC API accepts.

Two habits of ESA MAAP are kept on top of the library:

* **Case-insensitive values.** MAAP matched ``version = 'ba'`` against ``BA``. Here an
  ``=``, ``<>``, ``IN`` or ``LIKE`` between an item property and a string literal compares
  both sides through ``CASEI``; ``id`` and ``collection`` stay exact (they are identifiers,
  not property values), and ordering comparisons (``<``, ``>``) are left as written.
* **Unknown queryables are a 400.** A property no searched collection has is refused by
  name (``unknown queryable 'productType'``), as MAAP refused the old names after the
  February 2026 rename, unless the caller allows any name (a search over all collections
  uses the root queryables, which allow additional properties).

A property an item lacks is null: a comparison with it does not match, ``IS NULL`` does.
Every library error leaves through :class:`CQL2Error` (one boundary), which the server turns
into a 400 naming the problem.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import cql2

__all__ = ["CQL2Error", "Predicate", "parse_cql2", "parse_filter"]

Predicate = Callable[[Mapping[str, Any]], bool]

_EXACT = frozenset({"id", "collection"})  # identifiers, compared as written
_CASEI_OPS = frozenset({"=", "<>", "like"})
_TOP_LEVEL = frozenset({"id", "collection", "geometry", "bbox"})


class CQL2Error(ValueError):
    """The filter is not valid CQL2, or names a property the collections do not have."""


#: How deep a filter may nest, and how many AND/OR/NOT a text filter may chain. The cql2
#: library recurses on the native stack: a few kilobytes of parentheses, or a long chain
#: of ANDs, crashed the whole simulator (SIGSEGV) instead of being a 400.
_MAX_DEPTH = 64
_MAX_LOGIC = 1000
_LOGIC = re.compile(r"\b(?:and|or|not)\b", re.IGNORECASE)
_QUOTED = re.compile(r"'(?:[^']|'')*'")


def _bounded(source: str | dict[str, Any] | list[Any], lang: str) -> None:
    """Raise :class:`CQL2Error` for a filter nested deeper than the parser can take."""
    if isinstance(source, str) and lang == "cql2-text":
        bare = _QUOTED.sub("''", source)  # parentheses and words inside literals are text
        depth = deepest = 0
        for ch in bare:
            depth += (ch == "(") - (ch == ")")
            deepest = max(deepest, depth)
        if deepest > _MAX_DEPTH or len(_LOGIC.findall(bare)) > _MAX_LOGIC:
            raise CQL2Error(
                f"filter nests deeper than {_MAX_DEPTH} parentheses or chains more than "
                f"{_MAX_LOGIC} AND/OR/NOT"
            )
        return
    level: list[tuple[Any, int]] = [(source, 0)]
    while level:  # iterative: a deep tree must not exhaust Python's stack either
        node, depth = level.pop()
        if depth > 2 * _MAX_DEPTH:  # a dict and its args list are two levels
            raise CQL2Error(f"filter nests deeper than {_MAX_DEPTH} expressions")
        children = node.values() if isinstance(node, dict) else node
        if isinstance(node, dict | list):
            level.extend((child, depth + 1) for child in children)


def _property(node: Any) -> str | None:
    if isinstance(node, dict) and set(node) == {"property"} and isinstance(node["property"], str):
        return node["property"]
    return None


def _casei(node: Any) -> dict[str, Any]:
    return {"op": "casei", "args": [node]}


def _rewrite(node: Any, *, casei: bool = True) -> Any:
    """The expression in CQL2 1.0 JSON (``BETWEEN``'s pre-1.0 ``[low, high]`` list
    flattened), and with MAAP's case-insensitive value comparisons made explicit."""
    if isinstance(node, list):
        return [_rewrite(n, casei=casei) for n in node]
    if not isinstance(node, dict) or "op" not in node:
        return node
    op, args = str(node["op"]).lower(), node.get("args", [])
    if op == "between" and len(args) == 2 and isinstance(args[1], list) and len(args[1]) == 2:
        args = [args[0], *args[1]]  # the pre-1.0 form, [value, [low, high]], still sent
    name = _property(args[0]) if len(args) == 2 else None
    if casei and name is not None and name not in _EXACT:
        value = args[1]
        if op in _CASEI_OPS and isinstance(value, str):
            return {"op": op, "args": [_casei(args[0]), _casei(value)]}
        if (
            op == "in"
            and isinstance(value, list)
            and value
            and all(isinstance(v, str) for v in value)
        ):
            # CASEI inside an IN list does not reduce in cql2 0.6: spell it as ORs.
            ors = [{"op": "=", "args": [_casei(args[0]), _casei(v)]} for v in value]
            return ors[0] if len(ors) == 1 else {"op": "or", "args": ors}
    return {**node, "op": op, "args": [_rewrite(a, casei=casei) for a in args]}


def _names(node: Any) -> Iterator[str]:
    """Every property the expression reads."""
    if isinstance(node, list):
        for n in node:
            yield from _names(n)
    elif isinstance(node, dict):
        if (name := _property(node)) is not None:
            yield name
        else:
            for value in node.values():
                yield from _names(value)


def _compile(source: str | dict[str, Any], lang: str) -> dict[str, Any]:
    """The filter as CQL2-JSON, validated against the CQL2 schema by the library."""
    try:
        if lang == "cql2-text":
            if not isinstance(source, str):
                raise CQL2Error("filter-lang cql2-text needs the filter as a string")
            _bounded(source, lang)
            expr = cql2.parse_text(source)
        elif lang == "cql2-json":
            tree_in = json.loads(source) if isinstance(source, str) else source
            _bounded(tree_in, lang)
            expr = cql2.Expr(tree_in)
        else:
            raise CQL2Error(f"filter-lang {lang!r} is not supported (cql2-text or cql2-json)")
        tree: dict[str, Any] = _rewrite(expr.to_json(), casei=False)
        cql2.Expr(tree).validate()
    except CQL2Error:
        raise
    except json.JSONDecodeError as exc:
        raise CQL2Error(f"filter is not JSON ({exc})") from exc
    except Exception as exc:  # cql2 raises ParseError, ValidationError or a bare Exception
        first = " ".join(str(exc).split())[:300]
        raise CQL2Error(f"not valid {lang}: {first}") from exc
    return tree


def parse_filter(
    source: str | dict[str, Any],
    lang: str = "cql2-text",
    known: Callable[[str], bool] = lambda _n: True,
) -> Predicate:
    """Compile a filter (text, or JSON as text or a dict) into a predicate over an item."""
    tree = _compile(source, lang)
    names = sorted(set(_names(tree)))
    for name in names:
        if not known(name):
            raise CQL2Error(f"unknown queryable {name!r}")
    expr = cql2.Expr(_rewrite(tree))

    def predicate(item: Mapping[str, Any]) -> bool:
        props = dict(item.get("properties") or {})
        for name in names:
            if name not in _TOP_LEVEL:
                props.setdefault(name, None)
        try:
            return bool(expr.matches({**item, "properties": props}))
        except Exception:  # a comparison with null does not reduce: no match
            return False

    return predicate


def parse_cql2(text: str, known: Callable[[str], bool] = lambda _n: True) -> Predicate:
    """Compile CQL2 text into a predicate over a flat property mapping (``id`` and
    ``collection`` beside the properties), as the collection search matches collections."""
    inner = parse_filter(text, "cql2-text", known)

    def predicate(flat: Mapping[str, Any]) -> bool:
        props = {k: v for k, v in flat.items() if k not in _TOP_LEVEL}
        top = {k: flat[k] for k in _TOP_LEVEL if k in flat}
        return inner({"type": "Feature", "geometry": None, **top, "properties": props})

    return predicate
