"""The layout rules of DESIGN.md, kept by a test: import direction and small sorted __all__."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "stacpull"
MODULES = sorted(p for p in SRC.rglob("*.py"))


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the package
                package = path.relative_to(SRC.parent).with_suffix("").parts[: -node.level]
                found.add(".".join([*package, node.module] if node.module else package))
            else:
                found.add(node.module or "")
    return found


def _internal(path: Path) -> set[str]:
    return {
        m.split(".")[1] for m in _imports(path) if m.startswith("stacpull.") and m.count(".") >= 1
    }


@pytest.mark.parametrize(
    ("module", "allowed"), [("errors", set()), ("models", set()), ("events", {"models"})]
)
def test_base_modules_import_almost_nothing_internal(module: str, allowed: set[str]) -> None:
    assert _internal(SRC / f"{module}.py") <= allowed


def test_dashboard_never_imports_the_transfer_side() -> None:
    assert not _internal(SRC / "dashboard.py") & {"transfer", "engine", "cli", "search"}


def test_nothing_imports_the_cli() -> None:
    for path in MODULES:
        if "cli" not in path.relative_to(SRC).parts[:1] and path.name != "__main__.py":
            assert "cli" not in _internal(path), path


@pytest.mark.parametrize(
    ("library", "owners"),
    [
        ("pystac_client", {"search.py"}),
        ("rich.live", {"dashboard.py"}),
        ("tomllib", {"files.py"}),
        ("matplotlib", {"plot.py"}),
        ("blake3", {"verify.py"}),
        ("aiohttp", {"http.py", "server.py", "oidc.py", "stac_api.py", "files.py"}),
    ],
)
def test_each_third_party_library_lives_in_its_module(library: str, owners: set[str]) -> None:
    users = {
        p.name
        for p in MODULES
        if any(m == library or m.startswith(library + ".") for m in _imports(p))
    }
    assert users <= owners, users - owners


def _isort_key(name: str) -> tuple[int, str]:
    """isort's order, as ruff's RUF022 uses: CONSTANTS, then Classes, then functions."""
    if name.isupper() or (name.replace("_", "").isupper()):
        return 0, name
    return (1, name) if name[:1].isupper() else (2, name)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_public_modules_have_a_sorted_all(path: Path) -> None:
    if path.name in ("__main__.py",) or (path.name.startswith("_") and path.name != "__init__.py"):
        return
    name = ".".join(path.relative_to(SRC.parent).with_suffix("").parts).removesuffix(".__init__")
    module = importlib.import_module(name)
    names = getattr(module, "__all__", None)
    assert names is not None, f"{name} has no __all__"
    assert list(names) == sorted(names, key=_isort_key), f"{name}.__all__ is not sorted"
    for attr in names:
        assert hasattr(module, attr), f"{name}.__all__ names missing {attr}"


def _root_names(path: Path) -> list[str]:
    """What ``path`` takes from the package root itself (``from . import __version__``,
    ``from stacpull import download``, ``import stacpull``), submodules aside."""
    tree = ast.parse(path.read_text())
    depth = len(path.relative_to(SRC).parts)  # 1 for stacpull/x.py, 2 for stacpull/sim/x.py
    taken: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            taken += [a.name for a in node.names if a.name == "stacpull"]
        elif isinstance(node, ast.ImportFrom):
            root = (node.level == depth and not node.module) or (
                node.level == 0 and node.module == "stacpull"
            )
            if root:
                taken += [
                    a.name
                    for a in node.names
                    if not (SRC / f"{a.name}.py").exists() and not (SRC / a.name).is_dir()
                ]
    return taken


@pytest.mark.parametrize(
    "path", [p for p in MODULES if p.name != "__init__.py" or p.parent != SRC], ids=str
)
def test_nothing_inside_the_package_imports_its_root(path: Path) -> None:
    """The root imports the API (lazily): a module taking a name from it would import upward
    and, once the root is eager again, in a cycle (root -> api -> engine -> root)."""
    assert _root_names(path) == [], f"{path.name} imports from the package root"


def test_the_version_is_written_once() -> None:
    """One leaf module holds the version; pyproject.toml reads it from there."""
    import tomllib
    from importlib.metadata import version

    import stacpull
    from stacpull import _version

    project = tomllib.loads((SRC.parents[1] / "pyproject.toml").read_text())
    assert "version" not in project["project"], "pyproject.toml writes the version itself"
    assert "version" in project["project"]["dynamic"]
    dynamic = project["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "stacpull._version.__version__"}
    assert _internal(SRC / "_version.py") == set() and _imports(SRC / "_version.py") <= {
        "__future__"
    }
    assert stacpull.__version__ == _version.__version__ == version("stacpull")
