"""Fixed bearer tokens, and what every token source has: the provider protocol, token files.

A :class:`TokenProvider` gives workers the current token; one is shared by every worker of
a run. :class:`StaticTokenProvider` holds a token given by flag or environment, or read
from a :class:`TokenFile`, re-read whenever it changes on disk, so a user or a cron job can
drop a new token in mid-run. Nothing can refresh a fixed token: it stops the run as soon as
the servers show it is refused. The refreshed kind is :mod:`stacpull.oidc`'s.

Tokens travel as :class:`~stacpull.config.Secret` and are revealed only where they go on
the wire, so they never reach logs, reports, the journal or exception messages.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import stat
import time
from pathlib import Path
from typing import Protocol

from .config import Secret
from .errors import ConfigError, CredentialsError, scrubbed_logger
from .events import EventSink, TokenRefreshed

__all__ = [
    "BaseProvider",
    "StaticTokenProvider",
    "TokenFile",
    "TokenProvider",
    "human_duration",
    "log",
    "token_expiry",
]

#: The credentials' one logger (token files, refreshes), scrubbed before any handler.
log = scrubbed_logger("stacpull.auth")
_KEY_VALUE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


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


class BaseProvider:
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
_FIXED_TOKEN_REFUSALS = 3


class StaticTokenProvider(BaseProvider):
    """A token given by flag or environment, or read from a token file (re-read on change).

    Nothing can refresh a fixed token, so :meth:`check_refusal` stops the run (a
    :class:`CredentialsError`) when the server shows the token itself is refused: a 401
    after its JWT ``exp`` passed, or 401/403 on the first :data:`_FIXED_TOKEN_REFUSALS`
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
        if len(self._refused) >= _FIXED_TOKEN_REFUSALS:
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
