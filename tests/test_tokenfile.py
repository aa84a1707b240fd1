"""One token refresher for a cluster (issue 21): the coordinator's
:class:`~stacpull.cluster.tokenfile.TokenFileWriter` refreshes the offline token and replaces
``DEST/.stacpull/token``; the workers' runs read that file (``auth.token_file``). Against
the simulated identity server with rotating (single-use) refresh tokens, and
token lifetimes on a clock the test moves as the readers' files end."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest

from stacpull import api
from stacpull.cluster.tokenfile import TokenFileWriter, token_path, write_token
from stacpull.config import AuthConfig, Secret
from stacpull.credentials import load_credentials
from stacpull.errors import StorageError
from stacpull.events import Event, JobFinished
from stacpull.oidc import OIDCTokenProvider
from stacpull.runtypes import RunOptions
from stacpull.sim import Faults, OIDCOptions, SimCatalog, SimOptions, SimServer
from stacpull.sim import default_collections as collections

from .conftest import L1A, L1C, Clock

LIFETIME = 30.0  # seconds of the test's clock an access token lives; refreshed 6 s early


def test_the_token_file_is_private_and_always_whole(tmp_path: Path) -> None:
    path = token_path(tmp_path)
    tokens = [f"tok-{n}-" + "x" * (n % 7 * 300) for n in range(80)]  # lengths vary
    old = os.umask(0)  # a careless umask: the file is private all the same
    try:
        write_token(path, Secret(tokens[0]))
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    seen: list[str] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            seen.append(path.read_text())

    reader = threading.Thread(target=read)
    reader.start()
    inodes = set()
    try:
        for token in tokens[1:]:
            write_token(path, Secret(token))
            inodes.add(path.stat().st_ino)
    finally:
        done.set()
        reader.join()
    whole = {t + "\n" for t in tokens}
    assert seen and all(text in whole for text in seen)  # never a part of a token
    assert len(inodes) > 1  # each write is a new file renamed over the old
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["token"]  # no temporary left


def test_a_link_planted_at_the_token_file_is_not_written_through(tmp_path: Path) -> None:
    target = tmp_path / "victim"
    target.write_text("keep me")
    path = token_path(tmp_path / "dest")
    path.parent.mkdir(parents=True)
    path.symlink_to(target)
    with pytest.raises(StorageError, match="token file"):
        write_token(path, Secret("tok"))
    assert target.read_text() == "keep me"
    assert [p.name for p in path.parent.iterdir()] == ["token"]


def _server(clock: Clock) -> SimServer:
    options = SimOptions(
        tokens=set(),  # only access tokens from the token endpoint open the data
        oidc=OIDCOptions(clock=clock, lifetime=LIFETIME, rotate=True),
    )
    server = SimServer(SimCatalog(collections(3, 200_000)), options=options)
    server.set_faults(Faults(rate_limit=1_000_000))  # a product takes a fifth of a second
    return server


def _worker_config(sim: SimServer, collection: str, dest: Path, token_file: Path) -> Any:
    """A worker's run: no offline token, only the coordinator's token file."""
    return api.build_config(
        catalog=sim.catalog_url,
        collections=[collection],
        dest=str(dest),
        token_file=str(token_file),
        concurrency=2,
        backoff=0.01,
        max_backoff=0.05,
    )


class _Time:
    """The token lifetimes' clock, moved by the test as the readers' files end: each move
    takes it past the writer's refresh time, never past the current token's expiry, so
    what the test sees does not hang on how fast a loaded machine runs."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.writer: TokenFileWriter | None = None
        self.moved: anyio.Event | None = None  # set when the clock moves
        self.finished = 0
        self.moves = 0

    def __call__(self, event: Event) -> None:
        if not isinstance(event, JobFinished):
            return
        self.finished += 1
        # After the 2nd and the 8th file, if the last move's token was written already.
        assert self.writer is not None
        if self.finished in (2, 8) and self.writer.writes == self.moves + 1:
            self.clock.now += LIFETIME * 0.9  # past 0.8 of its life: due for a refresh
            self.moves += 1
            if self.moved is not None:
                self.moved.set()

    async def sleep(self, seconds: float) -> None:
        """The writer's sleep: until the test's clock passed ``seconds`` from now."""
        until = self.clock.now + seconds
        while self.clock.now < until:
            self.moved = anyio.Event()
            await self.moved.wait()


def test_only_the_writer_refreshes_and_its_refreshes_reach_the_readers(tmp_path: Path) -> None:
    clock = Clock()
    with _server(clock) as sim:
        auth = AuthConfig(
            offline_token=Secret("sim-offline-token"),
            token_url=sim.token_url,
            client_secret=Secret("sim-client-secret"),
        )
        provider = load_credentials(auth, clock=clock)
        assert isinstance(provider, OIDCTokenProvider)
        (tmp_path / "coordinator").mkdir()  # DEST, made by the coordinator
        path = token_path(tmp_path / "coordinator")
        time = _Time(clock)
        writer = time.writer = TokenFileWriter(provider, path, sleep=time.sleep)
        results: list[Any] = []

        async def cluster() -> None:
            assert await writer.write_now()  # before dispatch: the workers' file exists
            async with anyio.create_task_group() as tg:
                tg.start_soon(writer.run)
                async with anyio.create_task_group() as workers:
                    for collection in (L1A, L1C):
                        config = _worker_config(sim, collection, tmp_path / collection, path)

                        async def one(config: Any = config) -> None:
                            run = await api.arun(config, RunOptions("download"), sink=time)
                            results.append(run)

                        workers.start_soon(one)
                tg.cancel_scope.cancel()

        anyio.run(cluster)

    assert [(r.ok, r.downloaded) for r in results] == [(True, 9), (True, 9)]
    grants = sim.identity.log
    # Only the writer spoke to the token endpoint, and the rotation never broke: each
    # refresh used the refresh token the last one returned (a reuse answers invalid_grant).
    assert {e["outcome"] for e in grants} == {"ok"}
    assert len(grants) == provider.requests == writer.writes == 1 + time.moves >= 2
    data = [r for r in sim.requests if r["path"].startswith("/data/")]
    used = [r["token"] for r in data]
    assert len(set(used)) >= 2  # a refreshed token reached the readers mid-run
    # Refreshed before expiry: no request went out with a token that had expired (the
    # clock never passed a token's end before its successor was in the file).
    assert [r for r in data if not r["token_ok"]] == []
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
