"""The discovery commands: ``search`` (count, list and save items), ``collections`` and
``queryables``: their flags, their JSON, and the calls that answer them.

The search's pages are walked by :func:`stacpull.search_walk.walk_items` (the loop
:func:`stacpull.search_items` shares), the collections and queryables asked of
:mod:`stacpull.search`, which owns the catalogue's requests; the tables are drawn by
:mod:`.render`. None of these imports the engine (nor aiohttp): a listing starts fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import ConfigError, SearchError
from ..export import FORMATS
from .flags import QueryFlags, gather
from .options import (
    CATALOG_OPTION,
    CONFIG_OPTION,
    PROFILE_OPTION,
    catalogue_header_options,
    header_flags,
    option_group,
    query_options,
)
from .render import fail, print_collections, print_queryables, print_search

if TYPE_CHECKING:
    # Each command imports what it runs (anyio, the config, rich, the search client), so
    # help and listings start fast (benchmarks/startup.py).
    from ..config import Config
    from ..export import ItemWriter
    from ..search import CollectionQuery

__all__ = ["collections", "queryables_command", "search"]


@click.command(short_help="Search: count, list and save the matching items.")
@gather(query=QueryFlags)
@query_options
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Save every matching item: .geojson/.json (an ItemCollection), .parquet "
    "(stac-geoparquet, needs stacpull[parquet]), both whole items for --from, or .csv (the "
    "notebook's flat table); - writes the ItemCollection to stdout.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    help="Format of -o: geojson, parquet (stac-geoparquet) or csv (the notebook's flat "
    "table) [its extension].",
)
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
    query: QueryFlags,
    config_path: str | None,
    output: str | None,
    fmt: str | None,
    show: int,
    as_json: bool,
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

    from ..search_walk import walk_items

    if as_json:
        if output not in (None, "-"):
            fail("--json prints the items to stdout: give it or -o FILE, not both")
        if fmt not in (None, "geojson"):
            fail(f"--json prints GeoJSON: --format {fmt} needs -o FILE")
        output, fmt = "-", "geojson"
    config, writer = _search_setup(query, config_path, output, fmt, show)
    # With -o - (or --json), stdout carries the items: everything for people goes to stderr.
    out = Console(highlight=False, soft_wrap=False, stderr=output == "-")
    try:
        walked = anyio.run(lambda: walk_items(config, keep=show, writer=writer))
    except (ConfigError, SearchError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:  # Ctrl-C: the search was cancelled, a partial -o removed
        fail("interrupted", 130)
    wrote = None
    if writer is not None:  # unless the reader of stdout went away: then nothing was written
        broken = output == "-" and getattr(sys.stdout, "broken", False)
        wrote = "" if broken else f"wrote {writer.count} item(s) to {output} ({writer.format})"
    print_search(out, walked, show, wrote=wrote)
    if writer is not None and config.search.max_items is None:
        # A saved search walked the whole listing: say, as a mirror does, when its distinct
        # items are not what the catalogue counted (MAAP's paging lists some again).
        from ..claims import listing_gap

        if gap := listing_gap(walked.seen, walked.matched, walked.repeats):
            click.echo(f"stacpull: warning: {gap}", err=True)


def _search_setup(
    query: QueryFlags, config_path: str | None, output: str | None, fmt: str | None, show: int
) -> tuple[Config, ItemWriter | None]:
    """The search's config (from its flags) and, with -o, the writer of its items; exit 2
    on a bad flag or a query that names nothing."""
    from ..config import load_config
    from ..export import ItemWriter

    try:
        if show < 0:
            raise ConfigError(f"--show: expected a count ≥ 0, got {show}")
        config = load_config(
            config_path, flags={**query.values(), **header_flags()}, profile=query.profile
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
    return config, writer


_CATALOG_OPTIONS = [
    PROFILE_OPTION,
    CATALOG_OPTION,
    catalogue_header_options,
    CONFIG_OPTION,
    click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table."),
]


_catalog_options = option_group(*_CATALOG_OPTIONS)


def _search_config(config_path: str | None, catalog: str | None, profile: str | None) -> Config:
    """The config of a catalogue command (``collections``, ``queryables``); exit 2 when it
    is wrong."""
    from ..config import load_config

    try:
        return load_config(
            config_path, flags={"search.catalog": catalog, **header_flags()}, profile=profile
        )
    except ConfigError as exc:
        fail(str(exc))


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


#: ``collections``' filters: the flags of :class:`~stacpull.search.CollectionQuery`.
_collection_filters = option_group(
    click.option("--q", "q", metavar="TEXT", help="Free text in id, title, description."),
    click.option("--title", metavar="TITLE", help="Exact collection title."),
    click.option("--platform", metavar="NAME", help="Platform, e.g. BIOMASS or FLEX."),
    click.option("--organisation", metavar="NAME", help="Organisation, e.g. 'ESA MAAP'."),
    click.option("--bbox", metavar="W,S,E,N", help="Spatial extent must overlap this box."),
    click.option("--datetime", "datetime", metavar="START/END", help="Temporal extent overlap."),
)


def _collection_query(filters: dict[str, Any]) -> CollectionQuery:
    """``collections``' filter flags as the query :mod:`stacpull.search` runs."""
    from ..config import parse_bbox, parse_datetime_range
    from ..search import CollectionQuery

    bbox, when = filters.pop("bbox"), filters.pop("datetime")
    return CollectionQuery(
        **filters,
        bbox=parse_bbox(bbox, "--bbox") if bbox else None,
        datetime=parse_datetime_range(when, "--datetime") if when else None,
    )


@click.command(short_help="List the collections (ids, titles, extents).")
@_collection_filters
@click.option("--count", is_flag=True, help="Also ask how many items each one holds.")
@_catalog_options
def collections(
    count: bool,
    profile: str | None,
    catalog: str | None,
    config_path: str | None,
    as_json: bool,
    **filters: Any,
) -> None:
    """List the catalogue's collections: id, title, temporal extent, items.

    Filters run on the server when it supports STAC collection search (MAAP does: free
    text, CQL2 on title/platform/organisationName, bbox, datetime), else here, and the
    output says which (on stderr when stdout is not a terminal). Piped, one line per
    collection: id, title, temporal extent (START/END) and item count (with --count),
    tab-separated, with no header.
    """
    from rich.console import Console

    from ..search import CatalogueHeaders, count_items, list_collections

    config = _search_config(config_path, catalog, profile)
    filtered = any(filters.values())
    try:
        extra = CatalogueHeaders.of(config)
        found, by_server = list_collections(config.search, _collection_query(filters), extra)
        counts = {
            str(c.get("id")): count_items(config.search, str(c.get("id")), extra) if count else None
            for c in found
        }
    except (ConfigError, SearchError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted", 130)
    where = "by the catalogue" if by_server else "here: this catalogue has no collection search"
    summary = f"{len(found)} collection(s)" + (f"; filtered {where}" if filtered else "")
    if as_json:
        listed = [_collection_json(c, counts.get(str(c.get("id"))), count) for c in found]
        click.echo(json.dumps(listed, indent=2))
        click.echo(summary, err=True)
        return
    print_collections(Console(highlight=False), found, counts, summary=summary)


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
    property, sorted by name, every key always present (``null`` when the schema is silent);
    ``renamed_from`` / ``renamed_to``: the property's name before / after MAAP's February
    2026 renaming, whichever of the two this catalogue lists."""
    from ..renames import renamed_pairs

    props: dict[str, Any] = schema["properties"]
    # MAAP's February 2026 names: each says the old name a --filter may still carry.
    pairs = renamed_pairs(props)
    renamed_from, renamed_to = {new: old for old, new in pairs}, dict(pairs)
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
                "renamed_from": renamed_from.get(name),
                "renamed_to": renamed_to.get(name),
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
    print_queryables(Console(highlight=False), listed)
