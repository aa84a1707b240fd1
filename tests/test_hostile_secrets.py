"""No secret kept anywhere: the offline token, the client secret, access tokens, a fixed
token, a catalogue's password and the credentials inside asset hrefs (userinfo, ``?token=``,
presigned signatures) never reach stdout/stderr, ``--debug``, ``--log-json``, the reports,
the journal, ``auth check`` or ``config show``, in any encoding (raw, percent-encoded in
upper or lower case, form-encoded, JSON-escaped, base64 of ``user:pass``), even when a
token endpoint or a data server echoes the request back in its error.

Every secret has ``+``, ``/``, ``=`` and a space in it: the characters each encoding
changes. Each flow greps every byte stacpull wrote (and the journal's rows) for each
secret in each encoding.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, unquote_plus

import pytest
from aiohttp import web

import stacpull
from stacpull.config import Config, Secret, load_config
from stacpull.errors import CredentialsError, SearchError, scrub
from stacpull.sim import SimCatalog, SimOptions, SimServer, default_collections

from .conftest import L1A, cli, sim_download

OFFLINE = "0ff+line/T0k=en offline-secret-one"
CLIENT_ID = "my-client"
CLIENT_SECRET = "cl+ient/S3cr=et client-secret-two"
ACCESS = "acc+ess/T0k=en access-token-three"
ROTATED = "r0t+ated/Refr=esh rotated-token-four"
STATIC = "st+atic/T0k=en static-token-five"
CAT_USER, CAT_PASSWORD = "cat-user", "p@ss+w/rd= cat-password-six"
HREF_USER, HREF_PASSWORD = "href-user", "hr@f+pw/d= href-password-seven"
QUERY_TOKEN = "qt0k+en/v=al query-token-eight"
SIGNATURE = "5ig+nat/ure= signature-nine"
TOKEN_URL_PASSWORD = "t0k+url/pw= token-url-password-ten"

SECRETS = (
    OFFLINE,
    CLIENT_SECRET,
    ACCESS,
    ROTATED,
    STATIC,
    CAT_PASSWORD,
    HREF_PASSWORD,
    QUERY_TOKEN,
    SIGNATURE,
    TOKEN_URL_PASSWORD,
)
PAIRS = (
    (CLIENT_ID, CLIENT_SECRET),
    (CAT_USER, CAT_PASSWORD),
    (HREF_USER, HREF_PASSWORD),
)


def _lower_hex(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), text)


def _encodings(secret: str) -> set[str]:
    """The forms a secret takes on its way out: raw, percent- and form-encoded (both hex
    cases), JSON-escaped; each space-separated piece on its own too."""
    forms = {
        secret,
        quote(secret, safe=""),
        quote(secret),
        quote(secret, safe="+/="),
        quote_plus(secret),
        quote_plus(secret, safe="/"),
        json.dumps(secret)[1:-1],
        secret.replace("/", "\\/"),
        quote(quote(secret, safe=""), safe=""),
    }
    forms |= {_lower_hex(f) for f in forms}
    for piece in secret.split(" "):
        if piece != secret and len(piece) >= 8:
            forms |= _encodings(piece)
    return forms


def _basic(user: str, password: str) -> set[str]:
    forms = set()
    for u, p in ((user, password), (quote_plus(user), quote_plus(password))):
        raw = f"{u}:{p}".encode()
        for enc in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
            text = enc.decode()
            forms |= {text, text.rstrip("="), quote(text, safe="")}
    return forms


NEEDLES = sorted(
    set().union(*(_encodings(s) for s in SECRETS), *(_basic(u, p) for u, p in PAIRS)), key=len
)


def _leaks(texts: dict[str, str | bytes]) -> list[str]:
    """Every (where, needle) pair where a secret in some encoding was found."""
    found = []
    for where, text in texts.items():
        data = text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")
        for needle in NEEDLES:
            if needle.encode() in data:
                found.append(f"{where}: {needle!r}")
    return found


def _written(dest: Path, log_json: Path | None = None) -> dict[str, str | bytes]:
    """Every file under DEST/.stacpull as bytes, the journal's rows, and the event log."""
    out: dict[str, str | bytes] = {}
    state = dest / ".stacpull"
    for path in sorted(state.rglob("*")) if state.is_dir() else []:
        if path.is_file():
            out[str(path.relative_to(dest))] = path.read_bytes()
    journal = state / "journal.sqlite"
    if journal.is_file():
        db = sqlite3.connect(journal)
        try:
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            for table in tables:
                rows = db.execute(f"SELECT * FROM {table}").fetchall()
                out[f"journal rows of {table}"] = repr(rows)
        finally:
            db.close()
    if log_json is not None and log_json.is_file():
        out["--log-json"] = log_json.read_bytes()
    return out


# -- hostile servers ----------------------------------------------------------------------


class _Threaded:
    """An aiohttp application served on 127.0.0.1 from a daemon thread."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        async def serve() -> None:
            runner = web.AppRunner(self.app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            server = site._server
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self._stop = asyncio.Event()
            self._loop = asyncio.get_running_loop()
            self._ready.set()
            await self._stop.wait()
            await runner.cleanup()

        asyncio.run(serve())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> _Threaded:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


class TokenEndpoint:
    """An OIDC token endpoint: ``ok`` issues ACCESS (and rotates the offline token to
    ROTATED); ``echo`` refuses and echoes the posted form back in ``error`` and
    ``error_description``: raw, decoded, percent-encoded in lower case, as JSON, plus the
    Basic header and base64 of ``client_id:client_secret``."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.forms: list[dict[str, str]] = []
        self.authorization: list[str] = []
        app = web.Application()
        app.router.add_post("/token", self.token)
        self.server = _Threaded(app)

    async def token(self, request: web.Request) -> web.Response:
        body = (await request.read()).decode()
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.forms.append(form)
        self.authorization.append(request.headers.get("Authorization", ""))
        if self.mode == "ok":
            answer = {"access_token": ACCESS, "expires_in": 300, "refresh_token": ROTATED}
            return web.json_response(answer)
        pair = f"{form.get('client_id')}:{form.get('client_secret')}".encode()
        echoed = [
            body,
            unquote_plus(body),
            _lower_hex(quote(unquote_plus(body), safe="")),
            json.dumps(form),
            base64.b64encode(pair).decode(),
            request.headers.get("Authorization", ""),
            str(request.url),
        ]
        answer = {"error": f"invalid_grant {body}", "error_description": " | ".join(echoed)}
        return web.json_response(answer, status=400)

    def __enter__(self) -> TokenEndpoint:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.__exit__()

    @property
    def url(self) -> str:
        return f"{self.server.url}/token"


class DataServer:
    """Asset hrefs carry credentials: ``/ok/NAME`` serves bytes to the Basic credentials of
    its href; ``/echo/NAME`` answers 400 with a reason phrase that echoes the request's
    Authorization header and its URL, query string included."""

    def __init__(self) -> None:
        self.authorization: list[str] = []
        app = web.Application()
        app.router.add_get("/ok/{name}", self.ok)
        app.router.add_get("/echo/{name}", self.echo)
        self.server = _Threaded(app)

    async def ok(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        self.authorization.append(header)
        expected = "Basic " + base64.b64encode(f"{HREF_USER}:{HREF_PASSWORD}".encode()).decode()
        if header != expected:
            return web.Response(status=401, text="who are you")
        return web.Response(body=b"x" * 1000, content_type="application/octet-stream")

    async def echo(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        said = f"Bad Request for {header} at {request.path_qs} {unquote_plus(request.query_string)}"
        return web.Response(status=400, reason=said.replace("\n", " "), text=said)

    def __enter__(self) -> DataServer:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.__exit__()

    def href(self, kind: str, name: str) -> str:
        user = f"{HREF_USER}:{quote(HREF_PASSWORD, safe='')}"
        query = f"token={quote(QUERY_TOKEN, safe='')}&X-Amz-Signature={quote_plus(SIGNATURE)}"
        return f"http://{user}@127.0.0.1:{self.server.port}/{kind}/{name}?{query}"


def _catalog_url(sim: SimServer) -> str:
    """The sim's catalogue with a password: ``@``, ``/``, ``=`` and a space
    percent-encoded, ``+`` left as it is (legal in userinfo)."""
    password = quote(CAT_PASSWORD, safe="+")
    return f"http://{CAT_USER}:{password}@127.0.0.1:{sim.port}/catalogue/"


def _hostile_item(
    sim: SimServer, data: DataServer, n: int, *, token_in_key: bool = False
) -> dict[str, Any]:
    item = sim.catalog.item(L1A, 0)
    item["id"] = f"{item['id']}-HOSTILE{n}"
    item["assets"] = {
        "good": {"href": data.href("ok", f"good{n}.bin"), "roles": ["data"]},
        "echo": {"href": data.href("echo", f"echo{n}.bin"), "roles": ["data"]},
    }
    if token_in_key:  # a catalogue that was sent the fixed token writes it into its metadata
        key = f"echo {quote(STATIC)} {STATIC}"
        item["assets"][key] = {"href": data.href("echo", f"token{n}.bin"), "roles": ["data"]}
    return item


@pytest.fixture(autouse=True)
def no_secret_known_yet(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with a scrubber that knows no secret: what it scrubs, the test's
    own flow registered (secrets from earlier tests must not make a test pass)."""
    import stacpull.errors

    scrubber = getattr(stacpull.errors, "SECRETS", None)
    if scrubber is not None:
        monkeypatch.setattr(scrubber, "_known", set())
        monkeypatch.setattr(scrubber, "_forms", ())


@pytest.fixture
def world() -> Iterator[tuple[SimServer, DataServer, list[str]]]:
    """The sim (its catalogue logging each Authorization header it receives), with one
    item whose assets live on a :class:`DataServer` behind credentials in their hrefs."""
    seen: list[str] = []

    @web.middleware
    async def record(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path.startswith("/catalogue"):
            seen.append(request.headers.get("Authorization", ""))
        return await handler(request)

    catalog = SimCatalog(default_collections(count=2, product_size=20_000))
    sim = SimServer(catalog, options=SimOptions(tokens={ACCESS, STATIC}))
    sim._app.middlewares.append(record)
    with sim, DataServer() as data:
        catalog.add_item(L1A, _hostile_item(sim, data, 1))
        yield sim, data, seen


# -- the scrubber itself ------------------------------------------------------------------


def test_every_encoding_of_a_known_secret_is_scrubbed() -> None:
    Secret(OFFLINE)
    Secret(CLIENT_SECRET)
    load_config(env={}, flags={"search.catalog": _catalog_url_for(1234)})  # registers it
    for needle in [*_encodings(OFFLINE), *_encodings(CLIENT_SECRET), *_encodings(CAT_PASSWORD)]:
        text = f'before "{needle}" after'
        assert needle not in scrub(text), needle
        assert scrub(text).startswith('before "') and scrub(text).endswith('" after')
    for needle in _basic(CAT_USER, CAT_PASSWORD):
        assert needle not in scrub(f"Authorization: Basic {needle}")
    assert scrub("nothing secret here: 42 files") == "nothing secret here: 42 files"


def _catalog_url_for(port: int) -> str:
    return f"http://{CAT_USER}:{quote(CAT_PASSWORD, safe='+')}@127.0.0.1:{port}/catalogue/"


@pytest.mark.parametrize(
    ("text", "kept", "gone"),
    [
        ("GET http://u:hunter2hunter@h.example/x failed", "h.example/x", "hunter2hunter"),
        ("see https://h/x.tif?X-Amz-Signature=abcdef123&a=1", "a=1", "abcdef123"),
        ("https://h/x?X-Amz-Credential=AKIA1234%2F2026&x=y", "x=y", "AKIA1234"),
        ("https://h/x?sig=Zm9vYmFyYmF6&se=2026", "se=2026", "Zm9vYmFyYmF6"),
        ("https%3A%2F%2Fh%2Fx%3Fapi_key%3Dsup3rs3cr3t%26n%3D1", "n%3D1", "sup3rs3cr3t"),
        ("https://h/x?access_token=eyJhbGciOi.eyJleHAi.c2ln", "https://h/x", "eyJhbGciOi"),
        ("header Authorization: Bearer abc.def.ghi-123", "Authorization", "abc.def.ghi-123"),
        ('{"Authorization": "Basic dXNlcjpwYXNzd29yZA=="}', "Authorization", "dXNlcjpw"),
    ],
)
def test_credentials_in_urls_and_headers_are_scrubbed_by_shape(
    text: str, kept: str, gone: str
) -> None:
    """Credentials nobody registered (another href's signature) are found by their place:
    URL userinfo, a query key naming a token/secret/signature/key/password/credential, an
    Authorization header."""
    out = scrub(text)
    assert gone not in out and kept in out, out


# -- whole runs ---------------------------------------------------------------------------


def test_a_token_endpoint_echoing_the_form_leaks_no_secret(
    tmp_path: Path, sim: SimServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The OAuth ``error`` and ``error_description`` repeat the posted form raw, decoded
    and percent-encoded: the run stops (exit 3) saying why, and nothing it wrote holds the
    offline token or the client secret."""
    caplog.set_level(logging.DEBUG, logger="stacpull")
    dest, events = tmp_path / "d", tmp_path / "events.jsonl"
    with TokenEndpoint("echo") as idp:
        token_url = idp.url.replace("http://", f"http://tok:{quote(TOKEN_URL_PASSWORD, safe='')}@")
        common = ("--token-url", token_url, "--client-id", CLIENT_ID)
        env = {"STACPULL_OFFLINE_TOKEN": OFFLINE, "STACPULL_CLIENT_SECRET": CLIENT_SECRET}
        code, out, err = sim_download(
            sim,
            dest,
            "--log-json",
            str(events),
            *common,
            dashboard="plain",
            debug=True,
            env=env,
            token="",
        )
        check = cli("auth", "check", *common, env=env)
        shown = cli("config", "show", "--json", env={**env, "STACPULL_TOKEN_URL": token_url})
        with pytest.raises(CredentialsError) as stopped:
            stacpull.download(
                catalog=sim.catalog_url,
                collections=[L1A],
                dest=str(tmp_path / "api"),
                offline_token=OFFLINE,
                client_id=CLIENT_ID,
                client_secret=CLIENT_SECRET,
                token_url=token_url,
            )
    # The secrets were sent (and echoed), and the token endpoint's password was used.
    assert idp.forms and idp.forms[0]["refresh_token"] == OFFLINE
    assert idp.forms[0]["client_secret"] == CLIENT_SECRET
    assert idp.authorization[0].startswith("Basic ")
    assert code == 3, out + err
    assert "invalid_grant" in err and "run the same command again" in err
    assert check[0] == 1 and "not working" in check[1]
    texts: dict[str, str | bytes] = {
        "stdout": out,
        "stderr": err,
        "auth check": check[1] + check[2],
        "config show": shown[1] + shown[2],
        "API exception": str(stopped.value),
        "caplog": caplog.text + repr([r.getMessage() for r in caplog.records]),
        **_written(dest, events),
        **{f"api {k}": v for k, v in _written(tmp_path / "api").items()},
    }
    assert not _leaks(texts)


def test_a_catalogue_password_and_credentials_in_hrefs_are_used_never_written(
    tmp_path: Path,
    world: tuple[SimServer, DataServer, list[str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The catalogue's password opens the catalogue, an href's userinfo opens its file, the
    OIDC tokens open the sim's data; a data server echoes the Authorization header and the
    query string in its reason phrase. Nothing written holds any of them, in any encoding:
    not the summary, --debug, --log-json, the reports, the journal nor a later
    --retry-failed run."""
    sim, data, seen = world
    caplog.set_level(logging.DEBUG, logger="stacpull")
    dest, events = tmp_path / "d", tmp_path / "events.jsonl"
    with TokenEndpoint("ok") as idp:
        env = {"STACPULL_OFFLINE_TOKEN": OFFLINE, "STACPULL_CLIENT_SECRET": CLIENT_SECRET}
        args = (
            "--debug",
            "download",
            "--catalog",
            _catalog_url(sim),
            "--collection",
            L1A,
            "--dest",
            str(dest),
            "--dashboard",
            "plain",
            "-v",
            "--log-json",
            str(events),
            "--token-url",
            idp.url,
            "--client-id",
            CLIENT_ID,
            "--auth-host",
            "127.0.0.1",
            "--assets",
            "*",
        )
        code, out, err = cli(*args, env=env)
        again = cli(*args, "--retry-failed", env=env)
        shown = cli("config", "show", env={**env, "STACPULL_CATALOG": _catalog_url(sim)})
        probe = ("--catalog", _catalog_url(sim), "--url", data.href("ok", "x"), "--token", STATIC)
        check = cli("auth", "check", *probe)
    assert idp.forms and idp.forms[0]["refresh_token"] == OFFLINE
    basic = "Basic " + base64.b64encode(f"{CAT_USER}:{CAT_PASSWORD}".encode()).decode()
    assert basic in seen, "the catalogue's password was not used"
    assert any(h.startswith("Basic ") for h in data.authorization), data.authorization
    assert code == 1, out + err  # the echoing asset failed, every other file arrived
    assert (dest / "BiomassLevel1aIOC").exists() or any(dest.rglob("good1.bin"))
    assert any(dest.rglob("good1.bin")), "the href's own credentials did not open the file"
    assert "HTTP 400" in out + err
    assert again[0] == 1 and "the journal does not keep" in again[1] + again[2]
    assert check[0] == 0 and "HTTP 200: it opens" in check[1], check  # Basic from its href
    texts: dict[str, str | bytes] = {
        "stdout": out,
        "stderr": err,
        "retry stdout": again[1],
        "retry stderr": again[2],
        "config show": shown[1] + shown[2],
        "auth check": check[1] + check[2],
        "caplog": caplog.text + repr([r.getMessage() for r in caplog.records]),
        **_written(dest, events),
    }
    assert not _leaks(texts)


def test_a_token_written_into_the_metadata_is_kept_nowhere(
    tmp_path: Path,
    world: tuple[SimServer, DataServer, list[str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A catalogue that received the fixed token puts it into an asset key (raw and
    percent-encoded): every writer scrubs what it writes, whatever the source, through the
    API (result, log records, reports, --log-json, journal) and the command line (console
    too). A catalogue that cannot be opened says so without its password."""
    sim, data, seen = world
    sim.catalog.add_item(L1A, _hostile_item(sim, data, 2, token_in_key=True))
    caplog.set_level(logging.DEBUG, logger="stacpull")
    dest, events = tmp_path / "d", tmp_path / "events.jsonl"
    result = stacpull.download(
        Config().with_values({"output.log_json": str(events)}),
        catalog=_catalog_url(sim),
        collections=[L1A],
        dest=str(dest),
        token=STATIC,
        auth_hosts=["127.0.0.1"],
        assets=["*"],
        backoff=0.01,
        max_backoff=0.05,
    )
    assert result.failed + result.refused == 3 and result.downloaded > 1
    assert any(h.startswith("Basic ") for h in seen)
    cli_dest, cli_events = tmp_path / "c", tmp_path / "cli-events.jsonl"
    code, out, err = cli(
        "--debug",
        "download",
        "--catalog",
        _catalog_url(sim),
        "--collection",
        L1A,
        "--dest",
        str(cli_dest),
        "--assets",
        "*",
        "--auth-host",
        "127.0.0.1",
        "--token",
        STATIC,
        "--dashboard",
        "plain",
        "-v",
        "--log-json",
        str(cli_events),
    )
    assert code == 1 and "echo ***" in out + err, out + err
    with pytest.raises(SearchError) as unreachable:
        stacpull.download(
            catalog=_catalog_url(sim).replace(str(sim.port), "1"),
            collections=[L1A],
            dest=str(tmp_path / "never"),
            token=STATIC,
        )
    texts: dict[str, str | bytes] = {
        "result": repr(result),
        "search error": str(unreachable.value),
        "caplog": caplog.text + repr([r.getMessage() for r in caplog.records]),
        "stdout": out,
        "stderr": err,
        **_written(dest, events),
        **{f"cli {k}": v for k, v in _written(cli_dest, cli_events).items()},
    }
    assert not _leaks(texts)


def test_a_saved_search_keeps_its_hrefs_whole_but_not_the_catalogue_password(
    tmp_path: Path, world: tuple[SimServer, DataServer, list[str]]
) -> None:
    """``search -o``: the items are the user's data, their hrefs (credentials included)
    are kept whole for a later ``download --from``; the catalogue's password is not."""
    sim, data, _ = world
    saved = tmp_path / "items.geojson"
    code, out, err = cli(
        "search", "--catalog", _catalog_url(sim), "--collection", L1A, "-o", str(saved)
    )
    assert code == 0, out + err
    text = saved.read_text()
    assert data.href("ok", "good1.bin") in text
    assert "127.0.0.1" in json.loads(text)["links"][0]["href"]
    cat = sorted(set().union(_encodings(CAT_PASSWORD), _basic(CAT_USER, CAT_PASSWORD)))
    assert not [n for n in cat if n in text + out + err]
