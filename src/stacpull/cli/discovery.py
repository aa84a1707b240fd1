"""The discovery commands: ``search`` (count, list and save items), ``collections`` and
``queryables``, with their tables and JSON.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import (
    ConfigError,
    SearchError,
)
from ..export import FORMATS

if TYPE_CHECKING:
    # Only what the commands declare (flags, columns, formats) is loaded on import; each
    # command imports what it runs (anyio, the config, rich, the search client, the
    # dashboard; the engine and the credentials bring aiohttp, a quarter of a second), so
    # help and listings start fast (benchmarks/startup.py).

    from ..config import Config

from .options import (
    CATALOG_OPTION,
    CONFIG_OPTION,
    PROFILE_OPTION,
    catalogue_header_options,
    header_flags,
    option_group,
    query_options,
    query_values,
)
from .render import SEARCH_COLUMNS, Cell, Column, fail, item_cells, people, print_listing

__all__ = ["collections", "queryables_command", "search"]


@click.command(short_help="Search: count, list and save the matching items.")
@query_options
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Save every matching item: .geojson/.json (an ItemCollection, for --from), .csv "
    "(the notebook's columns) or .parquet (needs stacpull[parquet]); - writes the "
    "ItemCollection to stdout.",
)
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="Format of -o [its extension].")
@click.option("--show", type=int, default=20, show_default=True, metavar="N", help="Items to list.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print every matching item to stdout as a GeoJSON ItemCollection (as -o - does); "
    "the listing goes to stderr.",
)
@catalogue_header_options
@CONFIG_OPTION
def search(
    config_path: str | None,
    output: str | None,
    fmt: str | None,
    show: int,
    as_json: bool,
    **kw: Any,
) -> None:
    """Search the catalogue: how many items match, a table of them, and -o to save them.

    Without -o only the first pages are fetched (enough for --show); with -o every match
    (up to --max-items) is written as it arrives. On a terminal the items are a table;
    piped, one line per item: id, collection, datetime, product type and asset keys
    (comma-separated), tab-separated, with no header.

    \b
    Example:
      stacpull search --collection BiomassLevel1aIOC --filter "product:type='S1_SCS__1S'" \\
          --datetime 2025-09-29/2025-09-30 -o items.geojson
      stacpull download --from items.geojson --dest data/
    """
    import anyio
    from rich.console import Console

    from ..config import load_config
    from ..export import ItemWriter
    from ..search import CatalogueHeaders, search_pages

    if as_json:
        if output not in (None, "-"):
            fail("--json prints the items to stdout: give it or -o FILE, not both")
        if fmt not in (None, "geojson"):
            fail(f"--json prints GeoJSON: --format {fmt} needs -o FILE")
        output, fmt = "-", "geojson"
    try:
        if show < 0:
            raise ConfigError(f"--show: expected a count ≥ 0, got {show}")
        profile = kw.pop("profile")
        config = load_config(
            config_path, flags={**query_values(**kw), **header_flags()}, profile=profile
        )
        s = config.search
        if not (s.collections or s.ids or s.bbox or s.intersects or s.datetime or s.filter):
            raise ConfigError(
                "name a --collection (or --ids, --bbox, --intersects, --datetime, --filter): "
                "a whole catalogue is rarely what you want"
            )
        writer = ItemWriter(Path(output), fmt, catalog=config.search.catalog) if output else None
    except ConfigError as exc:
        fail(str(exc))
    # With -o - (or --json), stdout carries the items: everything for people goes to stderr.
    out = Console(highlight=False, soft_wrap=False, stderr=output == "-")
    note = people(out)  # piped: the records alone on stdout, what they amount to on stderr
    rows: list[list[Cell]] = []
    records: list[list[object]] = []

    async def walk() -> tuple[int | None, int]:
        seen, matched = 0, None
        # The output opens with the first page, so a query the catalogue refuses (an unknown
        # collection, a bad filter) leaves stdout empty rather than half an ItemCollection.
        started = False
        with ExitStack() as opened:
            extra = CatalogueHeaders.of(config)
            async for features, page_matched in search_pages(config.search, extra):
                if writer is not None and not started:
                    opened.enter_context(writer)
                    started = True
                matched = page_matched
                for item in features:
                    seen += 1
                    if seen <= show:
                        row, record = item_cells(item)
                        rows.append(row)
                        records.append(record)
                    if writer is not None:
                        writer.write(item)
                if writer is None and seen >= show:
                    break
            if writer is not None and not started:  # no page: still a valid, empty one
                opened.enter_context(writer)
        return matched, seen

    try:
        matched, seen = anyio.run(walk)
    except (ConfigError, SearchError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:  # Ctrl-C: the search was cancelled, a partial -o removed
        fail("interrupted", 130)
    total = matched if matched is not None else seen
    note.print(f"{total} item(s) matched", soft_wrap=True)
    print_listing(out, SEARCH_COLUMNS, rows, records)
    if writer is None and (seen > show or (matched is not None and matched > show)):
        note.print(f"(the first {min(show, seen)} shown; -o FILE saves them all)", soft_wrap=True)
    if writer is not None:
        wrote = f"wrote {writer.count} item(s) to {output} ({writer.format})"
        note.print(wrote, soft_wrap=True, markup=False)


_CATALOG_OPTIONS = [
    PROFILE_OPTION,
    CATALOG_OPTION,
    catalogue_header_options,
    CONFIG_OPTION,
    click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table."),
]


_catalog_options = option_group(*_CATALOG_OPTIONS)


def _search_config(config_path: str | None, catalog: str | None, profile: str | None) -> Config:
    from ..config import load_config

    try:
        return load_config(
            config_path, flags={"search.catalog": catalog, **header_flags()}, profile=profile
        )
    except ConfigError as exc:
        fail(str(exc))


def _interval(col: dict[str, Any]) -> list[Any]:
    """The first temporal interval of a collection as [start, end] (``None`` for an open end)."""
    extent = col.get("extent")
    temporal = extent.get("temporal") if isinstance(extent, dict) else None
    intervals = temporal.get("interval") if isinstance(temporal, dict) else None
    first = intervals[0] if isinstance(intervals, list) and intervals else None
    return [*(first if isinstance(first, list) else []), None, None][:2]


def _extent(col: dict[str, Any], whole: bool = False) -> str:
    """The temporal extent as START/END ('..' for an open end): dates in a table, the
    collection's own timestamps when ``whole``."""
    return "/".join((str(t) if whole else str(t)[:10]) if t else ".." for t in _interval(col))


_COLLECTION_COLUMNS = (
    Column("id"),
    Column("title", "text"),
    Column("temporal extent"),
    Column("items", justify="right"),
)


def _collection_json(col: dict[str, Any], count: int | None, counted: bool) -> dict[str, Any]:
    """One collection in ``collections --json``: the same keys for every collection."""
    record: dict[str, Any] = {
        "id": col.get("id"),
        "title": col.get("title"),
        "description": col.get("description"),
        "license": col.get("license"),
        "keywords": col.get("keywords") if isinstance(col.get("keywords"), list) else [],
        "extent": col.get("extent") if isinstance(col.get("extent"), dict) else None,
    }
    if counted:
        record["count"] = count
    return record


@click.command(short_help="List the collections (ids, titles, extents).")
@click.option("--q", "text", metavar="TEXT", help="Free text in id, title, description.")
@click.option("--title", metavar="TITLE", help="Exact collection title.")
@click.option("--platform", metavar="NAME", help="Platform, e.g. BIOMASS or FLEX.")
@click.option("--organisation", metavar="NAME", help="Organisation, e.g. 'ESA MAAP'.")
@click.option("--bbox", metavar="W,S,E,N", help="Spatial extent must overlap this box.")
@click.option("--datetime", "datetime_", metavar="START/END", help="Temporal extent overlap.")
@click.option("--count", is_flag=True, help="Also ask how many items each one holds.")
@_catalog_options
def collections(
    text: str | None,
    title: str | None,
    platform: str | None,
    organisation: str | None,
    bbox: str | None,
    datetime_: str | None,
    count: bool,
    profile: str | None,
    catalog: str | None,
    config_path: str | None,
    as_json: bool,
) -> None:
    """List the catalogue's collections: id, title, temporal extent, items.

    Filters run on the server when it supports STAC collection search (MAAP does: free
    text, CQL2 on title/platform/organisationName, bbox, datetime), else here, and the
    output says which (on stderr when stdout is not a terminal). Piped, one line per
    collection: id, title, temporal extent (START/END) and item count (with --count),
    tab-separated, with no header.
    """
    from rich.console import Console

    from ..config import parse_bbox, parse_datetime_range
    from ..search import CatalogueHeaders, CollectionQuery, count_items, list_collections

    config = _search_config(config_path, catalog, profile)
    try:
        query = CollectionQuery(
            q=text,
            title=title,
            platform=platform,
            organisation=organisation,
            bbox=parse_bbox(bbox, "--bbox") if bbox else None,
            datetime=parse_datetime_range(datetime_, "--datetime") if datetime_ else None,
        )
        extra = CatalogueHeaders.of(config)
        found, by_server = list_collections(config.search, query, extra)
        counts = {
            str(c.get("id")): count_items(config.search, str(c.get("id")), extra) if count else None
            for c in found
        }
    except (ConfigError, SearchError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted", 130)
    out = Console(highlight=False)
    where = "by the catalogue" if by_server else "here: this catalogue has no collection search"
    filtered = any((text, title, platform, organisation, bbox, datetime_))
    summary = f"{len(found)} collection(s)" + (f"; filtered {where}" if filtered else "")
    if as_json:
        listed = [_collection_json(c, counts.get(str(c.get("id"))), count) for c in found]
        click.echo(json.dumps(listed, indent=2))
        click.echo(summary, err=True)
        return
    rows: list[list[Cell]] = []
    records: list[list[object]] = []
    for col in found:
        cid = str(col.get("id"))
        items = counts.get(cid)
        shown = "" if items is None else str(items)
        rows.append([cid, str(col.get("title") or ""), _extent(col), shown])
        records.append([cid, col.get("title") or "", _extent(col, whole=True), shown])
    print_listing(out, _COLLECTION_COLUMNS, rows, records)
    note = people(out)  # piped: the records alone on stdout, what they amount to on stderr
    note.print(summary, soft_wrap=True)


def _schema_type(entry: dict[str, Any]) -> str | None:
    """A queryable's JSON Schema type as one word (``a|b`` for a list of types), else the
    last part of its ``$ref`` (e.g. a GeoJSON geometry), else ``None``."""
    kind = entry.get("type")
    if isinstance(kind, list):
        return "|".join(str(k) for k in kind) or None
    if kind:
        return str(kind)
    ref = entry.get("$ref")
    return str(ref).rstrip("/").rsplit("/", 1)[-1] or None if ref else None


def _queryable_list(collection: str, schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The queryables of ``collection`` as ``queryables --json`` prints them: one object per
    property, sorted by name, every key always present (``null`` when the schema is silent)."""
    props: dict[str, Any] = schema["properties"]
    listed = []
    for name in sorted(props):
        entry = props[name] if isinstance(props[name], dict) else {}
        enum = entry.get("enum")
        listed.append(
            {
                "collection": collection,
                "name": name,
                "type": _schema_type(entry),
                "format": entry.get("format"),
                "title": entry.get("title"),
                "description": entry.get("description"),
                "enum": enum if isinstance(enum, list) else None,
            }
        )
    return listed


@click.command("queryables", short_help="What --filter can use on a collection.")
@click.argument("collection")
@_catalog_options
def queryables_command(
    collection: str,
    profile: str | None,
    catalog: str | None,
    config_path: str | None,
    as_json: bool,
) -> None:
    """What --filter can use on COLLECTION: each property, its type and allowed values.

    Piped, one line per property: name, type, format, allowed values (comma-separated)
    and title, tab-separated, with no header.
    """
    from rich.console import Console

    from ..search import CatalogueHeaders, queryables

    config = _search_config(config_path, catalog, profile)
    try:
        schema = queryables(config.search, collection, CatalogueHeaders.of(config))
    except (ConfigError, SearchError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted", 130)
    listed = _queryable_list(collection, schema)
    if as_json:
        click.echo(json.dumps(listed, indent=2))
        return
    out = Console(highlight=False)
    # A title is worth a column only where it says more than the name.
    titled = any(q["title"] and q["title"] != q["name"] for q in listed)
    columns = [Column("property"), Column("type"), Column("allowed values", "values")]
    if titled:
        columns.append(Column("title", "text"))
    rows: list[list[Cell]] = []
    records: list[list[object]] = []
    for q in listed:
        kind = (q["type"] or "?") + (f" ({q['format']})" if q["format"] else "")
        values = [str(v) for v in q["enum"] or []]
        title = str(q["title"] or "")
        rows.append([q["name"], kind, values, *([title] if titled else [])])
        records.append([q["name"], q["type"] or "", q["format"] or "", ",".join(values), title])
    print_listing(out, columns, rows, records)
    note = people(out)
    names = {q["name"]: q for q in listed}
    if "product:type" in names and "productType" in names:
        note.print(
            "productType is the older name of product:type (MAAP renamed it in January "
            "2026); both are listed, prefer product:type",
            soft_wrap=True,
        )
    example = next((n for n in ("product:type", "productType") if n in names), None)
    if example and names[example]["enum"]:
        value = names[example]["enum"][0]
        note.print(f"e.g. --filter \"{example}='{value}'\"", soft_wrap=True, markup=False)
