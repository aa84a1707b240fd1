"""Tokens that last the night: OIDC offline-token refresh against the simulated identity
server, single-flight refreshes, token files re-read on change, a revoked offline token.

Token lifetimes run on a :class:`ScaledClock` shared by the simulated server and the
client's provider: a 10-second access token lasts a fraction of a real second, so minutes
of token life pass in a few real seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from stacpull.auth import OIDCTokenProvider, load_credentials
from stacpull.config import AuthConfig, Secret
from stacpull.errors import CredentialsError
from stacpull.events import Event, JobFinished, TokenRefreshed
from stacpull.journal import Journal
from stacpull.models import Status
from stacpull.sim import Faults, OIDCOptions, ScaledClock, SimCatalog, SimOptions, SimServer
from stacpull.sim import default_collections as collections

from .conftest import Recorder, files_under, pull

OFFLINE = "sim-offline-token"
SECRET = "sim-client-secret"
SPEED = 30.0  # simulated seconds per real second


def _server(
    *, items: int = 5, product_size: int = 300_000, clock: Any = None, **oidc: Any
) -> SimServer:
    options = SimOptions(
        tokens=set(),  # only access tokens from the token endpoint open the data
        oidc=OIDCOptions(clock=clock or ScaledClock(SPEED), **oidc),
    )
    return SimServer(SimCatalog(collections(items, product_size)), options=options)


@pytest.fixture
def clock() -> ScaledClock:
    return ScaledClock(SPEED)


@pytest.fixture
def idp(clock: ScaledClock) -> Iterator[SimServer]:
    """The simulated catalogue with 10-second access tokens on the shared clock."""
    with _server(clock=clock, lifetime=10.0) as server:
        yield server


def _auth(sim: SimServer, **kw: Any) -> AuthConfig:
    values: dict[str, Any] = {
        "offline_token": Secret(OFFLINE),
        "token_url": sim.token_url,
        "client_secret": Secret(SECRET),
        **kw,
    }
    return AuthConfig(**{k: v for k, v in values.items() if v is not None})


def _provider(sim: SimServer, clock: ScaledClock, **kw: Any) -> OIDCTokenProvider:
    provider = load_credentials(_auth(sim, **kw), clock=clock)
    assert isinstance(provider, OIDCTokenProvider)
    return provider


def _oidc_pull(sim: SimServer, dest: Path, provider: Any, sink: Any = None, **kw: Any) -> Any:
    return pull(sim, dest, sink, token=None, tokens=provider, **kw)


def test_minutes_of_simulated_time_with_10_second_tokens(
    tmp_path: Path, idp: SimServer, clock: ScaledClock, recorder: Recorder
) -> None:
    # Each response is throttled, so the run lasts a few real seconds: minutes of tokens.
    idp.set_faults(Faults(rate_limit=150_000))
    provider = _provider(idp, clock)
    began = clock()
    result = _oidc_pull(idp, tmp_path, provider, recorder, concurrency=3)
    simulated = clock() - began
    assert result.ok and result.downloaded == 15, recorder.outcomes()
    assert simulated >= 120, f"only {simulated:.0f} simulated seconds"
    granted = [e for e in idp.identity.log if e["outcome"] == "ok"]
    refreshes = recorder.of_type(TokenRefreshed)
    # Refreshed lazily, when a request needs a token and the cached one is within 2 s of
    # its end: at most one per token lifetime, a handful in all, never one per request.
    assert 3 <= len(granted) <= simulated / 8 + 2, (simulated, granted)
    assert len(refreshes) == len(granted) == provider.requests
    data_requests = [r for r in idp.requests if r["path"].startswith("/data/")]
    assert len(data_requests) > 0 and not [r for r in data_requests if not r["token_ok"]]
    assert {e.reason for e in refreshes} <= {"first", "expiring", "refused"}
    # Every request carried a token the endpoint issued, and several different ones.
    assert len({r["token"] for r in data_requests}) >= 3


def test_concurrent_first_requests_share_one_token_request(
    idp: SimServer, clock: ScaledClock
) -> None:
    idp.identity.options.latency = 0.2
    provider = _provider(idp, clock)

    async def many() -> set[str]:
        seen: set[str] = set()

        async def one() -> None:
            seen.add((await provider.token()).reveal())

        async with anyio.create_task_group() as tg:
            for _ in range(32):
                tg.start_soon(one)
        return seen

    assert len(anyio.run(many)) == 1
    assert len(idp.identity.log) == 1 and provider.requests == 1


def test_32_workers_hitting_401_together_cause_one_refresh(tmp_path: Path) -> None:
    clock = ScaledClock(1.0)  # real time: tokens live long, only the 401s force a refresh
    with _server(items=12, product_size=50_000, clock=clock, latency=0.3) as sim:
        provider = _provider(sim, clock)
        anyio.run(provider.token)  # a valid, cached access token...
        sim.identity.expire_access_tokens()  # ...that the server forgets
        recorder = Recorder()
        result = _oidc_pull(sim, tmp_path, provider, recorder, concurrency=32, per_host=32)
        assert result.ok and result.downloaded == 36
        assert len(sim.identity.log) == 2  # the first token, and one refresh for all
        refused = [r for r in sim.requests if r["path"].startswith("/data/") and not r["token_ok"]]
        assert len(refused) >= 16  # they really did hit the 401 together
        assert [e.reason for e in recorder.of_type(TokenRefreshed)] == ["refused"]


def test_a_rotated_refresh_token_replaces_the_old_one(tmp_path: Path) -> None:
    clock = ScaledClock(SPEED)
    with _server(clock=clock, lifetime=10.0, rotate=True) as sim:
        sim.set_faults(Faults(rate_limit=600_000))
        offline_file = tmp_path / "offline.txt"
        offline_file.write_text(OFFLINE + "\n")
        offline_file.chmod(0o600)
        provider = load_credentials(
            _auth(sim, offline_token=None, offline_token_file=str(offline_file)), clock=clock
        )
        result = _oidc_pull(sim, tmp_path / "d", provider, concurrency=3)
        assert result.ok and result.downloaded == 15
        outcomes = [e["outcome"] for e in sim.identity.log]
        assert len(outcomes) >= 3 and set(outcomes) == {"ok"}  # the old one was retired each time
        assert offline_file.read_text() == OFFLINE + "\n"  # the user's file is left alone


def test_a_revoked_offline_token_stops_the_run_cleanly_and_it_resumes(
    tmp_path: Path, idp: SimServer, clock: ScaledClock
) -> None:
    idp.set_faults(Faults(rate_limit=200_000))
    offline_file = tmp_path / "credentials.txt"
    offline_file.write_text(f"CLIENT_SECRET={SECRET}\nOFFLINE_TOKEN={OFFLINE}\n")
    offline_file.chmod(0o600)
    dest = tmp_path / "data"
    finished: list[Any] = []

    def revoke_after_three(event: Event) -> None:
        if isinstance(event, JobFinished):
            finished.append(event.outcome)
            if len(finished) == 3:
                idp.identity.revoke()  # the user's offline session is gone

    auth = _auth(idp, offline_token=None, offline_token_file=str(offline_file), client_secret=None)
    provider = load_credentials(auth, clock=clock)
    with pytest.raises(CredentialsError) as stopped:
        _oidc_pull(idp, dest, provider, revoke_after_three, concurrency=3)
    message = str(stopped.value)
    assert "invalid_grant" in message and "90dToken" not in message  # not MAAP's endpoint
    assert f"save it to {offline_file}" in message and "run the same command again" in message
    assert OFFLINE not in message

    failed_refresh = next(e for e in idp.identity.log if e["outcome"] == "invalid_grant")
    late = [
        r
        for r in idp.requests
        if r["path"].startswith("/data/") and r["at"] > failed_refresh["monotonic"]
    ]
    assert len(late) <= 3, "data requests went on after the refresh failed"
    assert all(o.status is not Status.FAILED for o in finished)
    journal = Journal(dest)
    counts = journal.counts()
    journal.close()
    assert counts.get("failed", 0) == 0 and counts.get("done", 0) < 15, counts

    # A new offline token from the portal, dropped into the same file: the run resumes.
    idp.identity.grant("brand-new-offline")
    offline_file.write_text(f"CLIENT_SECRET={SECRET}\nOFFLINE_TOKEN=brand-new-offline\n")
    idp.set_faults(Faults())
    provider = load_credentials(auth, clock=clock)
    recorder = Recorder()
    result = _oidc_pull(idp, dest, provider, recorder, concurrency=3)
    assert result.ok and result.downloaded + result.skipped == 15
    assert result.skipped >= 3 and len(files_under(dest)) == 15


def test_a_token_file_is_re_read_when_it_changes(tmp_path: Path) -> None:
    """A cron job drops a new token into token.txt mid-run; the old one stops working."""
    with SimServer(
        SimCatalog(collections(5, 300_000)), options=SimOptions(tokens={"old-token"})
    ) as sim:
        sim.set_faults(Faults(rate_limit=600_000))
        token_file = tmp_path / "token.txt"
        token_file.write_text("old-token\n")
        token_file.chmod(0o600)
        swapped: list[int] = []

        def rotate(event: Event) -> None:
            if isinstance(event, JobFinished) and not swapped:
                swapped.append(1)
                sim.options.tokens.add("new-token")
                token_file.write_text("new-token\n")
                sim.options.tokens.discard("old-token")

        recorder = Recorder()

        def both(event: Event) -> None:
            rotate(event)
            recorder(event)

        result = pull(
            sim, tmp_path / "d", both, token=None, token_file=str(token_file), concurrency=3
        )
        assert result.ok and result.downloaded == 15, recorder.outcomes()
        used = [r["token"] for r in sim.requests if r["path"].startswith("/data/")]
        assert used[0] == "old-token" and used[-1] == "new-token"
        assert [e.reason for e in recorder.of_type(TokenRefreshed)] == ["file changed"]


def test_a_wrong_client_secret_says_which_flag_to_fix(tmp_path: Path, idp: SimServer) -> None:
    provider = load_credentials(_auth(idp, client_secret=Secret("not-the-secret")))
    with pytest.raises(CredentialsError, match="--client-secret") as stopped:
        _oidc_pull(idp, tmp_path, provider)
    assert "not-the-secret" not in str(stopped.value)
    assert files_under(tmp_path) == []


def test_an_unreachable_token_endpoint_is_retried_then_stops(tmp_path: Path) -> None:
    provider = OIDCTokenProvider(
        Secret(OFFLINE), token_url="http://127.0.0.1:9/token", attempts=3, backoff=0.01
    )
    with pytest.raises(CredentialsError, match="failed 3 times"):
        anyio.run(provider.token)
    assert provider.requests == 3


def test_a_refused_fresh_token_is_not_refreshed_again_at_once(
    idp: SimServer, clock: ScaledClock
) -> None:
    """403 on every file (no access to a collection) must not become a refresh per file."""
    provider = _provider(idp, clock)

    async def scenario() -> Secret | None:
        first = await provider.token()
        second = await provider.refused(first)  # a 401: refreshed once
        assert second is not None and second != first
        return await provider.refused(second)  # refused again right away: not again

    assert anyio.run(scenario) is None
    assert len(idp.identity.log) == 2


def test_the_offline_token_reaches_only_the_token_endpoint(
    tmp_path: Path, idp: SimServer, clock: ScaledClock
) -> None:
    from .test_auth import Recording, _pull_foreign

    with Recording() as foreign:
        provider = _provider(idp, clock)
        result = _pull_foreign(idp, foreign, tmp_path, token=None, tokens=provider)
        assert result.ok and result.downloaded == 2
        assert sorted(foreign.seen) == [("/direct.bin", None), ("/redirected.bin", None)]
    issued = {r["token"] for r in idp.requests if r["token"]}
    assert issued and OFFLINE not in issued
