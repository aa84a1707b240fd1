"""Issue 19, the settings: ``download.concurrency``, ``per_host`` and ``segments`` take
``"auto"`` (the default) or a whole number 1..4096 from every layer (file, environment,
flags, API keywords); auto is stored as 0 and the run reads the limits through
``DownloadConfig``'s properties, and every view of the settings says "auto"."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from stacpull import api, defaults
from stacpull.config import Config, DownloadConfig, load_config
from stacpull.errors import ConfigError
from stacpull.events import RunStarted
from stacpull.sim import Faults, SimCatalog, SimOptions, SimServer, default_collections

from .conftest import L1C, Recorder, cli, pull, sim_download

KEYS = ("concurrency", "per_host", "segments")
ALLOWED = 'must be "auto" or a whole number from 1 to 4096'


# -- the values -------------------------------------------------------------------------------


def test_the_defaults_are_auto_with_the_documented_ceilings() -> None:
    dl = Config().download
    assert (dl.concurrency, dl.per_host, dl.segments) == (defaults.AUTO,) * 3 == (0, 0, 0)
    assert (defaults.AUTO_CONCURRENCY, defaults.AUTO_PER_HOST, defaults.WINDOW_START) == (64, 32, 8)
    assert dl.concurrency_limit == 64 and dl.per_host_limit == 32
    assert dl.segment_limit == 32  # a split file may use as many connections as the host's
    assert dl.queue_limit == 128  # twice the files in flight


def test_an_explicit_number_is_the_ceiling_each_property_reads() -> None:
    dl = DownloadConfig(concurrency=5, per_host=3)
    assert (dl.concurrency_limit, dl.per_host_limit, dl.segment_limit, dl.queue_limit) == (
        5,
        3,
        3,  # segments auto follows the per-host ceiling
        10,
    )
    assert DownloadConfig(segments=2, queue_size=7).segment_limit == 2
    assert DownloadConfig(queue_size=7).queue_limit == 7


def test_the_starting_window_is_eight_under_the_ceiling_and_fixed_when_not_adaptive() -> None:
    assert DownloadConfig().window_start == 8
    assert DownloadConfig(per_host=4).window_start == 4  # never above its ceiling
    assert DownloadConfig(per_host=20).window_start == 8  # adaptive: it grows from 8
    assert DownloadConfig(adaptive=False).window_start == 8
    assert DownloadConfig(adaptive=False, per_host=20).window_start == 20  # fixed at it


@pytest.mark.parametrize("text", ["auto", "AUTO", " Auto "])
def test_auto_is_taken_from_a_config_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "stacpull.toml"
    path.write_text(f'[download]\nconcurrency = 12\nper_host = "{text}"\nsegments = "{text}"\n')
    dl = load_config(path, env={}).download
    assert (dl.concurrency, dl.per_host, dl.segments) == (12, 0, 0)


def test_auto_and_numbers_come_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "stacpull.toml"
    path.write_text("[download]\nconcurrency = 3\nper_host = 4\nsegments = 2\n")
    env = {
        "STACPULL_CONCURRENCY": "auto",
        "STACPULL_DOWNLOAD_PER_HOST": "auto",
        "STACPULL_DOWNLOAD_SEGMENTS": "6",
    }
    dl = load_config(path, env=env).download
    assert (dl.concurrency, dl.per_host, dl.segments) == (0, 0, 6)


def test_the_api_takes_auto_or_a_number() -> None:
    config = api.build_config(concurrency="auto", per_host=16, segments="auto")
    dl = config.download
    assert (dl.concurrency, dl.per_host, dl.segments) == (0, 16, 0)
    assert (dl.concurrency_limit, dl.segment_limit) == (64, 16)


def test_a_download_config_built_directly_takes_auto_too() -> None:
    assert DownloadConfig(concurrency="auto").concurrency == 0  # type: ignore[arg-type]


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("value", ["eight", 0, -1, 4097, 8.5, True, "", "8x", "+8", "٨"])
def test_a_bad_value_names_the_key_and_what_is_allowed(key: str, value: object) -> None:
    with pytest.raises(ConfigError) as caught:
        Config().with_values({f"download.{key}": value})
    assert str(caught.value).startswith(f"download.{key}: {ALLOWED}, got "), caught.value


def test_a_bad_value_in_a_file_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "stacpull.toml"
    path.write_text("[download]\nretries = 2\nper_host = 'lots'\n")
    with pytest.raises(ConfigError, match=f"line 3: download.per_host: {ALLOWED}"):
        load_config(path, env={})


def test_a_bad_value_in_the_environment_names_the_variable() -> None:
    with pytest.raises(
        ConfigError, match=f"STACPULL_DOWNLOAD_SEGMENTS: download.segments: {ALLOWED}"
    ):
        load_config(env={"STACPULL_DOWNLOAD_SEGMENTS": "0"})


# -- the command line -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "value"),
    [("-j", "eight"), ("--concurrency", "0"), ("--per-host", "4097"), ("--segments", "many")],
)
def test_a_bad_flag_is_one_line_naming_it(flag: str, value: str, tmp_path: Path) -> None:
    code, out, err = cli("download", "--collection", "C", "--dest", str(tmp_path), flag, value)
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert err.startswith("stacpull: ") and ALLOWED in err and f"got {value!r}" in err, err
    assert flag in err or flag.lstrip("-") in err, err


def test_the_flags_take_auto_and_numbers(sim: SimServer, tmp_path: Path) -> None:
    code, out, err = sim_download(
        sim, tmp_path, "-j", "auto", "--per-host", "3", "--segments", "AUTO", "--dry-run"
    )
    assert code == 0, err
    code, out, err = sim_download(sim, tmp_path / "b", "-j", "2", "--per-host", "auto", "--json")
    assert code == 0, err
    assert json.loads(out)["totals"]["files"] > 0


def test_the_help_quotes_auto_without_loading_the_config() -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from stacpull.cli import main\n"
        "out = CliRunner().invoke(main, ['download', '--help'], terminal_width=200).output\n"
        "print(sorted(m for m in sys.modules if m.startswith(('stacpull.config', 'tomllib'))))\n"
        "print(out)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded, _, help_text = done.stdout.partition("\n")
    assert loaded == "[]"
    text = " ".join(help_text.split())
    for flag in ("-j, --concurrency", "--per-host", "--segments"):
        after = text.split(flag, 1)[1].split(" --", 1)[0]
        assert "auto|N" in after and "[auto" in after, (flag, after)
    assert "64" in text and "32" in text  # the ceilings auto means, from stacpull.defaults


def test_demo_takes_auto_and_refuses_a_bad_count() -> None:
    code, out, err = cli("demo", "--help")
    assert code == 0 and "[default: auto]" in " ".join(out.split())
    code, out, err = cli("demo", "-j", "eight")
    assert code == 2 and ALLOWED in err, err


def test_config_show_says_auto(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "stacpull.toml").write_text("[download]\nper_host = 5\n")
    code, out, err = cli("config", "show", env={"STACPULL_CONCURRENCY": "auto"})
    assert code == 0, err
    download = out.split("\n[cluster]\n", 1)[0]  # [cluster] has a per_host of its own
    lines = {line.split("=")[0].strip(): line for line in download.splitlines() if "=" in line}
    assert lines["concurrency"].startswith('concurrency = "auto"')
    assert "env STACPULL_CONCURRENCY" in lines["concurrency"]
    assert lines["per_host"].startswith("per_host = 5")
    assert lines["segments"].startswith('segments = "auto"')
    code, out, err = cli("config", "show", "--json", env={"STACPULL_CONCURRENCY": ""})
    shown = json.loads(out)["download"]
    assert (shown["concurrency"], shown["per_host"], shown["segments"]) == ("auto", 5, "auto")


def test_config_show_round_trips_through_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``config show`` prints is a config file that loads to the same settings."""
    monkeypatch.chdir(tmp_path)
    code, out, err = cli("config", "show", env={"STACPULL_DOWNLOAD_SEGMENTS": "3"})
    assert code == 0, err
    download = out.split("[download]", 1)[1].split("\n[", 1)[0]
    picked = [line for line in download.splitlines() if line.split(" =")[0] in KEYS]
    (tmp_path / "shown.toml").write_text("[download]\n" + "\n".join(picked) + "\n")
    dl = load_config(tmp_path / "shown.toml", env={}).download
    assert (dl.concurrency, dl.per_host, dl.segments) == (0, 0, 3)


# -- the run ----------------------------------------------------------------------------------


def test_a_run_at_the_defaults_starts_with_the_auto_ceiling_and_reports_auto(
    sim: SimServer, tmp_path: Path, recorder: Recorder
) -> None:
    result = pull(sim, tmp_path, recorder)
    assert result.ok and result.downloaded > 0
    (started,) = recorder.of_type(RunStarted)
    assert started.concurrency == defaults.AUTO_CONCURRENCY
    assert result.report is not None
    settings = json.loads(Path(result.report).read_text())["settings"]
    assert (settings["concurrency"], settings["per_host"], settings["segments"]) == ("auto",) * 3


def test_a_run_with_numbers_reports_them(
    sim: SimServer, tmp_path: Path, recorder: Recorder
) -> None:
    result = pull(sim, tmp_path, recorder, concurrency=3, per_host=2, segments=1)
    assert result.ok
    (started,) = recorder.of_type(RunStarted)
    assert started.concurrency == 3
    assert result.report is not None
    settings = json.loads(Path(result.report).read_text())["settings"]
    assert (settings["concurrency"], settings["per_host"], settings["segments"]) == (3, 2, 1)


def test_segments_auto_splits_a_slow_file_over_the_hosts_ceiling(
    tmp_path: Path, recorder: Recorder
) -> None:
    """The engine hands the transfers ``segment_limit``: with segments auto and three
    connections per host, a slow large file is split into parallel ranges, at most three
    at once (0, the stored auto, would never split it)."""
    spec = next(s for s in default_collections(1, 50_000) if s.id == L1C)
    catalog = SimCatalog([dataclasses.replace(spec, enclosure_size=4_000_000)])
    with SimServer(catalog, options=SimOptions(faults=Faults(rate_limit=2_000_000))) as big:
        result = pull(
            big,
            tmp_path,
            recorder,
            collections=[L1C],
            assets=["enclosure_i_abs_tiff"],
            per_host=3,
            segment_size=500_000,
            segment_below=10_000_000,
        )
        assert result.ok and result.downloaded == 1, recorder.outcomes()
        assert 2 <= big.peak_sending <= 3


# -- the example file -------------------------------------------------------------------------


def test_the_example_config_documents_auto() -> None:
    text = (Path(__file__).resolve().parents[1] / "config.example.toml").read_text()
    download = text.split("[download]", 1)[1].split("\n[", 1)[0]
    for key in KEYS:
        assert f'\n{key} = "auto"\n' in download, key
    for needle in ("64", "32", "8", "adaptive = false", "ceiling"):
        assert needle in download, needle
