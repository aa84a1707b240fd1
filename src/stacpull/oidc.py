"""Access tokens from an OIDC offline token: MAAP's flow, refreshed single-flight.

:class:`OIDCTokenProvider` sends ``grant_type=refresh_token`` to the token endpoint, caches
the access token with its ``expires_in`` and refreshes it ahead of expiry, and once more
when a server answers 401. Refreshes are single-flight: however many workers find the
token stale together, one request goes out and all use its answer. A token endpoint that
fails (network, 408/429/5xx) is retried through :class:`~stacpull.retry.RetryPolicy`
(``OIDCSettings.retry``), its ``Retry-After`` honoured. When the offline token is refused
(revoked, expired), :class:`~stacpull.errors.CredentialsError` says what to do; the engine
then starts no new request and the run stays resumable.

The endpoint is spoken to through :mod:`stacpull.transfer.http` (sessions, error mapping).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from .config import Secret
from .defaults import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_REFRESH_MARGIN,
    DEFAULT_SCOPE,
    DEFAULT_TOKEN_URL,
)
from .errors import SECRETS, CredentialsError, TransferError, scrub
from .headers import parse_retry_after
from .retry import RetryPolicy
from .tokens import BaseProvider, TokenFile, log, token_expiry
from .transfer.http import client_session, mapped_errors

__all__ = ["OIDCSettings", "OIDCTokenProvider"]

#: Where MAAP users get a new offline token (valid 90 days).
_MAAP_OFFLINE_TOKEN_PAGE = "https://portal.maap.eo.esa.int/ini/services/auth/token/90dToken.php"
_MAX_ANSWER = 1 << 20

#: A failed token request is tried five times in all, waits of up to 1, 2, 4 and 8 s; a
#: ``Retry-After`` is obeyed up to a minute: every worker waits for the token meanwhile.
_REFRESH_RETRY = RetryPolicy(retries=4, backoff=1.0, max_backoff=60.0, max_retry_after=60.0)


@dataclass(frozen=True, slots=True)
class OIDCSettings:
    """How the offline token is exchanged: the endpoint, the client and the scope asked
    for; ``margin`` seconds before expiry a token is refreshed; ``timeout`` for one token
    request; ``retry``, the budget of a failed exchange."""

    token_url: str = DEFAULT_TOKEN_URL
    client_id: str = DEFAULT_CLIENT_ID
    client_secret: Secret = field(default_factory=lambda: Secret(DEFAULT_CLIENT_SECRET))
    scope: str = DEFAULT_SCOPE
    margin: float = DEFAULT_REFRESH_MARGIN
    timeout: float = 30.0
    retry: RetryPolicy = _REFRESH_RETRY


class _Transient(Exception):
    """The token endpoint failed in a way worth another try (network, 5xx, 429), with the
    ``Retry-After`` it asked for, if any."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


def _cause(exc: TransferError) -> str:
    """What the network said, as the client library named it (``ClientConnectorError: ...``)."""
    cause = exc.__cause__ or exc
    return f"{type(cause).__name__}: {scrub(str(cause))}".rstrip(": ")


class OIDCTokenProvider(BaseProvider):
    """Access tokens from an OIDC offline (refresh) token, refreshed single-flight.

    ``clock`` measures token lifetimes (tests run it faster than real time, together with
    the simulated catalogue's). A token is refreshed ``settings.margin`` seconds before it
    expires, at most a fifth of its lifetime early. On a 401 it is refreshed at once, except
    that a token which itself replaced a refused one is not replaced again for half its
    lifetime (30 s at most): a server that refuses every token (403 on a collection the
    account may not read) must not turn each file into a token request.
    """

    def __init__(
        self,
        offline: Secret,
        settings: OIDCSettings | None = None,
        *,
        source: str = "offline token",
        file: TokenFile | None = None,
        warnings: list[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(source, warnings)
        self.settings = settings = settings or OIDCSettings()
        self._offline = offline
        # A token endpoint may echo HTTP Basic credentials back: take those out as well.
        SECRETS.add_pair(settings.client_id, settings.client_secret.reveal())
        SECRETS.add_url(settings.token_url)
        self._file = file
        self._clock = clock
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

    @property
    def token_url(self) -> str:
        """The token endpoint."""
        return self.settings.token_url

    @property
    def client_id(self) -> str:
        """The OIDC client the offline token is exchanged as."""
        return self.settings.client_id

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
        retry = self.settings.retry
        last: _Transient | None = None
        for attempt in range(1, retry.attempts + 1):
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
                if attempt < retry.attempts:
                    # A Retry-After of 0 (or a date past) backs off all the same: every
                    # worker waits for this token, and a busy endpoint gets no burst.
                    await anyio.sleep(retry.wait(attempt, exc.retry_after or None))
                continue
            return self._install(access, expires_in, rotated, reason)
        raise CredentialsError(
            f"the token endpoint {self.token_url} failed {retry.attempts} times ({last}); "
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
            self._refresh_at = self._expires_at - min(self.settings.margin, expires_in / 5)
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
            "client_secret": self.settings.client_secret.reveal(),
            "scope": self.settings.scope,
        }
        self.requests += 1
        log.debug("exchanging the offline token at %s", self.token_url)
        try:
            with mapped_errors(self.token_url, "body"):
                async with (
                    client_session(total=self.settings.timeout, decompress=True) as session,
                    session.post(self.token_url, data=form, allow_redirects=False) as resp,
                ):
                    status = resp.status
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
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
            raise _Transient(f"HTTP {status}", retry_after)
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
        portal = f" at {_MAAP_OFFLINE_TOKEN_PAGE}" if self.token_url == DEFAULT_TOKEN_URL else ""
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
