"""Configuration: frozen dataclasses, their layered loading and validation.

Values come, highest first, from command-line flags, the environment
(``STACPULL_<SECTION>_<KEY>`` for every key, and the short names of :data:`ENV_KEYS`), a
profile, the config files and the defaults (:mod:`stacpull.defaults`). The config files
layer, each over the one before: the user's own (``$XDG_CONFIG_HOME/stacpull/stacpull.toml``
or the platform's place for it, see :func:`user_config_file`), ``./stacpull.toml``, then
``--config FILE`` (or ``$STACPULL_CONFIG``). ``config.example.toml`` documents every key.
Every invalid value raises :class:`~stacpull.errors.ConfigError` naming the key (and the
file and line, or the environment variable), never a traceback.

One concern per module, all re-exported here:

- :mod:`~stacpull.config.model`: the section dataclasses, :class:`Config`, and how a
  layer's raw values become their fields;
- :mod:`~stacpull.config.values`: single values (bbox, datetime, template, duration,
  size, rate, connection count) and :class:`Secret`; :mod:`~stacpull.config.headers`:
  extra request headers;
- :mod:`~stacpull.config.files`: the config files (the one reader of TOML);
  :mod:`~stacpull.config.environment`: the ``STACPULL_*`` variables;
- :mod:`~stacpull.config.resolve`: the layers in order (:func:`load_config`);
- :mod:`~stacpull.config.hints`: the "did you mean" of every error.
"""

from __future__ import annotations

from .environment import ENV_KEYS, env_variables
from .files import config_files, user_config_file
from .headers import parse_headers, secret_header
from .hints import closest
from .model import AuthConfig, Config, DownloadConfig, OutputConfig, SearchConfig, shown_setting
from .resolve import load_config, resolve_config
from .values import (
    Secret,
    check_template,
    load_geojson_geometry,
    parse_bbox,
    parse_connections,
    parse_datetime_range,
    parse_duration,
    parse_size,
)

__all__ = [
    "ENV_KEYS",
    "AuthConfig",
    "Config",
    "DownloadConfig",
    "OutputConfig",
    "SearchConfig",
    "Secret",
    "check_template",
    "closest",
    "config_files",
    "env_variables",
    "load_config",
    "load_geojson_geometry",
    "parse_bbox",
    "parse_connections",
    "parse_datetime_range",
    "parse_duration",
    "parse_headers",
    "parse_size",
    "resolve_config",
    "secret_header",
    "shown_setting",
    "user_config_file",
]
