"""Issue 17, review of the merged branches: what one branch made true for some commands and
another branch's command still missed."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import pytest

from stacpull.sim import SimCatalog, SimServer, default_collections

from .conftest import L1C, TOKEN, cli

# Sequences a terminal acts on (retitle, clear, blink) that rich never emits itself.
_EVIL_ID = "EVIL\x1b]0;pwned\x07\x1b[2J"
_EVIL_KEY = "k\x1b[5mey"
_ACTED_ON = ("\x1b]", "\x1b[2J", "\x1b[5m", "\x07")
_TERMINAL = {"TTY_COMPATIBLE": "1", "COLUMNS": "200"}


@pytest.fixture
def evil_sim() -> Iterator[SimServer]:
    """A catalogue with an item whose id holds terminal escapes (refused) and a good item
    one of whose asset keys holds one."""
    with SimServer(SimCatalog(default_collections(count=1, product_size=20_000))) as server:
        item = copy.deepcopy(server.catalog.item(L1C, 0))
        item["id"] = _EVIL_ID
        server.catalog.add_item(L1C, item)
        good = copy.deepcopy(server.catalog.item(L1C, 0))
        good["id"] = "GOOD"
        good["assets"][_EVIL_KEY] = {**good["assets"]["product"], "href": "http://127.0.0.1:9/x"}
        server.catalog.add_item(L1C, good)
        yield server


@pytest.mark.parametrize("env", [{}, _TERMINAL], ids=["piped", "terminal"])
def test_a_catalogues_control_characters_never_reach_the_terminal_from_runs_and_records(
    env: dict[str, str], evil_sim: SimServer, tmp_path: Path
) -> None:
    """The listings and one-line errors show a catalogue's control characters as escapes
    (listing.printable); the run's progress lines, its dry-run table, ``status`` and
    ``report`` sent them raw, so an item id could clear or retitle the terminal."""
    dest = str(tmp_path / "d")
    query = ("--catalog", evil_sim.catalog_url, "--collection", L1C, "--dest", dest)
    seen = ""
    for args in (
        ("download", *query, "--assets", "all", "--dry-run"),
        ("download", *query, "--assets", "all", "--dashboard", "plain", "-v",
         "--retries", "0"),
        ("status", dest),
        ("report", dest),
        ("verify", dest),
    ):  # fmt: skip
        code, out, err = cli(*args, env=env, token=TOKEN)
        assert code in (0, 1) and "Traceback" not in err, (args, code, err)
        leaked = [s for s in _ACTED_ON if s in out + err]
        assert not leaked, (args, leaked, out, err)
        seen += out + err
    assert "EVIL\\x1b]0;pwned\\x07" in seen  # still shown, as escapes


def test_the_live_dashboard_shows_a_refused_ids_control_characters_as_escapes() -> None:
    """The live view's error lines quote the last refusal, item id included."""
    import io

    from rich.console import Console

    from stacpull.dashboard import render_dashboard
    from stacpull.events import JobRefused
    from stacpull.models import Refusal
    from stacpull.stats import RunStats

    stats = RunStats()
    stats(JobRefused(Refusal(_EVIL_ID, L1C, _EVIL_KEY, "item id contains a control character")))
    screen = io.StringIO()
    Console(file=screen, force_terminal=True, width=120).print(render_dashboard(stats.snapshot()))
    assert not [s for s in _ACTED_ON if s in screen.getvalue()]
    assert "EVIL\\x1b]0;pwned" in screen.getvalue()


# -- Ctrl-C exits 130 from every command --------------------------------------------------


def _blocked_reading_stdin(pid: int) -> bool:
    """Whether process ``pid`` sits in read(0, ...) (Linux: /proc/PID/syscall)."""
    try:
        return Path(f"/proc/{pid}/syscall").read_text().startswith("0 0x0 ")
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/syscall").exists(), reason="needs Linux /proc")
def test_ctrl_c_while_download_from_stdin_waits_for_items_exits_130(tmp_path: Path) -> None:
    """``producer | stacpull download --from - ...`` interrupted while the producer is still
    searching printed click's "Aborted!" and exited 1, the code of failed files; every
    other interrupt exits 130."""
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "STACPULL_NO_USER_CONFIG": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "stacpull", "download", "--from", "-", "--dest", str(tmp_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not _blocked_reading_stdin(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert out == b"" and err.decode().strip() == "stacpull: interrupted"


def test_ctrl_c_during_verify_exits_130_not_1(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A Ctrl-C while verify hashes exited 1 ("Aborted!"), which a cron job reads as rot
    found; it is an interrupt (130), as for download, search and auth check."""
    import stacpull.audit

    def interrupted(*args: object, **kw: object) -> None:
        raise KeyboardInterrupt  # as Ctrl-C lands in the hashing loop

    (tmp_path / ".stacpull").mkdir()
    monkeypatch.setattr(stacpull.audit, "verify_dest", interrupted)
    code, out, err = cli("verify", str(tmp_path))
    assert (code, out, err.strip()) == (130, "", "stacpull: interrupted")


# -- the lazy package root still reaches its modules --------------------------------------


def test_import_stacpull_then_its_modules_by_attribute_as_before_the_lazy_root() -> None:
    """``import stacpull`` used to import the API and with it auth, config, errors and
    events, so ``stacpull.auth.load_credentials(...)`` and ``except
    stacpull.errors.CredentialsError`` (both in the README) worked; the lazy root raised
    AttributeError for every module not imported yet. It imports one on first use."""
    import subprocess
    import sys

    code = (
        "import sys, stacpull\n"
        "assert 'stacpull.engine' not in sys.modules  # still lazy\n"
        "stacpull.auth.load_credentials, stacpull.errors.CredentialsError\n"
        "stacpull.events.JobFinished, stacpull.config.load_config, stacpull.sim.Faults\n"
        "try:\n"
        "    stacpull.nosuchthing\n"
        "except AttributeError as exc:\n"
        "    print(exc)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "module 'stacpull' has no attribute 'nosuchthing'"
