"""A cluster mirror's scheduler attacked by bad luck: an address that does not answer."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

import stacpull
from stacpull.errors import ConfigError
from stacpull.sim import SimServer

from .conftest import L1A, TOKEN

pytest.importorskip("distributed")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_scheduler_that_does_not_answer_fails_before_the_search(
    sim: SimServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An overnight whole-mission mirror must not search for hours, then find out its
    # scheduler address is wrong: the cluster is reached before the first page is asked.
    from stacpull.cluster import driver

    monkeypatch.setattr(driver, "_WORKERS_WAIT", 0.3)  # Dask's connect timeout, short
    dest = tmp_path / "dest"
    with pytest.raises(ConfigError, match="cannot reach"):
        stacpull.mirror(
            catalog=sim.catalog_url,
            collections=[L1A],
            dest=str(dest),
            token=TOKEN,
            cluster=f"tcp://127.0.0.1:{_closed_port()}",
        )
    assert not (dest / ".stacpull" / "journal.sqlite").exists()  # no run, no search
