"""A mirror's verdict after its transfers: which files' items left the catalogue, and the
prune that deletes them.

Only a complete search of the same query may call a file gone (:func:`incomplete` says
why not otherwise); each such item is then looked up by id before it is believed gone
(:func:`confirm_gone`). :func:`prune` deletes their files through safepath's walk, so
nothing is ever deleted through a link.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from .config import Config, SearchConfig
from .destpaths import in_state_dir
from .errors import StacpullError, StorageError
from .journal import Journal
from .producer import Source
from .runtypes import RunOptions
from .safepath import is_regular, lstat_at, open_dir
from .search import CatalogueHeaders, search_pages

__all__ = ["confirm_gone", "incomplete", "prune"]


def incomplete(config: Config, opts: RunOptions, source: Source) -> str | None:
    """Why this mirror run may not judge any file gone (``None``: it may).

    Only a complete search of the same query (the scope) lists everything that is still
    in the catalogue; any other run would call what it did not look at gone, and a prune
    would delete it."""
    if opts.retry_failed:
        return "--retry-failed does not search"
    if opts.pages is not None:
        return "a saved search (--from) is not the catalogue's listing"
    if config.search.max_items is not None:
        return "--max-items cuts the search"
    if not source.complete:
        return "the search did not finish"
    if source.matched is not None and source.listed < source.matched:
        repeats = f" ({source.repeats} listed again)" if source.repeats else ""
        return f"the search listed {source.listed} of {source.matched} matching items{repeats}"
    if source.listed == 0 and source.matched is None:
        # One empty answer (a glitch under load) would otherwise empty the whole mirror.
        return "the search listed no item and the catalogue did not say that none match"
    return None


#: Item ids asked for at once when a mirror makes sure its unlisted items are gone.
_LOOKUP_IDS = 40


async def confirm_gone(
    config: Config, journal: Journal, paths: list[str]
) -> tuple[list[str], str | None]:
    """The ``paths`` whose items the catalogue still does not find when asked for them by
    id (with the same query), and why nothing is judged gone when it cannot be asked.

    Counting a listing proves little on a catalogue paged by offset whose items are not
    ordered (MAAP): an item that leaves while another arrives during the search makes
    the listing skip one that never left, with every count still right. Only the items
    the catalogue finds by id no longer are gone; the others wait for the next run."""
    if not paths:
        return [], None
    owners: dict[str, list[str]] = {}
    for path in paths:
        row = await journal.get(path)
        owners.setdefault(row.item_id if row is not None and row.item_id else "", []).append(path)
    ids = sorted(i for i in owners if i)
    found: set[str] = set()
    try:
        for start in range(0, len(ids), _LOOKUP_IDS):
            chunk = tuple(ids[start : start + _LOOKUP_IDS])
            # By id over the whole range at once: windows would ask once per window.
            query = dataclasses.replace(
                config.search, ids=chunk, max_items=2 * len(chunk), window=None
            )
            if short := await _look_up(query, CatalogueHeaders.of(config), found):
                return [], f"the items it did not list could not be looked up whole ({short})"
    except StacpullError as exc:
        return [], f"the items it did not list could not be looked up ({exc})"
    return sorted(p for i, group in owners.items() if i not in found for p in group), None


async def _look_up(query: SearchConfig, headers: CatalogueHeaders, found: set[str]) -> str | None:
    """Add to ``found`` the ids the lookup ``query`` lists; say why its answer proves
    nothing gone (``None``: it may).

    A lookup is paged as any search is, so MAAP's paging can list one item twice in the
    place of another, and a catalogue that ignores ``ids`` answers its whole range, cut at
    ``max_items``: an item the lookup did not list is gone only if it listed as many
    distinct items as it counted or, counting none, listed none twice, none it was not
    asked for, and fewer than it was cut at."""
    listed: set[tuple[str, str]] = set()
    matched: int | None = None
    repeats = pages = 0
    asked = set(query.ids)
    unasked = False
    async for features, count in search_pages(query, headers):
        matched = count if pages == 0 else matched
        pages += 1
        for feature in features:
            key = (str(feature.get("collection")), str(feature.get("id")))
            repeats += key in listed
            listed.add(key)
            item_id = feature.get("id")
            unasked = unasked or not (isinstance(item_id, str) and item_id in asked)
            if isinstance(item_id, str):
                found.add(item_id)
    said = f"the lookup by id listed {len(listed)} distinct item(s)"
    if matched is not None:
        return f"{said} of the {matched} it counted" if len(listed) < matched else None
    if repeats:
        return f"{said}, {repeats} of them twice, and gave no count"
    if unasked:
        return f"{said}, some not asked for (it ignores ids?), and gave no count"
    if query.max_items is not None and len(listed) >= query.max_items:
        return f"{said}, as many as it was cut at, and gave no count"
    return None


def prune(root: Path, journal: Journal, paths: list[str]) -> tuple[int, list[str]]:
    """Delete the files (and ``.part``) of ``paths`` and their journal rows; tidy empty dirs.

    Nothing is deleted through a link: each file's directory is reached by
    :func:`~stacpull.safepath.open_dir`, from DEST one component at a time with
    ``O_NOFOLLOW``, so a directory that became a link (to somewhere outside DEST) is never
    entered; only regular files so reached are deleted and only empty directories below
    DEST removed. Returns the files deleted and the paths left because a link or special
    file was in the way (their rows stay: the next mirror reports them again).
    """
    _check_dest(root)
    removed = 0
    kept: list[str] = []
    forget: list[str] = []
    for rel in paths:
        deleted, keep = _prune_one(root, rel)
        removed += deleted
        (kept if keep else forget).append(rel)
    journal.remove(forget)
    return removed, kept


def _check_dest(root: Path) -> None:
    """DEST removed or unmounted during the run: the prune stops, a :class:`StorageError`."""
    try:
        fd = open_dir(root, root, create=False)
    except StorageError as exc:
        cause = exc.__cause__
        detail = cause.strerror if isinstance(cause, OSError) and cause.strerror else cause
        raise StorageError(f"cannot prune {root}: {detail or exc}") from cause
    if fd is not None:
        os.close(fd)


def _prune_one(root: Path, rel: str) -> tuple[int, bool]:
    """Delete the file at ``rel`` (and its ``.part``); return (files deleted, whether its
    journal row stays because something that is not stacpull's file was in the way)."""
    parts = Path(rel).parts
    if not parts or Path(rel).is_absolute() or ".." in parts:
        return 0, True
    if in_state_dir(rel):  # a journal from before such paths were refused
        return 0, False  # never stacpull's file to delete: left, row dropped
    target = root / rel
    try:
        dir_fd = open_dir(root, target.parent, create=False)
    except (StacpullError, OSError):  # a link or a file on the way, or DEST gone meanwhile
        return 0, True
    if dir_fd is None:
        return 0, False  # already gone
    try:
        deleted, blocked = _unlink_regular(dir_fd, target.name, target)
    finally:
        os.close(dir_fd)
    _remove_empty(root, target.parent)
    return deleted, blocked


def _remove_empty(root: Path, directory: Path) -> None:
    """Remove ``directory`` and its parents below DEST while they are empty, each from its
    parent's descriptor (rmdir never follows a link; a non-empty directory stays)."""
    while directory != root:
        try:
            parent_fd = open_dir(root, directory.parent, create=False)
        except (StacpullError, OSError):
            return
        if parent_fd is None:
            return
        try:
            os.rmdir(directory.name, dir_fd=parent_fd)
        except OSError:
            return
        finally:
            os.close(parent_fd)
        directory = directory.parent


def _unlink_regular(dir_fd: int, name: str, shown: Path) -> tuple[int, bool]:
    """Delete ``name`` and its ``.part`` in ``dir_fd`` when they are regular files; return
    (final files deleted, whether something else was there and stayed)."""
    deleted, blocked = 0, False
    for candidate in (name, name + ".part"):
        try:
            found = lstat_at(dir_fd, candidate)
            if found is None:
                continue
            if not is_regular(found):
                blocked = True
                continue
            os.unlink(candidate, dir_fd=dir_fd)
            deleted += candidate == name
        except FileNotFoundError:
            pass
        except OSError as exc:
            where = shown.with_name(candidate)
            raise StorageError(f"cannot delete {where}: {exc.strerror or exc}") from exc
    return deleted, blocked
