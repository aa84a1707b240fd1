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

from stacpull.config import AuthConfig, Secret
from stacpull.credentials import load_credentials
from stacpull.errors import CredentialsError
from stacpull.events import Event, JobFinished, TokenRefreshed
from stacpull.journal import Journal
from stacpull.models import Status
from stacpull.oidc import OIDCSettings, OIDCTokenProvider
from stacpull.retry import RetryPolicy
from stacpull.sim import Faults, OIDCOptions, ScaledClock, SimCatalog, SimOptions, SimServer
from stacpull.sim import default_collections as collections

from .conftest import L1A, Recorder, cli, files_under, pull

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
        # A fixed window of 32 (an adaptive one starts at 8): 32 requests go out at once.
        result = _oidc_pull(
            sim, tmp_path, provider, recorder, concurrency=32, per_host=32, adaptive=False
        )
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
    settings = OIDCSettings(
        token_url="http://127.0.0.1:9/token", retry=RetryPolicy(retries=2, backoff=0.01)
    )
    provider = OIDCTokenProvider(Secret(OFFLINE), settings)
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


# -- the command line -------------------------------------------------------------------


_cli = cli


def _jwt(exp: float) -> str:
    import base64
    import json

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none'})}.{part({'exp': int(exp)})}.signature-part"


def test_auth_check_with_an_offline_token_file(tmp_path: Path) -> None:
    with _server(lifetime=300.0) as sim:
        creds = tmp_path / "credentials.txt"
        creds.write_text(
            f"CLIENT_ID=offline-token\nCLIENT_SECRET={SECRET}\nOFFLINE_TOKEN={OFFLINE}\n"
        )
        creds.chmod(0o644)
        args = ("auth", "check", "--offline-token-file", str(creds), "--token-url", sim.token_url)
        code, out, err = _cli(*args)
        assert code == 0, out + err
        assert "working" in out and "expires in 5 min" in out and sim.token_url in out
        assert "chmod 600" in err  # readable by others: warned
        issued = set(sim.identity._access)
        assert issued
        for secret in (OFFLINE, SECRET, *issued):
            assert secret not in out + err
        sim.identity.revoke()
        code, out, err = _cli(*args)
        assert code == 1 and "not working" in out and "invalid_grant" in out


def test_auth_check_with_fixed_tokens(tmp_path: Path, sim: SimServer) -> None:
    import time

    expired = tmp_path / "old.txt"
    expired.write_text(_jwt(time.time() - 7200))
    expired.chmod(0o600)
    code, out, _ = _cli("auth", "check", "--token-file", str(expired))
    assert code == 1 and "expired 2.0 h ago" in out
    code, out, err = _cli("auth", "check", "--token", _jwt(time.time() + 600))
    assert code == 0 and "expires in 10 min" in out and "signature-part" not in out + err
    # not a JWT: only a request can tell; --url makes one (one byte of one file)
    url = sim.catalog.item(L1A, 0)["assets"]["quicklook"]["href"]
    code, out, _ = _cli("auth", "check", "--token", "sim-token", "--catalog", sim.catalog_url)
    assert code == 0 and "unknown" in out
    args = ("auth", "check", "--catalog", sim.catalog_url, "--url", url)
    code, out, _ = _cli(*args, "--token", "sim-token")
    assert code == 0 and "HTTP 206: it opens" in out
    code, out, _ = _cli(*args, "--token", "wrong-token")
    assert code == 1 and "HTTP 401: it refuses the token" in out
    code, out, _ = _cli("auth", "check", "--token-file", str(tmp_path / "token.txt"))
    assert code == 2  # a token file named explicitly must exist
    code, out, _ = _cli("auth", "check", env={"HOME": str(tmp_path)})
    assert code == 1 and "no credentials" in out


def test_a_revoked_offline_token_exits_3_with_what_to_do(tmp_path: Path) -> None:
    with _server() as sim:
        sim.identity.revoke()
        code, out, err = _cli(
            "download",
            "--catalog",
            sim.catalog_url,
            "--collection",
            L1A,
            "--dest",
            str(tmp_path / "d"),
            "--token-url",
            sim.token_url,
            "--client-secret",
            SECRET,
            "--dashboard",
            "plain",
            env={"STACPULL_OFFLINE_TOKEN": OFFLINE},
        )
        assert code == 3, out + err
        assert "run stopped" in err and "set STACPULL_OFFLINE_TOKEN" in err
        assert "run the same command again" in err and OFFLINE not in out + err
        assert not [r for r in sim.requests if r["path"].startswith("/data/")]


def test_no_secret_reaches_output_logs_report_or_journal(tmp_path: Path) -> None:
    """--debug output, the summary, the JSON report, the outcomes log and the journal
    hold no offline token, no client secret and no access token."""
    clock = ScaledClock(SPEED)
    with _server(clock=clock, lifetime=10.0) as sim:
        sim.set_faults(Faults(rate_limit=500_000))
        creds = tmp_path / "credentials.txt"
        creds.write_text(f"OFFLINE_TOKEN={OFFLINE}\nCLIENT_SECRET={SECRET}\n")
        creds.chmod(0o600)
        dest = tmp_path / "d"
        common = ("--catalog", sim.catalog_url, "--collection", L1A, "--dest", str(dest))
        code, out, err = _cli(
            "--debug",
            "download",
            *common,
            "--offline-token-file",
            str(creds),
            "--token-url",
            sim.token_url,
            "--dashboard",
            "plain",
        )
        assert code == 0, out + err
        assert "stacpull.auth DEBUG" in err and "new access token" in err  # it did log
        # A fixed token the server refuses: the failure is reported, the token is not.
        dest2 = tmp_path / "d2"
        code2, out2, err2 = _cli(
            "--debug", "download", *common[:-1], str(dest2), "--token", "refused-token-123"
        )
        assert code2 == 3 and "was refused" in err2 + out2  # a refused fixed token stops the run
        secrets_ = {OFFLINE, SECRET, "refused-token-123"} | {
            r["token"] for r in sim.requests if r["token"]
        }
    assert len(secrets_) >= 4  # and at least one access token
    texts = [out, err, out2, err2]
    for state in (dest / ".stacpull", dest2 / ".stacpull"):
        texts += [p.read_bytes().decode("latin-1") for p in state.iterdir() if p.is_file()]
    for secret in secrets_:
        for text in texts:
            assert secret not in text


@pytest.mark.parametrize("then_ctrl_c", [False, True])
def test_a_drain_stop_lets_transfers_in_flight_finish_unless_cut_short(
    tmp_path: Path, sim: SimServer, then_ctrl_c: bool
) -> None:
    """What a refused offline token does to the run: no new transfer; the ones already
    streaming (they hold a valid token) finish, however short the grace, unless a Ctrl-C
    puts the deadline back."""
    from stacpull.api import build_config
    from stacpull.engine import run
    from stacpull.events import RunStopping, TransferStarted
    from stacpull.runtypes import RunOptions, StopSignal

    sim.set_faults(Faults(rate_limit=400_000))  # each product takes most of a second
    stop = StopSignal()
    recorder = Recorder()

    def sink(event: Event) -> None:
        recorder(event)
        if isinstance(event, TransferStarted) and not stop.requested:
            stop.request("credentials: revoked", drain=True)
        elif isinstance(event, RunStopping) and then_ctrl_c and event.grace is None:
            stop.request("Ctrl-C")

    config = build_config(catalog=sim.catalog_url, collections=[L1A], dest=str(tmp_path))
    config = config.with_values(
        {"auth.token": "sim-token", "download.concurrency": 2, "download.assets": ["product"]}
    )
    result = anyio.run(lambda: run(config, sink=sink, stop=stop, options=RunOptions(grace=0.05)))
    assert result.interrupted
    assert [e.grace for e in recorder.of_type(RunStopping)] == (
        [None, 0.05] if then_ctrl_c else [None]
    )
    started = {e.job.label for e in recorder.of_type(TransferStarted)}
    finished = {label for label, o in recorder.outcomes().items() if o.status is Status.DOWNLOADED}
    assert 1 <= len(started) <= 2
    if then_ctrl_c:
        assert finished < started  # cut after 0.05 s, .part kept
    else:
        assert finished == started  # every transfer in flight finished
    assert len(files_under(tmp_path)) < 5
