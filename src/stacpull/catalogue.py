"""The catalogue's HTTP side under pystac-client: retries, headers, timeouts, threads.

pystac-client speaks to the catalogue through a ``requests`` session; what that session
does is decided here, apart from the STAC logic of :mod:`stacpull.search`:

- retries: urllib3's ``Retry`` counts the budgets (a refused connection twice, a read
  twice, a 429/5xx answer five times, eight in all), every wait comes from
  :data:`CATALOGUE_RETRY`, the one :class:`~stacpull.retry.RetryPolicy` (full jitter,
  ``Retry-After`` honoured, none under :func:`stacpull.retry.testing`);
- headers: ``download.headers`` go to the catalogue's own origin only (another host with
  ``--header-all-hosts``, never the credential headers), and a redirect away drops them;
- timeouts told from refusals (:func:`timed_out`), for the message the user sees;
- blocking calls run in daemon threads of their own (:func:`blocking`, :func:`within`),
  so a stop never waits for a silent catalogue and the process never stays alive for one.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Self, TypeVar

import anyio.to_thread

from .retry import RetryPolicy

if TYPE_CHECKING:
    from urllib3.util.retry import Retry

__all__ = [
    "CATALOGUE_RETRY",
    "blocking",
    "headers_for",
    "retries",
    "strip_on_leaving",
    "timed_out",
    "within",
]

_T = TypeVar("_T")

#: The catalogue's waits, eight retries in all: up to 0.25, 0.5, 1, 2… s (at most 120 s,
#: urllib3's own ceiling), so that no wait is longer than urllib3's fixed 0, 1, 2, 4… s
#: were: a silent catalogue is still given up on within ``10 × search.timeout``. A
#: ``Retry-After`` sent with a 429/5xx is waited for instead.
CATALOGUE_RETRY = RetryPolicy(retries=8, backoff=0.25, max_backoff=120.0)

#: Headers that are credentials: even with ``all_hosts`` they stay on the catalogue.
_CREDENTIALS = frozenset({"authorization", "proxy-authorization"})


@functools.cache
def _policy_retry() -> type[Any]:
    """urllib3's ``Retry`` waiting through a :class:`RetryPolicy` (built on first use:
    urllib3 is imported with requests, lazily); typed ``Any``: the class is local."""
    from urllib3.response import BaseHTTPResponse
    from urllib3.util.retry import Retry

    class PolicyRetry(Retry):
        """Counts what urllib3 counts (connect, read, status, total); waits as ``policy``."""

        def __init__(self, *args: Any, policy: RetryPolicy = CATALOGUE_RETRY, **kw: Any) -> None:
            super().__init__(*args, **kw)
            self.policy = policy

        def new(self, **kw: Any) -> Self:
            retry = super().new(**kw)
            retry.policy = self.policy
            return retry

        def sleep(self, response: BaseHTTPResponse | None = None) -> None:
            after = None
            if self.respect_retry_after_header and response is not None:
                # 0 (or a date already past) is no Retry-After, as urllib3 itself took it:
                # backed off, so a catalogue under load does not get its retries in a burst.
                after = self.get_retry_after(response) or None
            wait = self.policy.wait(len(self.history), after)
            if wait > 0:
                time.sleep(wait)

    return PolicyRetry


def retries(policy: RetryPolicy = CATALOGUE_RETRY) -> Retry:
    """The ``max_retries`` of the catalogue's session: ``policy.retries`` in all, of which
    two refused connections, two failed reads and five 429/5xx answers; the last such
    answer is handed on (pystac-client says what the catalogue said)."""
    retry: Retry = _policy_retry()(
        total=policy.retries,
        connect=2,  # a refused connection is rarely fixed by waiting: say so quickly
        read=2,
        status=5,  # MAAP's load balancer answers 429/5xx under load: those are worth waiting for
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=None,  # POST searches are idempotent here
        respect_retry_after_header=True,
        raise_on_status=False,
        policy=policy,
    )
    return retry


def _origin(url: str) -> tuple[str, str, int | None]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), port or {"http": 80, "https": 443}.get(scheme)


def _same_site(catalog: str, url: str) -> bool:
    """Whether ``url`` is the catalogue's own origin (or its http→https upgrade)."""
    want, got = _origin(catalog), _origin(url)
    upgrade = (want[0], want[2], got[0], got[2]) == ("http", 80, "https", 443)
    return bool(got[1]) and want[1] == got[1] and (want == got or upgrade)


def headers_for(
    catalog: str, url: str, headers: tuple[tuple[str, str], ...], all_hosts: bool
) -> dict[str, str]:
    """The configured ``headers`` one request to ``url`` carries (as a transfer's
    ``transfer.http._user_headers``): all of them on the catalogue's origin, elsewhere none, or with
    ``all_hosts`` all but the credentials."""
    if _same_site(catalog, url):
        return dict(headers)
    if all_hosts:
        return {n: v for n, v in headers if n.lower() not in _CREDENTIALS}
    return {}


def strip_on_leaving(
    session: Any, catalog: str, headers: tuple[tuple[str, str], ...], all_hosts: bool
) -> None:
    """A redirect away from the catalogue's origin drops the configured ``headers`` (all
    of them, or only the credentials with ``all_hosts``): requests itself drops only
    ``Authorization``, and only on a new host."""
    rebuild = session.rebuild_auth
    keep = {name.lower() for name in headers_for(catalog, "", headers, all_hosts)}

    def rebuild_auth(prepared: Any, response: Any) -> None:
        rebuild(prepared, response)
        if not _same_site(catalog, prepared.url):
            for name, _ in headers:
                if name.lower() not in keep:
                    prepared.headers.pop(name, None)

    session.rebuild_auth = rebuild_auth


def timed_out(exc: BaseException) -> bool:
    """Whether ``exc`` (a pystac-client, requests or urllib3 error, wrapped however deep)
    comes from a connect or read timeout rather than a refusal or an error answer."""
    import requests
    import urllib3.exceptions

    todo: list[BaseException] = [exc]
    seen: set[int] = set()
    while todo:
        err = todo.pop()
        if id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, urllib3.exceptions.NewConnectionError):
            continue  # urllib3 files "connection refused" under ConnectTimeoutError
        if isinstance(
            err, requests.exceptions.Timeout | urllib3.exceptions.TimeoutError | TimeoutError
        ):
            return True
        if isinstance(err, urllib3.exceptions.MaxRetryError) and err.reason is not None:
            todo.append(err.reason)
        todo += [a for a in err.args if isinstance(a, BaseException)]
        todo += [c for c in (err.__cause__, err.__context__) if c is not None]
    return False


def _started(func: Callable[..., _T], *args: Any) -> tuple[threading.Event, list[Any]]:
    """``func(*args)`` started in a daemon thread; the event is set once ``outcome`` holds
    ``(True, value)`` or ``(False, exception)``."""
    done = threading.Event()
    outcome: list[tuple[bool, Any]] = []

    def call() -> None:
        try:
            outcome.append((True, func(*args)))
        except BaseException as exc:  # handed to the waiting caller, raised there
            outcome.append((False, exc))
        finally:
            done.set()

    threading.Thread(target=call, name="stacpull-catalogue", daemon=True).start()
    return done, outcome


def _result(outcome: list[tuple[bool, Any]]) -> Any:
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


def within(limit: float, func: Callable[..., _T], *args: Any) -> _T | None:
    """``func(*args)`` (blocking) in a daemon thread, abandoned after ``limit`` seconds
    (then ``None``); Ctrl-C interrupts the wait."""
    done, outcome = _started(func, *args)
    if not done.wait(limit):
        return None
    return _result(outcome)  # type: ignore[no-any-return]


async def blocking(func: Callable[..., _T], *args: Any) -> _T:
    """``func(*args)`` (a blocking catalogue call) in a daemon thread of its own; a
    cancellation (Ctrl-C) stops the wait at once and abandons the call.

    A requests call cannot be interrupted, so waiting for it on a stop could take as long
    as the catalogue stays silent; anyio's worker threads would also keep the process
    alive at exit. The thread here is a daemon: it ends with the process.
    """
    done, outcome = _started(func, *args)
    try:
        await anyio.to_thread.run_sync(done.wait, abandon_on_cancel=True)
    finally:
        done.set()  # cancelled: free the worker that waits; the call's thread is abandoned
    return _result(outcome)  # type: ignore[no-any-return]
