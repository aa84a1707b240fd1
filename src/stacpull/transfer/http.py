"""The HTTP boundary: the only client-side module that imports aiohttp.

Everything else speaks :mod:`stacpull.errors`: :func:`mapped_errors` turns aiohttp's
exceptions into stacpull's at the one place a request is sent or a body read (as httpx's
``map_httpcore_exceptions`` does for httpcore), and :func:`client_session` builds every
client session, so the engine's pool and the token endpoint's one-off requests share
their settings (no decompression: bytes on disk are the bytes served).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import aiohttp
from yarl import URL

from .._version import __version__
from ..errors import (
    SECRETS,
    AuthError,
    ConnectError,
    CredentialsError,
    HTTPStatusError,
    RangeError,
    StallError,
    TruncatedError,
    redact_url,
    scrubbed_logger,
    url_credentials,
)
from ..headers import (
    ContentRange,
    Validators,
    parse_content_range,
    parse_retry_after,
    parse_unsatisfied_range,
    shown,
)
from .partfile import storage_error

if TYPE_CHECKING:
    from ..config import Secret
    from ..journal import JournalRow
    from ..models import Job
    from .context import FetchContext

__all__ = [
    "Response",
    "Session",
    "TokenUse",
    "body_errors",
    "check_status",
    "client_session",
    "content_range",
    "host_of",
    "length_source",
    "mapped_errors",
    "open_response",
    "recorded",
    "same_length",
    "same_split",
    "same_version",
    "whole_at",
]

#: The transfer's messages keep the name fetch.py gave them (``--debug`` prints it, users
#: set its level); every module of the package shares the logger and its one filter.
log = scrubbed_logger("stacpull.fetch")

#: What a request answers and what sends it, named here so no other module imports aiohttp.
Response = aiohttp.ClientResponse
Session = aiohttp.ClientSession

_USER_AGENT = f"stacpull/{__version__}"


def host_of(url: str) -> str:
    """The host a request to ``url`` goes to, as the session sees it (IDNA-encoded); raises
    ``ValueError`` for a URL the client cannot take (an IDNA label ``xn--`` that is not)."""
    return URL(url).host or ""


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
    ``stall`` the wait for each read; ``connections`` and ``per_host`` size the pool (0: no
    limit). Downloads keep ``decompress`` off (the bytes on disk are the bytes served, and hashed);
    a JSON answer, as the token endpoint's, may turn it on."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections, limit_per_host=per_host),
        timeout=aiohttp.ClientTimeout(total=total, connect=connect, sock_read=stall),
        headers={"User-Agent": _USER_AGENT},
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
        refused = isinstance(exc, aiohttp.ClientConnectorError) and isinstance(
            exc.os_error, ConnectionRefusedError
        )
        raise ConnectError(f"{lost}: {type(exc).__name__}", url=url, refused=refused) from exc


_MAX_REDIRECTS = 10


_HTML_TYPES = ("text/html", "application/xhtml+xml")


@dataclass(slots=True)
class TokenUse:
    """What the bearer token did on a file's request: what :func:`check_status` needs to
    explain a 401 or 403."""

    renewed: bool = False  # this attempt already retried with a newer token
    withheld: bool = False  # there was a token, but this host may not receive it
    unproven: bool = False  # a fixed token no file was served with yet was refused


async def open_response(
    url: str, host: str, headers: dict[str, str], ctx: FetchContext, use: TokenUse
) -> Response:
    """GET ``url``, following redirects ourselves so the bearer header obeys
    :class:`TrustPolicy`. A 401/403 to a token we sent asks the provider for a newer one
    and repeats the request once with it (from the first URL: a redirect may be signed
    for the old token). The time to the first byte of a 200/206 (its redirects included)
    goes to the window of ``host`` (``url``'s, as the transfer already knows it)."""
    token = await ctx.tokens.token()
    fixed = ctx.fixed_tokens
    while True:
        sent_at = time.monotonic()
        resp, sent = await _follow(url, headers, token, ctx)
        if resp.status in (200, 206):  # a 429 or a 404 answers faster than data would
            ctx.limiter.first_byte(host, time.monotonic() - sent_at)
        use.withheld = token is not None and not sent
        if fixed is not None and sent and token is not None and resp.status in (200, 206):
            fixed.accepted(token)
        if resp.status not in (401, 403) or not sent or token is None or use.renewed:
            return resp
        fresh = await ctx.tokens.refused(token)
        if fresh is None or fresh == token:
            if fixed is not None:
                try:  # a fixed token nothing can refresh: refused everywhere, the run stops
                    fixed.check_refusal(token, resp.status, url)
                except CredentialsError:
                    resp.release()
                    raise
                use.unproven = not fixed.proven(token)
            return resp
        resp.release()
        log.debug("HTTP %s to a token: retrying %s with a new one", resp.status, redact_url(url))
        token, use.renewed = fresh, True


def _own_credentials(url: str) -> bool:
    """Whether ``url`` carries its own credentials (userinfo, which aiohttp sends as HTTP
    Basic): they win over the bearer token (one request has one Authorization header), and
    the scrubber learns them, so they are used but never shown."""
    parts = URL(url)
    if parts.user is None:
        return False
    SECRETS.add_pair(parts.user, parts.password or "")
    return True


async def _follow(
    url: str, headers: dict[str, str], token: Secret | None, ctx: FetchContext
) -> tuple[Response, bool]:
    """The redirect chain from ``url``; returns the last response and whether it was sent
    the token."""
    send_token = token is not None and ctx.trust.trusts(url)
    trusted = ctx.trust.trusts(url)  # the user's headers follow the token's rule
    for _ in range(_MAX_REDIRECTS + 1):
        hop_headers = dict(headers)
        own = _own_credentials(url)
        if ctx.headers:
            own = _user_headers(hop_headers, ctx, trusted) or own
        if send_token and token is not None and not own:
            hop_headers["Authorization"] = f"Bearer {token.reveal()}"
        with mapped_errors(url):
            resp = await ctx.session.get(url, headers=hop_headers, allow_redirects=False)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "GET %s%s%s -> %s",
                redact_url(url),
                " with token" if send_token else "",
                f" Range {headers['Range']}" if "Range" in headers else "",
                resp.status,
            )
        if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
            try:
                location = str(resp.url.join(URL(resp.headers["Location"])))
            except ValueError as exc:  # the server's Location is no URL (UnicodeError too)
                resp.release()
                raise HTTPStatusError(
                    f"HTTP {resp.status} redirect to an invalid URL ({exc})",
                    url=url,
                    status=resp.status,
                ) from None
            resp.release()
            send_token = token is not None and ctx.trust.trusts_redirect(
                url, location, sent=send_token
            )
            trusted = ctx.trust.trusts_redirect(url, location, sent=trusted)
            url = location
            continue
        return resp, send_token and not own
    raise HTTPStatusError(f"more than {_MAX_REDIRECTS} redirects", url=url, status=310)


def _user_headers(hop_headers: dict[str, str], ctx: FetchContext, trusted: bool) -> bool:
    """Add the user's headers to one request (to a trusted host, or any with
    ``header_all_hosts``); returns whether they set Authorization, which then replaces the
    bearer token and, being a credential, goes to trusted hosts only."""
    own = False
    for name, value in ctx.headers:
        is_auth = name.lower() == "authorization"
        # Proxy-Authorization is as much a credential, and no proxy of ours reads it.
        credential = is_auth or name.lower() == "proxy-authorization"
        if trusted or (ctx.header_all_hosts and not credential):
            hop_headers[name] = value
            own = own or is_auth
    return own


def check_status(resp: Response, job: Job, token_source: str, use: TokenUse) -> None:
    status = resp.status
    if status in (200, 206):
        ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
        expected = (job.media_type or "").lower()
        if ctype in _HTML_TYPES and expected not in _HTML_TYPES:
            raise AuthError(
                "the server sent an HTML page instead of the file (a login page?); check the token",
                url=str(resp.url),
                status=status,
            )
        return
    if status in (401, 403):
        host = resp.url.host or "this host"
        if use.withheld:
            hint = (
                f"the token was not sent: {host} is not the catalogue's host (--catalog); "
                f"add --auth-host {host} if it should receive it"
            )
        elif token_source == "none":
            hint = (
                "no token was sent: pass --offline-token-file or --token, or set "
                "STACPULL_OFFLINE_TOKEN or STACPULL_TOKEN"
            )
        elif use.renewed:
            hint = (
                f"a fresh token from {token_source} was refused too: the account may not "
                "have access to this collection"
            )
        else:
            hint = f"the token from {token_source} was refused (expired?)"
        unproven = use.unproven and not use.withheld
        raise AuthError(
            f"HTTP {status}: {hint}", url=str(resp.url), status=status, unproven=unproven
        )
    if status == 416:
        raise RangeError(
            "HTTP 416: the partial file no longer fits the server's file", url=str(resp.url)
        )
    if status == 404:
        raise HTTPStatusError(
            "HTTP 404: the file is not on the server (MAAP lists some items before their "
            "files are ready)",
            url=str(resp.url),
            status=404,
        )
    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
    # The reason phrase is the server's: it may echo this request's own credentials.
    own = (*url_credentials(job.url), *url_credentials(str(resp.url)))
    reason = shown(SECRETS.scrub(resp.reason or "", also=own))
    raise HTTPStatusError(
        f"HTTP {status} {reason}".strip(), url=str(resp.url), status=status, retry_after=retry_after
    )


def whole_at(job: Job, row: JournalRow | None, have: int, resp: Response) -> None:
    """Raise :class:`RangeError` unless a 416 to a resume at ``have`` bytes says the
    ``.part`` is complete: its ``Content-Range: bytes */N`` has N = ``have``, and what the
    catalogue (``file:size``) and the response that began the ``.part`` (its total, in
    ``row``) expect is known and is N too. A server's word alone proves nothing: a 416
    with a smaller N after a cut would otherwise pass half a file on to the checks."""
    said = parse_unsatisfied_range(resp.headers.get("Content-Range", ""))
    began = row.total if row is not None else None
    expected = {n for n in (job.size, began) if n is not None}
    if said == have and expected == {have}:
        return
    if said is None:
        claim = "HTTP 416 without Content-Range: bytes */N"
    else:
        claim = f"HTTP 416 says the file has {said} bytes"
    known = (
        f"file:size says {job.size}" if job.size is not None
        else f"the partial file was begun for {began}" if began is not None
        else "nothing else says how long it is"
    )  # fmt: skip
    raise RangeError(
        f"{claim}, the partial file holds {have} and {known}: restarting from zero",
        url=str(resp.url),
    )


def content_range(resp: Response, url: str, first: int, total: int | None = None) -> ContentRange:
    """The ``Content-Range`` of a 206 asked for the bytes from ``first`` (and, given
    ``total``, of a file of ``total`` bytes); :class:`RangeError` when it is malformed or
    does not start there (or is of another length): such bytes are never written."""
    try:
        crange = parse_content_range(resp.headers.get("Content-Range", ""))
    except ValueError as exc:
        raise RangeError(str(exc), url=url) from exc
    if total is None and crange.first != first:
        raise RangeError(
            f"asked for bytes from {first}, got Content-Range {crange.first}-{crange.last}",
            url=url,
        )
    if total is not None and (crange.first != first or crange.total != total):
        raise RangeError(
            f"asked for bytes from {first} of {total}, got Content-Range "
            f"{crange.first}-{crange.last}/{crange.total}",
            url=url,
        )
    return crange


def recorded(row: JournalRow | None) -> Validators:
    """The validators of the response that began a ``.part`` (``row``: its journal
    record; none without one)."""
    return Validators(row.etag, row.last_modified) if row is not None else Validators()


def same_version(job: Job, row: JournalRow | None, got: Validators, total: int | None) -> None:
    """Raise :class:`RangeError` unless a resume's 206 is of the version the ``.part``
    holds (``row``: its journal record): same validators (see :meth:`Validators.same`)
    and, where both are known, the same total length. A server that ignores ``If-Range``
    answers a changed file with a range of the new one; its bytes after the old ones
    would make a file that never existed, so the ``.part`` is discarded instead."""
    began = recorded(row)
    if not began.same(got):
        raise RangeError(
            f"the file changed on the server: the resume's 206 carries "
            f"{_validator_text(got)}, the partial file has {_validator_text(began)}; "
            "restarting from zero",
            url=job.url,
        )
    same_length(job, row, total)


def same_length(job: Job, row: JournalRow | None, total: int | None) -> None:
    """Raise :class:`RangeError` when a resume's 206 says the file has ``total`` bytes and
    the response that began the ``.part`` (``row``) announced another length."""
    if row is not None and row.total is not None and total is not None and total != row.total:
        raise RangeError(
            f"the file changed on the server: the resume's 206 says {total} bytes in all, "
            f"the partial file was begun for {row.total}; restarting from zero",
            url=job.url,
        )


def same_split(validator: str, got: Validators, url: str) -> None:
    """Raise :class:`RangeError` unless a range's 206 (carrying ``got``) is of the version
    its file was split under (``validator``: the ``If-Range`` every range sends)."""
    if not Validators.from_if_range(validator).same(got):
        raise RangeError(
            "the file changed on the server during a segmented download: a range came "
            f"with {_validator_text(got)}, the file was split under {validator}",
            url=url,
        )


def _validator_text(v: Validators) -> str:
    """ETag and Last-Modified for a message."""
    shown = [f"ETag {v.etag}"] if v.etag else []
    if v.last_modified:
        shown.append(f"Last-Modified {v.last_modified}")
    return ", ".join(shown) or "no validator"


def length_source(resp: Response) -> str:
    """What announced a response's length, for a message."""
    if resp.status == 206:
        return "its Content-Range"
    return "its Content-Length" if resp.content_length is not None else "file:size"


@contextlib.contextmanager
def body_errors(job: Job, part: Path, cut: Callable[[], str]) -> Iterator[None]:
    """aiohttp's and the disk's errors while a body is read into ``part``, as stacpull's
    (``cut()`` says where a truncated body ended). The disk's are caught outside
    :func:`mapped_errors`: a timeout is an OSError too, and is aiohttp's here."""
    try:
        with mapped_errors(job.url, "body", cut):
            yield
    except OSError as exc:
        raise storage_error(exc, part) from exc
