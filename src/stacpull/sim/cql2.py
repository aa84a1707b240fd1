"""A CQL2-text subset for the simulated catalogue: enough to run MAAP's own examples.

Grammar (keywords case-insensitive, as MAAP accepts ``and``)::

    expr  := term (OR term)*
    term  := factor (AND factor)*
    factor:= NOT factor | '(' expr ')' | operand op operand
    op    := = | <> | < | > | <= | >=
    operand := property | 'string' | number | TIMESTAMP('…') | DATE('…') | TRUE | FALSE

Properties may contain ``:`` (``product:type``). Errors raise :class:`CQL2Error` with the
position, which the server turns into a 400 like a real STAC API.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = ["CQL2Error", "Predicate", "parse_cql2"]

Predicate = Callable[[Mapping[str, Any]], bool]


class CQL2Error(ValueError):
    """The filter is not valid CQL2 text (of the supported subset)."""


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^']|'')*')
      | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
      | (?P<op><>|<=|>=|=|<|>)
      | (?P<paren>[()])
      | (?P<word>[A-Za-z_][A-Za-z0-9_:.\-]*)
      | (?P<quoted>"[^"]+")
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str
    text: str
    pos: int


def _tokenize(text: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise CQL2Error(f"unexpected character {text[pos:].lstrip()[:1]!r} at position {pos}")
        kind = m.lastgroup or ""
        tokens.append(_Tok(kind, m.group(kind), m.start(kind)))
        pos = m.end()
    return tokens


def _to_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        return None
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "<>": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    ">=": lambda a, b: a >= b,
}


class _Parser:
    def __init__(self, text: str, known: Callable[[str], bool]) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0
        self.known = known

    def peek(self) -> _Tok | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise CQL2Error("unexpected end of filter")
        self.i += 1
        return tok

    def keyword(self, word: str) -> bool:
        tok = self.peek()
        if tok is not None and tok.kind == "word" and tok.text.upper() == word:
            self.i += 1
            return True
        return False

    def parse(self) -> Predicate:
        if not self.tokens:
            raise CQL2Error("empty filter")
        pred = self.expr()
        tok = self.peek()
        if tok is not None:
            raise CQL2Error(f"unexpected {tok.text!r} at position {tok.pos}")
        return pred

    def expr(self) -> Predicate:
        parts = [self.term()]
        while self.keyword("OR"):
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else (lambda p: any(f(p) for f in parts))

    def term(self) -> Predicate:
        parts = [self.factor()]
        while self.keyword("AND"):
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else (lambda p: all(f(p) for f in parts))

    def factor(self) -> Predicate:
        if self.keyword("NOT"):
            inner = self.factor()
            return lambda p: not inner(p)
        tok = self.peek()
        if tok is not None and tok.kind == "paren" and tok.text == "(":
            self.take()
            inner = self.expr()
            close = self.take()
            if close.text != ")":
                raise CQL2Error(f"expected ')' at position {close.pos}")
            return inner
        left = self.operand()
        op = self.take()
        if op.kind != "op":
            raise CQL2Error(f"expected a comparison operator at position {op.pos}, got {op.text!r}")
        right = self.operand()
        compare = _OPS[op.text]

        def pred(props: Mapping[str, Any]) -> bool:
            a, b = left(props), right(props)
            if a is None or b is None:
                return False
            if isinstance(a, datetime) or isinstance(b, datetime):
                a, b = _to_time(a), _to_time(b)
                if a is None or b is None:
                    return False
            try:
                return compare(a, b)
            except TypeError:
                return False

        return pred

    def operand(self) -> Callable[[Mapping[str, Any]], Any]:
        tok = self.take()
        if tok.kind == "string":
            value = tok.text[1:-1].replace("''", "'")
            return lambda _p: value
        if tok.kind == "number":
            num = float(tok.text) if any(c in tok.text for c in ".eE") else int(tok.text)
            return lambda _p: num
        if tok.kind in ("word", "quoted"):
            name = tok.text.strip('"')
            upper = name.upper()
            if upper in ("TIMESTAMP", "DATE") and tok.kind == "word":
                self._expect("(")
                arg = self.take()
                if arg.kind != "string":
                    raise CQL2Error(f"{upper} expects a quoted string at position {arg.pos}")
                self._expect(")")
                stamp = _to_time(arg.text[1:-1])
                if stamp is None:
                    raise CQL2Error(f"invalid {upper} literal {arg.text} at position {arg.pos}")
                return lambda _p: stamp
            if upper in ("TRUE", "FALSE") and tok.kind == "word":
                flag = upper == "TRUE"
                return lambda _p: flag
            if not self.known(name):
                raise CQL2Error(f"unknown queryable {name!r} at position {tok.pos}")
            return lambda p: p.get(name)
        raise CQL2Error(f"unexpected {tok.text!r} at position {tok.pos}")

    def _expect(self, text: str) -> None:
        tok = self.take()
        if tok.text != text:
            raise CQL2Error(f"expected {text!r} at position {tok.pos}, got {tok.text!r}")


def parse_cql2(text: str, known: Callable[[str], bool] = lambda _n: True) -> Predicate:
    """Compile CQL2 text into a predicate over a flat property mapping."""
    return _Parser(text, known).parse()
