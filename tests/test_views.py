"""What users see of a run, end to end: a real terminal, -q/-v, --log-json, the report."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

from stacpull.sim import Faults, SimServer

from .conftest import L1A, TOKEN, cli, files_under


def _cli(*args: str) -> tuple[int, str, str]:
    return cli(*args, token=TOKEN)


def _download(sim: SimServer, dest: Path, *extra: str) -> tuple[int, str, str]:
    return _cli(
        "download", "--catalog", sim.catalog_url, "--collection", L1A, "--dest", str(dest), *extra
    )


def _winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def test_the_live_dashboard_draws_in_a_real_terminal_resizes_and_exits_cleanly(
    sim: SimServer, tmp_path: Path
) -> None:
    sim.set_faults(Faults(rate_limit=400_000))  # a run of a few seconds
    master, slave = pty.openpty()
    _winsize(slave, 24, 80)
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    env.update(TERM="xterm-256color", STACPULL_TOKEN=TOKEN)
    command = [sys.executable, "-m", "stacpull", "download", "--catalog", sim.catalog_url]
    command += ["--collection", L1A, "--dest", str(tmp_path), "-j", "3"]
    proc = subprocess.Popen(
        command,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    chunks: list[bytes] = []
    resized = False
    started = time.monotonic()
    try:
        while time.monotonic() - started < 60:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            if not resized and time.monotonic() - started > 1.0:
                _winsize(master, 40, 120)  # the user widens the window mid-run
                proc.send_signal(signal.SIGWINCH)
                resized = True
            if proc.poll() is not None and not ready:
                break
        code = proc.wait(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        os.close(master)
    output = b"".join(chunks).decode("utf-8", "replace")
    assert code == 0, output[-2000:]
    assert "Traceback" not in output
    assert "\x1b[?25l" in output and "\x1b[?25h" in output  # cursor hidden, then restored
    assert "search" in output and "⇣" in output  # the live view was drawn
    assert "stacpull summary" in output and len(files_under(tmp_path)) == 15


def test_quiet_prints_only_errors_and_the_summary(sim: SimServer, tmp_path: Path) -> None:
    item = str(sim.catalog.item(L1A, 1)["id"])
    sim.catalog.tamper(item, "quicklook", "login")
    code, out, err = _download(sim, tmp_path, "-q", "--retries", "0")
    assert code == 1
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"[stacpull] failed {item}/quicklook")
    assert "stacpull summary" in out and "\x1b" not in out + err


def test_verbose_adds_a_line_per_file_and_log_json_records_events(
    sim: SimServer, tmp_path: Path
) -> None:
    events = tmp_path / "events.jsonl"
    dest = tmp_path / "d"
    code, out, err = _download(sim, dest, "-v", "--dashboard", "plain", "--log-json", str(events))
    assert code == 0, out + err
    per_file = [line for line in err.splitlines() if line.startswith("[stacpull] downloaded")]
    assert len(per_file) == 15
    rows = [json.loads(line) for line in events.read_text().splitlines()]
    kinds = {row["event"] for row in rows}
    assert {"RunStarted", "JobQueued", "TransferStarted", "JobFinished", "RunFinished"} <= kinds
    assert "BytesReceived" not in kinds
    finished = [row for row in rows if row["event"] == "JobFinished"]
    assert len(finished) == 15 and all(row["status"] == "downloaded" for row in finished)
    assert TOKEN not in events.read_text()
    code, out, err = _cli("download", "-q", "-v", "--collection", L1A, "--dest", str(dest))
    assert code == 2 and "contradict" in err


def test_report_reads_the_night_in_the_morning(sim: SimServer, tmp_path: Path) -> None:
    item = str(sim.catalog.item(L1A, 2)["id"])
    sim.catalog.tamper(item, "quicklook", "login")
    code, run_out, _ = _download(sim, tmp_path, "--retries", "0", "--dashboard", "none")
    assert code == 1
    code, out, err = _cli("report", str(tmp_path), "--plot", str(tmp_path / "run.png"))
    assert code == 1, err  # the run it describes has a failed file
    assert "complete, 1 failed" in out and "collections=['BiomassLevel1aIOC']" in out
    table = run_out[run_out.index("┌") : run_out.index("┘") + 1]
    assert table in out  # the same totals as the run's own final table
    assert "AuthError ×1" in out and f"failed {item}/quicklook" in out
    assert (tmp_path / "run.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((tmp_path / ".stacpull" / "last-report.json").read_text())
    assert len(report["files"]) == 15 and sum(report["series"]["bytes"]) > 0
    assert {row["status"] for row in report["files"]} == {"downloaded", "failed"}
    code, out, err = _cli("report", str(tmp_path / "nowhere"))
    assert code == 2 and "not a directory" in err
