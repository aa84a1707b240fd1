"""What each mission's items look like on MAAP: ids, footprints, properties and asset rows.

Three missions, shaped after what public sources record of the real catalogue
(``shared/real-maap``):

* BIOMASS (``biomass-2025``: the 2025 keys ``quicklook``/``quicklook_1``; ``biomass-2026``:
  the Feb 2026 quicklook keys beside the ``enclosure_*`` files of the product that clients of
  the real ``BiomassLevel1a`` name: ``enclosure_i_abs_tiff``, ``enclosure_i_phase_tiff``,
  ``enclosure_annot_xml``, ``enclosure_orb_xml``, ``enclosure_kml``). Polygon footprints,
  ids ending in six base-36 characters that encode the item's index.
* FLEX (``flex``): a product and its quicklook.
* EarthCARE (``earthcare``): the reconstructed ``EarthCAREL2Validated_MAAP`` item — LineString
  ground tracks of one frame (A-H, eight an orbit), ids ending in orbit and frame
  (``…_07929E``), the 2026 property names (``product:type``, ``sat:absolute_orbit``,
  ``version``, ``instruments``), ``enclosure_h5`` with ``file:local_path`` and ``file:size``,
  ``thumbnail`` and ``quicklook_jpeg`` under one ``/public/`` href, three ``metadata_*``
  catalogue URLs with query strings, and the zipper's product (roles data, metadata, archive).

Everything is a pure function of (collection spec, index): :mod:`.catalog` assembles items
from these parts and serves their bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

__all__ = [
    "CollectionSpec",
    "StaticFile",
    "asset_order",
    "box",
    "default_collections",
    "earthcare_frame",
    "folder",
    "footprint",
    "index_of",
    "item_id",
    "properties",
    "queryables",
    "records",
    "static_files",
]

_KINDS = ("biomass-2025", "biomass-2026", "flex", "earthcare")


@dataclass(frozen=True, slots=True)
class CollectionSpec:
    """One synthetic collection. ``kind``: one of :data:`_KINDS`."""

    id: str
    kind: str
    count: int
    title: str = ""
    start: datetime = datetime(2025, 9, 29, tzinfo=UTC)
    step: timedelta = timedelta(minutes=2)
    duration: timedelta = timedelta(seconds=21)
    product_size: int = 4_000_000
    enclosure_size: int = 262_144
    bucket: str = "biomass-pdgs-01"
    platform: str = "Biomass"  # as MAAP spells it (its series URLs: eo:platform/Biomass)
    instrument: str = "P-SAR"
    product_types: tuple[str, ...] = ("S1_SCS__1S",)

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown collection kind {self.kind!r} (one of {', '.join(_KINDS)})")
        if self.count < 0 or not self.product_types:
            raise ValueError("a collection needs count ≥ 0 and at least one product type")


#: EarthCARE: one orbit is eight frames of ``step`` each; orbit 7929 began (ANX) at this
#: instant, as the recorded item ``…_07929E`` says.
_ORBIT_REF = (datetime(2025, 10, 20, 12, 41, 50, tzinfo=UTC), 7929)
_FRAMES = "ABCDEFGH"
_NORTHBOUND = "ABCH"  # the frames of the ascending half of an orbit
_BASELINE = "BA"  # the recorded items' ``version`` (and the ``EXBA`` of their ids)


def default_collections(count: int = 24, product_size: int = 4_000_000) -> list[CollectionSpec]:
    """BIOMASS L1a (2025 keys), BIOMASS L1c (2026 keys), FLEX and EarthCARE L1 and L2,
    ``count`` items each."""
    frame = timedelta(seconds=695)  # 11 min 35 s, as the recorded MSI_COP_2A frames last
    return [
        CollectionSpec(
            "BiomassLevel1aIOC",
            "biomass-2025",
            count,
            "BIOMASS Level 1a (IOC)",
            product_size=product_size,
            product_types=("S1_SCS__1S", "S2_SCS__1S", "S3_SCS__1S"),
        ),
        CollectionSpec(
            "BiomassLevel1cIOC",
            "biomass-2026",
            count,
            "BIOMASS Level 1c (IOC)",
            start=datetime(2026, 2, 10, tzinfo=UTC),
            product_size=product_size,
            product_types=("S1_STA__1S", "S2_STA__1S"),
        ),
        CollectionSpec(
            "FLEXL1CommissioningProducts10",
            "flex",
            count,
            "FLEX L1 Commissioning Products",
            start=datetime(2025, 3, 7, tzinfo=UTC),
            step=timedelta(minutes=3),
            duration=timedelta(minutes=3),
            product_size=product_size,
            bucket="flex-pdgs-01",
            platform="FLEX",
            instrument="FLORIS",
            product_types=("L1C_FLXSYN", "L1B_OBS___"),
        ),
        *(
            CollectionSpec(
                f"EarthCARE{level}Validated_MAAP",
                "earthcare",
                count,
                f"EarthCARE {level} Validated Products",
                start=_ORBIT_REF[0] + timedelta(days=days),
                step=frame,
                duration=frame,
                product_size=product_size,
                bucket="earthcare-pdgs-01",
                platform="EarthCARE",
                instrument=_INSTRUMENTS[types[0][:3]],
                product_types=types,
            )
            for level, days, types in (
                ("L1", -3, ("ATL_NOM_1B", "MSI_RGR_1C", "BBR_NOM_1B")),
                ("L2", 0, ("MSI_COP_2A", "ATL_EBD_2A")),
            )
        ),
    ]


# -- ids --------------------------------------------------------------------------------------

_BASE36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _code(index: int) -> str:
    """Six base-36 characters, like MAAP's ``…_01_D9UITH`` suffixes, encoding ``index``."""
    value = index + 36**5  # always six characters
    out = ""
    while value:
        value, r = divmod(value, 36)
        out = _BASE36[r] + out
    return out[-6:].rjust(6, "0")


def _decode(code: str) -> int:
    value = 0
    for ch in code:
        value = value * 36 + _BASE36.index(ch)
    return value - 36**5


class _Frame(NamedTuple):
    """Where an EarthCARE item sits: its product type, orbit, frame letter, the frame's
    number since the collection's start, and the start of its orbit (ANX)."""

    ptype: str
    orbit: int
    letter: str
    number: int
    anx: datetime


def earthcare_frame(spec: CollectionSpec, index: int) -> _Frame:
    """The frame of item ``index``: each frame carries one item per product type."""
    number, kind = divmod(index, len(spec.product_types))
    period = spec.step * len(_FRAMES)
    first_orbit = _ORBIT_REF[1] + (spec.start - _ORBIT_REF[0]) // period
    orbit, letter = divmod(number, len(_FRAMES))
    anx = spec.start + period * orbit
    return _Frame(spec.product_types[kind], first_orbit + orbit, _FRAMES[letter], number, anx)


def _begin(spec: CollectionSpec, index: int) -> datetime:
    """When item ``index`` starts (an EarthCARE item: its frame's start)."""
    if spec.kind == "earthcare":
        return spec.start + spec.step * earthcare_frame(spec, index).number
    return spec.start + spec.step * index


def _processed(spec: CollectionSpec, index: int) -> datetime:
    """When an EarthCARE product was made: about three hours after its frame (the
    recorded ``…_20251020T132215Z_20251020T162940Z_…``)."""
    return _begin(spec, index) + timedelta(hours=3, minutes=7 + index % 50, seconds=25)


def item_id(spec: CollectionSpec, index: int) -> str:
    """The id of item ``index``, as MAAP names that mission's products."""
    start = _begin(spec, index)
    end = start + spec.duration
    fmt = "%Y%m%dT%H%M%S"
    if spec.kind == "earthcare":
        frame = earthcare_frame(spec, index)
        made = _processed(spec, index)
        return (
            f"ECA_EX{_BASELINE}_{frame.ptype}_{start:{fmt}}Z_{made:{fmt}}Z"
            f"_{frame.orbit:05d}{frame.letter}"
        )
    ptype = spec.product_types[index % len(spec.product_types)]
    if spec.kind == "flex":
        return f"FLX_{ptype}_{start:{fmt}}_{end:{fmt}}_{_code(index)}"
    frame_no = 1 + index % 180
    return f"BIO_{ptype}_{start:{fmt}}_{end:{fmt}}_C_G___M___C___T____F{frame_no:03d}_01_{_code(index)}"


def index_of(spec: CollectionSpec, item: str) -> int | None:
    """The index whose id is ``item`` in ``spec``, or ``None`` (not generated there)."""
    if spec.kind == "earthcare":
        index = _earthcare_index(spec, item)
    elif len(item) > 6 and item.startswith("FLX_" if spec.kind == "flex" else "BIO_"):
        try:
            index = _decode(item[-6:])
        except ValueError:
            return None
    else:
        return None
    if index is not None and 0 <= index < spec.count and item_id(spec, index) == item:
        return index
    return None


def _earthcare_index(spec: CollectionSpec, item: str) -> int | None:
    """Orbit, frame letter and product type read back from ``ECA_…_07929E``."""
    if not item.startswith("ECA_") or len(item) < 26 or item[-1] not in _FRAMES:
        return None
    ptype, orbit = item[9:19], item[-6:-1]
    if ptype not in spec.product_types or not orbit.isdigit():
        return None
    first = earthcare_frame(spec, 0).orbit
    number = (int(orbit) - first) * len(_FRAMES) + _FRAMES.index(item[-1])
    return number * len(spec.product_types) + spec.product_types.index(ptype)


# -- footprints -------------------------------------------------------------------------------

#: Latitudes along each EarthCARE frame: A crosses the equator northbound, C and G pass
#: over the poles, E crosses the equator southbound (the recorded ``…E`` and ``…A`` items
#: span -22.7 to 22.6 degrees).
_TRACKS: dict[str, tuple[float, ...]] = {
    "A": (-22.5, -11.25, 0.0, 11.25, 22.5),
    "B": (22.5, 33.75, 45.0, 56.25, 67.5),
    "C": (67.5, 76.0, 81.5, 76.0, 67.5),
    "D": (67.5, 56.25, 45.0, 33.75, 22.5),
    "E": (22.5, 11.25, 0.0, -11.25, -22.5),
    "F": (-22.5, -33.75, -45.0, -56.25, -67.5),
    "G": (-67.5, -76.0, -81.5, -76.0, -67.5),
    "H": (-67.5, -56.25, -45.0, -33.75, -22.5),
}


def footprint(spec: CollectionSpec, index: int) -> tuple[dict[str, Any], list[float]]:
    """The item's GeoJSON geometry and bbox: a box for BIOMASS and FLEX, a LineString
    ground track ten degrees of longitude wide for an EarthCARE frame."""
    if spec.kind != "earthcare":
        w, s, e, n = box(index)
        ring = [[w, s], [e, s], [e, n], [w, n], [w, s]]
        return {"type": "Polygon", "coordinates": [ring]}, [w, s, e, n]
    frame = earthcare_frame(spec, index)
    west = -165.0 + ((frame.orbit * 157.3 + _FRAMES.index(frame.letter) * 11.1) % 320.0)
    lats = _TRACKS[frame.letter]
    # northbound, the track runs from east to west
    origin, step = (west + 10.0, -2.5) if frame.letter in _NORTHBOUND else (west, 2.5)
    points = [[round(origin + step * i, 6), lat] for i, lat in enumerate(lats)]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return {"type": "LineString", "coordinates": points}, [min(xs), min(ys), max(xs), max(ys)]


def box(index: int) -> tuple[float, float, float, float]:
    """A one-by-half-degree box somewhere on Earth, different for each index."""
    lon = -179.0 + (index * 7.3) % 357.0
    lat = -60.0 + (index * 3.1) % 119.0
    return (round(lon, 4), round(lat, 4), round(lon + 1.0, 4), round(lat + 0.5, 4))


def folder(spec: CollectionSpec, index: int, item: str) -> str:
    """The item's folder under ``/data/`` (and ``/data/zipper/``): bucket, collection (or,
    for EarthCARE, mission, product type and baseline), date, id."""
    day = f"{_begin(spec, index):%Y/%m/%d}"
    if spec.kind == "earthcare":
        ptype = earthcare_frame(spec, index).ptype
        return f"{spec.bucket}/EarthCARE/{ptype}/{_BASELINE}/{day}/{item}"
    return f"{spec.bucket}/{spec.id}/{day}/{item}"


# -- properties -------------------------------------------------------------------------------

_ISO = "%Y-%m-%dT%H:%M:%S.000Z"


def _auth_schemes(base_url: str) -> dict[str, Any]:
    """``auth:schemes`` as MAAP's items carry them (an S3 scheme and OpenID Connect), the
    discovery URL on the simulator (nothing here reads it)."""
    return {
        "s3": {"type": "s3"},
        "oidc": {
            "openIdConnectUrl": f"{base_url}/realms/sim/.well-known/openid-configuration",
            "type": "openIdConnect",
        },
    }


def properties(
    spec: CollectionSpec, index: int, item: str, bumps: int, base_url: str
) -> dict[str, Any]:
    """An item's properties; ``bumps`` (files replaced on the server) move ``updated``, as
    on MAAP; ``base_url`` is the server's, which ``auth:schemes`` names."""
    if spec.kind == "earthcare":
        return _earthcare_properties(spec, index, item, bumps, base_url)
    start = _begin(spec, index)
    ptype = spec.product_types[index % len(spec.product_types)]
    return {
        "datetime": start.strftime(_ISO),
        "start_datetime": start.strftime(_ISO),
        "end_datetime": (start + spec.duration).strftime(_ISO),
        "updated": (start + timedelta(days=1, hours=bumps)).strftime(_ISO),
        "created": (start + timedelta(hours=6)).strftime(_ISO),
        "platform": spec.platform,
        "instruments": [spec.instrument],
        "instrument": spec.instrument,
        "product:type": ptype,
        "productType": ptype,
        "modificationDate": (start + timedelta(days=1)).strftime(_ISO),
        "processingLevel": "L1" if spec.kind != "flex" else ptype[:3],
        "auth:schemes": _auth_schemes(base_url),
    }


_INSTRUMENTS = {"ATL": "ATLID", "CPR": "CPR", "MSI": "MSI", "BBR": "BBR"}
_PROCESSORS = {"ATL_NOM_1B": "A-L1", "MSI_RGR_1C": "M-L1", "BBR_NOM_1B": "B-L1"}
_PROCESSORS |= {"MSI_COP_2A": "M-CLD", "ATL_EBD_2A": "A-PRO", "CPR_CLD_2A": "C-CLD"}


def _earthcare_properties(
    spec: CollectionSpec, index: int, item: str, bumps: int, base_url: str
) -> dict[str, Any]:
    """The 27 properties of the recorded EarthCARE items, in their order."""
    frame = earthcare_frame(spec, index)
    start = _begin(spec, index)
    made = _processed(spec, index)
    published = made + timedelta(hours=1, minutes=4, seconds=38)
    doi = hashlib.sha1(f"{frame.ptype}/{_BASELINE}".encode()).hexdigest()[:7]
    return {
        "start_datetime": start.strftime(_ISO),
        "end_datetime": (start + spec.duration).strftime(_ISO),
        "processing:facility": "PDGS-CPFxx",
        "product:type": frame.ptype,
        "sat:anx_datetime": frame.anx.strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{frame.anx.microsecond // 1000:03d}Z",
        "title": item,
        "platform": "EarthCARE",
        "datetime": start.strftime(_ISO),
        "instruments": [_INSTRUMENTS.get(frame.ptype[:3], spec.instrument)],
        "constellation": "EarthCARE",
        "sat:orbit_state": "ascending" if frame.letter in _NORTHBOUND else "descending",
        "processing:software": {_PROCESSORS.get(frame.ptype, "PDGS"): "11.30"},
        "grid:code": f"WRS-{frame.orbit}-{frame.letter}",
        "processing:level": f"L{frame.ptype[-2:]}",
        "sci:doi": f"10.57780/eca-{doi}",
        "created": made.strftime(_ISO),
        "published": published.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "version": _BASELINE,
        "auth:schemes": _auth_schemes(base_url),
        "processing:datetime": made.strftime(_ISO),
        "eofeos:mission_phase": "Routine",
        "eopf:instrument_mode": "DEFAULT",
        "updated": (published + timedelta(hours=2 + bumps)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "sat:absolute_orbit": frame.orbit,
        "product:acquisition_type": "other",
    }


def queryables(spec: CollectionSpec, sample: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The JSON Schema of each queryable of ``spec``, ``sample`` being one item's properties.

    EarthCARE collections answer with the names of February 2026 (``product:type``,
    ``sat:absolute_orbit``, ``version``, ``sat:orbit_state``, ``instruments``; the enums as
    the real documents spell them, ``version`` in lower case as MAAP lists it). BIOMASS and
    FLEX list each scalar property of their items, old names included; all list ``id`` and
    ``collection``.
    """
    if spec.kind == "earthcare":
        return _earthcare_queryables(spec)
    props: dict[str, dict[str, Any]] = {}
    for name in sorted({*sample, "id", "collection"}):
        if isinstance(sample.get(name), dict):
            continue  # auth:schemes: not something to filter on
        entry: dict[str, Any] = {"title": name, "type": "string"}
        if name.endswith(("Date", "datetime")) or name in ("updated", "created"):
            entry["format"] = "date-time"
        if name in ("product:type", "productType"):
            entry["enum"] = list(spec.product_types)
        if name == "instrument":
            entry["enum"] = [spec.instrument]
        props[name] = entry
    return props


def _earthcare_queryables(spec: CollectionSpec) -> dict[str, dict[str, Any]]:
    """The five recorded renames plus platform and level; ``processing:datetime`` and
    ``updated`` stand for processingDate and modificationDate (inferred: no post-rename
    document was recorded). ``version`` lists ``ba`` while items say ``BA``: the real
    service compares such values without case."""
    instruments = sorted({_INSTRUMENTS.get(p[:3], spec.instrument) for p in spec.product_types})
    when = {"type": "string", "format": "date-time"}
    return {
        "collection": {"title": "Collection", "type": "string"},
        "datetime": {"title": "Acquisition time", **when},
        "id": {"title": "Item ID", "type": "string"},
        "instruments": {
            "title": "Instrument",
            "description": "An instrument of the item's instruments list",
            "type": "string",
            "enum": instruments,
        },
        "platform": {"title": "Platform", "type": "string", "enum": ["EarthCARE"]},
        "processing:datetime": {"title": "Processing date", **when},
        "processing:level": {
            "title": "Processing level",
            "type": "string",
            "enum": sorted({f"L{p[-2:]}" for p in spec.product_types}),
        },
        "product:type": {
            "title": "Product type",
            "type": "string",
            "enum": sorted(spec.product_types),
        },
        "sat:absolute_orbit": {"title": "Orbit number", "type": "integer", "minimum": 0},
        "sat:orbit_state": {
            "title": "Orbit direction",
            "type": "string",
            "enum": ["ascending", "descending"],
        },
        "updated": {"title": "Modification date", **when},
        "version": {"title": "Product version", "type": "string", "enum": [_BASELINE.lower()]},
    }


# -- assets -----------------------------------------------------------------------------------


class StaticFile(NamedTuple):
    """One static asset of a mission: its key, path under ``/data/`` (``{folder}`` the
    item's folder, ``{id}`` its id, ``{lower}`` the id lower-cased), media type, roles, what
    its bytes are (``content``), the checksum algorithm it advertises (``None``: no
    ``file:checksum``), whether it advertises ``file:size`` and ``file:local_path``, and
    whether it needs the token."""

    key: str
    path: str
    media_type: str
    roles: tuple[str, ...]
    content: str  # png | thumb | kmz | kml | xml | raster | h5 | hdr | jpeg
    checksum: str | None = None
    sized: bool = False
    local_path: bool = False
    auth: bool = True


class _Record(NamedTuple):
    """A ``metadata_*`` asset: the item's catalogue URL with ``query``, served as ``content``
    (``om``, ``iso`` or ``eo-geojson``) with ``media_type``."""

    key: str
    query: str
    media_type: str
    content: str


_PNG, _KMZ, _XML = "image/png", "application/vnd.google-earth.kmz", "application/xml"
_TIFF = "image/tiff; application=geotiff"
_OVERVIEW, _THUMB, _META, _DATA = ("overview",), ("thumbnail",), ("metadata",), ("data",)
_QL = "{folder}/preview/{lower}_ql_pauli.png"
_MAP = "{folder}/preview/{lower}_map.kmz"
_THUMBNAIL = "public/{folder}/{lower}_thumb.png"
_JPEG = "{folder}/public/{id}.BID_1.jpeg"

_STATIC: dict[str, tuple[StaticFile, ...]] = {
    "biomass-2025": (
        StaticFile("quicklook", _QL, _PNG, _OVERVIEW, "png"),
        StaticFile("quicklook_1", _MAP, _KMZ, _OVERVIEW, "kmz"),
        StaticFile("thumbnail", _THUMBNAIL, _PNG, _THUMB, "thumb", auth=False),
    ),
    "biomass-2026": (
        StaticFile("quicklook_png", _QL, _PNG, _OVERVIEW, "png", "sha2-256", True),
        StaticFile("quicklook_kml", _MAP, _KMZ, _OVERVIEW, "kmz", "sha2-256", True),
        StaticFile(
            "enclosure_i_abs_tiff", "{folder}/measurement/{lower}_i_abs.tiff", _TIFF, _DATA,
            "raster", "sha2-512", True,
        ),
        StaticFile(
            "enclosure_i_phase_tiff", "{folder}/measurement/{lower}_i_phase.tiff", _TIFF,
            _DATA, "raster", "sha2-256", True,
        ),
        StaticFile(
            "enclosure_annot_xml", "{folder}/annotation/{lower}_annot.xml", _XML, _META, "xml",
            "md5", True,
        ),
        StaticFile(
            "enclosure_orb_xml", "{folder}/annotation/{lower}_orb.xml", _XML, _META, "xml",
            "sha2-256", True,
        ),
        StaticFile(
            "enclosure_kml", "{folder}/preview/{lower}_map.kml",
            "application/vnd.google-earth.kml+xml", _OVERVIEW, "kml", "sha2-256", True,
        ),
        StaticFile("thumbnail", _THUMBNAIL, _PNG, _THUMB, "thumb", "sha2-256", True, auth=False),
    ),
    "flex": (
        StaticFile("quicklook", "{folder}/{lower}_ql.png", _PNG, _OVERVIEW, "png"),
        StaticFile("metadata", "{folder}/{lower}.xml", _XML, _META, "xml", "sha2-256", True),
    ),
    # In the recorded order of keys; the product and the records sit between these.
    "earthcare": (
        StaticFile("thumbnail", _JPEG, "image/jpeg", _THUMB, "jpeg", auth=False),
        StaticFile(
            "enclosure_h5", "{folder}/{id}/{id}.h5", "application/x-hdf5", _DATA, "h5",
            sized=True, local_path=True,
        ),
        StaticFile("quicklook_jpeg", _JPEG, "image/jpeg", _OVERVIEW, "jpeg", auth=False),
        StaticFile(
            "enclosure_hdr", "{folder}/{id}/{id}.HDR", "image/vnd.radiance", _DATA, "hdr",
            sized=True,
        ),
    ),
}  # fmt: skip

_RECORDS: dict[str, tuple[_Record, ...]] = {
    "earthcare": (
        _Record(
            "metadata_ogc_10_157r4",
            "httpAccept=application/gml%2Bxml&recordSchema=om",
            'application/gml+xml;profile="http://www.opengis.net/spec/EOMPOM/1.1"',
            "om",
        ),
        _Record(
            "metadata_ogc_17_003r2",
            "mode=owc",
            'application/geo+json;profile="http://www.opengis.net/spec/eo-geojson/1.0"',
            "eo-geojson",
        ),
        _Record(
            "metadata_iso_19139",
            "httpAccept=application/vnd.iso.19139%2Bxml",
            "application/vnd.iso.19139+xml",
            "iso",
        ),
    ),
}


def static_files(kind: str) -> tuple[StaticFile, ...]:
    """The static assets of a collection kind, in the order items list them."""
    return _STATIC[kind]


def records(kind: str) -> tuple[_Record, ...]:
    """The ``metadata_*`` catalogue records of a collection kind's items (none but EarthCARE)."""
    return _RECORDS.get(kind, ())


#: The order in which the recorded EarthCARE items list their assets.
_ORDER = {
    "earthcare": (
        "thumbnail",
        "product",
        "metadata_ogc_10_157r4",
        "enclosure_h5",
        "metadata_ogc_17_003r2",
        "metadata_iso_19139",
        "quicklook_jpeg",
        "enclosure_hdr",
    )
}


def asset_order(kind: str) -> tuple[str, ...]:
    """The order of a kind's asset keys where the real items' is recorded (else empty)."""
    return _ORDER.get(kind, ())
