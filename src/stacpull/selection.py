"""Which assets of an item a run takes: the selectors (``maap``, ``all``, keys, globs,
``role:``, ``type:``) and the MAAP profile, which takes per mission what its users download,
under any generation of MAAP's drifting asset keys.

The ``maap`` profile decides per item, from the item itself (:func:`profile_choice`):

* ``earthcare`` (its ``enclosure_h5``, or platform/constellation/mission EarthCARE): the
  ``enclosure_h5`` data file, its ``enclosure_hdr`` header and the ``quicklook_jpeg``;
  never the zipper's product zip, which ESA's notebook says to avoid;
* ``biomass``: the product zip, one quicklook PNG and the KMZ/KML overview;
* ``flex``: the product and its quicklook;
* ``generic`` (no mission recognised): the BIOMASS rule, which fits most MAAP items.

The platform, constellation or mission property decides first, then the assets present;
the collection id is only the last hint (collections are renamed, items are not).

A ``role:R`` selector for a role that *describes* an item (``metadata``, ``overview``,
``thumbnail``, ``visual``) passes over assets that also have the ``data`` role: MAAP's
EarthCARE product zip is ``data, metadata, archive``, and ``role:metadata`` means the
metadata files, not the 2 GB product. Any other role (``data``, ``archive``…) takes every
asset that has it.

Pure functions of an item; :mod:`.plan` turns the choice into jobs.
"""

from __future__ import annotations

import fnmatch
import posixpath
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "KMZ_TYPES",
    "ProfileChoice",
    "choose_assets",
    "is_kmz_or_kml",
    "is_png",
    "is_zip",
    "media_type",
    "profile_choice",
    "profile_keys",
    "profile_slots",
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


def _maap_slots(assets: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
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
    return list(_maap_slots(assets).values())


def roles(asset: Mapping[str, Any]) -> tuple[str, ...]:
    """An asset's roles that are strings (``roles`` may be anything in hostile metadata)."""
    given = asset.get("roles")
    return tuple(r for r in given if isinstance(r, str)) if isinstance(given, list) else ()


#: Roles that describe an item rather than hold its data: a ``role:`` selector for one of
#: them passes over assets that are also ``data`` (see the module docstring).
_DESCRIBING_ROLES = frozenset({"metadata", "overview", "thumbnail", "visual"})

#: The properties that may name an item's mission, in the order they are believed.
_MISSION_PROPERTIES = ("platform", "constellation", "mission")

_HDF5_TYPES = frozenset({"application/x-hdf5", "application/x-hdf"})


@dataclass(frozen=True, slots=True)
class ProfileChoice:
    """What the ``maap`` profile takes from one item: the ``rule`` (``earthcare``,
    ``biomass``, ``flex`` or ``generic``), ``why`` (the evidence, e.g. ``enclosure_h5
    present, platform EarthCARE``) and the asset ``keys`` it picked."""

    rule: str
    why: str
    keys: tuple[str, ...]


def _mission_of(word: str) -> str | None:
    """The mission a platform, constellation or collection name belongs to, if any."""
    folded = word.lower().replace("-", "").replace("_", "").replace(" ", "")
    for mission in ("earthcare", "biomass", "flex"):
        if folded.startswith(mission):
            return mission
    return None


def _quoted(word: str) -> str:
    """A property value as a reason quotes it: at most 40 characters (a catalogue's value
    is anyone's text; the dry run prints it once per distinct reason)."""
    return word if len(word) <= 40 else f"{word[:40]}…"


def _words(value: Any) -> list[str]:
    """A property's string values (``platform`` is a string, ``mission`` may be a list)."""
    if isinstance(value, str):
        return [value]
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _is_hdf5(asset: Mapping[str, Any]) -> bool:
    return media_type(asset) in _HDF5_TYPES or suffix(asset) in (".h5", ".hdf5", ".he5")


def _mission(item: Mapping[str, Any], assets: Mapping[str, Mapping[str, Any]]) -> tuple[str, str]:
    """The rule for ``item`` and why: its mission property first, then its assets, then
    (only as a last hint) its collection id."""
    props = item.get("properties")
    props = props if isinstance(props, Mapping) else {}
    named = next(
        (
            (mission, f"{name} {_quoted(word)}")
            for name in _MISSION_PROPERTIES
            for word in _words(props.get(name))
            if (mission := _mission_of(word)) is not None
        ),
        None,
    )
    # EarthCARE's own key; any HDF5 file would be too broad (other missions have them).
    by_assets = "enclosure_h5 present" if "enclosure_h5" in assets else None
    if named is not None:
        mission, said = named
        return mission, (f"{by_assets}, {said}" if by_assets and mission == "earthcare" else said)
    if by_assets is not None:
        return "earthcare", by_assets
    collection = item.get("collection")
    if isinstance(collection, str) and (mission := _mission_of(collection)) is not None:
        return mission, f"collection {collection}"
    return "generic", "no mission in its platform, assets or collection"


def _first(
    assets: Mapping[str, Mapping[str, Any]],
    key: str,
    patterns: Sequence[str],
    test: Callable[[Mapping[str, Any]], bool],
) -> str | None:
    """``key`` when the item has it, else the first key matching ``patterns`` (in order;
    keys sorted) whose asset passes ``test``."""
    if key in assets:
        return key
    return next(
        (
            k
            for pattern in patterns
            for k in sorted(assets)
            if fnmatch.fnmatchcase(k, pattern) and test(assets[k])
        ),
        None,
    )


def _is_image(asset: Mapping[str, Any]) -> bool:
    return media_type(asset).startswith("image/") or suffix(asset) in (".jpg", ".jpeg", ".png")


def _earthcare_slots(assets: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """The HDF5 data file, its header and the quicklook: what every EarthCARE client takes.
    Never the zip (ESA's notebook: avoid it), even where the item has no HDF5 file."""
    picks = {
        "product": _first(assets, "enclosure_h5", ("*",), lambda a: _is_hdf5(a) and not is_zip(a)),
        "header": _first(assets, "enclosure_hdr", ("*",), lambda a: suffix(a) == ".hdr"),
        "quicklook": _first(assets, "quicklook_jpeg", ("quicklook*", "enclosure_ql*"), _is_image),
    }
    # A zip under an EarthCARE key (the zipper's URL as enclosure_h5) is still the zip.
    return {slot: key for slot, key in picks.items() if key is not None and not is_zip(assets[key])}


def profile_slots(item: Mapping[str, Any]) -> dict[str, str]:
    """The ``maap`` profile's pick for ``item`` by slot (``product``, ``quicklook``,
    ``overview``; EarthCARE's ``header``): the notebook table's columns name these."""
    return _slots(item, _assets_of(item))[1]


def _slots(
    item: Mapping[str, Any], assets: Mapping[str, Mapping[str, Any]]
) -> tuple[tuple[str, str], dict[str, str]]:
    rule, why = _mission(item, assets)
    if rule == "earthcare":
        return (rule, why), _earthcare_slots(assets)
    slots = _maap_slots(assets)
    if rule == "flex":  # FLEX has no KMZ overview: its product and quicklook
        slots.pop("overview", None)
    return (rule, why), slots


def _profile(item: Mapping[str, Any], assets: Mapping[str, Mapping[str, Any]]) -> ProfileChoice:
    (rule, why), slots = _slots(item, assets)
    return ProfileChoice(rule, why, tuple(slots.values()))


def _assets_of(item: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    given = item.get("assets")
    return {
        k: v
        for k, v in (given.items() if isinstance(given, Mapping) else ())
        if isinstance(k, str) and isinstance(v, Mapping)
    }


def profile_choice(item: Mapping[str, Any]) -> ProfileChoice:
    """What the ``maap`` profile takes from ``item`` (a STAC item as a dict) and why: the
    rule of its mission, decided from the item itself (see the module docstring)."""
    return _profile(item, _assets_of(item))


def _has_role(asset: Mapping[str, Any], role: str) -> bool:
    """Whether a ``role:`` selector for ``role`` takes ``asset``: a describing role passes
    over data assets that claim it too (the EarthCARE zip is ``data, metadata, archive``)."""
    have = roles(asset)
    return role in have and not (role in _DESCRIBING_ROLES and "data" in have)


def choose_assets(
    assets: Mapping[str, Mapping[str, Any]],
    selectors: Sequence[str],
    item: Mapping[str, Any] | None = None,
) -> list[str]:
    """Keys of the assets the selectors pick, in a stable order, each once. ``item`` (whose
    assets ``assets`` are) lets the ``maap`` profile read the mission from its properties."""
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
            add(_profile(item if item is not None else {}, assets).keys)
        elif sep and kind == "key":
            add([value] if value in assets else [])
        elif sep and kind == "role":
            add(k for k in sorted(assets) if _has_role(assets[k], value))
        elif sep and kind == "type":
            add(k for k in sorted(assets) if fnmatch.fnmatchcase(media_type(assets[k]), value))
        elif any(c in sel for c in "*?["):
            add(k for k in sorted(assets) if fnmatch.fnmatchcase(k, sel))
        else:
            add([sel] if sel in assets else [])
    return chosen
