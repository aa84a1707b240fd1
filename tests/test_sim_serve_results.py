"""``sim serve --shuffle --duplicates N``: the search results as MAAP returns them, for any
STAC client pointed at a running simulator (the knobs of :class:`stacpull.sim.ResultOrder`)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest

from .conftest import L1A, cli


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served() -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "stacpull", "sim", "serve", "--port", str(port), "--items", "12",
         "--shuffle", "--duplicates", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    root = f"http://127.0.0.1:{port}/catalogue/"
    try:
        for _ in range(200):  # the interpreter starting on a loaded machine: up to 20 s
            if proc.poll() is not None:
                raise AssertionError(proc.communicate()[1].decode())
            try:
                urllib.request.urlopen(root, timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError("sim serve did not answer within 20 s")
        yield root
    finally:
        proc.terminate()
        proc.communicate(timeout=10)  # reads and closes its stderr


def _ids(url: str) -> tuple[list[str], str | None]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        page = json.load(resp)
    nxt = next((link["href"] for link in page["links"] if link["rel"] == "next"), None)
    return [f["id"] for f in page["features"]], nxt


def test_sim_serve_repeats_and_shuffles_results_when_asked(served: str) -> None:
    url: str | None = f"{served}search?collections={L1A}&limit=5"
    pages: list[list[str]] = []
    while url is not None:
        ids, url = _ids(url)
        pages.append(ids)
    listed = [i for page in pages for i in page]
    assert len(listed) > len(set(listed))  # items listed again on a later page
    assert pages[1][:2] != sorted(pages[1][:2]) or pages[0] != sorted(pages[0])
    assert set(pages[0][-2:]) & set(pages[1])  # the repeats are the last page's last items


def test_sim_serve_help_names_the_result_knobs() -> None:
    code, out, _err = cli("sim", "serve", "--help")
    assert code == 0 and "--shuffle" in out and "--duplicates" in out
    code, _out, err = cli("sim", "serve", "--duplicates", "-1")
    assert code != 0 and "-1" in err
