"""The pieces of the fast write path, on real files and a real journal: pwritev batching,
group commits, the free-space estimate between readings."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest

from stacpull.errors import StorageError
from stacpull.journal import Journal
from stacpull.models import Job
from stacpull.transfer.partfile import write_blocks
from stacpull.transfer.space import SpaceBudget


def _job(i: int) -> Job:
    return Job(f"item-{i}", "C", "data", f"http://127.0.0.1:1/{i}", f"C/item-{i}/f.bin", size=10)


def _written(tmp_path: Path, blocks: list[bytes], head: bytes = b"H" * 10) -> bytes:
    """What a file holding ``head`` holds after ``write_blocks`` put ``blocks`` after it."""
    path = tmp_path / "f.part"
    path.write_bytes(head)
    fd = os.open(path, os.O_WRONLY)
    try:
        write_blocks(fd, blocks, len(head))
    finally:
        os.close(fd)
    return path.read_bytes()


def test_write_blocks_more_blocks_than_one_system_call_takes(tmp_path: Path) -> None:
    # 1 500 blocks of varied sizes: more than IOV_MAX per pwritev, written at an offset.
    blocks = [bytes([i % 251]) * (1 + i % 37) for i in range(1500)]
    assert _written(tmp_path, blocks) == b"H" * 10 + b"".join(blocks)


def _spy_pwritev(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The bytes each ``os.pwritev`` call is asked to write (the call still happens)."""
    spans: list[int] = []
    real = os.pwritev

    def pwritev(fd: int, buffers: list[memoryview], offset: int) -> int:
        spans.append(sum(map(len, buffers)))
        return real(fd, buffers, offset)

    monkeypatch.setattr(os, "pwritev", pwritev)
    return spans


def test_write_blocks_spans_at_most_one_mebibyte_per_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A 4 MiB batch of socket-sized chunks, one 3 MiB chunk among them: every pwritev
    # carries at most 1 MiB (larger calls cost this kernel several times the system CPU
    # per byte: see write_blocks), and the file holds exactly the blocks, in order.
    spans = _spy_pwritev(monkeypatch)
    blocks = [bytes([i % 251]) * (65536 + 17 * i) for i in range(40)]
    blocks.insert(7, b"\x07" * (3 << 20))
    assert _written(tmp_path, blocks) == b"H" * 10 + b"".join(blocks)
    assert spans and max(spans) <= 1 << 20
    assert sum(spans) == sum(map(len, blocks))


def test_write_blocks_short_writes_resume_inside_a_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A kernel that writes less than asked (a signal, a full quota's edge): the rest of
    # the cut block goes next, and no byte is written twice or skipped.
    real = os.pwritev

    def short(fd: int, buffers: list[memoryview], offset: int) -> int:
        first = buffers[0]
        return real(fd, [first[: max(1, len(first) // 3)]], offset)

    monkeypatch.setattr(os, "pwritev", short)
    blocks = [bytes([i]) * (1000 + i) for i in range(1, 30)]
    assert _written(tmp_path, blocks, b"") == b"".join(blocks)


def test_group_commit_records_every_concurrent_statement(tmp_path: Path) -> None:
    journal = Journal(tmp_path)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for i in range(300):
                tg.start_soon(_start_and_finish, journal, _job(i))

    anyio.run(main)
    rows = {row.path: row for row in journal.rows()}
    assert len(rows) == 300
    assert all(row.status == "done" and row.etag == '"e"' for row in rows.values())
    assert all(row.attempts == 1 for row in rows.values())
    journal.close()


async def _start_and_finish(journal: Journal, job: Job) -> None:
    await journal.started(job, etag='"e"', last_modified=None, offset=0)
    await journal.done(job, size=10, digest=None, mtime_ns=1)


class _GroupSizes(Journal):
    sizes: list[int]

    def _run_group(self, fns: list[Any]) -> list[tuple[bool, Any]]:
        self.sizes.append(len(fns))
        return super()._run_group(fns)


def test_a_failing_statement_fails_alone_in_its_group(tmp_path: Path) -> None:
    journal = _GroupSizes(tmp_path)
    journal.sizes = []
    errors: list[BaseException] = []

    async def bad() -> None:
        try:
            await journal._call(lambda db: db.execute("INSERT INTO no_such_table VALUES (1)"))
        except StorageError as exc:
            errors.append(exc)

    async def main() -> None:
        # Queued in the same tick, so they share one group commit with the bad one.
        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(_start_and_finish, journal, _job(i))
            tg.start_soon(bad)
            for i in range(20, 40):
                tg.start_soon(_start_and_finish, journal, _job(i))

    anyio.run(main)
    assert max(journal.sizes) > 1  # the statements really were committed in groups
    assert len(errors) == 1 and "no_such_table" in str(errors[0])
    assert isinstance(errors[0].__cause__, sqlite3.Error)
    assert journal.counts() == {"done": 40}
    journal.close()


def test_space_budget_counts_finished_files_until_the_next_reading(tmp_path: Path) -> None:
    free = shutil.disk_usage(tmp_path).free
    # 100 MB above the floor: one 60 MB file fits; once it is written (released), the
    # estimate must not offer the same 100 MB again before the disk is read anew.
    budget = SpaceBudget(min_free=free - 100_000_000)
    budget.REREAD = 3600.0
    got = budget.reserve(tmp_path, 60_000_000)
    budget.release(got)
    with pytest.raises(StorageError, match="not enough free space"):
        budget.reserve(tmp_path, 60_000_000)
    budget.REREAD = 0.0  # a fresh reading sees the disk as it is (nothing was written)
    assert budget.reserve(tmp_path, 60_000_000) == 60_000_000
