"""The HTTP boundary: the only client-side module that imports aiohttp.

Everything else speaks :mod:`stacpull.errors`: :func:`mapped_errors` turns aiohttp's
exceptions into stacpull's at the one place a request is sent or a body read (as httpx's
``map_httpcore_exceptions`` does for httpcore), and :func:`client_session` builds every
client session, so the engine's pool and the token endpoint's one-off requests share
their settings (no decompression: bytes on disk are the bytes served).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Literal

import aiohttp

from .._version import __version__
from ..errors import ConnectError, HTTPStatusError, StallError, TruncatedError

__all__ = ["Response", "Session", "client_session", "mapped_errors"]

#: What a request answers and what sends it, named here so no other module imports aiohttp.
Response = aiohttp.ClientResponse
Session = aiohttp.ClientSession

USER_AGENT = f"stacpull/{__version__}"


def client_session(
    *,
    total: float | None = None,
    connect: float | None = None,
    stall: float | None = None,
    connections: int = 100,
    per_host: int = 0,
    decompress: bool = False,
) -> aiohttp.ClientSession:
    """A client session: ``total``/``connect`` bound a request and its connection,
    ``stall`` the wait for each read; ``connections`` and ``per_host`` size the pool.
    Downloads keep ``decompress`` off (the bytes on disk are the bytes served, and hashed);
    a JSON answer, as the token endpoint's, may turn it on."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections, limit_per_host=per_host),
        timeout=aiohttp.ClientTimeout(total=total, connect=connect, sock_read=stall),
        headers={"User-Agent": USER_AGENT},
        auto_decompress=decompress,
    )


@contextlib.contextmanager
def mapped_errors(
    url: str,
    phase: Literal["request", "body"] = "request",
    cut: Callable[[], str] | None = None,
) -> Iterator[None]:
    """aiohttp's errors while sending a request to ``url`` (``phase="request"``) or reading
    its body (``"body"``; ``cut()`` says where a truncated body ended), as stacpull's:
    a timeout is a :class:`StallError`, a body cut short a :class:`TruncatedError`, a URL
    aiohttp cannot send an :class:`HTTPStatusError` with status 0, and any other client
    error a :class:`ConnectError` naming aiohttp's class. The cause stays chained."""
    try:
        yield
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        waited = "no answer within the timeout"
        if phase == "body":
            waited = "no data received within the stall timeout"
        raise StallError(waited, url=url) from exc
    except aiohttp.InvalidURL as exc:
        raise HTTPStatusError("invalid URL", url=url, status=0) from exc
    except aiohttp.ClientPayloadError as exc:
        if phase == "body" and cut is not None:
            raise TruncatedError(cut(), url=url) from exc
        raise ConnectError(f"connection lost: {type(exc).__name__}", url=url) from exc
    except aiohttp.ClientError as exc:
        lost = "connection lost" if phase == "body" else "connection failed"
        raise ConnectError(f"{lost}: {type(exc).__name__}", url=url) from exc
