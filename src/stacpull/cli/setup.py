"""The setup commands: ``config show`` (the merged configuration and its sources) and
``auth check`` (whether the credentials work and when the token expires).

The configuration comes from :mod:`stacpull.config`, the verdict on the credentials from
:func:`stacpull.auth.check_credentials`.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import fields
from typing import TYPE_CHECKING, Any

import click

from ..errors import ConfigError, scrub
from .flags import AuthFlags, gather
from .options import (
    CONFIG_OPTION,
    PROFILE_OPTION,
    auth_options,
    catalogue_header_options,
    header_flags,
)
from .render import fail

if TYPE_CHECKING:
    # Each command imports what it runs (anyio, the config, rich; the credentials bring
    # aiohttp, a quarter of a second), so help starts fast (benchmarks/startup.py).
    from rich.console import Console

    from ..config import Config
    from ..credentials import CredentialsCheck

__all__ = ["auth_group", "config_group"]


@click.group("config")
def config_group() -> None:
    """The configuration stacpull would use."""


def _shown(value: Any) -> Any:
    """A config value as JSON can hold it, secrets masked."""
    from ..config import Secret, secret_header

    if isinstance(value, Secret):
        return "***"
    if isinstance(value, tuple) and value and all(isinstance(v, tuple) for v in value):
        # download.headers: a credential's value is masked whatever its length (the
        # scrubber leaves values under 8 characters alone, as too common to take out).
        return [[n, "***" if secret_header(n) else scrub(v)] for n, v in value]
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, str):
        return scrub(value)  # a catalogue or token URL with a password in it
    return value


@config_group.command("show", short_help="Print the merged configuration and its sources.")
@PROFILE_OPTION
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def _config_show(profile: str | None, config_path: str | None, as_json: bool) -> None:
    """Print the merged configuration with where each value came from; secrets are masked.

    Lowest first: defaults, the user's config file, ./stacpull.toml, --config FILE (or
    STACPULL_CONFIG), the profile, STACPULL_* environment variables, flags.
    """
    from ..config import config_files, resolve_config, shown_setting, user_config_file

    try:
        config, origins = resolve_config(config_path, profile=profile)
        files = [origin for origin, _ in config_files(config_path)]
    except ConfigError as exc:
        fail(str(exc))
    user = user_config_file()
    sections = {
        name: {
            f.name: _shown(
                shown_setting(f"{name}.{f.name}", getattr(getattr(config, name), f.name))
            )
            for f in fields(kind)
        }
        for name, kind in (
            ("search", type(config.search)),
            ("download", type(config.download)),
            ("auth", type(config.auth)),
            ("output", type(config.output)),
            ("cluster", type(config.cluster)),
        )
    }
    if as_json:
        where = {"files": files, "user_file": str(user) if user else None}
        click.echo(json.dumps({**sections, "origins": origins, **where}, indent=2))
        return
    lines = [
        "# stacpull configuration: defaults < user file < ./stacpull.toml < --config file"
        " < profile < environment < flags",
        f"# files read: {', '.join(files) if files else 'none'}",
        f"# user file: {user} ({'read' if user and str(user) in files else 'not found'})"
        if user
        else "# user file: off (STACPULL_NO_USER_CONFIG)",
    ]
    for name, values in sections.items():
        lines.append(f"\n[{name}]")
        for key, value in values.items():
            origin = origins.get(f"{name}.{key}", "default")
            if value is None:
                lines.append(f"# {key} = (unset)".ljust(48) + f"  # {origin}")
            else:
                lines.append(f"{key} = {json.dumps(value)}".ljust(48) + f"  # {origin}")
    click.echo("\n".join(lines))


@click.group("auth")
def auth_group() -> None:
    """The credentials stacpull uses for data requests."""


@auth_group.command("check", short_help="Check the credentials and when the token expires.")
@gather(auth=AuthFlags)
@PROFILE_OPTION
@auth_options
@click.option(
    "--url",
    metavar="URL",
    help="Also request the first byte of this file with the token, to prove access.",
)
@click.option(
    "--catalog",
    metavar="URL",
    help="STAC API root whose host may receive the token [env STACPULL_CATALOG].",
)
@catalogue_header_options
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
def _auth_check(
    config_path: str | None,
    url: str | None,
    catalog: str | None,
    profile: str | None,
    as_json: bool,
    auth: AuthFlags,
) -> None:
    """Tell whether the credentials work and when the access token expires.

    With an offline token, one access token is requested from the token endpoint. A fixed
    token is judged by the expiry written in it (MAAP tokens are JWTs); --url also tries it
    on a file. No token is ever printed. Exit 0 when they work, 1 when they do not.
    """
    from rich.console import Console

    config, found = _check(config_path, url, catalog, profile, auth)
    if as_json:
        click.echo(json.dumps(_credentials_json(found, config.auth.token_url), indent=2))
    else:
        out = Console(highlight=False, soft_wrap=True)
        _print_credentials(out, found, token_url=config.auth.token_url)
    sys.exit(1 if found.ok is False else 0)


def _check(
    config_path: str | None,
    url: str | None,
    catalog: str | None,
    profile: str | None,
    auth: AuthFlags,
) -> tuple[Config, CredentialsCheck]:
    """The config of ``auth check``'s flags and what checking its credentials found (exit
    2 on a bad flag, 130 on Ctrl-C)."""
    import anyio

    from ..config import load_config
    from ..credentials import check_credentials, load_credentials
    from ..trust import TrustPolicy

    try:
        config = load_config(
            config_path,
            flags={**auth.values(), "search.catalog": catalog, **header_flags()},
            profile=profile,
        )
        tokens = load_credentials(config.auth)
    except ConfigError as exc:
        fail(str(exc))
    for warning in tokens.warnings:
        click.echo(f"stacpull: warning: {warning}", err=True)
    trust = TrustPolicy(config.search.catalog, config.auth.hosts)
    try:
        found = anyio.run(
            lambda: check_credentials(
                tokens,
                url=url,
                trust=trust,
                headers=config.download.headers,
                header_all_hosts=config.download.header_all_hosts,
            )
        )
    except KeyboardInterrupt:
        fail("interrupted", 130)
    return config, found


def _credentials_json(found: CredentialsCheck, token_url: str) -> dict[str, Any]:
    """``auth check --json``: the verdict, where the credentials come from and when the
    access token expires (never the token itself)."""
    expires_at = (
        None
        if found.expires_in is None
        else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + found.expires_in))
    )
    return {
        "credentials": found.source,
        "kind": found.kind,
        "ok": found.ok,
        "status": {True: "working", False: "not working", None: "unknown"}[found.ok],
        "detail": found.detail,
        "expires_in": None if found.expires_in is None else round(found.expires_in, 1),
        "expires_at": expires_at,
        "token_url": scrub(token_url) if found.kind == "oidc" else None,
    }


def _print_credentials(out: Console, found: CredentialsCheck, *, token_url: str) -> None:
    """``auth check``'s verdict for people: where the credentials come from (and, for an
    offline token, the endpoint ``token_url`` it is exchanged at), whether they work, and
    when the access token expires. No token is ever printed."""
    from ..tokens import human_duration

    how = {"oidc": f"{found.source}, exchanged at {scrub(token_url)}"}.get(found.kind, found.source)
    out.print(f"credentials: {how}")
    verdict = {True: "[green]working[/]", False: "[red]not working[/]", None: "[yellow]unknown[/]"}
    out.print(f"status:      {verdict[found.ok]}: {found.detail}")
    if found.expires_in is None:
        return
    at = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(time.time() + found.expires_in))
    when = (
        f"expired {human_duration(found.expires_in)} ago"
        if found.expires_in <= 0
        else f"expires in {human_duration(found.expires_in)} ({at})"
    )
    out.print(f"access token: {when}")
    if found.kind == "oidc":
        out.print("             stacpull refreshes it by itself during a run")
