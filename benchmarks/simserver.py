"""The simulated catalogue in its own process, for the suite's memory scenario.

Run: ``python benchmarks/simserver.py --items 100000`` (prints its port). Items carry tiny
public thumbnails, so a mirror of them measures stacpull's per-item cost, not bandwidth.
"""

from __future__ import annotations

import argparse
import contextlib
import threading

from stacpull.sim import SimCatalog, SimServer, default_collections


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    args = parser.parse_args()
    with SimServer(SimCatalog(default_collections(args.items, 20_000))) as sim:
        print(sim.port, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
