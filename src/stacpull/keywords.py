"""The Python API's keyword options: their types (:class:`Options`, so a type checker
catches ``colections=`` or ``concurrency="eight"``) and their translation into dotted
config keys, with a did-you-mean for a misspelt one.

A module of its own so :mod:`stacpull.api` holds the calls alone; the API re-exports
:class:`Options` and :func:`option_keys`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from .config import Config, Secret
from .config import closest as _closest
from .errors import ConfigError

if TYPE_CHECKING:
    from .cluster.driver import Client

__all__ = ["CollectionOptions", "MirrorOptions", "Options", "dotted_values", "option_keys"]

#: A file name: a string or a :class:`~pathlib.Path`.
_PathArg = str | os.PathLike[str]
#: One value or several (``collections="C1"`` is ``collections=["C1"]``).
_Names = str | Sequence[str]


#: A time: seconds, or a string with units ("500ms", "30s", "2m", "1h30m").
_Duration = float | str
#: A count of transfers or connections: a whole number from 1 to 4096, or "auto" (the
#: default: the run finds what the link takes, under a polite ceiling).
_Count = int | Literal["auto"]
#: Extra request headers: "Name: value" strings, a mapping, or (name, value) pairs.
_Headers = Sequence[str] | Mapping[str, str] | Sequence[tuple[str, str]]


class _CatalogOptions(TypedDict, total=False):
    """Every option except the search's ``bbox`` and ``datetime``, which
    :func:`collections` takes as filters of its own. ``None`` leaves a key as the
    environment, config file or default set it."""

    # [search]
    catalog: str | None
    collections: _Names | None
    ids: _Names | None
    intersects: dict[str, Any] | None
    filter: str | None
    filter_lang: Literal["cql2-text", "cql2-json"] | None
    max_items: int | None
    page_size: int | None
    method: Literal["GET", "POST", "get", "post"] | None
    timeout: _Duration | None
    window: _Duration | None
    # [download]
    dest: _PathArg | None
    assets: _Names | None
    template: str | None
    concurrency: _Count | None
    per_host: _Count | None
    queue_size: int | None
    chunk_size: int | None
    stall_timeout: _Duration | None
    min_speed: int | str | None
    connect_timeout: _Duration | None
    retries: int | None
    backoff: _Duration | None
    max_backoff: _Duration | None
    not_found_retries: int | None
    not_found_delay: _Duration | None
    adaptive: bool | None
    min_free: int | str | None
    max_bytes: int | str | None
    segments: _Count | None
    segment_size: int | str | None
    segment_below: int | str | None
    record_hash: str | None
    bwlimit: int | str | None
    headers: _Headers | None
    header_all_hosts: bool | None
    # [auth]
    token: str | Secret | None
    token_file: _PathArg | None
    auth_hosts: _Names | None
    offline_token: str | Secret | None
    offline_token_file: _PathArg | None
    token_url: str | None
    client_id: str | None
    client_secret: str | Secret | None
    scope: str | None
    refresh_margin: _Duration | None
    # [output]
    progress_interval: _Duration | None
    dashboard: Literal["auto", "rich", "plain", "none"] | None
    verbosity: Literal["quiet", "normal", "verbose"] | None
    report: bool | None
    log_json: _PathArg | None
    log_file: _PathArg | None
    # [cluster]: a mirror on a Dask cluster ("local:N" or "tcp://host:port"; see mirror's
    # client= for a Client of your own)
    cluster: str | None
    buckets: int | None
    cluster_per_host: _Count | None
    cluster_retries: int | None
    # not a config key: the config file's [profiles.NAME] to apply (else STACPULL_PROFILE)
    profile: str | None


class Options(_CatalogOptions, total=False):
    """The keyword options of the API: every config key, flat (named as in its section,
    except ``auth_hosts``, ``[auth] hosts``, and the [cluster] keys: ``cluster`` is
    ``address``, ``cluster_per_host`` and ``cluster_retries`` the two names [download] also
    has), plus ``profile``. A test keeps this in step with the config dataclasses."""

    bbox: str | Sequence[float] | None
    datetime: str | None


#: Config keys whose API keyword is not the key's own name: a name another section also
#: has, or one that reads better as a keyword (``mirror(cluster="local:2")``).
_ALIASES = {
    "auth.hosts": "auth_hosts",
    "cluster.address": "cluster",
    "cluster.per_host": "cluster_per_host",
    "cluster.retries": "cluster_retries",
}
#: Keys whose single string means a list of one.
_LISTS = frozenset({"collections", "ids", "assets", "auth_hosts"})


def option_keys() -> dict[str, str]:
    """Each keyword option that is a config key, and its dotted key (``max_items`` →
    ``search.max_items``), read from the config dataclasses themselves."""
    base = Config()
    dotted = (
        f"{section.name}.{f.name}"
        for section in fields(base)
        for f in fields(getattr(base, section.name))
    )
    return {_ALIASES.get(key, key.partition(".")[2]): key for key in dotted}


def dotted_values(options: dict[str, Any], own: Sequence[str] = ()) -> dict[str, Any]:
    """Keyword options as dotted config keys; a misspelt one is a one-line ConfigError
    naming the nearest option or ``own`` keyword of the function called (``retry_faild``
    is ``retry_failed``, ``organization`` is ``organisation``)."""
    keys = option_keys()
    values: dict[str, Any] = {}
    for name, value in options.items():
        if name not in keys:
            hint = _closest(name, [*keys, "profile", *own])
            suggestion = f" (did you mean {hint!r}?)" if hint is not None else ""
            raise ConfigError(f"unknown option {name!r}{suggestion}")
        if isinstance(value, str) and name in _LISTS:
            value = [value]
        elif isinstance(value, os.PathLike):
            value = os.fspath(value)
        values[keys[name]] = value
    return values


class CollectionOptions(_CatalogOptions, total=False):
    """:func:`~stacpull.api.collections`' keywords: its filters, then the options."""

    q: str | None
    title: str | None
    platform: str | None
    organisation: str | None
    bbox: str | Sequence[float] | None
    datetime: str | None


class MirrorOptions(Options, total=False):
    """:func:`~stacpull.api.mirror`'s keywords: ``prune`` (delete the files whose items left
    the catalogue, after a complete search), ``client`` (a ``distributed.Client`` to run
    the transfers on, left open), then the options."""

    prune: bool
    client: Client | None
