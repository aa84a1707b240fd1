"""Saved searches: STAC items to a GeoJSON ItemCollection, stac-geoparquet or CSV, and back.

GeoJSON and stac-geoparquet keep each item whole (geometry, bbox, assets, links,
properties), so ``stacpull download --from`` reads either back. The CSV columns are the
flattened table of MAAP's notebooks, under the notebooks' own names, so code written for
their pandas DataFrame keeps working: ``id, collection, datetime, product_type,
download_url, product_name, quicklook_url, quicklook_name, kmz_url, kmz_name,
last_modified``. The product, quicklook and KMZ are found by the MAAP profile whatever
generation of asset keys an item uses, and named as stacpull would save them.

GeoJSON and CSV are written as items arrive, so a saved search of any size needs no
memory. stac-geoparquet takes its columns from every item, so those are held until the
search ends, then written by the optional ``rustac`` (``stacpull[parquet]``): one wheel with
no dependencies, where ``stac-geoparquet``'s arrow API brings pandas, geopandas, shapely and
pyproj (and takes a second to import). What a column cannot hold is refused by name rather
than filled in: an item without a geometry or a time (rustac would stamp the time of the
write on it), a field that is a number in one item and text in another. rustac writes
STAC 1.1.0, migrating older items.
"""

from __future__ import annotations

import csv
import functools
import json
import re
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, TracebackType
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
_EXTRA = "pip install 'stacpull[parquet]'"


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
    from .plan import plan_item
    from .selection import profile_slots

    slots = profile_slots(item)
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
        self._items: list[Mapping[str, Any]] = []
        if self._stdout and self.format == "parquet":
            raise ConfigError("-o -: Parquet cannot be written to standard output; use .parquet")
        kind = None if self._stdout else safeio.not_regular(path)
        if kind is not None:
            raise ConfigError(
                f"-o {path}: not a regular file ({kind}); name a new or a regular file, "
                "or - for standard output"
            )
        if self.format == "parquet":
            _rustac(
                f"-o {path}: stac-geoparquet",
                " (or save .geojson, or .csv for the notebook's table)",
            )

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
            self._items.append(self._holdable(item))
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

    def _holdable(self, item: Mapping[str, Any]) -> Mapping[str, Any]:
        """``item`` when a stac-geoparquet row can hold it as it is; else the reason, raised
        before the search goes on (GeoJSON keeps such an item)."""
        props = item.get("properties")
        props = props if isinstance(props, dict) else {}
        missing = None
        if not isinstance(item.get("geometry"), dict):
            missing = "geometry"
        elif not any(props.get(k) for k in ("datetime", "start_datetime")):
            missing = "datetime (nor start_datetime)"
        if missing is not None:
            raise ConfigError(
                f"-o {self.path}: item {item.get('id')} has no {missing}, which every "
                "stac-geoparquet row needs; save .geojson to keep it as it is"
            )
        return item

    def _write_parquet(self) -> None:
        """The held items as stac-geoparquet: built by rustac in a private directory, then
        copied into the ``.part`` file stacpull creates (never through a link planted at
        the name) and renamed into place."""
        rustac = _rustac(f"-o {self.path}: stac-geoparquet")
        if not self._items:
            raise ConfigError(
                f"-o {self.path}: no item to write (stac-geoparquet takes its columns from the "
                "items, and none matched); -o .geojson saves an empty collection"
            )
        with tempfile.TemporaryDirectory(prefix="stacpull-parquet-") as private:
            built = Path(private) / "items.parquet"
            try:
                rustac.write_sync(str(built), list(self._items), format="geoparquet")
            except BaseException as exc:  # RustacError, any other Exception, a panic
                _reraise_unless_rustac(exc)
                raise ConfigError(
                    f"-o {self.path}: not written as stac-geoparquet ({_one_line(exc)}); "
                    "save .geojson to keep every item as it is"
                ) from None
            try:
                part = safeio.create_new(self._part, binary=True)
            except OSError as exc:  # a directory or a special file holds the name: left alone
                raise ConfigError(f"-o {self.path}: cannot write: {exc.strerror or exc}") from None
            try:
                with part, safeio.open_regular(built) as src:
                    shutil.copyfileobj(src, part)
            except OSError as exc:
                self._part.unlink(missing_ok=True)
                raise ConfigError(f"-o {self.path}: cannot write: {exc.strerror or exc}") from None
        self._publish()


def _rustac(what: str, alternative: str = "") -> ModuleType:
    """rustac, imported when stac-geoparquet is written or read; without the extra, a
    ConfigError naming ``what`` needed it and how to install it."""
    try:
        import rustac
    except ImportError:
        raise ConfigError(f"{what} needs rustac: {_EXTRA}{alternative}") from None
    return rustac


def _reraise_unless_rustac(exc: BaseException) -> None:
    """Raise ``exc`` again unless rustac raised it: any Exception, or pyo3's
    ``PanicException`` (a BaseException: rustac panics on some corrupt Parquet footers,
    "Unexpected bitwidth and signed"), which is the file's fault, not a reason to crash."""
    if not isinstance(exc, Exception) and type(exc).__name__ != "PanicException":
        raise exc


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


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


def _parquet_collection(data: bytes, name: str) -> dict[str, Any]:
    """A stac-geoparquet file (one item a row, the properties top-level columns, assets a
    struct column) as a FeatureCollection of whole items, geometry included. rustac reads a
    path, so the bytes (a file's, or standard input's) are copied into a private one."""
    rustac = _rustac(f"--from: {name} is Parquet, which")
    with tempfile.TemporaryDirectory(prefix="stacpull-parquet-") as private:
        copy = Path(private) / "items.parquet"
        copy.write_bytes(data)
        try:
            read = rustac.read_sync(str(copy), format="geoparquet", set_self_link=False)
        except BaseException as exc:  # RustacError, its conversions' errors, or a panic
            _reraise_unless_rustac(exc)
            if "no geoparquet metadata" in str(exc).lower():
                raise ConfigError(
                    f"--from: {name} is Parquet but not stac-geoparquet (no GeoParquet "
                    "metadata): a flat table such as the notebook's columns (which older stacpull "
                    "wrote to .parquet) lacks the metadata a download needs; use "
                    f"stac-geoparquet or a GeoJSON ItemCollection ({_GEOJSON_HINT})"
                ) from None
            raise ConfigError(
                f"--from: {name} is not a readable stac-geoparquet file: {_one_line(exc)}"
            ) from None
    rows = read.get("features") if isinstance(read, dict) else None
    features = [_as_read(f) for f in rows or () if isinstance(f, dict)]
    return {"type": "FeatureCollection", "features": features}


def _as_read(item: dict[str, Any]) -> dict[str, Any]:
    """An item read from stac-geoparquet as its JSON held it: the nulls a column shared
    with other items gives it left out (a property or a nested field this item lacked),
    ``datetime`` kept (STAC requires the key, null when a range stands for it), the bbox
    a list."""
    props = item.get("properties")
    if isinstance(props, dict):
        kept = _without_nulls(props)
        if "datetime" in props:
            kept["datetime"] = props["datetime"]
        item["properties"] = kept
    if isinstance(item.get("assets"), dict):
        item["assets"] = _without_nulls(item["assets"])
    if isinstance(item.get("bbox"), tuple):
        item["bbox"] = list(item["bbox"])
    return item


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value
