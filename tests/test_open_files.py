"""A run stays inside the process's open-file limit (``ulimit -n``): every connection costs
a socket and the file descriptors of what it writes, so the connections a run may hold are
bounded by the limit, whatever the windows and the ceilings say. Before, a run with a
fixed window of 32 under a limit of 64 stopped with exit 3 and "cannot write …: Too many
open files", blaming DEST."""

from __future__ import annotations

import dataclasses
import os
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stacpull.limits import connection_cap, open_files_budget
from stacpull.sim import Faults, SimCatalog, SimOptions, SimServer, default_collections

from .conftest import L1C, files_under

LIMIT = 64


@pytest.fixture
def slow() -> Iterator[SimServer]:
    """40 L1c items of two 100 kB rasters, 1 MB/s a connection and 50 ms to each answer:
    a window of 32 holds 32 connections at once for the whole run."""
    spec = next(s for s in default_collections(40, 50_000) if s.id == L1C)
    catalog = SimCatalog([dataclasses.replace(spec, enclosure_size=100_000)])
    for index in range(40):
        catalog.item(L1C, index)
    options = SimOptions(latency=0.05, faults=Faults(rate_limit=1_000_000), require_auth=False)
    with SimServer(catalog, options=options) as server:
        yield server


def _limited(soft: int, hard: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_NOFILE as Linux counts it")
def test_a_fixed_window_of_32_under_a_limit_of_64_finishes_within_it(
    slow: SimServer, tmp_path: Path
) -> None:
    env = {**os.environ, "STACPULL_DOWNLOAD_ADAPTIVE": "false", "STACPULL_NO_USER_CONFIG": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "stacpull", "download", "--catalog", slow.catalog_url,
         "--collection", L1C, "--assets", "enclosure_i_abs_tiff,enclosure_i_phase_tiff",
         "--dest", str(tmp_path), "--per-host", "32", "--segments", "1", "--dashboard", "none"],
        preexec_fn=lambda: _limited(LIMIT, LIMIT),  # no room to raise it either
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len(files_under(tmp_path)) == 80
    assert slow.peak_connections <= connection_cap(LIMIT)


def test_the_cap_leaves_room_for_the_run_s_own_files() -> None:
    assert connection_cap(64) >= 1 and 3 * connection_cap(64) <= 64 - 16
    assert connection_cap(1024) >= 200  # a default Linux limit: no ceiling binds
    assert connection_cap(20) == 1  # never none: a run always makes progress
    assert connection_cap(1 << 20) == connection_cap(1 << 30)  # bounded even without a limit


def test_the_soft_limit_is_raised_towards_the_hard_one() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
        budget = open_files_budget()
        assert budget == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        assert budget >= min(hard, 4096) or hard == resource.RLIM_INFINITY
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_too_many_open_files_is_named_as_such_never_as_dest_gone(tmp_path: Path) -> None:
    import errno

    from stacpull.errors import StorageError
    from stacpull.transfer.partfile import storage_error

    error = storage_error(OSError(errno.EMFILE, "Too many open files"), tmp_path / "f.part")
    assert isinstance(error, StorageError)
    assert "ulimit -n" in str(error) and "download.per_host" in str(error)
