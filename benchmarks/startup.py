"""How long the command line takes to start: the median wall time of N runs of
``stacpull --version``, ``--help``, ``collections --help``, ``search --help`` and
``config show``, each a fresh process, plus whether aiohttp was imported on the way (it
should not be: only transfers need it). Two floors frame the figures: a Python that does
nothing, and one that only imports click (what any click command line pays).

Run: ``python benchmarks/startup.py [-n 20]``; prints a table and writes
``benchmarks/results/startup.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS: tuple[tuple[str, ...], ...] = (
    ("--version",),
    ("--help",),
    ("collections", "--help"),
    ("search", "--help"),
    ("config", "show"),
)

#: Runs the CLI as ``stacpull ARGS`` would, then says on stderr whether aiohttp was loaded.
_RUNNER = (
    "import sys\n"
    "from stacpull.cli import main\n"
    "try:\n"
    "    main(sys.argv[1:], prog_name='stacpull')\n"
    "except SystemExit:\n"
    "    pass\n"
    "sys.stderr.write('\\naiohttp=%s\\n' % ('aiohttp' in sys.modules))\n"
)


def _time(args: tuple[str, ...], runs: int) -> tuple[float, float, bool]:
    """(median s, min s, aiohttp imported) over ``runs`` fresh processes."""
    times = []
    loaded = False
    env_cmd = [sys.executable, "-c", _RUNNER, *args]
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(env_cmd, capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - start)
        loaded = "aiohttp=True" in done.stderr
    return statistics.median(times), min(times), loaded


def _bare(runs: int, code: str = "pass") -> float:
    """The median start of a Python that runs only ``code``: a floor under every figure."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=20, help="processes per command")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "startup.json"
    )
    args = parser.parse_args()
    figures: dict[str, object] = {
        "runs": args.runs,
        "python_bare_s": _bare(args.runs),
        "python_import_click_s": _bare(args.runs, "import click"),
    }
    print(
        f"startup, median of {args.runs} runs (bare python: {figures['python_bare_s']:.3f} s, "
        f"import click: {figures['python_import_click_s']:.3f} s)"
    )
    print(f"  {'command':<32} {'median':>8} {'min':>8}  aiohttp")
    rows = {}
    for command in COMMANDS:
        median, best, loaded = _time(command, args.runs)
        name = "stacpull " + " ".join(command)
        rows[name] = {"median_s": median, "min_s": best, "imports_aiohttp": loaded}
        print(f"  {name:<32} {median:>7.3f}s {best:>7.3f}s  {'yes' if loaded else 'no'}")
    figures["commands"] = rows
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
