"""The layout of the config and journal packages: small modules, short functions, short
parameter lists, one reader of TOML, and the public names the rest of stacpull imports."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "stacpull"
TESTS = Path(__file__).resolve().parent
PACKAGES = ("config", "journal")


def _package_modules(name: str) -> list[Path]:
    """The modules of package ``name``, or its old single module when it is one."""
    single = SRC / f"{name}.py"
    return [single] if single.exists() else sorted((SRC / name).rglob("*.py"))


OWNED = [path for name in PACKAGES for path in _package_modules(name)] + [SRC / "defaults.py"]


def _functions(path: Path) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    tree = ast.parse(path.read_text())
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def _imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports absolutely, at its top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("name", PACKAGES)
def test_config_and_journal_are_packages(name: str) -> None:
    assert not (SRC / f"{name}.py").exists(), f"{name}.py is still one module"
    assert (SRC / name / "__init__.py").is_file()


@pytest.mark.parametrize("path", OWNED, ids=lambda p: str(p.relative_to(SRC)))
def test_each_module_is_under_600_lines(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= 600


@pytest.mark.parametrize("path", OWNED, ids=lambda p: str(p.relative_to(SRC)))
def test_each_function_is_short_with_few_parameters(path: Path) -> None:
    """No function over 60 lines (def line to end), none with more than 6 parameters
    (self and cls aside; ``*args`` and ``**kwargs`` one each)."""
    for node in _functions(path):
        assert node.end_lineno is not None
        assert node.end_lineno - node.lineno + 1 <= 60, f"{node.name} is too long"
        a = node.args
        named = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
        count = len([n for n in named if n not in ("self", "cls")])
        count += (a.vararg is not None) + (a.kwarg is not None)
        assert count <= 6, f"{node.name} takes {count} parameters"


def test_tomllib_is_read_by_the_config_files_module_only() -> None:
    users = {
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if any(m == "tomllib" or m.startswith("tomllib.") for m in _imported_modules(p))
    }
    assert users == {"config/files.py"}


def _names_taken_from(module: str) -> dict[str, set[Path]]:
    """Each name another module of src or tests takes from ``stacpull.<module>``, by
    ``from stacpull.<module> import`` or a relative import, and who takes it."""
    taken: dict[str, set[Path]] = {}
    for path in [*SRC.rglob("*.py"), *TESTS.rglob("*.py")]:
        if path.is_relative_to(SRC / module) or path == SRC / f"{module}.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or node.module is None:
                continue
            absolute = node.level == 0 and node.module == f"stacpull.{module}"
            relative = node.level > 0 and node.module == module and path.is_relative_to(SRC)
            if absolute or relative:
                for alias in node.names:
                    taken.setdefault(alias.name, set()).add(path)
    return taken


@pytest.mark.parametrize("module", PACKAGES)
def test_every_name_taken_from_the_package_is_public_and_exported(module: str) -> None:
    """What other modules import from ``stacpull.config`` (``stacpull.journal``) is in its
    ``__all__``, without a leading underscore: a private name has no users outside."""
    package = importlib.import_module(f"stacpull.{module}")
    taken = _names_taken_from(module)
    assert taken, f"nothing imports stacpull.{module}?"
    for name, users in sorted(taken.items()):
        where = sorted(str(p.name) for p in users)
        assert not name.startswith("_"), f"{name} is private but imported by {where}"
        assert name in package.__all__, f"{name} (imported by {where}) is not exported"


def test_the_journal_keeps_its_names() -> None:
    from stacpull.journal import JOURNAL_DIR, Journal, JournalRow

    assert JOURNAL_DIR == ".stacpull"
    assert Journal.__name__ == "Journal"
    assert dataclasses.is_dataclass(JournalRow)


def test_every_field_default_is_a_named_constant() -> None:
    """Each section key with a value as default (not None, not empty, not a switch) has a
    ``DEFAULT_<KEY>`` (or ``DEFAULT_<SECTION>_<KEY>``) constant of that value in
    :mod:`stacpull.defaults` (its one home: the config does not re-export it), for help
    texts."""
    from stacpull import config, defaults
    from stacpull.config.model import SECTIONS
    from stacpull.hashes import DEFAULT_RECORD_HASH

    missing: list[str] = []
    for section, kind in SECTIONS.items():
        for f in dataclasses.fields(kind):
            value = f.default
            if value is dataclasses.MISSING or value is None or value == () or value is False:
                continue
            if value is True or f.name == "record_hash":
                assert f.name != "record_hash" or value == DEFAULT_RECORD_HASH
                continue
            names = (f"DEFAULT_{f.name.upper()}", f"DEFAULT_{section.upper()}_{f.name.upper()}")
            found = [n for n in names if getattr(defaults, n, None) == value]
            if not found:
                missing.append(f"{section}.{f.name}")
                continue
            assert not hasattr(config, found[0]), f"stacpull.config re-exports {found[0]}"
    assert missing == []


def test_the_defaults_load_without_the_config_machinery() -> None:
    """Help texts read :mod:`stacpull.defaults` when ``--help`` must not load the config."""
    code = (
        "import sys, stacpull.defaults\n"
        "print(sorted(m for m in sys.modules if m.startswith(('stacpull.config', 'tomllib'))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"
