"""Issue 16, stacpull's own state and deletions: nothing written, read or deleted outside DEST.

- ``DEST/.stacpull`` and the files in it are never used through a symbolic link;
- ``mirror --prune`` deletes only regular files reached without following a link;
- every output a user names refuses what is not a regular file; ``-o -`` is stdout;
- a run that did not search completely never judges anything gone;
- nested DESTs never run at once, in either order.

Real runs against the simulated catalogue; a small reverse proxy in this file plays a
catalogue whose listing ends early or fails on a later page.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

import stacpull
from stacpull.errors import ConfigError, StorageError
from stacpull.journal import Journal
from stacpull.sim import Faults, SimCatalog, SimOptions, SimServer, default_collections

from .conftest import L1A, TOKEN, cli, files_under, pull, sim_download
from .hostile import SimProxy


@pytest.fixture(autouse=True)
def _own_runtime_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each test gets its own registry of running DESTs (a per-user runtime directory)."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path_factory.mktemp("xdg-runtime")))


def _mirror(catalog: str, dest: Path, *extra: str, collection: str = L1A) -> tuple[int, str, str]:
    return cli(
        "mirror",
        "--catalog",
        catalog,
        "--collection",
        collection,
        "--dest",
        str(dest),
        "--dashboard",
        "none",
        *extra,
        token=TOKEN,
    )


def _tree(root: Path) -> dict[str, bytes | str]:
    """Every entry under ``root`` (not following links): file bytes, link targets, dirs."""
    out: dict[str, bytes | str] = {}
    if not os.path.lexists(root):
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                out[rel] = "-> " + str(path.readlink())
            elif path.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = path.read_bytes()
    return out


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# -- 1. DEST/.stacpull and the files in it ----------------------------------------------------


@pytest.mark.parametrize("kind", ["another DEST's state", "dangling", "a file"])
def test_a_state_directory_that_is_a_link_is_refused_by_every_command(
    sim: SimServer, tmp_path: Path, kind: str
) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    outside = tmp_path / "outside"
    if kind == "another DEST's state":
        assert _mirror(sim.catalog_url, outside)[0] == 0
        target = outside / ".stacpull"
    elif kind == "dangling":
        target = outside / "nowhere"
    else:
        outside.mkdir()
        target = outside / "file"
        target.write_bytes(b"keep")
    (dest / ".stacpull").symlink_to(target)
    before = _tree(outside)

    code, _, err = _mirror(sim.catalog_url, dest)
    assert code == 3, err
    assert "symbolic link" in _one_line(err) and ".stacpull" in err
    for command in ("status", "verify", "report"):
        code, out, err = cli(command, str(dest))
        assert code == 2, (command, out, err)
        assert "symbolic link" in _one_line(err), command
    assert _tree(outside) == before
    assert (dest / ".stacpull").is_symlink() and files_under(dest) == []


@pytest.mark.parametrize(
    "name", ["journal.sqlite", "journal.sqlite-wal", "journal.sqlite-shm", "lock"]
)
@pytest.mark.parametrize("target_kind", ["dangling", "a file"])
def test_journal_and_lock_are_never_opened_through_a_link(
    sim: SimServer, tmp_path: Path, name: str, target_kind: str
) -> None:
    dest = tmp_path / "dest"
    (dest / ".stacpull").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / "target"
    if target_kind == "a file":
        target.write_bytes(b"keep")
    (dest / ".stacpull" / name).symlink_to(target)

    code, _, err = _mirror(sim.catalog_url, dest)
    assert code == 3, err
    assert "symbolic link" in _one_line(err) and name in err
    assert cli("status", str(dest))[0] == 2
    assert _tree(outside) == ({"target": b"keep"} if target_kind == "a file" else {})
    assert files_under(dest) == []


def test_reports_and_outcome_logs_are_never_written_through_links(
    sim: SimServer, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    state = dest / ".stacpull"
    state.mkdir(parents=True)
    victim = tmp_path / "outside" / "victim"
    victim.parent.mkdir()
    victim.write_bytes(b"keep")
    # The names of this run's files carry the second it starts: plant every one of them.
    now = int(time.time())
    for second in range(now - 2, now + 30):
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(second))
        for name in (
            f"outcomes-{stamp}.jsonl",
            f"report-{stamp}.json",
            f"report-{stamp}.json.part",
        ):
            (state / name).symlink_to(victim)
    for name in ("last-report.json", "last-report.json.part"):
        (state / name).symlink_to(victim)

    code, out, err = _mirror(sim.catalog_url, dest)
    assert code == 0, out + err
    assert victim.read_bytes() == b"keep"
    last = state / "last-report.json"
    assert not last.is_symlink()
    report = json.loads(last.read_text())
    assert report["totals"]["downloaded"] == 15 and len(report["files"]) == 15


def test_report_never_reads_its_json_through_a_link(sim: SimServer, tmp_path: Path) -> None:
    other = tmp_path / "other"
    assert _mirror(sim.catalog_url, other)[0] == 0
    dest = tmp_path / "dest"
    (dest / ".stacpull").mkdir(parents=True)
    (dest / ".stacpull" / "last-report.json").symlink_to(other / ".stacpull" / "last-report.json")
    code, out, err = cli("report", str(dest))
    assert code == 2 and out == ""
    assert "symbolic link" in _one_line(err)


# -- 2. mirror --prune deletes nothing through a link ------------------------------------------


def _ids(sim: SimServer, *indexes: int) -> list[str]:
    return [str(sim.catalog.item(L1A, i)["id"]) for i in indexes]


def test_prune_never_deletes_through_a_link(sim: SimServer, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    assert _mirror(sim.catalog_url, dest)[0] == 0
    linked_dir, linked_file, plain = _ids(sim, 2, 3, 4)
    outside = tmp_path / "outside"
    outside.mkdir()
    # item 2's directory became a link to a directory outside holding the same names
    shutil.move(dest / L1A / linked_dir, outside / linked_dir)
    (dest / L1A / linked_dir).symlink_to(outside / linked_dir)
    # one file of item 3 became a link to a file outside
    victim = outside / "victim"
    victim.write_bytes(b"keep")
    first = sorted((dest / L1A / linked_file).iterdir())[0]
    first.unlink()
    first.symlink_to(victim)
    before = _tree(outside)
    for item_id in (linked_dir, linked_file, plain):
        sim.catalog.remove_item(item_id)

    code, out, err = _mirror(sim.catalog_url, dest, "--prune")
    assert code == 0, out + err
    assert _tree(outside) == before
    assert not (dest / L1A / plain).exists()  # reached without a link: pruned
    assert [p.name for p in (dest / L1A / linked_file).iterdir()] == [first.name]
    assert "pruned 5 file(s)" in out
    assert "kept 4 file(s)" in _one_line(err) and "symbolic link" in err
    assert all(len(list((dest / L1A / i).iterdir())) == 3 for i in _ids(sim, 0, 1))


def test_prune_never_follows_a_link_higher_up(sim: SimServer, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    assert _mirror(sim.catalog_url, dest)[0] == 0
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.move(dest / L1A, outside / L1A)
    (dest / L1A).symlink_to(outside / L1A)
    before = _tree(outside)
    (gone,) = _ids(sim, 1)
    sim.catalog.remove_item(gone)
    code, out, err = _mirror(sim.catalog_url, dest, "--prune")
    # Every file of the linked collection is refused too (nothing is read or written
    # through a link inside DEST), so the run reports refusals.
    assert code == 1, out + err
    assert "refused" in out
    assert _tree(outside) == before
    assert "pruned 0 file(s)" in out and "symbolic link" in err


# -- 3. outputs a user names -------------------------------------------------------------------


def _special(path: Path, kind: str, victim: Path) -> None:
    if kind == "link to a file":
        path.symlink_to(victim)
    elif kind == "dangling link":
        path.symlink_to(victim.parent / "nowhere")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "char device":
        try:
            os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # /dev/null's numbers
        except PermissionError:
            pytest.skip("creating a device node needs root")
    else:
        path.mkdir()


def _kind_of(path: Path) -> str:
    mode = os.lstat(path).st_mode
    return {
        stat.S_IFLNK: "link",
        stat.S_IFIFO: "fifo",
        stat.S_IFCHR: "char",
        stat.S_IFDIR: "dir",
        stat.S_IFREG: "file",
    }[stat.S_IFMT(mode)]


_SPECIAL = ["link to a file", "dangling link", "fifo", "char device", "directory"]


@pytest.mark.parametrize("kind", _SPECIAL)
def test_search_output_refuses_what_is_not_a_regular_file(
    sim: SimServer, tmp_path: Path, kind: str
) -> None:
    victim = tmp_path / "victim.geojson"
    victim.write_bytes(b"keep")
    target = tmp_path / "items.geojson"
    _special(target, kind, victim)
    was = _kind_of(target)
    code, out, err = cli(
        "search", "--catalog", sim.catalog_url, "--collection", L1A, "-o", str(target)
    )
    assert code == 2, out + err
    if kind != "directory":  # click's own check, with its usage lines
        assert "not a regular file" in _one_line(err)
    assert _kind_of(target) == was and victim.read_bytes() == b"keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["items.geojson", "victim.geojson"]
    with pytest.raises(ConfigError, match=r"not a regular file|is a directory"):
        stacpull.search_items(catalog=sim.catalog_url, collections=[L1A], output=target)


def test_search_to_stdout_writes_the_item_collection(sim: SimServer, tmp_path: Path) -> None:
    code, out, err = cli("search", "--catalog", sim.catalog_url, "--collection", L1A, "-o", "-")
    assert code == 0, err
    data = json.loads(out)
    assert data["type"] == "FeatureCollection" and len(data["features"]) == 5
    assert "5 item(s) matched" in err
    assert not (Path.cwd() / "-").exists()
    # and it is a saved search --from can read back
    saved = tmp_path / "items.geojson"
    saved.write_text(out)
    code, stdout, stderr = cli(
        "download",
        "--from",
        str(saved),
        "--dest",
        str(tmp_path / "d"),
        "--dashboard",
        "none",
        token=TOKEN,
    )
    assert code == 0, stdout + stderr
    assert len(files_under(tmp_path / "d")) == 15


@pytest.mark.parametrize("kind", ["link to a file", "dangling link", "fifo", "char device"])
def test_log_json_and_plot_refuse_what_is_not_a_regular_file(
    sim: SimServer, tmp_path: Path, kind: str
) -> None:
    dest = tmp_path / "dest"
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    log = tmp_path / "events.jsonl"
    _special(log, kind, victim)
    code, out, err = _mirror(sim.catalog_url, dest, "--log-json", str(log))
    assert code == 2, out + err
    assert "not a regular file" in _one_line(err)
    assert _kind_of(log) != "file" and victim.read_bytes() == b"keep"
    assert not dest.exists() or files_under(dest) == []

    assert _mirror(sim.catalog_url, dest)[0] == 0
    plot = tmp_path / "plot.png"
    _special(plot, kind, victim)
    code, out, err = cli("report", str(dest), "--plot", str(plot))
    assert code == 2, out + err
    assert "not a regular file" in _one_line(err)
    assert _kind_of(plot) != "file" and victim.read_bytes() == b"keep"


def test_outputs_still_replace_and_append_regular_files(sim: SimServer, tmp_path: Path) -> None:
    target = tmp_path / "items.geojson"
    target.write_text("old")
    assert (
        cli("search", "--catalog", sim.catalog_url, "--collection", L1A, "-o", str(target))[0] == 0
    )
    assert len(json.loads(target.read_text())["features"]) == 5
    log = tmp_path / "events.jsonl"
    log.write_text('{"event": "earlier"}\n')
    assert _mirror(sim.catalog_url, tmp_path / "dest", "--log-json", str(log))[0] == 0
    lines = log.read_text().splitlines()
    assert lines[0] == '{"event": "earlier"}' and len(lines) > 10


# -- 4. only a complete search judges anything gone --------------------------------------------


def test_retry_failed_never_judges_anything_gone(sim: SimServer, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    assert _mirror(sim.catalog_url, dest)[0] == 0
    before = _tree(dest / L1A)
    code, out, err = _mirror(sim.catalog_url, dest, "--retry-failed", "--prune")
    assert code == 2 and "--prune needs the complete search" in err
    code, out, err = _mirror(sim.catalog_url, dest, "--retry-failed")
    assert code == 0, out + err
    assert "no longer in the catalogue" not in out + err
    result = stacpull.mirror(
        catalog=sim.catalog_url,
        collections=[L1A],
        dest=str(dest),
        token=TOKEN,
        retry_failed=True,
        prune=True,
    )
    assert result.gone == () and result.pruned == 0
    assert _tree(dest / L1A) == before


def test_a_mirror_of_saved_searches_judges_nothing_gone(sim: SimServer, tmp_path: Path) -> None:
    every, two = tmp_path / "every.geojson", tmp_path / "two.geojson"
    search = ("search", "--catalog", sim.catalog_url, "--collection", L1A)
    assert cli(*search, "-o", str(every))[0] == 0
    assert cli(*search, "--max-items", "2", "-o", str(two))[0] == 0
    dest = tmp_path / "dest"
    for saved in (every, two):
        code, out, err = cli(
            "mirror", "--from", str(saved), "--dest", str(dest), "--dashboard", "none", token=TOKEN
        )
        assert code == 0, out + err
        assert "no longer in the catalogue" not in out
    assert len(files_under(dest)) == 15


class _Catalogue(SimProxy):
    """A reverse proxy in front of the sim's STAC API that can lie about its listing:
    ``mode`` "honest", "short" (page 1 has no next link although more items match) or
    "fail" (a later page answers 400). Data requests go to the sim itself."""

    def __init__(self, sim: SimServer) -> None:
        super().__init__(sim)
        self.mode = "honest"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        token_asked = "token" in request.query or b'"token"' in body
        if self.mode == "fail" and token_asked:
            return web.json_response({"code": "Bad", "description": "page gone"}, status=400)
        status, text = await self.forward(request, body)
        if request.path.endswith("/search") and status == 200:
            page = json.loads(text)
            if self.mode == "short":
                page["links"] = [link for link in page["links"] if link.get("rel") != "next"]
            text = json.dumps(page)
        return self.answer(text, status)


@pytest.fixture
def catalogue(sim: SimServer) -> Iterator[_Catalogue]:
    with _Catalogue(sim) as proxy:
        yield proxy


@pytest.mark.parametrize("mode", ["short", "fail"])
def test_a_search_that_did_not_list_everything_judges_nothing_gone(
    catalogue: _Catalogue, tmp_path: Path, mode: str
) -> None:
    dest = tmp_path / "dest"
    code, out, err = _mirror(catalogue.url, dest, "--page-size", "2")
    assert code == 0, out + err
    assert len(files_under(dest)) == 15
    before = _tree(dest / L1A)
    catalogue.mode = mode
    code, out, err = _mirror(catalogue.url, dest, "--page-size", "2", "--prune")
    if mode == "fail":
        assert code == 2 and "page gone" in _one_line(err)
    else:
        assert code == 0, out + err
        assert "not pruned" in out and "2 of 5" in out
    assert "no longer in the catalogue" not in out
    assert _tree(dest / L1A) == before
    catalogue.mode = "honest"  # and the next complete search still prunes nothing wrongly
    code, out, err = _mirror(catalogue.url, dest, "--page-size", "2", "--prune")
    assert code == 0 and "pruned" not in out, out + err
    assert _tree(dest / L1A) == before


# -- 5. nested DESTs ---------------------------------------------------------------------------


@pytest.mark.parametrize("held", ["outer", "inner"])
def test_nested_dests_never_run_at_once(sim: SimServer, tmp_path: Path, held: str) -> None:
    outer = tmp_path / "outer"
    inner = outer / "sub" / "inner"
    busy, started = (outer, inner) if held == "outer" else (inner, outer)
    busy.mkdir(parents=True, exist_ok=True)
    holder = Journal(busy, lock=True)  # what a running engine holds
    try:
        with pytest.raises(StorageError, match="another stacpull run") as caught:
            pull(sim, started)
        assert str(busy.resolve()) in str(caught.value)
        code, _, err = sim_download(sim, started)
        assert code == 3 and str(busy.resolve()) in _one_line(err)
        if held == "outer":
            assert not started.exists()  # refused before anything was made inside it
    finally:
        holder.close()
    assert files_under(outer) == []
    assert pull(sim, started).ok  # released: the run goes ahead


@pytest.mark.parametrize(
    "held",
    [
        "outer, by a run with another registry (another user): seen by its lock file",
        "inner: seen in the registry",
    ],
)
def test_a_lock_held_by_another_process_is_seen_and_a_killed_one_is_stale(
    sim: SimServer, tmp_path: Path, held: str
) -> None:
    outer = tmp_path / "outer"
    inner = outer / "inner"
    inner.mkdir(parents=True)
    busy, started = (outer, inner) if held.startswith("outer") else (inner, outer)
    env = dict(os.environ)
    if held.startswith("outer"):
        env["XDG_RUNTIME_DIR"] = str(tmp_path / "another-user")
        (tmp_path / "another-user").mkdir()
    script = (
        "import sys, time; from pathlib import Path; from stacpull.journal import Journal; "
        "j = Journal(Path(sys.argv[1]), lock=True); print('ready', flush=True); time.sleep(60)"
    )
    with subprocess.Popen(
        [sys.executable, "-c", script, str(busy)], stdout=subprocess.PIPE, text=True, env=env
    ) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
            with pytest.raises(StorageError, match="another stacpull run") as caught:
                pull(sim, started)
            assert str(busy.resolve()) in str(caught.value)
        finally:
            holder.kill()
    assert pull(sim, started).ok  # the killed run's lock and registration hold nothing now


def test_a_run_inside_a_running_mirror_is_refused_and_the_mirror_is_whole(
    tmp_path: Path,
) -> None:
    catalog = SimCatalog(default_collections(count=2, product_size=200_000))
    options = SimOptions(faults=Faults(rate_limit=200_000))
    outer = tmp_path / "outer"
    with SimServer(catalog, options=options) as slow:
        results: list[Any] = []

        def first() -> None:
            try:
                results.append(pull(slow, outer))
            except BaseException as exc:  # reported by the assertion below
                results.append(exc)

        runner = threading.Thread(target=first)
        runner.start()
        try:
            deadline = time.monotonic() + 10
            while not slow.requests and time.monotonic() < deadline:
                time.sleep(0.01)
            assert slow.requests, "the first run never started downloading"
            with pytest.raises(StorageError, match="another stacpull run") as caught:
                pull(slow, outer / L1A)
            assert str(outer.resolve()) in str(caught.value)
        finally:
            runner.join(30)
    (result,) = results
    assert isinstance(result, stacpull.RunResult) and result.ok, result
    assert result.downloaded == 6
    assert not (outer / L1A / ".stacpull").exists()  # the refused run left nothing behind
    journal = Journal(outer)
    try:
        for row in journal.rows():
            assert row.status == "done" and (outer / row.path).stat().st_size == row.bytes
    finally:
        journal.close()


def test_lock_probe_does_not_disturb_a_starting_run(tmp_path: Path) -> None:
    """A probe of another DEST's lock is a shared lock held for an instant: a run taking its
    own lock at that moment waits for it instead of calling its DEST busy."""
    dest = tmp_path / "dest"
    (dest / ".stacpull").mkdir(parents=True)
    lock = dest / ".stacpull" / "lock"
    lock.touch()
    with lock.open("rb") as probe:
        fcntl.flock(probe.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        timer = threading.Timer(0.02, lambda: fcntl.flock(probe.fileno(), fcntl.LOCK_UN))
        timer.start()
        try:
            journal = Journal(dest, lock=True)
        finally:
            timer.join()
    journal.close()
