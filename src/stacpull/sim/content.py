"""Deterministic file content for the simulated catalogue: real PNGs, KMZs and zips.

Everything derives from an integer seed, so the server stores nothing: a collection of a
million items costs no disk, and the same (seed, revision) always yields the same bytes —
a restart from zero or a range resume sees exactly what it saw before.
"""

from __future__ import annotations

import io
import random
import struct
import zipfile
import zlib
from collections.abc import Iterator

__all__ = [
    "make_kmz",
    "make_png",
    "product_zip_chunks",
    "random_bytes",
    "xml_document",
]

_FIXED_DATE = (2025, 9, 29, 0, 0, 0)
_BLOCK = 1 << 20


def random_bytes(seed: int, size: int) -> bytes:
    """``size`` pseudo-random bytes from ``seed`` (incompressible, like SAR rasters)."""
    return random.Random(seed).randbytes(size)


def _blocks(seed: int, size: int) -> Iterator[bytes]:
    """``size`` pseudo-random bytes in 1 MiB blocks, each seeded separately."""
    done = 0
    index = 0
    while done < size:
        n = min(_BLOCK, size - done)
        yield random.Random(seed * 1_000_003 + index).randbytes(n)
        done += n
        index += 1


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def make_png(seed: int, width: int = 160, height: int = 120) -> bytes:
    """A valid RGB PNG: a gradient with noise, roughly ``3·w·h`` bytes (noise barely compresses)."""
    rng = random.Random(seed)
    stride = width * 3
    noise = rng.randbytes(stride * height)
    # Red: noise & 0x3F plus a ramp along x; green: plus a ramp along y; blue: noise. Done
    # on whole rows as big integers (63 + 190 < 256: no byte carries into the next), as a
    # loop over the pixels made each item of the catalogue cost tens of milliseconds.
    mask = int.from_bytes(b"\x3f\x3f\xff" * width * height, "big")
    across = b"".join(bytes((x * 191 // stride, 0, 0)) for x in range(0, stride, 3))
    down = b"".join(bytes((0, y * 191 // height, 0)) * width for y in range(height))
    ramps = int.from_bytes(across * height, "big") + int.from_bytes(down, "big")
    pixels = ((int.from_bytes(noise, "big") & mask) + ramps).to_bytes(len(noise), "big")
    rows = b"".join(b"\0" + pixels[y * stride : (y + 1) * stride] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(bytes(rows), 6))
        + _png_chunk(b"IEND", b"")
    )


def _kml_document(name: str, png_name: str, bbox: tuple[float, float, float, float]) -> str:
    """A KML GroundOverlay whose image ``href`` is ``png_name`` (the MAAP quicklook link)."""
    west, south, east, north = bbox
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<kml xmlns="http://www.opengis.net/kml/2.2">
  <Document>
    <name>{name}</name>
    <GroundOverlay>
      <name>{name}</name>
      <Icon><href>{png_name}</href></Icon>
      <LatLonBox>
        <north>{north}</north><south>{south}</south><east>{east}</east><west>{west}</west>
      </LatLonBox>
    </GroundOverlay>
  </Document>
</kml>
"""


def make_kmz(name: str, png_name: str, bbox: tuple[float, float, float, float]) -> bytes:
    """A KMZ: a zip holding ``doc.kml`` that names ``png_name``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        info = zipfile.ZipInfo("doc.kml", date_time=_FIXED_DATE)
        info.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(info, _kml_document(name, png_name, bbox))
    return buf.getvalue()


def xml_document(item_id: str, seed: int, size: int = 8192) -> bytes:
    """An annotation-like XML file of about ``size`` bytes."""
    rng = random.Random(seed)
    head = f'<?xml version="1.0" encoding="UTF-8"?>\n<annotation product="{item_id}">\n'
    lines = [head]
    total = len(head)
    i = 0
    while total < size:
        line = f'  <sample index="{i}" value="{rng.random():.12f}"/>\n'
        lines.append(line)
        total += len(line)
        i += 1
    lines.append("</annotation>\n")
    return "".join(lines).encode()


class _Sink(io.RawIOBase):
    """A write-only, unseekable stream collecting what zipfile writes, drained per chunk."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.offset = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.buffer += data
        self.offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self.offset

    def drain(self) -> bytes:
        out = bytes(self.buffer)
        self.buffer.clear()
        return out


def product_zip_chunks(
    item_id: str, seed: int, size: int, *, corrupt: bool = False
) -> Iterator[bytes]:
    """Stream a real product zip of about ``size`` bytes, as an on-the-fly zipper would.

    Members: an annotation XML, a measurement raster (random bytes, the bulk), a preview
    PNG and a manifest. ``corrupt`` flips one byte of the raster after its CRC is fixed,
    so the zip is complete but fails its CRC check — a server that lies.
    """
    sink = _Sink()
    zf = zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED)
    lower = item_id.lower()
    xml = xml_document(item_id, seed, 8192)
    png = make_png(seed + 1, 96, 64)
    raster_size = max(1024, size - len(xml) - len(png) - 2048)

    def member(name: str) -> zipfile.ZipInfo:
        return zipfile.ZipInfo(f"{item_id}/{name}", date_time=_FIXED_DATE)

    zf.writestr(member(f"annotation/{lower}_annot.xml"), xml)
    yield sink.drain()
    with zf.open(
        member(f"measurement/{lower}_i_abs.tiff"), "w", force_zip64=raster_size > 2**31
    ) as w:
        flip_at = raster_size // 2 if corrupt else -1
        done = 0
        for block in _blocks(seed, raster_size):
            w.write(block)
            chunk = sink.drain()
            if 0 <= flip_at - done < len(block) and chunk:
                # the raster bytes are at the end of what was just drained
                pos = len(chunk) - len(block) + (flip_at - done)
                if 0 <= pos < len(chunk):
                    chunk = chunk[:pos] + bytes([chunk[pos] ^ 0xFF]) + chunk[pos + 1 :]
            done += len(block)
            yield chunk
    zf.writestr(member(f"preview/{lower}_ql.png"), png)
    zf.writestr(member(f"{lower}.xml"), f"<manifest product='{item_id}'/>\n")
    zf.close()
    yield sink.drain()
