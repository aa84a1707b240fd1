"""Issue 18, the retry side: one retry policy for transfers, the token refresh and the
search, a testing switch that removes its waits, a declared dependency for every import,
and the credentials and search modules split by concern under the size targets."""

from __future__ import annotations

import ast
import importlib
import re
import sys
import tomllib
from collections.abc import Iterator
from importlib.metadata import packages_distributions
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web

from .hostile import BusyCatalogue, ThreadedApp

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "stacpull"

#: The modules this part of the issue owns, and the size targets they keep.
OWNED = (
    "retry",
    "auth",
    "tokens",
    "credentials",
    "oidc",
    "trust",
    "search",
    "catalogue",
    "paging",
)


def _normal(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    """Every distribution pyproject.toml asks for: the dependencies and every extra's."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        wanted += extra
    names = (re.match(r"[A-Za-z0-9._-]+", spec) for spec in wanted)
    return {_normal(m.group(0)) for m in names if m}


def _third_party_imports(path: Path) -> set[str]:
    """The top-level names of the absolute imports in ``path`` that are not the standard
    library's nor stacpull's (at module level or inside a function: both must install)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
    return {n for n in found if n not in sys.stdlib_module_names and n != "stacpull"}


def test_every_third_party_import_is_a_declared_dependency() -> None:
    """urllib3 (and requests, pystac) were imported but installed only because
    pystac-client happens to need them: a declared dependency for every import."""
    provided = packages_distributions()
    declared = _declared()
    missing = {}
    for path in sorted(SRC.rglob("*.py")):
        for name in _third_party_imports(path):
            dists = {_normal(d) for d in provided.get(name, [])}
            if not dists & declared:
                missing.setdefault(name, []).append(str(path.relative_to(SRC)))
    assert not missing, missing


def test_urllib3_retry_is_not_the_search_policy() -> None:
    """The search's retries wait through RetryPolicy: no module builds urllib3's own
    ``Retry`` with a backoff of its own (``backoff_factor``) or reads its backoff time."""
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text()
        assert "backoff_factor" not in text, path
        assert "get_backoff_time" not in text, path


# -- the testing switch ---------------------------------------------------------------


def test_the_testing_switch_removes_every_wait_and_keeps_every_decision() -> None:
    from stacpull.errors import ConnectError, HTTPStatusError, SizeMismatchError
    from stacpull.retry import RetryPolicy, testing

    policy = RetryPolicy(retries=2, backoff=10.0, jitter=False, not_found_delay=30.0)
    busy = HTTPStatusError("x", status=503, retry_after=7.0)
    with testing() as skipped:
        assert policy.delay(1, ConnectError("x")) == 0.0
        assert policy.delay(2, busy) == 0.0
        assert policy.delay(3, ConnectError("x")) is None  # the budget is the same
        assert policy.delay(1, HTTPStatusError("x", status=404)) == 0.0
        assert policy.delay(1, HTTPStatusError("x", status=400)) is None
        assert policy.delay(1, SizeMismatchError("x")) == 0.0
        assert policy.wait(3) == 0.0
        with testing(False):
            assert policy.wait(1) == 10.0  # switched off for a block inside
    assert skipped == [10.0, 7.0, 30.0, 40.0]  # what would have been waited, in order
    assert policy.delay(1, ConnectError("x")) == 10.0  # restored after the block
    assert policy.attempts == 3


def test_set_testing_switches_waits_off_until_switched_on() -> None:
    from stacpull.retry import RetryPolicy, set_testing, testing

    policy = RetryPolicy(backoff=5.0, jitter=False)
    with testing(False):  # restores whatever the suite runs with
        set_testing(True)
        assert policy.wait(1, retry_after=120.0) == 0.0
        set_testing(False)
        assert policy.wait(1, retry_after=120.0) == 120.0
        assert policy.wait(1, retry_after=1e9) == 900.0  # a Retry-After is capped
        assert RetryPolicy(max_retry_after=60.0).wait(1, retry_after=1e9) == 60.0  # per use
        assert policy.wait(2) == 10.0


def test_full_jitter_stays_under_the_ceiling() -> None:
    from stacpull.retry import RetryPolicy, testing

    policy = RetryPolicy(backoff=1.0, max_backoff=4.0)
    with testing(False):
        waits = [policy.wait(n) for n in (1, 2, 3, 4, 5) for _ in range(50)]
    assert all(0.0 <= w <= 4.0 for w in waits)
    assert len(set(waits)) > 1  # jittered, not one fixed wait


# -- the token refresh waits through the policy ---------------------------------------


class _TokenEndpoint(ThreadedApp):
    """A token endpoint on 127.0.0.1 answering ``fails`` 503s (the first with
    ``Retry-After: 7``), then an access token."""

    def __init__(self, fails: int) -> None:
        super().__init__()
        self.fails = fails
        self.requests = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.requests <= self.fails:
            headers = {"Retry-After": "7"} if self.requests == 1 else {}
            return web.json_response({"error": "busy"}, status=503, headers=headers)
        return web.json_response({"access_token": "access-1", "expires_in": 300})


def test_the_token_refresh_backs_off_through_the_policy() -> None:
    """503 twice, then 200: under the testing switch the refresh succeeds at once; the
    policy was asked for both waits, the first the endpoint's Retry-After."""
    from stacpull.config import Secret
    from stacpull.oidc import OIDCSettings, OIDCTokenProvider
    from stacpull.retry import RetryPolicy, testing

    with _TokenEndpoint(fails=2) as endpoint, testing() as skipped:
        retry = RetryPolicy(retries=4, backoff=60.0, max_backoff=60.0)
        provider = OIDCTokenProvider(
            Secret("offline-1"), OIDCSettings(token_url=endpoint.url, retry=retry)
        )
        token = anyio.run(provider.token)
    assert token == Secret("access-1")
    assert endpoint.requests == provider.requests == 3
    assert len(skipped) == 2 and skipped[0] == 7.0 and 0.0 <= skipped[1] <= 60.0


def test_the_token_refresh_gives_up_after_its_budget() -> None:
    from stacpull.config import Secret
    from stacpull.errors import CredentialsError
    from stacpull.oidc import OIDCSettings, OIDCTokenProvider
    from stacpull.retry import RetryPolicy, testing

    with _TokenEndpoint(fails=10) as endpoint, testing() as skipped:
        settings = OIDCSettings(token_url=endpoint.url, retry=RetryPolicy(retries=2))
        provider = OIDCTokenProvider(Secret("offline-1"), settings)
        with pytest.raises(CredentialsError, match="failed 3 times"):
            anyio.run(provider.token)
    assert endpoint.requests == 3 and len(skipped) == 2


# -- the search waits through the policy ----------------------------------------------


def _search(base: str) -> list[str]:
    from stacpull.config import SearchConfig
    from stacpull.search import search_pages

    async def collect() -> list[str]:
        config = SearchConfig(catalog=base, timeout=2.0)
        return [str(item["id"]) async for page, _ in search_pages(config) for item in page]

    return anyio.run(collect)


def test_the_search_backs_off_through_the_policy() -> None:
    """503 with Retry-After: 30, then 200: the search succeeds under the testing switch
    without waiting (30 s would outlast the 20 s the answer may take), the policy asked
    for the server's 30 s."""
    from stacpull.retry import testing

    with BusyCatalogue(busy=2, items=("A", "B")) as catalogue, testing() as skipped:
        assert _search(catalogue.base) == ["A", "B"]
    assert catalogue.searches == 3 and skipped == [30.0, 30.0]


def test_the_search_gives_up_after_its_status_budget() -> None:
    from stacpull.errors import SearchError
    from stacpull.retry import testing

    with (
        BusyCatalogue(busy=100, items=("A", "B")) as catalogue,
        testing() as skipped,
        pytest.raises(SearchError),
    ):
        _search(catalogue.base)
    assert catalogue.searches == 6 and len(skipped) == 5  # status=5: five retries, as before


# -- the size targets -----------------------------------------------------------------


def _functions(tree: ast.AST) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def _parameters(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    a = node.args
    names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs if x.arg not in ("self", "cls")]
    return len(names) + (a.vararg is not None) + (a.kwarg is not None)


@pytest.mark.parametrize("module", OWNED)
def test_the_credentials_and_search_modules_keep_the_size_targets(module: str) -> None:
    path = SRC / f"{module}.py"
    assert path.exists(), f"{module}.py: the concern has a module of its own"
    text = path.read_text()
    assert len(text.splitlines()) <= 600
    for node in _functions(ast.parse(text)):
        assert node.end_lineno is not None
        assert node.end_lineno - node.lineno + 1 <= 60, node.name
        assert _parameters(node) <= 6, node.name


def test_the_oidc_provider_takes_its_settings_as_one_object() -> None:
    from stacpull.oidc import OIDCTokenProvider

    init: Any = OIDCTokenProvider.__init__
    assert init.__code__.co_argcount + init.__code__.co_kwonlyargcount - 1 <= 6


def test_the_credentials_api_is_still_importable_from_auth() -> None:
    """``stacpull.auth`` stays the credentials API the engine, the CLI and users import."""
    auth = importlib.import_module("stacpull.auth")
    for name in (
        "CredentialsCheck",
        "OIDCTokenProvider",
        "StaticTokenProvider",
        "TokenFile",
        "TokenProvider",
        "TrustPolicy",
        "check_credentials",
        "human_duration",
        "load_credentials",
    ):
        assert hasattr(auth, name), name
