"""Soak: mirror a few thousand files through a hostile network and count what it cost.

Serves the simulated BIOMASS L1c collection (2026 keys: product zip, quicklook, KMZ,
three enclosures and a thumbnail per item) on 127.0.0.1 with fault knobs on: by default
30 % of responses cut mid-body and 5 % of requests answered 503/429 with ``Retry-After``.
``stacpull.mirror`` pulls every asset; then ``stacpull verify`` re-hashes the mirror, and a
second mirror run must send no data request.

Prints files verified, bytes re-downloaded as a share of the mirror (what a cut throws
away: zipper products restart from zero, range-capable files only lose bytes in flight),
retries, the faults injected and the wall time; writes ``benchmarks/results/soak.json``.
Run: ``python benchmarks/soak.py [--items 400] [--cut 0.3] [--errors 0.05]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import stacpull
from stacpull.audit import verify_dest
from stacpull.events import Event, JobFinished
from stacpull.sim import (
    CollectionSpec,
    Faults,
    SimCatalog,
    SimOptions,
    SimServer,
    default_collections,
)

TOKEN = "sim-token"
COLLECTION = "BiomassLevel1cIOC"


def _spec(items: int, product_size: int, enclosure_size: int) -> CollectionSpec:
    base = next(s for s in default_collections(items, product_size) if s.id == COLLECTION)
    return replace(base, enclosure_size=enclosure_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=400, help="items (7 files each)")
    parser.add_argument("--product-size", type=int, default=200_000)
    parser.add_argument("--enclosure-size", type=int, default=48_000)
    parser.add_argument("--cut", type=float, default=0.3, help="share of responses cut")
    parser.add_argument("--errors", type=float, default=0.05, help="share answered 503/429")
    parser.add_argument("-j", "--concurrency", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    faults = Faults(
        cut_probability=args.cut,
        burst_probability=args.errors,
        burst_length=1,
        retry_after=1.0,
        seed=args.seed,
    )
    catalog = SimCatalog([_spec(args.items, args.product_size, args.enclosure_size)])
    dest = Path(tempfile.mkdtemp(prefix="stacpull-soak-"))
    # bytes received beyond each file's size, split by whether the server serves ranges
    waste = {"zipper": 0, "ranged": 0}

    def tally(event: Event) -> None:
        if isinstance(event, JobFinished):
            o = event.outcome
            kind = "zipper" if o.job.size is None and o.job.checksum is None else "ranged"
            waste[kind] += o.bytes_downloaded - (o.size or 0)

    try:
        with SimServer(catalog, options=SimOptions(faults=faults, log_size=10)) as sim:
            mirror = {
                "catalog": sim.catalog_url,
                "collections": [COLLECTION],
                "assets": ["all"],
                "dest": str(dest),
                "token": TOKEN,
                "concurrency": args.concurrency,
                "per_host": args.concurrency,
                "retries": 20,
                "max_backoff": 5.0,
                "page_size": 100,
            }
            began = time.monotonic()
            first = stacpull.mirror(sink=tally, **mirror)
            wall = time.monotonic() - began
            injected = sim.fault_counts
            sent_first = sim.bytes_sent
            verify = verify_dest(dest)
            second = stacpull.mirror(**mirror)
            sent_second = sim.bytes_sent - sent_first
    finally:
        shutil.rmtree(dest, ignore_errors=True)

    mirror_bytes = first.bytes_on_disk
    wasted = first.bytes_downloaded - mirror_bytes
    figures = {
        "machine": f"{platform.machine()}, {platform.python_implementation()} "
        f"{platform.python_version()}",
        "items": args.items,
        "files": first.downloaded,
        "failed": first.failed,
        "mirror_bytes": mirror_bytes,
        "bytes_received": first.bytes_downloaded,
        "redownloaded_share": wasted / mirror_bytes if mirror_bytes else 0.0,
        "redownloaded_zipper_bytes": waste["zipper"],
        "redownloaded_ranged_bytes": waste["ranged"],
        "retries": first.retries,
        "faults": injected,
        "seconds": round(wall, 2),
        "verified_by_verify": verify.checked - len(verify.problems),
        "rot_found": len(verify.problems),
        "rerun_downloaded": second.downloaded,
        "rerun_data_bytes": sent_second,
    }
    print(f"soak: {args.items} items, cut {args.cut:.0%}, 503/429 {args.errors:.0%}")
    print(f"  files verified     {first.downloaded} of {first.downloaded + first.failed}")
    print(f"  mirror size        {mirror_bytes / 1e6:.1f} MB")
    print(
        f"  re-downloaded      {wasted / 1e6:.2f} MB = {figures['redownloaded_share']:.1%} "
        "of the mirror"
    )
    print(
        f"                     zipper products (restart from zero) {waste['zipper'] / 1e6:.2f} MB,"
        f" range-capable files {waste['ranged'] / 1e6:.2f} MB"
    )
    print(f"  retries            {first.retries}")
    print(f"  faults injected    {json.dumps(injected, sort_keys=True)}")
    print(f"  wall time          {wall:.1f} s")
    print(f"  stacpull verify    {figures['verified_by_verify']} ok, {len(verify.problems)} rotten")
    print(f"  second run         {second.downloaded} downloaded, {sent_second} data bytes sent")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "soak.json").write_text(json.dumps(figures, indent=2))
    if first.failed or not verify.ok or second.downloaded:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
