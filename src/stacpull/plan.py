"""Pure planning: one STAC item (a dict) → download jobs and refusals. No I/O here.

Asset keys drift on MAAP (``quicklook`` → ``quicklook_png`` → ``enclosure_ql_pauli_png``),
so assets are chosen by *selectors* rather than by a fixed list of keys:

==================  ========================================================
``maap``            the default profile, per mission: EarthCARE's HDF5 file,
                    header and quicklook; BIOMASS's product zip, quicklook PNG
                    and KMZ overview; FLEX's product and quicklook
``all`` or ``*``    every asset
``product``         an exact asset key (``key:product`` also works)
``enclosure_*``     a glob on asset keys
``role:overview``   every asset with that role (``metadata``, ``overview``,
                    ``thumbnail`` and ``visual`` pass over ``data`` assets)
``type:image/png``  every asset of that media type (globs allowed: ``type:image/*``)
==================  ========================================================

The choice itself is :mod:`.selection`'s; every destination is checked by
:mod:`.destpaths`, so nothing is written outside DEST; :mod:`.claims` keeps two jobs of one
run from sharing a destination. One href under two keys of an item that give it one file
name (MAAP's EarthCARE ``thumbnail`` and ``quicklook_jpeg``) is one job, the other key
noted in its ``also``; keys whose ``file:local_path`` asks for two files get two.
An asset whose URL names no file (the zipper, catalogue metadata URLs with a query) is
named after the item: ``<id>.ZIP`` for the data, ``<id>_<key>.<ext>`` for the rest, with
the extension its media type gives (``+xml`` types ``.xml``, ``+json`` types ``.json``).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

from .destpaths import companion_png_name, destination, path_key, sanitize_relpath, segment
from .errors import ConfigError, PlanError
from .models import Job, Refusal
from .selection import (
    KMZ_TYPES,
    choose_assets,
    is_kmz_or_kml,
    is_png,
    is_zip,
    media_type,
    profile_keys,
    roles,
    suffix,
    url_path,
)

__all__ = ["MAX_FILE_SIZE", "PlanRules", "plan_item"]


_EXTENSIONS: Mapping[str, str] = {
    "application/zip": "ZIP",
    "application/x-zip-compressed": "ZIP",
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/tiff": "tiff",
    "application/vnd.google-earth.kmz": "kmz",
    "application/vnd.google-earth.kml+xml": "kml",
    "application/xml": "xml",
    "text/xml": "xml",
    "application/json": "json",
    "application/geo+json": "json",
    "application/x-netcdf": "nc",
    "application/netcdf": "nc",
    "application/x-hdf5": "h5",
    "text/plain": "txt",
    "text/html": "html",
    "application/pdf": "pdf",
}

_FILENAME_LIKE = re.compile(r"^[^\s]+\.[A-Za-z0-9]{1,6}$")  # a title that names a file
_HAS_EXTENSION = re.compile(r"\.[A-Za-z0-9]{1,6}$")
_TEMPLATE_FIELDS = ("collection", "item", "key", "name", "year", "month", "day")


@dataclass(frozen=True, slots=True)
class PlanRules:
    """The selectors and destination template of a run."""

    selectors: tuple[str, ...] = ("maap",)
    template: str = "{collection}/{item}/{name}"

    def __post_init__(self) -> None:
        if not self.selectors:
            raise ConfigError("download.assets: select at least one asset")
        for sel in self.selectors:
            if not sel.strip():
                raise ConfigError("download.assets: empty selector")
            kind, _, value = sel.partition(":")
            if ":" in sel and kind not in ("key", "role", "type"):
                raise ConfigError(
                    f"download.assets: unknown selector kind {kind!r} in {sel!r} "
                    "(use key:, role: or type:)"
                )
            if ":" in sel and not value:
                raise ConfigError(f"download.assets: selector {sel!r} has no value")
        sample = dict.fromkeys(_TEMPLATE_FIELDS, "x")
        try:
            self.template.format(**sample)
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(
                f"download.template: {self.template!r} is not a valid template ({exc}); "
                f"fields: {', '.join('{' + f + '}' for f in _TEMPLATE_FIELDS)}"
            ) from None


def _object(value: Any) -> Mapping[str, Any]:
    """``value`` when it is a JSON object, else an empty one (``properties: []``)."""
    return value if isinstance(value, dict) else {}


def _extension(asset: Mapping[str, Any]) -> str:
    """The file extension of ``asset``'s media type: a known one, else by its structured
    suffix (``application/gml+xml`` → ``xml``, ``…+json`` → ``json``), else ``bin``."""
    kind = media_type(asset)
    if kind in _EXTENSIONS:
        return _EXTENSIONS[kind]
    for tail, ext in (("+xml", "xml"), ("/xml", "xml"), ("+json", "json"), ("/json", "json")):
        if kind.endswith(tail):
            return ext
    return "bin"


def _file_name(item_id: str, key: str, asset: Mapping[str, Any], href: str) -> str:
    """The file name of asset ``key``: its ``file:local_path``, a title naming a file, the
    URL's last segment; else one made from the item id (``<id>.ZIP`` for data, as MAAP
    names products; ``<id>_<key>.<ext>`` for the rest, so several metadata URLs of one
    item keep distinct names)."""
    local = asset.get("file:local_path")
    if isinstance(local, str) and local:
        return local
    title = asset.get("title")
    if isinstance(title, str) and _FILENAME_LIKE.match(title):
        return title
    last = unquote(url_path(href).rsplit("/", 1)[-1])
    if last and _HAS_EXTENSION.search(last):
        return last
    if "data" in roles(asset) or is_zip(asset):
        return f"{item_id}.{_extension(asset)}"
    return f"{item_id}_{re.sub(r'[^A-Za-z0-9._-]', '_', key)}.{_extension(asset)}"


def _dates(item: Mapping[str, Any]) -> tuple[str, str, str]:
    props = _object(item.get("properties"))
    stamp = props.get("datetime") or props.get("start_datetime") or ""
    m = re.match(r"^(\d{4})-(\d{2})-(\d{2})", stamp) if isinstance(stamp, str) else None
    return (m.group(1), m.group(2), m.group(3)) if m else ("unknown", "unknown", "unknown")


def _self_href(item: Mapping[str, Any]) -> str | None:
    links = item.get("links")
    for link in links if isinstance(links, list) else []:
        if (
            isinstance(link, dict)
            and link.get("rel") == "self"
            and isinstance(link.get("href"), str)
        ):
            return str(link["href"])
    return None


#: The largest size a file can have (off_t, and SQLite's INTEGER, are 64-bit signed).
MAX_FILE_SIZE = 2**63 - 1


def _lone_surrogate(item: Mapping[str, Any]) -> bool:
    """Whether any key or string in ``item`` holds a lone surrogate (JSON may escape one,
    ``"\\ud800"``): no UTF-8 writer, the journal's included, accepts it. Iterative, so a
    deeply nested item costs no recursion."""
    stack: list[Any] = [item]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if not value.isascii():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    return True
        elif isinstance(value, Mapping):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list | tuple):
            stack.extend(value)
    return False


def _shown(value: object) -> str:
    """``value`` as text any writer accepts (a lone surrogate as its escape)."""
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


def plan_item(item: Mapping[str, Any], rules: PlanRules) -> tuple[list[Job], list[Refusal]]:
    """Turn one STAC item into jobs for the selected assets, and refusals for the unsafe ones.

    Refusals never stop the rest of the item or the run; each names the asset and why.
    """
    planner = _ItemPlan.of(item, rules)
    if isinstance(planner, Refusal):
        return [], [planner]
    jobs: list[Job] = []
    refusals: list[Refusal] = []
    # (URL, file name, claims) -> index of its job: one href under two keys that name the
    # same file is one download (keys that ask for two files by file:local_path get two,
    # and so do keys whose file:size or file:checksum contradict: dropping one claim would
    # verify the file against the other alone).
    seen: dict[tuple[str, str | None, str], int] = {}
    for key in planner.keys:
        try:
            url = planner.url(key)
            asset = planner.assets[key]
            claims = repr((asset.get("file:size"), asset.get("file:checksum")))
            same = (url, planner.names.get(key), claims)
            if (first := seen.get(same)) is not None:
                jobs[first] = replace(jobs[first], also=(*jobs[first].also, key))
                continue
            jobs.append(planner.job(key, url))
            seen[same] = len(jobs) - 1
        except PlanError as exc:
            refusals.append(Refusal(planner.item_id, planner.collection, key, str(exc)))
    return jobs, refusals


@dataclass(slots=True)
class _ItemPlan:
    """One item being planned: its names, the assets chosen, the file name of each, and the
    destinations its jobs have taken so far (``path_key`` → asset key)."""

    item_id: str
    collection: str
    assets: dict[str, dict[str, Any]]
    keys: list[str]
    names: dict[str, str]
    rules: PlanRules
    base: str | None
    dates: tuple[str, str, str]
    updated: str | None
    taken: dict[str, str]

    @classmethod
    def of(cls, item: Mapping[str, Any], rules: PlanRules) -> _ItemPlan | Refusal:
        """The plan of ``item``, or the refusal of the whole item (no id, no assets...)."""
        item_id = item.get("id")
        given = item.get("collection") or "_no_collection"
        collection = given if isinstance(given, str) else "?"
        if _lone_surrogate(item):
            reason = "item has text that is not valid Unicode (a lone surrogate)"
            return Refusal(_shown(item_id), _shown(collection), "*", reason)
        if not isinstance(item_id, str) or not item_id:
            # Never str() a foreign value here: a deep list would raise RecursionError.
            what = "item has no id" if not item_id else f"item id is a {type(item_id).__name__}"
            return Refusal("?", collection, "*", what)
        if not isinstance(given, str):
            return Refusal(item_id, collection, "*", "item collection is not a string")
        assets = item.get("assets") or {}
        if not isinstance(assets, dict):
            return Refusal(item_id, collection, "*", "item assets are not an object")
        assets = {k: v for k, v in assets.items() if isinstance(k, str) and isinstance(v, dict)}
        keys = choose_assets(assets, rules.selectors, item)
        props = _object(item.get("properties"))
        updated = props.get("updated") if isinstance(props.get("updated"), str) else None
        names = _file_names(item_id, keys, assets)
        base, dates = _self_href(item), _dates(item)
        return cls(item_id, collection, assets, keys, names, rules, base, dates, updated, {})

    def url(self, key: str) -> str:
        """The URL of asset ``key``, or raise :class:`PlanError` (no href, not http(s))."""
        href = self.assets[key].get("href")
        if not isinstance(href, str) or not href:
            raise PlanError("asset has no href")
        return _asset_url(self.base, href)

    def job(self, key: str, url: str) -> Job:
        """The job of asset ``key`` at ``url``, or raise :class:`PlanError` saying why it is
        refused."""
        asset = self.assets[key]
        size = asset.get("file:size")
        if isinstance(size, int) and not isinstance(size, bool) and size > MAX_FILE_SIZE:
            raise PlanError(f"file:size {size} is more bytes than any file can hold")
        name = sanitize_relpath(self.names[key], what="file name")
        rel = self._destination(key, name)
        checksum = asset.get("file:checksum")
        return Job(
            item_id=self.item_id,
            collection=self.collection,
            asset_key=key,
            url=url,
            dest=rel,
            media_type=media_type(asset) or None,
            roles=roles(asset),
            size=size,
            checksum=checksum if isinstance(checksum, str) and checksum else None,
            item_updated=self.updated,
            zip_check=is_zip(asset)
            or media_type(asset) in KMZ_TYPES
            or suffix(asset) == ".kmz"
            or name.lower().endswith((".zip", ".kmz")),
        )

    def _destination(self, key: str, name: str) -> str:
        """Where asset ``key`` (file ``name``) goes under DEST, by the run's template."""
        year, month, day = self.dates
        rel = self.rules.template.format(
            collection=segment(self.collection, "collection id"),
            item=segment(self.item_id, "item id"),
            key=segment(key, "asset key"),
            name=name,
            year=year,
            month=month,
            day=day,
        )
        rel = destination(rel)
        if path_key(rel) in self.taken:
            # Two assets of one item with one name but two hrefs: the later one gets its
            # key appended.
            stem, ext = posixpath.splitext(rel)
            rel = destination(f"{stem}_{key}{ext}")
            if (other := self.taken.get(path_key(rel))) is not None:
                raise PlanError(
                    f"{self.item_id}/{key}: destination {rel!r} is already used by "
                    f"{self.item_id}/{other}; two files cannot share one destination"
                )
        self.taken[path_key(rel)] = key
        return rel


def _file_names(
    item_id: str, keys: list[str], assets: Mapping[str, Mapping[str, Any]]
) -> dict[str, str]:
    """The file name of each chosen asset with an href; a lone KMZ's companion PNG takes
    the name the KMZ refers to (the seed notebook's rule)."""
    names: dict[str, str] = {}
    for key in keys:
        href = assets[key].get("href")
        if isinstance(href, str):
            names[key] = _file_name(item_id, key, assets[key], href)
    kmz_keys = [k for k in keys if is_kmz_or_kml(assets[k]) and k in names]
    if len(kmz_keys) == 1:
        png_keys = [k for k in profile_keys(assets) if k in names and is_png(assets[k])]
        if png_keys:
            names[png_keys[0]] = companion_png_name(names[kmz_keys[0]])
    return names


def _asset_url(base: str | None, href: str) -> str:
    """``href`` resolved against the item's self link; raise :class:`PlanError` unless it
    is an http(s) URL with a host and a valid port."""
    try:  # http://[x (a bracket never closed), a port over 65535, no host
        url = urljoin(base, href) if base else href
        parts = urlsplit(url)
        if parts.scheme in ("http", "https") and not (parts.hostname and parts.port != -1):
            raise ValueError(url)
    except ValueError:
        raise PlanError(f"asset href {href!r} is not a valid URL (its host or port)") from None
    if parts.scheme not in ("http", "https"):
        raise PlanError(f"asset href {href!r} is not an http(s) URL")
    return url
