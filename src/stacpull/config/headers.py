"""Extra request headers (``download.headers``, ``--header``): which a user may set, and
which carry credentials.

Framing headers (Host, Content-Length, Range…) belong to HTTP and to stacpull and are
refused; a header whose name says credential (Authorization, Cookie, X-Api-Key…) has its
value registered with the scrubber, so no log, report or error shows it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..errors import SECRETS, ConfigError

__all__ = ["parse_headers", "secret_header"]

#: Request headers a user may not set: they belong to HTTP framing or to stacpull itself.
_REFUSED_HEADERS = frozenset(
    {"host", "content-length", "range", "if-range", "transfer-encoding", "connection", "te",
     "upgrade", "keep-alive", "accept-encoding", "expect", "trailer", "proxy-connection"}
)  # fmt: skip
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: Parts of a header name whose value is a credential, registered with the scrubber.
_SECRET_HEADER_WORDS = (
    "auth", "token", "key", "secret", "cookie", "pass", "session", "sig", "cred", "jwt",
)  # fmt: skip


def secret_header(name: str) -> bool:
    """Whether a header's value is a credential by its name (Authorization, Cookie,
    X-Api-Key, X-Auth-Token…): registered with the scrubber, masked by ``config show``."""
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_HEADER_WORDS)


def _header_shown(text: str) -> str:
    """A malformed header entry as an error may show it: its leading name only, never the
    rest, which is likely the value (``X-Api-Key=…`` is a credential with a typo)."""
    match = _HEADER_NAME.match(text.strip())
    return f"{match.group(0)!r}…" if match else "an entry"


def parse_headers(value: Any, key: str = "download.headers") -> tuple[tuple[str, str], ...]:
    """``K: V`` strings (or a ``{K: V}`` table, or ``[K, V]`` pairs) → checked (name, value)
    pairs. Framing headers (Host, Content-Length, Range…) are refused; values of
    credential-like headers (Authorization, Cookie, X-Api-Key…) become known secrets."""
    if isinstance(value, Mapping):
        raw: list[Any] = [(k, v) for k, v in value.items()]
    elif isinstance(value, str):
        raw = [line for line in value.splitlines() if line.strip()]
    elif isinstance(value, list | tuple):
        raw = list(value)
    else:
        raise ConfigError(
            f"{key}: expected 'Name: value' strings or a table, got {type(value).__name__}"
        )
    pairs: list[tuple[str, str]] = []
    for entry in raw:
        if isinstance(entry, str):
            name, sep, text = entry.partition(":")
            if not sep:
                raise ConfigError(
                    f"{key}: expected 'Name: value', got {_header_shown(entry)} without ':'"
                )
        elif isinstance(entry, list | tuple) and len(entry) == 2:
            name, text = entry
        else:
            raise ConfigError(f"{key}: expected 'Name: value', got {type(entry).__name__}")
        if not isinstance(name, str) or not isinstance(text, str):
            raise ConfigError(
                f"{key}: header names and values are strings, got {type(text).__name__} "
                f"for {_header_shown(name) if isinstance(name, str) else type(name).__name__}"
            )
        name, text = name.strip(), text.strip()
        if not _HEADER_NAME.fullmatch(name):
            raise ConfigError(f"{key}: {_header_shown(name)} is not a valid header name")
        if any(c in text for c in "\r\n\0\x85\u2028\u2029"):
            raise ConfigError(f"{key}: the value of {name} holds a line break")
        if any((ord(c) < 32 and c != "\t") or 127 <= ord(c) < 160 for c in text):
            # C1 controls too (0x80-0x9f: 0x9b is an 8-bit CSI a server or log may echo).
            # aiohttp would refuse it only at the first request, with a traceback.
            raise ConfigError(f"{key}: the value of {name} holds a control character")
        if name.lower() in _REFUSED_HEADERS:
            raise ConfigError(
                f"{key}: {name} is set by stacpull and the HTTP protocol itself; "
                "it cannot be given as a header"
            )
        if secret_header(name):
            SECRETS.add(text)
            SECRETS.add(text.partition(" ")[2].strip())  # the credential after a scheme
        pairs.append((name, text))
    return tuple(pairs)
