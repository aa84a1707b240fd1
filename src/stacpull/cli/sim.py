"""The commands around the simulated MAAP catalogue: ``demo`` (the whole pipeline against it)
and ``sim serve`` (serve it, with faults, for any STAC client).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ..errors import (
    ConfigError,
)

if TYPE_CHECKING:
    # Only what the commands declare (flags, columns, formats) is loaded on import; each
    # command imports what it runs (anyio, the config, rich, the search client, the
    # dashboard; the engine and the credentials bring aiohttp, a quarter of a second), so
    # help and listings start fast (benchmarks/startup.py).

    pass

from .options import DURATION
from .render import fail
from .run import execute

__all__ = ["demo", "sim_group"]


_DEMO_COLLECTIONS = ("BiomassLevel1aIOC", "BiomassLevel1cIOC", "FLEXL1CommissioningProducts10")


@click.command(short_help="Run the pipeline against the simulated catalogue.")
@click.option(
    "--dest",
    type=click.Path(file_okay=False),
    default="stacpull-demo",
    show_default=True,
    help="Where the demo downloads to.",
)
@click.option(
    "--items", type=int, default=12, show_default=True, help="Items per simulated collection."
)
@click.option(
    "--product-size",
    type=int,
    default=8_000_000,
    show_default=True,
    help="Approximate bytes per product zip.",
)
@click.option(
    "-j", "--concurrency", type=int, default=8, show_default=True, help="Parallel transfers."
)
@click.option(
    "--dashboard",
    type=click.Choice(["auto", "rich", "plain", "none"]),
    default="auto",
    show_default=True,
)
def demo(dest: str, items: int, product_size: int, concurrency: int, dashboard: str) -> None:
    """Run the whole pipeline against the built-in simulated MAAP catalogue.

    Starts the simulated catalogue on 127.0.0.1 (BIOMASS L1a with 2025 asset keys, BIOMASS
    L1c with 2026 keys, FLEX), then downloads products, quicklooks and KMZs of all three
    into DEST with the live dashboard, verifying every file. Authentication is MAAP's
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


@click.group("sim")
def sim_group() -> None:
    """The simulated MAAP catalogue."""


@sim_group.command("serve", short_help="Serve the simulated catalogue until Ctrl-C.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True)
@click.option(
    "--items",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="Items per collection.",
)
@click.option(
    "--product-size",
    type=int,
    default=4_000_000,
    show_default=True,
    help="Approximate bytes per product zip.",
)
@click.option(
    "--enclosure-size",
    type=int,
    default=262_144,
    show_default=True,
    help="Bytes per L1c enclosure raster.",
)
@click.option(
    "--token",
    "tokens",
    multiple=True,
    default=("sim-token",),
    show_default=True,
    help="Accepted bearer token; repeatable.",
)
@click.option("--no-auth", is_flag=True, help="Serve data without a token.")
@click.option(
    "--offline-token",
    "offline_tokens",
    multiple=True,
    default=("sim-offline-token",),
    show_default=True,
    help="Offline token the OIDC endpoint accepts; repeatable.",
)
@click.option(
    "--token-lifetime",
    type=DURATION,
    default=300.0,
    show_default=True,
    help="Seconds an access token from the OIDC endpoint lives.",
)
@click.option(
    "--rotate-refresh-tokens",
    is_flag=True,
    help="Answer each refresh with a new refresh token and retire the old one.",
)
@click.option("--latency", type=DURATION, default=0.0, help="Seconds before each data response.")
@click.option("--rate-limit", type=int, default=0, help="Bytes/s per response (0: unlimited).")
@click.option(
    "--cut-probability", type=float, default=0.0, help="Chance a response drops mid-body."
)
@click.option("--cut-after", type=int, default=0, help="Bytes before a cut (0: a random point).")
@click.option(
    "--burst-probability",
    type=float,
    default=0.0,
    help="Chance a data request starts a burst of 503/429 answers.",
)
@click.option("--burst-length", type=int, default=3, show_default=True, help="Answers per burst.")
@click.option(
    "--retry-after",
    type=DURATION,
    default=1.0,
    show_default=True,
    help="Retry-After seconds sent with a burst answer.",
)
@click.option(
    "--truncate-probability",
    type=float,
    default=0.0,
    help="Chance the zipper ends a product early (no central directory).",
)
@click.option(
    "--change-probability",
    type=float,
    default=0.0,
    help="Chance a file is replaced on the server after a response.",
)
@click.option(
    "--not-ready",
    "not_ready_for",
    type=DURATION,
    default=0.0,
    help="Seconds a file answers 404 after it is first asked for.",
)
@click.option(
    "--stall-probability", type=float, default=0.0, help="Chance a response pauses mid-body."
)
@click.option(
    "--stall-seconds",
    type=DURATION,
    default=5.0,
    show_default=True,
    help="Length of a pause.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the fault dice.")
def sim_serve(
    host: str,
    port: int,
    items: int,
    product_size: int,
    enclosure_size: int,
    tokens: tuple[str, ...],
    no_auth: bool,
    offline_tokens: tuple[str, ...],
    token_lifetime: float,
    rotate_refresh_tokens: bool,
    latency: float,
    **knobs: Any,
) -> None:
    """Serve the simulated catalogue until Ctrl-C, for any STAC client to use.

    The fault options make it the night a mirror has to survive, e.g.
    `--cut-probability 0.3 --burst-probability 0.05 --rate-limit 2000000`.
    """
    import dataclasses

    import anyio

    from ..sim import Faults, OIDCOptions, SimCatalog, SimOptions, SimServer, default_collections

    try:
        faults = Faults(**knobs)  # the fault options are named after Faults' fields
    except ValueError as exc:
        fail(str(exc))
    if latency < 0 or token_lifetime <= 0:
        fail("--latency must be ≥ 0 and --token-lifetime > 0")
    specs = [
        dataclasses.replace(s, enclosure_size=enclosure_size)
        for s in default_collections(items, product_size)
    ]
    try:
        server = SimServer(
            SimCatalog(specs),
            host=host,
            port=port,
            options=SimOptions(
                tokens=set(tokens),
                require_auth=not no_auth,
                latency=latency,
                faults=faults,
                oidc=OIDCOptions(
                    offline_tokens=set(offline_tokens),
                    lifetime=token_lifetime,
                    rotate=rotate_refresh_tokens,
                ),
            ),
        )
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    click.echo(f"STAC API:  {server.catalog_url}")
    click.echo(f"token:     {'(none needed)' if no_auth else ', '.join(tokens)}")
    click.echo(
        f"OIDC:      {server.token_url} (client {server.options.oidc.client_id}, secret "
        f"{server.options.oidc.client_secret}; offline token {', '.join(offline_tokens)}; "
        f"access tokens live {token_lifetime:g} s)"
    )
    if faults.active or latency:
        latency_text = f"latency={latency}" if latency else ""
        click.echo(f"faults:    {', '.join(filter(None, (faults.describe(), latency_text)))}")
    click.echo(
        f"try:       stacpull download --catalog {server.catalog_url} --collection BiomassLevel1aIOC "
        f"--dest data --token {tokens[0] if tokens else 'TOKEN'}"
    )
    if offline_tokens:
        click.echo(
            f"or:        STACPULL_OFFLINE_TOKEN={offline_tokens[0]} stacpull download --catalog "
            f"{server.catalog_url} --collection BiomassLevel1aIOC --dest data --token-url "
            f"{server.token_url} --client-secret {server.options.oidc.client_secret}"
        )
    try:
        anyio.run(server.serve)
    except KeyboardInterrupt:
        click.echo("stopped")
