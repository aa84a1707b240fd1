"""The layout rules of DESIGN.md, kept by a test: import direction and small sorted __all__."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "stacpull"
MODULES = sorted(p for p in SRC.rglob("*.py"))


def _module(path: Path) -> str:
    """The dotted name of the module at ``path`` (``stacpull.transfer.http``)."""
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolved(path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = _module(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def _type_only(tree: ast.Module) -> set[int]:
    """The ids of the import nodes under ``if TYPE_CHECKING:``."""
    hidden: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            hidden |= {id(n) for child in node.body for n in ast.walk(child)}
    return hidden


def _imports(path: Path, *, typing: bool = True) -> set[str]:
    """Every module ``path`` imports, at module level or inside a function (a lazy import
    is still a dependency); ``from m import x`` counts as ``m`` and ``m.x`` (``x`` may be a
    submodule). ``typing=False`` leaves out the imports under ``TYPE_CHECKING``."""
    tree = ast.parse(path.read_text())
    hidden = set() if typing else _type_only(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in hidden:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            module = _resolved(path, node)
            found |= {module} | {f"{module}.{alias.name}" for alias in node.names}
    return found


MODULE_NAMES = {_module(p): p for p in MODULES}


def _internal_modules(path: Path, *, typing: bool = True) -> set[str]:
    """The package's own modules that ``path`` imports (itself and the root left out)."""
    own = _module(path)
    return {
        m for m in _imports(path, typing=typing) if m in MODULE_NAMES and m not in (own, "stacpull")
    }


def _internal(path: Path) -> set[str]:
    """The top-level names of the package that ``path`` imports (``transfer`` for
    ``stacpull.transfer.http``)."""
    return {m.split(".")[1] for m in _internal_modules(path)}


#: The layers, lowest first: a module imports only modules of its own layer or below (its
#: imports under TYPE_CHECKING too, except the engine's types the API names). A new
#: module must be placed here: the table is the README's layout, in the order of the stack.
LAYERS: list[tuple[str, set[str]]] = [
    (
        "foundations",
        {"errors", "_version", "defaults", "models", "units", "hashes", "headers", "printable"}
        | {"limits", "trust", "selection", "destpaths", "events", "retry", "verify", "paging"}
        | {"window", "renames"},
    ),
    ("the simulator", {"sim"}),
    ("configuration and state", {"config", "safepath", "safeio", "destlock", "claims", "plan"}),
    ("the journal and the counters", {"journal", "stats"}),
    ("catalogue and credentials", {"catalogue", "search", "tokens", "oidc", "credentials", "auth"}),
    ("one transfer", {"transfer"}),
    (
        "views and records",
        {"panels", "report", "dashboard", "plot", "audit", "export", "peek", "dryrun", "keywords"}
        | {"search_walk"},
    ),
    ("the engine", {"runtypes", "producer", "gone", "runstate", "workers", "engine", "shards"}),
    # A cluster run's Dask driver, the one user of Dask (the shards it dispatches, and a
    # unit's run, are the engine's: no Dask there).
    ("the cluster", {"cluster"}),
    ("the Python API", {"api"}),
    ("the command line", {"cli", "__main__", ""}),
]
#: The HTTP boundary sits under the credentials (the token endpoint uses its session): the
#: part of ``transfer`` that the layer below may import.
BOUNDARY = {"stacpull.transfer.http", "stacpull.transfer.partfile"}


def _layer(module: str) -> int:
    """The index in LAYERS of ``module`` (by its first component below ``stacpull``)."""
    top = module.split(".")[1] if "." in module else ""
    if module in BOUNDARY:
        return [name for name, _ in LAYERS].index("catalogue and credentials")
    for index, (_, members) in enumerate(LAYERS):
        if top in members:
            return index
    raise AssertionError(f"{module} is in no layer of tests/test_structure.py: place it")


CLIENT = [p for p in MODULES if "sim" not in p.relative_to(SRC).parts[:1]]


@pytest.mark.parametrize("path", CLIENT, ids=lambda p: _module(p))
def test_no_module_imports_upward(path: Path) -> None:
    mine = _layer(_module(path))
    for other in sorted(_internal_modules(path, typing=False)):
        assert _layer(other) <= mine, (
            f"{_module(path)} ({LAYERS[mine][0]}) imports {other} ({LAYERS[_layer(other)][0]})"
        )


def test_the_run_time_imports_have_no_cycle() -> None:
    """Module-level imports form no cycle (a cycle only works by import order)."""
    graph = {m: _toplevel(p) for m, p in MODULE_NAMES.items()}
    state: dict[str, int] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for other in sorted(graph[module]):
            if state.get(other) == 1:
                raise AssertionError(" -> ".join([*trail, module, other]))
            if other not in state:
                visit(other, [*trail, module])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


def _toplevel(path: Path) -> set[str]:
    """The package's modules that ``path`` imports at module level, at run time."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()

    def scan(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                module = _resolved(path, node)
                found.update({module} | {f"{module}.{a.name}" for a in node.names})
            elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
                scan(node.body)
                scan(node.orelse)
            elif isinstance(node, ast.Try):
                scan(node.body)

    scan(tree.body)
    own = _module(path)
    return {m for m in found if m in MODULE_NAMES and m not in (own, "stacpull")}


@pytest.mark.parametrize("path", sorted((SRC / "sim").glob("*.py")), ids=lambda p: _module(p))
def test_the_simulator_stands_on_the_foundations_alone(path: Path) -> None:
    """The simulator is a server: it shares the header and digest rules, nothing of the
    client (so a client bug cannot hide in a server that shares it)."""
    for other in _internal_modules(path):
        assert other.startswith("stacpull.sim") or _layer(other) == 0, other


@pytest.mark.parametrize(
    ("module", "allowed"), [("errors", set()), ("models", set()), ("events", {"models"})]
)
def test_base_modules_import_almost_nothing_internal(module: str, allowed: set[str]) -> None:
    assert _internal(SRC / f"{module}.py") <= allowed


@pytest.mark.parametrize("module", ["dashboard", "panels", "stats", "report"])
def test_the_view_never_imports_the_transfer_side(module: str) -> None:
    transfer_side = {"transfer", "engine", "workers", "producer", "cli", "search", "api", "auth"}
    assert not _internal(SRC / f"{module}.py") & transfer_side


def test_transfer_never_imports_the_engine_the_cli_the_report_or_the_dashboard() -> None:
    above = {"engine", "workers", "producer", "runstate", "gone", "runtypes", "cli", "report"}
    above |= {"dashboard", "panels", "stats", "api"}
    for path in sorted((SRC / "transfer").glob("*.py")):
        assert not _internal(path) & above, path.name


def test_nothing_imports_the_cli() -> None:
    for path in MODULES:
        if "cli" not in path.relative_to(SRC).parts[:1] and path.name != "__main__.py":
            assert "cli" not in _internal(path), path


@pytest.mark.parametrize(
    ("library", "owners"),
    [
        ("aiohttp", {"stacpull.transfer.http", "stacpull.sim.*"}),
        ("yarl", {"stacpull.transfer.http", "stacpull.sim.*"}),
        ("pystac_client", {"stacpull.search"}),
        ("pystac", {"stacpull.search"}),
        ("requests", {"stacpull.catalogue"}),
        ("urllib3", {"stacpull.catalogue"}),
        ("rich.live", {"stacpull.dashboard"}),
        ("rich", {"stacpull.dashboard", "stacpull.panels", "stacpull.cli.*"}),
        ("click", {"stacpull.cli.*", "stacpull.cli"}),
        ("tomllib", {"stacpull.config.files"}),
        ("platformdirs", {"stacpull.config.files"}),
        ("matplotlib", {"stacpull.plot"}),
        ("blake3", {"stacpull.verify"}),
        ("pyarrow", {"stacpull.export"}),
        ("rustac", {"stacpull.export"}),
        # Dask only in the cluster package, and lazily there (a run without --cluster
        # imports none of it: tests/test_cluster.py).
        ("dask", {"stacpull.cluster.*"}),
        ("distributed", {"stacpull.cluster.*"}),
        # Raw asyncio only where anyio cannot do it: the write path's executor futures,
        # the journal's group-commit futures, the notebook bridge (a running loop, and
        # asyncio.run's Ctrl-C), the cluster gate (calls handed to Dask's own loop), and
        # the simulator (a server on its own loop).
        (
            "asyncio",
            {"stacpull.transfer.stream", "stacpull.journal.commit", "stacpull.api"}
            | {"stacpull.cluster.gate"},
        ),
    ],
)
def test_each_third_party_library_lives_in_its_module(library: str, owners: set[str]) -> None:
    users = {
        _module(p)
        for p in MODULES
        if any(m == library or m.startswith(library + ".") for m in _imports(p))
    }
    allowed = {
        u for u in users for o in owners if u == o or (o.endswith(".*") and u.startswith(o[:-1]))
    }
    if library == "asyncio":
        allowed |= {u for u in users if u.startswith("stacpull.sim")}
    assert users <= allowed, sorted(users - allowed)


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


#: The issue's targets for every module of the package: a module a newcomer can read in one
#: sitting, a function that fits on a screen, a call that needs no table to read.
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 60
MAX_PARAMETERS = 6


@pytest.mark.parametrize("path", MODULES, ids=lambda p: _module(p))
def test_each_module_keeps_the_size_targets(path: Path) -> None:
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_MODULE_LINES, f"{_module(path)} is over 600 lines"
    for node in ast.walk(ast.parse(text)):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        where = f"{_module(path)}.{node.name} (line {node.lineno})"
        assert node.end_lineno is not None
        assert node.end_lineno - node.lineno + 1 <= MAX_FUNCTION_LINES, f"{where} is long"
        args = node.args
        named = [a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]]
        count = len([n for n in named if n not in ("self", "cls")])
        count += (args.vararg is not None) + (args.kwarg is not None)
        assert count <= MAX_PARAMETERS, f"{where} takes {count} parameters"
