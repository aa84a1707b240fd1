"""Sizes as people read them, for listings, plans and the dashboard alike.

A module of its own so the listing commands can print sizes without loading the dashboard
and rich's live display (:mod:`stacpull.dashboard` re-exports :func:`human_bytes`).
"""

from __future__ import annotations

__all__ = ["human_bytes"]


def human_bytes(n: float) -> str:
    """1234567 → '1.2 MB' (decimal units, as network rates are quoted)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
