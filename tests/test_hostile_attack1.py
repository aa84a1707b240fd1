"""Variants of issue 16 the first fixes missed, tried as a hostile server, hostile
metadata and an odd disk would; and ``verify`` and the dry run, which must never follow a
link inside DEST either.

The lies are told by the raw-asyncio HTTP server of tests/hostile.py (aiohttp's own server
will not ignore If-Range nor announce a range past the file's end); the sim catalogue
serves the STAC items that point at it, beside its own well-behaved files.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import struct
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stacpull.errors import CorruptZipError
from stacpull.models import Outcome, Status
from stacpull.sim import SimServer
from stacpull.verify import check_zip, encode_multihash

from .conftest import L1A, Recorder, pull
from .hostile import Hostile as RawServer
from .hostile import Request as RawRequest
from .hostile import asset_at, payload, plant, serve

# -- the hostile server ----------------------------------------------------------------


class Request(RawRequest):
    """A request answered in the ways these tests lie."""

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


Hostile = RawServer[Request]


@pytest.fixture
def hostile() -> Iterator[Hostile]:
    yield from serve(Request)


HOSTILE_ID = "ATTACK1_ITEM"


def _pull_hostile(
    sim: SimServer, server: Hostile, dest: Path, assets: dict[str, dict[str, Any]], **kw: Any
) -> dict[str, Outcome]:
    """Download the hostile item (``assets``: key -> asset, ``href`` a path on ``server``)
    and a well-behaved thumbnail of the sim beside it; outcomes by asset key."""
    options = plant(sim, server, HOSTILE_ID, assets)
    recorder = Recorder()
    pull(sim, dest, recorder, **{**options, **kw})
    outcomes = {o.job.asset_key: o for o in recorder.outcomes().values()}
    thumb = outcomes.pop("thumbnail")
    assert thumb.status is Status.DOWNLOADED  # the rest of the run went on
    return outcomes


def _sha256(data: bytes) -> str:
    return encode_multihash("sha2-256", hashlib.sha256(data).digest())


BODY = payload(300_000, 1)
CUT = 120_000


# -- a resume's range that runs past the length the .part was begun for -------------------


def test_a_resume_range_past_the_recorded_length_is_not_appended(
    sim: SimServer, hostile: Hostile, tmp_path: Path
) -> None:
    """The first answer announces 300 000 bytes and is cut; the resume's 206 keeps the
    ETag but says ``bytes 120000-399999/*`` (no total) and sends 280 000 bytes: a file
    longer than the one whose start is in the .part. Nothing may make it 400 000 long."""
    longer = BODY + payload(100_000, 9)

    async def growing(req: Request) -> None:
        if req.number == 0:
            await req.cut(BODY[:CUT], len(BODY), ETag='"same"')
        elif (start := req.range_start) is not None:
            cr = f"bytes {start}-{len(longer) - 1}/*"
            await req.send(206, longer[start:], ETag='"same"', Content_Range=cr)
        else:
            await req.send(200, BODY, ETag='"same"')

    hostile.routes["/grow.tif"] = growing
    outcomes = _pull_hostile(sim, hostile, tmp_path, {"data": asset_at("/grow.tif", "g.tif")})
    outcome = outcomes["data"]
    final = tmp_path / outcome.job.dest
    assert outcome.status is Status.DOWNLOADED, outcome.error
    assert final.read_bytes() == BODY


# -- a .part that vanishes between the resume's catch-up hash and its first write ---------


@pytest.mark.parametrize("before_headers", [False, True])
def test_a_part_that_vanishes_before_the_resume_writes_is_not_filled_with_zeros(
    sim: SimServer, hostile: Hostile, tmp_path: Path, before_headers: bool
) -> None:
    """Another process removes the .part after the resume hashed its bytes but before the
    first new byte is written. Creating it afresh would leave zeros where the old bytes
    were, under a digest computed from those old bytes: the checksum would pass. It is
    fetched again from zero instead."""
    seen: dict[str, Path] = {}

    def remove() -> None:
        for part in tmp_path.rglob("v.tif.part"):
            part.unlink()
            seen["part"] = part

    async def vanishing(req: Request) -> None:
        if req.number == 0:
            await req.cut(BODY[:CUT], len(BODY), ETag='"v"')
        elif (start := req.range_start) is not None:
            cr = f"bytes {start}-{len(BODY) - 1}/{len(BODY)}"
            if before_headers:  # before the client hashes what it has
                remove()
            await req.head(206, {"ETag": '"v"', "Content-Range": cr,
                                 "Content-Length": str(len(BODY) - start)})  # fmt: skip
            await asyncio.sleep(0.3)  # the client hashes the .part's bytes meanwhile
            if not before_headers:
                remove()
            req.writer.write(BODY[start:])
            await req.writer.drain()
        else:
            await req.send(200, BODY, ETag='"v"')

    hostile.routes["/v.tif"] = vanishing
    asset = asset_at("/v.tif", "v.tif", **{"file:checksum": _sha256(BODY)})
    outcomes = _pull_hostile(sim, hostile, tmp_path, {"data": asset})
    outcome = outcomes["data"]
    final = tmp_path / outcome.job.dest
    assert "part" in seen  # the .part really vanished mid-resume
    assert outcome.status is Status.DOWNLOADED, outcome.error  # fetched again from zero
    assert final.read_bytes() == BODY  # never zeros in front under a passing checksum
    assert hostile.count("/v.tif") == 3


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


# -- DEST itself gone mid-run: a run-wide fault, not one refusal per file -----------------


def test_a_dest_removed_mid_run_stops_the_run(
    sim: SimServer, hostile: Hostile, tmp_path: Path
) -> None:
    """DEST vanishes (an unmounted disk, a cleanup script) while the run goes: every later
    file would be "refused" with ENOENT one by one and the run end as if it had worked
    through its list. DEST gone is a fault of the whole run: it stops (StorageError)."""
    dest = tmp_path / "dest"

    async def remover(req: Request) -> None:
        if req.number == 0 and dest.exists():
            for path in sorted(dest.rglob("*"), reverse=True):
                if path.is_dir() and not path.is_symlink():
                    path.rmdir()
                else:
                    path.unlink()
            dest.rmdir()
        await req.send(200, BODY, ETag='"x"')

    names = {f"d{i}": asset_at(f"/a{i}.tif", f"a{i}.tif") for i in range(4)}
    for i in range(4):
        hostile.routes[f"/a{i}.tif"] = remover
    donor = sim.catalog.item(L1A, 0)
    item = {**donor, "id": HOSTILE_ID, "assets": {}}
    for key, asset in names.items():
        item["assets"][key] = {**asset, "href": hostile.url(asset["href"])}
    sim.catalog.add_item(L1A, item)
    recorder = Recorder()
    from stacpull.errors import StorageError

    with pytest.raises(StorageError, match="DEST"):
        pull(sim, dest, recorder, ids=[HOSTILE_ID], assets=list(names), concurrency=1)
    refused = [o for o in recorder.outcomes().values() if o.status is Status.REFUSED]
    assert not refused, [o.error for o in refused]


# -- stacpull verify and the dry run never follow a link inside DEST ---------------------


def _downloaded(sim: SimServer, dest: Path) -> list[Path]:
    """Two items of the sim downloaded into ``dest``; their files."""
    result = pull(sim, dest, max_items=2, assets=["thumbnail", "product"])
    assert result.ok
    return sorted(p for p in dest.rglob("*") if p.is_file() and ".stacpull" not in p.parts)


def test_verify_does_not_vouch_for_a_link_at_a_final_name(sim: SimServer, tmp_path: Path) -> None:
    """A file of the mirror replaced by a link to a copy outside DEST (same bytes): verify
    must not read through it and call the mirror sound; it is marked for a new fetch."""
    from stacpull.audit import verify_dest

    dest, outside = tmp_path / "dest", tmp_path / "outside"
    outside.mkdir()
    files = _downloaded(sim, dest)
    victim = files[0]
    copy = outside / victim.name
    copy.write_bytes(victim.read_bytes())
    victim.unlink()
    victim.symlink_to(copy)
    fifo = files[1]
    fifo.unlink()
    os.mkfifo(fifo)  # a FIFO: never opened so that it blocks
    report = verify_dest(dest)
    problems = {p.path: p for p in report.problems}
    assert str(victim.relative_to(dest)) in problems, problems
    assert "link" in problems[str(victim.relative_to(dest))].detail
    assert str(fifo.relative_to(dest)) in problems
    assert report.checked == len(files) and len(problems) == 2


def test_verify_does_not_follow_an_item_directory_turned_into_a_link(
    sim: SimServer, tmp_path: Path
) -> None:
    """An item's directory moved outside DEST and a link left in its place: its files are
    not checked through the link (and so not vouched for)."""
    from stacpull.audit import verify_dest

    dest, outside = tmp_path / "dest", tmp_path / "outside"
    outside.mkdir()
    files = _downloaded(sim, dest)
    item_dir = files[0].parent
    moved = outside / item_dir.name
    item_dir.rename(moved)
    item_dir.symlink_to(moved, target_is_directory=True)
    report = verify_dest(dest)
    inside = {str(p.relative_to(dest)) for p in files if p.parent == item_dir}
    flagged = {p.path for p in report.problems}
    assert inside and inside <= flagged
    assert all("link" in p.detail for p in report.problems if p.path in inside)


def test_the_dry_run_does_not_count_a_link_as_a_file_on_disk(
    sim: SimServer, tmp_path: Path
) -> None:
    """The real run replaces a link at a final name and refuses a link on the way; the dry
    run must say so, not count the link's target as a file already on disk."""
    import stacpull

    dest, outside = tmp_path / "dest", tmp_path / "outside"
    outside.mkdir()
    files = _downloaded(sim, dest)
    before = stacpull.dry_run(
        catalog=sim.catalog_url, collections=[L1A], dest=str(dest), max_items=2,
        assets=["thumbnail", "product"],
    )  # fmt: skip
    assert before.on_disk_files == len(files)
    victim = files[0]
    copy = outside / victim.name
    copy.write_bytes(victim.read_bytes())
    victim.unlink()
    victim.symlink_to(copy)
    other_dir = next(p.parent for p in files if p.parent != victim.parent)
    moved = outside / other_dir.name
    other_dir.rename(moved)
    other_dir.symlink_to(moved, target_is_directory=True)
    after = stacpull.dry_run(
        catalog=sim.catalog_url, collections=[L1A], dest=str(dest), max_items=2,
        assets=["thumbnail", "product"],
    )  # fmt: skip
    in_other = sum(1 for p in files if p.parent == other_dir)
    assert after.on_disk_files == len(files) - 1 - in_other
    assert after.refused == in_other  # the real run refuses them: a link on the way


# -- the zip check of a .part reads the bytes written, not what its name leads to --------


def _product() -> bytes:
    sink = io.BytesIO()
    with zipfile.ZipFile(sink, "w") as zf:
        for n in range(4):
            zf.writestr(f"p/m{n}.tif", payload(100_000, n), zipfile.ZIP_STORED)
    return sink.getvalue()


def test_the_zip_check_of_a_part_reads_the_file_written_not_a_decoy(
    sim: SimServer, hostile: Hostile, tmp_path: Path
) -> None:
    """A zipper stream (no length) is cut in the middle; just before the connection ends,
    the item's directory is moved aside and a link put in its place, to a directory
    outside DEST whose .part is the whole, valid product. A check that opens the .part by
    its path reads the decoy and passes, and the cut zip is renamed into place and
    journalled done; the check must read the file the transfer wrote."""
    product = _product()
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    decoy = outside / "decoy"
    decoy.mkdir(parents=True)

    async def zipper(req: Request) -> None:
        await req.head(200, {"Content-Type": "application/zip"})
        req.writer.write(product[: len(product) // 2])  # cut: no length, then EOF
        await req.writer.drain()
        await asyncio.sleep(0.3)  # the client has the bytes; most are on disk
        if req.number == 0:
            (part,) = dest.rglob("P.ZIP.part")
            (decoy / part.name).write_bytes(product)
            item_dir = part.parent
            item_dir.rename(item_dir.with_name(item_dir.name + ".aside"))
            item_dir.symlink_to(decoy, target_is_directory=True)

    hostile.routes["/zipper/P.ZIP"] = zipper
    asset = asset_at("/zipper/P.ZIP", "P.ZIP", "application/zip")
    outcomes = _pull_hostile(sim, hostile, dest, {"product": asset}, chunk_size=65_536)
    outcome = outcomes["product"]
    assert outcome.status is not Status.DOWNLOADED, "a cut zip was accepted"
    assert not list(dest.rglob("P.ZIP"))  # no cut product under its final name anywhere


# -- mirror --prune never deletes through a link --------------------------------------------


def test_prune_never_deletes_through_an_item_directory_turned_into_a_link(
    sim: SimServer, tmp_path: Path
) -> None:
    """An item's directory was moved outside DEST and a link left in its place; the item
    then leaves the catalogue and a mirror prunes: nothing outside DEST is deleted, not
    its files, not its (then empty) directories."""
    import stacpull

    from .conftest import TOKEN

    dest, outside = tmp_path / "dest", tmp_path / "outside"
    outside.mkdir()
    options: dict[str, Any] = {"catalog": sim.catalog_url, "collections": [L1A], "token": TOKEN}
    assert stacpull.mirror(dest=str(dest), **options).ok
    gone = str(sim.catalog.item(L1A, 3)["id"])
    item_dir = dest / L1A / gone
    kept = sorted(p.name for p in item_dir.iterdir())
    moved = outside / "moved" / gone
    moved.parent.mkdir()
    item_dir.rename(moved)
    item_dir.symlink_to(moved, target_is_directory=True)
    empty = outside / "empty"
    (empty / "sub").mkdir(parents=True)  # a directory tree a prune could rmdir
    gone_too = str(sim.catalog.item(L1A, 4)["id"])
    other = dest / L1A / gone_too
    sim.catalog.remove_item(gone)
    sim.catalog.remove_item(gone_too)
    # the other gone item's directory: a link to an empty tree outside
    for path in other.iterdir():
        path.unlink()
    other.rmdir()
    other.symlink_to(empty / "sub", target_is_directory=True)
    result = stacpull.mirror(dest=str(dest), prune=True, **options)
    assert sorted(p.name for p in moved.iterdir()) == kept  # nothing deleted outside
    assert (empty / "sub").is_dir()
    assert result.pruned == 0


# -- DEST/.stacpull as a link: the state never leaves DEST -------------------------------


def test_a_state_directory_that_is_a_link_stops_the_run_before_anything_is_written(
    sim: SimServer, tmp_path: Path
) -> None:
    """``DEST/.stacpull`` is a link to a directory outside DEST: the journal, its lock
    and the reports would live there (and a journal planted there would steer the run).
    The run refuses to start; nothing is written through the link."""
    from stacpull.audit import verify_dest
    from stacpull.errors import StorageError

    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    (dest / ".stacpull").symlink_to(outside, target_is_directory=True)
    with pytest.raises(StorageError, match="link"):
        pull(sim, dest, max_items=1)
    assert list(outside.iterdir()) == []
    assert [p.name for p in dest.iterdir()] == [".stacpull"]  # nothing downloaded either
    with pytest.raises(StorageError, match="link"):
        verify_dest(dest)
    (dest / ".stacpull").unlink()
    (dest / ".stacpull").mkdir()
    (dest / ".stacpull" / "lock").symlink_to(outside / "planted")  # dangling: O_CREAT makes it
    with pytest.raises(StorageError, match="link"):
        pull(sim, dest, max_items=1)
    assert list(outside.iterdir()) == []


# -- sizes past what a file (and SQLite's INTEGER) can hold -------------------------------

HUGE = 2**63  # one more than SQLite's largest INTEGER, and than any file's size


def test_a_file_size_past_any_possible_file_is_refused_alone(
    sim: SimServer, hostile: Hostile, tmp_path: Path
) -> None:
    """``file:size: 2**63`` in the metadata made the journal raise OverflowError, a
    traceback that ended the whole run."""

    async def fine(req: Request) -> None:
        await req.send(200, BODY, ETag='"x"')

    hostile.routes["/a.tif"] = fine
    from stacpull.events import JobRefused

    donor = sim.catalog.item(L1A, 0)
    normal = str(sim.catalog.item(L1A, 1)["id"])
    asset = asset_at(hostile.url("/a.tif"), "a.tif", **{"file:size": HUGE})
    sim.catalog.add_item(L1A, {**donor, "id": HOSTILE_ID, "assets": {"data": asset}})
    recorder = Recorder()
    pull(sim, tmp_path, recorder, ids=[HOSTILE_ID, normal], assets=["data", "thumbnail"])
    (refusal,) = [e.refusal for e in recorder.of_type(JobRefused)]
    assert refusal.asset_key == "data" and "file:size" in refusal.reason
    (thumb,) = recorder.outcomes().values()
    assert thumb.status is Status.DOWNLOADED


@pytest.mark.parametrize("where", ["content-length", "content-range"])
def test_a_response_announcing_more_than_any_file_fails_alone(
    sim: SimServer, hostile: Hostile, tmp_path: Path, where: str
) -> None:
    """A Content-Length of 2**63, or a resume's Content-Range total of 2**63 after a cut
    chunked body: the file fails with a reason (or starts again), the run goes on."""

    async def absurd(req: Request) -> None:
        if where == "content-length":
            await req.send(200, BODY, ETag='"x"', Content_Length=str(HUGE))
        elif req.number == 0:  # a chunked body cut before its last chunk: resumable
            await req.head(200, {"ETag": '"x"', "Transfer-Encoding": "chunked"})
            req.writer.write(f"{CUT:x}\r\n".encode() + BODY[:CUT] + b"\r\n")
            await req.writer.drain()
            await asyncio.sleep(0.2)
        elif (start := req.range_start) is not None:
            cr = f"bytes {start}-{len(BODY) - 1}/{HUGE}"
            await req.send(206, BODY[start:], ETag='"x"', Content_Range=cr)
        else:
            await req.send(200, BODY, ETag='"x"')

    hostile.routes["/a.tif"] = absurd
    outcomes = _pull_hostile(sim, hostile, tmp_path, {"data": asset_at("/a.tif", "a.tif")})
    outcome = outcomes["data"]
    if outcome.status is Status.DOWNLOADED:
        assert (tmp_path / outcome.job.dest).read_bytes() == BODY
    else:
        assert outcome.status is Status.FAILED and outcome.error_class, outcome


# -- text that is not Unicode: a lone surrogate in the catalogue's JSON --------------------


@pytest.mark.parametrize("field", ["file:local_path", "file:checksum", "href", "key", "id"])
def test_a_lone_surrogate_in_an_item_refuses_that_item_alone(
    sim: SimServer, hostile: Hostile, tmp_path: Path, field: str
) -> None:
    """JSON may escape a lone surrogate (``"\\ud800"``); decoded, it is a str that no
    UTF-8 writer accepts. It ended the whole run with a UnicodeEncodeError from the
    journal; that one item is refused instead, the rest of the run goes on."""
    from stacpull.events import JobRefused

    async def fine(req: Request) -> None:
        await req.send(200, BODY, ETag='"x"')

    hostile.routes["/a.tif"] = fine
    lone = "\ud800"
    asset = asset_at(hostile.url("/a.tif"), "a.tif")
    key, item_id = "data", HOSTILE_ID
    if field == "key":
        key += lone
    elif field == "id":
        item_id += lone
    elif field == "href":
        asset["href"] += "?" + lone
    else:
        asset[field] = f"x{lone}.tif" if field == "file:local_path" else "1220" + lone
    donor = sim.catalog.item(L1A, 0)
    normal = str(sim.catalog.item(L1A, 1)["id"])
    sim.catalog.add_item(L1A, {**donor, "id": item_id, "assets": {key: asset}})
    recorder = Recorder()
    # (a search by that id could not even be sent: the whole collection is searched)
    ids = None if field == "id" else [item_id, normal]
    pull(sim, tmp_path, recorder, ids=ids, assets=[key, "thumbnail"])
    (refusal,) = [e.refusal for e in recorder.of_type(JobRefused)]
    assert "Unicode" in refusal.reason
    thumbs = list(recorder.outcomes().values())
    assert thumbs and all(o.status is Status.DOWNLOADED for o in thumbs)


# -- header bytes that are not UTF-8 --------------------------------------------------------


@pytest.mark.parametrize(
    "head",
    [
        b'HTTP/1.1 200 OK\r\nETag: "\xff\xfe"\r\n',
        b"HTTP/1.1 200 OK\r\nLast-Modified: Mon, 01 Dec 2025 10:00:00 \xff\r\n",
        b"HTTP/1.1 503 Busy \xff\xfe now\r\n",
    ],
    ids=["etag", "last-modified", "reason"],
)
def test_header_bytes_that_are_not_utf8_fail_no_run(
    sim: SimServer, hostile: Hostile, tmp_path: Path, head: bytes
) -> None:
    """aiohttp hands such bytes over as lone surrogates (surrogateescape); written to the
    journal as a validator or in an error message, they ended the whole run with a
    UnicodeEncodeError. The file is fetched (without resuming on that validator) or
    fails with a readable reason; the run goes on."""
    status = int(head.split(b" ")[1])

    async def raw(req: Request) -> None:
        body = BODY if status == 200 else b""
        tail = f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        req.writer.write(head + tail + body)
        await req.writer.drain()

    hostile.routes["/a.tif"] = raw
    outcomes = _pull_hostile(sim, hostile, tmp_path, {"data": asset_at("/a.tif", "a.tif")})
    outcome = outcomes["data"]
    if status == 200:
        assert outcome.status is Status.DOWNLOADED, outcome.error
        assert (tmp_path / outcome.job.dest).read_bytes() == BODY
    else:
        assert outcome.status is Status.FAILED and "503" in (outcome.error or "")
        (outcome.error or "").encode("utf-8")  # a readable reason


# -- names a filesystem cannot hold --------------------------------------------------------


@pytest.mark.parametrize("code", ["EINVAL", "EILSEQ"])
def test_a_name_the_filesystem_rejects_refuses_that_file_alone(code: str) -> None:
    """vfat, exFAT and SMB reject ``:`` or ``?`` in a name with EINVAL; a filesystem that
    insists on UTF-8 names (ZFS utf8only, ext4 strict casefolding) rejects others with
    EILSEQ. Either concerns that one name, not DEST: the file is refused, the run goes on
    (they stopped the whole run as a StorageError). No loopback filesystem here can
    produce them, so the mapping is checked itself."""
    import errno

    from stacpull.errors import PlanError, StorageError
    from stacpull.transfer import partfile

    number = getattr(errno, code)
    error = partfile.storage_error(OSError(number, os.strerror(number)), Path("/d/a:b.tif"))
    assert isinstance(error, PlanError) and not isinstance(error, StorageError)
