"""Exports say who uses a name (issue 18): a name is public only if another module uses it.

Three rules, read from the source of every module of the package:

- each name in a module's ``__all__`` is used by some file outside that module (src, tests,
  benchmarks, scripts), a package's own ``__init__`` re-export aside, unless it is public
  API documented in the README (:data:`_API`, each with its reason);
- each module-level function, class and constant without a leading underscore is in its
  module's ``__all__``: a helper nothing else needs keeps the underscore;
- no module takes another module's underscore name: a name another module imports is public.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "stacpull"
MODULES = sorted(SRC.rglob("*.py"))
#: Public API the README documents, exported though nothing in the repository names it.
_API: dict[str, str] = {
    "__init__.py:arun": "the Python API: stacpull.arun, run's async twin (README)",
    "api.py:arun": "the Python API: stacpull.arun, run's async twin (README)",
    "config/__init__.py:DownloadConfig": "a section of stacpull.Config (README: build_config)",
    "config/__init__.py:OutputConfig": "a section of stacpull.Config (README: build_config)",
    "config/model.py:DownloadConfig": "a section of stacpull.Config (README: build_config)",
    "config/model.py:OutputConfig": "a section of stacpull.Config (README: build_config)",
    "dryrun.py:AssetPlan": "the values of PlanSummary.assets, which stacpull.dry_run returns",
    "peek.py:NothingSelected": "an error stacpull.download and dry_run raise (exit 2): a caller"
    " may catch it",
}
#: Modules the rules leave aside (none now: every module keeps them).
_PENDING: frozenset[str] = frozenset()


def _rel(path: Path) -> str:
    return path.relative_to(SRC).as_posix()


@cache
def _texts() -> dict[Path, str]:
    """The source of every Python file of the repository, this one aside."""
    dirs = ("src", "tests", "benchmarks", "scripts")
    files = (p for d in dirs for p in (ROOT / d).rglob("*.py") if p != Path(__file__).resolve())
    return {p: p.read_text() for p in files}  # this file names what it allows: not a use


def _tree(path: Path) -> ast.Module:
    return ast.parse(_texts()[path], filename=str(path))


def _all(tree: ast.Module) -> list[str] | None:
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            return list(ast.literal_eval(value))
    return None


def _is_logger(node: ast.Assign) -> bool:
    """``log = logging.getLogger(…)`` or ``log = scrubbed_logger(…)``: a module's logger,
    by logging's convention."""
    call = node.value
    if not isinstance(call, ast.Call):
        return False
    func = call.func
    return (isinstance(func, ast.Attribute) and func.attr == "getLogger") or (
        isinstance(func, ast.Name) and func.id == "scrubbed_logger"
    )


def _defined(tree: ast.Module) -> list[str]:
    """The names a module defines at its top level (imports and its logger aside)."""
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign) and not _is_logger(node):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return [n for n in names if not n.startswith("_")]


def _uses_in_code(path: Path, name: str) -> bool:
    """Whether ``path``'s code reads ``name`` (an import and ``__all__`` are not a use)."""
    return any(
        (isinstance(node, ast.Name) and node.id == name)
        or (isinstance(node, ast.Attribute) and node.attr == name)
        for node in ast.walk(_tree(path))
    )


@cache
def _names(path: Path) -> frozenset[str]:
    """Every name ``path``'s code takes: a bare name, an attribute, an imported name and a
    string that is an identifier (``monkeypatch.setattr(module, "NAME", …)``, a lazy
    ``__getattr__`` table); a comment or a docstring is not a use."""
    found: set[str] = set()
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Name):
            found.add(node.id)
        elif isinstance(node, ast.Attribute):
            found.add(node.attr)
        elif isinstance(node, ast.alias):
            found.add(node.name.rsplit(".", 1)[-1])
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.update(node.value.split(".") if node.value.isidentifier() else ())
    return frozenset(found)


def _users(module: Path, name: str) -> list[Path]:
    """The files outside ``module`` whose code uses ``name``; a package's own ``__init__``
    counts for a submodule only where its code uses the name, not for re-exporting it
    (the re-export counts through its own users), and the module a package re-exports a
    name from is not a user of the re-export."""
    package = module.parent / "__init__.py"
    return [
        path
        for path in _texts()
        if path != module
        and name in _names(path)
        and (module.name == "__init__.py" or path != package or _uses_in_code(path, name))
        and not (module.name == "__init__.py" and name in _defined(_tree(path)))
    ]


def _public_modules() -> list[Path]:
    return [p for p in MODULES if p.name == "__init__.py" or not p.name.startswith("_")]


@pytest.mark.parametrize("path", _public_modules(), ids=_rel)
def test_every_exported_name_is_used_outside_its_module(path: Path) -> None:
    if _rel(path) in _PENDING:
        pytest.skip("finished by the cli helper (issue 18)")
    unused = [
        name
        for name in _all(_tree(path)) or []
        if f"{_rel(path)}:{name}" not in _API and not _users(path, name)
    ]
    assert unused == [], f"{_rel(path)} exports names nothing else uses: {unused}"


@pytest.mark.parametrize("path", _public_modules(), ids=_rel)
def test_every_public_name_is_exported(path: Path) -> None:
    if _rel(path) in _PENDING:
        pytest.skip("finished by the cli helper (issue 18)")
    tree = _tree(path)
    exported = set(_all(tree) or [])
    loose = [n for n in _defined(tree) if n not in exported]
    assert loose == [], f"{_rel(path)}: public but not in __all__ (export or underscore): {loose}"


def _module_of(path: Path, node: ast.ImportFrom) -> str:
    package = list(path.relative_to(SRC.parent).with_suffix("").parts)
    package = package[:-1]  # a module's package; __init__'s is its own directory
    if node.level:
        base = package[: len(package) - node.level + 1]
        return ".".join(base + ([node.module] if node.module else []))
    return node.module or ""


def _is_module(dotted: str) -> bool:
    rel = Path(*dotted.split("."))
    return (SRC.parent / rel).with_suffix(".py").exists() or (SRC.parent / rel).is_dir()


def _foreign_underscores(path: Path) -> list[str]:
    """``from <stacpull module> import _name`` and ``<stacpull module>._name`` in ``path``."""
    found: list[str] = []
    aliases: dict[str, str] = {}  # local name -> the stacpull module it is bound to
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.ImportFrom):
            module = _module_of(path, node)
            if not module.startswith("stacpull"):
                continue
            for alias in node.names:
                dotted = f"{module}.{alias.name}"
                if _is_module(dotted):
                    aliases[alias.asname or alias.name] = dotted
                private = alias.name.startswith("_") and not alias.name.startswith("__")
                if private and not _is_module(dotted):
                    found.append(dotted)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("stacpull") and alias.asname:
                    aliases[alias.asname] = alias.name
    own = ".".join(path.relative_to(SRC.parent).with_suffix("").parts).removesuffix(".__init__")
    for node in ast.walk(_tree(path)):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and aliases[node.value.id] != own
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append(f"{aliases[node.value.id]}.{node.attr}")
    return found


@pytest.mark.parametrize("path", MODULES, ids=_rel)
def test_no_module_takes_another_modules_underscore_name(path: Path) -> None:
    assert _foreign_underscores(path) == []


def test_the_checks_see_what_they_look_for(tmp_path: Path) -> None:
    """The rules above would pass vacuously if the parsing saw nothing: they do not."""
    assert _all(_tree(SRC / "errors.py"))
    assert "download" in _defined(_tree(SRC / "api.py"))
    assert _users(SRC / "errors.py", "ConfigError")
    assert not _users(SRC / "errors.py", "no_such_name_anywhere_" + "x" * 3)
