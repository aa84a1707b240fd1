"""``stacpull status --shards``: a sharded DEST's buckets, who owns each (its lease's epoch
and owner), how its hold ended or when its owner last beat, and what it had done then."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ..journal import JOURNAL_DIR
from ..shards.layout import Layout
from ..shards.lease import LeaseRow, read_lease
from ..shards.sync import bucket_dirs
from ..units import human_bytes

__all__ = ["print_shards", "shards_status"]

#: A bucket's entry, in this order (a bucket never taken: epoch 0, nothing done).
_FIELDS = ("bucket", "epoch", "owner", "state", "started", "heartbeat", "files", "bytes")


def shards_status(dest: Path) -> dict[str, Any]:
    """The shards of ``dest`` as plain data: the layout's B (None: never sharded) and one
    entry per bucket journal: bucket, epoch, owner, state, started, heartbeat, files, bytes."""
    layout = Layout.read(dest / JOURNAL_DIR)
    rows: list[dict[str, Any]] = []
    for bucket, directory in bucket_dirs(dest):
        lease = read_lease(directory, bucket) or LeaseRow(bucket, 0, None, None, None, 0, 0, None)
        rows.append({name: getattr(lease, name) for name in _FIELDS})
    return {"buckets": layout.buckets if layout else None, "shards": rows}


def _age(heartbeat: float | None, now: float) -> str:
    if heartbeat is None:
        return "-"
    return f"{max(0.0, now - heartbeat):.0f} s ago"


def print_shards(out: Console, view: dict[str, Any], dest: str, now: float | None = None) -> None:
    """The shards table (every id and owner whole: the console soft-wraps)."""
    if view["buckets"] is None:
        out.print(f"{dest}: no shards (no cluster run used this DEST)", markup=False)
        return
    rows = view["shards"]
    out.print(f"{dest}: {view['buckets']} buckets, {len(rows)} with a journal", markup=False)
    if not rows:
        return
    clock = time.time() if now is None else now
    table = Table(box=None, pad_edge=False)
    for name in ("bucket", "epoch", "owner", "state", "heartbeat", "files", "bytes"):
        table.add_column(name, justify="right" if name in ("bucket", "epoch", "files") else "left")
    for row in rows:
        table.add_row(
            f"b{row['bucket']:03d}",
            str(row["epoch"]),
            row["owner"] or "-",
            row["state"] or "-",
            _age(row["heartbeat"], clock),
            str(row["files"]),
            human_bytes(row["bytes"]),
        )
    out.print(table)
