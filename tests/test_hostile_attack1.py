"""Variants of issue 16 the first fixes missed, tried as a hostile server, hostile
metadata and an odd disk would; and ``verify`` and the dry run, which must never follow a
link inside DEST either.

The lies are told by a small raw-asyncio HTTP server defined here (aiohttp's own server
will not ignore If-Range nor announce a range past the file's end); the sim catalogue
serves the STAC items that point at it, beside its own well-behaved files.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import struct
import threading
import zipfile
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from stacpull.errors import CorruptZipError
from stacpull.models import Outcome, Status
from stacpull.sim import SimServer
from stacpull.verify import check_zip, encode_multihash

from .conftest import L1A, Recorder, pull

# -- the hostile server ----------------------------------------------------------------


@dataclass
class Request:
    """One request: its path, headers (lower-case names), how many requests for that
    path came before it, and the stream to answer on."""

    path: str
    headers: dict[str, str]
    number: int
    writer: asyncio.StreamWriter

    @property
    def range_start(self) -> int | None:
        value = self.headers.get("range")
        return int(value.split("=")[1].split("-")[0]) if value else None

    async def head(self, status: int, headers: dict[str, str]) -> None:
        """The status line and headers only; the body is written by the caller."""
        lines = [f"HTTP/1.1 {status} Whatever", *(f"{k}: {v}" for k, v in headers.items())]
        lines.append("Connection: close")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await self.writer.drain()

    async def send(self, status: int, body: bytes = b"", **headers: str) -> None:
        """A whole answer announcing its length (unless ``headers`` says another)."""
        hdrs = {
            "Content-Length": str(len(body)),
            **{k.replace("_", "-"): v for k, v in headers.items()},
        }
        await self.head(status, hdrs)
        self.writer.write(body)
        await self.writer.drain()

    async def cut(self, body: bytes, length: int, **headers: str) -> None:
        """A 200 announcing ``length`` bytes whose body stops after ``body``."""
        await self.send(200, body, Content_Length=str(length), **headers)
        await asyncio.sleep(0.2)  # let the client read what came before the drop


Handler = Callable[[Request], Awaitable[None]]


@dataclass
class Hostile:
    """A raw HTTP/1.1 server on 127.0.0.1 in its own thread; one answer per connection."""

    routes: dict[str, Handler]
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    port: int = 0

    def __enter__(self) -> Hostile:
        started = threading.Event()
        self._loop = asyncio.new_event_loop()

        async def main() -> None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]
            started.set()

        def runner() -> None:
            self._loop.run_until_complete(main())
            self._loop.run_forever()

        self._thread = threading.Thread(target=runner, daemon=True)
        self._thread.start()
        started.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            self._server.close()
            handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in handlers:
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def count(self, path: str) -> int:
        return sum(1 for p, _ in self.requests if p == path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            first, *lines = head.decode("latin-1").split("\r\n")
            path = first.split(" ")[1]
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(":") for line in lines if line)
            }
            number = self.count(path)
            self.requests.append((path, headers))
            await self.routes[path](Request(path, headers, number, writer))
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError, asyncio.CancelledError):
                await writer.wait_closed()


@pytest.fixture
def hostile() -> Iterator[Hostile]:
    with Hostile({}) as server:
        yield server


HOSTILE_ID = "ATTACK1_ITEM"


def _pull_hostile(
    sim: SimServer, server: Hostile, dest: Path, assets: dict[str, dict[str, Any]], **kw: Any
) -> dict[str, Outcome]:
    """Download the hostile item (``assets``: key -> asset, ``href`` a path on ``server``)
    and a well-behaved thumbnail of the sim beside it; outcomes by asset key."""
    donor = sim.catalog.item(L1A, 0)
    normal = str(sim.catalog.item(L1A, 1)["id"])
    item = {**donor, "id": HOSTILE_ID, "assets": {}}
    for key, asset in assets.items():
        item["assets"][key] = {**asset, "href": server.url(asset["href"])}
    sim.catalog.add_item(L1A, item)
    recorder = Recorder()
    options: dict[str, Any] = {"ids": [HOSTILE_ID, normal], "assets": [*assets, "thumbnail"]}
    pull(sim, dest, recorder, **{**options, **kw})
    outcomes = {o.job.asset_key: o for o in recorder.outcomes().values()}
    thumb = outcomes.pop("thumbnail")
    assert thumb.status is Status.DOWNLOADED  # the rest of the run went on
    return outcomes


def _asset(path: str, name: str, media_type: str = "image/tiff", **extra: Any) -> dict[str, Any]:
    return {"href": path, "type": media_type, "roles": ["data"], "file:local_path": name, **extra}


def _payload(size: int, seed: int) -> bytes:
    return bytes((i * 7 + seed) % 251 for i in range(size))


def _sha256(data: bytes) -> str:
    return encode_multihash("sha2-256", hashlib.sha256(data).digest())


BODY = _payload(300_000, 1)
CUT = 120_000


# -- a resume's range that runs past the length the .part was begun for -------------------


def test_a_resume_range_past_the_recorded_length_is_not_appended(
    sim: SimServer, hostile: Hostile, tmp_path: Path
) -> None:
    """The first answer announces 300 000 bytes and is cut; the resume's 206 keeps the
    ETag but says ``bytes 120000-399999/*`` (no total) and sends 280 000 bytes: a file
    longer than the one whose start is in the .part. Nothing may make it 400 000 long."""
    longer = BODY + _payload(100_000, 9)

    async def growing(req: Request) -> None:
        if req.number == 0:
            await req.cut(BODY[:CUT], len(BODY), ETag='"same"')
        elif (start := req.range_start) is not None:
            cr = f"bytes {start}-{len(longer) - 1}/*"
            await req.send(206, longer[start:], ETag='"same"', Content_Range=cr)
        else:
            await req.send(200, BODY, ETag='"same"')

    hostile.routes["/grow.tif"] = growing
    outcomes = _pull_hostile(sim, hostile, tmp_path, {"data": _asset("/grow.tif", "g.tif")})
    outcome = outcomes["data"]
    final = tmp_path / outcome.job.dest
    assert outcome.status is Status.DOWNLOADED, outcome.error
    assert final.read_bytes() == BODY


# -- a .part that vanishes between the resume's catch-up hash and its first write ---------


def test_a_part_that_vanishes_before_the_resume_writes_is_not_filled_with_zeros(
    sim: SimServer, hostile: Hostile, tmp_path: Path
) -> None:
    """Another process removes the .part after the resume hashed its bytes but before the
    first new byte is written. Creating it afresh would leave zeros where the old bytes
    were, under a digest computed from those old bytes: the checksum would pass."""
    seen: dict[str, Path] = {}

    async def vanishing(req: Request) -> None:
        if req.number == 0:
            await req.cut(BODY[:CUT], len(BODY), ETag='"v"')
        elif (start := req.range_start) is not None:
            cr = f"bytes {start}-{len(BODY) - 1}/{len(BODY)}"
            await req.head(206, {"ETag": '"v"', "Content-Range": cr,
                                 "Content-Length": str(len(BODY) - start)})  # fmt: skip
            await asyncio.sleep(0.3)  # the client hashes the .part's bytes meanwhile
            for part in tmp_path.rglob("v.tif.part"):
                part.unlink()
                seen["part"] = part
            req.writer.write(BODY[start:])
            await req.writer.drain()
        else:
            await req.send(200, BODY, ETag='"v"')

    hostile.routes["/v.tif"] = vanishing
    asset = _asset("/v.tif", "v.tif", **{"file:checksum": _sha256(BODY)})
    outcomes = _pull_hostile(sim, hostile, tmp_path, {"data": asset})
    outcome = outcomes["data"]
    final = tmp_path / outcome.job.dest
    assert "part" in seen  # the .part really vanished mid-resume
    if outcome.status is Status.DOWNLOADED:
        assert final.read_bytes() == BODY  # never zeros in front under a passing checksum
    else:
        assert not final.exists()


# -- a hostile zip must fail its check, never raise something else ------------------------


def _zip64_central_with_short_extra() -> bytes:
    """A one-member zip whose central entry marks its offset 0xFFFFFFFF and carries a
    ZIP64 extra field that claims 24 bytes but holds 8."""
    sink = io.BytesIO()
    with zipfile.ZipFile(sink, "w") as zf:
        zf.writestr("a.txt", b"hello" * 10)
    data = bytearray(sink.getvalue())
    cd = data.index(b"PK\x01\x02")
    name_length = struct.unpack_from("<H", data, cd + 28)[0]
    end = data.index(b"PK\x05\x06")
    extra = struct.pack("<2HQ", 0x0001, 24, 0)  # says 24 bytes, holds 8
    struct.pack_into("<H", data, cd + 30, len(extra))
    struct.pack_into("<L", data, cd + 42, 0xFFFFFFFF)  # the offset is in the extra field
    at = cd + 46 + name_length
    data[at:at] = extra
    end += len(extra)
    cd_size = struct.unpack_from("<L", data, end + 12)[0]
    struct.pack_into("<L", data, end + 12, cd_size + len(extra))
    return bytes(data)


def test_a_zip64_extra_field_shorter_than_it_says_fails_the_check(tmp_path: Path) -> None:
    """A server controls every byte of a zipper product; a malformed ZIP64 extra field in
    its central directory is a corrupt zip (the file is fetched again), not a crash."""
    path = tmp_path / "bad.zip"
    path.write_bytes(_zip64_central_with_short_extra())
    with pytest.raises(CorruptZipError):
        check_zip(path)
