"""One token refresher for a cluster (issue 21): the coordinator alone holds the offline
token and refreshes it; the workers read the current access token from a file in DEST.

Rotating refresh tokens are single-use: two processes refreshing the same offline token
would retire each other's (the loser's next refresh answers ``invalid_grant``). So the
coordinator's :class:`TokenFileWriter` asks its :class:`~stacpull.tokens.TokenProvider`
(:class:`~stacpull.oidc.OIDCTokenProvider`'s refresh, single-flight) for each new access
token shortly after the provider would refresh it — ``auth.refresh_margin`` before expiry
— and replaces ``DEST/.stacpull/token`` with it. Each worker's run has ``auth.token_file``
pointing there: :class:`~stacpull.tokens.TokenFile` re-reads it whenever its inode, size or
time changes (before each request, and at once on a 401), so the new token reaches every
worker well before the old one expires.

The file is written as a private temporary file in the same directory (mode 0600 whatever
the umask, created afresh with ``O_EXCL | O_NOFOLLOW``), flushed to disk, and renamed over
the token file: a reader sees the whole old token or the whole new one, never a part, on a
local disk or a shared one (a rename within one directory is atomic on NFS too).
No Dask here: the driver runs the writer beside the cluster run.
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import anyio.to_thread

from ..config import Secret
from ..errors import StorageError
from ..journal import JOURNAL_DIR
from ..oidc import OIDCTokenProvider
from ..safeio import ensure_directory, keep_private, replace_regular
from ..safepath import create_fresh, open_directory
from ..tokens import TokenProvider, log

__all__ = ["TokenFileWriter", "token_path", "write_token"]

#: Seconds between looks at a token whose end the writer cannot know (a fixed token, a
#: token file of the coordinator's, an access token without ``expires_in``): a changed one
#: is written within this.
_POLL = 30.0

#: Seconds past the provider's own refresh time the writer asks for the next token: asked
#: a moment early, the provider would answer with the cached one.
_LATE = 0.05


def token_path(dest: Path) -> Path:
    """Where a cluster run's workers read the access token: ``DEST/.stacpull/token``."""
    return dest / JOURNAL_DIR / "token"


def write_token(path: Path, token: Secret) -> None:
    """Replace ``path`` with ``token`` atomically, readable by its owner alone (0600):
    a temporary file in the same directory, fsync, rename, fsync of the directory. Raises
    :class:`StorageError` naming the file when it cannot be written."""
    directory = path.parent
    temporary = directory / f".{path.name}.{secrets.token_hex(6)}.tmp"
    try:
        if ensure_directory(directory, create=True):
            keep_private(directory)
        fd = create_fresh(temporary, os.O_WRONLY, 0o600)
        try:
            os.fchmod(fd, 0o600)  # the umask cannot widen it, but a group-sticky setup might
            data = (token.reveal() + "\n").encode()
            while data:
                data = data[os.write(fd, data) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        replace_regular(temporary, path)
        _sync_directory(directory)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise StorageError(
            f"cannot write the workers' token file {path}: {exc.strerror or exc}"
        ) from None


def _sync_directory(directory: Path) -> None:
    """Make the rename durable (best effort: some file systems refuse a directory fsync)."""
    fd = open_directory(directory)
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class TokenFileWriter:
    """Keeps ``path`` holding the current access token of ``provider`` (see the module
    docstring). ``sleep`` waits in the provider's clock's seconds (a test's scaled clock);
    ``poll`` is how often a token whose end is unknown is looked at again."""

    def __init__(
        self,
        provider: TokenProvider,
        path: Path,
        *,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        poll: float = _POLL,
    ) -> None:
        self.provider = provider
        self.path = path
        self._sleep = sleep
        self._poll = poll
        self._written: Secret | None = None
        #: Tokens written so far (each one a new token), for tests and the report.
        self.writes = 0

    async def write_now(self) -> bool:
        """Ask the provider for the token to send now (it refreshes one that is due) and
        write it if it is new. Returns whether the file changed. Raises
        :class:`~stacpull.errors.CredentialsError` when no token can be had (before
        dispatch: the run does not start), :class:`StorageError` when DEST refuses it."""
        token = await self.provider.token()
        if token is None:
            return False
        if token == self._written:
            return False
        await anyio.to_thread.run_sync(write_token, self.path, token)
        self._written = token
        self.writes += 1
        log.debug("a new access token for the workers in %s", self.path)
        return True

    def next_wait(self) -> float:
        """Seconds (of the provider's clock) until the token needs a look: just past the
        provider's own refresh time for an access token with a known end, else ``poll``."""
        provider = self.provider
        if not isinstance(provider, OIDCTokenProvider):
            return self._poll
        left, lifetime = provider.expires_in_now(), provider.expires_in
        if left is None or lifetime is None or math.isinf(left):
            return self._poll
        early = min(provider.settings.margin, lifetime / 5)  # as the provider refreshes
        return min(self._poll, max(0.0, left - early) + _LATE)

    async def run(self) -> None:
        """Write the token, then each new one, until cancelled (the end of the cluster
        run). A refresh that fails for good raises :class:`CredentialsError`: the workers'
        token then stops working, and the run stops as a single-process run would."""
        while True:
            await self.write_now()
            await self._sleep(self.next_wait())
