"""Scripts and pipelines get honest runs: a closed output pipe is not the run's end, each
run keeps its own report, a fixed token nobody takes stops the run once, and bad input
gets one line and exit 2, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

import stacpull
from stacpull.config import check_template, load_config, parse_datetime_range
from stacpull.errors import ConfigError
from stacpull.events import Event, JobFinished
from stacpull.sim import SimServer

from .conftest import L1A, TOKEN, cli, files_under, pull, sim_download
from .hostile import ThreadedApp, feature, landing

# -- 1. a closed stdout or stderr pipe -----------------------------------------------------


def _spawn(sim: SimServer, dest: Path, *extra: str, **popen: Any) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "STACPULL_TOKEN": TOKEN,
        "STACPULL_OFFLINE_TOKEN": "",
        "STACPULL_TOKEN_FILE": "",
    }
    args = ["download", "--catalog", sim.catalog_url, "--collection", L1A, "--dest", str(dest)]
    return subprocess.Popen(
        [sys.executable, "-m", "stacpull", *args, "--dashboard", "plain", "-v", *extra],
        env=env,
        **popen,
    )


def _assert_complete(dest: Path) -> None:
    """Every file on disk, the journal's last run complete with nothing pending."""
    code, out, _ = cli("status", str(dest), "--json")
    assert code == 0
    status = json.loads(out)
    # status --json names every status, with zero files for those nothing is in.
    left = {k: v["files"] for k, v in status["by_status"].items() if k != "done"}
    assert not any(left.values()), status["by_status"]
    assert status["by_status"]["done"]["files"] == 15
    assert status["last_run"]["outcome"] == "complete"
    assert len(files_under(dest)) == 15


def test_a_closed_stdout_pipe_lets_the_run_finish(sim: SimServer, tmp_path: Path) -> None:
    """`stacpull download | head -0`: the summary meets a closed pipe; exit 0, no traceback."""
    err = tmp_path / "err.txt"
    with err.open("wb") as sink:
        proc = _spawn(sim, tmp_path / "d", stdout=subprocess.PIPE, stderr=sink)
        assert proc.stdout is not None
        proc.stdout.close()  # the reader went away before the first byte
        code = proc.wait(60)
    text = err.read_text()
    assert "Traceback" not in text and "BrokenPipe" not in text, text
    assert code == 0, text
    _assert_complete(tmp_path / "d")


@pytest.mark.parametrize("merged", [False, True], ids=["stderr", "2>&1"])
def test_a_stderr_pipe_closed_after_one_line(sim: SimServer, tmp_path: Path, merged: bool) -> None:
    """`stacpull download -v 2>&1 | head -1`: every later line is dropped, the run goes on
    to the end, and the journal calls it complete only because it is."""
    if merged:
        proc = _spawn(sim, tmp_path / "d", stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        pipe = proc.stdout
    else:
        proc = _spawn(sim, tmp_path / "d", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        pipe = proc.stderr
    assert pipe is not None
    first = pipe.readline()
    pipe.close()
    code = proc.wait(60)
    assert b"Traceback" not in first
    assert code == 0
    _assert_complete(tmp_path / "d")


def test_json_output_to_a_closed_pipe(sim: SimServer, tmp_path: Path) -> None:
    """`stacpull status --json | head -0`: exit 0 and nothing on stderr."""
    pull(sim, tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "stacpull", "status", str(tmp_path), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(30) == 0
    assert err == b""


def test_a_sink_that_breaks_never_leaves_the_run_complete(sim: SimServer, tmp_path: Path) -> None:
    """A sink raising mid-run (a broken pipe in the caller's display) ends the run as
    stopped, never as complete with files pending."""
    seen = 0

    def sink(event: Event) -> None:
        nonlocal seen
        if isinstance(event, JobFinished):
            seen += 1
            if seen == 2:
                raise BrokenPipeError(32, "Broken pipe")

    with pytest.raises(BrokenPipeError):
        stacpull.download(
            catalog=sim.catalog_url,
            collections=[L1A],
            dest=str(tmp_path),
            token=TOKEN,
            concurrency=1,
            sink=sink,
        )
    _, out, _ = cli("status", str(tmp_path), "--json")
    status = json.loads(out)
    assert status["last_run"]["outcome"] == "stopped"
    assert status["by_status"].get("pending", {}).get("files", 0) > 0


# -- 2. one report and one outcome log per run ----------------------------------------------


def test_two_runs_in_one_second_keep_two_reports(
    sim: SimServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = time.gmtime
    monkeypatch.setattr(time, "gmtime", lambda secs=None: real(1_760_000_000))
    pull(sim, tmp_path, max_items=1)
    pull(sim, tmp_path, max_items=2)
    state = tmp_path / ".stacpull"
    reports = sorted(p.name for p in state.glob("report-*.json"))
    outcomes = sorted(p.name for p in state.glob("outcomes-*.jsonl"))
    assert len(reports) == 2 and len(outcomes) == 2, (reports, outcomes)
    first, second = (json.loads((state / name).read_text()) for name in reports)
    assert first["outcomes_file"] != second["outcomes_file"]
    assert {first["totals"]["downloaded"], second["totals"]["downloaded"]} == {3}


# -- 3. a fixed token the server refuses --------------------------------------------------


def test_a_refused_fixed_token_stops_the_run(sim: SimServer, tmp_path: Path) -> None:
    code, out, err = sim_download(sim, tmp_path, token="not-the-token")
    assert code == 3, err
    stops = [line for line in err.splitlines() if line.startswith("stacpull: run stopped")]
    assert len(stops) == 1 and "--token/STACPULL_TOKEN" in stops[0], err
    assert "not-the-token" not in err + out
    _, status_out, _ = cli("status", str(tmp_path), "--json")
    status = json.loads(status_out)
    others = {k: v["files"] for k, v in status["by_status"].items() if k != "pending"}
    assert not any(others.values()), status  # none failed one by one
    assert status["by_status"]["pending"]["files"] == 15
    code, _, err = sim_download(sim, tmp_path, dashboard=None)
    assert code == 0, err  # the same command with a good token resumes and finishes
    assert len(files_under(tmp_path)) == 15


def test_a_refused_token_file_is_named(sim: SimServer, tmp_path: Path) -> None:
    token_file = tmp_path / "tok"
    token_file.write_text("stale-token\n")
    token_file.chmod(0o600)
    code, _, err = sim_download(sim, tmp_path / "d", "--token-file", str(token_file), token="")
    assert code == 3
    assert f"token file {token_file}" in err and "a new token file" in err


class _Refusing(ThreadedApp):
    """A catalogue of six items whose data host refuses the token on ``refuse`` (all
    files when it is ``"*"``), answering with ``status``."""

    def __init__(self, refuse: str, status: int = 401) -> None:
        super().__init__()
        self.refuse = refuse
        self.status = status
        self.ids = [f"i{n}" for n in range(6)]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path == "/":
            return web.json_response(landing(self.base))
        if path == "/search":
            features = [feature(self.base, i) for i in self.ids]
            body = {
                "type": "FeatureCollection",
                "features": features,
                "numberMatched": len(features),
            }
            return web.json_response(body)
        name = path.rsplit("/", 1)[-1].removesuffix(".bin")
        if request.headers.get("Authorization") != f"Bearer {TOKEN}" or self.refuse in (
            "*",
            name,
        ):
            return web.Response(status=self.status, text="no")
        return web.Response(body=name.encode() * 100)


def _hostile_run(server: _Refusing, dest: Path, *extra: str) -> tuple[int, str]:
    code, _, err = cli(
        "download",
        "--catalog",
        server.base,
        "--collection",
        "C1",
        "--assets",
        "all",
        "--dest",
        str(dest),
        "--dashboard",
        "none",
        *extra,
        token=TOKEN,
    )
    return code, err


@pytest.mark.parametrize("status", [401, 403])
def test_one_file_refusing_the_token_fails_alone(tmp_path: Path, status: int) -> None:
    """A token that works on other files: the odd file fails, the run goes on (exit 1)."""
    with _Refusing("i0", status) as server:
        config = tmp_path / "c.toml"
        config.write_text("[download]\nbackoff = 0.01\nmax_backoff = 0.02\n")
        code, err = _hostile_run(server, tmp_path / "d", "--config", str(config))
    assert code == 1, err
    assert "run stopped" not in err
    assert len(files_under(tmp_path / "d")) == 5
    _, out, _ = cli("status", str(tmp_path / "d"), "--json")
    status_json = json.loads(out)
    assert status_json["by_status"]["failed"]["files"] == 1
    assert list(status_json["failures"]) == ["AuthError"]


@pytest.mark.parametrize("status", [401, 403])
def test_a_host_refusing_every_file_stops_the_run(tmp_path: Path, status: int) -> None:
    with _Refusing("*", status) as server:
        config = tmp_path / "c.toml"
        config.write_text("[download]\nbackoff = 0.01\nmax_backoff = 0.02\n")
        code, err = _hostile_run(server, tmp_path / "d", "--config", str(config), "-j", "1")
    assert code == 3, err
    assert err.count("stacpull: run stopped") == 1
    _, out, _ = cli("status", str(tmp_path / "d"), "--json")
    assert json.loads(out)["by_status"]["failed"]["files"] == 0


def test_an_expired_fixed_token_refused_stops_at_once() -> None:
    import base64

    from stacpull.config import Secret
    from stacpull.errors import CredentialsError
    from stacpull.tokens import StaticTokenProvider

    payload = base64.urlsafe_b64encode(json.dumps({"exp": time.time() - 600}).encode())
    token = Secret(f"e30.{payload.decode().rstrip('=')}.sig")
    provider = StaticTokenProvider(token, "--token/STACPULL_TOKEN")
    with pytest.raises(CredentialsError, match="expired 10 min ago"):
        provider.check_refusal(token, 401, "http://h/a")


# -- 4. bad input: one line, exit 2, never a traceback --------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025", "2025"),
        ("2025-09", "2025-09"),
        ("2025-09-29", "2025-09-29"),
        ("2025-09-29 00:00:00", "2025-09-29T00:00:00Z"),
        ("2025-09-29t00:00:00z", "2025-09-29T00:00:00Z"),
        ("2025-09-29T00:12", "2025-09-29T00:12:00Z"),
        ("2025-09-29T00:00:00.25+0200", "2025-09-29T00:00:00.25+02:00"),
        ("2025-09-29 00:00:00 -05", "2025-09-29T00:00:00-05:00"),
        ("../2025", "../2025"),
        ("2025/..", "2025/.."),
        ("/2025-09", "../2025-09"),
        ("2025-09/2025-10-01 12:00:00Z", "2025-09/2025-10-01T12:00:00Z"),
        ("2025/2025", "2025/2025"),
    ],
)
def test_datetime_forms_pystac_client_takes(value: str, expected: str) -> None:
    from pystac_client.item_search import ItemSearch

    assert parse_datetime_range(value) == expected
    search = ItemSearch("http://127.0.0.1:1/search", datetime=expected)  # never raises
    assert search.get_parameters()["datetime"]


@pytest.mark.parametrize(
    "value",
    ["tomorrow", "2025-13", "2025-02-30", "2025-9-1", "2025-09-29T25:00", "2026/2025", "1/2/3",
     # taken before the forms were normalised (a bare '.', a seconds offset, a day after a time)
     "2025-09-29T00:00:00.Z", "2025-09-29T00:00:00+02:00:00", "2025-09-29/2025-09-28T23:00:00Z"],
)  # fmt: skip
def test_datetime_refused_up_front(value: str) -> None:
    with pytest.raises(ConfigError):
        parse_datetime_range(value)


@pytest.mark.parametrize(
    "template",
    [
        "../{name}",
        "/abs/{name}",
        "~/{name}",
        "{collection}/../../x/{name}",
        "a\\b/{name}",
        ".stacpull/{name}",
        "{bogus}/{name}",
        "{0}/{name}",
        "{name.real}",
        "{name",
    ],
)
def test_templates_leaving_dest_are_refused(template: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        check_template(template)
    config = tmp_path / "c.toml"
    config.write_text(f"[download]\ntemplate = {json.dumps(template)}\n")
    with pytest.raises(ConfigError, match="line 2"):
        load_config(config, env={})


def test_toml_dates_are_datetimes(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    for raw, expected in (("2025", "2025"), ("2025-09-29", "2025-09-29")):
        config.write_text(f"[search]\ndatetime = {raw}\n")
        assert load_config(config, env={}).search.datetime == expected


def _bad_inputs(tmp: Path, catalog: str) -> list[list[str]]:
    q = ["--catalog", catalog, "--collection", L1A]
    d = ["download", *q, "--dest", str(tmp / "d")]
    (tmp / "bad.toml").write_text("[download]\ntemplate = '/abs/{name}'\n")
    (tmp / "junk.toml").write_text("this is = = not toml")
    (tmp / "bad.json").write_text("nope")
    return [
        ["search", *q, "--datetime", "2025-09-29 00:00:00Z/yesterday"],
        ["search", *q, "--datetime", "2025-13"],
        ["download", *q[:2], "--datetime", "nope", "--collection", L1A, "--dest", "x"],
        [*d, "--template", "../{name}"],
        [*d, "--template", "/abs/{name}"],
        [*d, "--template", "{collection}/../../x/{name}"],
        [*d, "--template", "{nope}/{name}"],
        [*d, "--config", str(tmp / "bad.toml")],
        [*d, "--config", str(tmp / "junk.toml")],
        [*d, "--config", str(tmp / "missing.toml")],
        [*d, "--profile", "nope"],
        [*d, "-j", "eight"],
        [*d, "-j", "0"],
        [*d, "--max-bytes", "lots"],
        [*d, "--stall-timeout", "soon"],
        [*d, "--assets", "foo:bar"],
        ["search", *q, "--bbox", "1,2,3"],
        ["search", *q, "--bbox", "a,b,c,d"],
        ["search", *q, "--bbox", "0,10,1,5"],
        ["search", *q, "--filter", "this is (not cql"],
        ["search", *q, "--max-items", "x"],
        ["search", *q, "--page-size", "-1"],
        ["search", *q, "--show", "-1"],
        ["search", *q, "--intersects", str(tmp / "bad.json")],
        ["search", "--catalog", "notaurl", "--collection", L1A],
        ["collections", "--catalog", catalog, "--datetime", "2025-02-30"],
        ["collections", "--catalog", catalog, "--bbox", "200,0,1,1"],
        ["queryables", "--catalog", catalog, "NoSuchCollection"],
        ["config", "show", "--profile", "nope"],
        ["status", str(tmp / "nowhere")],
        ["verify", str(tmp), "-j", "0"],
        ["report", str(tmp / "nowhere")],
    ]


def test_bad_inputs_exit_2_without_a_traceback(sim: SimServer, tmp_path: Path) -> None:
    """Many bad inputs, one process each in-process: exit 2 and one `stacpull:` line."""
    for args in _bad_inputs(tmp_path, sim.catalog_url):
        code, out, err = cli(*args, token=TOKEN)
        assert code == 2, (args, code, out, err)
        assert "Traceback" not in out + err, (args, err)
        assert err.strip(), args
        assert not (tmp_path / "d").exists(), " ".join(
            args[5:]
        )  # refused before anything was created


def test_the_space_datetime_searches(sim: SimServer) -> None:
    code, out, err = cli(
        "search",
        "--catalog",
        sim.catalog_url,
        "--collection",
        L1A,
        "--datetime",
        "2025-09-29 00:00:00/2025-09-29 00:04:00",
        token=TOKEN,
    )
    assert code == 0, err
    assert "3 item(s) matched" in err  # piped: the tally on stderr, the records on stdout
    assert out.count("\tBiomassLevel1aIOC\t") == 3, out


def test_api_download_refuses_a_climbing_template(sim: SimServer, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="climbs out of DEST"):
        stacpull.download(
            catalog=sim.catalog_url,
            collections=[L1A],
            dest=str(tmp_path / "d"),
            template="{collection}/../../{name}",
        )
    assert not (tmp_path / "d").exists()


def test_fewer_files_than_the_rule_fail_alone(tmp_path: Path) -> None:
    """Two files, both refused: too few to judge the token, so each fails after three
    attempts with its reason (exit 1) instead of the run being stopped."""
    with _Refusing("*") as server:
        server.ids = ["i0", "i1"]
        config = tmp_path / "c.toml"
        config.write_text("[download]\nbackoff = 0.01\nmax_backoff = 0.02\n")
        code, err = _hostile_run(server, tmp_path / "d", "--config", str(config))
    assert code == 1, err
    _, out, _ = cli("status", str(tmp_path / "d"), "--json")
    status = json.loads(out)
    assert status["by_status"]["failed"]["files"] == 2
    assert "gave up after 3 attempts" in json.dumps(status["failures"])
