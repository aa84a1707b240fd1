"""Saved searches: STAC items to a GeoJSON ItemCollection, CSV or Parquet, and back.

The CSV (and Parquet) columns are the flattened table of MAAP's notebooks, under the
notebooks' own names, so code written for their pandas DataFrame keeps working:
``id, collection, datetime, product_type, download_url, product_name, quicklook_url,
quicklook_name, kmz_url, kmz_name, last_modified``. The product, quicklook and KMZ are
found by the MAAP profile whatever generation of asset keys an item uses, and named as
stacpull would save them. Items are written as they arrive (GeoJSON and CSV), so a saved
search of any size needs no memory; ``stacpull download --from items.geojson`` reads a
GeoJSON one back. Parquet needs the optional ``pyarrow`` (``stacpull[parquet]``).
"""

from __future__ import annotations

import csv
import functools
import json
import re
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from . import safeio
from .errors import ConfigError, scrub

if TYPE_CHECKING:
    # Planning and the search client are loaded by the first row written, not on import:
    # the command line reads FORMATS when it starts (benchmarks/startup.py).
    from .plan import PlanRules
    from .search import ItemPages, Page

__all__ = ["FORMATS", "ItemWriter", "item_row", "saved_pages"]

_CSV_COLUMNS = (
    "id",
    "collection",
    "datetime",
    "product_type",
    "download_url",
    "product_name",
    "quicklook_url",
    "quicklook_name",
    "kmz_url",
    "kmz_name",
    "last_modified",
)
FORMATS = ("geojson", "csv", "parquet")


@functools.cache
def _names() -> PlanRules:
    """Each asset named as the server names it: the notebook's file-name columns."""
    from .plan import PlanRules

    return PlanRules(("maap",), "{name}")


def _format_of(path: Path, given: str | None) -> str:
    if given:
        return given
    suffix = path.suffix.lower()
    if suffix in (".json", ".geojson"):
        return "geojson"
    if suffix in (".csv", ".parquet"):
        return suffix[1:]
    raise ConfigError(
        f"-o {path}: cannot tell the format from the extension; use .geojson, .json, .csv "
        "or .parquet, or --format"
    )


def item_row(item: Mapping[str, Any]) -> dict[str, Any]:
    """One item as the notebook's flattened row (empty strings where an asset is absent)."""
    props = item.get("properties")
    props = props if isinstance(props, dict) else {}
    raw_assets = item.get("assets")
    assets = {
        k: v
        for k, v in (raw_assets.items() if isinstance(raw_assets, dict) else ())
        if isinstance(v, dict)
    }
    from .plan import plan_item
    from .selection import maap_slots

    slots = maap_slots(assets)
    jobs, _ = plan_item(item, _names())
    names = {job.asset_key: job.dest for job in jobs}
    urls = {job.asset_key: job.url for job in jobs}

    def slot(name: str) -> tuple[str, str]:
        key = slots.get(name)
        return (urls.get(key, ""), names.get(key, "")) if key else ("", "")

    product_url, product_name = slot("product")
    quicklook_url, quicklook_name = slot("quicklook")
    kmz_url, kmz_name = slot("overview")
    product_type = props.get("product:type") or props.get("productType") or ""
    return {
        "id": item.get("id", ""),
        "collection": item.get("collection", ""),
        "datetime": props.get("datetime") or props.get("start_datetime") or "",
        "product_type": product_type,
        "download_url": product_url,
        "product_name": product_name,
        "quicklook_url": quicklook_url,
        "quicklook_name": quicklook_name,
        "kmz_url": kmz_url,
        "kmz_name": kmz_name,
        "last_modified": props.get("updated") or "",
    }


class ItemWriter:
    """Writes items one by one to ``path`` in ``fmt`` (from the extension when ``None``);
    ``-`` is standard output (GeoJSON unless ``fmt`` says CSV).

    The file appears under its name only once complete (written to ``.part``, renamed on
    a clean exit), so a saved search is never a truncated file; on ``-`` a search cut short
    leaves its GeoJSON unfinished, never a valid collection. A ``path`` that exists and
    is not a regular file (a link, device, FIFO) is refused, never written through nor
    replaced.
    """

    def __init__(self, path: Path, fmt: str | None = None, *, catalog: str | None = None) -> None:
        self.path = path
        # Recorded as the root link, so --from knows where it came from (not its password).
        self.catalog = scrub(catalog) if catalog else catalog
        self._stdout = str(path) == "-"
        self.format = (fmt or "geojson") if self._stdout else _format_of(path, fmt)
        self.count = 0
        self._part = path.with_name(path.name + ".part")
        self._file: IO[str] | None = None
        self._csv: Any = None
        self._rows: list[dict[str, Any]] = []
        if self._stdout and self.format == "parquet":
            raise ConfigError("-o -: Parquet cannot be written to standard output; use .parquet")
        kind = None if self._stdout else safeio.not_regular(path)
        if kind is not None:
            raise ConfigError(
                f"-o {path}: not a regular file ({kind}); name a new or a regular file, "
                "or - for standard output"
            )
        if self.format == "parquet":
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise ConfigError(
                    "Parquet needs pyarrow: pip install 'stacpull[parquet]' (or use .csv)"
                ) from None

    def __enter__(self) -> ItemWriter:
        if self.format == "parquet":
            return self
        try:
            self._file = sys.stdout if self._stdout else safeio.create_new(self._part)
        except OSError as exc:
            raise ConfigError(f"-o {self.path}: cannot write: {exc.strerror or exc}") from None
        if self.format == "csv":
            self._csv = csv.DictWriter(self._file, fieldnames=_CSV_COLUMNS)
            self._csv.writeheader()
        else:
            links = [{"rel": "root", "href": self.catalog}] if self.catalog else []
            self._file.write(
                f'{{"type": "FeatureCollection", "links": {json.dumps(links)}, "features": [\n'
            )
        return self

    def write(self, item: Mapping[str, Any]) -> None:
        """Add one item."""
        if self.format == "csv":
            self._csv.writerow(item_row(item))
        elif self.format == "parquet":
            self._rows.append(item_row(item))
        else:
            assert self._file is not None
            self._file.write((",\n" if self.count else "") + json.dumps(item))
        self.count += 1

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.format == "parquet":
            if kind is None:
                self._write_parquet()
            return
        assert self._file is not None
        if self._stdout and kind is not None:
            # A pipe cannot be renamed into place once whole: a cut search leaves it
            # unfinished (unparseable), never a valid collection of what came first.
            self._file.flush()
            return
        if self.format == "geojson":
            self._file.write(f'\n], "numberReturned": {self.count}}}\n')
        if self._stdout:
            self._file.flush()
            return
        self._file.close()
        if kind is None:
            self._publish()
        else:
            self._part.unlink(missing_ok=True)

    def _publish(self) -> None:
        try:
            safeio.replace_regular(self._part, self.path)
        except OSError as exc:
            raise ConfigError(f"-o {self.path}: not replaced: {exc.strerror or exc}") from None

    def _write_parquet(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table({c: [str(r[c]) for r in self._rows] for c in _CSV_COLUMNS})
        try:
            with safeio.create_new(self._part, binary=True) as f:
                pq.write_table(table, f)
        except OSError as exc:
            raise ConfigError(f"-o {self.path}: cannot write: {exc.strerror or exc}") from None
        self._publish()


@dataclass(frozen=True, slots=True)
class _SavedSearch:
    """A saved search read back: its items as search pages, the catalogue it came from
    (``None`` when the file does not tell, or its links disagree), and the warnings about
    what it named and was not believed."""

    pages: ItemPages
    catalog: str | None
    count: int
    warnings: tuple[str, ...] = ()


# A host name or address a link may name as the catalogue (nothing a terminal would act on).
_HOST = re.compile(r"[a-z0-9.\-]+|[0-9a-f:.]+")
_GEOJSON_HINT = "save one with `stacpull search -o items.geojson` or `stac-client search`"


def saved_pages(
    path: Path | str, page_size: int = 100, *, data: bytes | None = None
) -> _SavedSearch:
    """``--from FILE`` (``-``: standard output of another program, given as ``data``): the
    items of a GeoJSON ItemCollection, a FeatureCollection, a single Item, newline-delimited
    items or collections, or stac-geoparquet, as search pages in place of a search. CSV is
    refused (the notebook's columns are not enough to download). Raises
    :class:`ConfigError` with what is wrong, in one line."""
    name = "standard input" if str(path) == "-" else str(path)
    if data is None:
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            raise ConfigError(f"--from: {name} does not exist") from None
        except OSError as exc:
            raise ConfigError(f"--from: {name} cannot be read: {exc.strerror or exc}") from None
    if data.startswith(b"PAR1"):
        documents = [_parquet_collection(data, name)]
    elif str(path).lower().endswith(".csv") or _looks_like_csv(data):
        raise ConfigError(
            f"--from: {name} is CSV: the notebook's columns lack the metadata a download "
            f"needs (every asset, its size and checksum); {_GEOJSON_HINT}"
        )
    else:
        documents = _json_documents(data, name)
    features: list[dict[str, Any]] = []
    roots: list[Any] = []
    for doc in documents:
        if isinstance(doc, dict) and doc.get("type") == "Feature":
            features.append(doc)
            continue
        if not isinstance(doc, dict) or not isinstance(doc.get("features"), list):
            raise ConfigError(
                f"--from: {name} holds no features; it must be a GeoJSON ItemCollection "
                f"({_GEOJSON_HINT})"
            )
        features.extend(f for f in doc["features"] if isinstance(f, dict))
        roots.extend(_links(doc, "root"))
    catalog, warnings = _catalogue(roots, features, name)

    async def pages() -> AsyncIterator[Page]:
        for start in range(0, len(features), page_size):
            yield features[start : start + page_size], len(features)
        if not features:
            yield [], 0

    return _SavedSearch(pages, catalog, len(features), tuple(warnings))


def _looks_like_csv(data: bytes) -> bool:
    first = data.lstrip()[:200].split(b"\n", 1)[0]
    return not first.startswith((b"{", b"[")) and first.count(b",") >= 2


def _json_documents(data: bytes, name: str) -> list[Any]:
    """One JSON document, or one per line (``stac-client`` and ``jq -c`` print those)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"--from: {name} is not a GeoJSON ItemCollection: {exc}") from None
    try:
        try:
            return [json.loads(text)]
        except ValueError as whole:
            lines = [line for line in text.splitlines() if line.strip()]
            if len(lines) < 2:
                raise ConfigError(
                    f"--from: {name} is not a GeoJSON ItemCollection ({_GEOJSON_HINT}): {whole}"
                ) from None
            documents = []
            for number, line in enumerate(lines, 1):
                try:
                    documents.append(json.loads(line))
                except ValueError as exc:
                    raise ConfigError(
                        f"--from: {name} is neither a GeoJSON ItemCollection nor one item per "
                        f"line (line {number}: {exc})"
                    ) from None
            return documents
    except RecursionError:
        raise ConfigError(
            f"--from: {name} is not a GeoJSON ItemCollection: its JSON nests too deep"
        ) from None


def _links(doc: Mapping[str, Any], rel: str) -> list[Any]:
    links = doc.get("links")
    return [
        link.get("href")
        for link in (links if isinstance(links, list) else [])
        if isinstance(link, dict) and link.get("rel") == rel
    ]


def _http_url(href: Any) -> tuple[str, str] | None:
    """``href`` as (its origin, the URL without userinfo) when it is an absolute http(s)
    URL with a host; ``None`` for anything else (relative, another scheme, malformed)."""
    if not isinstance(href, str):
        return None
    try:
        parts = urlsplit(href.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not host or not _HOST.fullmatch(host):
        return None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    origin = f"{parts.scheme.lower()}://{netloc}"
    return origin, urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", "", ""))


def _catalogue(
    roots: list[Any], features: list[dict[str, Any]], name: str
) -> tuple[str | None, list[str]]:
    """The one catalogue the file and all its items agree on (the file's ``root`` link,
    else each item's ``root`` link, else its ``self`` link's origin), or ``None`` with a
    warning when they name several: the catalogue's host receives the token, and a file
    must not make another host trusted by naming it on some items."""
    urls: dict[str, str] = {}  # origin -> the first catalogue URL named there
    for href in roots:
        found = _http_url(href)
        if found is not None:
            urls.setdefault(*found)
    for item in features:
        root = next((u for u in map(_http_url, _links(item, "root")) if u), None)
        if root is None:
            own = next((u for u in map(_http_url, _links(item, "self")) if u), None)
            root = (own[0], own[0] + "/") if own else None
        if root is not None:
            urls.setdefault(*root)
    if len(urls) <= 1:  # the file's own root link, when it has one, names it
        return next(iter(urls.values()), None), []
    origins = sorted(urls)
    more = f" and {len(origins) - 5} more" if len(origins) > 5 else ""
    shown = ", ".join(origins[:5]) + more
    return None, [
        f"--from: {name} names {len(urls)} catalogues ({shown}): none of them is trusted "
        "with the token; name the right one with --catalog"
    ]


# The columns of a stac-geoparquet row that are the item's own; every other is a property.
_ITEM_COLUMNS = ("type", "stac_version", "stac_extensions", "id", "geometry", "bbox", "links")


def _parquet_collection(data: bytes, name: str) -> dict[str, Any]:
    """A stac-geoparquet file (one item a row, assets a struct column) as a FeatureCollection.

    The geometry (WKB) is left out: a download needs the assets, not the footprint."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError(
            f"--from: {name} is Parquet, which needs pyarrow: pip install 'stacpull[parquet]'"
        ) from None
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise ConfigError(f"--from: {name} is not a readable Parquet file: {exc}") from None
    if "assets" not in table.column_names or "id" not in table.column_names:
        raise ConfigError(
            f"--from: {name} is Parquet without the items' assets (the notebook's columns, "
            "as `stacpull search -o items.parquet` writes them, lack the metadata a download "
            f"needs); use stac-geoparquet or a GeoJSON ItemCollection ({_GEOJSON_HINT})"
        )
    features = []
    for row in table.to_pylist():
        item: dict[str, Any] = {"type": "Feature", "geometry": None}
        props: dict[str, Any] = {}
        for key, value in row.items():
            if value is None or key == "geometry":
                continue
            if key == "bbox" and isinstance(value, dict):
                value = [value.get(k) for k in ("xmin", "ymin", "xmax", "ymax")]
            clean = _plain(value)
            if key in (*_ITEM_COLUMNS, "assets", "collection"):
                item[key] = clean
            else:
                props[key] = clean
        item["properties"] = props
        features.append(item)
    return {"type": "FeatureCollection", "features": features}


def _plain(value: Any) -> Any:
    """A value read from Parquet as JSON would hold it: nulls of a struct column left out
    (an asset absent from this item), times as RFC 3339 text."""
    from datetime import date, datetime

    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat() + "Z"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return value
