"""Review of issue 18 (a restructuring with no change in behaviour), as a script author, a
notebook user, a broken config and a hostile catalogue would attack it: each test pins a
behaviour of the code before the issue (4ad0d18) that the restructuring changed by accident.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import anyio
from aiohttp import web

from .hostile import BusyCatalogue, ThreadedApp

# -- startup: the transfer commands' help --------------------------------------------------

_PROBE = """
import json, sys
from stacpull.cli import main
for args in json.loads(sys.argv[1]):
    try:
        main(args, prog_name="stacpull")
    except SystemExit:
        pass
loaded = sorted(m for m in sys.modules if m.startswith(("stacpull.config", "tomllib")))
sys.stderr.write("\\n@@" + json.dumps(loaded) + "\\n")
"""


def test_the_transfer_commands_help_loads_no_config() -> None:
    """``download --help`` and ``mirror --help`` quote the defaults from the leaf
    :mod:`stacpull.defaults`, as their help did before the issue without loading
    :mod:`stacpull.config` (nor tomllib): help reads no configuration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STACPULL_")}
    env["STACPULL_NO_USER_CONFIG"] = "1"
    commands = [["download", "--help"], ["mirror", "--help"]]
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(commands)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    )
    assert "[auto]" in done.stdout  # the help still quotes the defaults
    assert json.loads(done.stderr.rsplit("@@", 1)[1]) == []


# -- a hostile catalogue: Retry-After: 0 ---------------------------------------------------


def test_a_zero_retry_after_from_the_catalogue_still_backs_off() -> None:
    """urllib3 took ``Retry-After: 0`` (or a date already past) as no header and backed off
    between the catalogue's 503s; the policy must do the same, not retry at once: a
    catalogue that says 0 under load must not get its retries in one burst."""
    from stacpull.config import SearchConfig
    from stacpull.retry import testing
    from stacpull.search import search_pages

    async def collect(base: str) -> list[str]:
        config = SearchConfig(catalog=base, timeout=5.0)
        return [str(item["id"]) async for page, _ in search_pages(config) for item in page]

    with BusyCatalogue(busy=3, retry_after="0") as catalogue, testing() as skipped:
        assert anyio.run(collect, catalogue.base) == ["A"]
    assert catalogue.searches == 4
    assert len(skipped) == 3 and all(wait > 0 for wait in skipped), skipped


class _ZeroRetryAfterTokens(ThreadedApp):
    """A token endpoint answering ``fails`` 503s with ``Retry-After: 0``, then a token."""

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
            return web.json_response({"error": "busy"}, status=503, headers={"Retry-After": "0"})
        return web.json_response({"access_token": "access-1", "expires_in": 300})


def test_a_zero_retry_after_from_the_token_endpoint_still_backs_off() -> None:
    """Before the issue a failed token request always waited 1, 2, 4… s before the next;
    with ``Retry-After`` honoured, a ``0`` must not turn every worker's wait for the token
    into a burst of requests to a busy identity provider."""
    from stacpull.config import Secret
    from stacpull.oidc import OIDCSettings, OIDCTokenProvider
    from stacpull.retry import testing

    with _ZeroRetryAfterTokens(fails=3) as endpoint, testing() as skipped:
        provider = OIDCTokenProvider(Secret("offline-1"), OIDCSettings(token_url=endpoint.url))
        assert anyio.run(provider.token) == Secret("access-1")
    assert endpoint.requests == 4
    assert len(skipped) == 3 and all(wait > 0 for wait in skipped), skipped
