"""Shared fixtures: a simulated MAAP catalogue on 127.0.0.1 and an event recorder."""

from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

import stacpull
from stacpull.events import Event, JobFinished
from stacpull.models import Outcome
from stacpull.sim import SimCatalog, SimServer, default_collections

# No test asserts a timing: hypothesis's per-example deadline (200 ms) is one, and a loaded
# CI machine missed it on a pure parser.
settings.register_profile("stacpull", deadline=None)
settings.load_profile("stacpull")

L1A = "BiomassLevel1aIOC"
L1C = "BiomassLevel1cIOC"
FLEX = "FLEXL1CommissioningProducts10"
TOKEN = "sim-token"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True, scope="session")
def _no_user_config() -> Iterator[None]:
    """The machine's own ``~/.config/stacpull/stacpull.toml`` never changes a test's result
    (``scripts/check`` sets the same switch; tests of the user file turn it back on)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STACPULL_NO_USER_CONFIG", "1")
        yield


@pytest.fixture
def sim() -> Iterator[SimServer]:
    """A fresh simulated catalogue: 5 items per collection, ~300 kB products."""
    with SimServer(SimCatalog(default_collections(count=5, product_size=300_000))) as server:
        yield server


@contextlib.contextmanager
def local_dask_client(settings: dict[str, str] | None = None) -> Iterator[Any]:
    """A client of a LocalCluster of two worker processes (about a second to start), the
    one shape of the cluster tests; ``settings``: dask config set while it runs. Dask is
    imported here, lazily: the suite's other tests never load it.

    The scheduler's HTTP server binds a free port of loopback: ``dashboard_address=None``
    turns the dashboard off but still binds 8787, which another cluster on this machine
    (an xdist worker, another checkout's suite) may hold: Dask then warns (an error under
    ``-W error``) and leaks the socket of its try. ``":0"`` would listen on every
    interface."""
    dask = pytest.importorskip("dask")
    distributed = pytest.importorskip("distributed")
    with (
        dask.config.set(settings or {}),
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


class Recorder:
    """An event sink keeping every event, with helpers for the finished outcomes."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def outcomes(self) -> dict[str, Outcome]:
        return {e.outcome.job.label: e.outcome for e in self.events if isinstance(e, JobFinished)}

    def of_type(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def sim_options(sim: SimServer, dest: Path, **kw: Any) -> dict[str, Any]:
    """The API keywords of a run from ``sim`` into ``dest`` (L1A, the sim's token, fast
    retries); ``kw`` (config keys) override these."""
    return {
        "catalog": sim.catalog_url,
        "collections": [L1A],
        "dest": str(dest),
        "token": TOKEN,
        "backoff": 0.01,
        "max_backoff": 0.05,
        **kw,
    }


def pull(
    sim: SimServer, dest: Path, recorder: Recorder | None = None, **kw: Any
) -> stacpull.RunResult:
    """``stacpull.download`` from ``sim`` into ``dest`` (:func:`sim_options`, and a short
    wait for products not ready yet); keyword arguments are config keys and override these."""
    options = sim_options(sim, dest, **{"not_found_delay": 0.05, **kw})
    return stacpull.download(sink=recorder, **options)


def cli(*args: str, env: dict[str, str] | None = None, token: str = "") -> tuple[int, str, str]:
    """The real command line, in-process: (exit code, stdout, stderr). No credential of the
    machine's environment leaks in; ``token`` becomes STACPULL_TOKEN."""
    from click.testing import CliRunner

    from stacpull.cli import main

    base = {"STACPULL_TOKEN": token, "STACPULL_OFFLINE_TOKEN": "", "STACPULL_TOKEN_FILE": ""}
    result = CliRunner().invoke(main, list(args), env={**base, **(env or {})})
    return result.exit_code, result.stdout, result.stderr


def sim_download(
    catalog: SimServer | str,
    dest: Path | str,
    *extra: str,
    command: str = "download",
    dashboard: str | None = "none",
    debug: bool = False,
    env: dict[str, str] | None = None,
    token: str = TOKEN,
) -> tuple[int, str, str]:
    """``cli`` running ``command`` (download or mirror) of L1A from ``catalog`` (a sim or a
    catalogue URL) into ``dest``, quiet dashboard and the sim's token unless told otherwise;
    ``extra`` arguments follow. Written once so that each test shows only what it varies."""
    url = catalog if isinstance(catalog, str) else catalog.catalog_url
    args = [command, "--catalog", url, "--collection", L1A, "--dest", str(dest)]
    if dashboard is not None:
        args += ["--dashboard", dashboard]
    return cli(*(["--debug"] if debug else []), *args, *extra, env=env, token=token)


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """A plain GET of ``url``, as any HTTP client makes it: (status, headers, body), an error
    status returned rather than raised."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def http_json(url: str) -> Any:
    """The JSON document at ``url``, which must answer 200."""
    status, _, body = http_get(url)
    assert status == 200, body
    return json.loads(body)


def files_under(root: Path) -> list[Path]:
    """Every regular file under ``root`` except stacpull's own state directory."""
    return sorted(p for p in root.rglob("*") if p.is_file() and ".stacpull" not in p.parts)


def until(condition: Callable[[], Any], what: str = "the condition", timeout: float = 60.0) -> Any:
    """Poll ``condition()`` until it holds and return its value (a condition, not a time:
    the timeout only ends a test that would otherwise hang on a loaded machine)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.01)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``network`` reach the real ESA catalogue: opt in with STACPULL_NETWORK_TESTS=1."""
    import os

    if os.environ.get("STACPULL_NETWORK_TESTS") == "1":
        return
    skip = pytest.mark.skip(
        reason="talks to the real ESA MAAP catalogue; set STACPULL_NETWORK_TESTS=1"
    )
    for item in items:
        if "network" in item.keywords:
            item.add_marker(skip)


class Clock:
    """A fake monotonic clock for the pure parts (the limiter, the window): tests move
    ``now`` by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _find_real_maap() -> Path | None:
    """``shared/real-maap`` beside the project (or an ancestor of a worktree), or the folder
    ``STACPULL_REAL_MAAP`` names. Public material about the real catalogue: read in place,
    never copied into the repository, so a clone without it skips the tests that use it."""
    import os

    given = os.environ.get("STACPULL_REAL_MAAP")
    if given:
        return Path(given) if Path(given).is_dir() else None
    for parent in Path(__file__).resolve().parents[1:]:
        candidate = parent / "shared" / "real-maap"
        if candidate.is_dir():
            return candidate
    return None


@pytest.fixture
def real_maap() -> Path:
    """The real-maap folder; the test is skipped when this machine does not have it."""
    found = _find_real_maap()
    if found is None:
        pytest.skip("no shared/real-maap folder here (set STACPULL_REAL_MAAP to use one)")
    return found


def crash_before_rename(dest: Path, final: Path) -> None:
    """Leave ``final`` as a crash between its last write and its rename would: every byte
    in its ``.part``, the journal still saying ``active``."""
    import sqlite3

    final.rename(final.with_name(final.name + ".part"))
    db = sqlite3.connect(dest / ".stacpull" / "journal.sqlite")
    db.execute("UPDATE transfers SET status = 'active'")
    db.commit()
    db.close()
