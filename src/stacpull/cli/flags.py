"""A command's flags as small typed objects, and what each group means as config keys.

A click command receives every flag as a keyword of its own: ``download`` had 24. Here a
group of flags that travels together (the query, the credentials, the transfer, the
output, the job's own) is one typed named tuple (immutable, and built at import in a
tenth of a frozen dataclass's time: ``--help`` imports every command) whose fields are
named as click names the flags, and :func:`gather` hands a command each group as one argument::

    @click.command()
    @gather(query=QueryFlags, auth=AuthFlags)   # between the command and its options
    @query_options
    @auth_options
    def check(query: QueryFlags, auth: AuthFlags) -> None:
        flags = {**query.values(), **auth.values()}

The option declarations (their order in ``--help``) stay in :mod:`.options`; a group takes
its fields' values whatever decorator declared them. Each group's :meth:`values` turns it
into the dotted config keys :func:`~stacpull.config.load_config` takes as flags.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import fields
from typing import Any, NamedTuple, TypeVar

import click

from ..errors import ConfigError

__all__ = [
    "AuthFlags",
    "JobFlags",
    "MirrorFlags",
    "OutputFlags",
    "QueryFlags",
    "TransferFlags",
    "gather",
]

_R = TypeVar("_R")


def _field_names(group: type[Any]) -> tuple[str, ...]:
    """The fields of a flag group (a named tuple, or a dataclass): the click names of its
    flags."""
    named = getattr(group, "_fields", None)
    return tuple(named) if named is not None else tuple(f.name for f in fields(group))


def gather(**groups: type[Any]) -> Callable[[Callable[..., _R]], Callable[..., _R]]:
    """Give a click command its flags as typed groups: for each ``name=Group``, the click
    values named as ``Group``'s fields leave the keywords and come back as one ``Group``
    under ``name``. Place it right below ``@click.command``: it checks, on import, that the
    options below declare every field (a renamed flag fails at once, not at run time)."""

    def decorate(callback: Callable[..., _R]) -> Callable[..., _R]:
        declared = {p.name for p in getattr(callback, "__click_params__", ())}
        for group in groups.values():
            missing = set(_field_names(group)) - declared
            if missing:
                raise TypeError(f"{callback.__name__}: no option for {sorted(missing)}")

        @functools.wraps(callback)  # also carries click's __click_params__ to the command
        def gathered(*args: Any, **values: Any) -> _R:
            for name, group in groups.items():
                values[name] = group(**{key: values.pop(key) for key in _field_names(group)})
            return callback(*args, **values)

        return gathered

    return decorate


def _split(values: tuple[str, ...]) -> list[str]:
    """Repeatable, comma-separated options → one flat list."""
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def _outer_flags() -> dict[str, bool]:
    """``-q``/``-v`` given before the subcommand (``stacpull -v download``)."""
    ctx = click.get_current_context(silent=True)
    return dict(ctx.meta.get("stacpull.outer", {})) if ctx is not None else {}


#: The flags a saved search (``--from``) makes meaningless, by their field.
_QUERY_FLAGS = (
    ("collections", "--collection"),
    ("ids", "--ids"),
    ("bbox", "--bbox"),
    ("intersects", "--intersects"),
    ("datetime_", "--datetime"),
    ("window", "--window"),
    ("filter_", "--filter"),
    ("filter_lang", "--filter-lang"),
    ("max_items", "--max-items"),
    ("page_size", "--page-size"),
    ("method", "--method"),
)


def _filter_text(value: str | None) -> str | None:
    """``--filter``: the filter itself, or ``@FILE``: the text of FILE (a CQL2-JSON filter
    is easier kept in a file than quoted for a shell)."""
    if value is None or not value.startswith("@"):
        return value
    from pathlib import Path

    try:
        return Path(value[1:]).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--filter: cannot read {value[1:]}: {exc}") from None


class QueryFlags(NamedTuple):
    """What to search: ``--profile``, ``--catalog`` and the query flags."""

    profile: str | None
    catalog: str | None
    collections: tuple[str, ...]
    ids: tuple[str, ...]
    bbox: str | None
    intersects: str | None
    datetime_: str | None
    window: str | None
    filter_: str | None
    filter_lang: str | None
    max_items: int | None
    page_size: int | None
    method: str | None

    def given(self) -> list[str]:
        """The query flags given (``--collection``, ``--bbox`` …), as typed."""
        return [flag for key, flag in _QUERY_FLAGS if getattr(self, key) not in (None, (), "")]

    def values(self) -> dict[str, Any]:
        """The query as ``search.*`` config keys (parsed: a malformed value raises
        :class:`ConfigError` naming its flag)."""
        from ..config import load_geojson_geometry, parse_bbox, parse_datetime_range

        when = self.datetime_
        return {
            "search.catalog": self.catalog,
            "search.collections": _split(self.collections) or None,
            "search.ids": _split(self.ids) or None,
            "search.bbox": parse_bbox(self.bbox, "--bbox") if self.bbox else None,
            "search.intersects": load_geojson_geometry(self.intersects)
            if self.intersects
            else None,
            "search.datetime": parse_datetime_range(when, "--datetime") if when else None,
            "search.window": self.window,
            "search.filter": _filter_text(self.filter_),
            "search.filter_lang": self.filter_lang,
            "search.max_items": self.max_items,
            "search.page_size": self.page_size,
            "search.method": self.method.upper() if self.method else None,
        }


class AuthFlags(NamedTuple):
    """The credentials: ``--offline-token-file``, ``--token`` … and ``--auth-host``."""

    offline_token_file: str | None
    token_url: str | None
    client_id: str | None
    client_secret: str | None
    token: str | None
    token_file: str | None
    auth_hosts: tuple[str, ...]

    def values(self) -> dict[str, Any]:
        """The credentials as ``auth.*`` config keys."""
        values = {f"auth.{key}": getattr(self, key) for key in _field_names(AuthFlags)}
        values["auth.hosts"] = list(values.pop("auth.auth_hosts")) or None
        return values


class TransferFlags(NamedTuple):
    """How to transfer: ``--assets``, ``--dest``, ``-j``, ``--segments``, ``--header`` …"""

    assets: tuple[str, ...]
    dest: str | None
    concurrency: int | str | None  # a number, or "auto"
    per_host: int | str | None
    segments: int | str | None
    template: str | None
    retries: int | None
    stall_timeout: float | None
    bwlimit: str | None
    headers: tuple[str, ...]
    header_all_hosts: bool | None

    def values(self) -> dict[str, Any]:
        """The transfer as ``download.*`` config keys (a malformed ``--header`` raises
        :class:`ConfigError` naming the flag, never its value)."""
        from ..config import parse_headers

        headers = self.headers
        return {
            "download.stall_timeout": self.stall_timeout,
            "download.bwlimit": self.bwlimit,
            "download.headers": parse_headers(list(headers), "--header") if headers else None,
            "download.header_all_hosts": self.header_all_hosts,
            "download.assets": _split(self.assets) or None,
            "download.dest": self.dest,
            "download.concurrency": self.concurrency,
            "download.per_host": self.per_host,
            "download.segments": self.segments,
            "download.template": self.template,
            "download.retries": self.retries,
        }


class OutputFlags(NamedTuple):
    """What the run shows and logs: ``--dashboard``, ``-q``/``-v``, ``--log-json`` …"""

    dashboard: str | None
    progress_interval: float | None
    quiet: bool
    verbose: bool
    log_json: str | None
    log_file: str | None

    def values(self) -> dict[str, Any]:
        """The output as ``output.*`` config keys; ``-q``/``-v`` before the subcommand
        count too, and both together are a :class:`ConfigError`."""
        outer = _outer_flags()
        quiet = self.quiet or outer.get("quiet", False)
        verbose = self.verbose or outer.get("verbose", False)
        if quiet and verbose:
            raise ConfigError("-q/--quiet and -v/--verbose contradict each other: choose one")
        return {
            "output.progress_interval": self.progress_interval,
            "output.log_file": self.log_file,
            "output.dashboard": self.dashboard,
            "output.verbosity": "quiet" if quiet else "verbose" if verbose else None,
            "output.log_json": self.log_json,
        }


class JobFlags(NamedTuple):
    """The job's own flags: ``--config``, ``--retry-failed``, ``--dry-run``,
    ``--max-bytes``, ``--yes``, ``--from`` and ``--json``."""

    config_path: str | None
    retry_failed: bool
    dry_run: bool
    max_bytes: str | None
    yes: bool
    from_file: str | None
    as_json: bool


class MirrorFlags(NamedTuple):
    """mirror's own flags: ``--prune`` and ``--cluster`` (checked by its option type: the
    address as the config writes it)."""

    prune: bool
    cluster: str | None

    def values(self) -> dict[str, Any]:
        """The cluster as the ``cluster.address`` config key (``--prune`` is the run's)."""
        return {"cluster.address": self.cluster}
