"""Bearer tokens: where they come from and which hosts may see them.

A token is sent only to *trusted* hosts: the catalogue's host name (any port) and the
hosts the user lists (``--auth-host``, ``auth.hosts``; ``*.example.org`` globs allowed).
On a redirect to another origin (scheme, host or port) the token is dropped unless the new
host is one the user listed: a presigned S3 URL rejects a request that also carries a
bearer header, and a foreign host must never learn the token.

Tokens travel as :class:`~stacpull.config.Secret` and are revealed only when the header is
built, so they never reach logs, reports or exception messages.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from .config import DEFAULT_TOKEN_FILE, AuthConfig, Secret
from .errors import ConfigError

__all__ = ["StaticTokenProvider", "TokenProvider", "TrustPolicy", "load_token"]


class TokenProvider(Protocol):
    """Gives workers the current token; shared by all workers of a run."""

    async def token(self) -> Secret | None:
        """The token to send now, or ``None`` when there is none."""
        ...

    @property
    def source(self) -> str:
        """Where the token came from, for messages (never the token itself)."""
        ...


@dataclass(slots=True)
class StaticTokenProvider:
    """A token fixed for the whole run (flag, environment or token file)."""

    value: Secret | None
    source: str = "none"
    warnings: list[str] = field(default_factory=list)

    async def token(self) -> Secret | None:
        return self.value


def load_token(config: AuthConfig, *, cwd: Path | None = None) -> StaticTokenProvider:
    """Resolve the token: ``--token``/``STACPULL_TOKEN`` first, then the token file.

    The default ``token.txt`` (as in MAAP's notebooks) is optional; a token file the user
    named explicitly must exist. A file readable by other users gets a warning.
    """
    if config.token is not None and config.token.reveal().strip():
        return StaticTokenProvider(Secret(config.token.reveal().strip()), "--token/STACPULL_TOKEN")
    path = Path(config.token_file).expanduser()
    if cwd is not None and not path.is_absolute():
        path = cwd / path
    if not path.exists():
        if config.token_file != DEFAULT_TOKEN_FILE:
            raise ConfigError(f"auth.token_file: {config.token_file} does not exist")
        return StaticTokenProvider(None)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"auth.token_file: cannot read {config.token_file}: {exc}") from None
    token = "".join(text.split())  # the notebooks strip newlines the same way
    warnings: list[str] = []
    if os.name == "posix":
        mode = path.stat().st_mode
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            warnings.append(
                f"token file {config.token_file} is readable by other users; "
                f"run: chmod 600 {config.token_file}"
            )
    if not token:
        raise ConfigError(f"auth.token_file: {config.token_file} is empty")
    return StaticTokenProvider(Secret(token), f"token file {config.token_file}", warnings)


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
