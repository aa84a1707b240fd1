"""The config files: where they are and what each one sets.

Three layers, each over the one before: the user's own file (:func:`user_config_file`,
found through platformdirs), ``./stacpull.toml``, then ``--config FILE`` (or
``$STACPULL_CONFIG``). This is the one module that reads TOML; an error names the file and
the line of the key. Tokens never come from a file: they belong in a token file or the
environment.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .hints import did_you_mean
from .model import SECTIONS, Config, key_sections

__all__ = ["apply_file", "config_files", "profile_values", "user_config_file"]

_NOT_IN_FILES = {
    "token": "auth.token_file or the STACPULL_TOKEN environment variable",
    "offline_token": "auth.offline_token_file or the STACPULL_OFFLINE_TOKEN environment variable",
}


def _line_of(text: str, section: str, key: str) -> int | None:
    """The line of ``key =`` inside ``[section]`` of a TOML text (1-based), if found."""
    current = ""
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            current = stripped.strip("[]").strip()
        elif current == section and re.match(rf"{re.escape(key)}\s*=", stripped):
            return number
    return None


def _flatten_toml(data: Mapping[str, Any], origin: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for section, table in data.items():
        if section == "profiles":
            continue
        if section not in SECTIONS:
            hint = did_you_mean(section, [*SECTIONS, "profiles"], "[{}]")
            raise ConfigError(f"{origin}: unknown section [{section}]{hint}")
        if not isinstance(table, dict):
            raise ConfigError(f"{origin}: [{section}] must be a table")
        if section == "auth":
            for key, instead in _NOT_IN_FILES.items():
                if key in table:
                    raise ConfigError(
                        f"{origin}: [auth] {key} must not be stored in a config file; use {instead}"
                    )
        for key, value in table.items():
            flat[f"{section}.{key}"] = value
    return flat


def profile_values(name: str, table: Any, origin: str) -> dict[str, Any]:
    """A profile's flat keys as dotted config keys."""
    if not isinstance(table, dict):
        raise ConfigError(f"{origin}: [profiles.{name}] must be a table")
    sections = key_sections()
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key in _NOT_IN_FILES:
            raise ConfigError(
                f"{origin}: [profiles.{name}] {key} must not be stored in a config file; "
                f"use {_NOT_IN_FILES[key]}"
            )
        if key not in sections:
            hint = did_you_mean(key, sections, "{!r}")
            raise ConfigError(f"{origin}: unknown key [profiles.{name}] {key}{hint}")
        values[f"{sections[key]}.{key}"] = value
    return values


def user_config_file(env: Mapping[str, str] | None = None) -> Path | None:
    r"""Where the user's own config file is looked for (it need not exist), or ``None``
    when ``STACPULL_NO_USER_CONFIG`` is set (tests and CI set it).

    With the process environment, platformdirs says where: ``$XDG_CONFIG_HOME/stacpull``
    (``~/.config/stacpull``) on Linux, ``~/Library/Application Support/stacpull`` on macOS,
    ``%APPDATA%\stacpull`` on Windows. An explicit ``env`` mapping stands for the whole
    environment: only its own ``XDG_CONFIG_HOME`` points at a user file."""
    environ = os.environ if env is None else env
    if environ.get("STACPULL_NO_USER_CONFIG", "").strip() not in ("", "0"):
        return None
    if env is not None and env is not os.environ:
        xdg = env.get("XDG_CONFIG_HOME")
        return Path(xdg) / "stacpull" / "stacpull.toml" if xdg else None
    import platformdirs  # only here: where the user file lives is its only use

    return Path(platformdirs.user_config_dir("stacpull", appauthor=False)) / "stacpull.toml"


def config_files(
    path: str | os.PathLike[str] | None = None, *, env: Mapping[str, str] | None = None
) -> list[tuple[str, Path]]:
    """The config files read, lowest layer first, each as (the name its values are
    attributed to, its path): the user file and ``./stacpull.toml`` when they exist, then
    ``path`` (``--config``), else ``$STACPULL_CONFIG``, which must exist. A file named
    twice is read once, in its highest place."""
    environ = os.environ if env is None else env
    layers: list[tuple[str, Path]] = []
    user = user_config_file(env)
    if user is not None and user.is_file():
        layers.append((str(user), user))
    local = Path("stacpull.toml")
    if local.is_file():
        layers.append(("./stacpull.toml", local))
    explicit = path if path is not None else (environ.get("STACPULL_CONFIG") or None)
    if explicit is not None:
        chosen = Path(explicit)
        if path is None and not chosen.exists():
            # An API user who never named a file must learn where this one came from.
            raise ConfigError(f"STACPULL_CONFIG: config file {chosen} does not exist")
        layers.append((str(chosen), chosen))
    seen: dict[Path, int] = {}
    for index, (_, file) in enumerate(layers):
        try:
            seen[file.resolve()] = index
        except OSError:
            seen[file.absolute()] = index
    return [layer for index, layer in enumerate(layers) if index in seen.values()]


def _read_toml(origin: str, file_path: Path) -> tuple[str, dict[str, Any]]:
    """A config file's text and its parsed TOML, or an error naming the file."""
    try:
        text = file_path.read_text(encoding="utf-8")
        return text, tomllib.loads(text)
    except FileNotFoundError:
        raise ConfigError(f"config file {origin} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {origin} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {origin} is not valid TOML: {exc}") from None


def _in_file(message: str, origin: str, text: str) -> str:
    """A value error from the file, with the file and the line of the key it names."""
    match = re.match(r"(?:unknown key \[(\w+)\] ([\w-]+)|(\w+)\.(\w+):)", message)
    line = None
    if match:
        section, key = (match.group(1), match.group(2)) if match.group(1) else match.group(3, 4)
        line = _line_of(text, section, key)
    where = f"{origin} line {line}" if line else origin
    return message if message.startswith(origin) else f"{where}: {message}"


def apply_file(
    config: Config, origin: str, file_path: Path
) -> tuple[Config, dict[str, str], dict[str, Any]]:
    """``config`` with the values of the file at ``file_path`` applied; where each key it
    set came from (``FILE line N``); and the profiles it defines, each checked, used or not.
    Errors name the file (``origin``) and the line of the key."""
    text, data = _read_toml(origin, file_path)
    flat = _flatten_toml(data, origin)
    try:
        config = config.with_values(flat)
    except ConfigError as exc:
        raise ConfigError(_in_file(str(exc), origin, text)) from None
    origins: dict[str, str] = {}
    for dotted in flat:
        line = _line_of(text, *dotted.split(".", 1))
        origins[dotted] = f"{origin} line {line}" if line else origin
    raw_profiles = data.get("profiles") or {}
    if not isinstance(raw_profiles, dict):
        raise ConfigError(f"{origin}: [profiles] must hold tables, e.g. [profiles.maap]")
    for name, table in raw_profiles.items():
        profile_values(name, table, origin)  # validate every profile, used or not
    return config, origins, raw_profiles
