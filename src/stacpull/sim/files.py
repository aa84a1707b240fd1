"""The simulated data server: product zips streamed by the zipper, static files with
validators (unless the ``validators`` knob is off) and ranges, the ``/go`` redirect, and
every fault knob applied to a body (cuts, stalls, holds, rate limits per connection and per
link, 401s, 404s of products not ready yet, 429/503, 429 beyond ``max_concurrent``), and the
body bytes sent, in all and per file.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from aiohttp import web

from ..headers import format_http_date, parse_range
from .catalog import AssetFile
from .content import product_zip_chunks
from .stac_api import error_response

if TYPE_CHECKING:
    from .server import SimState

__all__ = ["DataFiles"]

_ZIP_CHUNK = 256 * 1024


class _Planted(NamedTuple):
    """What the catalogue's one-shot knobs planted for one response of a file: its slot
    (``item/key``, the per-file byte counter's name), a cut, a stall and a hold."""

    slot: str
    cut: int | None = None
    stall: tuple[int, float] | None = None
    hold: tuple[int, threading.Event] | None = None


@dataclass(slots=True)
class _Body:
    """One response body being written under the fault knobs: where to cut it, where to
    stall and for how long, where to hold, the rate cap (bytes/s, 0 for none), when it
    began, and the bytes written so far."""

    request: web.Request
    resp: web.StreamResponse
    planted: _Planted
    rate: int
    began: float
    sent: int = 0


class DataFiles:
    """The handlers of ``/data/...`` and ``/go``, over the server's shared state (the log of
    requests, the fault dice, the token endpoint, the byte and connection counters)."""

    def __init__(self, state: SimState) -> None:
        self.state = state

    async def redirect(self, request: web.Request) -> web.Response:
        target = request.query.get("to")
        if not target:
            return error_response(400, "MissingParameter", "to= is required")
        self._log(request)
        raise web.HTTPFound(target)

    def _log(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else None
        ok = token is not None and (
            token in self.state.options.tokens or self.state.identity.check(token) == "ok"
        )
        self.state.requests.append(
            {
                "method": request.method,
                "path": request.path,
                "range": request.headers.get("Range"),
                "if_range": request.headers.get("If-Range"),
                "auth": bool(header),
                "token_ok": ok,
                "token": token,
                "at": time.monotonic(),
            }
        )
        return ok

    async def data(self, request: web.Request) -> web.StreamResponse:
        """Answer a data request, counted as in flight from its arrival (before the latency
        wait) to its last byte: ``peak_connections`` is how many connections a client used,
        and ``max_concurrent`` refuses what arrives beyond it."""
        state = self.state
        state.connections += 1
        state.peak_connections = max(state.peak_connections, state.connections)
        try:
            return await self._answer(request)
        finally:
            state.connections -= 1

    def _refusal(self, status: int) -> web.Response:
        """A 429/503 with ``Retry-After`` as the fault knobs say."""
        retry_after = self.state.options.faults.retry_after
        headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
        return web.Response(status=status, text="Service Unavailable", headers=headers)

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        authorised = self._log(request)
        if self.state.faults.over_concurrency(self.state.connections - 1):
            return self._refusal(429)
        public = "public" in request.path.split("/")
        if self.state.options.require_auth and not public and not authorised:
            challenge = 'Bearer realm="maap"'
            if request.headers.get("Authorization"):
                challenge += ', error="invalid_token"'
            return web.Response(
                status=401, text="Unauthorized", headers={"WWW-Authenticate": challenge}
            )
        resolved = self.state.catalog.resolve(request.path)
        if resolved is None:
            return error_response(404, "NotFound", f"no file at {request.path}")
        slot, f = resolved
        if self.state.faults.not_ready(slot):
            return error_response(404, "NotFound", "the product is not available yet")
        status = self.state.faults.error_status()
        if status is not None:
            return self._refusal(status)
        item_id, key = slot.split("/", 1)
        if self.state.options.latency > 0:
            await asyncio.sleep(self.state.options.latency)
        if self.state.catalog.knobs.tamper.get(slot) == "login":
            return web.Response(
                text="<html><body><form>Sign in to MAAP</form></body></html>",
                content_type="text/html",
            )
        planted = _Planted(
            slot,
            self.state.catalog.take_cut(item_id, key),
            self.state.catalog.take_stall(item_id, key),
            self.state.holds.take(slot),
        )
        self.state.sending += 1
        self.state.peak_sending = max(self.state.peak_sending, self.state.sending)
        try:
            if f.kind == "zipper":
                truncate = self.state.catalog.knobs.tamper.get(slot) == "truncate"
                return await self._zipper(
                    request, f, truncate or self.state.faults.truncate(), planted
                )
            return await self._static(request, f, planted)
        except ConnectionResetError:
            return web.Response(status=499)  # the client left mid-body; nothing more to send
        finally:
            self.state.sending -= 1
            if self.state.faults.change():
                self.state.catalog.bump(item_id, key)

    async def _pump(
        self,
        request: web.Request,
        resp: web.StreamResponse,
        pieces: Iterator[bytes],
        length: int,
        planted: _Planted,
    ) -> bool:
        """Write ``pieces`` under the fault knobs; ``False`` if the connection was dropped.

        ``length`` is the body size (estimated for the zipper), for random cut points;
        ``planted`` what the catalogue's knobs planted for this file (its cut, stall, hold).
        """
        if planted.cut is None:
            planted = planted._replace(cut=self.state.faults.cut_point(length))
        if planted.stall is None:
            point = self.state.faults.stall_point(length)
            seconds = self.state.options.faults.stall_seconds
            planted = planted._replace(stall=None if point is None else (point, seconds))
        rate = self.state.options.faults.rate_limit
        body = _Body(request, resp, planted, rate, asyncio.get_running_loop().time())
        for chunk in pieces:
            for i in range(0, len(chunk), _ZIP_CHUNK):
                if not await self._write_one(body, chunk[i : i + _ZIP_CHUNK]):
                    return False
            await asyncio.sleep(0)
        return True

    async def _send(self, body: _Body, part: bytes) -> None:
        """Write ``part`` once the shared link (``link_rate``) has carried every byte booked
        before it, and count it."""
        link = self.state.faults.link
        if link is not None and part:
            delay = link.book(len(part))
            if delay > 0:
                await asyncio.sleep(delay)
        # Counted as handed to the socket: a client may have read the last byte before
        # this handler resumes from the write, and a test reads the counters then.
        self.state.bytes_sent += len(part)
        files = self.state.bytes_by_file
        files[body.planted.slot] = files.get(body.planted.slot, 0) + len(part)
        await body.resp.write(part)

    async def _write_one(self, body: _Body, data: bytes) -> bool:
        """Write ``data`` (split for the rate limits: a twentieth of a second's worth of
        the connection's cap, 5 ms of the link's, whichever is less); ``False`` after a cut.

        The link's pieces are small so that the goodput it carries is smooth over a
        client's 100 ms epoch (±5 %, not ±25 % in pieces of 50 ms), and its writes are
        bounded (200 a second) however many bodies share it.

        The handler ends as soon as the last byte is out: a client that sends its next
        request on reading it must not find this one still counted in flight (a trailing
        pacing sleep made ``max_concurrent`` refuse a client that kept to k)."""
        rate, planted = body.rate, body.planted
        cut, stall, hold = planted.cut, planted.stall, planted.hold
        link = self.state.faults.link
        caps = [rate // 20] if rate else []
        if link is not None:
            caps.append(link.rate // 200)
        step = max(1, min(caps)) if caps else len(data) or 1
        for i in range(0, len(data), step):
            part = data[i : i + step]
            if rate:  # paced before each write, so none waits after the last byte
                ahead = body.sent / rate - (asyncio.get_running_loop().time() - body.began)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            if stall is not None and body.sent <= stall[0] < body.sent + len(part):
                part = await self._pause_at(body, part, stall[0], asyncio.sleep(stall[1]))
            if hold is not None and body.sent <= hold[0] < body.sent + len(part):
                held = self.state.holds.wait(planted.slot, hold[1])
                part = await self._pause_at(body, part, hold[0], held)
            if cut is not None and body.sent + len(part) > cut:
                await self._send(body, part[: max(0, cut - body.sent)])
                await _abort(body.request)
                return False
            await self._send(body, part)
            body.sent += len(part)
        return True

    async def _pause_at(
        self, body: _Body, part: bytes, at: int, pause: Coroutine[Any, Any, None]
    ) -> bytes:
        """Send ``part`` up to the body's byte ``at``, wait out ``pause`` there (a stall's
        sleep, a hold until the test releases the file), and return the rest of ``part``
        (the bytes before ``at`` are out on the socket)."""
        await self._send(body, part[: at - body.sent])
        await pause
        rest = part[at - body.sent :]
        body.sent = at
        return rest

    async def _zipper(
        self,
        request: web.Request,
        f: AssetFile,
        truncate: bool,
        planted: _Planted,
    ) -> web.StreamResponse:
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/zip"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        if request.method == "HEAD":
            return resp

        def pieces() -> Iterator[bytes]:
            sent = 0
            for chunk in product_zip_chunks(f.item_id, f.seed, f.size, corrupt=f.corrupt):
                if truncate and sent + len(chunk) >= f.size // 2:
                    yield chunk[: max(0, f.size // 2 - sent)]
                    return  # ends "cleanly": a zip with no central directory
                yield chunk
                sent += len(chunk)

        if await self._pump(request, resp, pieces(), f.size, planted):
            await resp.write_eof()
        return resp

    async def _static(
        self, request: web.Request, f: AssetFile, planted: _Planted
    ) -> web.StreamResponse:
        body = f.body
        size = len(body)
        etag, modified = f.etag, format_http_date(f.last_modified)
        headers = {"Accept-Ranges": "bytes", "Content-Type": f.media_type}
        # Without validators (the knob), ranges are still served, but an If-Range names
        # a validator this server never sent: it never matches (RFC 9110 §13.1.5: 200).
        validators = self.state.options.faults.validators
        if validators:
            headers = {"ETag": etag, "Last-Modified": modified, **headers}
        status, first, last = 200, 0, size - 1
        range_value = request.headers.get("Range")
        if range_value:
            if_range = request.headers.get("If-Range")
            fresh = if_range is None or (validators and if_range in (etag, modified))
            if fresh:
                try:
                    span = parse_range(range_value, size)
                except ValueError:
                    return web.Response(
                        status=416, headers={"Content-Range": f"bytes */{size}", **headers}
                    )
                if span is not None:
                    status, (first, last) = 206, span
                    headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        payload = body[first : last + 1]
        resp = web.StreamResponse(status=status, headers=headers)
        resp.content_length = len(payload)
        await resp.prepare(request)
        if request.method == "HEAD":
            return resp
        if await self._pump(request, resp, iter((payload,)), len(payload), planted):
            await resp.write_eof()
        return resp


async def _abort(request: web.Request) -> None:
    """Drop the connection mid-body, as a flaky link or load balancer does.

    ``close()`` (FIN after the bytes already written), not ``abort()`` (RST): a reset makes
    the client's kernel discard data it has not read yet, so the cut point would be random.
    """
    # Give the client time to read the prefix: aiohttp raises a pending payload error
    # before handing over bytes still buffered, so prefix + FIN in one burst would lose them.
    await asyncio.sleep(0.15)
    transport = request.transport
    if transport is not None:
        transport.close()
