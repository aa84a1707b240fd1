"""Issue 16, attacks on the fs-state and segresume work: a catalogue whose unordered paging
repeats one item in place of another, other users on a shared machine planting state in
world-writable directories, a saved search cut short on standard output, state files'
modes.

Real runs against the simulated catalogue; a small reverse proxy in this file plays a
catalogue that lies about its listing.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from stacpull.errors import StorageError
from stacpull.journal import Journal
from stacpull.sim import SimServer

from .conftest import L1A, TOKEN, cli, files_under, pull, sim_download
from .hostile import SimProxy

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX locks and modes")

NOBODY = 65534


@pytest.fixture(autouse=True)
def _own_runtime_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each test gets its own registry of running DESTs (a per-user runtime directory)."""
    runtime = tmp_path_factory.mktemp("xdg-runtime")
    runtime.chmod(0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))


def _mirror(catalog: str, dest: Path, *extra: str) -> tuple[int, str, str]:
    return sim_download(catalog, dest, "--retries", "1", *extra, command="mirror")


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in files_under(root)}


class _Catalogue(SimProxy):
    """A reverse proxy in front of the sim's STAC API that lies about its listing.

    ``mode``: "honest"; "repeat" (the second page repeats the first page's last item in
    place of its own first one, as unordered offset paging does: numberMatched and the
    number of features stay right, one item is never listed); "no-matched" (no
    ``numberMatched`` at all); "fail500" (every later page answers 500); "fail" (a later
    page answers 400). Data requests go to the sim itself."""

    def __init__(self, sim: SimServer) -> None:
        super().__init__(sim)
        self.mode = "honest"
        self._last: dict[str, Any] | None = None
        self.failed = 0  # later pages refused
        self.listing: list[dict[str, Any]] | None = None  # mode "offset"
        self.changes: dict[int, Any] = {}
        self.pages = 0

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.mode == "offset" and request.path.endswith("/search"):
            return await self._offset_page(request)
        later = "token" in request.query or b'"token"' in body
        if later and self.mode in ("fail", "fail500"):
            status = 500 if self.mode == "fail500" else 400
            self.failed += 1
            return web.json_response({"code": "Bad", "description": "page gone"}, status=status)
        status, text = await self.forward(request, body)
        if request.path.endswith("/search") and status == 200:
            page = json.loads(text)
            features = page["features"]
            if self.mode == "repeat":
                if later and self._last is not None:
                    features[0] = self._last
                    self._last = None  # once per search
                elif not later:
                    self._last = features[-1]
            if self.mode == "no-matched":
                page.pop("numberMatched", None)
            text = json.dumps(page)
        return self.answer(text, status)

    async def _offset_page(self, request: web.Request) -> web.Response:
        """An unordered catalogue paged by offset (MAAP's ``startRecord``) over a listing
        that changes while it is read: ``changes[n]`` runs before page ``n`` (1-based)."""
        if self.listing is None:
            async with self._session.get(
                f"{self.sim.base_url}/catalogue/search",
                params={"collections": L1A, "limit": "1000"},
            ) as upstream:
                self.listing = (await upstream.json())["features"]
        offset = int(request.query.get("offset", "0"))
        limit = int(request.query.get("limit", "10"))
        self.pages += 1
        change = self.changes.pop(self.pages, None)
        if change is not None:
            change(self.listing)
        ids = request.query.get("ids")
        listing = [i for i in self.listing if not ids or i["id"] in ids.split(",")]
        page: dict[str, Any] = {
            "type": "FeatureCollection",
            "features": listing[offset : offset + limit],
            "numberMatched": len(listing),
            "links": [],
        }
        if offset + limit < len(listing):
            query = {**request.query, "offset": str(offset + limit)}
            href = str(request.url.with_query(query))
            page["links"].append({"rel": "next", "href": href, "method": "GET"})
        return web.json_response(page, content_type="application/geo+json")


@pytest.fixture
def catalogue(sim: SimServer) -> Iterator[_Catalogue]:
    with _Catalogue(sim) as proxy:
        yield proxy


def _ids(sim: SimServer, *indexes: int) -> list[str]:
    return [str(sim.catalog.item(L1A, i)["id"]) for i in indexes]


# -- 1. what a complete search is ---------------------------------------------------------


def test_a_repeated_item_hiding_a_skipped_one_judges_nothing_gone(
    catalogue: _Catalogue, tmp_path: Path
) -> None:
    """MAAP's results are unordered and offset-paged: an item can come back twice while
    another is never listed. As many features as numberMatched is then not a complete
    listing, and the item never listed must not be pruned: it is still in the catalogue."""
    dest = tmp_path / "dest"
    code, out, err = _mirror(catalogue.url, dest, "--page-size", "2")
    assert code == 0, out + err
    before = _tree(dest)
    assert len(before) == 15
    catalogue.mode = "repeat"
    code, out, err = _mirror(catalogue.url, dest, "--page-size", "2", "--prune")
    assert code == 0, out + err
    assert "no longer in the catalogue" not in out and "pruned 3" not in out
    assert "not pruned" in out and "4 of 5" in out
    assert _tree(dest) == before


def test_an_item_skipped_while_the_catalogue_changes_under_offset_paging_is_not_gone(
    catalogue: _Catalogue, tmp_path: Path
) -> None:
    """During one search an item listed already leaves and a new one arrives at the end:
    offset paging then skips an item that never left, while the count of distinct items
    and numberMatched still agree. Only asking the catalogue for that item tells."""
    dest = tmp_path / "dest"
    catalogue.mode = "offset"
    assert _mirror(catalogue.url, dest, "--page-size", "2")[0] == 0
    before = _tree(dest)
    assert len(before) == 15
    listed_then_gone, skipped = _ids(catalogue.sim, 1, 2)

    def reprocessed(listing: list[dict[str, Any]]) -> None:
        old = next(i for i in listing if i["id"] == listed_then_gone)
        listing.remove(old)
        listing.append({**old, "id": listed_then_gone + "_v2"})

    catalogue.pages = 0
    catalogue.changes = {2: reprocessed}
    code, out, err = _mirror(catalogue.url, dest, "--page-size", "2", "--prune")
    assert code == 0, out + err
    assert (dest / L1A / skipped).is_dir(), "an item still in the catalogue was pruned"
    assert _tree(dest / L1A / skipped) == {
        k.rsplit("/", 1)[1]: v for k, v in before.items() if k.startswith(f"{L1A}/{skipped}/")
    }
    assert len(list((dest / L1A).iterdir())) == 6  # the new item fetched, nothing pruned yet
    # the next complete search sees the old version gone for good: pruned then
    code, out, err = _mirror(catalogue.url, dest, "--page-size", "2", "--prune")
    assert code == 0, out + err
    assert "pruned 3 file(s)" in out and not (dest / L1A / listed_then_gone).exists()
    assert (dest / L1A / skipped).is_dir()


def test_a_catalogue_without_number_matched_still_prunes_after_a_complete_search(
    catalogue: _Catalogue, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    catalogue.mode = "no-matched"
    assert _mirror(catalogue.url, dest, "--page-size", "2")[0] == 0
    (gone,) = _ids(catalogue.sim, 3)
    catalogue.sim.catalog.remove_item(gone)
    code, out, err = _mirror(catalogue.url, dest, "--page-size", "2", "--prune")
    assert code == 0, out + err
    assert "pruned 3 file(s)" in out
    assert not (dest / L1A / gone).exists() and len(files_under(dest)) == 12


def test_a_next_page_that_keeps_failing_with_500_judges_nothing_gone(
    catalogue: _Catalogue, tmp_path: Path
) -> None:
    """The 500s are retried (without the backoff's waits here) and then given up."""
    from stacpull.retry import testing

    dest = tmp_path / "dest"
    assert _mirror(catalogue.url, dest, "--page-size", "2")[0] == 0
    before = _tree(dest)
    catalogue.sim.catalog.remove_item(_ids(catalogue.sim, 0)[0])  # on the first page
    catalogue.mode = "fail500"
    with testing():
        code, out, err = _mirror(catalogue.url, dest, "--page-size", "2", "--prune")
    assert code == 2, out + err
    assert catalogue.failed > 1  # retried, then given up
    assert "no longer in the catalogue" not in out and "Traceback" not in err
    assert _tree(dest) == before


def test_a_changed_asset_selection_never_judges_the_other_assets_gone(
    sim: SimServer, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    assert _mirror(sim.catalog_url, dest)[0] == 0
    before = _tree(dest)
    code, out, err = _mirror(sim.catalog_url, dest, "--assets", "product", "--prune")
    assert code == 0, out + err
    assert "no longer in the catalogue" not in out and "pruned" not in out
    assert _tree(dest) == before


# -- 2. a saved search on standard output -------------------------------------------------


def test_a_search_to_stdout_cut_by_a_failing_page_is_not_a_whole_item_collection(
    catalogue: _Catalogue,
) -> None:
    """A pipe cannot be renamed into place once complete: a search that fails after the
    first page must leave stdout unparseable, never a valid ItemCollection of 2 of 5."""
    catalogue.mode = "fail"
    code, out, err = cli(
        "search", "--catalog", catalogue.url, "--collection", L1A, "--page-size", "2", "-o", "-"
    )
    assert code == 2, out + err
    assert out.startswith('{"type": "FeatureCollection"')
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)


# -- 3. other users on a shared machine ---------------------------------------------------


def _planted_lock(shared: Path, owner: int) -> Path:
    """A ``.stacpull/lock`` that another user (``owner``) made in ``shared``."""
    state = shared / ".stacpull"
    state.mkdir()
    lock = state / "lock"
    lock.touch()
    os.chown(state, owner, owner)
    os.chown(lock, owner, owner)
    return lock


@pytest.mark.skipif(os.geteuid() != 0, reason="plays another user: needs root")
def test_another_user_cannot_block_runs_under_a_world_writable_directory(
    sim: SimServer, tmp_path: Path
) -> None:
    """In /tmp (or any directory anyone may write in) another user can make
    ``.stacpull/lock`` and hold it: that must not refuse every run on a DEST below."""
    shared = tmp_path / "tmp"
    shared.mkdir()
    shared.chmod(0o1777)
    lock = _planted_lock(shared, NOBODY)
    with lock.open("rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = pull(sim, shared / "mine")
    assert result.ok and result.downloaded == 15


@pytest.mark.skipif(os.geteuid() != 0, reason="plays another user: needs root")
def test_another_users_run_on_its_own_outer_dest_is_still_seen(
    sim: SimServer, tmp_path: Path
) -> None:
    """Where the outer directory is that user's own (not writable by all), its lock is a
    real run on an outer DEST and refuses ours."""
    outer = tmp_path / "theirs"
    outer.mkdir()
    os.chown(outer, NOBODY, NOBODY)
    outer.chmod(0o777)  # writable by all, but theirs: their run on it is real
    lock = _planted_lock(outer, NOBODY)
    with lock.open("rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(StorageError, match="another stacpull run"):
            pull(sim, outer / "mine")


def _fallback_registry(monkeypatch: pytest.MonkeyPatch, tmp: Path) -> Path:
    """No runtime directory: the registry falls back to ``<tmp>/stacpull-<uid>``."""
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp / f"stacpull-{os.getuid()}"


@pytest.mark.parametrize("planted", ["a link", "world-writable", "another user's"])
def test_a_registry_planted_by_someone_else_is_never_used(
    sim: SimServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, planted: str
) -> None:
    if planted == "another user's" and os.geteuid() != 0:
        pytest.skip("plays another user: needs root")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    tmp.chmod(0o1777)
    base = _fallback_registry(monkeypatch, tmp)
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    if planted == "a link":
        base.symlink_to(theirs)
    else:
        base.mkdir()
        if planted == "world-writable":
            base.chmod(0o777)
        else:
            os.chown(base, NOBODY, NOBODY)
    before = sorted(theirs.rglob("*")) + sorted(base.rglob("*"))
    result = pull(sim, tmp_path / "dest")
    assert result.ok and result.downloaded == 15  # not blocked
    assert sorted(theirs.rglob("*")) + sorted(base.rglob("*")) == before  # nothing written


def test_the_fallback_registry_is_private(
    sim: SimServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    tmp.chmod(0o1777)
    base = _fallback_registry(monkeypatch, tmp)
    old = os.umask(0)
    try:
        holder = Journal(tmp_path / "dest", lock=True)
    finally:
        os.umask(old)
    try:
        for path in (base, base / "dests"):
            st = os.lstat(path)
            assert stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid()
            assert stat.S_IMODE(st.st_mode) == 0o700
        (entry,) = (base / "dests").iterdir()
        assert stat.S_IMODE(entry.lstat().st_mode) == 0o600
    finally:
        holder.close()


def test_nested_dests_reached_through_a_link_are_seen(sim: SimServer, tmp_path: Path) -> None:
    outer = tmp_path / "outer"
    (outer / "sub").mkdir(parents=True)
    alias = tmp_path / "alias"
    alias.symlink_to(outer / "sub")
    for busy, started in ((outer, alias), (alias, outer)):
        holder = Journal(busy, lock=True)
        try:
            with pytest.raises(StorageError, match="another stacpull run"):
                pull(sim, started)
        finally:
            holder.close()


def test_an_inner_dest_with_a_name_that_is_not_utf8_is_seen(sim: SimServer, tmp_path: Path) -> None:
    """The registry names DESTs by their bytes: an outer DEST whose name is not UTF-8 still
    contains the inner one recorded there."""
    outer = Path(os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9"))
    inner = outer / "inner"
    inner.mkdir(parents=True)
    holder = Journal(inner, lock=True)
    try:
        with pytest.raises(StorageError, match="another stacpull run"):
            pull(sim, outer)
    finally:
        holder.close()


def test_state_files_are_never_writable_by_others(sim: SimServer, tmp_path: Path) -> None:
    """A service account with a careless umask of 0 still keeps ``DEST/.stacpull``, its
    journal, lock and reports out of other users' hands (they could plant links there or
    rewrite the journal); the registry stays private."""
    dest = tmp_path / "dest"
    script = (
        "import os, sys; os.umask(0); import stacpull; "
        "r = stacpull.mirror(catalog=sys.argv[1], collections=[sys.argv[2]], dest=sys.argv[3],"
        " token=sys.argv[4]); print(r.downloaded)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, sim.catalog_url, L1A, str(dest), TOKEN],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and done.stdout.strip() == "15", done.stderr
    state = dest / ".stacpull"
    found = [state, *state.rglob("*")]
    assert len(found) > 4
    for path in found:
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert not mode & 0o002, (path, oct(mode))


def test_processes_racing_to_create_one_dest_get_it_once(tmp_path: Path) -> None:
    """Three processes racing to create one DEST and its state: exactly one holds it (each
    holder keeps it until its stdin closes, so the others must overlap it)."""
    dest = tmp_path / "dest"
    script = (
        "import sys; from pathlib import Path; from stacpull.journal import Journal\n"
        "from stacpull.errors import StorageError\n"
        "try:\n    j = Journal(Path(sys.argv[1]), lock=True)\n"
        "except StorageError:\n    print('refused', flush=True)\n"
        "else:\n    print('held', flush=True); sys.stdin.read()\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(dest)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    try:
        said = sorted(p.stdout.readline().strip() for p in procs if p.stdout is not None)
    finally:
        for p in procs:
            p.communicate(timeout=30)
    assert said == ["held", "refused", "refused"], said


def test_metadata_never_addresses_the_state_of_a_dest_nested_below(
    sim: SimServer, tmp_path: Path
) -> None:
    """A DEST may hold another DEST below it (runs one after the other are allowed): an
    item's path through ``sub/.stacpull/`` would overwrite that DEST's journal."""
    outer = tmp_path / "outer"
    inner = outer / "sub"
    assert pull(sim, inner).ok
    journal = inner / ".stacpull" / "journal.sqlite"
    before = journal.read_bytes()
    item = sim.catalog.item(L1A, 1)
    for n, where in enumerate(("sub/.stacpull/journal.sqlite", "sub/.STACPULL./lock")):
        product = {**item["assets"]["product"], "file:local_path": where}
        hostile = {**item, "id": f"hostile{n}", "assets": {"product": product}}
        sim.catalog.add_item(L1A, hostile)
    result = pull(sim, outer, template="{name}", assets=["product"])
    assert result.refused == 2 and result.downloaded == 5, result
    assert journal.read_bytes() == before
    assert not (inner / ".stacpull" / "lock").stat().st_size


@pytest.mark.parametrize("planted", ["a directory", "a link to a directory"])
def test_a_plot_whose_temporary_name_is_taken_fails_in_one_line(
    sim: SimServer, tmp_path: Path, planted: str
) -> None:
    dest = tmp_path / "dest"
    assert pull(sim, dest).ok
    out = tmp_path / "plot.png"
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "keep").write_bytes(b"keep")
    part = tmp_path / "plot.png.part"
    if planted == "a directory":
        part.mkdir()
        (part / "keep").write_bytes(b"keep")
    else:
        part.symlink_to(theirs)
    code, stdout, err = cli("report", str(dest), "--plot", str(out))
    assert "Traceback" not in stdout + err
    assert code in (0, 2), stdout + err
    assert (theirs / "keep").read_bytes() == b"keep"
    if planted == "a directory":
        assert code == 2 and (part / "keep").read_bytes() == b"keep", stdout + err


@pytest.mark.parametrize("fmt", ["parquet", "geojson", "csv"])
def test_a_saved_search_whose_temporary_name_is_a_directory_fails_in_one_line(
    sim: SimServer, tmp_path: Path, fmt: str
) -> None:
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    out = tmp_path / f"items.{fmt}"
    part = tmp_path / f"items.{fmt}.part"
    part.mkdir()
    (part / "keep").write_bytes(b"keep")
    code, stdout, err = cli(
        "search", "--catalog", sim.catalog_url, "--collection", L1A, "-o", str(out)
    )
    assert code == 2, stdout + err
    assert "Traceback" not in err and len([x for x in err.splitlines() if x.strip()]) == 1, err
    assert (part / "keep").read_bytes() == b"keep" and not out.exists()


def test_prune_never_deletes_state_a_journal_from_before_names(
    sim: SimServer, tmp_path: Path
) -> None:
    """A journal written before deeper ``.stacpull`` paths were refused may hold a row for
    one (a nested DEST's journal); that item leaving the catalogue must not delete it."""
    import sqlite3

    outer = tmp_path / "outer"
    assert _mirror(sim.catalog_url, outer)[0] == 0
    inner_journal = outer / "sub" / ".stacpull" / "journal.sqlite"
    inner_journal.parent.mkdir(parents=True)
    inner_journal.write_bytes(b"the inner DEST's journal")
    db = sqlite3.connect(outer / ".stacpull" / "journal.sqlite")
    try:
        with db:
            db.execute(
                "INSERT INTO transfers (path, url, status, item_id, collection, asset_key,"
                " scope, seen_run, updated_at) SELECT 'sub/.stacpull/journal.sqlite', url,"
                " 'done', 'legacy', collection, asset_key, scope, seen_run, updated_at"
                " FROM transfers LIMIT 1"
            )
    finally:
        db.close()
    code, out, err = _mirror(sim.catalog_url, outer, "--prune")
    assert code == 0, out + err
    assert inner_journal.read_bytes() == b"the inner DEST's journal"
    assert len(files_under(outer)) == 15 and "kept" not in err
    code, out, err = _mirror(sim.catalog_url, outer, "--prune")  # the row is forgotten
    assert code == 0 and "pruned" not in out and inner_journal.exists(), out + err


@pytest.mark.skipif(os.geteuid() != 0, reason="plays another user: needs root")
def test_another_user_cannot_block_a_dest_by_holding_its_state_files(
    sim: SimServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Reading is enough to take a shared ``flock`` (the DEST lock) or a POSIX read lock
    (SQLite's ``-shm``): any local user who can open them could hold them for ever and
    refuse every run of a service account. Others get no access to ``DEST/.stacpull``."""
    base = Path(tempfile.mkdtemp(prefix="stacpull-attack2-", dir="/tmp"))
    try:
        base.chmod(0o755)
        dest = base / "dest"
        assert pull(sim, dest).ok
        (dest / ".stacpull").chmod(0o755)  # as earlier versions made it
        assert pull(sim, dest).ok  # a run takes others' access away
        assert not stat.S_IMODE((dest / ".stacpull").stat().st_mode) & 0o007
        script = (
            "import fcntl, os, sys\n"
            "os.setgid(65534); os.setuid(65534)\n"
            "held = []\n"
            "for name in ('lock', 'journal.sqlite-shm', 'journal.sqlite'):\n"
            "    try:\n"
            "        f = open(os.path.join(sys.argv[1], name), 'rb')\n"
            "        fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB) if name == 'lock' else"
            " fcntl.lockf(f, fcntl.LOCK_SH | fcntl.LOCK_NB, 1, 120 if 'shm' in name else 0)\n"
            "        held.append((name, f))\n"
            "    except OSError:\n"
            "        pass\n"
            "print(' '.join(n for n, _ in held) or 'nothing', flush=True)\n"
            "sys.stdin.read()\n"
        )
        with subprocess.Popen(
            [sys.executable, "-c", script, str(dest / ".stacpull")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        ) as other:
            assert other.stdout is not None
            said = other.stdout.readline().strip()
            try:
                result = pull(sim, dest, retries=0)
            finally:
                other.communicate(timeout=30)
        assert result.ok and result.skipped == 15, (said, result)
        assert said == "nothing"
    finally:
        import shutil

        shutil.rmtree(base)
