"""Pure pieces: range arithmetic (property-tested), Retry-After, multihash and zip checks."""

from __future__ import annotations

import hashlib
import io
import itertools
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3
from hypothesis import given
from hypothesis import strategies as st

from stacpull import verify
from stacpull.errors import ChecksumMismatchError, CorruptZipError, SizeMismatchError
from stacpull.headers import (
    parse_content_range,
    parse_range,
    parse_retry_after,
    range_header,
)
from stacpull.verify import (
    ZipFollower,
    check_digest,
    check_zip,
    encode_multihash,
    file_digest,
    parse_multihash,
    record_hash,
    verify_size,
)

sizes = st.integers(min_value=1, max_value=10**12)


@given(size=sizes, data=st.data())
def test_open_range_from_an_offset_covers_the_rest(size: int, data: st.DataObject) -> None:
    offset = data.draw(st.integers(min_value=0, max_value=size - 1))
    first, last = parse_range(range_header(offset), size) or (-1, -1)
    assert (first, last) == (offset, size - 1)
    crange = parse_content_range(f"bytes {first}-{last}/{size}")
    assert crange.first == offset and crange.length == size - offset and crange.total == size


@given(size=sizes, data=st.data())
def test_ranges_are_clamped_and_suffixes_counted_from_the_end(
    size: int, data: st.DataObject
) -> None:
    first = data.draw(st.integers(min_value=0, max_value=size - 1))
    last = data.draw(st.integers(min_value=first, max_value=size * 2))
    assert parse_range(f"bytes={first}-{last}", size) == (first, min(last, size - 1))
    suffix = data.draw(st.integers(min_value=1, max_value=size * 2))
    assert parse_range(f"bytes=-{suffix}", size) == (max(0, size - suffix), size - 1)


@given(size=sizes, beyond=st.integers(min_value=0, max_value=10**6))
def test_a_range_past_the_end_is_unsatisfiable(size: int, beyond: int) -> None:
    with pytest.raises(ValueError):
        parse_range(f"bytes={size + beyond}-", size)


@given(first=st.integers(0, 10**9), length=st.integers(1, 10**9), extra=st.integers(0, 10**9))
def test_content_range_round_trip(first: int, length: int, extra: int) -> None:
    last = first + length - 1
    total = last + 1 + extra
    parsed = parse_content_range(f"bytes {first}-{last}/{total}")
    assert (parsed.first, parsed.last, parsed.total, parsed.length) == (first, last, total, length)
    with pytest.raises(ValueError):
        parse_content_range(
            f"bytes {last + 1}-{first}/{total}" if length > 1 else f"bytes {first}-{last}/{last}"
        )


@pytest.mark.parametrize("bad", ["", "bytes 1-2", "bytes x-2/3", "items 0-1/2", "bytes 5-9/5"])
def test_malformed_content_ranges_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_content_range(bad)


def test_multi_or_malformed_range_is_ignored_by_servers() -> None:
    assert parse_range("bytes=0-1,5-6", 10) is None
    assert parse_range("lines=1-2", 10) is None
    assert parse_range("bytes=5-2", 10) is None


def test_retry_after_seconds_and_dates() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0


@pytest.mark.parametrize(
    ("name", "fn"),
    [
        ("sha2-256", hashlib.sha256),
        ("sha2-512", hashlib.sha512),
        ("md5", hashlib.md5),
        ("blake3", blake3),
    ],
)
def test_multihash_round_trip(name: str, fn: type, tmp_path: Path) -> None:
    body = b"stacpull" * 1000
    text = encode_multihash(name, fn(body).digest())
    mh = parse_multihash(text)
    assert mh.name == name
    path = tmp_path / "f"
    path.write_bytes(body)
    check_digest(file_digest(path, mh), mh)
    with pytest.raises(ChecksumMismatchError):
        check_digest(fn(b"other").digest(), mh)


def test_sha2_256_multihash_prefix_is_1220() -> None:
    assert encode_multihash("sha2-256", bytes(32)).startswith("1220")


def test_blake3_is_multihash_0x1e_and_matches_the_reference_vector(tmp_path: Path) -> None:
    # BLAKE3's published digest of the empty input, under multicodec 0x1e, length 32.
    empty = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
    mh = parse_multihash("1e20" + empty)
    assert (mh.name, mh.digest.hex()) == ("blake3", empty)
    (tmp_path / "empty").write_bytes(b"")
    check_digest(file_digest(tmp_path / "empty", mh), mh)
    assert record_hash("blake3").new().digest().hex() == empty


def test_record_hash_names_the_functions_it_knows() -> None:
    assert record_hash("sha2-256").algorithm == "sha256"
    with pytest.raises(ValueError, match=r"unknown hash function 'sha256'; one of .*sha2-256"):
        record_hash("sha256")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("zz", "not hexadecimal"),
        ("9920" + "00" * 32, "cannot check"),
        ("1220" + "00" * 5, "digest has"),
        ("", "truncated"),
    ],
)
def test_bad_multihashes_say_why(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_multihash(text)


def test_size_check() -> None:
    verify_size(10, None)
    verify_size(10, 10)
    with pytest.raises(SizeMismatchError, match="says 11"):
        verify_size(10, 11)


@pytest.fixture(params=["isal", "zlib"])
def crc32(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The zip tests run with ISA-L's CRC-32 (the `fast` extra; the test extra has it too)
    and with zlib's, which stacpull falls back on without it."""
    if request.param == "zlib":
        monkeypatch.setattr(verify, "_crc32", zlib.crc32)
    else:
        monkeypatch.setattr(verify, "_crc32", pytest.importorskip("isal.isal_zlib").crc32)
    return str(request.param)


def test_the_fast_crc_is_the_one_used_when_isal_is_installed() -> None:
    isal_zlib = pytest.importorskip("isal.isal_zlib")
    assert verify._crc32 is isal_zlib.crc32
    data = bytes(range(256)) * 1000
    assert isal_zlib.crc32(data[7:], isal_zlib.crc32(data[:7])) == zlib.crc32(data)


@pytest.mark.usefixtures("crc32")
def test_zip_check_catches_truncation_and_bad_crcs(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("a.bin", b"A" * 5000)
    good = buf.getvalue()
    path = tmp_path / "p.zip"
    path.write_bytes(good)
    assert check_zip(path) == 1
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(CorruptZipError, match="not a complete zip"):
        check_zip(path)
    flipped = bytearray(good)
    flipped[100] ^= 0xFF
    path.write_bytes(bytes(flipped))
    with pytest.raises(CorruptZipError, match="CRC"):
        check_zip(path)


def _zip(members: list[tuple[str, bytes, int]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data, method in members:
            zf.writestr(zipfile.ZipInfo(name), data, compress_type=method)
    return buf.getvalue()


@pytest.mark.usefixtures("crc32")
def test_zip_check_reads_stored_and_deflated_members(tmp_path: Path) -> None:
    """Stored members are checked straight from the file (several reads' worth, to cross
    the read size), deflated ones through zipfile; a damaged one of either kind fails."""
    big = bytes(range(256)) * (40 * 1024 + 3)  # 10 MiB and a bit: more than one read
    text = b"quicklook " * 5000
    good = _zip([("data.tif", big, zipfile.ZIP_STORED), ("meta.xml", text, zipfile.ZIP_DEFLATED)])
    path = tmp_path / "p.zip"
    path.write_bytes(good)
    assert check_zip(path) == 2
    stored_at = good.index(big[:4096])
    deflated_end = good.index(b"PK\x01\x02")  # the central directory follows it
    for where in (stored_at + len(big) - 1, deflated_end - 3):
        damaged = bytearray(good)
        damaged[where] ^= 0xFF  # the last stored byte; then one of the deflated stream
        path.write_bytes(bytes(damaged))
        with pytest.raises(CorruptZipError, match="fails its CRC-32"):
            check_zip(path)


def test_zip_check_refuses_a_local_header_that_disagrees(tmp_path: Path) -> None:
    good = _zip([("a.bin", b"A" * 5000, zipfile.ZIP_STORED)])
    path = tmp_path / "p.zip"
    path.write_bytes(good.replace(b"a.bin", b"b.bin", 1))  # the local header's name only
    with pytest.raises(CorruptZipError, match="not a complete zip"):
        check_zip(path)


class _Unseekable(io.RawIOBase):
    """A write-only stream without tell/seek: zipfile then puts the sizes in data
    descriptors after each member, as a streaming zipper does."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self.data += b
        return len(b)


_members = st.lists(
    st.tuples(
        st.binary(max_size=3000),
        st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]),
        st.booleans(),  # ZIP64 local header
    ),
    min_size=1,
    max_size=5,
)


@given(members=_members, descriptors=st.booleans(), data=st.data())
def test_the_zip_follower_checks_what_it_saw_and_leaves_the_rest_to_the_file(
    tmp_path_factory: pytest.TempPathFactory,
    members: list[tuple[bytes, int, bool]],
    descriptors: bool,
    data: st.DataObject,
) -> None:
    sink: Any = _Unseekable() if descriptors else io.BytesIO()
    with zipfile.ZipFile(sink, "w") as zf:
        for i, (body, method, zip64) in enumerate(members):
            info = zipfile.ZipInfo(f"m{i}.bin")
            info.compress_type = method
            with zf.open(info, "w", force_zip64=zip64) as f:
                f.write(body)
    raw = bytes(sink.data if descriptors else sink.getvalue())
    path = tmp_path_factory.mktemp("zf") / "p.zip"
    path.write_bytes(raw)
    follower = ZipFollower()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=8)))
    for a, b in itertools.pairwise([0, *cuts, len(raw)]):
        follower.update(memoryview(raw)[a:b])
    assert follower.check(path) == len(members)
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
    # Followed: every stored member up to the first one it cannot follow (deflated, or
    # with its sizes in a data descriptor, as all are here when zipfile cannot seek);
    # its CRC is the central directory's.
    stored = itertools.takewhile(lambda m: m.compress_type == zipfile.ZIP_STORED, infos)
    followed = [] if descriptors else list(stored)
    assert sorted(follower.seen) == [m.header_offset for m in followed]
    for m in followed:
        assert follower.seen[m.header_offset].crc == m.CRC


@pytest.mark.usefixtures("crc32")
def test_the_zip_check_takes_the_followed_crc_where_the_directory_agrees(
    tmp_path: Path,
) -> None:
    """The check uses the CRC computed from the bytes as they arrived (a byte damaged on
    the way fails it, though the file on disk is whole), and only where the central
    directory agrees with the local header the follower read."""
    big = bytes(range(256)) * 4096
    good = _zip([("data.tif", big, zipfile.ZIP_STORED), ("meta.xml", b"x" * 100, 0)])
    path = tmp_path / "p.zip"
    path.write_bytes(good)
    whole = ZipFollower()
    whole.update(good)
    assert len(whole.seen) == 2 and whole.check(path) == 2
    damaged = bytearray(good)
    damaged[good.index(big[:4096]) + 10] ^= 0xFF
    hurt = ZipFollower()
    hurt.update(bytes(damaged))
    with pytest.raises(CorruptZipError, match=r"'data\.tif' fails its CRC-32"):
        hurt.check(path)
    # A local header naming another file is not trusted: that member is read from disk.
    lying = ZipFollower()
    lying.update(bytes(damaged).replace(b"data.tif", b"data.tiX", 1))
    assert lying.check(path) == 2
