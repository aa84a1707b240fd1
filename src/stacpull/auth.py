"""Bearer tokens: where they come from, how they stay fresh, which hosts may see them.

Sources, first match wins (:func:`load_credentials`): ``--token``/``STACPULL_TOKEN``; a
token file named explicitly; an OIDC *offline token* (``STACPULL_OFFLINE_TOKEN`` or
``--offline-token-file``) exchanged for short-lived access tokens; the default
``token.txt`` of MAAP's notebooks when it exists. Token files are re-read whenever they
change on disk, so a user or a cron job can drop a new token in mid-run.

:class:`OIDCTokenProvider` implements MAAP's flow: ``grant_type=refresh_token`` at the
token endpoint, the access token cached with its ``expires_in`` and refreshed ahead of
expiry, and once more when a server answers 401. Refreshes are single-flight: however many
workers find the token stale together, one request goes out and all use its answer. When
the offline token is refused (revoked, expired), :class:`~stacpull.errors.CredentialsError`
says what to do; the engine then starts no new request and the run stays resumable.

A token is sent only to *trusted* hosts (:class:`TrustPolicy`): the catalogue's host name
(any port) and the hosts the user lists (``--auth-host``, ``auth.hosts``; globs allowed).
On a redirect to another origin the token is dropped unless the new host is listed: a
presigned S3 URL rejects a request that also carries a bearer header, and a foreign host
must never learn the token.

Tokens travel as :class:`~stacpull.config.Secret` and are revealed only where they go on
the wire, so they never reach logs, reports, the journal or exception messages.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import json
import logging
import math
import os
import re
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import anyio

from .config import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_TOKEN_FILE,
    DEFAULT_TOKEN_URL,
    AuthConfig,
    Secret,
    scrub,
)
from .errors import (
    SECRETS,
    ConfigError,
    CredentialsError,
    ScrubFilter,
    TransferError,
    redact_url,
)
from .events import EventSink, TokenRefreshed
from .transfer.http import client_session, mapped_errors

__all__ = [
    "MAAP_OFFLINE_TOKEN_PAGE",
    "CredentialsCheck",
    "OIDCTokenProvider",
    "StaticTokenProvider",
    "TokenFile",
    "TokenProvider",
    "TrustPolicy",
    "check_credentials",
    "human_duration",
    "load_credentials",
    "token_expiry",
]

#: Where MAAP users get a new offline token (valid 90 days).
MAAP_OFFLINE_TOKEN_PAGE = "https://portal.maap.eo.esa.int/ini/services/auth/token/90dToken.php"
_MAAP_TOKEN_PAGE = "https://portal.maap.eo.esa.int/ini/services/auth/token/"

log = logging.getLogger("stacpull.auth")
log.addFilter(ScrubFilter())
_KEY_VALUE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")
_MAX_ANSWER = 1 << 20


class TokenProvider(Protocol):
    """Gives workers the current token; one provider is shared by every worker of a run."""

    @property
    def source(self) -> str:
        """Where the token comes from, for messages (never the token itself)."""
        ...

    @property
    def warnings(self) -> list[str]:
        """Things the user should know before the run (a world-readable token file…)."""
        ...

    async def token(self) -> Secret | None:
        """The token to send now, or ``None`` when there is none.

        Raises :class:`CredentialsError` once no token can be had any more."""
        ...

    async def refused(self, token: Secret) -> Secret | None:
        """A server answered 401 to ``token``: a newer token to retry with, or ``None``."""
        ...

    def listen(self, sink: EventSink | None) -> None:
        """Send :class:`TokenRefreshed` events to ``sink`` (``None``: stop sending)."""
        ...


def token_expiry(token: Secret) -> float | None:
    """The ``exp`` claim (Unix time) of a JWT access token, read without verifying it;
    ``None`` when the token is not a JWT. MAAP's tokens are Keycloak JWTs."""
    parts = token.reveal().split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    exp = payload.get("exp") if isinstance(payload, dict) else None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


def human_duration(seconds: float) -> str:
    """``42 s``, ``17 min``, ``3.5 h``, ``12 days``: the size of a duration (sign dropped)."""
    seconds = abs(seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


class TokenFile:
    """A file holding a token, re-read whenever it changes on disk.

    Plain files hold the token alone (newlines are dropped, as MAAP's notebooks do). With
    ``key_value``, the ``credentials.txt`` layout many MAAP scripts share is understood too:
    ``OFFLINE_TOKEN=…``, ``CLIENT_ID=…``, ``CLIENT_SECRET=…`` lines. :meth:`reload` keeps the
    old token when the new file is empty or unreadable (a writer caught halfway).
    """

    def __init__(self, path: Path, label: str, *, key_value: bool = False) -> None:
        self.path = path
        self.label = label
        self.key_value = key_value
        self._seen: tuple[int, int, int] | None = None

    def load(self) -> dict[str, str]:
        """Read the file now; ``{"token": …}`` plus any other keys. Raises ConfigError."""
        self._seen = _signature(self.path)
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{self.label} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read {self.label}: {exc}") from None
        values = self._parse(text)
        if not values.get("token"):
            what = " (no OFFLINE_TOKEN= line)" if self.key_value and "=" in text else ""
            raise ConfigError(f"{self.label} holds no token{what}")
        return values

    def reload(self) -> dict[str, str] | None:
        """The new values if the file changed since it was last read, else ``None``."""
        now = _signature(self.path)
        if now is None or now == self._seen:
            return None
        try:
            return self.load()
        except ConfigError as exc:
            log.debug("token file changed but is not usable yet: %s", exc)
            return None

    def _parse(self, text: str) -> dict[str, str]:
        lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        pairs = [_KEY_VALUE.match(ln) for ln in lines]
        if self.key_value and lines and all(pairs):
            found = {m.group(1).upper(): m.group(2).strip("\"'") for m in pairs if m}
            token = found.get("OFFLINE_TOKEN") or found.get("REFRESH_TOKEN") or ""
            values = {"token": token}
            for key in ("CLIENT_ID", "CLIENT_SECRET"):
                if found.get(key):
                    values[key.lower()] = found[key]
            return values
        return {"token": "".join(text.split())}

    def warnings(self) -> list[str]:
        """A warning when other users may read the file."""
        if os.name != "posix":
            return []
        try:
            mode = self.path.stat().st_mode
        except OSError:
            return []
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            return [f"{self.label} is readable by other users; run: chmod 600 {self.path}"]
        return []


class _Provider:
    """What every provider has: where its token comes from (``source``, for messages),
    ``warnings`` for the user, and the sink its :class:`TokenRefreshed` events go to."""

    def __init__(self, source: str, warnings: list[str] | None) -> None:
        self.source = source
        self.warnings = list(warnings or [])
        self._sink: EventSink | None = None

    def listen(self, sink: EventSink | None) -> None:
        self._sink = sink

    def _refreshed(self, reason: str, expires_in: float | None) -> None:
        if self._sink is not None:
            self._sink(TokenRefreshed(self.source, reason, expires_in))


#: Distinct files a fixed token must be refused on (401/403), before any file was served
#: with it, for the run to stop as if the credentials were refused. One odd file or host
#: that refuses the token fails alone; a token no server takes stops the run at once.
FIXED_TOKEN_REFUSALS = 3


class StaticTokenProvider(_Provider):
    """A token given by flag or environment, or read from a token file (re-read on change).

    Nothing can refresh a fixed token, so :meth:`check_refusal` stops the run (a
    :class:`CredentialsError`) when the server shows the token itself is refused: a 401
    after its JWT ``exp`` passed, or 401/403 on the first :data:`FIXED_TOKEN_REFUSALS`
    distinct files while no file was served with it. After one success, a refusal is that
    file's own (a collection the account may not read) and fails only that file.
    """

    def __init__(
        self,
        value: Secret | None,
        source: str = "none",
        *,
        file: TokenFile | None = None,
        warnings: list[str] | None = None,
    ) -> None:
        super().__init__(source, warnings)
        self.value = value
        self._file = file
        self._accepted: Secret | None = None  # the token a server last served a file for
        self._refused: set[str] = set()  # files refused to the current token, none served

    def accepted(self, token: Secret) -> None:
        """A server answered a request sent ``token`` with data: it works."""
        self._accepted = token

    def proven(self, token: Secret) -> bool:
        """Whether a file was served with ``token`` during this run."""
        return self._accepted == token

    def check_refusal(self, token: Secret, status: int, url: str) -> None:
        """A 401/403 to ``token`` on ``url``, no newer token to retry with: raise
        :class:`CredentialsError` when that proves the token is refused (see the class)."""
        if token != self.value:
            return  # the file brought a newer token meanwhile
        how = "a new token file" if self._file is not None else "--token / STACPULL_TOKEN"
        again = (
            f"get a new access token, pass it with {how}, and run the same command again: "
            "the run resumes where it stopped"
        )
        exp = token_expiry(token)
        if status == 401 and exp is not None and exp <= time.time():
            raise CredentialsError(
                f"the access token from {self.source} expired {human_duration(time.time() - exp)}"
                f" ago and the server refuses it (HTTP 401); a fixed token cannot be "
                f"refreshed: {again} (or use an offline token, which stacpull refreshes)"
            )
        if self._accepted == token:
            return
        self._refused.add(url)
        if len(self._refused) >= FIXED_TOKEN_REFUSALS:
            raise CredentialsError(
                f"the access token from {self.source} was refused by the server (HTTP "
                f"{status}) for the first {len(self._refused)} files, and no file was served "
                f"with it: it is wrong or has expired. {again[0].upper()}{again[1:]}"
            )

    def _check_file(self) -> None:
        values = self._file.reload() if self._file is not None else None
        if values is None or Secret(values["token"]) == self.value:
            return
        self.value = Secret(values["token"])
        log.info("%s changed on disk: using the new token", self.source)
        exp = token_expiry(self.value)
        self._refreshed("file changed", exp - time.time() if exp else None)

    async def token(self) -> Secret | None:
        self._check_file()
        return self.value

    async def refused(self, token: Secret) -> Secret | None:
        self._check_file()
        return self.value if self.value is not None and self.value != token else None


class _Transient(Exception):
    """The token endpoint failed in a way worth another try (network, 5xx, 429)."""


def _cause(exc: TransferError) -> str:
    """What the network said, as the client library named it (``ClientConnectorError: ...``)."""
    cause = exc.__cause__ or exc
    return f"{type(cause).__name__}: {scrub(str(cause))}".rstrip(": ")


class OIDCTokenProvider(_Provider):
    """Access tokens from an OIDC offline (refresh) token, refreshed single-flight.

    ``clock`` measures token lifetimes (tests run it faster than real time, together with
    the simulated catalogue's). A token is refreshed ``margin`` seconds before it expires,
    at most a fifth of its lifetime early. On a 401 it is refreshed at once, except that a
    token which itself replaced a refused one is not replaced again for half its lifetime
    (30 s at most): a server that refuses every token (403 on a collection the account
    may not read) must not turn each file into a token request.
    """

    def __init__(
        self,
        offline: Secret,
        *,
        token_url: str = DEFAULT_TOKEN_URL,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: Secret | None = None,
        scope: str = "offline_access openid",
        margin: float = 60.0,
        source: str = "offline token",
        file: TokenFile | None = None,
        warnings: list[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        attempts: int = 5,
        backoff: float = 1.0,
        timeout: float = 30.0,
    ) -> None:
        super().__init__(source, warnings)
        self.token_url = token_url
        self.client_id = client_id
        self._offline = offline
        self._client_secret = client_secret or Secret(DEFAULT_CLIENT_SECRET)
        # A token endpoint may echo HTTP Basic credentials back: take those out as well.
        SECRETS.add_pair(client_id, self._client_secret.reveal())
        SECRETS.add_url(token_url)
        self._scope = scope
        self._margin = margin
        self._file = file
        self._clock = clock
        self._attempts = attempts
        self._backoff = backoff
        self._timeout = timeout
        self._lock: anyio.Lock | None = None
        self._access: Secret | None = None
        self._expires_at = math.inf
        self._refresh_at = -math.inf
        self._cooldown_until = -math.inf
        self._failure: CredentialsError | None = None
        #: Bumped by every new access token; a refresh that finds it moved is not needed.
        self.generation = 0
        #: Token requests sent (answered or not), for tests and the report.
        self.requests = 0
        #: Lifetime in seconds of the current access token, as the endpoint announced it.
        self.expires_in: float | None = None

    def expires_in_now(self) -> float | None:
        """Seconds the current access token has left (by ``clock``), if it is known."""
        if self._access is None or math.isinf(self._expires_at):
            return None
        return self._expires_at - self._clock()

    async def token(self) -> Secret:
        if self._failure is not None:
            raise self._failure
        if self._access is not None and self._clock() < self._refresh_at:
            return self._access
        return await self._refresh("first" if self._access is None else "expiring", self.generation)

    async def refused(self, token: Secret) -> Secret | None:
        if self._failure is not None:
            raise self._failure
        if self._access is not None and token != self._access:
            return self._access  # another worker refreshed it already
        if self._clock() < self._cooldown_until:
            return None
        return await self._refresh("refused", self.generation)

    async def _refresh(self, reason: str, seen: int) -> Secret:
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            if self._failure is not None:
                raise self._failure
            if self.generation != seen and self._access is not None:
                return self._access  # single flight: the refresh we waited for is ours too
            try:
                return await self._refresh_locked(reason)
            except CredentialsError as exc:
                self._failure = exc
                raise

    async def _refresh_locked(self, reason: str) -> Secret:
        self._pick_up_new_file()
        last: _Transient | None = None
        for attempt in range(self._attempts):
            try:
                access, expires_in, rotated = await self._exchange()
            except _Transient as exc:
                last = exc
                left = self.expires_in_now()
                if self._access is not None and left is not None and left > 1.0:
                    # The current token still works: use it, try again a little later.
                    log.warning("token refresh failed (%s); retrying in a moment", exc)
                    self._refresh_at = self._clock() + min(left / 2, 30.0)
                    return self._access
                if attempt + 1 < self._attempts:
                    await anyio.sleep(self._backoff * 2**attempt)
                continue
            return self._install(access, expires_in, rotated, reason)
        raise CredentialsError(
            f"the token endpoint {self.token_url} failed {self._attempts} times ({last}); "
            "no access token can be had. Check the network and the endpoint "
            "(stacpull auth check), then run the same command again to resume"
        )

    def _pick_up_new_file(self) -> None:
        """A user who drops a new offline token into the file mid-run gets it used."""
        values = self._file.reload() if self._file is not None else None
        if values is not None and Secret(values["token"]) != self._offline:
            log.info("%s changed on disk: using the new offline token", self.source)
            self._offline = Secret(values["token"])

    def _install(
        self, access: Secret, expires_in: float | None, rotated: Secret | None, reason: str
    ) -> Secret:
        now = self._clock()
        self._access = access
        self.generation += 1
        self.expires_in = expires_in
        if expires_in is None:
            self._expires_at = self._refresh_at = math.inf  # refreshed on a 401 only
        else:
            self._expires_at = now + expires_in
            self._refresh_at = self._expires_at - min(self._margin, expires_in / 5)
        if reason == "refused":
            self._cooldown_until = now + min(30.0, (expires_in or 60.0) / 2)
        if rotated is not None and rotated != self._offline:
            # Kept for the rest of the run; the file is left as the user wrote it.
            self._offline = rotated
        log.debug(
            "new access token (%s): valid for %s",
            reason,
            "an unknown time" if expires_in is None else f"{expires_in:g} s",
        )
        self._refreshed(reason, expires_in)
        return access

    async def _exchange(self) -> tuple[Secret, float | None, Secret | None]:
        """One request to the token endpoint; raises _Transient or CredentialsError."""
        form = {
            "grant_type": "refresh_token",
            "refresh_token": self._offline.reveal(),
            "client_id": self.client_id,
            "client_secret": self._client_secret.reveal(),
            "scope": self._scope,
        }
        self.requests += 1
        log.debug("exchanging the offline token at %s", self.token_url)
        try:
            with mapped_errors(self.token_url, "body"):
                async with (
                    client_session(total=self._timeout, decompress=True) as session,
                    session.post(self.token_url, data=form, allow_redirects=False) as resp,
                ):
                    status = resp.status
                    body = await resp.content.read(_MAX_ANSWER)
        except TransferError as exc:
            raise _Transient(_cause(exc)) from None
        try:
            answer: Any = json.loads(body)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            answer = {}
        if status in (408, 429) or status >= 500:
            raise _Transient(f"HTTP {status}")
        if status != 200:
            raise CredentialsError(self._refusal(status, answer))
        access = answer.get("access_token")
        if not isinstance(access, str) or not access:
            raise CredentialsError(
                f"the token endpoint {self.token_url} answered 200 without an access token; "
                "check auth.token_url"
            )
        expires_in = answer.get("expires_in")
        lifetime = (
            float(expires_in)
            if isinstance(expires_in, int | float) and not isinstance(expires_in, bool)
            else None
        )
        token = Secret(access)
        if lifetime is None and (exp := token_expiry(token)) is not None:
            lifetime = exp - time.time()
        rotated = answer.get("refresh_token")
        return token, lifetime, Secret(rotated) if isinstance(rotated, str) and rotated else None

    def _refusal(self, status: int, answer: dict[str, Any]) -> str:
        """What went wrong and exactly what to do, from an OAuth error answer."""
        error = scrub(str(answer.get("error") or f"HTTP {status}"))
        description = scrub(str(answer.get("error_description") or "")).strip()
        said = f"{error}: {description}" if description else error
        where = (
            f"save it to {self._file.path}"
            if self._file is not None
            else "set STACPULL_OFFLINE_TOKEN"
        )
        portal = f" at {MAAP_OFFLINE_TOKEN_PAGE}" if self.token_url == DEFAULT_TOKEN_URL else ""
        if error in ("invalid_client", "unauthorized_client"):
            return (
                f"the token endpoint refused the client {self.client_id!r} ({said}); check "
                "--client-id and --client-secret (auth.client_id, auth.client_secret), then "
                "run the same command again to resume"
            )
        if status in (300, 301, 302, 303, 307, 308):
            return (
                f"the token endpoint {self.token_url} redirects (HTTP {status}); set "
                "auth.token_url (--token-url) to the endpoint itself"
            )
        return (
            f"the offline token from {self.source} was refused by the token endpoint ({said}): "
            f"it was revoked, has expired (90 days) or went unused for too long. Get a new "
            f"offline token{portal}, {where}, and run the same command again: the run "
            "resumes where it stopped"
        )


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
    return OIDCTokenProvider(
        offline,
        token_url=config.token_url,
        client_id=client_id,
        client_secret=client_secret,
        scope=config.scope,
        margin=config.refresh_margin,
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
    # The user's headers first; a user-set Authorization replaces the bearer, as in fetch.
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


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


@dataclass(frozen=True, slots=True)
class TrustPolicy:
    """Decides, per request and per redirect hop, whether the bearer header may go."""

    catalog_url: str
    hosts: tuple[str, ...] = ()

    def _listed(self, host: str) -> bool:
        return any(fnmatch.fnmatchcase(host, pattern) for pattern in self.hosts)

    def trusts(self, url: str) -> bool:
        """For a first request: the catalogue's host (any port) or a listed host."""
        host = _origin(url)[1]
        return bool(host) and (host == _origin(self.catalog_url)[1] or self._listed(host))

    def trusts_redirect(self, previous_url: str, next_url: str, *, sent: bool) -> bool:
        """For a redirect hop: same origin keeps what was decided; another origin needs a listed host."""
        if _origin(previous_url) == _origin(next_url):
            return sent
        return self._listed(_origin(next_url)[1])
