"""The benchmark suite refuses a misspelt scenario, tool or network before it runs
anything: a typo must not cost half a suite (it used to stop with a traceback after the
rows before it had run)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SUITE = Path(__file__).resolve().parent.parent / "benchmarks" / "suite.py"


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--tools", "stacpull,wget", "unknown tool wget (choose from stacpull, aria2c"),
        ("--scenarios", "2mib,4gib", "unknown scenario 4gib (choose from 1gib, 2mib"),
        ("--networks", "lan", "unknown network lan (choose from loopback, wan)"),
    ],
)
def test_the_suite_refuses_unknown_names_before_running(
    tmp_path: Path, flag: str, value: str, message: str
) -> None:
    out = tmp_path / "suite.json"
    done = subprocess.run(
        [sys.executable, str(SUITE), flag, value, "--out", str(out), "--memory-items", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert message in done.stderr
    assert not out.exists()
