"""Where the credentials come from, and whether they work.

:func:`load_credentials` picks the source, first match wins: ``--token``/``STACPULL_TOKEN``;
a token file named explicitly; an OIDC *offline token* (``STACPULL_OFFLINE_TOKEN`` or
``--offline-token-file``) exchanged for short-lived access tokens
(:class:`~stacpull.oidc.OIDCTokenProvider`); the default ``token.txt`` of MAAP's notebooks
when it exists. :func:`check_credentials` is ``stacpull auth check``: whether the token
works and for how long, optionally proven on one file, without revealing any token.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .config import AuthConfig, Secret
from .defaults import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TOKEN_FILE
from .errors import SECRETS, ConfigError, CredentialsError, TransferError, redact_url
from .oidc import OIDCSettings, OIDCTokenProvider
from .tokens import StaticTokenProvider, TokenFile, TokenProvider, human_duration, token_expiry
from .transfer.http import client_session, mapped_errors
from .trust import TrustPolicy

__all__ = ["CredentialsCheck", "check_credentials", "load_credentials"]

_MAAP_TOKEN_PAGE = "https://portal.maap.eo.esa.int/ini/services/auth/token/"


def load_credentials(
    config: AuthConfig,
    *,
    cwd: Path | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> TokenProvider:
    """The token provider ``config`` asks for (sources in the order of the module docstring).

    The default ``token.txt`` is optional; a file the user named must exist. Raises
    :class:`ConfigError` naming the key when a source is unusable.
    """

    def resolve(name: str) -> Path:
        path = Path(name).expanduser()
        return cwd / path if cwd is not None and not path.is_absolute() else path

    if config.token is not None and config.token.reveal().strip():
        return StaticTokenProvider(Secret(config.token.reveal().strip()), "--token/STACPULL_TOKEN")
    if config.token_file != DEFAULT_TOKEN_FILE:
        return _static_file(resolve(config.token_file), config.token_file)
    if config.offline_token is not None or config.offline_token_file:
        return _oidc(config, resolve, clock)
    default = resolve(DEFAULT_TOKEN_FILE)
    if default.exists():
        return _static_file(default, DEFAULT_TOKEN_FILE)
    return StaticTokenProvider(None)


def _static_file(path: Path, name: str) -> StaticTokenProvider:
    file = TokenFile(path, f"token file {name}")
    try:
        value = Secret(file.load()["token"])
    except ConfigError as exc:
        raise ConfigError(f"auth.token_file: {exc}") from None
    warnings = file.warnings()
    exp = token_expiry(value)
    if exp is not None:
        left = exp - time.time()
        if left <= 0:
            warnings.append(
                f"the token in {name} expired {human_duration(left)} ago; get a new one at "
                f"{_MAAP_TOKEN_PAGE}, or use an offline token (--offline-token-file) that "
                "stacpull refreshes itself"
            )
        elif left < 3600:
            warnings.append(
                f"the token in {name} expires in {human_duration(left)}; a longer run needs an "
                "offline token (--offline-token-file), which stacpull refreshes itself"
            )
    return StaticTokenProvider(value, f"token file {name}", file=file, warnings=warnings)


def _oidc(
    config: AuthConfig, resolve: Callable[[str], Path], clock: Callable[[], float]
) -> OIDCTokenProvider:
    client_id, client_secret = config.client_id, config.client_secret
    file: TokenFile | None = None
    warnings: list[str] = []
    if config.offline_token is not None and config.offline_token.reveal().strip():
        offline = Secret(config.offline_token.reveal().strip())
        source = "STACPULL_OFFLINE_TOKEN"
    elif config.offline_token_file:
        file = TokenFile(
            resolve(config.offline_token_file),
            f"offline token file {config.offline_token_file}",
            key_value=True,
        )
        try:
            values = file.load()
        except ConfigError as exc:
            raise ConfigError(f"auth.offline_token_file: {exc}") from None
        offline = Secret(values["token"])
        # A credentials.txt may name the client; flags and environment still win.
        if client_id == DEFAULT_CLIENT_ID and values.get("client_id"):
            client_id = values["client_id"]
        if client_secret.reveal() == DEFAULT_CLIENT_SECRET and values.get("client_secret"):
            client_secret = Secret(values["client_secret"])
        source = f"offline token file {config.offline_token_file}"
        warnings = file.warnings()
    else:
        raise ConfigError("auth.offline_token: STACPULL_OFFLINE_TOKEN is empty")
    settings = OIDCSettings(
        token_url=config.token_url,
        client_id=client_id,
        client_secret=client_secret,
        scope=config.scope,
        margin=config.refresh_margin,
    )
    return OIDCTokenProvider(
        offline,
        settings,
        source=source,
        file=file,
        warnings=warnings,
        clock=clock,
    )


@dataclass(frozen=True, slots=True)
class CredentialsCheck:
    """What ``stacpull auth check`` found; ``ok`` is ``None`` when it cannot tell."""

    source: str
    kind: str  # none | static | oidc
    ok: bool | None
    detail: str
    expires_in: float | None = None
    probe_status: int | None = None


async def check_credentials(
    provider: TokenProvider,
    *,
    url: str | None = None,
    trust: TrustPolicy | None = None,
    headers: tuple[tuple[str, str], ...] = (),
    header_all_hosts: bool = False,
) -> CredentialsCheck:
    """Whether the credentials work, and for how long, without revealing any token.

    An offline token is exchanged for an access token; a static token is judged by its
    JWT ``exp``. With ``url``, a one-byte ranged GET proves the token opens that file;
    it carries ``headers`` (``download.headers``) as a download would: to a trusted host,
    or, with ``header_all_hosts``, to any host but for the credential ones.
    """
    kind = "oidc" if isinstance(provider, OIDCTokenProvider) else "static"
    try:
        token = await provider.token()
    except CredentialsError as exc:
        return CredentialsCheck(provider.source, kind, False, str(exc))
    if token is None:
        return CredentialsCheck(
            "none",
            "none",
            False,
            "no credentials: pass --offline-token-file (or set STACPULL_OFFLINE_TOKEN) for "
            "a token stacpull refreshes itself, or --token/--token-file/STACPULL_TOKEN",
        )
    ok: bool | None
    if isinstance(provider, OIDCTokenProvider):
        expires_in = provider.expires_in
        ok, detail = True, f"an access token was obtained from {provider.token_url}"
    else:
        exp = token_expiry(token)
        expires_in = exp - time.time() if exp is not None else None
        if expires_in is None:
            ok, detail = None, "the token is not a JWT: its expiry cannot be read"
        elif expires_in <= 0:
            ok, detail = False, f"the token expired {human_duration(expires_in)} ago"
        else:
            ok, detail = True, "the token has not expired"
    if url is None:
        return CredentialsCheck(provider.source, kind, ok, detail, expires_in)
    send = trust is None or trust.trusts(url)
    extra = {
        name: value
        for name, value in headers
        if send
        or (header_all_hosts and name.lower() not in ("authorization", "proxy-authorization"))
    }
    status, probe = await _probe(url, token if send else None, extra)
    if not send:
        probe += " (the token was not sent: the host is not the catalogue's nor in auth.hosts)"
    ok = status in (200, 206) or 300 <= status < 400
    return CredentialsCheck(provider.source, kind, ok, f"{detail}; {probe}", expires_in, status)


async def _probe(
    url: str, token: Secret | None, extra: dict[str, str] | None = None
) -> tuple[int, str]:
    SECRETS.add_url(url)  # its own credentials are used, never shown
    # The user's headers first; a user-set Authorization replaces the bearer, as in a
    # transfer (transfer/http.py).
    headers = {n: v for n, v in (extra or {}).items() if n.lower() != "range"}
    own = any(n.lower() == "authorization" for n in headers)
    if token is not None and not own and urlsplit(url).username is None:  # userinfo: Basic
        headers["Authorization"] = f"Bearer {token.reveal()}"
    headers["Range"] = "bytes=0-0"
    try:
        with mapped_errors(url):
            async with (
                client_session(total=30, decompress=True) as session,
                session.get(url, headers=headers, allow_redirects=False) as resp,
            ):
                status = resp.status
    except TransferError as exc:
        reached = type(exc.__cause__ or exc).__name__
        return 0, f"{redact_url(url)} could not be reached ({reached})"
    verdict = {200: "opens", 206: "opens", 401: "refuses the token", 403: "forbids access"}
    return status, f"{redact_url(url)} answered HTTP {status}" + (
        f": it {verdict[status]}" if status in verdict else ""
    )
