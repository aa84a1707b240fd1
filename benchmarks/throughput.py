"""Throughput of stacpull against the notebook's sequential ``requests`` loop, on the sim.

Serves a simulated MAAP collection on 127.0.0.1 and downloads the same files two ways:
stacpull (``-j`` workers, verified) and the reference notebook's loop (one
``requests.get`` after another, 8 MiB chunks, no verification). Prints a table and writes
JSON to ``benchmarks/results/throughput.json``. Run: ``python benchmarks/throughput.py``.
Figures are for comparison on one machine, never asserted in the test suite.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

import stacpull
from stacpull.plan import PlanRules, plan_item
from stacpull.sim import SimCatalog, SimOptions, SimServer, default_collections

TOKEN = "sim-token"
COLLECTIONS = ["BiomassLevel1aIOC", "BiomassLevel1cIOC"]


def notebook_loop(sim: SimServer, dest: Path) -> tuple[int, int]:
    """The reference notebook's download loop, on the same files stacpull fetches."""
    files = size = 0
    rules = PlanRules()
    for collection in COLLECTIONS:
        for index in range(sim.catalog.specs[collection].count):
            jobs, _ = plan_item(sim.catalog.item(collection, index), rules)
            for job in jobs:
                path = dest / job.dest
                path.parent.mkdir(parents=True, exist_ok=True)
                headers = {"Authorization": f"Bearer {TOKEN}"}
                response = requests.get(job.url, headers=headers, stream=True, timeout=60)
                response.raise_for_status()
                with path.open("wb") as f:
                    for chunk in response.iter_content(chunk_size=8 * 1024 * 1024):
                        size += f.write(chunk)
                files += 1
    return files, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20, help="items per collection")
    parser.add_argument("--product-size", type=int, default=20_000_000)
    parser.add_argument("-j", "--concurrency", type=int, default=8)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each response")
    args = parser.parse_args()

    rows: list[dict[str, Any]] = []
    specs = default_collections(args.items, args.product_size)
    options = SimOptions(latency=args.latency)
    with SimServer(SimCatalog(specs), options=options) as sim, tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        start = time.perf_counter()
        result = stacpull.download(
            catalog=sim.catalog_url,
            collections=COLLECTIONS,
            dest=str(base / "stacpull"),
            token=TOKEN,
            concurrency=args.concurrency,
        )
        seconds = time.perf_counter() - start
        assert result.ok, result
        rows.append(
            {
                "tool": f"stacpull -j{args.concurrency}",
                "files": result.downloaded,
                "bytes": result.bytes_downloaded,
                "seconds": seconds,
                "verified": True,
            }
        )
        shutil.rmtree(base / "stacpull")
        start = time.perf_counter()
        files, size = notebook_loop(sim, base / "notebook")
        seconds = time.perf_counter() - start
        rows.append(
            {
                "tool": "notebook requests loop",
                "files": files,
                "bytes": size,
                "seconds": seconds,
                "verified": False,
            }
        )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n{'tool':<26} {'files':>6} {'MB':>8} {'seconds':>8} {'MB/s':>8}  verified")
    for row in rows:
        row["mb_per_s"] = row["bytes"] / row["seconds"] / 1e6
        print(
            f"{row['tool']:<26} {row['files']:>6} {row['bytes'] / 1e6:>8.1f} {row['seconds']:>8.2f}"
            f" {row['mb_per_s']:>8.1f}  {'yes' if row['verified'] else 'no'}"
        )
    speedup = rows[0]["mb_per_s"] / rows[1]["mb_per_s"]
    print(
        f"\nstacpull / notebook loop: {speedup:.1f}x; peak RSS of this process {peak_mb:.0f} MB"
        " (server, stacpull and the loop together)"
    )
    print("note: the simulated server shares this process and its 2 cores with the clients.")
    out = Path(__file__).parent / "results" / "throughput.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "machine": {
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                    "cpus": __import__("os").cpu_count(),
                },
                "args": vars(args),
                "rows": rows,
                "speedup": speedup,
                "peak_rss_mb": peak_mb,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
