"""Where a file may go under DEST: every destination built from STAC metadata is checked
here, so nothing is written outside DEST or into stacpull's own state.

A name that is absolute, contains ``..``, a control character or a backslash is refused;
so is one that lands in ``.stacpull`` (DEST's state directory, in any case or Unicode
form, or a nested DEST's), or is too long for the filesystem (a segment over NAME_MAX once
``.part`` is added, a path over PATH_MAX). :func:`path_key` is the form under which two
names are one file on a case-insensitive or normalising file system.
"""

from __future__ import annotations

import posixpath
import re
import unicodedata

from .errors import UnsafePathError

__all__ = [
    "companion_png_name",
    "destination",
    "in_state_dir",
    "path_key",
    "sanitize_relpath",
    "segment",
]

_MAX_SEGMENT_BYTES = 255  # NAME_MAX

#: The longest file name a destination may end in: its ``.part`` must fit NAME_MAX too.
_MAX_NAME_BYTES = _MAX_SEGMENT_BYTES - len(".part")

#: The longest destination any DEST can hold: ``/`` + it + ``.part`` + NUL within PATH_MAX
#: (4096 on Linux). The transfer checks the real length, with DEST, before it starts.
_MAX_PATH_BYTES = 4096 - len("/") - len(".part") - 1

#: stacpull's own directory in DEST (journal.JOURNAL_DIR): no metadata may address it.
_STATE_DIR = ".stacpull"


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


def destination(rel: str) -> str:
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


def segment(value: str, what: str) -> str:
    """``value`` (an id or key) as one safe path segment, or raise :class:`UnsafePathError`."""
    safe = sanitize_relpath(value, what=what)
    if "/" in safe:
        raise UnsafePathError(f"{what} {value!r} contains '/'")
    return safe


def companion_png_name(kmz_name: str) -> str:
    """The PNG name a MAAP KMZ refers to: its stem up to ``_map``, plus ``_ql.png``.

    This is the seed notebook's rule (``BIO_…_map.kmz`` → ``BIO_…_ql.png``); a stem
    without ``_map`` keeps the whole stem.
    """
    base = posixpath.basename(kmz_name)
    stem = posixpath.splitext(base)[0]
    cut = stem.find("_map")
    return (stem[:cut] if cut > 0 else stem) + "_ql.png"


def path_key(rel: str) -> str:
    """The form under which two destinations are one file on a case-insensitive or
    Unicode-normalising file system (macOS, Windows, exFAT; DEST may be one): case folded,
    canonically composed. ``a/B.tif`` and ``A/b.TIF`` have one key; so have ``é`` and
    ``e`` + combining accent."""
    if rel.isascii():
        return rel.lower()
    return unicodedata.normalize("NFC", unicodedata.normalize("NFD", rel).casefold())
