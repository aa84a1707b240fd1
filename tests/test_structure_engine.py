"""The engine's layout (issue 18), kept by a test: the run split by concern into small
modules, ``engine.run`` a short sequence of phases whose state travels in one object,
short parameter lists, and one walk of DEST."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "stacpull"

#: The modules the engine side owns: the run, its parts, the limits, the dry run, the peek.
ENGINE_SIDE = [
    "engine.py",
    "runtypes.py",
    "producer.py",
    "workers.py",
    "runstate.py",
    "gone.py",
    "limits.py",
    "dryrun.py",
    "peek.py",
]


def _tree(name: str) -> ast.Module:
    path = SRC / name
    assert path.is_file(), f"{name} is missing"
    return ast.parse(path.read_text())


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _parameters(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    a = node.args
    names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs if x.arg not in ("self", "cls")]
    return names + ["*"] * bool(a.vararg) + ["**"] * bool(a.kwarg)


@pytest.mark.parametrize("name", ENGINE_SIDE)
def test_engine_side_modules_stay_under_600_lines(name: str) -> None:
    path = SRC / name
    assert path.is_file(), f"{name} is missing"
    assert len(path.read_text().splitlines()) <= 600


@pytest.mark.parametrize("name", ENGINE_SIDE)
def test_no_engine_module_shadows_a_name_of_the_api(name: str) -> None:
    """Importing ``stacpull.gone`` sets the package's attribute ``gone``: a module named
    ``mirror`` would replace ``stacpull.mirror``, the function, once imported."""
    import stacpull

    assert name.removesuffix(".py") not in stacpull.__all__


@pytest.mark.parametrize("name", ENGINE_SIDE)
def test_no_engine_side_function_is_over_60_lines(name: str) -> None:
    long = [
        f"{f.name} ({(f.end_lineno or f.lineno) - f.lineno + 1})"
        for f in _functions(_tree(name))
        if (f.end_lineno or f.lineno) - f.lineno + 1 > 60
    ]
    assert long == []


@pytest.mark.parametrize("name", ENGINE_SIDE)
def test_no_engine_side_function_takes_more_than_six_parameters(name: str) -> None:
    wide = [f.name for f in _functions(_tree(name)) if len(_parameters(f)) > 6]
    assert wide == []


def test_run_is_a_short_sequence_of_phases() -> None:
    (run,) = [
        f
        for f in _tree("engine.py").body
        if isinstance(f, ast.AsyncFunctionDef) and f.name == "run"
    ]
    assert (run.end_lineno or run.lineno) - run.lineno + 1 <= 60


def test_the_run_wide_state_travels_in_one_object_not_loose_locals() -> None:
    from stacpull import engine

    code = engine.run.__code__
    loose = code.co_varnames[code.co_argcount + code.co_kwonlyargcount :]
    assert len(loose) <= 6, loose
    from stacpull.runstate import RunState

    assert dataclasses.is_dataclass(RunState)


def test_dest_is_walked_by_safepath_alone() -> None:
    """The prune opens no directory itself: safepath's walk (never through a link) does."""
    for name in ENGINE_SIDE:
        calls = [
            node
            for node in ast.walk(_tree(name))
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "open"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "os"
        ]
        assert calls == [], f"{name} calls os.open"


def test_the_host_limiter_takes_its_knobs_as_one_frozen_settings_object() -> None:
    from stacpull.limits import HostLimiter
    from stacpull.window import WindowSettings

    with pytest.raises(dataclasses.FrozenInstanceError):
        WindowSettings().cooldown = 1.0  # type: ignore[misc]
    # the limiter's ceiling and start win over the settings'; the rest is the window's
    limiter = HostLimiter(4, start=4, settings=WindowSettings(cut=0.25))
    assert limiter.limit("h") == 4
    for _ in range(5):  # a burst
        limiter.throttled("h", 429, None)
    assert limiter.limit("h") == 1


def test_the_run_types_live_in_runtypes_and_the_engine_exports_only_run() -> None:
    """What a run is asked and hands back has one home; the engine re-exports none of it."""
    from stacpull import engine, runtypes

    # run, and a cluster run's two halves (issue 21): the coordinator's, the workers'
    cluster = ["PlanOutcome", "TransferSetup", "conclude", "plan_jobs", "transfer_jobs"]
    assert sorted(engine.__all__) == sorted(["run", *cluster]) and callable(engine.run)
    assert {"RunOptions", "RunResult", "StopSignal", "loop_options"} <= set(runtypes.__all__)
