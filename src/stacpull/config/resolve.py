"""The layers in order: which layer sets each key, and the :class:`Config` they make.

Lowest first: the defaults; the config files of :func:`~stacpull.config.files.config_files`
(the user's, ``./stacpull.toml``, ``--config``), each over the one before; the profile
(``--profile``, else ``STACPULL_PROFILE``); the environment; the flags.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..defaults import DEFAULT_CATALOG
from ..errors import ConfigError
from .environment import env_values, in_env
from .files import apply_file, config_files, profile_values
from .hints import did_you_mean
from .model import Config

__all__ = ["load_config", "resolve_config"]

#: Profiles every install knows; a config file's ``[profiles.NAME]`` adds or replaces.
_BUILTIN_PROFILES: Mapping[str, Mapping[str, Any]] = {
    "maap": {"catalog": DEFAULT_CATALOG},
    "maap-preop": {"catalog": "https://catalog.preop.esa-maap.org/catalogue/"},
}


def resolve_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
    profile: str | None = None,
) -> tuple[Config, dict[str, str]]:
    """:func:`load_config`, plus where each key that is not a default came from
    (``FILE line N``, ``profile P``, ``env VAR``, ``flag``), for ``stacpull config show``.

    Layers, lowest first: defaults; the config files of :func:`config_files` (the user's,
    ``./stacpull.toml``, ``--config``), each over the one before; the profile
    (``--profile``, else ``STACPULL_PROFILE``; built in: ``maap``, ``maap-preop``; a file's
    ``[profiles.NAME]`` replaces a lower one of that name); the environment; the flags.
    """
    environ = os.environ if env is None else env
    config = Config()
    origins: dict[str, str] = {}
    profiles = _Profiles()
    for origin, file_path in config_files(path, env=env):
        config, set_here, defined = apply_file(config, origin, file_path)
        origins.update(set_here)
        profiles.add(defined, origin)
    chosen = profile or environ.get("STACPULL_PROFILE") or None
    if chosen is not None:
        where = "" if profile else "STACPULL_PROFILE: "
        config = _with_profile(config, origins, profiles, chosen, where)
    config = _with_environment(config, origins, environ)
    if flags:
        config = config.with_values(flags)
        origins.update({key: "flag" for key, value in flags.items() if value is not None})
    return config, origins


@dataclass
class _Profiles:
    """Every profile known so far, and the layer that defined each (a later one replaces
    a lower one of the same name)."""

    tables: dict[str, Any] = field(
        default_factory=lambda: {k: dict(v) for k, v in _BUILTIN_PROFILES.items()}
    )
    origins: dict[str, str] = field(
        default_factory=lambda: dict.fromkeys(_BUILTIN_PROFILES, "built in")
    )

    def add(self, defined: Mapping[str, Any], origin: str) -> None:
        """The profiles of the file ``origin``."""
        self.tables.update(defined)
        self.origins.update(dict.fromkeys(defined, origin))


def _with_profile(
    config: Config, origins: dict[str, str], profiles: _Profiles, chosen: str, where: str
) -> Config:
    """``config`` with profile ``chosen`` applied, recorded in ``origins``; ``where``
    begins the error of an unknown one (the variable that named it)."""
    if chosen not in profiles.tables:
        hint = did_you_mean(chosen, profiles.tables, "{!r}")
        raise ConfigError(
            f"{where}unknown profile {chosen!r}{hint}; "
            f"profiles: {', '.join(sorted(profiles.tables))}"
        )
    defined_in = profiles.origins[chosen]
    values = profile_values(chosen, profiles.tables[chosen], defined_in)
    try:
        config = config.with_values(values)
    except ConfigError as exc:
        raise ConfigError(f"profile {chosen!r} ({defined_in}): {exc}") from None
    origins.update(dict.fromkeys(values, f"profile {chosen}"))
    return config


def _with_environment(
    config: Config, origins: dict[str, str], environ: Mapping[str, str]
) -> Config:
    """``config`` with the environment's values applied, recorded in ``origins``."""
    values, names = env_values(environ)
    if not values:
        return config
    try:
        config = config.with_values(values)
    except ConfigError as exc:
        raise ConfigError(in_env(str(exc), names)) from None
    origins.update({key: f"env {names[key]}" for key in values})
    return config


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
    profile: str | None = None,
) -> Config:
    """Build the run's :class:`Config` from defaults, the config files (the user's,
    ``./stacpull.toml``, then ``path`` or ``$STACPULL_CONFIG``), the profile, the
    environment and the flags, each overriding the one before. Errors name the file, the
    key and its line, or the environment variable."""
    return resolve_config(path, env=env, flags=flags, profile=profile)[0]
