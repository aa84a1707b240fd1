"""Which hosts may see the bearer token: :class:`TrustPolicy`.

A token is sent only to *trusted* hosts: the catalogue's host name (any port) and the
hosts the user lists (``--auth-host``, ``auth.hosts``; globs allowed). On a redirect to
another origin the token is dropped unless the new host is listed: a presigned S3 URL
rejects a request that also carries a bearer header, and a foreign host must never learn
the token. Kept apart from the token sources, so the transfer side decides trust without
loading any of them.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["TrustPolicy"]


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
