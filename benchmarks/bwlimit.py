"""``--bwlimit``: how close a limited run gets to its rate, on the sim.

Serves a simulated collection of about ``--mb`` megabytes on 127.0.0.1 and pulls it
twice with ``stacpull download``: unlimited, then with ``--bwlimit RATE`` (default
``2M``, 2 MB/s: a 10 MB pull should take about 5 s, less the first second's burst the
bucket lets through). Prints a table and writes ``benchmarks/results/bwlimit.json``.
Run: ``python benchmarks/bwlimit.py``. Figures are never asserted in the test suite.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import stacpull
from stacpull.config import load_config
from stacpull.sim import SimCatalog, SimServer, default_collections

TOKEN = "sim-token"
COLLECTION = "BiomassLevel1aIOC"


def pull(sim: SimServer, dest: Path, bwlimit: str, concurrency: int) -> dict[str, Any]:
    """One run into a fresh ``dest``: wall seconds, bytes and the rate they make."""
    shutil.rmtree(dest, ignore_errors=True)
    started = time.perf_counter()
    result = stacpull.download(
        catalog=sim.catalog_url,
        collections=[COLLECTION],
        dest=str(dest),
        token=TOKEN,
        bwlimit=bwlimit,
        concurrency=concurrency,
    )
    seconds = time.perf_counter() - started
    assert result.ok, result
    return {
        "bwlimit": bwlimit,
        "files": result.downloaded,
        "bytes": result.bytes_downloaded,
        "seconds": round(seconds, 2),
        "MB/s": round(result.bytes_downloaded / seconds / 1e6, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bwlimit", default="2M", help="the rate to test [2M]")
    parser.add_argument("--mb", type=float, default=10.0, help="megabytes to pull [10]")
    parser.add_argument("-j", "--concurrency", type=int, default=8)
    args = parser.parse_args()
    items = 5
    # Each item has three assets; the product zip is most of an item's bytes.
    product = int(args.mb * 1e6 / items)
    rate = load_config(env={}, flags={"download.bwlimit": args.bwlimit}).download.bwlimit
    rows = []
    with (
        SimServer(SimCatalog(default_collections(count=items, product_size=product))) as sim,
        tempfile.TemporaryDirectory() as work,
    ):
        for limit in ("off", args.bwlimit):
            rows.append(pull(sim, Path(work) / "dest", limit, args.concurrency))
    limited = rows[-1]
    # The bucket starts full (one second of rate), so the ideal is (bytes - rate) / rate.
    limited["expected_s"] = round(max(limited["bytes"] - rate, 0) / rate, 2)
    print(f"{'bwlimit':>8} {'files':>5} {'MB':>7} {'seconds':>8} {'MB/s':>6} {'expected s':>10}")
    for row in rows:
        print(
            f"{row['bwlimit']:>8} {row['files']:>5} {row['bytes'] / 1e6:>7.2f} "
            f"{row['seconds']:>8.2f} {row['MB/s']:>6.2f} {row.get('expected_s', ''):>10}"
        )
    out = Path(__file__).parent / "results" / "bwlimit.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"rate": rate, "runs": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
