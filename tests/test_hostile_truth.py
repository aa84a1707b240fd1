"""Nothing false is accepted, whatever a server says (issue 16): a resume answered with
another version's bytes, a 416 that claims a half file is whole, a zip cut right after a
member that is itself a zip, a body longer than announced, a server that spoils every
retry, a file announcing more bytes than the disk holds.

The lies are told by the raw-asyncio HTTP server of tests/hostile.py (aiohttp's own server
will not send a body longer than its length, nor ignore If-Range); the sim catalogue
serves the STAC items that point at it, next to its own well-behaved files.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stacpull.errors import CorruptZipError
from stacpull.models import Outcome, Status
from stacpull.sim import SimServer
from stacpull.verify import ZipFollower, check_zip

from .conftest import Recorder, pull
from .hostile import Hostile as RawServer
from .hostile import Request as RawRequest
from .hostile import asset_at, payload, plant, serve

# -- the hostile server ----------------------------------------------------------------


class Request(RawRequest):
    """A request answered in the ways these tests lie."""

    async def send(
        self,
        status: int,
        body: bytes = b"",
        *,
        headers: dict[str, str] | None = None,
        length: int | bool | None = True,
    ) -> None:
        """Answer: ``length`` True announces the body's length, an int announces that
        (a lie), False announces none (the body ends when the connection closes)."""
        lines = [f"HTTP/1.1 {status} Whatever"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if length is True:
            lines.append(f"Content-Length: {len(body)}")
        elif length is not False and length is not None:
            lines.append(f"Content-Length: {length}")
        lines.append("Connection: close")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await self.writer.drain()
        if length is not True and length is not False and length is not None and body:
            # A cut: let the client read what came before the connection drops (aiohttp
            # drops the bytes it holds when the cut is already known as it reads them).
            await asyncio.sleep(0.2)

    async def stream(self, chunks: Iterator[bytes]) -> int:
        """Send ``chunks`` after headers already sent, until the client hangs up; the
        bytes sent."""
        sent = 0
        try:
            for chunk in chunks:
                self.writer.write(chunk)
                await self.writer.drain()
                sent += len(chunk)
        except (ConnectionError, OSError):
            pass
        return sent


Hostile = RawServer[Request]


@pytest.fixture
def hostile() -> Iterator[Hostile]:
    yield from serve(Request)


# -- items that point at it --------------------------------------------------------------

HOSTILE_ID = "HOSTILE_ITEM"


def _pull_hostile(
    sim: SimServer,
    server: Hostile,
    tmp_path: Path,
    assets: dict[str, dict[str, Any]],
    **kw: Any,
) -> tuple[dict[str, Outcome], Any]:
    """Download the hostile item (``assets``: key -> asset, ``href`` a path on ``server``)
    and a well-behaved thumbnail of the sim beside it; (outcomes by asset key, result)."""
    options = plant(sim, server, HOSTILE_ID, assets)
    recorder = Recorder()
    result = pull(sim, tmp_path, recorder, **{**options, **kw})
    # By item first: the well-behaved item has assets of the same keys (its own product),
    # which finish in whatever order the run's timing gives.
    done = recorder.outcomes().values()
    outcomes = {o.job.asset_key: o for o in done if o.job.item_id == HOSTILE_ID}
    beside = {o.job.asset_key: o for o in done if o.job.item_id == options["ids"][1]}
    assert beside["thumbnail"].status is Status.DOWNLOADED  # the rest of the run went on
    return outcomes, result


def _final(tmp_path: Path, outcome: Outcome) -> Path:
    return tmp_path / outcome.job.dest


# -- 1. a resume answered with another version's range -----------------------------------

OLD, NEW = payload(300_000, 1), payload(300_000, 2)
MONDAY, TUESDAY = "Mon, 01 Dec 2025 10:00:00 GMT", "Tue, 02 Dec 2025 10:00:00 GMT"


@pytest.mark.parametrize(
    ("first", "changed"),
    [
        ({"ETag": '"v1"'}, {"ETag": '"v2"'}),
        ({"Last-Modified": MONDAY}, {"Last-Modified": TUESDAY}),
        ({"ETag": '"v1"', "Last-Modified": MONDAY}, {"ETag": '"v1"', "Last-Modified": TUESDAY}),
        ({"ETag": '"v1"'}, {}),  # no validator at all on the 206: nothing proves it
    ],
    ids=["new-etag", "new-last-modified", "same-etag-new-date", "no-validator"],
)  # fmt: skip
def test_a_resume_answered_with_another_versions_range_restarts_from_zero(
    sim: SimServer,
    hostile: Hostile,
    tmp_path: Path,
    first: dict[str, str],
    changed: dict[str, str],
) -> None:
    """The server cuts the first answer, then the file changes and the server ignores
    If-Range: the resume's 206 carries the new version's bytes. Spliced onto the old
    ones they would make a file that never existed."""

    async def changing(req: Request) -> None:
        if req.number == 0:  # version 1, cut
            await req.send(200, OLD[:120_000], headers=first, length=len(OLD))
        elif req.range_start is not None:  # ignores If-Range: version 2's range
            start = req.range_start
            cr = {"Content-Range": f"bytes {start}-{len(NEW) - 1}/{len(NEW)}"}
            await req.send(206, NEW[start:], headers={**changed, **cr})
        else:
            await req.send(200, NEW, headers=changed)

    hostile.routes["/v.tif"] = changing
    outcomes, _ = _pull_hostile(sim, hostile, tmp_path, {"data": asset_at("/v.tif", "v.tif")})
    outcome = outcomes["data"]
    assert outcome.status is Status.DOWNLOADED, outcome.error
    assert _final(tmp_path, outcome).read_bytes() == NEW  # never OLD[:120_000] + NEW[120_000:]
    ranges = [h.get("range") for p, h in hostile.requests if p == "/v.tif"]
    assert ranges == [None, "bytes=120000-", None]


def test_a_resume_whose_total_moved_restarts_from_zero(
    sim: SimServer, hostile: Hostile, tmp_path: Path
) -> None:
    """Same ETag, but the 206 says the file is longer than the response that began the
    .part announced: the file changed (a server with one ETag for every version)."""
    longer = NEW + b"appended"

    async def growing(req: Request) -> None:
        if req.number == 0:
            await req.send(200, OLD[:120_000], headers={"ETag": '"same"'}, length=len(OLD))
        elif (start := req.range_start) is not None:
            cr = {
                "ETag": '"same"',
                "Content-Range": f"bytes {start}-{len(longer) - 1}/{len(longer)}",
            }
            await req.send(206, longer[start:], headers=cr)
        else:
            await req.send(200, longer, headers={"ETag": '"same"'})

    hostile.routes["/grow.tif"] = growing
    outcomes, _ = _pull_hostile(sim, hostile, tmp_path, {"data": asset_at("/grow.tif", "g.tif")})
    outcome = outcomes["data"]
    assert outcome.status is Status.DOWNLOADED, outcome.error
    assert _final(tmp_path, outcome).read_bytes() == longer
    assert hostile.count("/grow.tif") == 3


SPLIT = {"segments": 4, "segment_size": 200_000, "segment_below": 10**12}
BIG_OLD, BIG_NEW = payload(1_600_000, 3), payload(1_600_000, 4)


def test_a_range_of_another_version_fails_a_segmented_download(
    sim: SimServer, hostile: Hostile, tmp_path: Path
) -> None:
    """The file changes while split into ranges, and the server ignores If-Range: the
    ranges come with the new ETag, and must not fill the old version's file."""
    version = {"now": 1}

    async def changing(req: Request) -> None:
        if req.range_start is not None:
            version["now"] = 2  # the file changed as the ranges began
        body = BIG_OLD if version["now"] == 1 else BIG_NEW
        tag = {"ETag": f'"v{version["now"]}"', "Accept-Ranges": "bytes"}
        if req.range_start is None:
            await req.send(200, b"", headers=tag, length=len(body))
            try:  # a slow stream, which is split
                for at in range(0, len(body), 16_384):
                    req.writer.write(body[at : at + 16_384])
                    await req.writer.drain()
                    await asyncio.sleep(0.01)
            except (ConnectionError, OSError):
                pass
            return
        first, _, last = req.headers["range"][6:].partition("-")
        a, b = int(first), int(last) if last else len(body) - 1
        cr = {"Content-Range": f"bytes {a}-{b}/{len(body)}"}
        await req.send(206, body[a : b + 1], headers={**tag, **cr})

    hostile.routes["/big.tif"] = changing
    outcomes, _ = _pull_hostile(
        sim, hostile, tmp_path, {"data": asset_at("/big.tif", "big.tif")}, **SPLIT
    )
    outcome = outcomes["data"]
    assert outcome.status is Status.DOWNLOADED, outcome.error
    assert any(h.get("range") for p, h in hostile.requests if p == "/big.tif")  # it was split
    assert _final(tmp_path, outcome).read_bytes() == BIG_NEW


def test_the_one_validator_rule() -> None:
    from stacpull.headers import Validators

    strong = Validators('"a"', "Mon, 01 Dec 2025 10:00:00 GMT")
    assert strong.if_range == '"a"' and strong.same(Validators('"a"', None))
    assert not strong.same(Validators('"b"', "Mon, 01 Dec 2025 10:00:00 GMT"))
    assert not strong.same(Validators('"a"', "Tue, 02 Dec 2025 10:00:00 GMT"))
    assert not strong.same(Validators(None, "Mon, 01 Dec 2025 10:00:00 GMT"))
    weak = Validators('W/"a"', "Mon, 01 Dec 2025 10:00:00 GMT")
    assert weak.if_range == "Mon, 01 Dec 2025 10:00:00 GMT"
    assert weak.same(weak) and not weak.same(Validators('W/"b"', weak.last_modified))
    assert Validators('W/"a"').if_range is None and not Validators().same(Validators())
    assert Validators.from_if_range('"a"') == Validators('"a"')
    assert Validators.from_if_range(weak.last_modified or "") == Validators(
        None, weak.last_modified
    )


# -- 2. a 416 is proof only when everything agrees ---------------------------------------

WHOLE = payload(200_000, 5)


@pytest.mark.parametrize("file_size", [None, len(WHOLE)])
def test_a_416_that_claims_a_half_file_is_whole_restarts_it(
    sim: SimServer, hostile: Hostile, tmp_path: Path, file_size: int | None
) -> None:
    """Cut at 100 000 bytes of 200 000, the resume is answered ``416 bytes */100000``:
    the .part's size, but not what the first response (or file:size) announced."""

    async def lying(req: Request) -> None:
        if req.number == 0:
            await req.send(200, WHOLE[:100_000], headers={"ETag": '"x"'}, length=len(WHOLE))
        elif req.range_start is not None:
            await req.send(416, headers={"Content-Range": f"bytes */{req.range_start}"})
        else:
            await req.send(200, WHOLE, headers={"ETag": '"x"'})

    hostile.routes["/h.tif"] = lying
    extra = {} if file_size is None else {"file:size": file_size}
    outcomes, _ = _pull_hostile(
        sim, hostile, tmp_path, {"data": asset_at("/h.tif", "h.tif", **extra)}
    )
    outcome = outcomes["data"]
    assert outcome.status is Status.DOWNLOADED, outcome.error
    assert _final(tmp_path, outcome).read_bytes() == WHOLE
    assert hostile.count("/h.tif") == 3


def test_a_416_for_a_complete_part_still_needs_no_download(
    sim: SimServer, hostile: Hostile, tmp_path: Path
) -> None:
    """The honest 416 (the last run stopped between the final write and the rename):
    the .part is whole, file:size says so, and it is verified as it is."""
    served = {"full": 0}

    async def honest(req: Request) -> None:
        if req.range_start is not None:
            await req.send(416, headers={"Content-Range": f"bytes */{len(WHOLE)}"})
        else:
            served["full"] += 1
            await req.send(200, WHOLE, headers={"ETag": '"x"'})

    hostile.routes["/ok.tif"] = honest
    asset = asset_at("/ok.tif", "ok.tif", **{"file:size": len(WHOLE)})
    outcomes, _ = _pull_hostile(sim, hostile, tmp_path, {"data": asset})
    final = _final(tmp_path, outcomes["data"])
    # as if the rename had not happened: the whole file back at its .part name
    final.rename(final.with_name(final.name + ".part"))
    recorder = Recorder()
    pull(sim, tmp_path, recorder, ids=[HOSTILE_ID], assets=["data"])
    (again,) = recorder.outcomes().values()
    assert again.status is Status.DOWNLOADED and again.bytes_downloaded == 0, again.error
    assert final.read_bytes() == WHOLE and served["full"] == 1


# -- 3. a zip's own, complete central directory -----------------------------------------


def _zip(members: list[tuple[str, bytes, int]], comment: bytes = b"", zip64: bool = False) -> bytes:
    """A zip of ``members`` (name, data, method); ``zip64``: ZIP64 extra fields in every
    header and the ZIP64 end records."""
    sink = io.BytesIO()
    limit = 0 if zip64 else zipfile.ZIP64_LIMIT
    with mock.patch.object(zipfile, "ZIP64_LIMIT", limit), zipfile.ZipFile(sink, "w") as zf:
        for name, data, method in members:
            info = zipfile.ZipInfo(name)
            info.compress_type = method
            with zf.open(info, "w", force_zip64=zip64) as f:
                f.write(data)
        zf.comment = comment
    return sink.getvalue()


KMZ = _zip([("doc.kml", b"<kml>" + b"x" * 3000 + b"</kml>", zipfile.ZIP_DEFLATED)])
PRODUCT = _zip(
    [
        ("p/map.kmz", KMZ, zipfile.ZIP_STORED),
        ("p/measurement.tif", payload(150_000, 6), zipfile.ZIP_STORED),
        ("p/annotation.xml", b"<a/>" * 500, zipfile.ZIP_DEFLATED),
    ]
)
CUT_AFTER_KMZ = PRODUCT.index(KMZ) + len(KMZ)


def _follow(data: bytes, path: Path) -> int:
    follower = ZipFollower()
    follower.update(data)
    return follower.check(path)


def test_a_product_cut_right_after_a_member_that_is_a_zip_fails_the_zip_check(
    tmp_path: Path,
) -> None:
    path = tmp_path / "p.zip"
    path.write_bytes(PRODUCT[:CUT_AFTER_KMZ])
    for check in (check_zip, lambda p: _follow(PRODUCT[:CUT_AFTER_KMZ], p)):
        with pytest.raises(CorruptZipError, match="not a complete zip"):
            check(path)
    path.write_bytes(PRODUCT + b"trailing bytes")  # nothing after the end record
    with pytest.raises(CorruptZipError):
        check_zip(path)
    path.write_bytes(PRODUCT)
    assert check_zip(path) == 3 and _follow(PRODUCT, path) == 3


def test_a_zipper_stream_cut_after_its_kmz_member_is_fetched_again(
    sim: SimServer, hostile: Hostile, tmp_path: Path
) -> None:
    async def zipper(req: Request) -> None:  # no length, no ranges, no validators
        body = PRODUCT[:CUT_AFTER_KMZ] if req.number == 0 else PRODUCT
        await req.send(200, body, headers={"Content-Type": "application/zip"}, length=False)

    hostile.routes["/zipper/P.ZIP"] = zipper
    asset = asset_at("/zipper/P.ZIP", "P.ZIP", "application/zip")
    outcomes, _ = _pull_hostile(sim, hostile, tmp_path, {"product": asset})
    outcome = outcomes["product"]
    assert outcome.status is Status.DOWNLOADED, outcome.error
    assert _final(tmp_path, outcome).read_bytes() == PRODUCT
    assert hostile.count("/zipper/P.ZIP") == 2


_members = st.lists(
    st.tuples(
        st.binary(max_size=2000),
        st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]),
        st.booleans(),  # the member's data is itself a zip (a KMZ in a product)
    ),
    min_size=1,
    max_size=4,
)


@settings(max_examples=40, deadline=None)
@given(
    members=_members,
    comment=st.text("abc ", max_size=12).map(str.encode),
    zip64=st.booleans(),
    data=st.data(),
)
def test_no_proper_prefix_of_a_zip_passes_its_check(
    tmp_path_factory: pytest.TempPathFactory,
    members: list[tuple[bytes, int, bool]],
    comment: bytes,
    zip64: bool,
    data: st.DataObject,
) -> None:
    """A whole zip (ZIP64 records and extra fields or not) passes, through the follower
    too; cut anywhere, or with bytes after it, it fails."""
    entries = [
        (f"m{i}.bin", _zip([("in.kml", body, method)]) if nested else body, method)
        for i, (body, method, nested) in enumerate(members)
    ]
    raw = _zip(entries, comment, zip64)
    path = tmp_path_factory.mktemp("zp") / "p.zip"
    path.write_bytes(raw)
    assert check_zip(path) == len(members)
    follower = ZipFollower()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=4)))
    for a, b in itertools.pairwise([0, *cuts, len(raw)]):
        follower.update(memoryview(raw)[a:b])
    assert follower.check(path) == len(members)
    # every cut right after a member's data (where an inner zip's directory ends) and
    # a few anywhere
    ends = [raw.index(e[1]) + len(e[1]) for e in entries if e[1] and raw.count(e[1]) == 1]
    for cut in {*ends, *data.draw(st.lists(st.integers(0, len(raw) - 1), max_size=6))}:
        path.write_bytes(raw[:cut])
        with pytest.raises(CorruptZipError):
            check_zip(path)
    path.write_bytes(raw + data.draw(st.binary(min_size=1, max_size=30)))
    with pytest.raises(CorruptZipError):
        check_zip(path)


# -- 4. a body past its length; a zip that nothing describes ----------------------------


def _endless(chunk: bytes) -> Iterator[bytes]:
    for _ in range(4096):  # 256 MiB at most: far past any length below
        yield chunk


@pytest.mark.parametrize("announced", ["file:size", "content-range"])
def test_a_body_longer_than_announced_is_stopped_at_its_length(
    sim: SimServer, hostile: Hostile, tmp_path: Path, announced: str
) -> None:
    """A length-less body that runs past ``file:size``, or a resume's 206 that runs past
    its Content-Range: stopped at the first chunk past it, never written."""
    sent: list[int] = []
    size = 100_000

    async def flooding(req: Request) -> None:
        if announced == "content-range" and req.number == 0:
            await req.send(200, WHOLE[:50_000], headers={"ETag": '"f"'}, length=size)
            return
        if req.range_start is not None:
            cr = {"ETag": '"f"', "Content-Range": f"bytes {req.range_start}-{size - 1}/{size}"}
            await req.send(206, headers=cr, length=False)
        else:
            await req.send(200, headers={"ETag": '"f"'}, length=False)
        sent.append(await req.stream(_endless(b"\x01" * 65536)))

    hostile.routes["/flood.tif"] = flooding
    extra = {"file:size": size} if announced == "file:size" else {}
    outcomes, _ = _pull_hostile(
        sim, hostile, tmp_path, {"data": asset_at("/flood.tif", "flood.tif", **extra)}
    )
    outcome = outcomes["data"]
    assert outcome.status is Status.FAILED
    assert outcome.error is not None and "sent more than" in outcome.error
    assert outcome.bytes_downloaded <= hostile.count("/flood.tif") * size
    final = _final(tmp_path, outcome)
    assert not final.exists()
    part = final.with_name(final.name + ".part")
    assert not part.exists() or part.stat().st_size <= size


@pytest.mark.parametrize(
    ("media_type", "name"), [("image/png", "x.png"), ("application/octet-stream", "x.bin")]
)
def test_a_cut_length_less_zip_is_checked_as_a_zip_whatever_its_metadata(
    sim: SimServer, hostile: Hostile, tmp_path: Path, media_type: str, name: str
) -> None:
    async def zipper(req: Request) -> None:
        body = PRODUCT[: len(PRODUCT) // 2] if req.number == 0 else PRODUCT
        await req.send(200, body, headers={"Content-Type": media_type}, length=False)

    hostile.routes["/z"] = zipper
    outcomes, _ = _pull_hostile(sim, hostile, tmp_path, {"data": asset_at("/z", name, media_type)})
    outcome = outcomes["data"]
    assert outcome.status is Status.DOWNLOADED, outcome.error
    assert _final(tmp_path, outcome).read_bytes() == PRODUCT
    assert hostile.count("/z") == 2


# -- 5. retries are bounded whatever the server does -------------------------------------

#: Past this many requests for one path the server answers 404 for ever, so a test of
#: today's unbounded loops ends (404s have their own small budget) instead of hanging.
ENOUGH = 60


@pytest.mark.parametrize("resume", ["wrong-206", "416", "200-cut-later"])
def test_a_server_that_spoils_every_retry_is_given_up_on(
    sim: SimServer, hostile: Hostile, tmp_path: Path, resume: str
) -> None:
    """Every full answer is cut (each a little later than the last), every resume is
    spoiled: a 206 of another version, a 416 claiming the cut size, or a 200 cut too.
    With --retries 2 the file fails after a handful of requests."""
    body = payload(1_000_000, 7)

    async def spoiling(req: Request) -> None:
        if req.number >= ENOUGH:
            await req.send(404)
            return
        cut = 100_000 + 1000 * req.number
        start = req.range_start
        if start is None or resume == "200-cut-later":
            await req.send(200, body[:cut], headers={"ETag": '"s"'}, length=len(body))
        elif resume == "wrong-206":
            cr = {"Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"}
            await req.send(206, body[start:], headers={"ETag": f'"other{req.number}"', **cr})
        else:
            await req.send(416, headers={"Content-Range": f"bytes */{start}"})

    hostile.routes["/spoil.tif"] = spoiling
    outcomes, result = _pull_hostile(
        sim, hostile, tmp_path, {"data": asset_at("/spoil.tif", "spoil.tif")}, retries=2
    )
    outcome = outcomes["data"]
    assert outcome.status is Status.FAILED and result.exit_code == 1
    assert hostile.count("/spoil.tif") <= 8, outcome.error
    assert outcome.error is not None and "HTTP 404" not in outcome.error  # not the port
    assert not _final(tmp_path, outcome).exists()


def test_a_link_that_drops_again_and_again_but_moves_on_still_completes(
    sim: SimServer, hostile: Hostile, tmp_path: Path
) -> None:
    """The other side of the bound: every answer is cut after 40 kB, far more often than
    --retries 2 allows, but each brings new bytes: the file completes, resumed. (With
    --retries 1, a loaded machine failed it: aiohttp drops a prefix it holds when the cut
    is known as it reads it, so one answer of the ten may bring nothing.)"""
    body = payload(400_000, 8)

    async def dropping(req: Request) -> None:
        start = req.range_start or 0
        end = min(len(body), start + 40_000)
        headers = {"ETag": '"d"'}
        if req.range_start is None:
            await req.send(200, body[:end], headers=headers, length=len(body))
        else:
            cr = {"Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"}
            await req.send(
                206, body[start:end], headers={**headers, **cr}, length=len(body) - start
            )

    hostile.routes["/drop.tif"] = dropping
    outcomes, _ = _pull_hostile(
        sim, hostile, tmp_path, {"data": asset_at("/drop.tif", "drop.tif")}, retries=2
    )
    outcome = outcomes["data"]
    assert outcome.status is Status.DOWNLOADED, outcome.error
    assert outcome.attempts >= 10 and outcome.bytes_downloaded == len(body)
    assert _final(tmp_path, outcome).read_bytes() == body


# -- 6. one absurd size fails one file ---------------------------------------------------


@pytest.mark.parametrize("where", ["content-length", "file:size"])
def test_a_file_announcing_more_than_the_disk_holds_fails_alone(
    sim: SimServer, hostile: Hostile, tmp_path: Path, where: str
) -> None:
    async def absurd(req: Request) -> None:
        if where == "content-length":
            await req.send(200, b"x" * 1000, length=10**13)
        else:
            await req.send(200, b"x" * 1000, length=False)

    hostile.routes["/huge.tif"] = absurd
    extra = {"file:size": 10**13} if where == "file:size" else {}
    outcomes, result = _pull_hostile(
        sim, hostile, tmp_path, {"data": asset_at("/huge.tif", "huge.tif", **extra)}
    )
    outcome = outcomes["data"]
    assert outcome.status is Status.FAILED and outcome.error_class == "TooLargeError"
    assert outcome.error is not None and "needs 10.0 TB" in outcome.error
    assert result.exit_code == 1 and hostile.count("/huge.tif") == 1


# -- 7. a body that trickles ----------------------------------------------------------------


BIG = payload(400_000, 9)


def test_a_body_that_trickles_below_the_speed_floor_is_given_up_on(
    sim: SimServer, hostile: Hostile, tmp_path: Path
) -> None:
    """A server that sends a few bytes just often enough never trips the stall timeout:
    below ``download.min_speed`` over a ``stall_timeout`` window the attempt ends as a
    stall, and the retries are the usual ones, not a transfer that never ends (the file
    is large enough that one attempt's trickle never renews the retry budget)."""
    size = 400_000

    async def trickling(req: Request) -> None:
        start = req.range_start or 0
        headers = {"ETag": '"t"'}
        if start:
            headers["Content-Range"] = f"bytes {start}-{size - 1}/{size}"
        await req.send(206 if start else 200, b"", headers=headers, length=size - start)
        for at in range(start, size, 200):  # 4 kB/s, a little every 0.05 s
            req.writer.write(BIG[at : min(at + 200, size)])
            try:
                await req.writer.drain()
            except (ConnectionError, OSError):
                return
            await asyncio.sleep(0.05)

    hostile.routes["/trickle"] = trickling
    outcomes, _ = _pull_hostile(
        sim,
        hostile,
        tmp_path,
        {"data": asset_at("/trickle", "trickle.tif", **{"file:size": size})},
        stall_timeout=0.3,
        min_speed=20_000,
        retries=1,
    )
    data = outcomes["data"]
    assert data.status is Status.FAILED and "slower than" in (data.error or ""), data
    assert hostile.count("/trickle") == 2  # the attempt and its one retry
    assert not _final(tmp_path, data).exists()
