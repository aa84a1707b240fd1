"""The simulated MAAP catalogue's data model: collections, items, assets and their bytes.

Items are computed from (collection, index) on demand, in the shapes of :mod:`.missions`;
nothing is stored but the knobs tests turn: file revisions (a file that changed on the
server), tampered metadata (a catalogue that lies about size or checksum), injected items
(hostile metadata) and one-shot connection cuts.

A file listed under two keys (EarthCARE's ``thumbnail`` and ``quicklook_jpeg``) has the
bytes, the seed and the knobs of its first key.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from ..verify import encode_multihash
from .content import (
    eo_geojson_record,
    hdr_document,
    iso_record,
    kml_document,
    make_h5,
    make_jpeg,
    make_kmz,
    make_png,
    om_record,
    random_bytes,
    xml_document,
)
from .missions import (
    CollectionSpec,
    StaticFile,
    asset_order,
    box,
    default_collections,
    earthcare_frame,
    folder,
    footprint,
    index_of,
    item_id,
    properties,
    queryables,
    records,
    static_files,
)

__all__ = ["AssetFile", "CollectionSpec", "SimCatalog", "default_collections"]

_EPOCH = datetime(2025, 1, 1, tzinfo=UTC).timestamp()
_EXTENSIONS = [
    "https://stac-extensions.github.io/file/v2.1.0/schema.json",
    "https://stac-extensions.github.io/authentication/v1.1.0/schema.json",
    "https://stac-extensions.github.io/product/v1.0.0/schema.json",
]
_HASHERS = {"sha2-256": hashlib.sha256, "sha2-512": hashlib.sha512, "md5": hashlib.md5}


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
        gone = sum(1 for i in self.knobs.removed if index_of(spec, i) is not None)
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
        return item_id(spec, index)

    def index_of(self, collection: str, item: str) -> int | None:
        spec = self.specs.get(collection)
        if spec is None or item in self.knobs.removed:
            return None
        return index_of(spec, item)

    def _seed(self, collection: str, index: int, key: str) -> int:
        digest = hashlib.sha256(f"{collection}/{index}/{key}".encode()).digest()
        return int.from_bytes(digest[:6], "big")

    def item(self, collection: str, index: int) -> dict[str, Any]:
        """The STAC item at ``index`` of ``collection`` (computed, deterministic)."""
        spec = self.specs[collection]
        iid = self.item_id(spec, index)
        geometry, bbox = footprint(spec, index)
        root = f"{self.base_url}/catalogue/"
        bumps = self.knobs.item_revisions.get(iid, 0)
        return {
            "type": "Feature",
            "stac_version": "1.1.0",
            "stac_extensions": list(_EXTENSIONS),
            "id": iid,
            "collection": collection,
            "bbox": bbox,
            "geometry": geometry,
            "properties": properties(spec, index, iid, bumps, self.base_url),
            "assets": self._assets(spec, index, iid),
            "links": [
                {
                    "rel": "self",
                    "href": f"{root}collections/{collection}/items/{iid}",
                    "type": "application/geo+json",
                },
                {
                    "rel": "collection",
                    "href": f"{root}collections/{collection}",
                    "type": "application/json",
                },
                {"rel": "root", "href": root, "type": "application/json"},
            ],
        }

    def _assets(self, spec: CollectionSpec, index: int, iid: str) -> dict[str, dict[str, Any]]:
        """An item's assets: the zipper's product, the static files and catalogue records of
        its mission, and the lies its tamper knobs tell about them."""
        data = f"{self.base_url}/data"
        where = folder(spec, index, iid)
        assets: dict[str, dict[str, Any]] = {"product": self._product(spec, where, iid)}
        for row in static_files(spec.kind):
            href = f"{data}/" + row.path.format(folder=where, id=iid, lower=iid.lower())
            assets[row.key] = self._static(spec.id, index, href, row)
        item_url = f"{self.base_url}/catalogue/collections/{spec.id}/items/{iid}"
        for record in records(spec.kind):
            assets[record.key] = {
                "href": f"{item_url}?{record.query}",
                "type": record.media_type,
                "roles": ["metadata"],
            }
        order = asset_order(spec.kind)
        if order:
            assets = {key: assets[key] for key in order}
        for key in list(assets):
            mode = self.knobs.tamper.get(f"{iid}/{key}")
            if mode == "size" and "file:size" in assets[key]:
                assets[key]["file:size"] += 17
            elif mode == "checksum" and "file:checksum" in assets[key]:
                assets[key]["file:checksum"] = encode_multihash(
                    "sha2-256", hashlib.sha256(b"lie").digest()
                )
        return assets

    def _product(self, spec: CollectionSpec, where: str, iid: str) -> dict[str, Any]:
        """The zipper's product: no ``file:size`` (it is built on the fly). EarthCARE's has
        the roles ``data, metadata, archive`` and no ``file:local_path`` (none recorded)."""
        product: dict[str, Any] = {
            "href": f"{self.base_url}/data/zipper/{where}/{iid}",
            "type": "application/zip",
            "title": "Zipped product",
            "roles": ["data"],
            "file:local_path": f"{iid}.ZIP",
            "auth:refs": ["oidc"],
        }
        if spec.kind == "earthcare":
            product["roles"] = ["data", "metadata", "archive"]
            del product["file:local_path"]
        return product

    def _static(self, collection: str, index: int, href: str, row: StaticFile) -> dict[str, Any]:
        """A static asset from its row: ``file:size`` and ``file:checksum`` where the row
        advertises them (the 2026 BIOMASS files, EarthCARE's enclosures), the token where
        it is needed."""
        name = href.rsplit("/", 1)[-1]
        asset: dict[str, Any] = {"href": href, "type": row.media_type, "roles": list(row.roles)}
        asset["title"] = name
        if row.auth:
            asset["auth:refs"] = ["oidc"]
        if row.local_path:
            asset["file:local_path"] = name
        if row.sized or row.checksum is not None:
            body = self.static_body(collection, index, row.key)
            asset["file:size"] = len(body)
            if row.checksum is not None:
                digest = _HASHERS[row.checksum](body).digest()
                asset["file:checksum"] = encode_multihash(row.checksum, digest)
        return asset

    def revision(self, item: str, key: str) -> int:
        return self.knobs.revisions.get(f"{item}/{key}", 0)

    def _row(self, spec: CollectionSpec, key: str) -> StaticFile | None:
        """The row of ``key``; for a file under two keys, the row of its first key."""
        rows = static_files(spec.kind)
        row = next((r for r in rows if r.key == key), None)
        return None if row is None else next(r for r in rows if r.path == row.path)

    def static_body(self, collection: str, index: int, key: str) -> bytes:
        """The bytes of a static asset (cached, bounded to 64 MiB)."""
        spec = self.specs[collection]
        row = self._row(spec, key)
        key = row.key if row is not None else key
        iid = self.item_id(spec, index)
        rev = self.revision(iid, key)
        cache_key = (collection, index, key, rev)
        with self._lock:
            hit = self._cache.get(cache_key)
            if hit is not None:
                self._cache.move_to_end(cache_key)
                return hit
        body = self._make_body(spec, index, row.content if row else "raster", key)
        with self._lock:
            self._cache[cache_key] = body
            self._cache_bytes += len(body)
            while self._cache_bytes > 64 << 20 and self._cache:
                _, old = self._cache.popitem(last=False)
                self._cache_bytes -= len(old)
        return body

    def _make_body(self, spec: CollectionSpec, index: int, content: str, key: str) -> bytes:
        """Fresh bytes of one file: ``content`` says what kind (see :class:`StaticFile`)."""
        iid = self.item_id(spec, index)
        rev = self.revision(iid, key)
        seed = self._seed(spec.id, index, key) + rev * 7919
        lower, size = iid.lower(), spec.enclosure_size + index % 13 * 1024
        if content == "thumb":
            return make_png(seed, 48, 32)
        if content == "png":
            return make_png(seed, 160 + index % 5 * 20, 120)
        if content == "kmz":
            return make_kmz(iid, f"{lower}_ql.png", box(index))
        if content == "kml":
            text = kml_document(iid, f"{lower}_ql.png", box(index))
            return (text + (f"<!-- revision {rev} -->\n" if rev else "")).encode()
        if content == "xml":
            return xml_document(iid, seed, 4096 + index % 7 * 512)
        if content == "jpeg":
            return make_jpeg(seed, comment=iid)
        if content == "h5":
            return make_h5(seed, size)
        if content == "hdr":
            return hdr_document(self._header(spec, index, rev))
        return random_bytes(seed, size)

    def _header(self, spec: CollectionSpec, index: int, rev: int) -> dict[str, str | int]:
        """The fields of an EarthCARE product's ``.HDR``, from its item's properties."""
        iid = self.item_id(spec, index)
        props = properties(spec, index, iid, 0, self.base_url)
        frame = earthcare_frame(spec, index)
        software = next(iter(props["processing:software"].items()))
        return {
            "File_Name": iid,
            "File_Description": f"EarthCARE {props['processing:level']} product",
            "Mission": "EarthCARE",
            "File_Class": f"EX{props['version']}",
            "File_Type": frame.ptype,
            "Validity_Start": f"UTC={props['start_datetime'][:19]}",
            "Validity_Stop": f"UTC={props['end_datetime'][:19]}",
            "File_Version": f"{rev + 1:04d}",
            "Creator": software[0],
            "Creator_Version": software[1],
            "Creation_Date": f"UTC={props['created'][:19]}",
            "Orbit_Number": frame.orbit,
            "Frame_ID": frame.letter,
        }

    def record(
        self, collection: str, index: int, query: Mapping[str, str]
    ) -> tuple[bytes, str] | None:
        """The catalogue record a ``metadata_*`` asset links to — the item's URL with that
        asset's query (``httpAccept=…``, ``mode=owc``) — as (body, media type); ``None``
        when ``query`` is no record's (the item's own GeoJSON then)."""
        spec = self.specs[collection]
        asked = dict(query)
        for row in records(spec.kind):
            if dict(parse_qsl(row.query)) == asked:
                item = self.item(collection, index)
                make = {"om": om_record, "iso": iso_record, "eo-geojson": eo_geojson_record}
                return make[row.content](item), row.media_type
        return None

    def sample_properties(self, collection: str) -> dict[str, Any]:
        """The properties of the collection's first item (none if it has no items): the
        names every item of it carries."""
        spec = self.specs[collection]
        return properties(spec, 0, self.item_id(spec, 0), 0, self.base_url) if spec.count else {}

    def queryables(self, collection: str) -> dict[str, dict[str, Any]]:
        """The JSON Schema of each queryable of ``collection`` (see :func:`.missions.queryables`)."""
        return queryables(self.specs[collection], self.sample_properties(collection))

    def _located(self, parts: list[str]) -> Iterator[tuple[str, int]]:
        """(collection, index) of each generated item whose id is a segment of ``parts``."""
        for segment in parts:
            for cid in self.specs:
                index = self.index_of(cid, segment)
                if index is not None:
                    yield cid, index

    def resolve(self, path: str) -> tuple[str, AssetFile] | None:
        """Map a data URL path (``/data/...``) to (``item/key``, file), or ``None`` (404)."""
        parts = path.strip("/").split("/")
        if len(parts) < 3 or parts[0] != "data":
            return None
        url = f"{self.base_url}{path}"
        for collection, index in self._located(parts[1:]):
            item = self.item(collection, index)
            key = next((k for k, a in item["assets"].items() if a.get("href") == url), None)
            if key is not None:
                return self._file(collection, index, key, item)
        return None

    def _file(
        self, collection: str, index: int, key: str, item: dict[str, Any]
    ) -> tuple[str, AssetFile]:
        """What the data server needs to serve ``key`` of the item at ``index``."""
        iid = item["id"]
        slot = f"{iid}/{key}"
        seed = self._seed(collection, index, key)
        rev = self.revision(iid, key)
        if item["assets"][key]["href"].startswith(f"{self.base_url}/data/zipper/"):
            spec = self.specs[collection]
            size = spec.product_size + (index % 11) * 65_536
            return slot, AssetFile(
                "zipper",
                seed + rev * 7919,
                iid,
                "application/zip",
                rev,
                size=size,
                corrupt=self.knobs.tamper.get(slot) == "corrupt",
            )
        body = self.static_body(collection, index, key)
        media_type = item["assets"][key]["type"]
        return slot, AssetFile("static", seed, iid, media_type, rev, body=body)
