"""Pure planning: one STAC item (a dict) → download jobs and refusals. No I/O here.

Asset keys drift on MAAP (``quicklook`` → ``quicklook_png`` → ``enclosure_ql_pauli_png``),
so assets are chosen by *selectors* rather than by a fixed list of keys:

==================  ========================================================
``maap``            the default profile: the product zip, one quicklook PNG and
                    the KMZ overview, under any generation of MAAP keys
``all`` or ``*``    every asset
``product``         an exact asset key (``key:product`` also works)
``enclosure_*``     a glob on asset keys
``role:overview``   every asset with that role
``type:image/png``  every asset of that media type (globs allowed: ``type:image/*``)
==================  ========================================================

Every destination is sanitised: a name from STAC metadata that is absolute, contains
``..``, a control character or a backslash is refused, so nothing is written outside DEST;
one that lands in stacpull's own state directory (``DEST/.stacpull``, in any case, or a
``.stacpull`` deeper down: the state of a DEST nested below) or is
too long for the filesystem (a segment over NAME_MAX once ``.part`` is added, a path over
PATH_MAX) is refused too.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
import unicodedata
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

from .errors import SECRETS, ConfigError, PlanError, UnsafePathError
from .models import Holder, Job, Refusal

__all__ = [
    "MAAP_PROFILE",
    "MAX_FILE_SIZE",
    "PlanRules",
    "RunClaims",
    "choose_assets",
    "companion_png_name",
    "in_state_dir",
    "maap_slots",
    "path_key",
    "plan_item",
    "sanitize_relpath",
]

ZIP_TYPES = frozenset({"application/zip", "application/x-zip-compressed", "application/x-zip"})
KMZ_TYPES = frozenset({"application/vnd.google-earth.kmz"})
KML_TYPES = frozenset({"application/vnd.google-earth.kml+xml"})

#: The MAAP profile: for each slot, key patterns in order of preference and a test on the
#: asset. The first asset matching a slot is taken; a slot with no match is skipped.
MAAP_PROFILE: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("product", ("product",)),
    ("quicklook", ("quicklook_png", "quicklook", "enclosure_ql_*_png", "enclosure_ql*png")),
    ("overview", ("quicklook_kml", "quicklook_1", "enclosure_kml", "enclosure_kmz")),
)

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
    "application/geo+json": "geojson",
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
_MAX_SEGMENT_BYTES = 255  # NAME_MAX
#: The longest file name a destination may end in: its ``.part`` must fit NAME_MAX too.
_MAX_NAME_BYTES = _MAX_SEGMENT_BYTES - len(".part")
#: The longest destination any DEST can hold: ``/`` + it + ``.part`` + NUL within PATH_MAX
#: (4096 on Linux). The transfer checks the real length, with DEST, before it starts.
_MAX_PATH_BYTES = 4096 - len("/") - len(".part") - 1
#: stacpull's own directory in DEST (journal.JOURNAL_DIR): no metadata may address it.
_STATE_DIR = ".stacpull"


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


def _media_type(asset: Mapping[str, Any]) -> str:
    raw = asset.get("type")
    return raw.split(";")[0].strip().lower() if isinstance(raw, str) else ""


def _suffix(asset: Mapping[str, Any]) -> str:
    return posixpath.splitext(_url_path(asset.get("href")))[1].lower()


def _url_path(href: Any) -> str:
    """The path of ``href``; empty when it is no string or no URL (``http://[x``)."""
    try:
        return urlsplit(href).path if isinstance(href, str) else ""
    except ValueError:
        return ""


def _object(value: Any) -> Mapping[str, Any]:
    """``value`` when it is a JSON object, else an empty one (``properties: []``)."""
    return value if isinstance(value, dict) else {}


def _is_png(asset: Mapping[str, Any]) -> bool:
    return _media_type(asset) == "image/png" or (
        not _media_type(asset) and _suffix(asset) == ".png"
    )


def _is_zip(asset: Mapping[str, Any]) -> bool:
    return _media_type(asset) in ZIP_TYPES or _suffix(asset) == ".zip"


def _is_kmz_or_kml(asset: Mapping[str, Any]) -> bool:
    mt = _media_type(asset)
    return mt in KMZ_TYPES or mt in KML_TYPES or _suffix(asset) in (".kmz", ".kml")


def _slot_test(slot: str, asset: Mapping[str, Any]) -> bool:
    if slot == "quicklook":
        return _is_png(asset)
    if slot == "overview":
        return _is_kmz_or_kml(asset)
    return True


def maap_slots(assets: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """The MAAP profile's pick per slot (``product``, ``quicklook``, ``overview``): which
    asset key holds the product zip, the quicklook PNG and the KMZ, whatever generation of
    keys the item uses. Slots with no matching asset are absent."""
    slots: dict[str, str] = {}
    for slot, patterns in MAAP_PROFILE:
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
                (k for k in sorted(assets) if "data" in _roles(assets[k]) and _is_zip(assets[k])),
                None,
            )
        if pick is not None and pick not in slots.values():
            slots[slot] = pick
    return slots


def _profile_keys(assets: Mapping[str, Mapping[str, Any]]) -> list[str]:
    return list(maap_slots(assets).values())


def _roles(asset: Mapping[str, Any]) -> tuple[str, ...]:
    roles = asset.get("roles")
    return tuple(r for r in roles if isinstance(r, str)) if isinstance(roles, list) else ()


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
            add(_profile_keys(assets))
        elif sep and kind == "key":
            add([value] if value in assets else [])
        elif sep and kind == "role":
            add(k for k in sorted(assets) if value in _roles(assets[k]))
        elif sep and kind == "type":
            add(k for k in sorted(assets) if fnmatch.fnmatchcase(_media_type(assets[k]), value))
        elif any(c in sel for c in "*?["):
            add(k for k in sorted(assets) if fnmatch.fnmatchcase(k, sel))
        else:
            add([sel] if sel in assets else [])
    return chosen


def sanitize_relpath(raw: str, *, what: str = "path") -> str:
    """Return ``raw`` as a safe relative POSIX path, or raise :class:`UnsafePathError`.

    Refused: empty names, absolute paths, ``..`` or ``.`` segments, backslashes, control
    and format characters (including NUL), names or directories ending in ``.part`` (our
    partial files, in any case), and segments longer than 255 bytes. Nothing is silently
    rewritten: a hostile name is reported, not "fixed" into something the user did not ask
    for.
    """
    if not raw:
        raise UnsafePathError(f"{what} is empty")
    # A printable string has none of those categories; only others need the slow look
    # (planning calls this five times per asset).
    if not raw.isprintable():
        for ch in raw:
            if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
                raise UnsafePathError(f"{what} {raw!r} contains a control character")
    if "\\" in raw:
        raise UnsafePathError(f"{what} {raw!r} contains a backslash")
    if raw.startswith("/") or re.match(r"^[A-Za-z]:", raw):
        raise UnsafePathError(f"{what} {raw!r} is an absolute path")
    segments = raw.split("/")
    for seg in segments:
        if seg in ("", ".", ".."):
            raise UnsafePathError(f"{what} {raw!r} has an empty, '.' or '..' segment")
        if seg != seg.strip():
            raise UnsafePathError(f"{what} {raw!r} has a segment with leading or trailing spaces")
        if len(seg.encode("utf-8")) > _MAX_SEGMENT_BYTES:
            raise UnsafePathError(f"{what} has a segment longer than {_MAX_SEGMENT_BYTES} bytes")
    if raw.lower().endswith(".part"):
        raise UnsafePathError(
            f"{what} {raw!r} ends in .part, which stacpull keeps for partial files"
        )
    if any(seg.lower().endswith(".part") for seg in segments[:-1]):
        # A directory `x.part` is where another file's partial `x` would be written.
        raise UnsafePathError(
            f"{what} {raw!r} has a directory ending in .part, which stacpull keeps for "
            "partial files"
        )
    return raw


def in_state_dir(rel: str) -> bool:
    """Whether ``rel`` (a path in DEST) goes through a ``.stacpull`` at any depth, whatever
    the case or Unicode form: not only DEST's own state, a DEST may hold another DEST
    below it, whose journal and lock are as much stacpull's state."""
    return any(
        unicodedata.normalize("NFKC", part).casefold().rstrip(".") == _STATE_DIR
        for part in rel.split("/")
    )


def _destination(rel: str) -> str:
    """``rel`` (a template's result) as a safe destination, or raise :class:`UnsafePathError`.

    Beyond :func:`sanitize_relpath`: it may not lie in stacpull's state directory, whatever
    the case or Unicode form (a case-insensitive filesystem, or one that drops trailing
    dots, would open the journal under ``.STACPULL.``), and it must fit NAME_MAX with its
    ``.part`` suffix and PATH_MAX as a whole.
    """
    rel = sanitize_relpath(rel, what="destination")
    if in_state_dir(rel):
        raise UnsafePathError(
            f"destination {rel!r} lies in {_STATE_DIR}/, stacpull's own state directory"
        )
    if len(rel.rsplit("/", 1)[-1].encode("utf-8")) > _MAX_NAME_BYTES:
        raise UnsafePathError(
            f"destination {rel[:80]!r}…: file name too long "
            f"(at most {_MAX_NAME_BYTES} bytes, to leave room for .part)"
        )
    if len(rel.encode("utf-8")) > _MAX_PATH_BYTES:
        raise UnsafePathError(
            f"destination {rel[:80]!r}…: path too long (at most {_MAX_PATH_BYTES} bytes)"
        )
    return rel


def _segment(value: str, what: str) -> str:
    safe = sanitize_relpath(value, what=what)
    if "/" in safe:
        raise UnsafePathError(f"{what} {value!r} contains '/'")
    return safe


def _file_name(item_id: str, key: str, asset: Mapping[str, Any], href: str) -> str:
    local = asset.get("file:local_path")
    if isinstance(local, str) and local:
        return local
    title = asset.get("title")
    if isinstance(title, str) and _FILENAME_LIKE.match(title):
        return title
    last = unquote(_url_path(href).rsplit("/", 1)[-1])
    if last and _HAS_EXTENSION.search(last):
        return last
    ext = _EXTENSIONS.get(_media_type(asset)) or "bin"
    return f"{item_id}.{ext}"


def companion_png_name(kmz_name: str) -> str:
    """The PNG name a MAAP KMZ refers to: its stem up to ``_map``, plus ``_ql.png``.

    This is the seed notebook's rule (``BIO_…_map.kmz`` → ``BIO_…_ql.png``); a stem
    without ``_map`` keeps the whole stem.
    """
    base = posixpath.basename(kmz_name)
    stem = posixpath.splitext(base)[0]
    cut = stem.find("_map")
    return (stem[:cut] if cut > 0 else stem) + "_ql.png"


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
    item_id = item.get("id")
    given = item.get("collection") or "_no_collection"
    collection = given if isinstance(given, str) else "?"
    if _lone_surrogate(item):
        reason = "item has text that is not valid Unicode (a lone surrogate)"
        return [], [Refusal(_shown(item_id), _shown(collection), "*", reason)]
    if not isinstance(item_id, str) or not item_id:
        # Never str() a foreign value here: a deep list would raise RecursionError.
        what = "item has no id" if not item_id else f"item id is a {type(item_id).__name__}"
        return [], [Refusal("?", collection, "*", what)]
    if not isinstance(given, str):
        return [], [Refusal(item_id, collection, "*", "item collection is not a string")]
    assets = item.get("assets") or {}
    if not isinstance(assets, dict):
        return [], [Refusal(item_id, collection, "*", "item assets are not an object")]
    assets = {k: v for k, v in assets.items() if isinstance(k, str) and isinstance(v, dict)}
    keys = choose_assets(assets, rules.selectors)
    props = _object(item.get("properties"))
    updated = props.get("updated") if isinstance(props.get("updated"), str) else None
    year, month, day = _dates(item)
    base = _self_href(item)

    names: dict[str, str] = {}
    for key in keys:
        href = assets[key].get("href")
        if isinstance(href, str):
            names[key] = _file_name(item_id, key, assets[key], href)
    kmz_keys = [k for k in keys if _is_kmz_or_kml(assets[k]) and k in names]
    if len(kmz_keys) == 1:
        png_keys = [k for k in _profile_keys(assets) if k in names and _is_png(assets[k])]
        if png_keys:
            names[png_keys[0]] = companion_png_name(names[kmz_keys[0]])

    jobs: list[Job] = []
    refusals: list[Refusal] = []
    taken: dict[str, str] = {}  # path_key -> the asset key that has it
    for key in keys:
        asset = assets[key]
        try:
            href = asset.get("href")
            if not isinstance(href, str) or not href:
                raise PlanError("asset has no href")
            size = asset.get("file:size")
            if isinstance(size, int) and not isinstance(size, bool) and size > MAX_FILE_SIZE:
                raise PlanError(f"file:size {size} is more bytes than any file can hold")
            try:  # http://[x (a bracket never closed), a port over 65535, no host
                url = urljoin(base, href) if base else href
                parts = urlsplit(url)
                if parts.scheme in ("http", "https") and not (parts.hostname and parts.port != -1):
                    raise ValueError(url)
            except ValueError:
                raise PlanError(
                    f"asset href {href!r} is not a valid URL (its host or port)"
                ) from None
            if parts.scheme not in ("http", "https"):
                raise PlanError(f"asset href {href!r} is not an http(s) URL")
            name = sanitize_relpath(names[key], what="file name")
            rel = rules.template.format(
                collection=_segment(str(collection), "collection id"),
                item=_segment(item_id, "item id"),
                key=_segment(key, "asset key"),
                name=name,
                year=year,
                month=month,
                day=day,
            )
            rel = _destination(rel)
            if path_key(rel) in taken:
                # Two assets of one item with one name (MAAP's thumbnail and quicklook_jpeg
                # share an href): the later one gets its key appended.
                stem, ext = posixpath.splitext(rel)
                rel = _destination(f"{stem}_{key}{ext}")
                if (other := taken.get(path_key(rel))) is not None:
                    raise PlanError(
                        f"{item_id}/{key}: destination {rel!r} is already used by "
                        f"{item_id}/{other}; two files cannot share one destination"
                    )
            taken[path_key(rel)] = key
        except PlanError as exc:
            refusals.append(Refusal(item_id, str(collection), key, str(exc)))
            continue
        checksum = asset.get("file:checksum")
        jobs.append(
            Job(
                item_id=item_id,
                collection=str(collection),
                asset_key=key,
                url=url,
                dest=rel,
                media_type=_media_type(asset) or None,
                roles=_roles(asset),
                size=size,
                checksum=checksum if isinstance(checksum, str) and checksum else None,
                item_updated=updated,
                zip_check=_is_zip(asset)
                or _media_type(asset) in KMZ_TYPES
                or _suffix(asset) == ".kmz"
                or name.lower().endswith((".zip", ".kmz")),
            )
        )
    return jobs, refusals


def path_key(rel: str) -> str:
    """The form under which two destinations are one file on a case-insensitive or
    Unicode-normalising file system (macOS, Windows, exFAT; DEST may be one): case folded,
    canonically composed. ``a/B.tif`` and ``A/b.TIF`` have one key; so have ``é`` and
    ``e`` + combining accent."""
    if rel.isascii():
        return rel.lower()
    return unicodedata.normalize("NFC", unicodedata.normalize("NFD", rel).casefold())


class _Hashes:
    """A set of 64-bit hashes at 8 to 32 bytes each (an open-addressing table in an array;
    a ``set`` of ints costs about 60): one per item of a million-item mirror."""

    def __init__(self) -> None:
        self._slots = array("q", bytes(8 * 1024))  # 0: an empty slot
        self._count = 0

    def add(self, value: int) -> bool:
        """Add ``value``; False when it was there already."""
        value = value or 1
        if not self._place(self._slots, value):
            return False
        self._count += 1
        if 2 * self._count > len(self._slots):
            old = self._slots
            self._slots = array("q", bytes(16 * len(old)))
            for held in old:
                if held:
                    self._place(self._slots, held)
        return True

    def __contains__(self, value: int) -> bool:
        value = value or 1
        mask = len(self._slots) - 1
        i = (value ^ (value >> 32)) & mask
        while (held := self._slots[i]) != 0:
            if held == value:
                return True
            i = (i + 1) & mask
        return False

    @staticmethod
    def _place(slots: array[int], value: int) -> bool:
        mask = len(slots) - 1
        i = (value ^ (value >> 32)) & mask
        while (held := slots[i]) != 0:
            if held == value:
                return False
            i = (i + 1) & mask
        slots[i] = value
        return True


def _kept(names: tuple[str, str]) -> tuple[str, str]:
    """``(collection, item id)`` as the journal keeps them: without any known secret."""
    return (SECRETS.scrub(names[0], shapes=False), SECRETS.scrub(names[1], shapes=False))


class RunClaims:
    """Which item is planned, and which job holds each destination, in one run: two jobs
    never share a destination.

    - An item listed again (same collection and id: MAAP's search, or a saved search, can
      list one twice, on one page or on two) is planned once; the first listing wins and
      later ones are only counted (:attr:`duplicates`).
    - Destinations are compared by :func:`path_key`, so names that differ only by case or
      Unicode form collide too. The first job planned in the run for a destination keeps
      it; a later job for it is refused, the reason naming both.
    - Across runs the journal's record keeps its destination: a job whose destination the
      journal records for *another item* is refused, whether that item is listed again
      (before or after it) or not, so the winner never depends on the order of results.
      An item whose file left the catalogue frees its name when ``mirror --prune`` deletes
      it; only then may another item's file take that name (never over bytes the journal
      attributes to someone else). The same item re-listed is no collision, also when an
      asset key changed (MAAP's keys drift) but its file name did not.

    Memory: one 64-bit hash per distinct item (2 to 4 MB for 100 000 items); destinations
    are looked up in the journal, which indexes them by key, so none is kept here.
    """

    def __init__(self, run: int) -> None:
        self.run = run
        self.duplicates = 0
        self._items = _Hashes()

    def first_listing(self, item: Mapping[str, Any]) -> bool:
        """Whether ``item`` is listed for the first time in this run (counted if not)."""
        item_id = item.get("id")
        if not isinstance(item_id, str):
            return True  # refused by plan_item anyway
        # Python's str hash is keyed per process (unless PYTHONHASHSEED fixes it): a
        # catalogue cannot aim at a collision; chance: one in ~10^9 for 100 000 items.
        listed = (str(item.get("collection") or "_no_collection"), item_id)
        if self._items.add(hash(listed)):
            # The journal keeps names without a known secret (an id echoing the
            # catalogue's password reads "leak-***" there): its rows find the item too.
            if (kept := _kept(listed)) != listed:
                self._items.add(hash(kept))
            return True
        self.duplicates += 1
        return False

    def __contains__(self, item: object) -> bool:
        """Whether ``(collection, item id)`` was listed in this run: its files are not
        gone, whatever was planned of it (a refused asset, a first listing that lacks one)."""
        return isinstance(item, tuple) and hash(item) in self._items

    def settle(
        self, jobs: Sequence[Job], holders: Mapping[str, Sequence[Holder]]
    ) -> tuple[list[Job], list[Refusal]]:
        """Split one page's jobs, in order, into those that keep their destination and
        refusals for the rest. ``holders``: the journal's holders by :func:`path_key`."""
        kept: list[Job] = []
        refused: list[Refusal] = []
        page: dict[str, Holder] = {}
        for job in jobs:
            key = path_key(job.dest)
            clash = page.get(key) or self._clash(job, holders.get(key, ()))
            if clash is None:
                page[key] = Holder(
                    job.dest, job.collection, job.item_id, job.asset_key, run=self.run
                )
                kept.append(job)
            else:
                refused.append(self._refusal(job, clash))
        return kept, refused

    def _clash(self, job: Job, holders: Sequence[Holder]) -> Holder | None:
        this_run = [h for h in holders if h.run == self.run]
        for h in this_run:
            if (h.collection, h.item_id, h.asset_key) != (
                job.collection,
                job.item_id,
                job.asset_key,
            ):
                return h
        mine = {(job.collection, job.item_id), _kept((job.collection, job.item_id))}
        for h in holders:
            if h.run != self.run and (h.collection, h.item_id) not in mine:
                return h
        return None

    def _refusal(self, job: Job, holder: Holder) -> Refusal:
        both = holder.collection != job.collection
        mine = job.label + (f" ({job.collection})" if both else "")
        theirs = holder.label + (f" ({holder.collection})" if both else "")
        same = (
            ""
            if holder.path == job.dest
            else f" (as {holder.path!r}: one name where case and accents are not told apart)"
        )
        when = (
            "planned first in this run"
            if holder.run == self.run
            else "recorded in the journal by an earlier run; once that item left the "
            "catalogue, `mirror --prune` of its search frees the name"
        )
        return Refusal(
            job.item_id,
            job.collection,
            job.asset_key,
            f"{mine}: destination {job.dest!r} is already {theirs}'s{same}, {when}; "
            "two files cannot share one destination",
        )
