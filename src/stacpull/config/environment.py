"""The environment layer: every config key is also a ``STACPULL_<SECTION>_<KEY>`` variable
(generated from the dataclasses, so a new key has its variable without a line here),
beside the short names of :data:`ENV_KEYS`; a ``STACPULL_<SECTION>_`` name that sets no
key is an error, and a wrong value's error names the variable it came from."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from ..errors import ConfigError
from .hints import did_you_mean
from .model import SECTIONS

__all__ = ["ENV_KEYS", "env_values", "env_variables", "in_env"]

#: Every config key ``[section] key`` is also the variable ``STACPULL_SECTION_KEY``.
_ENV_PREFIX = "STACPULL_"

#: Short names kept beside the generated ``STACPULL_<SECTION>_<KEY>`` ones (which win when
#: both are set), and the config key each one sets.
ENV_KEYS: Mapping[str, str] = {
    "STACPULL_CATALOG": "search.catalog",
    "STACPULL_DEST": "download.dest",
    "STACPULL_CONCURRENCY": "download.concurrency",
    "STACPULL_TOKEN": "auth.token",
    "STACPULL_TOKEN_FILE": "auth.token_file",
    "STACPULL_OFFLINE_TOKEN": "auth.offline_token",
    "STACPULL_OFFLINE_TOKEN_FILE": "auth.offline_token_file",
    "STACPULL_TOKEN_URL": "auth.token_url",
    "STACPULL_CLIENT_ID": "auth.client_id",
    "STACPULL_CLIENT_SECRET": "auth.client_secret",
}

#: Keys holding secrets: never accepted from a config file (except the public client


def env_variables() -> dict[str, str]:
    """Every environment variable that sets a config key, and that key: one
    ``STACPULL_<SECTION>_<KEY>`` per field of the section dataclasses (generated, so a new
    key has its variable without a line here), plus the short names of :data:`ENV_KEYS`."""
    generated = {
        f"{_ENV_PREFIX}{section.upper()}_{f.name.upper()}": f"{section}.{f.name}"
        for section, kind in SECTIONS.items()
        for f in fields(kind)
    }
    return {**ENV_KEYS, **generated}


_STRUCTURED = ("tuple[", "list[", "dict[")


def _env_text(var: str, key: str, text: str) -> Any:
    """An environment value as the file's would be: a list or table field also takes JSON
    (``["a", "b"]``, ``{"type": "Point", ...}``); everything else, and a list written
    ``a,b``, is converted by the same rules as the file's values."""
    section, _, name = key.partition(".")
    kind = SECTIONS[section].__dataclass_fields__[name].type
    if any(mark in str(kind) for mark in _STRUCTURED) and text.lstrip()[:1] in ("[", "{"):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{var}: expected JSON ({exc})") from None
    return text


def env_values(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The config values the environment sets and the variable each came from.

    An empty variable counts as unset. A ``STACPULL_<SECTION>_...`` name that matches no
    key is an error (a typo would otherwise be ignored in silence)."""
    known = env_variables()
    values: dict[str, Any] = {}
    names: dict[str, str] = {}
    # The short names first, so the generated name of the same key wins.
    for var, key in sorted(known.items(), key=lambda pair: pair[0] not in ENV_KEYS):
        text = environ.get(var)
        if text:
            values[key] = _env_text(var, key, text)
            names[key] = var
    for var, text in environ.items():
        section = next((s for s in SECTIONS if var.startswith(f"{_ENV_PREFIX}{s.upper()}_")), None)
        if section is not None and text and var not in known:
            hint = did_you_mean(var, known, "{}")
            raise ConfigError(f"environment variable {var} sets no config key{hint}")
    return values, names


def in_env(message: str, names: Mapping[str, str]) -> str:
    """A value error from the environment, naming the variable it came from."""
    match = re.match(r"(?:unknown key \[(\w+)\] (\w+)|(\w+)\.(\w+):)", message)
    if match:
        section, key = (match.group(1), match.group(2)) if match.group(1) else match.group(3, 4)
        var = names.get(f"{section}.{key}")
        if var is not None:
            return f"{var}: {message}"
    section = re.match(r"\[?(\w+)\]?:", message)
    related = [
        var
        for key, var in names.items()
        if section is None or key.startswith(f"{section.group(1)}.")
    ]
    return f"environment ({', '.join(sorted(related or names.values()))}): {message}"
