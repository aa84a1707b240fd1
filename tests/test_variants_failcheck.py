"""Variants of issue 17's fixes that their own tests do not name (a hostile world's other forms)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stacpull.config import check_template, load_config, parse_datetime_range
from stacpull.errors import ConfigError

from .conftest import L1A, cli
from .test_scripting_robust import _hostile_run, _Refusing


@pytest.mark.parametrize("value", ["a\x85b", "a\x9b31mred", "a\x80b", "a\u2028b", "a\u2029b"])
def test_a_header_value_with_a_c1_control_or_unicode_line_separator_is_refused(value: str) -> None:
    """C1 controls (NEL, 8-bit CSI) and U+2028/U+2029 are control characters and line breaks too."""
    with pytest.raises(ConfigError, match="X-Name"):
        load_config(env={}, flags={"download.headers": [f"X-Name: {value}"]})
    assert load_config(env={}, flags={"download.headers": ["X-Name: café ü"]}).download.headers


@pytest.mark.parametrize("value", ["2016-12-31T23:59:60Z", "2020-01-01T00:00:00,5Z"])
def test_a_leap_second_or_comma_fraction_is_one_line_exit_2(value: str) -> None:
    with pytest.raises(ConfigError, match="datetime"):
        parse_datetime_range(value)
    code, out, err = cli(
        "search", "--catalog", "http://127.0.0.1:9/", "--collection", L1A, "--datetime", value
    )
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in out + err, err


@pytest.mark.parametrize("template", ["%2e%2e/{name}", "\uff0e\uff0e/{name}", "..%2f{name}"])
def test_an_encoded_or_unicode_dot_template_is_a_literal_name_inside_dest(template: str) -> None:
    """%2e and a fullwidth or one-dot leader are not '..': a literal directory name in DEST."""
    check_template(template)  # accepted: a literal directory name, not a climb


@pytest.mark.parametrize("status", [407, 511])
def test_a_proxy_or_portal_refusing_every_file_is_not_a_refused_token(
    tmp_path: Path, status: int
) -> None:
    """407 (a proxy wants its own credentials) and 511 (a captive portal) are not the token's
    refusal: the run never says the token was refused, and exits 1 with the files failed."""
    with _Refusing("*", status) as server:
        config = tmp_path / "c.toml"
        config.write_text("[download]\nbackoff = 0.01\nmax_backoff = 0.02\nretries = 1\n")
        code, err = _hostile_run(server, tmp_path / "d", "--config", str(config), "-j", "1")
    assert "Traceback" not in err, err
    assert code == 1 and "run stopped" not in err and "token" not in err.lower(), err
