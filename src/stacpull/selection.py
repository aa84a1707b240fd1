"""Which assets of an item a run takes: the selectors (``maap``, ``all``, keys, globs,
``role:``, ``type:``) and the MAAP profile, which finds the product zip, the quicklook PNG and
the KMZ overview under any generation of MAAP's drifting asset keys.

Pure functions of an item's assets; :mod:`.plan` turns the choice into jobs.
"""

from __future__ import annotations

import fnmatch
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "KMZ_TYPES",
    "choose_assets",
    "is_kmz_or_kml",
    "is_png",
    "is_zip",
    "maap_slots",
    "media_type",
    "profile_keys",
    "roles",
    "suffix",
    "url_path",
]

_ZIP_TYPES = frozenset({"application/zip", "application/x-zip-compressed", "application/x-zip"})

KMZ_TYPES = frozenset({"application/vnd.google-earth.kmz"})

_KML_TYPES = frozenset({"application/vnd.google-earth.kml+xml"})

#: The MAAP profile: for each slot, key patterns in order of preference and a test on the
#: asset. The first asset matching a slot is taken; a slot with no match is skipped.
_MAAP_PROFILE: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("product", ("product",)),
    ("quicklook", ("quicklook_png", "quicklook", "enclosure_ql_*_png", "enclosure_ql*png")),
    ("overview", ("quicklook_kml", "quicklook_1", "enclosure_kml", "enclosure_kmz")),
)


def media_type(asset: Mapping[str, Any]) -> str:
    raw = asset.get("type")
    return raw.split(";")[0].strip().lower() if isinstance(raw, str) else ""


def suffix(asset: Mapping[str, Any]) -> str:
    return posixpath.splitext(url_path(asset.get("href")))[1].lower()


def url_path(href: Any) -> str:
    """The path of ``href``; empty when it is no string or no URL (``http://[x``)."""
    try:
        return urlsplit(href).path if isinstance(href, str) else ""
    except ValueError:
        return ""


def is_png(asset: Mapping[str, Any]) -> bool:
    return media_type(asset) == "image/png" or (not media_type(asset) and suffix(asset) == ".png")


def is_zip(asset: Mapping[str, Any]) -> bool:
    return media_type(asset) in _ZIP_TYPES or suffix(asset) == ".zip"


def is_kmz_or_kml(asset: Mapping[str, Any]) -> bool:
    mt = media_type(asset)
    return mt in KMZ_TYPES or mt in _KML_TYPES or suffix(asset) in (".kmz", ".kml")


def _slot_test(slot: str, asset: Mapping[str, Any]) -> bool:
    if slot == "quicklook":
        return is_png(asset)
    if slot == "overview":
        return is_kmz_or_kml(asset)
    return True


def maap_slots(assets: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """The MAAP profile's pick per slot (``product``, ``quicklook``, ``overview``): which
    asset key holds the product zip, the quicklook PNG and the KMZ, whatever generation of
    keys the item uses. Slots with no matching asset are absent."""
    slots: dict[str, str] = {}
    for slot, patterns in _MAAP_PROFILE:
        pick = next(
            (
                key
                for pattern in patterns
                for key in sorted(assets)
                if fnmatch.fnmatchcase(key, pattern) and _slot_test(slot, assets[key])
            ),
            None,
        )
        if pick is None and slot == "product":
            pick = next(
                (k for k in sorted(assets) if "data" in roles(assets[k]) and is_zip(assets[k])),
                None,
            )
        if pick is not None and pick not in slots.values():
            slots[slot] = pick
    return slots


def profile_keys(assets: Mapping[str, Mapping[str, Any]]) -> list[str]:
    return list(maap_slots(assets).values())


def roles(asset: Mapping[str, Any]) -> tuple[str, ...]:
    """An asset's roles that are strings (``roles`` may be anything in hostile metadata)."""
    given = asset.get("roles")
    return tuple(r for r in given if isinstance(r, str)) if isinstance(given, list) else ()


def choose_assets(assets: Mapping[str, Mapping[str, Any]], selectors: Sequence[str]) -> list[str]:
    """Keys of the assets the selectors pick, in a stable order, each once."""
    chosen: list[str] = []

    def add(keys: Iterable[str]) -> None:
        for key in keys:
            if key not in chosen:
                chosen.append(key)

    for sel in selectors:
        kind, sep, value = sel.partition(":")
        if sel in ("all", "*"):
            add(sorted(assets))
        elif sel == "maap":
            add(profile_keys(assets))
        elif sep and kind == "key":
            add([value] if value in assets else [])
        elif sep and kind == "role":
            add(k for k in sorted(assets) if value in roles(assets[k]))
        elif sep and kind == "type":
            add(k for k in sorted(assets) if fnmatch.fnmatchcase(media_type(assets[k]), value))
        elif any(c in sel for c in "*?["):
            add(k for k in sorted(assets) if fnmatch.fnmatchcase(k, sel))
        else:
            add([sel] if sel in assets else [])
    return chosen
