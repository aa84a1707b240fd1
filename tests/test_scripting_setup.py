"""Issue 17, setup points: the layered config files (the user's, ./stacpull.toml,
--config), a generated STACPULL_<SECTION>_<KEY> variable for every key, scripts/check in
its own environment, the SPDX licence, and a command line that starts without aiohttp."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import stacpull
from stacpull.cli import main
from stacpull.config import (
    ENV_KEYS,
    Config,
    Secret,
    config_files,
    env_variables,
    load_config,
    resolve_config,
    shown_setting,
    user_config_file,
)
from stacpull.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def _user_file(xdg: Path, text: str) -> Path:
    path = xdg / "stacpull" / "stacpull.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _show(args: list[str], env: dict[str, str]) -> Any:
    """``stacpull config show`` in-process, with no credential or user file of the
    machine's own (``env`` may turn the user file back on)."""
    base = {
        "STACPULL_TOKEN": "",
        "STACPULL_OFFLINE_TOKEN": "",
        "STACPULL_TOKEN_FILE": "",
        "STACPULL_NO_USER_CONFIG": "1",
    }
    return CliRunner().invoke(main, ["config", "show", *args], env={**base, **env})


# --- the user-level config file and the layers ----------------------------------------------


def test_the_user_config_file_is_read_from_xdg_config_home(tmp_path: Path) -> None:
    user = _user_file(tmp_path, "[download]\nconcurrency = 3\n")
    config, origins = resolve_config(env={"XDG_CONFIG_HOME": str(tmp_path)})
    assert config.download.concurrency == 3
    assert origins["download.concurrency"] == f"{user} line 2"


def test_the_process_environment_finds_the_user_file_through_platformdirs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("STACPULL_NO_USER_CONFIG", raising=False)
    if sys.platform.startswith("linux"):
        assert user_config_file() == tmp_path / "stacpull" / "stacpull.toml"
    assert user_config_file() is not None and user_config_file().name == "stacpull.toml"  # type: ignore[union-attr]
    monkeypatch.setenv("STACPULL_NO_USER_CONFIG", "1")
    assert user_config_file() is None


def test_files_layer_user_then_local_then_config_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    xdg = tmp_path / "xdg"
    user = _user_file(xdg, "[download]\nconcurrency = 3\nretries = 1\nper_host = 2\n")
    work = tmp_path / "work"
    work.mkdir()
    (work / "stacpull.toml").write_text("[download]\nconcurrency = 4\nretries = 2\n")
    explicit = tmp_path / "job.toml"
    explicit.write_text("# the cron job's\n[download]\nconcurrency = 5\n")
    monkeypatch.chdir(work)
    env = {"XDG_CONFIG_HOME": str(xdg)}
    config, origins = resolve_config(explicit, env=env)
    got = (config.download.concurrency, config.download.retries, config.download.per_host)
    assert got == (5, 2, 2)
    assert origins["download.concurrency"] == f"{explicit} line 3"
    assert origins["download.retries"] == "./stacpull.toml line 3"
    assert origins["download.per_host"] == f"{user} line 4"
    assert [name for name, _ in config_files(explicit, env=env)] == [
        str(user),
        "./stacpull.toml",
        str(explicit),
    ]
    # STACPULL_CONFIG is the --config layer when no --config is given.
    config = load_config(env={**env, "STACPULL_CONFIG": str(explicit)})
    assert config.download.concurrency == 5
    # Off: only ./stacpull.toml and the explicit file count.
    off = load_config(explicit, env={**env, "STACPULL_NO_USER_CONFIG": "1"})
    assert off.download.per_host == Config().download.per_host
    # The same file named twice is read once, in its highest place.
    assert len(config_files("stacpull.toml", env=env)) == 2


def test_profiles_from_a_lower_file_can_be_used_and_replaced(tmp_path: Path) -> None:
    _user_file(tmp_path, "[profiles.lab]\ncatalog = 'https://lab.example.org/stac/'\n")
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    assert load_config(env=env, profile="lab").search.catalog == "https://lab.example.org/stac/"
    job = tmp_path / "job.toml"
    job.write_text("[profiles.lab]\ncatalog = 'https://lab2.example.org/stac/'\n")
    config = load_config(job, env=env, profile="lab")
    assert config.search.catalog == "https://lab2.example.org/stac/"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[download]\nretries = 2\nconcurrency = 'x'\n", "line 3: download.concurrency"),
        ("[download]\nconcurency = 2\n", "line 2: unknown key"),
        ("[download\n", "not valid TOML"),
    ],
)
def test_a_bad_user_file_is_named_with_its_key_and_line(
    tmp_path: Path, text: str, message: str
) -> None:
    user = _user_file(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(env={"XDG_CONFIG_HOME": str(tmp_path)})
    assert str(user) in str(info.value)


def test_a_missing_stacpull_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml does not exist"):
        load_config(env={"STACPULL_CONFIG": str(tmp_path / "nope.toml")})


def test_config_show_names_every_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    xdg = tmp_path / "xdg"
    user = _user_file(xdg, "[download]\nper_host = 2\n")
    work = tmp_path / "work"
    work.mkdir()
    (work / "stacpull.toml").write_text("[download]\nretries = 2\n")
    job = tmp_path / "job.toml"
    job.write_text("[download]\nconcurrency = 5\n")
    monkeypatch.chdir(work)
    env = {
        "XDG_CONFIG_HOME": str(xdg),
        "STACPULL_NO_USER_CONFIG": "",
        "STACPULL_SEARCH_PAGE_SIZE": "7",
        "STACPULL_DEST": "data",
    }
    result = _show(["--config", str(job), "--profile", "maap-preop"], env)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "defaults < user file < ./stacpull.toml < --config file < profile" in out
    assert f"# files read: {user}, ./stacpull.toml, {job}" in out
    for line in (
        "per_host = 2",
        "retries = 2",
        "concurrency = 5",
        "page_size = 7",
        'dest = "data"',
        "catalog = ",
    ):
        assert line in out, line
    shown = {  # the four sections before [cluster], whose per_host and retries are its own
        line.split("=")[0].strip(): line.rsplit("#", 1)[1].strip()
        for line in out.split("\n[cluster]\n", 1)[0].splitlines()
        if "=" in line and "#" in line and not line.startswith("#")
    }
    assert shown["per_host"] == f"{user} line 2"
    assert shown["retries"] == "./stacpull.toml line 2"
    assert shown["concurrency"] == f"{job} line 2"
    assert shown["page_size"] == "env STACPULL_SEARCH_PAGE_SIZE"
    assert shown["dest"] == "env STACPULL_DEST"
    assert shown["catalog"] == "profile maap-preop"
    data = json.loads(_show(["--config", str(job), "--json"], env).stdout)
    assert data["files"] == [str(user), "./stacpull.toml", str(job)]
    assert data["user_file"] == str(user)
    assert data["origins"]["search.page_size"] == "env STACPULL_SEARCH_PAGE_SIZE"
    off = _show([], {**env, "STACPULL_NO_USER_CONFIG": "1"}).stdout
    assert "# user file: off" in off and "# files read: ./stacpull.toml" in off


# --- an environment variable for every key --------------------------------------------------

#: Values for keys whose default (None) says nothing about what they take.
_EXAMPLES = {
    "search.bbox": "0,0,1,1",
    "search.intersects": '{"type": "Point", "coordinates": [0, 0]}',
    "search.datetime": "2025-09-29",
    "search.filter": "a = 1",
    "search.max_items": "3",
    "search.window": "6h",
    "cluster.address": "local:2",  # issue 21: where a cluster run's workers are
    "cluster.buckets": "16",
}


def _env_text(default: Any) -> str | None:
    """The default of a key written as an environment variable would be."""
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, Secret):
        return "s3cret-from-env"
    if isinstance(default, tuple | list | dict):
        return json.dumps(list(default) if not isinstance(default, dict) else default)
    if isinstance(default, int | float | str):
        return str(default)
    return None


def test_every_config_key_has_an_environment_variable() -> None:
    """Generated from the dataclasses: a key added to a section has its variable, and
    ``config show`` attributes the value to it."""
    variables = env_variables()
    config = Config()
    for section in (f.name for f in fields(Config)):
        for key in fields(getattr(config, section)):
            dotted = f"{section}.{key.name}"
            var = f"STACPULL_{section.upper()}_{key.name.upper()}"
            assert variables.get(var) == dotted, f"{dotted} has no variable {var}"
            default = getattr(getattr(config, section), key.name)
            text = _EXAMPLES.get(dotted) or _env_text(shown_setting(dotted, default))
            if dotted in ("auth.token", "auth.offline_token"):
                text = "s3cret-from-env"
            if text is None:
                text = "x"  # a key whose default is None takes a string
            env = {var: text}
            if dotted == "search.window":  # a window splits a range: it needs one
                env["STACPULL_SEARCH_DATETIME"] = "2025-01-01/2025-01-02"
            _, origins = resolve_config(env=env)
            assert origins.get(dotted) == f"env {var}", dotted


def test_the_short_names_are_aliases_and_the_long_name_wins() -> None:
    for var, dotted in ENV_KEYS.items():
        assert env_variables()[var] == dotted
    env = {"STACPULL_CONCURRENCY": "3"}
    assert load_config(env=env).download.concurrency == 3
    both = {**env, "STACPULL_DOWNLOAD_CONCURRENCY": "4"}
    config, origins = resolve_config(env=both)
    assert config.download.concurrency == 4
    assert origins["download.concurrency"] == "env STACPULL_DOWNLOAD_CONCURRENCY"
    assert load_config(env={"STACPULL_AUTH_TOKEN": "t0k"}).auth.token == Secret("t0k")
    # Empty means unset, as for the short names.
    assert load_config(env={"STACPULL_DOWNLOAD_CONCURRENCY": ""}) == Config()


def test_environment_values_are_parsed_like_the_files() -> None:
    env = {
        "STACPULL_DOWNLOAD_ASSETS": "maap, thumbnail",
        "STACPULL_SEARCH_COLLECTIONS": '["A", "B"]',
        "STACPULL_DOWNLOAD_ADAPTIVE": "no",
        "STACPULL_OUTPUT_REPORT": "false",
        "STACPULL_DOWNLOAD_STALL_TIMEOUT": "12.5",
        "STACPULL_DOWNLOAD_MAX_BYTES": "2GB",
        "STACPULL_SEARCH_BBOX": "0,1,2,3",
        "STACPULL_SEARCH_METHOD": "post",
        "STACPULL_AUTH_HOSTS": "a.example.org,B.example.org",
    }
    config = load_config(env=env)
    assert config.download.assets == ("maap", "thumbnail")
    assert config.search.collections == ("A", "B")
    assert (config.download.adaptive, config.output.report) == (False, False)
    assert config.download.stall_timeout == 12.5
    assert config.download.max_bytes == 2_000_000_000
    assert config.search.bbox == (0.0, 1.0, 2.0, 3.0)
    assert config.search.method == "POST"
    assert config.auth.hosts == ("a.example.org", "b.example.org")
    point = load_config(
        env={"STACPULL_SEARCH_INTERSECTS": '{"type": "Point", "coordinates": [1, 2]}'}
    )
    assert point.search.intersects == {"type": "Point", "coordinates": [1, 2]}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"STACPULL_DOWNLOAD_CONCURRENCY": "eight"}, "^STACPULL_DOWNLOAD_CONCURRENCY: .*auto"),
        ({"STACPULL_CONCURRENCY": "0"}, "^STACPULL_CONCURRENCY: .*whole number from 1 to"),
        ({"STACPULL_OUTPUT_REPORT": "maybe"}, "^STACPULL_OUTPUT_REPORT: .*true or false"),
        ({"STACPULL_DOWNLOAD_MAX_BYTES": "lots"}, "^STACPULL_DOWNLOAD_MAX_BYTES: .*size"),
        ({"STACPULL_SEARCH_BBOX": "1,2"}, "^STACPULL_SEARCH_BBOX: .*4 numbers"),
        ({"STACPULL_SEARCH_COLLECTIONS": "[A"}, "^STACPULL_SEARCH_COLLECTIONS: expected JSON"),
        ({"STACPULL_OUTPUT_DASHBOARD": "fancy"}, "^STACPULL_OUTPUT_DASHBOARD: output.dashboard"),
        (
            {"STACPULL_DOWNLOAD_CONCURENCY": "4"},
            "STACPULL_DOWNLOAD_CONCURENCY sets no config key "
            r"\(did you mean STACPULL_DOWNLOAD_CONCURRENCY\?\)",
        ),
    ],
)
def test_bad_environment_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(env=env)


def test_the_command_line_refuses_a_bad_variable_in_one_line() -> None:
    result = _show([], {"STACPULL_DOWNLOAD_RETRIES": "many"})
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "stacpull: STACPULL_DOWNLOAD_RETRIES: download.retries: expected an integer, got 'many'"
    ]


# --- scripts/check ---------------------------------------------------------------------------

_FAKE_PYTHON3 = """#!/usr/bin/env bash
# Stands in for python3: `-m venv DIR` makes DIR/bin with tools that only log their calls.
echo "python3 $*" >> "$CHECK_LOG"
if [ "$1 $2" = "-m venv" ]; then
    mkdir -p "$3/bin"
    for tool in python ruff mypy pytest; do
        {
            echo '#!/usr/bin/env bash'
            echo "echo \\"$tool \\$* NO_USER_CONFIG=\\${STACPULL_NO_USER_CONFIG:-}\\" >> \\"\\$CHECK_LOG\\""
        } > "$3/bin/$tool"
        chmod +x "$3/bin/$tool"
    done
fi
"""


def test_scripts_check_uses_its_own_environment_and_leaves_pip_alone(tmp_path: Path) -> None:
    root = tmp_path / "checkout"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "check", root / "scripts" / "check")
    (root / ".venv" / "bin").mkdir(parents=True)  # the user's own environment
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "python3").write_text(_FAKE_PYTHON3)
    (fake / "python3").chmod(0o755)
    log = tmp_path / "log"
    env = {k: v for k, v in os.environ.items() if k != "STACPULL_VENV"}
    env.update(PATH=f"{fake}{os.pathsep}{env['PATH']}", CHECK_LOG=str(log))
    done = subprocess.run(
        ["bash", str(root / "scripts" / "check"), "-k", "x"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    venv = calls[0].split()[-1]
    assert calls[0].startswith("python3 -m venv") and venv != ".venv" and venv.endswith("-check")
    assert list((root / ".venv" / "bin").iterdir()) == []  # untouched
    pip = [c for c in calls if c.startswith("python -m pip")]
    assert pip and not any("--upgrade" in c or " -U " in c for c in pip)
    pytest_call = next(c for c in calls if c.startswith("pytest"))
    assert "-k x" in pytest_call and pytest_call.endswith("NO_USER_CONFIG=1")
    # STACPULL_VENV still chooses (as .ci/run does with a fresh one).
    log.unlink()
    chosen = tmp_path / "chosen"
    subprocess.run(
        ["bash", str(root / "scripts" / "check")],
        env={**env, "STACPULL_VENV": str(chosen)},
        capture_output=True,
        check=True,
    )
    assert log.read_text().splitlines()[0] == f"python3 -m venv {chosen}"


# --- packaging -------------------------------------------------------------------------------


def test_the_licence_is_an_spdx_string_with_a_setuptools_that_reads_it() -> None:
    """A TOML table makes setuptools print a deprecation warning on every install."""
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert data["project"]["license"] == "Apache-2.0"
    requires = " ".join(data["build-system"]["requires"])
    assert "setuptools>=77" in requires or "setuptools>=8" in requires
    assert any(dep.startswith("platformdirs") for dep in data["project"]["dependencies"])


# --- a command line that starts without the engine -------------------------------------------

_PROBE = """
import sys
import stacpull.cli
print('import', 'aiohttp' in sys.modules)
from stacpull.cli import main
for args in (['--help'], ['--version'], ['collections', '--help'], ['download', '--help'],
             ['config', 'show']):
    try:
        main(args, prog_name='stacpull')
    except SystemExit:
        pass
    print(args[0], 'aiohttp' in sys.modules, 'asyncio' in sys.modules, file=sys.stderr)
import stacpull
stacpull.__version__
print('root', 'aiohttp' in sys.modules)
stacpull.download
print('download', 'aiohttp' in sys.modules)
"""


def test_help_and_listings_start_without_aiohttp() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STACPULL_")}
    env["STACPULL_NO_USER_CONFIG"] = "1"
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env, check=True
    )
    lines = done.stdout.splitlines()
    assert lines[0] == "import False"
    assert lines[-2:] == ["root False", "download True"]
    probes = [line for line in done.stderr.splitlines() if line.endswith(("True", "False"))]
    assert probes == [
        "--help False False",
        "--version False False",
        "collections False False",
        "download False False",
        "config False False",
    ]


def _type_checking_names() -> set[str]:
    """The names stacpull/__init__.py imports under ``if TYPE_CHECKING:``."""
    tree = ast.parse(Path(stacpull.__file__).read_text())
    block = next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"
    )
    return {
        alias.asname or alias.name
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }


def test_the_lazy_package_root_exports_one_list() -> None:
    """``__all__``, the names type checkers see and the names that resolve agree."""
    assert stacpull.__all__ == sorted(stacpull.__all__)
    assert _type_checking_names() == set(stacpull.__all__)
    for name in stacpull.__all__:
        value = getattr(stacpull, name)
        assert getattr(value, "__name__", name) == name
        assert name in dir(stacpull)
    with pytest.raises(AttributeError, match="colections"):
        stacpull.colections  # type: ignore[attr-defined]  # noqa: B018
