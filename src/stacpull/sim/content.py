"""Deterministic file content for the simulated catalogue: real PNGs, JPEGs, KMZs, KMLs
and zips, XML annotations, EarthCARE headers, catalogue metadata records.

Everything derives from an integer seed, so the server stores nothing: a collection of a
million items costs no disk, and the same (seed, revision) always yields the same bytes —
a restart from zero or a range resume sees exactly what it saw before.

Rasters are random bytes: a ``.tiff`` or an ``.h5`` here carries its format's signature at
most, never a readable image or HDF5 tree (no client of a bulk downloader opens them).
"""

from __future__ import annotations

import io
import json
import random
import struct
import zipfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from xml.sax.saxutils import escape

__all__ = [
    "eo_geojson_record",
    "hdr_document",
    "iso_record",
    "kml_document",
    "make_h5",
    "make_jpeg",
    "make_kmz",
    "make_png",
    "om_record",
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


def _huffman_codes(counts: Sequence[int], symbols: Sequence[int]) -> dict[int, tuple[int, int]]:
    """Canonical Huffman codes (value, length) from a JPEG DHT's counts per length."""
    codes: dict[int, tuple[int, int]] = {}
    code, k = 0, 0
    for length, count in enumerate(counts, start=1):
        for _ in range(count):
            codes[symbols[k]] = (code, length)
            code, k = code + 1, k + 1
        code <<= 1
    return codes


#: The standard luminance DC table (ITU T.81 K.3) and a two-symbol AC table: the image's
#: blocks are flat, so every block is a DC difference and an end of block.
_DC_COUNTS = (0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0)
_AC_COUNTS = (0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
_DC_CODES = _huffman_codes(_DC_COUNTS, range(12))
_EOB = _huffman_codes(_AC_COUNTS, (0x00, 0x01))[0x00]


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def _jpeg_scan(levels: Sequence[int]) -> bytes:
    """The entropy-coded scan of flat 8x8 blocks at ``levels`` (-128..127 each)."""
    acc, nbits, out, previous = 0, 0, bytearray(), 0

    def put(value: int, length: int) -> None:
        nonlocal acc, nbits
        acc, nbits = (acc << length) | value, nbits + length
        while nbits >= 8:
            nbits -= 8
            byte = (acc >> nbits) & 0xFF
            out.append(byte)
            if byte == 0xFF:
                out.append(0)  # byte stuffing
        acc &= (1 << nbits) - 1

    for level in levels:
        diff, previous = level * 8 - previous, level * 8  # a flat block's DC is 8 x level
        size = abs(diff).bit_length()
        put(*_DC_CODES[size])
        if size:
            put(diff if diff > 0 else diff + (1 << size) - 1, size)
        put(*_EOB)
    if nbits:
        put((1 << (8 - nbits)) - 1, 8 - nbits)  # pad with ones
    return bytes(out)


def make_jpeg(seed: int, width: int = 96, height: int = 384, comment: str = "") -> bytes:
    """A valid greyscale baseline JPEG: a noisy gradient in 8x8 blocks (a strip, like an
    EarthCARE quicklook along the track), ``comment`` in its COM segment."""
    rng = random.Random(seed)
    across, down = (width + 7) // 8, (height + 7) // 8
    levels = [
        max(-128, min(127, (x * 160 // across) - 80 + (y * 60 // down) + rng.randint(-24, 24)))
        for y in range(down)
        for x in range(across)
    ]
    counts = bytes(_DC_COUNTS), bytes(_AC_COUNTS)
    return b"".join(
        (
            b"\xff\xd8",
            _segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"),
            _segment(0xFE, comment.encode() or b"stacpull.sim"),
            _segment(0xDB, b"\x00" + b"\x01" * 64),  # quantisation by 1: DC = 8 x level
            _segment(0xC0, struct.pack(">BHHBBBB", 8, height, width, 1, 1, 0x11, 0)),
            _segment(0xC4, b"\x00" + counts[0] + bytes(range(12))),
            _segment(0xC4, b"\x10" + counts[1] + b"\x00\x01"),
            _segment(0xDA, b"\x01\x01\x00\x00\x3f\x00"),
            _jpeg_scan(levels),
            b"\xff\xd9",
        )
    )


def make_h5(seed: int, size: int) -> bytes:
    """``size`` bytes that start as an HDF5 file does (its 8-byte signature), then random
    bytes: what ``file`` calls HDF5 data, not a tree h5py could open."""
    return (b"\x89HDF\r\n\x1a\n" + random_bytes(seed, max(0, size - 8)))[:size]


def kml_document(name: str, png_name: str, bbox: tuple[float, float, float, float]) -> str:
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
        zf.writestr(info, kml_document(name, png_name, bbox))
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


def hdr_document(fields: Mapping[str, str | int]) -> bytes:
    """An EarthCARE product header (``.HDR``): the Earth Explorer XML header naming the
    product, its validity and its maker, one element per field."""
    rows = "".join(f"    <{k}>{escape(str(v))}</{k}>\n" for k, v in fields.items())
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<Earth_Explorer_Header xmlns="http://eop-cfi.esa.int/CFI">\n'
        f"  <Fixed_Header>\n{rows}  </Fixed_Header>\n"
        "</Earth_Explorer_Header>\n"
    ).encode()


def _points(geometry: Mapping[str, Any]) -> list[tuple[float, float]]:
    """The (lon, lat) points of a Polygon's outer ring or of a LineString."""
    coords = geometry.get("coordinates") or []
    if geometry.get("type") == "Polygon":
        coords = coords[0] if coords else []
    return [(float(p[0]), float(p[1])) for p in coords]


def _acquisition(item: Mapping[str, Any]) -> dict[str, str]:
    """The fields every record names, from the item (escaped for XML by the caller)."""
    props = item.get("properties", {})
    instruments = props.get("instruments") or [""]
    return {
        "id": str(item["id"]),
        "start": str(props.get("start_datetime") or props.get("datetime")),
        "end": str(props.get("end_datetime") or props.get("datetime")),
        "platform": str(props.get("platform", "")),
        "instrument": str(instruments[0]),
        "ptype": str(props.get("product:type", "")),
        "updated": str(props.get("updated", "")),
    }


def om_record(item: Mapping[str, Any]) -> bytes:
    """The item as an OGC 10-157r4 Earth Observation Metadata profile of O&M document
    (``httpAccept=application/gml+xml&recordSchema=om``): phenomenon time, platform and
    instrument, footprint (lat lon pairs) and identifier."""
    f = {k: escape(v) for k, v in _acquisition(item).items()}
    pos = " ".join(f"{lat} {lon}" for lon, lat in _points(item.get("geometry") or {}))
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<eop:EarthObservation xmlns:eop="http://www.opengis.net/eop/2.1" \
xmlns:om="http://www.opengis.net/om/2.0" xmlns:gml="http://www.opengis.net/gml/3.2" \
gml:id="EO_{f["id"]}">
  <om:phenomenonTime><gml:TimePeriod gml:id="TP_{f["id"]}">
    <gml:beginPosition>{f["start"]}</gml:beginPosition>
    <gml:endPosition>{f["end"]}</gml:endPosition>
  </gml:TimePeriod></om:phenomenonTime>
  <om:procedure><eop:EarthObservationEquipment gml:id="EQ_{f["id"]}">
    <eop:platform><eop:Platform><eop:shortName>{f["platform"]}</eop:shortName></eop:Platform></eop:platform>
    <eop:instrument><eop:Instrument><eop:shortName>{f["instrument"]}</eop:shortName></eop:Instrument></eop:instrument>
  </eop:EarthObservationEquipment></om:procedure>
  <om:featureOfInterest><eop:Footprint gml:id="FP_{f["id"]}"><eop:multiExtentOf>
    <gml:LineString gml:id="LS_{f["id"]}"><gml:posList>{pos}</gml:posList></gml:LineString>
  </eop:multiExtentOf></eop:Footprint></om:featureOfInterest>
  <eop:metaDataProperty><eop:EarthObservationMetaData>
    <eop:identifier>{f["id"]}</eop:identifier>
    <eop:productType>{f["ptype"]}</eop:productType>
  </eop:EarthObservationMetaData></eop:metaDataProperty>
</eop:EarthObservation>
""".encode()


def iso_record(item: Mapping[str, Any]) -> bytes:
    """The item as an ISO 19139 ``MD_Metadata`` (``httpAccept=application/vnd.iso.19139+xml``):
    identifier, date stamp, title and bounding box."""
    f = {k: escape(v) for k, v in _acquisition(item).items()}
    west, south, east, north = (item.get("bbox") or [0, 0, 0, 0])[:4]
    bounds = "".join(
        f"<gmd:{side}><gco:Decimal>{value}</gco:Decimal></gmd:{side}>"
        for side, value in (
            ("westBoundLongitude", west),
            ("eastBoundLongitude", east),
            ("southBoundLatitude", south),
            ("northBoundLatitude", north),
        )
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<gmd:MD_Metadata xmlns:gmd="http://www.isotc211.org/2005/gmd" \
xmlns:gco="http://www.isotc211.org/2005/gco">
  <gmd:fileIdentifier><gco:CharacterString>{f["id"]}</gco:CharacterString></gmd:fileIdentifier>
  <gmd:dateStamp><gco:DateTime>{f["updated"]}</gco:DateTime></gmd:dateStamp>
  <gmd:identificationInfo><gmd:MD_DataIdentification>
    <gmd:citation><gmd:CI_Citation><gmd:title><gco:CharacterString>{f["id"]}\
</gco:CharacterString></gmd:title></gmd:CI_Citation></gmd:citation>
    <gmd:abstract><gco:CharacterString>{f["platform"]} {f["instrument"]} {f["ptype"]}, \
{f["start"]} to {f["end"]}</gco:CharacterString></gmd:abstract>
    <gmd:extent><gmd:EX_Extent><gmd:geographicElement><gmd:EX_GeographicBoundingBox>
      {bounds}
    </gmd:EX_GeographicBoundingBox></gmd:geographicElement></gmd:EX_Extent></gmd:extent>
  </gmd:MD_DataIdentification></gmd:identificationInfo>
</gmd:MD_Metadata>
""".encode()


def eo_geojson_record(item: Mapping[str, Any]) -> bytes:
    """The item as an OGC 17-003r2 EO GeoJSON feature (``mode=owc``): the same footprint,
    the acquisition and product information under that standard's names."""
    f = _acquisition(item)
    props = item.get("properties", {})
    feature = {
        "type": "Feature",
        "id": f["id"],
        "geometry": item.get("geometry"),
        "bbox": item.get("bbox"),
        "properties": {
            "identifier": f["id"],
            "parentIdentifier": item.get("collection"),
            "title": f["id"],
            "date": f"{f['start']}/{f['end']}",
            "updated": f["updated"],
            "productInformation": {
                "productType": f["ptype"],
                "productVersion": props.get("version"),
            },
            "acquisitionInformation": [
                {
                    "platform": {"platformShortName": f["platform"]},
                    "instrument": {"instrumentShortName": f["instrument"]},
                    "acquisitionParameters": {
                        "beginningDateTime": f["start"],
                        "endingDateTime": f["end"],
                        "orbitNumber": props.get("sat:absolute_orbit"),
                        "orbitDirection": str(props.get("sat:orbit_state", "")).upper(),
                    },
                }
            ],
        },
    }
    return json.dumps(feature, indent=1).encode()


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


def _zip_members(item_id: str) -> tuple[str, str, str, str]:
    """Names of a product zip's annotation, bulk raster, preview and manifest, in the
    mission's own layout, told by the id: an EarthCARE product (``ECA_…``) holds its header
    and its HDF5 file, a BIOMASS or FLEX product its annotation, raster and preview."""
    lower = item_id.lower()
    if item_id.startswith("ECA_"):
        return (f"{item_id}.HDR", f"{item_id}.h5", f"{item_id}.BID_1.jpeg", "MANIFEST.xml")
    return (
        f"annotation/{lower}_annot.xml",
        f"measurement/{lower}_i_abs.tiff",
        f"preview/{lower}_ql.png",
        f"{lower}.xml",
    )


def product_zip_chunks(
    item_id: str, seed: int, size: int, *, corrupt: bool = False
) -> Iterator[bytes]:
    """Stream a real product zip of about ``size`` bytes, as an on-the-fly zipper would.

    Members (:func:`_zip_members`): an annotation XML, a measurement raster (random bytes,
    the bulk), a preview image and a manifest. ``corrupt`` flips one byte of the raster after
    its CRC is fixed, so the zip is complete but fails its CRC check — a server that lies.
    """
    sink = _Sink()
    zf = zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED)
    annotation, bulk, preview, manifest = _zip_members(item_id)
    xml = xml_document(item_id, seed, 8192)
    png = make_jpeg(seed + 1) if preview.endswith(".jpeg") else make_png(seed + 1, 96, 64)
    raster_size = max(1024, size - len(xml) - len(png) - 2048)

    def member(name: str) -> zipfile.ZipInfo:
        return zipfile.ZipInfo(f"{item_id}/{name}", date_time=_FIXED_DATE)

    zf.writestr(member(annotation), xml)
    yield sink.drain()
    with zf.open(member(bulk), "w", force_zip64=raster_size > 2**31) as w:
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
    zf.writestr(member(preview), png)
    zf.writestr(member(manifest), f"<manifest product='{item_id}'/>\n")
    zf.close()
    yield sink.drain()
