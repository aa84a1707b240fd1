"""The command line's layout (issue 18): a ``cli/`` package split by command group, whose
transfer commands call the public API (never the engine), take their flags as small typed
groups, and whose help quotes the config's defaults rather than restating them."""

from __future__ import annotations

import ast
import inspect
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import click
import pytest
from click.testing import CliRunner

from stacpull.search import Page
from stacpull.sim import SimServer

from .conftest import L1A, TOKEN

SRC = Path(__file__).resolve().parents[1] / "src" / "stacpull"
CLI = SRC / "cli"
#: The command groups' modules and the mechanism's.
LAYOUT: tuple[str, ...] = (
    "__init__",
    "discovery",
    "flags",
    "options",
    "render",
    "run",
    "setup",
    "sim",
    "state",
)
LAYOUT = (*LAYOUT, "transfer")
LAYOUT = (*LAYOUT, "render_shards")  # status --shards (issue 21)
#: The modules of this part of the split (the others draw listings and run no transfer).
MINE = ("__init__", "flags", "options", "run", "transfer")
OWNED = [CLI / f"{name}.py" for name in MINE] + [SRC / "api.py", SRC / "keywords.py"]
OWNED += [SRC / "printable.py"]
#: Every module parsed once, on import: parsing while a test runs can meet the garbage
#: collector finalising an earlier test's socket, which CPython 3.11's compile() reports
#: as a SystemError ("AST constructor recursion depth mismatch").
_TREES = {path: ast.parse(path.read_text()) for path in SRC.rglob("*.py")}


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, relative imports resolved, ``TYPE_CHECKING`` ones too."""
    found: set[str] = set()
    package = path.relative_to(SRC.parent).with_suffix("").parts
    if path.name == "__init__.py":
        package = (*package, "__init__")
    for node in ast.walk(_TREES[path]):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[: -node.level] if node.level else ()
            module = ".".join([*base, node.module] if node.module else base)
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names}
    return found


def test_the_cli_is_a_package_split_by_command_group() -> None:
    assert not (SRC / "cli.py").exists() and not (SRC / "listing.py").exists()
    assert sorted(p.stem for p in CLI.glob("*.py")) == sorted(LAYOUT)


@pytest.mark.parametrize("name", MINE)
def test_no_module_of_the_cli_imports_the_engine(name: str) -> None:
    imported = _imports(CLI / f"{name}.py")
    assert not {m for m in imported if m == "stacpull.engine" or m.startswith("stacpull.engine.")}


def test_only_the_api_starts_the_engine() -> None:
    """``engine.run`` has one caller: the API's ``arun``, which the CLI's runs go through."""
    callers = sorted(
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if p.name != "engine.py" and "stacpull.engine.run" in _imports(p)
    )
    assert callers == ["api.py"]
    assert "stacpull.api.run" in _imports(CLI / "run.py")
    assert "stacpull.api.adry_run" in _imports(CLI / "transfer.py")


def _commands(group: click.Group) -> list[click.Command]:
    found: list[click.Command] = []
    for command in group.commands.values():
        if isinstance(command, click.Group):
            found += _commands(command)
        else:
            found.append(command)
    return found


def test_the_transfer_commands_take_their_flags_as_a_few_typed_groups() -> None:
    from stacpull.cli import main
    from stacpull.cli.flags import JobFlags, QueryFlags, TransferFlags

    mine = {f"stacpull.cli.{name}" for name in MINE} | {"stacpull.cli"}
    checked: list[str] = []
    for command in _commands(main):
        assert command.callback is not None
        if command.callback.__module__ not in mine:
            continue  # the listing commands' modules follow once they gather theirs
        parameters = inspect.signature(command.callback).parameters  # the function as written
        assert len(parameters) <= 6, (command.name, list(parameters))
        checked.append(str(command.name))
    assert sorted(checked) == ["download", "mirror"]
    download = main.commands["download"]
    assert download.callback is not None
    hints = inspect.signature(download.callback).parameters
    assert hints["query"].annotation in (QueryFlags, "QueryFlags")
    assert hints["transfer"].annotation in (TransferFlags, "TransferFlags")
    assert hints["job"].annotation in (JobFlags, "JobFlags")


@dataclass(frozen=True)
class _Pair:
    left: str | None
    right: int | None


def test_gather_hands_a_command_its_flags_as_one_typed_object() -> None:
    from stacpull.cli.flags import gather

    seen: list[Any] = []

    @click.command()
    @gather(pair=_Pair)
    @click.option("--left")
    @click.option("--right", type=int)
    @click.option("--other", is_flag=True)
    def command(pair: _Pair, other: bool) -> None:
        seen.append((pair, other))

    result = CliRunner().invoke(command, ["--left", "L", "--right", "3"])
    assert result.exit_code == 0, result.output
    assert seen == [(_Pair("L", 3), False)]
    assert [p.name for p in command.params] == ["left", "right", "other"]


def test_gather_refuses_a_group_whose_flags_are_not_declared() -> None:
    from stacpull.cli.flags import gather

    with pytest.raises(TypeError, match="right"):

        @gather(pair=_Pair)
        @click.option("--left")
        def command(pair: _Pair) -> None: ...


def test_the_help_quotes_the_configs_defaults() -> None:
    """A default written in config.py is read from there by the help, not restated."""
    from stacpull.cli import main
    from stacpull.config import Config, shown_setting

    quoted = {
        "concurrency": "download.concurrency",
        "per_host": "download.per_host",
        "segments": "download.segments",
        "template": "download.template",
        "retries": "download.retries",
        "dashboard": "output.dashboard",
        "client_id": "auth.client_id",
        "token_file": "auth.token_file",
    }
    params = {p.name: p for p in main.commands["download"].params}
    config = Config()
    for name, key in quoted.items():
        option = params[name]
        assert getattr(option, "_key", None) == key, name
        section, _, field = key.partition(".")
        default = shown_setting(key, getattr(getattr(config, section), field))  # 0: "auto"
        assert f"[{default}" in str(option.help), name


def test_a_run_through_the_api_takes_the_callers_stats_stop_and_watcher(
    sim: SimServer, tmp_path: Path
) -> None:
    """What the command line hands a run: its statistics, and a task beside the run that
    may ask for a graceful stop or abort it (the Ctrl-C watcher)."""
    from stacpull import api
    from stacpull.errors import RunAborted
    from stacpull.stats import RunStats

    config = api.build_config(
        catalog=sim.catalog_url, collections=[L1A], dest=str(tmp_path), token=TOKEN
    )
    stats = RunStats()
    watched: list[str] = []

    async def watch(stop: api.StopSignal, abort: anyio.CancelScope) -> None:
        watched.append(threading.current_thread().name)
        await anyio.sleep_forever()

    result = api.run(config, control=api.RunControl(stats=stats, beside=watch))
    assert result.ok and result.downloaded > 0 and watched
    assert stats.snapshot().downloaded == result.downloaded

    async def abort_at_once(stop: api.StopSignal, abort: anyio.CancelScope) -> None:
        abort.cancel()

    async def pages_never_come() -> AsyncIterator[Page]:  # a saved search that never ends
        await anyio.sleep_forever()
        yield ([], None)

    with pytest.raises(RunAborted):
        api.run(
            config,
            api.RunOptions("download"),
            control=api.RunControl(pages=pages_never_come, beside=abort_at_once),
        )


@pytest.mark.parametrize("path", OWNED, ids=lambda p: str(p.relative_to(SRC)))
def test_the_size_targets(path: Path) -> None:
    """No module over 600 lines, no function over 60, no parameter list over 6."""
    assert len(path.read_text().splitlines()) <= 600
    for node in ast.walk(_TREES[path]):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert node.end_lineno is not None
            assert node.end_lineno - node.lineno + 1 <= 60, node.name
            a = node.args
            names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
            names = [n for n in names if n not in ("self", "cls")]
            count = len(names) + (a.vararg is not None) + (a.kwarg is not None)
            assert count <= 6, node.name


def test_nothing_outside_the_cli_imports_it() -> None:
    """test_structure.py's rule for the package: the cli's modules import each other, and
    nothing else imports them (``python -m stacpull`` aside)."""
    for path in SRC.rglob("*.py"):
        if path.parent == CLI or path == SRC / "__main__.py":
            continue
        imported = _imports(path)
        assert not {m for m in imported if m == "stacpull.cli" or m.startswith("stacpull.cli.")}
