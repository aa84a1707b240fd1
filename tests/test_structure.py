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
    assert not _internal(SRC / "dashboard.py") & {"fetch", "engine", "cli", "search"}


def test_nothing_imports_the_cli() -> None:
    for path in MODULES:
        if path.name not in ("cli.py", "__main__.py"):
            assert "cli" not in _internal(path), path


@pytest.mark.parametrize(
    ("library", "owners"),
    [
        ("pystac_client", {"search.py"}),
        ("rich.live", {"dashboard.py"}),
        ("tomllib", {"config.py"}),
        ("matplotlib", {"plot.py"}),
        ("blake3", {"verify.py"}),
        ("aiohttp", {"fetch.py", "engine.py", "auth.py", "server.py", "oidc.py"}),
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
