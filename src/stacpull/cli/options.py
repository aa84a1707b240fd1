"""The flags several commands share, declared once, and their parsing into config keys.

The query, auth, transfer and catalogue-header flags, ``--config``/``--catalog``/
``--profile``, the duration type, and ``--debug``/``-q``/``-v`` wherever they are given
(before or after the subcommand).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable
from typing import Any

import click

from ..errors import ConfigError, ScrubFilter
from .render import fail

__all__ = [
    "CATALOG_OPTION",
    "CLUSTER_OPTION",
    "CONFIG_OPTION",
    "COUNT",
    "DEBUG_OPTION",
    "DURATION",
    "PROFILE_OPTION",
    "QUIET_ANYWHERE",
    "VERBOSE_ANYWHERE",
    "auth_options",
    "catalogue_header_options",
    "debug_logging",
    "download_options",
    "header_flags",
    "job_options",
    "option_group",
    "query_options",
]


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


class _Count(click.ParamType):  # type: ignore[type-arg]  # generic from click 8.2 on
    """A count of transfers or connections (``-j``, ``--per-host``, ``--segments``):
    ``auto`` or a whole number from 1 to 4096; anything else is one line naming the flag,
    exit 2. The value goes on as given (``"auto"`` or the number), for the config to store."""

    name = "count"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from ..config import parse_connections

        flag = "/".join(param.opts) if param is not None and param.opts else "count"
        try:
            return parse_connections(value, flag) or "auto"
        except ConfigError as exc:
            fail(str(exc))


COUNT = _Count()


class _Cluster(click.ParamType):  # type: ignore[type-arg]  # generic from click 8.2 on
    """``--cluster``: ``local:N`` or ``tcp://host:port``, checked as the config checks
    ``[cluster] address`` (the value goes on written one way); anything else is one line
    naming the flag and the forms it takes, exit 2."""

    name = "cluster"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from ..config.values import parse_cluster_address

        try:
            return parse_cluster_address(value, "--cluster")
        except ConfigError as exc:
            fail(str(exc))


#: mirror's ``--cluster``: where its transfers run (nothing of Dask is loaded without it).
CLUSTER_OPTION = click.option(
    "--cluster",
    type=_Cluster(),
    metavar="local:N|tcp://HOST:PORT",
    help="Run the transfers on a Dask cluster: local:N starts N worker processes here, "
    "tcp://HOST:PORT uses a running scheduler; DEST must be at the same path on every "
    "worker (pip install 'stacpull[dask]') [cluster.address].",
)


class _QuotingDefault(click.Option):
    """An option whose help quotes the config's default for its key (``[8]``): the value
    is written once, in :mod:`stacpull.defaults` (the config's dataclasses take it from
    there), and read from there when the help is shown: no ``--help`` loads the config.
    ``{default}`` in the help text stands for it."""

    def __init__(
        self, *args: Any, key: str, shown: Callable[[Any], str] = str, **kwargs: Any
    ) -> None:
        self._key = key
        self._shown = shown
        super().__init__(*args, **kwargs)

    @property  # click's attribute, computed here when read
    def help(self) -> str | None:
        from .. import defaults  # the leaf module: help loads no config (nor tomllib)

        section, _, name = self._key.partition(".")
        constant = f"DEFAULT_{name.upper()}"
        if not hasattr(defaults, constant):
            constant = f"DEFAULT_{section.upper()}_{name.upper()}"
        default = self._shown(getattr(defaults, constant))
        if self._help is None:
            return None
        # {AUTO_PER_HOST} and the like: any other constant of stacpull.defaults.
        named = re.sub(r"\{([A-Z][A-Z_]*)\}", lambda m: str(getattr(defaults, m[1])), self._help)
        return named.replace("{default}", default)

    @help.setter
    def help(self, text: str | None) -> None:
        self._help = text


def _quoting_default(
    *decls: str, key: str, shown: Callable[[Any], str] = str, **attrs: Any
) -> Callable[[Any], Any]:
    """``click.option`` whose help quotes the default of config ``key`` (see
    :class:`_QuotingDefault`), shown by ``shown``."""
    return click.option(*decls, cls=_QuotingDefault, key=key, shown=shown, **attrs)


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _rate(value: int) -> str:
    return str(value) if value else "off"


def _count(value: int) -> str:
    return str(value) if value else "auto"  # stacpull.defaults.AUTO, as stored


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
        "--window",
        metavar="DURATION",
        help="Search --datetime in consecutive windows this long (1d, 6h, 7d), oldest "
        "first; items on a window's edge are taken once. An open end ends now.",
    ),
    click.option(
        "--filter",
        "filter_",
        metavar="CQL2",
        help="CQL2 filter, e.g. \"product:type='S1_SCS__1S'\"; @FILE reads it from FILE.",
    ),
    click.option(
        "--filter-lang",
        type=click.Choice(["cql2-text", "cql2-json"]),
        help="Language of --filter [cql2-text]; cql2-json: a JSON object, sent as one.",
    ),
    click.option("--max-items", type=int, metavar="N", help="Stop after N items."),
    click.option("--page-size", type=int, metavar="N", help="Items per search page [100]."),
    click.option(
        "--method",
        type=click.Choice(["GET", "POST"], case_sensitive=False),
        help="Search method [GET].",
    ),
)


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
    _quoting_default(
        "--client-id",
        key="auth.client_id",
        metavar="ID",
        help="OIDC client id [{default}; env STACPULL_CLIENT_ID].",
    ),
    click.option(
        "--client-secret",
        metavar="SECRET",
        help="OIDC client secret [MAAP's public one; env STACPULL_CLIENT_SECRET].",
    ),
    click.option("--token", metavar="TOKEN", help="A fixed access token [env STACPULL_TOKEN]."),
    _quoting_default(
        "--token-file",
        key="auth.token_file",
        type=click.Path(dir_okay=False),
        metavar="FILE",
        help="File holding an access token, re-read when it changes [{default}].",
    ),
    click.option(
        "--auth-host",
        "auth_hosts",
        multiple=True,
        metavar="HOST",
        help="Another host that may receive the token; repeatable.",
    ),
]


auth_options = option_group(*_AUTH_OPTIONS)


download_options = option_group(
    *_AUTH_OPTIONS,
    _quoting_default(
        "--assets",
        key="download.assets",
        shown=",".join,
        multiple=True,
        metavar="SEL,…",
        help="Asset selectors: {default} (default; per mission: EarthCARE's h5, hdr and "
        "quicklook, BIOMASS's zip, quicklook and KMZ), all, a key, a glob, role:R "
        "(role:metadata, overview, thumbnail, visual pass over data assets), type:T.",
    ),
    click.option(
        "--dest",
        type=click.Path(file_okay=False),
        metavar="DIR",
        help="Destination directory [env STACPULL_DEST].",
    ),
    _quoting_default(
        "-j",
        "--concurrency",
        key="download.concurrency",
        shown=_count,
        type=COUNT,
        metavar="auto|N",
        help="Files in flight over all hosts, at most; auto: {AUTO_CONCURRENCY} [{default}].",
    ),
    _quoting_default(
        "--per-host",
        key="download.per_host",
        shown=_count,
        type=COUNT,
        metavar="auto|N",
        help="Ceiling of each host's connections; the window starts at {WINDOW_START} and "
        "grows while it buys speed; auto: {AUTO_PER_HOST} [{default}].",
    ),
    _quoting_default(
        "--segments",
        key="download.segments",
        shown=_count,
        type=COUNT,
        metavar="auto|N",
        help="Parallel connections for a large file on a slow connection; 1: never; auto: "
        "as many as the host's window gives [{default}].",
    ),
    _quoting_default(
        "--template",
        key="download.template",
        metavar="TPL",
        help="Destination template [{default}].",
    ),
    _quoting_default(
        "--retries",
        key="download.retries",
        type=int,
        metavar="N",
        help="Retries per file for transient errors [{default}].",
    ),
    _quoting_default(
        "--stall-timeout",
        key="download.stall_timeout",
        shown=_seconds,
        type=DURATION,
        metavar="DURATION",
        help="Abort a transfer after this long without a byte: 30s, 2m, 1h30m, seconds "
        "[{default}].",
    ),
    _quoting_default(
        "--bwlimit",
        key="download.bwlimit",
        shown=_rate,
        metavar="RATE",
        help="Bytes/s for the whole run, all transfers together: 50M, 500k, 1.5MiB; 0/off: "
        "unlimited [{default}].",
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
    _quoting_default(
        "--dashboard",
        key="output.dashboard",
        type=click.Choice(["auto", "rich", "plain", "none"]),
        help="Progress display [{default}].",
    ),
    _quoting_default(
        "--progress-interval",
        key="output.progress_interval",
        shown=_seconds,
        type=DURATION,
        metavar="DURATION",
        help="How often the plain progress line (and --log-file's) is written [{default}].",
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


#: The job's own flags of download and mirror (:class:`JobFlags` but --config, which ends
#: :data:`download_options`).
job_options = option_group(
    click.option(
        "--retry-failed",
        is_flag=True,
        help="Skip the search: re-run only the files the journal records as failed.",
    ),
    click.option(
        "--dry-run",
        is_flag=True,
        help="Search and plan, then say what would be downloaded; transfer nothing.",
    ),
    click.option(
        "--max-bytes",
        metavar="SIZE",
        help="Refuse to start a run that would download more (e.g. 50GB) [download.max_bytes].",
    ),
    click.option("--yes", is_flag=True, help="Start even when the plan exceeds --max-bytes."),
    click.option(
        "--from",
        "from_file",
        type=click.Path(dir_okay=False),
        metavar="ITEMS",
        help="Download the items of a saved search instead of searching: an ItemCollection "
        "(stacpull search -o items.geojson, stac-client search), items one per line, or "
        "stac-geoparquet; - reads standard input.",
    ),
    click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print the final summary (with --dry-run: the plan) as JSON on stdout; "
        "progress and notes go to stderr.",
    ),
)
