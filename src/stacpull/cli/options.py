"""The flags several commands share, declared once, and their parsing into config keys.

The query, auth, transfer and catalogue-header flags, ``--config``/``--catalog``/
``--profile``, the duration type, and ``--debug``/``-q``/``-v`` wherever they are given
(before or after the subcommand).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from ..errors import (
    ConfigError,
    ScrubFilter,
)

if TYPE_CHECKING:
    # Only what the commands declare (flags, columns, formats) is loaded on import; each
    # command imports what it runs (anyio, the config, rich, the search client, the
    # dashboard; the engine and the credentials bring aiohttp, a quarter of a second), so
    # help and listings start fast (benchmarks/startup.py).

    pass

from .render import fail

__all__ = [
    "CATALOG_OPTION",
    "CONFIG_OPTION",
    "DEBUG_OPTION",
    "DURATION",
    "PROFILE_OPTION",
    "QUIET_ANYWHERE",
    "RETRY_FAILED_OPTION",
    "VERBOSE_ANYWHERE",
    "auth_options",
    "auth_values",
    "catalogue_header_options",
    "debug_logging",
    "download_options",
    "download_values",
    "header_flags",
    "option_group",
    "query_options",
    "query_values",
]


def _split(values: tuple[str, ...]) -> list[str]:
    """Repeatable, comma-separated options → one flat list."""
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def option_group(*options: Callable[[Any], Any]) -> Callable[[Callable[..., Any]], Any]:
    """Several click options as one decorator, listed in the order --help shows them."""

    def apply(fn: Callable[..., Any]) -> Any:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return apply


CONFIG_OPTION = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Config file, read over the user's and ./stacpull.toml [env STACPULL_CONFIG].",
)


#: The query and discovery commands' --catalog (auth check declares its own: there the
#: catalogue is what decides which host may receive the token).
CATALOG_OPTION = click.option(
    "--catalog",
    metavar="URL",
    help="STAC API root [env STACPULL_CATALOG; default: the operational MAAP catalogue].",
)


PROFILE_OPTION = click.option(
    "--profile",
    metavar="NAME",
    help="A named catalogue and its settings from the config file (built in: maap, "
    "maap-preop) [env STACPULL_PROFILE].",
)


def _debug_here(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """``--debug`` after the subcommand: the same as before it."""
    if value and not ctx.meta.get("stacpull.debug"):
        ctx.meta["stacpull.debug"] = True
        debug_logging(ctx)


class _Duration(click.ParamType):  # type: ignore[type-arg]  # generic from click 8.2 on
    """A time flag: ``500ms``, ``30s``, ``2m``, ``1h30m`` or seconds; anything else is one
    line naming the flag, exit 2 (click's usage error would print three)."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from ..config import parse_duration

        flag = param.opts[0] if param is not None and param.opts else "duration"
        try:
            return parse_duration(value, flag)
        except ConfigError as exc:
            fail(str(exc))


DURATION = _Duration()


DEBUG_OPTION = click.option(
    "--debug",
    is_flag=True,
    expose_value=False,
    callback=_debug_here,
    help="Log requests, retries, token refreshes and split files to stderr (never a token).",
)


query_options = option_group(
    PROFILE_OPTION,
    CATALOG_OPTION,
    click.option(
        "--collection",
        "collections",
        multiple=True,
        metavar="ID",
        help="Collection id; repeat or comma-separate.",
    ),
    click.option(
        "--ids", multiple=True, metavar="ID,…", help="Item ids; repeat or comma-separate."
    ),
    click.option("--bbox", metavar="W,S,E,N", help="Bounding box in degrees."),
    click.option(
        "--intersects",
        type=click.Path(dir_okay=False),
        metavar="FILE",
        help="GeoJSON file with the area of interest.",
    ),
    click.option(
        "--datetime",
        "datetime_",
        metavar="START/END",
        help="RFC 3339 instant or interval; '..' for an open end.",
    ),
    click.option(
        "--filter",
        "filter_",
        metavar="CQL2",
        help="CQL2-text filter, e.g. \"product:type='S1_SCS__1S'\".",
    ),
    click.option("--max-items", type=int, metavar="N", help="Stop after N items."),
    click.option("--page-size", type=int, metavar="N", help="Items per search page [100]."),
    click.option(
        "--method",
        type=click.Choice(["GET", "POST"], case_sensitive=False),
        help="Search method [GET].",
    ),
)


def query_values(
    collections: tuple[str, ...],
    ids: tuple[str, ...],
    bbox: str | None,
    intersects: str | None,
    datetime_: str | None,
    filter_: str | None,
    max_items: int | None,
    page_size: int | None,
    method: str | None,
    catalog: str | None,
) -> dict[str, Any]:
    from ..config import parse_bbox, parse_datetime_range
    from ..search import load_geojson_geometry

    return {
        "search.catalog": catalog,
        "search.collections": _split(collections) or None,
        "search.ids": _split(ids) or None,
        "search.bbox": parse_bbox(bbox, "--bbox") if bbox else None,
        "search.intersects": load_geojson_geometry(intersects) if intersects else None,
        "search.datetime": parse_datetime_range(datetime_, "--datetime") if datetime_ else None,
        "search.filter": filter_,
        "search.max_items": max_items,
        "search.page_size": page_size,
        "search.method": method.upper() if method else None,
    }


_AUTH_OPTIONS = [
    click.option(
        "--offline-token-file",
        type=click.Path(dir_okay=False),
        metavar="FILE",
        help="MAAP offline token (or credentials.txt with OFFLINE_TOKEN=): stacpull gets "
        "and refreshes access tokens itself [env STACPULL_OFFLINE_TOKEN holds the token].",
    ),
    click.option(
        "--token-url", metavar="URL", help="OIDC token endpoint [MAAP's; env STACPULL_TOKEN_URL]."
    ),
    click.option(
        "--client-id", metavar="ID", help="OIDC client id [offline-token; env STACPULL_CLIENT_ID]."
    ),
    click.option(
        "--client-secret",
        metavar="SECRET",
        help="OIDC client secret [MAAP's public one; env STACPULL_CLIENT_SECRET].",
    ),
    click.option("--token", metavar="TOKEN", help="A fixed access token [env STACPULL_TOKEN]."),
    click.option(
        "--token-file",
        type=click.Path(dir_okay=False),
        metavar="FILE",
        help="File holding an access token, re-read when it changes [token.txt].",
    ),
    click.option(
        "--auth-host",
        "auth_hosts",
        multiple=True,
        metavar="HOST",
        help="Another host that may receive the token; repeatable.",
    ),
]


_AUTH_KEYS = (
    "offline_token_file",
    "token_url",
    "client_id",
    "client_secret",
    "token",
    "token_file",
    "auth_hosts",
)


auth_options = option_group(*_AUTH_OPTIONS)


def auth_values(kw: dict[str, Any]) -> dict[str, Any]:
    """Pop the auth flags out of ``kw`` as config keys."""
    values = {f"auth.{k}": kw.pop(k) for k in _AUTH_KEYS}
    values["auth.hosts"] = list(values.pop("auth.auth_hosts")) or None
    return values


download_options = option_group(
    *_AUTH_OPTIONS,
    click.option(
        "--assets",
        multiple=True,
        metavar="SEL,…",
        help="Asset selectors: maap (default), all, a key, a glob, role:R, type:T.",
    ),
    click.option(
        "--dest",
        type=click.Path(file_okay=False),
        metavar="DIR",
        help="Destination directory [env STACPULL_DEST].",
    ),
    click.option("-j", "--concurrency", type=int, metavar="N", help="Parallel transfers [8]."),
    click.option("--per-host", type=int, metavar="N", help="Connections per host [8]."),
    click.option(
        "--segments",
        type=int,
        metavar="N",
        help="Parallel connections for a large file on a slow connection; 1: never [8].",
    ),
    click.option(
        "--template", metavar="TPL", help="Destination template [{collection}/{item}/{name}]."
    ),
    click.option(
        "--retries", type=int, metavar="N", help="Retries per file for transient errors [5]."
    ),
    click.option(
        "--stall-timeout",
        type=DURATION,
        metavar="DURATION",
        help="Abort a transfer after this long without a byte: 30s, 2m, 1h30m, seconds [60s].",
    ),
    click.option(
        "--bwlimit",
        metavar="RATE",
        help="Bytes/s for the whole run, all transfers together: 50M, 500k, 1.5MiB; 0/off: "
        "unlimited [off].",
    ),
    click.option(
        "--header",
        "headers",
        multiple=True,
        metavar="'K: V'",
        help="Extra request header for the hosts that receive the token; repeatable.",
    ),
    click.option(
        "--header-all-hosts",
        is_flag=True,
        default=None,
        help="Send --header to every host, redirects included (never an Authorization one).",
    ),
    click.option(
        "--dashboard",
        type=click.Choice(["auto", "rich", "plain", "none"]),
        help="Progress display [auto].",
    ),
    click.option(
        "--progress-interval",
        type=DURATION,
        metavar="DURATION",
        help="How often the plain progress line (and --log-file's) is written [5s].",
    ),
    click.option("-q", "--quiet", is_flag=True, help="Print only errors and the final summary."),
    click.option("-v", "--verbose", is_flag=True, help="Add a line per finished file."),
    DEBUG_OPTION,
    click.option(
        "--log-json",
        type=click.Path(dir_okay=False),
        metavar="FILE",
        help="Append every event to FILE as JSON lines.",
    ),
    click.option(
        "--log-file",
        type=click.Path(dir_okay=False),
        metavar="FILE",
        help="Append the run's log to FILE as timestamped plain text (no secrets).",
    ),
    CONFIG_OPTION,
)


def download_values(
    assets: tuple[str, ...],
    dest: str | None,
    concurrency: int | None,
    per_host: int | None,
    segments: int | None,
    template: str | None,
    retries: int | None,
    stall_timeout: float | None,
    bwlimit: str | None,
    headers: tuple[str, ...],
    header_all_hosts: bool | None,
    dashboard: str | None,
    progress_interval: float | None,
    quiet: bool,
    verbose: bool,
    log_json: str | None,
    log_file: str | None,
) -> dict[str, Any]:
    from ..config import parse_headers

    outer = _outer_flags()
    quiet, verbose = quiet or outer.get("quiet", False), verbose or outer.get("verbose", False)
    if quiet and verbose:
        raise ConfigError("-q/--quiet and -v/--verbose contradict each other: choose one")
    return {
        "download.stall_timeout": stall_timeout,
        "download.bwlimit": bwlimit,
        "download.headers": parse_headers(list(headers), "--header") if headers else None,
        "download.header_all_hosts": header_all_hosts,
        "output.progress_interval": progress_interval,
        "output.log_file": log_file,
        "download.assets": _split(assets) or None,
        "download.dest": dest,
        "download.concurrency": concurrency,
        "download.per_host": per_host,
        "download.segments": segments,
        "download.template": template,
        "download.retries": retries,
        "output.dashboard": dashboard,
        "output.verbosity": "quiet" if quiet else "verbose" if verbose else None,
        "output.log_json": log_json,
    }


def debug_logging(ctx: click.Context) -> None:
    """Debug lines to stderr for this command, scrubbed; undone when the command ends."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ScrubFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logger = logging.getLogger("stacpull")
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)

    def undo() -> None:
        logger.removeHandler(handler)
        logger.setLevel(level)

    ctx.call_on_close(undo)


def _outer_flags() -> dict[str, bool]:
    """``-q``/``-v`` given before the subcommand (``stacpull -v download``)."""
    ctx = click.get_current_context(silent=True)
    return dict(ctx.meta.get("stacpull.outer", {})) if ctx is not None else {}


RETRY_FAILED_OPTION = click.option(
    "--retry-failed",
    is_flag=True,
    help="Skip the search: re-run only the files the journal records as failed.",
)


def _keep_header_flag(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """``--header``/``--header-all-hosts`` of a catalogue command, kept for
    :func:`header_flags` (so the commands' signatures stay as they are)."""
    if param.name is not None:
        ctx.meta.setdefault("stacpull.header_flags", {})[param.name] = value


#: The catalogue commands' --header/--header-all-hosts: download's, sent to the STAC API.
catalogue_header_options = option_group(
    click.option(
        "--header",
        "headers",
        multiple=True,
        metavar="'K: V'",
        expose_value=False,
        callback=_keep_header_flag,
        help="Extra request header for the catalogue (its own host); repeatable.",
    ),
    click.option(
        "--header-all-hosts",
        is_flag=True,
        default=None,
        expose_value=False,
        callback=_keep_header_flag,
        help="Send --header to every host: rel=next links and redirects elsewhere too.",
    ),
)


def header_flags() -> dict[str, Any]:
    """The config flags of a catalogue command's ``--header``s (parsed: a malformed one
    raises :class:`ConfigError` naming the flag, never its value)."""
    from ..config import parse_headers

    ctx = click.get_current_context(silent=True)
    given = ctx.meta.get("stacpull.header_flags", {}) if ctx is not None else {}
    headers = tuple(given.get("headers") or ())
    return {
        "download.headers": parse_headers(list(headers), "--header") if headers else None,
        "download.header_all_hosts": given.get("header_all_hosts"),
    }


def _outer_here(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """``-q``/``-v`` after a subcommand that has no use for them: the same as before it
    (kept with the group's flags, where a command that prints progress would read them)."""
    if value and param.name is not None:
        ctx.meta.setdefault("stacpull.outer", {})[param.name] = True


#: -q/-v for every command but download and mirror (which declare their own): accepted
#: and, as before the subcommand, without effect on a listing, report or check.
QUIET_ANYWHERE = click.option(
    "-q",
    "--quiet",
    is_flag=True,
    expose_value=False,
    callback=_outer_here,
    help="Accepted for symmetry with download: this command prints no progress.",
)


VERBOSE_ANYWHERE = click.option(
    "-v",
    "--verbose",
    is_flag=True,
    expose_value=False,
    callback=_outer_here,
    help="Accepted for symmetry with download: this command prints no progress.",
)
