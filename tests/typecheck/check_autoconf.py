"""Checked by ``mypy --strict``, never run (as check_api.py): the connection keywords take
``"auto"`` or a number, and no other word."""

from __future__ import annotations

import stacpull


def counts() -> None:
    """``"auto"`` and numbers pass; another word is a type error."""
    stacpull.download(concurrency="auto", per_host=16, segments="auto")
    stacpull.mirror(concurrency=64, per_host="auto", segments=4)
    options: stacpull.Options = {"concurrency": "auto", "per_host": "auto"}
    stacpull.dry_run(**options)

    stacpull.download(per_host="many")  # type: ignore[arg-type]
    stacpull.download(segments="eight")  # type: ignore[arg-type]
