"""The credentials API: bearer tokens, where they come from, which hosts may see them.

What a script imports (``stacpull.auth.load_credentials``, in the README), gathered from
the modules that own each concern; inside the package every module imports the owner:

- :mod:`stacpull.tokens`: the :class:`TokenProvider` protocol, fixed tokens
  (:class:`StaticTokenProvider`) and the :class:`TokenFile` they may be re-read from;
- :mod:`stacpull.oidc`: :class:`OIDCTokenProvider`, access tokens from an offline token,
  refreshed single-flight ahead of expiry and on a 401;
- :mod:`stacpull.credentials`: :func:`load_credentials` (which source, first match wins)
  and :func:`check_credentials` (``stacpull auth check``);
- :mod:`stacpull.trust`: :class:`TrustPolicy`, which hosts may receive the token (the
  catalogue's, the listed ones; a redirect elsewhere drops it).

Tokens travel as :class:`~stacpull.config.Secret` and are revealed only where they go on
the wire, so they never reach logs, reports, the journal or exception messages.
"""

from __future__ import annotations

from .credentials import CredentialsCheck, check_credentials, load_credentials
from .oidc import OIDCTokenProvider
from .tokens import StaticTokenProvider, TokenFile, TokenProvider, human_duration
from .trust import TrustPolicy

__all__ = [
    "CredentialsCheck",
    "OIDCTokenProvider",
    "StaticTokenProvider",
    "TokenFile",
    "TokenProvider",
    "TrustPolicy",
    "check_credentials",
    "human_duration",
    "load_credentials",
]
