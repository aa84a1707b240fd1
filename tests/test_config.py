"""Configuration: TOML, environment and flags, with errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from stacpull.config import Config, Secret, load_config, parse_bbox, parse_datetime_range
from stacpull.errors import ConfigError, scrub

EXAMPLE = Path(__file__).resolve().parents[1] / "config.example.toml"


def test_the_example_config_loads_and_holds_the_defaults() -> None:
    config = load_config(EXAMPLE, env={})
    assert config == Config()


def test_every_config_key_is_documented_in_the_example() -> None:
    text = EXAMPLE.read_text()
    for section in ("search", "download", "auth", "output"):
        for key in getattr(Config(), section).__dataclass_fields__:
            if (section, key) in (
                ("auth", "token"),
                ("auth", "offline_token"),
                ("search", "intersects"),
            ):
                continue  # secrets never live in files; intersects comes from --intersects FILE
            assert f"{key} =" in text or f"# {key} =" in text, f"[{section}] {key} undocumented"


def test_precedence_flags_over_environment_over_file(tmp_path: Path) -> None:
    path = tmp_path / "stacpull.toml"
    path.write_text(
        '[download]\nconcurrency = 3\ndest = "from-file"\n[search]\ncatalog = "https://file/"\n'
    )
    env = {"STACPULL_CONCURRENCY": "5", "STACPULL_CATALOG": "https://env/catalogue/"}
    config = load_config(path, env=env)
    assert (config.download.concurrency, config.search.catalog, config.download.dest) == (
        5,
        "https://env/catalogue/",
        "from-file",
    )
    config = load_config(path, env=env, flags={"download.concurrency": 9})
    assert config.download.concurrency == 9


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            "[download]\nconcurency = 3\n",
            "unknown key \\[download\\] concurency \\(did you mean 'concurrency'\\?\\)",
        ),
        ("[download]\nconcurrency = 0\n", 'download.concurrency: must be "auto" or a whole'),
        ("[download]\nconcurrency = 'many'\n", 'download.concurrency: must be "auto" or a whole'),
        ("[donwload]\n", "unknown section \\[donwload\\]"),
        ("[download\n", "not valid TOML.*line 1"),
        ("[auth]\ntoken = 'x'\n", "must not be stored in a config file"),
        ("[auth]\noffline_token = 'x'\n", "offline_token must not be stored"),
        ("[auth]\ntoken_url = 'http://iam.example.org/token'\n", "unencrypted; use https"),
        ("[auth]\ntoken_url = 'iam.example.org'\n", "auth.token_url: expected an http"),
        ("[auth]\nclient_id = ' '\n", "auth.client_id"),
        ("[auth]\nrefresh_margin = -1\n", "auth.refresh_margin"),
        ("[search]\ncatalog = 'ftp://x'\n", "search.catalog: expected an http"),
        ("[download]\ntemplate = '{collection}'\n", "must contain \\{name\\}"),
        ("[output]\ndashboard = 'fancy'\n", "output.dashboard"),
        (
            "[download]\nrecord_hash = 'sha256'\n",
            "download.record_hash: expected one of .*sha2-256.*, got 'sha256'",
        ),
    ],
)
def test_bad_config_files_name_the_file_and_key(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path, env={})
    assert str(path) in str(info.value)


def test_missing_config_file() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("/nonexistent/stacpull.toml", env={})


def test_catalog_gets_its_trailing_slash() -> None:
    config = Config().with_values({"search.catalog": "https://catalog.maap.eo.esa.int/catalogue"})
    assert config.search.catalog.endswith("/catalogue/")


def test_token_from_environment_is_a_secret() -> None:
    config = load_config(env={"STACPULL_TOKEN": "t0k3n"})
    assert config.auth.token == Secret("t0k3n")
    assert "t0k3n" not in repr(config)


def test_oidc_settings_from_environment_and_maap_defaults() -> None:
    assert Config().auth.token_url.startswith("https://iam.maap.eo.esa.int/realms/esa-maap/")
    assert Config().auth.client_id == "offline-token"
    env = {
        "STACPULL_OFFLINE_TOKEN": "offline-secret-value",
        "STACPULL_TOKEN_URL": "https://iam.example.org/token",
        "STACPULL_CLIENT_ID": "my-client",
        "STACPULL_CLIENT_SECRET": "client-secret-value",
        "STACPULL_OFFLINE_TOKEN_FILE": "~/.maap/credentials.txt",
    }
    auth = load_config(env=env).auth
    assert auth.offline_token == Secret("offline-secret-value")
    assert auth.client_secret == Secret("client-secret-value")
    assert (auth.token_url, auth.client_id) == ("https://iam.example.org/token", "my-client")
    assert auth.offline_token_file == "~/.maap/credentials.txt"
    assert "secret-value" not in repr(auth)
    assert scrub("said offline-secret-value twice: offline-secret-value") == "said *** twice: ***"
    flags = load_config(env=env, flags={"auth.client_id": "flag-client"}).auth
    assert flags.client_id == "flag-client"


@pytest.mark.parametrize("bbox", ["1,2,3", "a,b,c,d", "-200,0,0,1", "0,10,1,5", "0,-95,1,0"])
def test_invalid_bboxes(bbox: str) -> None:
    with pytest.raises(ConfigError, match="bbox"):
        parse_bbox(bbox)


def test_antimeridian_bbox_is_allowed() -> None:
    assert parse_bbox("170,-10,-170,10") == (170.0, -10.0, -170.0, 10.0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-09-29T00:00:00Z/2025-09-29T00:12:00Z", "2025-09-29T00:00:00Z/2025-09-29T00:12:00Z"),
        ("2025-01-01/..", "2025-01-01/.."),
        ("/2025-01-01", "../2025-01-01"),
        ("2025-01-01", "2025-01-01"),
    ],
)
def test_datetimes(value: str, expected: str) -> None:
    assert parse_datetime_range(value) == expected


@pytest.mark.parametrize(
    "value", ["yesterday", "2025-13-01", "../..", "2025-02-01/2025-01-01", "a/b/c"]
)
def test_invalid_datetimes(value: str) -> None:
    with pytest.raises(ConfigError, match="datetime"):
        parse_datetime_range(value)
