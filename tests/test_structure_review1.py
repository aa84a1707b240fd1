"""Issue 18's restructuring reviewed as a hostile server, hostile metadata and a full disk
would: behaviour the moves changed by accident, each pinned by a test that failed on the
merged code and holds on the code from before the issue (commit 4ad0d18).

Real servers on 127.0.0.1 only (the sim, tests/hostile.py); no mocks of the HTTP layer.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from stacpull.errors import ScrubFilter
from stacpull.sim import Faults, SimServer

from .conftest import pull

# -- logger names --------------------------------------------------------------------------


def test_transfer_logs_under_the_name_it_always_had(
    tmp_path: Path, sim: SimServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The transfer's debug lines (each request, each failed attempt) are logged under
    ``stacpull.fetch``, the name they had before fetch.py became a package: it is printed
    in every ``--debug`` line and the dashboard's log panel, and a user or a script that
    sets that logger's level (``logging.getLogger("stacpull.fetch")``) must keep doing so.
    The engine's own lines kept ``stacpull.engine`` and the token's ``stacpull.auth``."""
    caplog.set_level(logging.DEBUG, logger="stacpull")
    sim.set_faults(Faults(burst_probability=0.5, burst_length=1, retry_after=0.01, seed=3))
    result = pull(sim, tmp_path / "d", max_items=1)
    assert result.downloaded > 0 and result.retries > 0
    requests = [r for r in caplog.records if r.getMessage().startswith("GET ")]
    retried = [r for r in caplog.records if "failed (" in r.getMessage()]
    assert requests and retried
    assert {r.name for r in requests + retried} == {"stacpull.fetch"}
    # One scrubbing filter on it, as before: not one per module of the package.
    filters = logging.getLogger("stacpull.fetch").filters
    assert len([f for f in filters if isinstance(f, ScrubFilter)]) == 1
