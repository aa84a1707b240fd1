"""Structure of the disk side (issue 18): the link-safe primitives written once in
``safepath``, and the disk side of a transfer in ``transfer/space``, ``transfer/partfile``
and ``transfer/ranges``, each module within the size targets."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "stacpull"
MODULES = sorted(SRC.rglob("*.py"))
#: The modules of this part of the issue: the size targets hold for each.
OWNED = (
    "safepath.py",
    "safeio.py",
    "destlock.py",
    "transfer/space.py",
    "transfer/partfile.py",
    "transfer/ranges.py",
)
#: ``engine._prune`` still opens its directories itself, with ``safepath.DIR_FLAGS``:
#: it can walk with :class:`stacpull.safepath.Descent` instead (its owner is told).
_PRUNE_PENDING = frozenset({"engine.py"})


def _rel(path: Path) -> str:
    return path.relative_to(SRC).as_posix()


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _names_in(node: ast.AST) -> set[str]:
    """Every bare name and attribute name used inside ``node``."""
    found: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            found.add(sub.id)
        elif isinstance(sub, ast.Attribute):
            found.add(sub.attr)
    return found


def _users(token: str, *, exempt: frozenset[str] = frozenset()) -> set[str]:
    """The modules that name ``token`` (in a name or an attribute) in their code."""
    return {
        _rel(p)
        for p in MODULES
        if _rel(p) not in exempt and any(token in name for name in _names_in(_tree(p)))
    }


def test_the_no_follow_open_is_defined_once() -> None:
    """Only safepath asks ``os.open`` for ``O_NOFOLLOW`` (directly or through its
    ``DIR_FLAGS``): safeio, destlock and the part file use its primitives."""
    assert _users("NOFOLLOW") == {"safepath.py"}
    assert _users("DIR_FLAGS", exempt=_PRUNE_PENDING) == {"safepath.py"}


def test_a_fresh_file_is_created_exclusively_in_one_place() -> None:
    """Remove what has the name, then ``O_EXCL``: safepath's ``create_fresh``, used by
    safeio's outputs, the ``.part`` and the range record."""
    assert _users("O_EXCL") == {"safepath.py"}


def test_file_kinds_are_named_once() -> None:
    """The table of what a non-regular file is ("a symbolic link", "a FIFO"...) lives in
    safepath only."""
    users = {_rel(p) for p in MODULES if "S_IFSOCK" in _names_in(_tree(p))}
    assert users == {"safepath.py"}


@pytest.mark.parametrize("module", [m for m in OWNED if m != "safepath.py"])
def test_is_it_ours_is_decided_by_safepath(module: str) -> None:
    """Whether what was found is a regular file (or one of ours, with no other name) is
    safepath's ``is_regular``/``is_ours``/``kind_of`` in the modules built on it, never a
    test of the mode of their own."""
    path = SRC / module
    assert path.is_file(), module
    assert not {"S_ISREG", "S_IFMT", "st_nlink"} & _names_in(_tree(path))


def _defined(path: Path) -> set[str]:
    tree = _tree(path)
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    }


@pytest.mark.parametrize(
    ("module", "names"),
    [
        ("transfer/space.py", {"SpaceBudget"}),
        ("transfer/partfile.py", {"PartFile", "storage_error", "part_path"}),
        ("transfer/ranges.py", {"SegmentState", "RangeRecord"}),
    ],
)
def test_the_disk_side_of_a_transfer_has_its_modules(module: str, names: set[str]) -> None:
    """The free-space budget, the part file (write, hash tee, seal) and the split state
    with its range record are each in their own module, defined nowhere else."""
    path = SRC / module
    assert path.is_file(), module
    assert names <= _defined(path)
    elsewhere = {_rel(p) for p in MODULES if p != path and _defined(p) & names}
    assert not elsewhere, elsewhere


def test_the_part_file_writes_and_seals() -> None:
    """``PartFile.write`` (pwritev batches, early writeback) and ``PartFile.seal`` (fsync,
    verified rename) are the part file's own methods, and nothing outside it calls
    ``pwritev``, ``fsync`` or the writeback."""
    tree = _tree(SRC / "transfer/partfile.py")
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "PartFile"]
    methods = {n.name for n in cls.body if isinstance(n, ast.FunctionDef)}
    assert {"write", "seal", "close", "catch_up"} <= methods
    for name in ("pwritev", "fsync", "sync_file_range"):
        users = {_rel(p) for p in MODULES if name in _names_in(_tree(p))}
        # The one other file made durable by hand: the workers' token file (issue 21).
        also = {"cluster/tokenfile.py"} if name == "fsync" else set()
        assert users == {"transfer/partfile.py"} | also, (name, users)


def _function_lines(tree: ast.Module) -> list[tuple[str, int, int]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            args = node.args
            count = len(
                [
                    a
                    for a in args.posonlyargs + args.args + args.kwonlyargs
                    if a.arg not in ("self", "cls")
                ]
            )
            count += (args.vararg is not None) + (args.kwarg is not None)
            assert node.end_lineno is not None
            found.append((node.name, node.end_lineno - node.lineno + 1, count))
    return found


@pytest.mark.parametrize("module", OWNED)
def test_size_targets(module: str) -> None:
    """Under 600 lines, no function over 60 lines, no parameter list over 6."""
    path = SRC / module
    assert path.is_file(), module
    assert len(path.read_text().splitlines()) <= 600
    tree = _tree(path)
    assert ast.get_docstring(tree), "a module docstring saying what it owns"
    for name, lines, params in _function_lines(tree):
        assert lines <= 60, (name, lines)
        assert params <= 6, (name, params)


def test_descent_is_the_walk_prune_can_use(tmp_path: Path) -> None:
    """:class:`stacpull.safepath.Descent`: directories entered one inside the other, a link
    on the way refused (never entered), and the empty ones removed on the way back up to
    the first that still holds something."""
    from stacpull.safepath import Descent

    (tmp_path / "a" / "b" / "c").mkdir(parents=True)
    (tmp_path / "a" / "keep.txt").write_text("x")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "a" / "link").symlink_to(tmp_path / "elsewhere")
    root_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with Descent(root_fd, keep_path=True) as walk:
            assert walk.enter("a") and walk.enter("b") and walk.enter("c")
            assert not walk.enter("missing")
            walk.remove_empty()
        assert not (tmp_path / "a" / "b").exists()
        assert (tmp_path / "a" / "keep.txt").exists()
        with Descent(root_fd, keep_path=True) as walk:
            assert walk.enter("a")
            with pytest.raises(OSError):
                walk.enter("link")
        os.fstat(root_fd)  # the start stays the caller's
    finally:
        os.close(root_fd)
