"""The transfer package's layout, kept by a test: ``fetch.py`` became ``transfer/``, one
module imports aiohttp, the package never imports upward, one function builds an Outcome,
and its modules stay small. Read from the source files alone (AST), never imported."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "stacpull"
TRANSFER = SRC / "transfer"

#: The modules fetch.py was split into (and the state object).
MODULES = (
    "attempts",
    "context",
    "http",
    "pace",
    "partfile",
    "ranges",
    "segments",
    "skip",
    "space",
    "state",
    "stream",
)
#: The part-file side has its own owner and targets (see its test file).
OTHERS = ("partfile", "ranges", "space")


def _module_name(path: Path) -> str:
    """``stacpull.transfer.http`` for ``src/stacpull/transfer/http.py``."""
    return ".".join(path.relative_to(SRC.parent).with_suffix("").parts).removesuffix(".__init__")


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, relative imports resolved, also under TYPE_CHECKING."""
    found: set[str] = set()
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                found.add(".".join([*base, node.module] if node.module else base))
                found |= {".".join([*base, a.name]) for a in node.names if not node.module}
            else:
                found.add(node.module or "")
    return found


def _uses(path: Path, library: str) -> bool:
    return any(m == library or m.startswith(library + ".") for m in _imports(path))


def test_fetch_py_is_gone_and_transfer_holds_its_modules() -> None:
    assert not (SRC / "fetch.py").exists()
    missing = [m for m in MODULES if not (TRANSFER / f"{m}.py").exists()]
    assert missing == []


def test_aiohttp_is_imported_only_by_the_http_module_on_the_client_side() -> None:
    """By module path: a ``sim/http.py`` or a second ``http.py`` would not pass as this one."""
    users = {
        _module_name(p)
        for p in SRC.rglob("*.py")
        if "sim" not in p.relative_to(SRC).parts[:1] and _uses(p, "aiohttp")
    }
    assert users == {"stacpull.transfer.http"}


def test_raw_asyncio_in_transfer_only_where_the_write_path_needs_it() -> None:
    users = {_module_name(p) for p in TRANSFER.glob("*.py") if _uses(p, "asyncio")}
    assert users == {"stacpull.transfer.stream"}


def test_transfer_is_a_lower_layer_the_engine_reaches_down_to() -> None:
    """The engine's pool takes fetch from the package; nothing in it imports the engine's
    modules, the CLI, the report, the dashboard or the API (under TYPE_CHECKING neither)."""
    assert "stacpull.transfer.attempts" in _imports(SRC / "workers.py")
    upward = {"engine", "workers", "producer", "runstate", "runtypes", "gone", "cli", "report"}
    upward |= {"stats", "panels", "dashboard", "api"}
    for path in TRANSFER.glob("*.py"):
        above = {
            m for m in _imports(path) if m.startswith("stacpull.") and m.split(".")[1] in upward
        }
        assert above == set(), path.name


def _outcome_builders(path: Path) -> list[str]:
    """The functions of ``path`` that call ``Outcome(...)``."""
    builders: list[str] = []
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            calls = [
                c
                for c in ast.walk(node)
                if isinstance(c, ast.Call)
                and isinstance(c.func, ast.Name)
                and c.func.id == "Outcome"
            ]
            if calls:
                builders.append(node.name)
    return builders


def test_one_function_builds_every_outcome_of_a_transfer() -> None:
    builders = {f"{p.stem}.{name}" for p in TRANSFER.glob("*.py") for name in _outcome_builders(p)}
    assert builders == {"state.finish"}


def _too_big(path: Path) -> list[str]:
    """What in ``path`` misses the targets: over 600 lines, a function over 60 lines
    (def line to end), a parameter list over 6 (self and cls aside)."""
    text = path.read_text()
    found = [f"{len(text.splitlines())} lines"] if len(text.splitlines()) > 600 else []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert node.end_lineno is not None
            if (length := node.end_lineno - node.lineno + 1) > 60:
                found.append(f"{node.name}: {length} lines")
            a = node.args
            names = [x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
            count = len([n for n in names if n not in ("self", "cls")])
            count += (a.vararg is not None) + (a.kwarg is not None)
            if count > 6:
                found.append(f"{node.name}: {count} parameters")
    return found


def test_transfer_modules_meet_the_size_targets() -> None:
    """Every module of the package but the part-file side's: missing ones count too."""
    offenders = {}
    for module in MODULES:
        path = TRANSFER / f"{module}.py"
        if module not in OTHERS:
            offenders[module] = _too_big(path) if path.exists() else ["missing"]
    assert {m: found for m, found in offenders.items() if found} == {}
