"""Integrity checks: multihash digests (``file:checksum``), sizes and zip structure.

``file:checksum`` is a hex-encoded multihash: varint function code, varint digest length,
digest. The functions stacpull can check are in :data:`MULTIHASH_CODES`; an unknown code is
reported rather than silently treated as a match.

BLAKE3 (the ``blake3`` package) is the function stacpull records a file's digest with when
the catalogue gives none (``download.record_hash``): four times faster than SHA-256 on
one core (4.9 against 1.2 GiB/s on the benchmark machine), and as strong. hashlib has no
BLAKE3, hence the package; every other function is hashlib's.

A zip without a checksum is also checked by its members' CRC-32s. With the ``isal``
package installed (``stacpull[fast]``) they are computed by ISA-L at 22 GiB/s instead of
zlib's 3.4: on the MAAP benchmark, zlib's CRC was the largest single CPU cost, ahead of
the BLAKE3 hash.
"""

from __future__ import annotations

import hashlib
import io
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, cast

from .errors import ChecksumMismatchError, CorruptZipError, SizeMismatchError
from .hashes import DEFAULT_RECORD_HASH, MULTIHASH_CODES, MULTIHASH_NAMES

try:  # Intel's ISA-L (the `fast` extra): the same CRC-32, five times faster than zlib's
    from isal.isal_zlib import crc32 as _crc32
except ImportError:  # zlib's, at 3.4 GiB/s on the benchmark machine
    from zlib import crc32 as _crc32

__all__ = [
    "DEFAULT_RECORD_HASH",
    "MULTIHASH_CODES",
    "MULTIHASH_NAMES",
    "Hasher",
    "Multihash",
    "Opener",
    "ZipFollower",
    "check_digest",
    "check_zip",
    "encode_multihash",
    "file_digest",
    "hash_range",
    "parse_multihash",
    "record_hash",
    "verify_size",
]

_BY_NAME = {name: (code, algo, length) for code, (name, algo, length) in MULTIHASH_CODES.items()}


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class Hasher(Protocol):
    """What :meth:`Multihash.new` returns: hashlib's interface, which blake3 shares."""

    def update(self, data: bytes | memoryview, /) -> object: ...

    def digest(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Multihash:
    """A parsed ``file:checksum`` (or, with an empty digest, just a hash function)."""

    name: str  # multihash name, e.g. "sha2-256"
    algorithm: str  # hashlib name, or "blake3"
    digest: bytes

    def new(self) -> Hasher:
        """A fresh hash object for this function. Both kinds release the GIL on large
        updates, so worker threads hash in parallel with the event loop."""
        if self.algorithm == "blake3":
            from blake3 import blake3  # imported on first use: most commands never hash

            return blake3()
        return hashlib.new(self.algorithm)

    def matches(self, digest: bytes) -> bool:
        """Whether ``digest`` (from :meth:`new`) is this checksum's digest."""
        return digest == self.digest


def record_hash(name: str) -> Multihash:
    """The function named ``name`` (a multihash name such as ``blake3``), to record the
    digest of a file the catalogue gives no ``file:checksum`` for: the journal keeps it so
    that ``stacpull verify`` can find rot later. ``ValueError`` for an unknown name."""
    if name not in _BY_NAME:
        raise ValueError(f"unknown hash function {name!r}; one of {', '.join(MULTIHASH_NAMES)}")
    return Multihash(name, _BY_NAME[name][1], b"")


def parse_multihash(text: str) -> Multihash:
    """Parse a hex multihash; ``ValueError`` with a readable reason when it is not one."""
    try:
        raw = bytes.fromhex(text.strip())
    except ValueError:
        raise ValueError(f"file:checksum {text!r} is not hexadecimal") from None
    code, pos = _read_varint(raw, 0)
    length, pos = _read_varint(raw, pos)
    if code not in MULTIHASH_CODES:
        raise ValueError(
            f"file:checksum uses multihash function 0x{code:x}, which stacpull cannot check"
        )
    name, algo, expected_len = MULTIHASH_CODES[code]
    digest = raw[pos:]
    if length != len(digest) or length != expected_len:
        raise ValueError(
            f"file:checksum {name} digest has {len(digest)} bytes, expected {expected_len}"
        )
    return Multihash(name, algo, digest)


def encode_multihash(name: str, digest: bytes) -> str:
    """Hex multihash for ``digest`` computed with function ``name`` (e.g. ``sha2-256``)."""
    code, _, length = _BY_NAME[name]
    if len(digest) != length:
        raise ValueError(f"{name} digest must have {length} bytes")
    return (_varint(code) + _varint(length) + digest).hex()


#: Bytes per read when a file is hashed or a stored zip member checked.
_READ_SIZE = 1 << 20


def _blocks(f: io.FileIO, length: int | None, buffer: memoryview) -> Iterator[memoryview]:
    """Up to ``length`` bytes of ``f`` from where it stands (None: to its end), read into
    ``buffer`` and handed out as views of it, each valid until the next is read. One
    buffer serves every read: a new block per read would have the allocator keep
    megabytes per thread. Stops early at the end of the file; the caller counts."""
    while length is None or length > 0:
        n = f.readinto(buffer if length is None else buffer[: min(len(buffer), length)])
        if not n:
            return
        yield buffer[:n]
        if length is not None:
            length -= n


def hash_range(
    hasher: Hasher,
    path: Path,
    start: int = 0,
    end: int | None = None,
    *,
    opener: Callable[[str, int], int] | None = None,
) -> None:
    """Feed bytes ``[start, end)`` of ``path`` (``end`` None: to its end) to ``hasher``
    (blocking: call from a worker thread). ``opener`` as for :func:`open` (the transfer's
    opens the file without following a link)."""
    length = None if end is None else end - start
    buffer = memoryview(
        bytearray(_READ_SIZE if length is None else min(_READ_SIZE, max(length, 1)))
    )
    with open(path, "rb", buffering=0, opener=opener) as f:
        f.seek(start)
        for block in _blocks(f, length, buffer):
            hasher.update(block)


def file_digest(path: Path, mh: Multihash) -> bytes:
    """Hash a whole file with ``mh``'s function (blocking: call from a worker thread)."""
    h = mh.new()
    hash_range(h, path)
    return h.digest()


def verify_size(
    actual: int, expected: int | None, *, url: str = "", source: str = "file:size"
) -> None:
    """Raise :class:`SizeMismatchError` when ``expected`` is known and differs."""
    if expected is not None and actual != expected:
        raise SizeMismatchError(f"received {actual} bytes but {source} says {expected}", url=url)


#: :func:`open`'s ``opener``: how a check reaches a file without opening it by its path
#: (a descriptor of the very file written, or one opened without following a link).
Opener = Callable[[str, int], int]


def check_zip(
    path: Path,
    *,
    url: str = "",
    streamed: Mapping[int, _Streamed] | None = None,
    opener: Opener | None = None,
) -> int:
    """Read the central directory and every member's CRC-32 (blocking); return member count.

    This is how a zipper product (no length, no checksum) is verified: a truncated zip has
    no central directory of its own (:func:`_own_directory`), a corrupted one fails a CRC.
    Stored members (MAAP's products are) are checked straight from the file, one reused 1 MiB buffer at a time:
    ``zipfile``'s reader copies each megabyte several times, which made the check five
    times slower than the CRC itself (0.20 s for a 138 MB product, now 0.07 s). Other
    members go through ``zipfile``, which inflates them. A stored member that a
    :class:`ZipFollower` saw go by (``streamed``, by local header offset) is not read
    again: its CRC was computed on the way. The file is opened once, with ``opener`` when
    given (the transfer's and ``verify``'s never follow a link), and read only through
    that descriptor.
    """
    try:
        with open(path, "rb", buffering=0, opener=opener) as raw:
            _own_directory(raw, url=url)
            with zipfile.ZipFile(raw) as zf:  # reads through raw, which it leaves open
                members = zf.infolist()
                buffer = memoryview(bytearray(_READ_SIZE))
                seen = streamed or {}
                bad = next(
                    (m.filename for m in members if not _crc_holds(zf, raw, m, buffer, seen)),
                    None,
                )
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, struct.error) as exc:
        raise CorruptZipError(f"not a complete zip file: {exc}", url=url) from exc
    except NotImplementedError as exc:  # unsupported compression: structure is still fine
        raise CorruptZipError(f"zip uses an unsupported feature: {exc}", url=url) from exc
    if bad is not None:
        raise CorruptZipError(f"zip member {bad!r} fails its CRC-32 check", url=url)
    if not members:
        raise CorruptZipError("zip file has no members", url=url)
    return len(members)


#: A local file header: signature, versions, flags, method, time, date, CRC, sizes, then
#: the lengths of the name and of the extra field (zipfile's structFileHeader).
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")
#: The end-of-central-directory record (signature, disk numbers, entries on this disk and
#: in all, directory size and offset, comment length), the ZIP64 locator that precedes it
#: (signature, disk, offset of the ZIP64 record, disks) and that record (signature, size
#: of the rest, versions, disks, entries on this disk and in all, directory size and
#: offset); zipfile's structEndArchive, structEndArchive64Locator, structEndArchive64.
_END = struct.Struct("<4s4H2LH")
_END64_LOCATOR = struct.Struct("<4sLQL")
_END64 = struct.Struct("<4sQ2H2L4Q")
#: A central directory entry (zipfile's structCentralDir): its sizes at 10 and 11, the
#: lengths of name, extra field and comment at 12-14, the local header's offset at 18.
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
_MAX_COMMENT = 0xFFFF


def _own_directory(raw: io.FileIO, *, url: str = "") -> int:
    """Prove that ``raw`` (a whole file, opened for reading) ends with its own, complete
    central directory; return its entry count (blocking).

    Finding *a* directory proves nothing: a product cut right after a member that is
    itself a zip (a KMZ) ends with the inner zip's directory, which ``zipfile`` accepts as
    a zip with data in front. So: the end-of-central-directory record ends the file (only
    its comment after it); the directory (ZIP64's, when the locator is there) lies right
    before it, at the offset it names; its entries fill it exactly, as many as the record
    says; and every entry's local header, and the data after it, lie inside the file and
    before the directory. :class:`CorruptZipError` says which of these failed."""
    entries, cd_size, cd_offset = _directory_place(raw, url)
    raw.seek(cd_offset)
    count = _count_entries(raw, raw.read(cd_size), cd_offset, url)
    if count != entries:
        raise CorruptZipError(
            f"not a complete zip file: its central directory holds {count} entries, "
            f"its end record says {entries}",
            url=url,
        )
    return count


def _directory_place(raw: io.FileIO, url: str) -> tuple[int, int, int]:
    """(entries, size, offset) of the central directory that the end record ending
    ``raw`` names (through its ZIP64 record when the locator is there), proven to end
    right where that record begins."""
    size = raw.seek(0, io.SEEK_END)
    tail_at = max(0, size - _END.size - _MAX_COMMENT)
    raw.seek(tail_at)
    tail = raw.read(size - tail_at)
    end = len(tail)
    while (end := tail.rfind(b"PK\x05\x06", 0, end)) >= 0:
        # The record, and its comment as long as it says, end the file exactly.
        if end + _END.size <= len(tail) == end + _END.size + _END.unpack_from(tail, end)[-1]:
            break
    if end < 0:
        raise CorruptZipError(
            "not a complete zip file: no end-of-central-directory record ends it", url=url
        )
    _, disk, cd_disk, here, entries, cd_size, cd_offset, _ = _END.unpack_from(tail, end)
    cd_end = tail_at + end
    locator = end - _END64_LOCATOR.size
    if locator >= 0 and tail[locator : locator + 4] == b"PK\x06\x07":
        _, disk, record_at, _ = _END64_LOCATOR.unpack_from(tail, locator)
        raw.seek(record_at)
        record = raw.read(_END64.size)
        if len(record) != _END64.size or record[:4] != b"PK\x06\x06":
            raise CorruptZipError("not a complete zip file: its ZIP64 record is missing", url=url)
        fields = _END64.unpack(record)
        if record_at + 12 + fields[1] != tail_at + locator:
            raise CorruptZipError(
                "not a complete zip file: its ZIP64 record does not end at its locator", url=url
            )
        disk, cd_disk, here, entries, cd_size, cd_offset = fields[4:10]
        cd_end = record_at
    if disk or cd_disk or here != entries:
        raise CorruptZipError("zip file spans several disks", url=url)
    if cd_offset + cd_size != cd_end:
        raise CorruptZipError(
            f"not a complete zip file: its central directory ({cd_size} bytes at {cd_offset}) "
            f"does not end where its end record begins ({cd_end}): it is not this file's own",
            url=url,
        )
    return entries, cd_size, cd_offset


def _count_entries(raw: io.FileIO, directory: bytes, cd_offset: int, url: str) -> int:
    """The entries of ``directory`` (read from ``cd_offset``), each proven whole and its
    member lying inside the file before the directory."""
    at = count = 0
    while at < len(directory):
        if len(directory) - at < _CENTRAL.size or directory[at : at + 4] != b"PK\x01\x02":
            raise CorruptZipError(
                f"not a complete zip file: a bad central directory entry at {cd_offset + at}",
                url=url,
            )
        fields = _CENTRAL.unpack_from(directory, at)
        name_length, extra_length, comment_length = fields[12:15]
        extra_at = at + _CENTRAL.size + name_length
        extra = directory[extra_at : extra_at + extra_length]
        compressed, offset = _central_sizes(fields, extra)
        at = extra_at + extra_length + comment_length
        count += 1
        if at > len(directory) or not _member_fits(raw, offset, compressed, cd_offset):
            name = directory[extra_at - name_length : extra_at].decode("utf-8", "replace")
            raise CorruptZipError(
                f"not a complete zip file: member {name!r} does not lie before the "
                "central directory",
                url=url,
            )
    return count


def _central_sizes(fields: tuple[object, ...], extra: bytes) -> tuple[int, int]:
    """(compressed size, local header offset) of a central directory entry, from its ZIP64
    extra field where they read 0xFFFFFFFF (that field holds, in this order, only the
    values that overflowed: size, compressed size, offset; APPNOTE 4.5.3)."""
    size, compressed, offset = cast(int, fields[11]), cast(int, fields[10]), cast(int, fields[18])
    wide = [v == _ZIP64_MARK for v in (size, compressed, offset)]
    if any(wide):
        at = 0
        while at + 4 <= len(extra):
            header_id, length = struct.unpack_from("<2H", extra, at)
            if header_id == _ZIP64_EXTRA:
                held = min(length, len(extra) - at - 4) // 8  # a field may claim more
                values = list(struct.unpack_from(f"<{held}Q", extra, at + 4))
                got = [values.pop(0) if w and values else None for w in wide]
                compressed = got[1] if got[1] is not None else compressed
                offset = got[2] if got[2] is not None else offset
                break
            at += 4 + length
    return compressed, offset


def _member_fits(raw: io.FileIO, offset: int, compressed: int, limit: int) -> bool:
    """Whether the member whose local header is at ``offset`` has that header, and its
    ``compressed`` bytes after it, before ``limit`` (the central directory)."""
    if offset + _LOCAL_HEADER.size > limit:
        return False
    raw.seek(offset)
    header = raw.read(_LOCAL_HEADER.size)
    if header[:4] != b"PK\x03\x04":
        return False
    name_length, extra_length = cast(tuple[int, int], _LOCAL_HEADER.unpack(header)[-2:])
    return offset + _LOCAL_HEADER.size + name_length + extra_length + compressed <= limit


def _crc_holds(
    zf: zipfile.ZipFile,
    raw: io.FileIO,
    member: zipfile.ZipInfo,
    buffer: memoryview,
    streamed: Mapping[int, _Streamed],
) -> bool:
    """Whether ``member``'s bytes match its CRC-32. A stored, unencrypted member is taken
    from ``streamed`` when its local header there agrees with the central directory, else
    read from ``raw`` after the same local-header checks zipfile makes; any other is read
    through zipfile."""
    if member.compress_type != zipfile.ZIP_STORED or member.flag_bits & 0x1:
        try:
            with zf.open(member) as f:
                while f.read(_READ_SIZE):
                    pass
        except (zipfile.BadZipFile, zlib.error):  # a bad CRC, or a stream that won't inflate
            return False
        return True
    encoding = "utf-8" if member.flag_bits & 0x800 else "cp437"
    seen = streamed.get(member.header_offset)
    if (
        seen is not None
        and seen.size == member.compress_size
        and seen.name.decode(encoding, errors="replace") == member.orig_filename
    ):
        return seen.crc == member.CRC
    raw.seek(member.header_offset)
    header = raw.read(_LOCAL_HEADER.size)
    if len(header) != _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"bad local header for {member.filename!r}")
    name_length, extra_length = _LOCAL_HEADER.unpack(header)[-2:]
    name = raw.read(name_length)
    if name.decode(encoding, errors="replace") != member.orig_filename:
        raise zipfile.BadZipFile(f"the local header names {name!r}, not {member.filename!r}")
    raw.seek(extra_length, 1)
    crc = got = 0
    for block in _blocks(raw, member.compress_size, buffer):
        crc = _crc32(block, crc)
        got += len(block)
    if got != member.compress_size:
        raise EOFError(f"{member.filename!r} ends early")
    return crc == member.CRC


@dataclass(frozen=True, slots=True)
class _Streamed:
    """A stored member as a :class:`ZipFollower` saw it: its local header's name and
    size, and the CRC-32 of the bytes that followed."""

    name: bytes
    size: int
    crc: int


#: A local header's ZIP64 extra field (header id 1) holds the sizes that read 0xFFFFFFFF.
_ZIP64_EXTRA = 0x0001
_ZIP64_MARK = 0xFFFFFFFF


class ZipFollower:
    """The CRC-32s of a zip's stored members, computed from its bytes as they are hashed.

    Fed every byte of the file once, in order (it shares the hasher's feed: see
    ``fetch``), it walks the local headers and CRCs each stored member's data on the way.
    :meth:`check` then needs the central directory only, instead of reading the whole
    product back after its last byte: on the MAAP benchmark that read was most of the
    time between a product's last byte and its rename. It stops following at the central
    directory, or at anything it does not follow (a deflated or encrypted member, sizes in
    a data descriptor): :func:`check_zip` reads those members, and the ones after them,
    from the file as before. What it recorded is only trusted where the central directory
    agrees (offset, name and size), so a zip that lies gets the full check.
    """

    __slots__ = (
        "_at", "_crc", "_head", "_left", "_member", "_need", "_pending", "_stopped", "seen"
    )  # fmt: skip

    def __init__(self) -> None:
        self.seen: dict[int, _Streamed] = {}  # local header offset -> what followed it
        self._at = 0  # file offset of the next byte fed
        self._pending = bytearray()  # a local header gathered across blocks
        self._need = _LOCAL_HEADER.size  # bytes of header wanted in _pending (0: in data)
        self._member: tuple[int, bytes, int] = (0, b"", 0)  # offset, name, size
        self._left = 0  # data bytes of the current member still to come
        self._crc = 0
        self._stopped = False
        self._head = b""  # the file's first four bytes (fewer while fewer arrived)

    @property
    def is_zip(self) -> bool:
        """Whether the bytes fed so far begin as a zip does (a local file header)."""
        return self._head == b"PK\x03\x04"

    def update(self, data: bytes | memoryview, /) -> None:
        """The next bytes of the file (blocking; the CRC releases the GIL, ISA-L's or zlib's)."""
        view = memoryview(data)
        if len(self._head) < 4:
            self._head += bytes(view[: 4 - len(self._head)])
        while view and not self._stopped:
            if self._need == 0:  # inside a member's data
                n = min(self._left, len(view))
                self._crc = _crc32(view[:n], self._crc)
                self._left -= n
                self._at += n
                view = view[n:]
                if self._left == 0:
                    self._ended()
                continue
            n = min(self._need - len(self._pending), len(view))
            self._pending += view[:n]
            self._at += n
            view = view[n:]
            if len(self._pending) == self._need:
                self._header()

    def _header(self) -> None:
        """A local header is in ``_pending``: its fixed part (then it says whether the
        member is followed, and how long its name and extra field are), or all of it."""
        pending = self._pending
        fields = _LOCAL_HEADER.unpack_from(pending)
        signature, flags, method, size, name_length, extra_length = (
            fields[0], fields[3], fields[4], fields[8], fields[10], fields[11]
        )  # fmt: skip
        if len(pending) == _LOCAL_HEADER.size:  # the fixed part: is it a member we follow?
            if signature != b"PK\x03\x04" or flags & 0x9 or method != zipfile.ZIP_STORED:
                self._stopped = True  # the central directory, or a member to read from disk
                return
            self._need += name_length + extra_length
            if self._need > len(pending):
                return
        end = _LOCAL_HEADER.size + name_length
        if size == _ZIP64_MARK:
            size = _zip64_size(bytes(pending[end:]))
            if size is None:
                self._stopped = True
                return
        self._member = (self._at - len(pending), bytes(pending[_LOCAL_HEADER.size : end]), size)
        self._pending = bytearray()
        self._need, self._left, self._crc = 0, size, 0
        if size == 0:
            self._ended()

    def _ended(self) -> None:
        offset, name, size = self._member
        self.seen[offset] = _Streamed(name, size, self._crc)
        self._need = _LOCAL_HEADER.size

    def check(self, path: Path, *, url: str = "", opener: Opener | None = None) -> int:
        """:func:`check_zip` with the CRCs computed on the way (blocking)."""
        return check_zip(path, url=url, streamed=self.seen, opener=opener)


def _zip64_size(extra: bytes) -> int | None:
    """The compressed size in a local header's ZIP64 extra field, which holds both sizes,
    uncompressed first (APPNOTE 4.5.3); None when it is not there."""
    at = 0
    while at + 4 <= len(extra):
        header_id, length = struct.unpack_from("<2H", extra, at)
        if header_id == _ZIP64_EXTRA:
            fits = length >= 16 and at + 20 <= len(extra)
            return int(struct.unpack_from("<Q", extra, at + 12)[0]) if fits else None
        at += 4 + length
    return None


def check_digest(actual: bytes, mh: Multihash, *, url: str = "") -> None:
    """Raise :class:`ChecksumMismatchError` when ``actual`` is not ``mh``'s digest."""
    if not mh.matches(actual):
        raise ChecksumMismatchError(
            f"{mh.name} digest {actual.hex()[:16]}… differs from file:checksum {mh.digest.hex()[:16]}…",
            url=url,
        )
