"""The commands around the simulated MAAP catalogue: ``demo`` (the whole pipeline against it)
and ``sim serve`` (serve it, with faults, for any STAC client).

Their options restate no default: ``sim serve``'s fault options are built from the fields
of :class:`~stacpull.sim.Faults` (name, default, help from the field's metadata), its
server and identity options take their defaults from :class:`~stacpull.sim.SimOptions`,
:class:`~stacpull.sim.OIDCOptions` and :class:`~stacpull.sim.CollectionSpec`, and
``demo``'s from the config. Those modules bring aiohttp and tomllib, which ``--help`` must
not load: the options are declared when the command is first parsed or helped
(:class:`_Deferred`), not when the CLI is imported.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from ..errors import ConfigError
from .options import COUNT, DURATION
from .render import fail
from .run import execute

if TYPE_CHECKING:
    from ..sim import Faults, SimOptions, SimServer

__all__ = ["demo", "sim_group"]

#: One collection of each kind of item the maap profile tells apart; EarthCARE's gives its
#: HDF5 file, header and quicklook (a few hundred kB an item), never its product zip.
_DEMO_COLLECTIONS = (
    "BiomassLevel1aIOC",
    "BiomassLevel1cIOC",
    "FLEXL1CommissioningProducts10",
    "EarthCAREL2Validated_MAAP",
)


class _Deferred(click.Command):
    """A command whose options ``declare()`` builds when the command is first parsed or
    helped, ahead of those given at import (``--debug``, ``-q``, ``-v``): they read their
    defaults from modules that ``stacpull --help`` must not import."""

    def __init__(
        self, *args: Any, declare: Callable[[], list[click.Parameter]], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._declare: Callable[[], list[click.Parameter]] | None = declare

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        if self._declare is not None:
            declare, self._declare = self._declare, None
            self.params[:0] = declare()
        return super().get_params(ctx)


def _default(kind: type[Any], name: str) -> Any:
    """The default the dataclass ``kind`` declares for its field ``name`` (a factory's
    value; a set as a sorted tuple, as a repeatable option holds it)."""
    field = next(f for f in dataclasses.fields(kind) if f.name == name)
    factory = field.default_factory
    value = factory() if callable(factory) else field.default
    return tuple(sorted(value)) if isinstance(value, set) else value


def _option(flag: str, name: str, default: Any, help: str, **more: Any) -> click.Option:
    """One option showing its default (read from where it is declared)."""
    return click.Option([flag, name], default=default, show_default=True, help=help, **more)


# -- demo -----------------------------------------------------------------------------------


def _demo_params() -> list[click.Parameter]:
    """``demo``'s options; the transfer settings default as the config's do."""
    from ..config import OutputConfig, shown_setting
    from ..defaults import DEFAULT_CONCURRENCY

    dashboard = _default(OutputConfig, "dashboard")
    return [
        _option("--dest", "dest", "stacpull-demo", "Where the demo downloads to.",
                type=click.Path(file_okay=False)),
        _option("--items", "items", 12, "Items per simulated collection.", type=int),
        _option("--product-size", "product_size", 8_000_000,
                "Approximate bytes per product zip.", type=int),
        click.Option(["-j", "--concurrency"], type=COUNT, metavar="auto|N",
                     default=shown_setting("download.concurrency", DEFAULT_CONCURRENCY),
                     show_default=True, help="Files in flight over all hosts, at most."),
        click.Option(["--dashboard"], type=click.Choice(["auto", "rich", "plain", "none"]),
                     default=dashboard, show_default=True),
    ]  # fmt: skip


@click.command(
    cls=_Deferred,
    declare=_demo_params,
    short_help="Run the pipeline against the simulated catalogue.",
)
def demo(dest: str, items: int, product_size: int, concurrency: int | str, dashboard: str) -> None:
    """Run the whole pipeline against the built-in simulated MAAP catalogue.

    Starts the simulated catalogue on 127.0.0.1 (BIOMASS L1a with 2025 asset keys, BIOMASS
    L1c with 2026 keys, FLEX, EarthCARE L2), then downloads what the default profile takes
    of each (BIOMASS's products, quicklooks and KMZs; FLEX's products and quicklooks;
    EarthCARE's HDF5 files, headers and quicklooks) into DEST with the live dashboard,
    verifying every file. Authentication is MAAP's
    offline-token flow against the simulated identity server, with access tokens that
    expire every 2 seconds. Run it twice: the second run skips everything.
    """
    from rich.console import Console

    from ..config import Config
    from ..sim import OIDCOptions, SimCatalog, SimOptions, SimServer, default_collections

    if items < 1 or product_size < 10_000:
        fail("--items must be ≥ 1 and --product-size ≥ 10000")
    # Access tokens live 2 s, as if hours passed: the demo refreshes them like a night's run.
    options = SimOptions(tokens=set(), oidc=OIDCOptions(lifetime=2.0))
    with SimServer(SimCatalog(default_collections(items, product_size)), options=options) as sim:
        Console(stderr=True).print(
            f"simulated MAAP catalogue at {sim.catalog_url}", highlight=False
        )
        try:
            config = Config().with_values(
                {
                    "search.catalog": sim.catalog_url,
                    "search.collections": list(_DEMO_COLLECTIONS),
                    "search.page_size": 10,
                    "download.dest": dest,
                    "download.concurrency": concurrency,
                    "auth.offline_token": next(iter(options.oidc.offline_tokens)),
                    "auth.token_url": sim.token_url,
                    "auth.client_secret": options.oidc.client_secret,
                    "output.dashboard": dashboard,
                }
            )
        except ConfigError as exc:
            fail(str(exc))
        execute(config)


# -- sim serve ------------------------------------------------------------------------------


@click.group("sim")
def sim_group() -> None:
    """The simulated MAAP catalogue."""


@dataclasses.dataclass(frozen=True)
class _Serve:
    """``sim serve``'s flags other than the address and the faults: what it serves, and to
    whom."""

    items: int
    product_size: int
    enclosure_size: int
    tokens: tuple[str, ...]
    no_auth: bool
    offline_tokens: tuple[str, ...]
    token_lifetime: float
    rotate_refresh_tokens: bool
    latency: float
    shuffle: bool
    duplicates: int

    @classmethod
    def take(cls, kw: dict[str, Any]) -> _Serve:
        """These flags, taken out of the command's keyword arguments (the faults stay)."""
        return cls(**{f.name: kw.pop(f.name) for f in dataclasses.fields(cls)})

    def options(self, faults: Faults) -> SimOptions:
        """The server's behaviour: who may download, how slowly, what goes wrong."""
        from ..sim import OIDCOptions, ResultOrder, SimOptions

        return SimOptions(
            results=ResultOrder(shuffle=self.shuffle, duplicates=self.duplicates),
            tokens=set(self.tokens),
            require_auth=not self.no_auth,
            latency=self.latency,
            faults=faults,
            oidc=OIDCOptions(
                offline_tokens=set(self.offline_tokens),
                lifetime=self.token_lifetime,
                rotate=self.rotate_refresh_tokens,
            ),
        )


def _server_params() -> list[click.Parameter]:
    """The address, catalogue and credentials options of ``sim serve``, with the defaults
    of the sim's dataclasses (the port and the item count are the command's own)."""
    from ..sim import CollectionSpec, OIDCOptions, ResultOrder, SimOptions

    return [
        _option("--host", "host", "127.0.0.1", ""),
        _option("--port", "port", 8765, "", type=click.IntRange(0, 65535)),
        _option("--items", "items", 100, "Items per collection.", type=click.IntRange(min=0)),
        _option("--product-size", "product_size", _default(CollectionSpec, "product_size"),
                "Approximate bytes per product zip.", type=int),
        _option("--enclosure-size", "enclosure_size", _default(CollectionSpec, "enclosure_size"),
                "Bytes per BIOMASS L1c enclosure raster and EarthCARE HDF5 file.", type=int),
        _option("--token", "tokens", _default(SimOptions, "tokens"),
                "Accepted bearer token; repeatable.", multiple=True),
        click.Option(["--no-auth"], is_flag=True, help="Serve data without a token."),
        _option("--offline-token", "offline_tokens", _default(OIDCOptions, "offline_tokens"),
                "Offline token the OIDC endpoint accepts; repeatable.", multiple=True),
        _option("--token-lifetime", "token_lifetime", _default(OIDCOptions, "lifetime"),
                "Seconds an access token from the OIDC endpoint lives.", type=DURATION),
        click.Option(["--rotate-refresh-tokens"], is_flag=True,
                     help="Answer each refresh with a new refresh token and retire the old one."),
        _option("--latency", "latency", _default(SimOptions, "latency"),
                "Seconds before each data response.", type=DURATION),
        click.Option(["--shuffle"], is_flag=True,
                     help="Serve each page of search results in a seeded random order, as MAAP does."),
        _option("--duplicates", "duplicates", _default(ResultOrder, "duplicates"),
                "Start each later page with this many items of the page before, as MAAP can.",
                type=click.IntRange(min=0)),
    ]  # fmt: skip


def _fault_params() -> list[click.Parameter]:
    """One option per knob of :class:`~stacpull.sim.Faults` that has a ``help`` in its
    field's metadata: its flag (the field's name unless ``flag`` says), its default and
    type as the field declares them (a duration where ``duration`` says)."""
    from ..sim import Faults

    return [
        _option(
            f.metadata.get("flag", "--" + f.name.replace("_", "-")),
            f.name,
            f.default,
            f.metadata["help"],
            type=DURATION if f.metadata.get("duration") else type(f.default),
        )
        for f in dataclasses.fields(Faults)
        if "help" in f.metadata
    ]


@sim_group.command(
    "serve",
    cls=_Deferred,
    declare=lambda: [*_server_params(), *_fault_params()],
    short_help="Serve the simulated catalogue until Ctrl-C.",
)
def _sim_serve(host: str, port: int, **kw: Any) -> None:
    """Serve the simulated catalogue until Ctrl-C, for any STAC client to use.

    The fault options make it the night a mirror has to survive, e.g.
    `--cut-probability 0.3 --burst-probability 0.05 --rate-limit 2000000`.
    """
    import anyio

    from ..sim import Faults, SimCatalog, SimServer, default_collections

    serve = _Serve.take(kw)
    try:
        faults = Faults(**kw)  # what is left are the fault options, named after its fields
    except ValueError as exc:
        fail(str(exc))
    if serve.latency < 0 or serve.token_lifetime <= 0:
        fail("--latency must be ≥ 0 and --token-lifetime > 0")
    specs = [
        dataclasses.replace(s, enclosure_size=serve.enclosure_size)
        for s in default_collections(serve.items, serve.product_size)
    ]
    try:
        server = SimServer(SimCatalog(specs), host=host, port=port, options=serve.options(faults))
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    _banner(server, serve, faults)
    try:
        anyio.run(server.serve)
    except KeyboardInterrupt:
        click.echo("stopped")


def _banner(server: SimServer, serve: _Serve, faults: Faults) -> None:
    """What ``sim serve`` serves and how to use it: the URLs, the credentials, the faults,
    and a download command to paste."""
    oidc = server.options.oidc
    tokens, offline = serve.tokens, serve.offline_tokens
    click.echo(f"STAC API:  {server.catalog_url}")
    click.echo(f"token:     {'(none needed)' if serve.no_auth else ', '.join(tokens)}")
    click.echo(
        f"OIDC:      {server.token_url} (client {oidc.client_id}, secret "
        f"{oidc.client_secret}; offline token {', '.join(offline)}; "
        f"access tokens live {serve.token_lifetime:g} s)"
    )
    if faults.active or serve.latency:
        latency = f"latency={serve.latency}" if serve.latency else ""
        click.echo(f"faults:    {', '.join(filter(None, (faults.describe(), latency)))}")
    click.echo(
        f"try:       stacpull download --catalog {server.catalog_url} --collection BiomassLevel1aIOC "
        f"--dest data --token {tokens[0] if tokens else 'TOKEN'}"
    )
    if offline:
        click.echo(
            f"or:        STACPULL_OFFLINE_TOKEN={offline[0]} stacpull download --catalog "
            f"{server.catalog_url} --collection BiomassLevel1aIOC --dest data --token-url "
            f"{server.token_url} --client-secret {oidc.client_secret}"
        )
