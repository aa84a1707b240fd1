"""The flags aria2c, rclone and stac-client users reach for: --bwlimit, --header, durations
with units, --progress-interval, --log-file, and -v/-q/--debug after the subcommand."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from stacpull.config import load_config, parse_duration
from stacpull.errors import ConfigError
from stacpull.limits import TokenBucket
from stacpull.sim import SimCatalog, SimServer, default_collections

from .conftest import L1A, TOKEN, cli, files_under, pull
from .hostile import ThreadedApp

SECRET_HEADER = "X-Api-Key: k3y-0f-the-user-abcdef123456"


# --- --bwlimit: the bucket's arithmetic, on a fake clock ------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_bucket_lets_a_burst_through_then_paces_at_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1000, clock=clock, sleep=clock.sleep)
    assert bucket.charge(600) == 0.0  # within the first second's burst
    assert bucket.charge(400) == 0.0
    assert bucket.charge(500) == pytest.approx(0.5)  # in debt: wait until it is paid
    clock.now += 0.5
    assert bucket.charge(250) == pytest.approx(0.25)
    clock.now += 10  # idle: the bucket refills only up to its burst
    assert bucket.charge(1000) == 0.0
    assert bucket.charge(1) == pytest.approx(0.001)


def test_bucket_shared_by_takers_serialises_their_waits() -> None:
    clock = FakeClock()
    bucket = TokenBucket(2_000_000, clock=clock, sleep=clock.sleep)

    async def main() -> None:
        for _ in range(10):  # 10 MB at 2 MB/s: 1 s of burst, 4 s of waits
            await bucket.take(1_000_000)

    asyncio.run(main())
    assert sum(clock.slept) == pytest.approx(4.0)
    assert clock.now - 100.0 == pytest.approx(4.0)
    with pytest.raises(ValueError):
        TokenBucket(0)


@pytest.mark.parametrize(
    ("text", "rate"),
    [("50M", 50_000_000), ("500k", 500_000), ("1.5MiB", 1_572_864), ("2MB/s", 2_000_000),
     ("off", 0), ("0", 0), (123, 123)],
)  # fmt: skip
def test_bwlimit_values(text: Any, rate: int) -> None:
    assert load_config(env={}, flags={"download.bwlimit": text}).download.bwlimit == rate


@pytest.fixture
def small_sim() -> Iterator[SimServer]:
    with SimServer(SimCatalog(default_collections(count=3, product_size=12_000))) as server:
        yield server


def test_a_run_under_a_bwlimit_completes_every_file(small_sim: SimServer, tmp_path: Path) -> None:
    result = pull(small_sim, tmp_path, bwlimit="400k")
    assert result.ok and result.downloaded == 9 and result.failed == 0
    assert result.bytes_downloaded > 400_000  # more than the bucket's burst: it waited
    assert len(files_under(tmp_path)) == 9
    code, _, err = cli(
        "download", "--catalog", small_sim.catalog_url, "--collection", L1A,
        "--dest", str(tmp_path / "cli"), "--bwlimit", "400k", "--dashboard", "none",
        token=TOKEN,
    )  # fmt: skip
    assert code == 0, err
    assert len(files_under(tmp_path / "cli")) == 9


def test_a_bad_bwlimit_is_one_line_exit_2(tmp_path: Path) -> None:
    code, _, err = cli("download", "--collection", L1A, "--dest", str(tmp_path), "--bwlimit", "x")
    assert code == 2
    assert err.count("\n") == 1 and "bwlimit" in err


# --- --header: trusted hosts only ---------------------------------------------------------


class HeaderRecorder(ThreadedApp):
    """A file server on 127.0.0.1 (the catalogue's host name: trusted) that records every
    request's host name, path and headers; ``/hop/NAME`` redirects to
    ``http://localhost:PORT/NAME`` (another host name: not trusted)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str, dict[str, str]]] = []

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.host.split(":")[0], request.path, dict(request.headers)))
        if request.path.startswith("/hop/"):
            raise web.HTTPFound(f"http://localhost:{self.port}/{request.path[5:]}")
        return web.Response(body=b"x" * 1000, content_type="application/octet-stream")

    def got(self, path: str, name: str) -> str | None:
        values = [h.get(name) for _, p, h in self.seen if p == path]
        assert values, f"{path} was never asked for"
        return values[-1]


@pytest.fixture
def recording(sim: SimServer) -> Iterator[HeaderRecorder]:
    with HeaderRecorder() as server:
        base = f"http://127.0.0.1:{server.port}"
        sim.catalog.add_item(
            L1A,
            {
                "type": "Feature",
                "id": "HEADER_ITEM",
                "collection": L1A,
                "properties": {"datetime": "2025-09-29T00:00:00Z"},
                "bbox": [0, 0, 1, 1],
                "geometry": None,
                "links": [],
                "assets": {
                    "direct": {"href": f"{base}/direct.bin", "type": "application/octet-stream"},
                    "moved": {
                        "href": f"{base}/hop/moved.bin",
                        "type": "application/octet-stream",
                        "title": "moved.bin",
                    },
                },
            },
        )
        yield server


def _pull_headers(sim: SimServer, dest: Path, *flags: str) -> tuple[int, str, str]:
    return cli(
        "download", "--catalog", sim.catalog_url, "--collection", L1A, "--ids", "HEADER_ITEM",
        "--assets", "all", "--dest", str(dest), "--dashboard", "none", *flags,
        token=TOKEN,
    )  # fmt: skip


def test_headers_go_to_trusted_hosts_only(
    sim: SimServer, recording: HeaderRecorder, tmp_path: Path
) -> None:
    code, _, err = _pull_headers(
        sim, tmp_path, "--header", "X-Custom: one, two", "--header", SECRET_HEADER
    )
    assert code == 0, err
    assert recording.got("/direct.bin", "X-Custom") == "one, two"
    assert recording.got("/direct.bin", "X-Api-Key") == SECRET_HEADER.split(": ")[1]
    assert recording.got("/hop/moved.bin", "X-Custom") == "one, two"  # trusted hop
    # the redirect to another host name gets neither the headers nor the token
    assert recording.got("/moved.bin", "X-Custom") is None
    assert recording.got("/moved.bin", "X-Api-Key") is None
    assert recording.got("/moved.bin", "Authorization") is None
    assert [h for h, p, _ in recording.seen if p == "/moved.bin"] == ["localhost"]


def test_header_all_hosts_sends_them_everywhere_but_never_authorization(
    sim: SimServer, recording: HeaderRecorder, tmp_path: Path
) -> None:
    code, _, err = _pull_headers(
        sim, tmp_path, "--header", "X-Custom: yes", "--header",
        "Authorization: Basic dXNlcjpwYXNzd29yZDEyMw==", "--header-all-hosts",
    )  # fmt: skip
    assert code == 0, err
    assert recording.got("/moved.bin", "X-Custom") == "yes"
    assert recording.got("/moved.bin", "Authorization") is None
    # the user's own Authorization replaces the bearer token on trusted hosts
    assert recording.got("/direct.bin", "Authorization") == "Basic dXNlcjpwYXNzd29yZDEyMw=="


@pytest.mark.parametrize(
    "header",
    ["no colon here", "Host: evil.example", "Content-Length: 5", "Range: bytes=0-1",
     "Transfer-Encoding: chunked", "Connection: close", "Bad Name: x", ": empty"],
)  # fmt: skip
def test_bad_or_protocol_headers_are_refused_with_exit_2(header: str, tmp_path: Path) -> None:
    code, _, err = cli("download", "--collection", L1A, "--dest", str(tmp_path), "--header", header)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("stacpull: --header")
    assert not (tmp_path / ".stacpull").exists()


def test_headers_from_the_config_file_as_table_or_list(tmp_path: Path) -> None:
    table = tmp_path / "table.toml"
    table.write_text('[download.headers]\nX-One = "1"\n"X-Session-Token" = "s3ss10n-s3cr3t-42"\n')
    config = load_config(table, env={})
    assert config.download.headers == (("X-One", "1"), ("X-Session-Token", "s3ss10n-s3cr3t-42"))
    listed = tmp_path / "list.toml"
    listed.write_text('[download]\nheaders = ["X-One: 1"]\n')
    assert load_config(listed, env={}).download.headers == (("X-One", "1"),)
    # a secret-looking value is known to the scrubber: config show masks it
    code, out, _ = cli("config", "show", "--config", str(table))
    assert code == 0 and "s3ss10n-s3cr3t-42" not in out
    bad = tmp_path / "bad.toml"
    bad.write_text('[download]\nheaders = ["Host: x"]\n')
    with pytest.raises(ConfigError, match=r"bad.toml line 2: download.headers: Host"):
        load_config(bad, env={})


# --- durations with units -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("30s", 30.0), ("2m", 120.0), ("1h", 3600.0), ("1h30m", 5400.0),
     ("90", 90.0), ("1.5", 1.5), (" 2m 30s ", 150.0), (12, 12.0)],
)  # fmt: skip
def test_durations(text: Any, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


def test_every_time_valued_key_takes_a_duration(tmp_path: Path) -> None:
    keys = {
        "search.timeout": "30s",
        "download.stall_timeout": "2m",
        "download.connect_timeout": "10s",
        "download.backoff": "500ms",
        "download.max_backoff": "1m",
        "download.not_found_delay": "1m30s",
        "auth.refresh_margin": "2m",
        "output.progress_interval": "1h",
    }
    config = load_config(env={}, flags=keys)
    assert config.search.timeout == 30
    assert config.download.stall_timeout == 120
    assert config.download.connect_timeout == 10
    assert config.download.backoff == 0.5
    assert config.download.max_backoff == 60
    assert config.download.not_found_delay == 90
    assert config.auth.refresh_margin == 120
    assert config.output.progress_interval == 3600
    file = tmp_path / "c.toml"
    file.write_text('[download]\nstall_timeout = "2m"\n[search]\ntimeout = "1m"\n')
    assert load_config(file, env={}).download.stall_timeout == 120
    for key in keys:
        with pytest.raises(ConfigError, match=rf"^{key}: expected a duration"):
            load_config(env={}, flags={key: "2 fortnights"})
    bad = tmp_path / "bad.toml"
    bad.write_text('[download]\nconnect_timeout = "5x"\n')
    with pytest.raises(ConfigError, match=r"bad.toml line 2: download.connect_timeout"):
        load_config(bad, env={})


@pytest.mark.parametrize("flag", ["--stall-timeout", "--progress-interval"])
def test_a_bad_duration_flag_is_one_line_exit_2(flag: str, tmp_path: Path) -> None:
    code, _, err = cli("download", "--collection", L1A, "--dest", str(tmp_path), flag, "soon")
    assert code == 2
    assert err.count("\n") == 1 and flag in err and "duration" in err


# --- --progress-interval, --log-file, -v/-q/--debug after the subcommand ---------------


def _download(sim: SimServer, dest: Path, *flags: str) -> tuple[int, str, str]:
    return cli(
        "download", "--catalog", sim.catalog_url, "--collection", L1A, "--dest", str(dest),
        *flags, token=TOKEN,
    )  # fmt: skip


def test_durations_and_progress_interval_on_a_real_run(sim: SimServer, tmp_path: Path) -> None:
    code, _, err = _download(
        sim, tmp_path, "--stall-timeout", "2m", "--progress-interval", "50ms",
        "--dashboard", "plain", "--bwlimit", "off",
    )  # fmt: skip
    assert code == 0, err
    assert len(files_under(tmp_path)) == 15


def test_log_file_is_timestamped_plain_text_without_secrets(sim: SimServer, tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    code, _, err = _download(
        sim, tmp_path / "d", "--log-file", str(log), "--dashboard", "none",
        "--header", SECRET_HEADER, "--debug",
    )  # fmt: skip
    assert code == 0, err
    text = log.read_text()
    lines = text.splitlines()
    assert lines[0].endswith("[stacpull] run started") and lines[-1].endswith("run ended")
    assert all(line[:4].isdigit() and line[4] == "-" and line[10] == " " for line in lines)
    assert sum(" downloaded " in line or " done " in line for line in lines) >= 5, text
    assert "GET " in text  # the debug records too, with --debug
    assert TOKEN not in text and "k3y-0f-the-user" not in text
    assert "k3y-0f-the-user" not in err
    # appended to by the next run, never through a link
    size = log.stat().st_size
    assert _download(sim, tmp_path / "d", "--log-file", str(log), "-q")[0] == 0
    assert log.stat().st_size > size
    link = tmp_path / "link.log"
    link.symlink_to(tmp_path / "elsewhere")
    code, _, err = _download(sim, tmp_path / "d", "--log-file", str(link))
    assert code == 2 and "--log-file" in err and err.count("\n") == 1
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize("where", ["before", "after"])
def test_verbose_quiet_and_debug_on_either_side_of_the_subcommand(
    where: str, sim: SimServer, tmp_path: Path
) -> None:
    def run(flag: str, dest: str) -> tuple[int, str, str]:
        args = ["download", "--catalog", sim.catalog_url, "--collection", L1A,
                "--dest", str(tmp_path / dest), "--dashboard", "plain"]  # fmt: skip
        return cli(*([flag, *args] if where == "before" else [*args, flag]), token=TOKEN)

    code, _, err = run("-v", "v")
    assert code == 0 and sum("[stacpull] downloaded" in line for line in err.splitlines()) == 15
    code, _, err = run("-q", "q")
    assert code == 0 and "[stacpull] downloaded" not in err
    code, _, err = run("--debug", "debug")
    assert code == 0 and " DEBUG " in err and TOKEN not in err
    code, _, err = cli("-q", "download", "-v", "--collection", L1A, "--dest", str(tmp_path))
    assert code == 2 and "contradict" in err


@pytest.mark.parametrize(
    "flag", ["--latency", "--token-lifetime", "--retry-after", "--not-ready", "--stall-seconds"]
)
def test_sim_time_flags_take_durations_or_say_so_in_one_line(flag: str) -> None:
    code, _, err = cli("sim", "serve", "--port", "1", flag, "soon")
    assert code == 2
    assert err.count("\n") == 1 and err.startswith(f"stacpull: {flag}: expected a duration")
