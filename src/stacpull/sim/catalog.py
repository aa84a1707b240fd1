"""The simulated MAAP catalogue's data model: collections, items, assets and their bytes.

Items are computed from (collection, index) on demand; nothing is stored but the knobs
tests turn: file revisions (a file that changed on the server), tampered metadata (a
catalogue that lies about size or checksum), injected items (hostile metadata) and one-shot
connection cuts.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ..verify import encode_multihash
from .content import make_kmz, make_png, random_bytes, xml_document

__all__ = ["AssetFile", "CollectionSpec", "SimCatalog", "default_collections"]

_BASE36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_EPOCH = datetime(2025, 1, 1, tzinfo=UTC).timestamp()


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


_PNG = "image/png"
_KMZ = "application/vnd.google-earth.kmz"
_XML = "application/xml"
_OVERVIEW, _THUMB, _META, _DATA = ["overview"], ["thumbnail"], ["metadata"], ["data"]

#: Static assets per collection kind: key, path under /data/, media type, roles, the
#: checksum function (None: no file:size/file:checksum, as in 2025) and whether a token is
#: needed. ``{folder}`` is bucket/collection/yyyy/mm/dd/item, ``{lower}`` the id lower-cased.
#: One static asset: key, path template, media type, roles, checksum algorithm, token needed.
_StaticAsset = tuple[str, str, str, list[str], str | None, bool]
_STATIC_ASSETS: dict[str, list[_StaticAsset]] = {
    "biomass-2025": [
        ("quicklook", "{folder}/preview/{lower}_ql_pauli.png", _PNG, _OVERVIEW, None, True),
        ("quicklook_1", "{folder}/preview/{lower}_map.kmz", _KMZ, _OVERVIEW, None, True),
        ("thumbnail", "public/{folder}/{lower}_thumb.png", _PNG, _THUMB, None, False),
    ],
    "biomass-2026": [
        (
            "quicklook_png",
            "{folder}/preview/{lower}_ql_pauli.png",
            _PNG,
            _OVERVIEW,
            "sha2-256",
            True,
        ),
        ("quicklook_kml", "{folder}/preview/{lower}_map.kmz", _KMZ, _OVERVIEW, "sha2-256", True),
        ("enclosure_annot_xml", "{folder}/annotation/{lower}_annot.xml", _XML, _META, "md5", True),
        (
            "enclosure_abs_tiff",
            "{folder}/measurement/{lower}_i_abs.tiff",
            "image/tiff; application=geotiff",
            _DATA,
            "sha2-512",
            True,
        ),
        (
            "enclosure_lut_nc",
            "{folder}/annotation/{lower}_lut.nc",
            "application/x-netcdf",
            _META,
            "sha2-256",
            True,
        ),
        ("thumbnail", "public/{folder}/{lower}_thumb.png", _PNG, _THUMB, "sha2-256", False),
    ],
    "flex": [
        ("quicklook", "{folder}/{lower}_ql.png", _PNG, _OVERVIEW, None, True),
        ("metadata", "{folder}/{lower}.xml", _XML, _META, "sha2-256", True),
    ],
}


@dataclass(frozen=True, slots=True)
class CollectionSpec:
    """One synthetic collection. ``kind``: ``biomass-2025``, ``biomass-2026`` or ``flex``."""

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
    platform: str = "BIOMASS"
    instrument: str = "P-SAR"
    product_types: tuple[str, ...] = ("S1_SCS__1S",)


def default_collections(count: int = 24, product_size: int = 4_000_000) -> list[CollectionSpec]:
    """BIOMASS L1a (2025 keys), BIOMASS L1c (2026 keys) and FLEX, ``count`` items each."""
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
    ]


@dataclass(slots=True)
class AssetFile:
    """What the data server needs to serve one asset."""

    kind: str  # "static" or "zipper"
    seed: int
    item_id: str
    media_type: str
    revision: int
    body: bytes = b""  # static assets
    size: int = 0  # zipper: target size
    corrupt: bool = False  # zipper: a byte flipped after the CRC

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha1(f"{self.seed}:{self.revision}".encode()).hexdigest()[:20] + '"'

    @property
    def last_modified(self) -> float:
        return _EPOCH + (self.seed % 10_000_000) + self.revision * 3600.0


@dataclass
class _Knobs:
    revisions: dict[str, int] = field(default_factory=dict)  # "item/key" -> revision
    item_revisions: dict[str, int] = field(default_factory=dict)  # item id -> sum of bumps
    tamper: dict[str, str] = field(
        default_factory=dict
    )  # "item/key" -> size|checksum|corrupt|truncate
    cuts: dict[str, int] = field(default_factory=dict)  # "item/key" -> cut after N bytes, once
    stalls: dict[str, tuple[int, float]] = field(default_factory=dict)  # -> (after, seconds), once
    removed: set[str] = field(default_factory=set)  # item ids that left the catalogue
    extra: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


class SimCatalog:
    """All collections of one simulated catalogue, and the knobs tests turn."""

    def __init__(self, specs: list[CollectionSpec], base_url: str = "http://127.0.0.1") -> None:
        self.specs = {s.id: s for s in specs}
        self.base_url = base_url.rstrip("/")
        self.knobs = _Knobs()
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        self._cache_bytes = 0

    # -- knobs ----------------------------------------------------------------------------
    def bump(self, item_id: str, key: str) -> None:
        """The file behind ``item_id/key`` changes on the server (new bytes, ETag, date)."""
        with self._lock:
            slot = f"{item_id}/{key}"
            self.knobs.revisions[slot] = self.knobs.revisions.get(slot, 0) + 1
            self.knobs.item_revisions[item_id] = self.knobs.item_revisions.get(item_id, 0) + 1

    def tamper(self, item_id: str, key: str, mode: str) -> None:
        """Make the catalogue lie: ``size`` or ``checksum`` in metadata, a zipper that sends
        a ``corrupt`` (bad CRC) or ``truncate``-d (no central directory) zip, or a
        ``login`` page (HTML, 200) served instead of the file, as an SSO proxy does."""
        if mode not in ("size", "checksum", "corrupt", "truncate", "login"):
            raise ValueError(f"unknown tamper mode {mode!r}")
        with self._lock:
            self.knobs.tamper[f"{item_id}/{key}"] = mode

    def cut(self, item_id: str, key: str, after: int) -> None:
        """The next response for ``item_id/key`` drops the connection after ``after`` bytes."""
        with self._lock:
            self.knobs.cuts[f"{item_id}/{key}"] = after

    def take_cut(self, item_id: str, key: str) -> int | None:
        with self._lock:
            return self.knobs.cuts.pop(f"{item_id}/{key}", None)

    def stall(self, item_id: str, key: str, after: int, seconds: float) -> None:
        """The next response for ``item_id/key`` pauses ``seconds`` after ``after`` bytes."""
        with self._lock:
            self.knobs.stalls[f"{item_id}/{key}"] = (after, seconds)

    def take_stall(self, item_id: str, key: str) -> tuple[int, float] | None:
        with self._lock:
            return self.knobs.stalls.pop(f"{item_id}/{key}", None)

    def remove_item(self, item_id: str) -> None:
        """``item_id`` leaves the catalogue: no longer listed, its files answer 404."""
        with self._lock:
            self.knobs.removed.add(item_id)

    def add_item(self, collection: str, item: dict[str, Any]) -> None:
        """Inject a hand-written item (hostile metadata, foreign hrefs) into a collection."""
        with self._lock:
            self.knobs.extra.setdefault(collection, []).append(item)

    # -- items ----------------------------------------------------------------------------
    def count(self, collection: str) -> int:
        spec = self.specs[collection]
        gone = sum(1 for i in self.knobs.removed if self._generated_index(spec, i) is not None)
        return spec.count - gone + len(self.knobs.extra.get(collection, []))

    def iter_items(self, collection: str, start: int = 0) -> Iterator[tuple[int, dict[str, Any]]]:
        """(position, item) from ``start`` on; positions are stable across requests."""
        spec = self.specs[collection]
        for i in range(start, spec.count):
            if self.knobs.removed and self.item_id(spec, i) in self.knobs.removed:
                continue
            yield i, self.item(collection, i)
        extra = self.knobs.extra.get(collection, [])
        for j in range(max(0, start - spec.count), len(extra)):
            yield spec.count + j, extra[j]

    def item_id(self, spec: CollectionSpec, index: int) -> str:
        begin = spec.start + spec.step * index
        end = begin + spec.duration
        fmt = "%Y%m%dT%H%M%S"
        ptype = spec.product_types[index % len(spec.product_types)]
        if spec.kind == "flex":
            return f"FLX_{ptype}_{begin:{fmt}}_{end:{fmt}}_{_code(index)}"
        frame = 1 + index % 180
        return f"BIO_{ptype}_{begin:{fmt}}_{end:{fmt}}_C_G___M___C___T____F{frame:03d}_01_{_code(index)}"

    def index_of(self, collection: str, item_id: str) -> int | None:
        spec = self.specs.get(collection)
        if spec is None or item_id in self.knobs.removed:
            return None
        return self._generated_index(spec, item_id)

    def _generated_index(self, spec: CollectionSpec, item_id: str) -> int | None:
        if len(item_id) < 6:
            return None
        try:
            index = _decode(item_id[-6:])
        except ValueError:
            return None
        if 0 <= index < spec.count and self.item_id(spec, index) == item_id:
            return index
        return None  # not generated here (removed ids are the caller's business)

    def _seed(self, collection: str, index: int, key: str) -> int:
        digest = hashlib.sha256(f"{collection}/{index}/{key}".encode()).digest()
        return int.from_bytes(digest[:6], "big")

    def _bbox(self, index: int) -> tuple[float, float, float, float]:
        lon = -179.0 + (index * 7.3) % 357.0
        lat = -60.0 + (index * 3.1) % 119.0
        return (round(lon, 4), round(lat, 4), round(lon + 1.0, 4), round(lat + 0.5, 4))

    def item(self, collection: str, index: int) -> dict[str, Any]:
        """The STAC item at ``index`` of ``collection`` (computed, deterministic)."""
        spec = self.specs[collection]
        item_id = self.item_id(spec, index)
        w, s, e, n = self._bbox(index)
        return {
            "type": "Feature",
            "stac_version": "1.1.0",
            "stac_extensions": ["https://stac-extensions.github.io/file/v2.1.0/schema.json"],
            "id": item_id,
            "collection": collection,
            "bbox": [w, s, e, n],
            "geometry": {
                "type": "Polygon",
                "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]],
            },
            "properties": self._properties(spec, index, item_id),
            "assets": self._assets(spec, index, item_id),
            "links": [
                {
                    "rel": "self",
                    "href": f"{self.base_url}/catalogue/collections/{collection}/items/{item_id}",
                    "type": "application/geo+json",
                },
                {
                    "rel": "collection",
                    "href": f"{self.base_url}/catalogue/collections/{collection}",
                    "type": "application/json",
                },
                {"rel": "root", "href": f"{self.base_url}/catalogue/", "type": "application/json"},
            ],
        }

    def _properties(self, spec: CollectionSpec, index: int, item_id: str) -> dict[str, Any]:
        """An item's properties, with the times of its acquisition and of its last update."""
        begin = spec.start + spec.step * index
        end = begin + spec.duration
        ptype = spec.product_types[index % len(spec.product_types)]
        iso = "%Y-%m-%dT%H:%M:%S.000Z"
        return {
            "datetime": begin.strftime(iso),
            "start_datetime": begin.strftime(iso),
            "end_datetime": end.strftime(iso),
            # A file replaced on the server (bump) moves the item's `updated`, as on MAAP.
            "updated": (
                begin + timedelta(days=1, hours=self.knobs.item_revisions.get(item_id, 0))
            ).strftime(iso),
            "created": (begin + timedelta(hours=6)).strftime(iso),
            "platform": spec.platform.lower(),
            "instruments": [spec.instrument],
            "instrument": spec.instrument,
            "product:type": ptype,
            "productType": ptype,
            "modificationDate": (begin + timedelta(days=1)).strftime(iso),
            "processingLevel": "L1" if spec.kind != "flex" else ptype[:3],
        }

    def _assets(self, spec: CollectionSpec, index: int, item_id: str) -> dict[str, dict[str, Any]]:
        """An item's assets: the zipper's product, the static files of its generation, and
        the lies its tamper knobs tell about them."""
        begin = spec.start + spec.step * index
        data = f"{self.base_url}/data"
        folder = f"{spec.bucket}/{spec.id}/{begin:%Y/%m/%d}/{item_id}"
        lower = item_id.lower()
        assets: dict[str, dict[str, Any]] = {
            "product": {
                "href": f"{data}/zipper/{folder}/{item_id}",
                "type": "application/zip",
                "title": "Zipped product",
                "roles": ["data"],
                "file:local_path": f"{item_id}.ZIP",
                "auth:refs": ["oidc"],
            }
        }
        for row in _STATIC_ASSETS[spec.kind]:
            href = f"{data}/" + row[1].format(folder=folder, lower=lower)
            assets[row[0]] = self._static(spec.id, index, href, row)
        for key in list(assets):
            mode = self.knobs.tamper.get(f"{item_id}/{key}")
            if mode == "size" and "file:size" in assets[key]:
                assets[key]["file:size"] += 17
            elif mode == "checksum" and "file:checksum" in assets[key]:
                assets[key]["file:checksum"] = encode_multihash(
                    "sha2-256", hashlib.sha256(b"lie").digest()
                )
        return assets

    def _static(self, collection: str, index: int, href: str, row: _StaticAsset) -> dict[str, Any]:
        """A static asset from its row of ``_STATIC_ASSETS`` (key, path, media type, roles,
        checksum algorithm or ``None``, whether it needs the token)."""
        key, _path, media_type, roles, algo, auth = row
        asset: dict[str, Any] = {
            "href": href,
            "type": media_type,
            "roles": roles,
            "title": href.rsplit("/", 1)[-1],
        }
        if auth:
            asset["auth:refs"] = ["oidc"]
        if algo is not None:  # the 2026 generation carries file:size and file:checksum
            body = self.static_body(collection, index, key)
            hasher = {"sha2-256": hashlib.sha256, "sha2-512": hashlib.sha512, "md5": hashlib.md5}[
                algo
            ]
            asset["file:size"] = len(body)
            asset["file:checksum"] = encode_multihash(algo, hasher(body).digest())
        return asset

    def revision(self, item_id: str, key: str) -> int:
        return self.knobs.revisions.get(f"{item_id}/{key}", 0)

    def static_body(self, collection: str, index: int, key: str) -> bytes:
        """The bytes of a static asset (cached, bounded to 64 MiB)."""
        spec = self.specs[collection]
        item_id = self.item_id(spec, index)
        rev = self.revision(item_id, key)
        cache_key = (collection, index, key, rev)
        with self._lock:
            hit = self._cache.get(cache_key)
            if hit is not None:
                self._cache.move_to_end(cache_key)
                return hit
        seed = self._seed(collection, index, key) + rev * 7919
        lower = item_id.lower()
        if key == "thumbnail":
            body = make_png(seed, 48, 32)
        elif key.endswith("png") or key == "quicklook":
            body = make_png(seed, 160 + index % 5 * 20, 120)
        elif key in ("quicklook_1", "quicklook_kml"):
            body = make_kmz(item_id, f"{lower}_ql.png", self._bbox(index))
        elif key.endswith("xml") or key == "metadata":
            body = xml_document(item_id, seed, 4096 + index % 7 * 512)
        else:
            body = random_bytes(seed, spec.enclosure_size + index % 13 * 1024)
        with self._lock:
            self._cache[cache_key] = body
            self._cache_bytes += len(body)
            while self._cache_bytes > 64 << 20 and self._cache:
                _, old = self._cache.popitem(last=False)
                self._cache_bytes -= len(old)
        return body

    def resolve(self, path: str) -> tuple[str, AssetFile] | None:
        """Map a data URL path (``/data/...``) to (``item/key``, file), or ``None`` (404)."""
        parts = path.strip("/").split("/")
        if len(parts) < 2 or parts[0] != "data":
            return None
        zipper = parts[1] == "zipper"
        rest = parts[2:] if zipper or parts[1] == "public" else parts[1:]
        # rest: bucket / collection / yyyy / mm / dd / item_id / ...
        if len(rest) < 7:
            return None
        collection, item_id = rest[1], rest[5]
        index = self.index_of(collection, item_id)
        if index is None:
            return None
        item = self.item(collection, index)
        url = f"{self.base_url}{path}"
        for key, asset in item["assets"].items():
            if asset["href"] != url:
                continue
            slot = f"{item_id}/{key}"
            seed = self._seed(collection, index, key)
            rev = self.revision(item_id, key)
            if zipper:
                spec = self.specs[collection]
                size = spec.product_size + (index % 11) * 65_536
                return slot, AssetFile(
                    "zipper",
                    seed + rev * 7919,
                    item_id,
                    "application/zip",
                    rev,
                    size=size,
                    corrupt=self.knobs.tamper.get(slot) == "corrupt",
                )
            body = self.static_body(collection, index, key)
            return slot, AssetFile("static", seed, item_id, asset["type"], rev, body=body)
        return None
