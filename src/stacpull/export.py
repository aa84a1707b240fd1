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
import json
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from . import safeio
from .errors import ConfigError, scrub
from .plan import PlanRules, maap_slots, plan_item
from .search import ItemPages, Page

__all__ = ["CSV_COLUMNS", "FORMATS", "ItemWriter", "SavedSearch", "item_row", "saved_pages"]

CSV_COLUMNS = (
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
_NAMES = PlanRules(("maap",), "{name}")


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
    slots = maap_slots(assets)
    jobs, _ = plan_item(item, _NAMES)
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
            self._csv = csv.DictWriter(self._file, fieldnames=CSV_COLUMNS)
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

        table = pa.table({c: [str(r[c]) for r in self._rows] for c in CSV_COLUMNS})
        try:
            with safeio.create_new(self._part, binary=True) as f:
                pq.write_table(table, f)
        except OSError as exc:
            raise ConfigError(f"-o {self.path}: cannot write: {exc.strerror or exc}") from None
        self._publish()


@dataclass(frozen=True, slots=True)
class SavedSearch:
    """A saved search read back: its items as search pages, and the catalogue it came from."""

    pages: ItemPages
    catalog: str | None
    count: int


def saved_pages(path: Path, page_size: int = 100) -> SavedSearch:
    """``--from FILE``: the items of a saved GeoJSON ItemCollection (or a single Item) as
    search pages, in place of a search. Raises :class:`ConfigError` with what is wrong."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--from: {path} does not exist") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(
            f"--from: {path} is not a GeoJSON ItemCollection (save one with "
            f"`stacpull search -o items.geojson`): {exc}"
        ) from None
    except RecursionError:
        raise ConfigError(
            f"--from: {path} is not a GeoJSON ItemCollection: its JSON nests too deep"
        ) from None
    if isinstance(data, dict) and data.get("type") == "Feature":
        data = {"type": "FeatureCollection", "features": [data]}
    if not isinstance(data, dict) or not isinstance(data.get("features"), list):
        raise ConfigError(
            f"--from: {path} holds no features; it must be a GeoJSON ItemCollection (CSV "
            "lacks the metadata a download needs)"
        )
    features = [f for f in data["features"] if isinstance(f, dict)]
    catalog = next(
        (
            link.get("href")
            for link in (data["links"] if isinstance(data.get("links"), list) else [])
            if isinstance(link, dict) and link.get("rel") == "root"
        ),
        None,
    )

    async def pages() -> AsyncIterator[Page]:
        for start in range(0, len(features), page_size):
            yield features[start : start + page_size], len(features)
        if not features:
            yield [], 0

    return SavedSearch(pages, catalog if isinstance(catalog, str) else None, len(features))
