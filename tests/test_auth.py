"""The bearer token goes only to trusted hosts, never across a redirect to another origin.

A second real server on 127.0.0.1, reached by the host name ``localhost`` (another host
name than the catalogue's ``127.0.0.1``), records every Authorization header it receives.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

import stacpull
from stacpull.config import AuthConfig, Secret
from stacpull.credentials import load_credentials
from stacpull.errors import ConfigError
from stacpull.sim import SimServer
from stacpull.trust import TrustPolicy

from .conftest import L1A, TOKEN, Recorder


class Recording:
    """A foreign file server in a thread; ``seen`` holds (path, Authorization or None)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        self.seen.append((request.path, request.headers.get("Authorization")))
        return web.Response(body=b"foreign bytes " * 100, content_type="application/octet-stream")

    async def _main(self) -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def __enter__(self) -> Recording:
        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self._main())
            self._loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.fixture
def foreign() -> Iterator[Recording]:
    with Recording() as server:
        yield server


def _foreign_item(sim: SimServer, foreign: Recording) -> dict[str, Any]:
    other = f"http://localhost:{foreign.port}"
    return {
        "type": "Feature",
        "id": "FOREIGN_ITEM",
        "collection": L1A,
        "properties": {"datetime": "2025-09-29T00:00:00Z"},
        "bbox": [0, 0, 1, 1],
        "geometry": None,
        "links": [],
        "assets": {
            "direct": {"href": f"{other}/direct.bin", "type": "application/octet-stream"},
            "redirected": {
                "href": f"{sim.base_url}/go?to={other}/redirected.bin",
                "type": "application/octet-stream",
                "title": "redirected.bin",
            },
        },
    }


def _pull_foreign(sim: SimServer, foreign: Recording, dest: Path, **kw: Any) -> stacpull.RunResult:
    sim.catalog.add_item(L1A, _foreign_item(sim, foreign))
    return stacpull.download(
        catalog=sim.catalog_url,
        collections=[L1A],
        ids=["FOREIGN_ITEM"],
        assets=["all"],
        dest=str(dest),
        **{"token": TOKEN, **kw},
    )


def test_token_is_not_sent_to_other_hosts_or_across_redirects(
    sim: SimServer, foreign: Recording, tmp_path: Path, recorder: Recorder
) -> None:
    result = _pull_foreign(sim, foreign, tmp_path, sink=recorder)
    assert result.ok and result.downloaded == 2
    assert sorted(foreign.seen) == [("/direct.bin", None), ("/redirected.bin", None)]
    # the catalogue's own host did get it, on the redirecting hop
    assert [r["token_ok"] for r in sim.requests if r["path"] == "/go"] == [True]


def test_listed_hosts_receive_the_token(sim: SimServer, foreign: Recording, tmp_path: Path) -> None:
    result = _pull_foreign(sim, foreign, tmp_path, auth_hosts=["localhost"])
    assert result.ok
    assert sorted(foreign.seen) == [
        ("/direct.bin", f"Bearer {TOKEN}"),
        ("/redirected.bin", f"Bearer {TOKEN}"),
    ]


def test_trust_policy_rules() -> None:
    policy = TrustPolicy("https://catalog.maap.eo.esa.int/catalogue/", ("*.s3.example.org",))
    assert policy.trusts("https://catalog.maap.eo.esa.int/data/zipper/x")
    assert policy.trusts("https://catalog.maap.eo.esa.int:8443/data/x")  # any port
    assert not policy.trusts("https://evil.example.com/data/x")
    assert policy.trusts("https://bucket.s3.example.org/x")
    same = "https://catalog.maap.eo.esa.int/data/a"
    assert policy.trusts_redirect(same, "https://catalog.maap.eo.esa.int/data/b", sent=True)
    assert not policy.trusts_redirect(
        same, "http://catalog.maap.eo.esa.int/data/b", sent=True
    )  # scheme
    assert not policy.trusts_redirect(
        same, "https://catalog.maap.eo.esa.int:444/b", sent=True
    )  # port
    assert not policy.trusts_redirect(
        same, "https://presigned.amazonaws.com/b?X-Amz-Signature=1", sent=True
    )


def test_token_sources_and_secrecy(tmp_path: Path) -> None:
    token_file = tmp_path / "token.txt"
    token_file.write_text("abc\ndef\n")
    token_file.chmod(0o644)
    provider = load_credentials(AuthConfig(token_file=str(token_file)))
    assert provider.value == Secret("abcdef")
    assert provider.warnings and "chmod 600" in provider.warnings[0]
    assert "abcdef" not in repr(provider) and "abcdef" not in str(provider.value)
    flag = load_credentials(AuthConfig(token=Secret("xyz"), token_file=str(token_file)))
    assert flag.value == Secret("xyz")
    with pytest.raises(ConfigError, match="does not exist"):
        load_credentials(AuthConfig(token_file=str(tmp_path / "missing.txt")))
    assert load_credentials(AuthConfig(), cwd=tmp_path / "nowhere").value is None


def test_credential_sources_in_order(tmp_path: Path) -> None:
    from stacpull.oidc import OIDCTokenProvider
    from stacpull.tokens import StaticTokenProvider

    (tmp_path / "token.txt").write_text("default-file-token")
    (tmp_path / "named.txt").write_text("named-file-token")
    (tmp_path / "offline.txt").write_text("offline-from-file")
    for p in tmp_path.iterdir():
        p.chmod(0o600)

    def source(**kw: Any) -> str:
        return load_credentials(AuthConfig(**kw), cwd=tmp_path).source

    offline = {"offline_token_file": "offline.txt"}
    assert source(token=Secret("flag"), token_file="named.txt", **offline) == (
        "--token/STACPULL_TOKEN"
    )
    assert source(token_file="named.txt", **offline) == "token file named.txt"
    # An offline token wins over a token.txt that merely lies around…
    assert source(**offline) == "offline token file offline.txt"
    assert source(offline_token=Secret("offline-from-env"), **offline) == "STACPULL_OFFLINE_TOKEN"
    # …which is used when nothing else is configured.
    assert source() == "token file token.txt"
    provider = load_credentials(AuthConfig(**offline), cwd=tmp_path)
    assert isinstance(provider, OIDCTokenProvider) and provider.warnings == []
    assert isinstance(load_credentials(AuthConfig(), cwd=tmp_path / "x"), StaticTokenProvider)


def test_credentials_txt_and_half_written_token_files(tmp_path: Path) -> None:
    from stacpull.oidc import OIDCTokenProvider
    from stacpull.tokens import TokenFile

    creds = tmp_path / "credentials.txt"
    creds.write_text(
        "# from the MAAP portal\nCLIENT_ID=my-client\nCLIENT_SECRET=my-secret\n"
        "OFFLINE_TOKEN=eyJhbGciOi.eyJleHAiOjF9.sig\n"
    )
    provider = load_credentials(AuthConfig(offline_token_file=str(creds)))
    assert isinstance(provider, OIDCTokenProvider) and provider.client_id == "my-client"
    # flags win over the file
    flagged = load_credentials(AuthConfig(offline_token_file=str(creds), client_id="flag-id"))
    assert isinstance(flagged, OIDCTokenProvider) and flagged.client_id == "flag-id"
    creds.write_text("CLIENT_ID=my-client\n")
    with pytest.raises(ConfigError, match="no OFFLINE_TOKEN= line"):
        load_credentials(AuthConfig(offline_token_file=str(creds)))

    plain = TokenFile(tmp_path / "t.txt", "token file t.txt")
    plain.path.write_text("abc\ndef\n")
    assert plain.load() == {"token": "abcdef"}
    assert plain.reload() is None  # unchanged
    plain.path.write_text("")  # a writer caught halfway: keep the old token
    assert plain.reload() is None
    plain.path.write_text("ghi-longer\n")
    assert plain.reload() == {"token": "ghi-longer"}


def test_an_expired_jwt_in_a_token_file_is_warned_about(tmp_path: Path) -> None:
    import base64
    import json
    import time

    claims = base64.urlsafe_b64encode(json.dumps({"exp": int(time.time()) - 600}).encode())
    token_file = tmp_path / "token.txt"
    token_file.write_text(f"eyJhbGciOiJub25lIn0.{claims.decode().rstrip('=')}.sig")
    token_file.chmod(0o600)
    provider = load_credentials(AuthConfig(token_file=str(token_file)))
    assert any("expired 10 min ago" in w and "--offline-token-file" in w for w in provider.warnings)
