"""The simulated MAAP identity server: an OIDC token endpoint and expiring access tokens.

``POST /realms/sim/protocol/openid-connect/token`` behaves like MAAP's Keycloak for the
one flow stacpull uses: ``grant_type=refresh_token`` with an offline token, a client id
and secret. It answers ``{"access_token", "expires_in", "refresh_token", ...}``, or the
OAuth errors Keycloak sends (``invalid_grant`` for a revoked offline token,
``invalid_client`` for a wrong secret). Access tokens are JWT-shaped (so ``exp`` can be
read) and expire after ``lifetime`` seconds of the identity's clock: a
:class:`ScaledClock` shared with the client runs minutes of token lifetimes in seconds.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["TOKEN_PATH", "OIDCOptions", "ScaledClock", "SimIdentity"]

TOKEN_PATH = "/realms/sim/protocol/openid-connect/token"


class ScaledClock:
    """Seconds that pass ``speed`` times faster than real ones (from when it was made).

    Give the same clock to the simulated server and to the client's token provider, and a
    10-second access token lasts a third of a real second at ``speed=30``.
    """

    def __init__(self, speed: float = 1.0) -> None:
        self.speed = speed
        self._start = time.monotonic()

    def __call__(self) -> float:
        return (time.monotonic() - self._start) * self.speed


@dataclass
class OIDCOptions:
    """The identity server's behaviour."""

    offline_tokens: set[str] = field(default_factory=lambda: {"sim-offline-token"})
    client_id: str = "offline-token"
    client_secret: str = "sim-client-secret"
    lifetime: float = 300.0  # seconds of ``clock`` an access token lives
    latency: float = 0.0  # real seconds before the endpoint answers
    rotate: bool = False  # answer a new refresh token each time and retire the old one
    clock: Callable[[], float] = time.monotonic


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


class SimIdentity:
    """Token endpoint state: valid offline tokens, issued access tokens, a request log."""

    def __init__(self, options: OIDCOptions) -> None:
        self.options = options
        self._lock = threading.Lock()  # tests revoke tokens from another thread
        self._access: dict[str, float] = {}  # access token -> expiry on options.clock
        self._serial = itertools.count(1)
        #: One entry per token request: outcome ("ok" or the OAuth error), at (on the
        #: clock), monotonic (real ``time.monotonic()``).
        self.log: list[dict[str, Any]] = []

    def check(self, token: str) -> str:
        """``ok``, ``expired`` or ``unknown`` for a bearer token from a data request."""
        with self._lock:
            expiry = self._access.get(token)
        if expiry is None:
            return "unknown"
        return "ok" if self.options.clock() < expiry else "expired"

    def revoke(self, offline_token: str | None = None) -> None:
        """Revoke one offline token, or all of them (the user's session was ended)."""
        with self._lock:
            if offline_token is None:
                self.options.offline_tokens.clear()
            else:
                self.options.offline_tokens.discard(offline_token)

    def grant(self, offline_token: str) -> None:
        """Accept another offline token (the user fetched a new one from the portal)."""
        with self._lock:
            self.options.offline_tokens.add(offline_token)

    def expire_access_tokens(self) -> None:
        """Every access token issued so far stops working now (e.g. a key rotation)."""
        with self._lock:
            self._access.clear()

    async def endpoint(self, request: web.Request) -> web.Response:
        form = await request.post()
        if self.options.latency > 0:
            await asyncio.sleep(self.options.latency)
        with self._lock:
            status, answer = self._answer({k: str(v) for k, v in form.items()})
            self.log.append(
                {
                    "outcome": answer.get("error", "ok"),
                    "at": self.options.clock(),
                    "monotonic": time.monotonic(),
                }
            )
        return web.json_response(answer, status=status, headers={"Cache-Control": "no-store"})

    def _answer(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        opts = self.options
        if form.get("client_id") != opts.client_id or form.get("client_secret") != (
            opts.client_secret
        ):
            return 401, {
                "error": "unauthorized_client",
                "error_description": "Invalid client or Invalid client credentials",
            }
        if form.get("grant_type") != "refresh_token":
            return 400, {"error": "unsupported_grant_type"}
        offline = form.get("refresh_token", "")
        if offline not in opts.offline_tokens:
            return 400, {
                "error": "invalid_grant",
                "error_description": "Offline session not active",
            }
        n = next(self._serial)
        now = opts.clock()
        self._access = {t: e for t, e in self._access.items() if e > now}
        claims = {"exp": int(time.time() + opts.lifetime), "n": n, "jti": secrets.token_hex(8)}
        access = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.sim"
        self._access[access] = now + opts.lifetime
        refresh = offline
        if opts.rotate:
            refresh = f"sim-offline-{n}-{secrets.token_hex(4)}"
            opts.offline_tokens.discard(offline)
            opts.offline_tokens.add(refresh)
        return 200, {
            "access_token": access,
            "expires_in": opts.lifetime,
            "refresh_expires_in": 0,
            "refresh_token": refresh,
            "token_type": "Bearer",
            "scope": form.get("scope", ""),
        }
