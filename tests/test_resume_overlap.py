"""Resume when the archive sends no validators (issue 20): a ``.part`` of a file whose
length was announced is resumed with a range that starts a small window before its end,
and the window's bytes are compared with the ``.part``'s; any difference restarts the file
from zero, and ``file:size``/``file:checksum`` still decide at the end.

Against the simulator with its ``validators`` knob off (``sim serve --no-validators``:
ranges, but no ETag nor Last-Modified) and against the raw server of tests/hostile.py,
which says what aiohttp's own server will not (another version's bytes in the window, a
window cut short, a range ignored).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from stacpull.events import TransferRetried
from stacpull.models import Outcome, Status
from stacpull.sim import Faults, SimServer
from stacpull.transfer.stream import OVERLAP
from stacpull.verify import encode_multihash

from .conftest import FLEX, L1A, L1C, Recorder, cli, crash_before_rename, pull
from .hostile import Hostile as RawServer
from .hostile import Request as RawRequest
from .hostile import asset_at, payload, plant, serve

# -- the simulator's knob ----------------------------------------------------------------


def _largest_static(sim: SimServer) -> tuple[str, int, str, bytes]:
    """(collection, index, key, body) of the largest static file the sim serves: the test
    does not depend on which keys the sim's collections carry."""
    best: tuple[str, int, str, bytes] | None = None
    for collection in (L1A, L1C, FLEX):
        for key, asset in sim.catalog.item(collection, 0)["assets"].items():
            if "/zipper/" in asset["href"]:
                continue
            body = sim.catalog.static_body(collection, 0, key)
            if best is None or len(body) > len(best[3]):
                best = (collection, 0, key, body)
    assert best is not None and len(best[3]) > 3 * OVERLAP
    return best


async def _get(url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], int]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as resp:
        headers = {k.lower(): v for k, v in resp.headers.items()}
        return resp.status, headers, len(await resp.read())


@pytest.mark.anyio
async def test_without_validators_the_sim_serves_ranges_and_if_range_never_matches(
    sim: SimServer,
) -> None:
    collection, index, key, body = _largest_static(sim)
    url = sim.catalog.item(collection, index)["assets"][key]["href"]
    auth = {"Authorization": "Bearer sim-token"}
    status, headers, _ = await _get(url, auth)
    assert status == 200 and "etag" in headers and "last-modified" in headers
    etag = headers["etag"]
    sim.set_faults(Faults(validators=False))
    status, headers, size = await _get(url, auth)
    assert status == 200 and size == len(body) and headers["accept-ranges"] == "bytes"
    assert "etag" not in headers and "last-modified" not in headers
    status, headers, size = await _get(url, {**auth, "Range": "bytes=100-"})
    assert status == 206 and size == len(body) - 100
    assert headers["content-range"] == f"bytes 100-{len(body) - 1}/{len(body)}"
    # A validator this server never sent cannot match: the whole file, as RFC 9110 says.
    status, _, size = await _get(url, {**auth, "Range": "bytes=100-", "If-Range": etag})
    assert status == 200 and size == len(body)
    assert not Faults().describe() and Faults(validators=False).active


def test_sim_serve_offers_no_validators() -> None:
    code, out, _ = cli("sim", "serve", "--help")
    assert code == 0 and "--no-validators" in out


# -- resuming against the simulator ------------------------------------------------------


def _cut_run(sim: SimServer, tmp_path: Path) -> tuple[str, str, bytes, Path, dict[str, Any]]:
    """A first run of the largest static file, cut halfway, with no retry: the ``.part``
    it leaves; (item id, key, body, .part, the pull's options)."""
    sim.set_faults(Faults(validators=False))
    collection, index, key, body = _largest_static(sim)
    iid = str(sim.catalog.item(collection, index)["id"])
    sim.catalog.cut(iid, key, len(body) // 2)
    options: dict[str, Any] = {"collections": [collection], "ids": [iid], "assets": [key]}
    failed = pull(sim, tmp_path, retries=0, **options)
    assert failed.failed == 1
    (part,) = tmp_path.rglob("*.part")
    assert part.read_bytes() == body[: len(body) // 2]
    return iid, key, body, part, options


def test_a_cut_file_without_validators_resumes_by_comparing_an_overlap(
    sim: SimServer, tmp_path: Path, recorder: Recorder
) -> None:
    _, _, body, part, options = _cut_run(sim, tmp_path)
    have = len(body) // 2
    sim.requests.clear()
    sent = sim.bytes_sent
    result = pull(sim, tmp_path, recorder, **options)
    assert result.ok and result.downloaded == 1
    (outcome,) = recorder.outcomes().values()
    assert outcome.resumed_from == have and outcome.attempts == 1
    assert any("without a validator" in note for note in outcome.notes)
    (request,) = sim.requests
    assert request["range"] == f"bytes={have - OVERLAP}-" and request["if_range"] is None
    # The server sent the window again and the rest: less than the file.
    assert sim.bytes_sent - sent == len(body) - have + OVERLAP < len(body)
    assert outcome.bytes_downloaded == len(body) - have + OVERLAP
    assert part.with_name(part.name.removesuffix(".part")).read_bytes() == body
    assert not part.exists()


def test_a_file_changed_without_validators_restarts_from_zero_and_says_why(
    sim: SimServer, tmp_path: Path, recorder: Recorder
) -> None:
    iid, key, old, part, options = _cut_run(sim, tmp_path)
    sim.catalog.bump(iid, key)  # new bytes of the same length, and nothing says so
    new = sim.catalog.static_body(*_where(sim, iid, key))
    assert len(new) == len(old) and new != old
    sim.requests.clear()
    result = pull(sim, tmp_path, recorder, **options)
    assert result.ok and result.downloaded == 1
    (outcome,) = recorder.outcomes().values()
    assert outcome.resumed_from == 0 and outcome.attempts == 2
    assert any("differed" in note for note in outcome.notes)
    (retried,) = recorder.of_type(TransferRetried)
    assert "differs from the partial file" in retried.error and retried.discarded == len(old) // 2
    assert [r["range"] for r in sim.requests] == [f"bytes={len(old) // 2 - OVERLAP}-", None]
    assert part.with_name(part.name.removesuffix(".part")).read_bytes() == new


def test_a_whole_part_without_validators_costs_one_window(
    sim: SimServer, tmp_path: Path, recorder: Recorder
) -> None:
    """A run stopped between the last write and the rename, on a server without
    validators: the resume's window is all that crosses the network, then the file is
    verified and renamed."""
    sim.set_faults(Faults(validators=False))
    collection, index, key, body = _largest_static(sim)
    iid = str(sim.catalog.item(collection, index)["id"])
    options: dict[str, Any] = {"collections": [collection], "ids": [iid], "assets": [key]}
    assert pull(sim, tmp_path, **options).ok
    (final,) = (p for p in tmp_path.rglob("*") if p.is_file() and ".stacpull" not in p.parts)
    crash_before_rename(tmp_path, final)
    sim.requests.clear()
    sent = sim.bytes_sent
    result = pull(sim, tmp_path, recorder, **options)
    assert result.ok and result.downloaded == 1
    (outcome,) = recorder.outcomes().values()
    assert outcome.resumed_from == len(body) and outcome.bytes_downloaded == OVERLAP
    assert [r["range"] for r in sim.requests] == [f"bytes={len(body) - OVERLAP}-"]
    assert sim.bytes_sent - sent == OVERLAP
    assert final.read_bytes() == body


def _where(sim: SimServer, iid: str, key: str) -> tuple[str, int, str]:
    for collection in (L1A, L1C, FLEX):
        index = sim.catalog.index_of(collection, iid)
        if index is not None:
            return collection, index, key
    raise AssertionError(iid)


# -- resuming against a server that lies --------------------------------------------------


class Request(RawRequest):
    async def send(
        self, status: int, body: bytes, headers: dict[str, str], length: int | None = None
    ) -> None:
        """Answer with ``body``; ``length`` announces more than it (a cut)."""
        lines = [f"HTTP/1.1 {status} Whatever", *(f"{k}: {v}" for k, v in headers.items())]
        lines += [f"Content-Length: {len(body) if length is None else length}"]
        lines.append("Connection: close")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await self.writer.drain()
        if length is not None:  # let the client read the prefix before the connection drops
            await asyncio.sleep(0.2)

    async def ranged(self, version: bytes, headers: dict[str, str] | None = None) -> None:
        """A 206 of ``version`` from the asked start, without validators."""
        start = self.range_start or 0
        cr = f"bytes {start}-{len(version) - 1}/{len(version)}"
        await self.send(206, version[start:], {**(headers or {}), "Content-Range": cr})


Hostile = RawServer[Request]


@pytest.fixture
def hostile() -> Iterator[Hostile]:
    yield from serve(Request)


FILE = payload(400_000, 3)
CUT = 250_000  # where the first answer stops
RANGES = "Accept-Ranges"


def _pull_hostile(
    sim: SimServer, server: Hostile, tmp_path: Path, **asset: Any
) -> tuple[Outcome, list[str | None]]:
    """Download ``/f.tif`` from ``server`` (and a well-behaved thumbnail of the sim):
    the file's outcome and the Range of each request for it."""
    options = plant(sim, server, "NO_VALIDATORS", {"data": asset_at("/f.tif", "f.tif", **asset)})
    recorder = Recorder()
    pull(sim, tmp_path, recorder, **options)
    outcomes = {o.job.item_id: o for o in recorder.outcomes().values()}
    ranges = [h.get("range") for p, h in server.requests if p == "/f.tif"]
    return outcomes["NO_VALIDATORS"], ranges


OVERLAP_AT = f"bytes={CUT - OVERLAP}-"


def cut_then(
    version: bytes, first: dict[str, str] | None = None
) -> Callable[[Request], Awaitable[None]]:
    """A route whose first answer is ``FILE`` cut at ``CUT`` (ranges offered, ``first``'s
    headers too), a resume a 206 of ``version``, and a request from zero the whole of it."""

    async def route(req: Request) -> None:
        if req.number == 0:
            await req.send(200, FILE[:CUT], {RANGES: "bytes", **(first or {})}, length=len(FILE))
        elif req.range_start is not None:
            await req.ranged(version)
        else:
            await req.send(200, version, {})

    return route


def test_the_same_bytes_in_the_overlap_resume_against_a_raw_server(
    sim: SimServer, hostile: Hostile, tmp_path: Path
) -> None:
    async def plain(req: Request) -> None:
        if req.number == 0:
            await req.send(200, FILE[:CUT], {RANGES: "bytes"}, length=len(FILE))
        else:
            await req.ranged(FILE)

    hostile.routes["/f.tif"] = plain
    outcome, ranges = _pull_hostile(sim, hostile, tmp_path)
    assert outcome.status is Status.DOWNLOADED, outcome.error
    assert ranges == [None, OVERLAP_AT] and outcome.resumed_from == CUT
    assert (tmp_path / outcome.job.dest).read_bytes() == FILE


def test_one_byte_changed_inside_the_overlap_restarts_from_zero(
    sim: SimServer, hostile: Hostile, tmp_path: Path
) -> None:
    changed = bytearray(FILE)
    changed[CUT - 10] ^= 0xFF  # inside the window, the rest the same
    hostile.routes["/f.tif"] = cut_then(bytes(changed))
    outcome, ranges = _pull_hostile(sim, hostile, tmp_path)
    assert outcome.status is Status.DOWNLOADED, outcome.error
    assert ranges == [None, OVERLAP_AT, None] and outcome.resumed_from == 0
    assert (tmp_path / outcome.job.dest).read_bytes() == bytes(changed)  # never spliced


def test_a_change_after_the_overlap_is_caught_by_the_checksum(
    sim: SimServer, hostile: Hostile, tmp_path: Path
) -> None:
    """The window matches but the bytes after it are of another version: the overlap
    cannot see that, ``file:checksum`` does, and the file is fetched again whole."""
    import hashlib

    changed = FILE[:CUT] + bytes(b ^ 1 for b in FILE[CUT:])
    checksum = encode_multihash("sha2-256", hashlib.sha256(FILE).digest())

    async def later(req: Request) -> None:
        if req.number == 0:
            await req.send(200, FILE[:CUT], {}, length=len(FILE))
        elif req.range_start is not None:
            await req.ranged(changed)
        else:
            await req.send(200, FILE, {})

    hostile.routes["/f.tif"] = later
    outcome, ranges = _pull_hostile(
        sim, hostile, tmp_path, **{"file:checksum": checksum, "file:size": len(FILE)}
    )
    assert outcome.status is Status.DOWNLOADED, outcome.error
    assert ranges == [None, OVERLAP_AT, None] and outcome.resumed_from == 0
    assert any("failed its check" in note for note in outcome.notes)
    assert (tmp_path / outcome.job.dest).read_bytes() == FILE


def test_a_server_that_ignores_the_range_restarts_as_before(
    sim: SimServer, hostile: Hostile, tmp_path: Path
) -> None:
    async def ignoring(req: Request) -> None:
        if req.number == 0:
            await req.send(200, FILE[:CUT], {}, length=len(FILE))
        else:
            await req.send(200, FILE, {})

    hostile.routes["/f.tif"] = ignoring
    outcome, ranges = _pull_hostile(sim, hostile, tmp_path)
    assert outcome.status is Status.DOWNLOADED, outcome.error
    assert ranges == [None, OVERLAP_AT] and outcome.resumed_from == 0
    assert any("answered 200 to a resume" in note for note in outcome.notes)
    assert (tmp_path / outcome.job.dest).read_bytes() == FILE


def test_a_window_cut_short_or_misplaced_is_never_written(
    sim: SimServer, hostile: Hostile, tmp_path: Path
) -> None:
    """The resume's 206 is cut inside the window (tried again with the window), then
    answered from the .part's end instead of the window's start (a range that does not
    start where asked: from zero)."""

    async def awkward(req: Request) -> None:
        start = req.range_start
        if req.number == 0:
            await req.send(200, FILE[:CUT], {}, length=len(FILE))
        elif req.number == 1:
            cr = f"bytes {start}-{len(FILE) - 1}/{len(FILE)}"
            assert start is not None
            await req.send(
                206, FILE[start : start + 1000], {"Content-Range": cr}, length=len(FILE) - start
            )
        elif req.number == 2:
            cr = f"bytes {CUT}-{len(FILE) - 1}/{len(FILE)}"
            await req.send(206, FILE[CUT:], {"Content-Range": cr})
        else:
            await req.send(200, FILE, {})

    hostile.routes["/f.tif"] = awkward
    outcome, ranges = _pull_hostile(sim, hostile, tmp_path)
    assert outcome.status is Status.DOWNLOADED, outcome.error
    assert ranges == [None, OVERLAP_AT, OVERLAP_AT, None]
    assert (tmp_path / outcome.job.dest).read_bytes() == FILE


def test_a_part_no_longer_than_the_window_is_fetched_again_from_zero(
    sim: SimServer, hostile: Hostile, tmp_path: Path
) -> None:
    async def short(req: Request) -> None:
        if req.number == 0:
            await req.send(200, FILE[: OVERLAP - 1], {}, length=len(FILE))
        else:
            await req.ranged(FILE) if req.range_start is not None else await req.send(200, FILE, {})

    hostile.routes["/f.tif"] = short
    outcome, ranges = _pull_hostile(sim, hostile, tmp_path)
    assert outcome.status is Status.DOWNLOADED, outcome.error
    assert ranges == [None, None]
    assert (tmp_path / outcome.job.dest).read_bytes() == FILE
