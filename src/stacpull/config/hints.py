"""The "did you mean" of every config error: the key, section, profile or variable a typo
most likely meant (``maxitems`` is ``max_items``, ``[dowload]`` is ``[download]``)."""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["closest", "did_you_mean", "folded_key"]


def folded_key(name: str) -> str:
    """A key as a typo is compared: ``Max-Items`` and ``maxitems`` are ``max_items``."""
    return re.sub(r"[\s_-]", "", name).lower()


def closest(name: str, choices: Iterable[str]) -> str | None:
    """The choice ``name`` most likely meant: the one equal but for case, ``_`` and ``-``,
    else difflib's closest of the folded names (so ``maxitems`` is ``max_items``, not
    ``max_bytes``), else None."""
    folded: dict[str, str] = {}
    for choice in choices:
        folded.setdefault(folded_key(choice), choice)
    key = folded_key(name)
    if key in folded:
        return folded[key]
    import difflib  # only for a typo: every command reads the config

    hint = difflib.get_close_matches(key, list(folded), n=1)
    return folded[hint[0]] if hint else None


def did_you_mean(name: str, choices: Iterable[str], form: str) -> str:
    """' (did you mean X?)' for the closest choice, formatted with ``form``, or ''."""
    hint = closest(name, choices)
    return f" (did you mean {form.format(hint)}?)" if hint is not None else ""
