"""Render the live dashboard mid-run to docs/dashboard.svg (the README's screenshot).

Runs a real download against the simulated catalogue, throttled and with a few faults so
there is something to see (retries, a per-host view, a sparkline with history), takes
the frame rich would draw on a 100x32 terminal after ``--after`` seconds, and stops the
run. Usage: python scripts/screenshot.py [--after 25] [--out docs/dashboard.svg]
"""

from __future__ import annotations

import argparse
import io
import tempfile
from pathlib import Path

import anyio
from rich.console import Console

from stacpull.api import build_config
from stacpull.dashboard import render_dashboard
from stacpull.engine import run
from stacpull.runtypes import RunOptions, StopSignal
from stacpull.sim import Faults, SimCatalog, SimOptions, SimServer, default_collections
from stacpull.stats import RunStats

WIDTH, HEIGHT = 100, 32


async def capture(sim: SimServer, dest: Path, after: float, out: Path) -> None:
    config = build_config(
        catalog=sim.catalog_url,
        collections=["BiomassLevel1aIOC", "BiomassLevel1cIOC"],
        dest=str(dest),
        concurrency=8,
        backoff=0.5,
        max_backoff=2.0,
    ).with_values({"auth.token": "sim-token"})
    stats = RunStats()
    stop = StopSignal()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: run(config, stats=stats, stop=stop, options=RunOptions(grace=0.5)))
        await anyio.sleep(after)
        console = Console(
            record=True, width=WIDTH, height=HEIGHT, force_terminal=True, file=io.StringIO()
        )
        console.print(render_dashboard(stats.snapshot(), width=WIDTH, height=HEIGHT))
        print(console.export_text(clear=False))
        out.parent.mkdir(parents=True, exist_ok=True)
        console.save_svg(str(out), title="stacpull download — mid-run")
        stop.request("screenshot taken")
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--after", type=float, default=25.0, help="seconds into the run")
    parser.add_argument("--out", type=Path, default=Path("docs/dashboard.svg"))
    args = parser.parse_args()
    faults = Faults(rate_limit=1_200_000, cut_probability=0.04, burst_probability=0.01, seed=7)
    catalog = SimCatalog(default_collections(60, 12_000_000))
    with (
        SimServer(catalog, options=SimOptions(faults=faults)) as sim,
        tempfile.TemporaryDirectory() as dest,
    ):
        anyio.run(capture, sim, Path(dest), args.after, args.out)


if __name__ == "__main__":
    main()
